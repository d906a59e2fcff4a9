// Block quantization of a GEMM operand (fpscope/block_quant.hpp). The per-block arithmetic of
// each recipe family follows its upstream kernel, cited at each step, in float32 and in the
// upstream order of operations; every element goes through the one rounding routine
// (fpscope::encode, detail/round_pack.hpp).
#include "fpscope/block_quant.hpp"

#include "block_plan.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <vector>
#include <cmath>
#include <limits>

#include "fpscope/convert.hpp"
#include "fpscope/options.hpp"
#include "fpscope/recipe.hpp"
#include "fpscope/scaler.hpp"

namespace fpscope {

std::string_view name(operand_role r) {
  switch (r) {
    case operand_role::input: return "input";
    case operand_role::weight: return "weight";
    case operand_role::grad: return "grad";
  }
  return "input";
}
std::string_view name(block_axis a) { return a == block_axis::row ? "row" : "column"; }

operand_role parse_role(std::string_view t, std::string_view what) {
  if (t == "input" || t == "x" || t == "activation") return operand_role::input;
  if (t == "weight" || t == "w") return operand_role::weight;
  if (t == "grad" || t == "dy" || t == "gradient") return operand_role::grad;
  throw option_error(std::string(what) + ": unknown role " + quoted(t) + " (known: input|x|activation, weight|w, grad|dy|gradient)");
}
block_axis parse_axis(std::string_view t, std::string_view what) {
  if (t == "row" || t == "rowwise") return block_axis::row;
  if (t == "column" || t == "col" || t == "columnwise") return block_axis::column;
  throw option_error(std::string(what) + ": unknown axis " + quoted(t) + " (known: row|rowwise, column|col|columnwise)");
}

namespace {

// TE NVFP4BlockScaling's random Hadamard transform of the wgrad operands
// (transformer_engine/pytorch/tensor/nvfp4_tensor.py lines 49-105: get_wgrad_sign_vector,
// get_hadamard_matrix, get_rht_matrix = diag(signs) @ H16 / 4): every 16 consecutive elements
// along the reduction dimension (the tokens: each column of X and dY) become y = x M,
// M = diag(s) H / 4. M is orthogonal (M M^T = I), so a wgrad GEMM of two transformed operands is
// the GEMM of the originals. fpscope models the transform as the exact sum rounded to float32
// (products are exact; the sum in float64 with Neumaier's compensation): TE's kernel
// accumulates in a tensor core, whose fp32 sums may differ in the last bit. `inverse` maps back
// (x = y M^T), to report the dequantized operand in the original domain.
constexpr int rht_signs[16] = {1, 1, 1, -1, 1, -1, -1, -1, -1, -1, -1, 1, -1, 1, -1, -1};
constexpr int sylvester(int i, int k) { return (std::popcount(unsigned(i & k)) & 1) ? -1 : 1; }

std::vector<float> rht_columns(std::span<const float> x, std::size_t rows, std::size_t cols, bool inverse) {
  std::vector<float> out(x.size());
  for (std::size_t g = 0; g < rows; g += 16)
    for (std::size_t j = 0; j < cols; ++j)
      for (int k = 0; k < 16; ++k) {
        double hi = 0, lo = 0;
        for (int i = 0; i < 16; ++i) {
          // forward y_k = sum_i x_i s_i H(i,k) / 4; inverse x_k = s_k / 4 sum_i y_i H(k,i)
          const int sign = inverse ? rht_signs[k] * sylvester(k, i) : rht_signs[i] * sylvester(i, k);
          const double t = double(x[(g + std::size_t(i)) * cols + j]) * 0.25 * sign;
          const double sum = hi + t;
          lo += std::fabs(hi) >= std::fabs(t) ? (hi - sum) + t : (t - sum) + hi;
          hi = sum;
        }
        out[(g + std::size_t(k)) * cols + j] = static_cast<float>(hi + lo);
      }
  return out;
}

// One block's error sums, kept in registers: the loop also stores uint8 codes, which may alias
// anything a reference reaches, so sums held in block_stats would be reloaded per element.
struct error_sums {
  std::uint64_t n = 0, nonfinite = 0;
  double signal = 0, noise = 0, sum_rel = 0, max_rel = 0;
  void add(float x, float d) {
    if (!std::isfinite(x)) return;
    if (!std::isfinite(d)) {
      ++nonfinite;
      return;
    }
    if (x == 0 && d == 0) return;
    const double xd = x, err = double(d) - xd;
    ++n;
    signal += xd * xd;
    noise += err * err;
    if (x != 0) {
      const double rel = std::fabs(err) / std::fabs(xd);
      sum_rel += rel;
      max_rel = std::max(max_rel, rel);
    }
  }
  void into(block_stats& st) const {
    st.errors.n += n;
    st.errors.signal += signal;
    st.errors.noise += noise;
    st.errors.sum_rel += sum_rel;
    st.errors.max_rel = std::max(st.errors.max_rel, max_rel);
    st.nonfinite_dequant += nonfinite;
  }
};


}  // namespace

namespace detail {

operand_setup setup_operand(recipe& r, operand_role role, block_axis axis, std::size_t rows, std::size_t cols,
                            const tensor_summary& t) {
  const block_scheme* s = r.scheme();
  const amax_of tensor = t.amax();
  static const block_scheme per_tensor_scheme{};  // per-tensor recipes read none of it
  operand_setup out(s ? *s : per_tensor_scheme);
  engine& eng = out.eng;
  block_plan& per_tensor = out.per_tensor;
  out.blocked = s != nullptr;
  out.rht = transforms(s, role, axis);
  if (s) {
    eng.elem = s->elem[int(role)];
    const bool square = role == operand_role::weight && s->weight_tile > 0;
    out.block_rows = square ? std::size_t(s->weight_tile) : axis == block_axis::column ? std::size_t(s->block) : 1;
    out.block_cols = square ? std::size_t(s->weight_tile) : axis == block_axis::row ? std::size_t(s->block) : 1;
    out.scale_format = s->kind == block_scheme::family::mx ? e8m0 : s->kind == block_scheme::family::nvfp4 ? e4m3 : fp32_scale_format;
    eng.pol = profile_policy(profile::cuda, eng.elem);
    eng.pol.on_overflow = overflow::saturate;
    eng.pol.round = s->round;
    if (s->sr_grad && role == operand_role::grad) eng.pol.round = rounding::sr, eng.pol.seed = s->seed;
    eng.tensor_amax_fmax = tensor.fmax;
    eng.tensor_amax_torch = tensor.torch();
    // core_nvfp4.cuh lines 82-96, compute_global_encode_scaling_factor_FP4: S_enc = 448 * 6 /
    // amax, FLT_MAX when that overflows, 1 when amax is 0 or S_enc is 0; the amax by fmaxf.
    float se = (448.0f * 6.0f) / tensor.fmax;
    se = std::min(se, flt_max);
    if (tensor.fmax == 0.0f || se == 0.0f) se = 1.0f;
    eng.s_enc = se;
    eng.s_dec = float(1.0 / double(se));  // quantize_transpose_nvfp4.cuh line 430: 1.0 / S_enc
    // nvfp4_tensor.py per_tensor_amax_to_scale (line 757): amax.float32 / (448 * 6), amax by
    // torch.max(torch.abs(x)).
    eng.pts = tensor.torch() / (448.0f * 6.0f);
    if (s->kind == block_scheme::family::nvfp4) out.tensor_scale = s->torchao ? eng.pts : eng.s_enc;
    out.describe = r.describe();
  } else {
    if (r.loss_scaler() || r.per_block())
      throw option_error(r.describe() + " does not quantize a GEMM operand (give mxfp8, mxfp6, mxfp4, nvfp4, fp8-block, "
                                        "deepseek or te-current)");
    // A per-tensor FP8 recipe on an operand, under TE's default Format.HYBRID: E4M3 forward
    // (input, weight), E5M2 for gradients; the cast is the kernel's (satfinite).
    eng.elem = builtin(role == operand_role::grad ? format_id::e5m2 : format_id::e4m3);
    conversion c;
    c.fmt = eng.elem;
    c.pol = profile_policy(profile::cuda, c.fmt);
    c.pol.on_overflow = overflow::saturate;
    c.prof = profile::cuda;
    r.bind(c);
    eng.pol = c.pol;
    const std::uint64_t shape[2] = {rows, cols};
    const tensor_meta meta{"operand", shape, rows * cols, t.finite_amax, t.infs, t.nans, true};
    const float sc = kernel_scale(r.scale(meta));
    per_tensor.by = sc;
    per_tensor.factor = per_tensor.scale_value = 1.0f / sc;  // TE stores scale_inv = 1 / scale
    per_tensor.scale_code = std::bit_cast<std::uint32_t>(per_tensor.factor);
    out.block_rows = rows, out.block_cols = cols;
    out.scale_format = fp32_scale_format;
    out.describe = r.describe() + " on " + std::string(eng.elem.name);
  }
  return out;
}

}  // namespace detail

block_quant_result block_quantize(std::span<const float> x, std::size_t rows, std::size_t cols, recipe& r,
                                  operand_role role, block_axis axis) {
  if (rows == 0 || cols == 0 || x.size() / rows != cols || x.size() % rows != 0)
    throw option_error("quantize: " + std::to_string(x.size()) + " values are not " + std::to_string(rows) + " x " +
                       std::to_string(cols));
  block_quant_result out;
  out.rows = rows, out.cols = cols;
  const block_scheme* s = r.scheme();
  const bool rht = detail::transforms(s, role, axis);
  std::vector<float> transformed;
  if (rht) {
    if (rows % 16 != 0)
      throw option_error("nvfp4: the random Hadamard transform needs the reduction dimension (" + std::to_string(rows) +
                         " rows) to be a multiple of 16 (TE's too); give rht=false");
    transformed = rht_columns(x, rows, cols, false);
    x = transformed;
  }
  detail::tensor_summary tensor;
  {
    // Plain locals, so that the loop keeps them in registers.
    float m = 0;
    std::uint64_t infs = 0, nans = 0;
    for (const float v : x) {
      nans += std::isnan(v);
      infs += std::isinf(v);
      m = std::max(m, std::isfinite(v) ? std::fabs(v) : 0.0f);
    }
    tensor.finite_amax = m, tensor.infs = infs, tensor.nans = nans;
  }
  const detail::operand_setup set = detail::setup_operand(r, role, axis, rows, cols, tensor);
  const detail::engine& eng = set.eng;
  out.block_rows = set.block_rows, out.block_cols = set.block_cols;
  out.scale_format = set.scale_format;
  out.tensor_scale = set.tensor_scale;
  out.describe = set.describe;
  out.element = eng.elem;
  out.scale_rows = (rows + out.block_rows - 1) / out.block_rows;
  out.scale_cols = (cols + out.block_cols - 1) / out.block_cols;
  const std::size_t nblocks = out.scale_rows * out.scale_cols;
  const detail::element_cast cast(eng.elem, eng.pol);
  out.codes.resize(x.size());
  out.dequant.resize(x.size());
  out.scale_codes.resize(nblocks);
  out.scale_values.resize(nblocks);
  out.dequant_scale.resize(nblocks);

  block_stats& st = out.stats;
  for (std::size_t br = 0; br < out.scale_rows; ++br)
    for (std::size_t bc = 0; bc < out.scale_cols; ++bc) {
      const std::size_t r0 = br * out.block_rows, r1 = std::min(rows, r0 + out.block_rows);
      const std::size_t c0 = bc * out.block_cols, c1 = std::min(cols, c0 + out.block_cols);
      detail::block_plan p = set.per_tensor;
      if (set.blocked) {
        float m = 0;
        bool nan = false;
        for (std::size_t i = r0; i < r1; ++i)
          for (std::size_t j = c0; j < c1; ++j) {
            const float v = x[i * cols + j];
            nan |= std::isnan(v);
            m = std::max(m, std::isnan(v) ? 0.0f : std::fabs(v));
          }
        p = eng.plan({m, nan});
      }
      const std::size_t b = br * out.scale_cols + bc;
      out.scale_codes[b] = p.scale_code;
      out.scale_values[b] = p.scale_value;
      out.dequant_scale[b] = p.factor;
      ++st.blocks;
      if (std::isnan(p.scale_value)) ++st.nan_scale_blocks;
      detail::add_scale(st, p.factor);
      std::uint64_t nonzero = 0, vanished = 0, clipped = 0;
      std::array<std::uint64_t, cast_class_count> cls{};
      error_sums es;
      for (std::size_t i = r0; i < r1; ++i)
        for (std::size_t j = c0; j < c1; ++j) {
          const std::size_t k = i * cols + j;
          const float v = x[k];
          const float y = p.scaled(v);
          const auto [code, c] = cast(v, y, k);
          out.codes[k] = static_cast<std::uint8_t>(code);
          const float d = cast.value_of[code] * p.factor;
          out.dequant[k] = d;
          ++cls[std::size_t(c)];
          nonzero += c != cast_class::zero && c != cast_class::nonfinite;
          vanished += c == cast_class::underflow;
          clipped += c == cast_class::overflow;
          es.add(v, d);
        }
      for (int c = 0; c < cast_class_count; ++c) st.counts.n[std::size_t(c)] += cls[std::size_t(c)];
      es.into(st);
      if (nonzero == 0) ++st.zero_blocks;
      if (clipped) ++st.clipped_blocks;
      if (vanished) ++st.any_vanish_blocks;
      if (2 * vanished > nonzero) ++st.most_vanish_blocks;
    }
  // With the transform, codes and scales are of the transformed operand (what the GEMM
  // multiplies); the dequantized operand is mapped back to the original's domain.
  if (rht) out.dequant = rht_columns(out.dequant, rows, cols, true);
  return out;
}

block_quant_result block_quantize(std::span<const float> x, std::size_t rows, std::size_t cols, std::string_view spec,
                                  operand_role role, block_axis axis) {
  const auto r = make_recipe(spec);
  return block_quantize(x, rows, cols, *r, role, axis);
}

}  // namespace fpscope
