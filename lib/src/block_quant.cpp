// Block quantization of a GEMM operand (fpscope/block_quant.hpp). The per-block arithmetic of
// each recipe family follows its upstream kernel, cited at each step, in float32 and in the
// upstream order of operations; every element goes through the one rounding routine
// (fpscope::encode, detail/round_pack.hpp).
#include "fpscope/block_quant.hpp"

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

constexpr float flt_max = std::numeric_limits<float>::max();
const format e4m3 = builtin(format_id::e4m3);
const format e8m0 = builtin(format_id::e8m0);

// cuda_fp8.h's __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3): what static_cast<fp8e4m3>
// does in TE kernels (nearest-even, NaN to 0x7F, overflow and inf to +-448).
std::uint32_t to_e4m3_satfinite(float v) { return encode(v, e4m3, profile_policy(profile::cuda, e4m3)); }

// The amax of a block as upstream reduces it: fmaxf (TE kernels: a NaN element is dropped, an
// inf kept), or torch.amax(torch.abs(x)) (torchao: a NaN wins).
struct amax_of {
  float fmax = 0;  // fmaxf over |x|
  bool nan = false;
  float torch() const { return nan ? std::numeric_limits<float>::quiet_NaN() : fmax; }
};

// What one block does to its elements: scaled(x) is the float32 the element cast sees, and
// dequantization multiplies a code's value by `factor`.
struct block_plan {
  enum class op : std::uint8_t { mul, div } how = op::mul;
  float by = 1;        // x * by, or x / by
  float factor = 1;    // dequantization: value(code) * factor
  std::uint32_t scale_code = 0;
  float scale_value = 1;
  // torchao NVFP4 clamps the scaled value to +-6 before its cast (nvfp4_tensor.py line 853);
  // clipping is counted from the value before the clamp, the cast is the same either way.
  float scaled(float x) const { return how == op::mul ? x * by : x / by; }
};

struct engine {
  const block_scheme& s;
  format elem;
  policy pol;
  float tensor_amax_fmax = 0;  // fmaxf over the tensor
  float tensor_amax_torch = 0;
  float s_enc = 1, s_dec = 1;  // NVFP4 TE
  float pts = 1;               // NVFP4 torchao per_tensor_scale

  block_plan plan(const amax_of& a) const {
    block_plan p;
    switch (s.kind) {
      case block_scheme::family::mx: {
        // TE (mx_mode_te): transformer_engine/common/cast/mxfp8 kernels reduce the block amax with
        // fmaxf and take float_to_e8m0(amax * max_norm_rcp) (util/ptx_arch_spec.cuh line 72);
        // torchao (mx_tensor.py to_mx, line 261) takes torch.amax, where NaN wins.
        const bool te = s.mx_mode == mx_mode_te;
        const int e = mx_scale_exponent(te ? a.fmax : a.torch(), elem, te ? mx_rounding::rceil : mx_rounding(s.mx_mode));
        if (e == mx_scale_nan) {
          // exp2f_rcp(255) is NaN (TE util/ptx.cuh line 311); torchao's reciprocal of 0xFF too.
          p.by = p.factor = p.scale_value = std::numeric_limits<float>::quiet_NaN();
          p.scale_code = 0xFF;
        } else {
          // Both multiply by the exact float32 2^-e, 2^-127 a float32 subnormal (TE exp2f_rcp,
          // util/ptx.cuh lines 309-316; torchao _e8m0_scale_to_reciprocal_fp32, lines 132-157).
          p.by = std::ldexp(1.0f, -e);
          p.factor = p.scale_value = std::ldexp(1.0f, e);
          p.scale_code = std::uint32_t(e + 127);
        }
        break;
      }
      case block_scheme::family::nvfp4:
        if (!s.torchao) {
          // transformer_engine/common/cast/nvfp4/core_nvfp4.cuh line 61-68 (quantization_SF):
          // S_dec_b = e4m3(block_amax * (S_enc * (1/6))), the block amax by fmaxf;
          // quantize_transpose_nvfp4.cuh lines 545-547: block_scale_inverse =
          // fminf(1 / (fp32(S_dec_b) * S_dec), FLT_MAX), S_dec = 1 / S_enc (line 430).
          constexpr float fp4_max_inv = 1.0f / 6.0f;
          p.scale_code = to_e4m3_satfinite(a.fmax * (s_enc * fp4_max_inv));
          p.scale_value = float(decode(p.scale_code, e4m3));
          p.by = std::min(1.0f / (p.scale_value * s_dec), flt_max);
          // dequantize_nvfp4.cuh line 68-69: final_scale = fp32(scale) * amax * (1 / (6 * 448)).
          constexpr float factor_inv = 1.0f / (6.0f * 448.0f);
          p.factor = p.scale_value * tensor_amax_fmax * factor_inv;
        } else {
          // pytorch/ao torchao/prototype/mx_formats/nvfp4_tensor.py (36027d8) nvfp4_quantize,
          // lines 824-846 (two-level): block_scale = max_abs / 6; scaled = block_scale /
          // per_tensor_scale, clamped to [E4M3_EPS = 2^-6, 448] (NaN passes), cast to e4m3;
          // data * ((1 / per_tensor_scale) / fp32(scale)). E4M3_EPS is finfo(e4m3fn).tiny.
          const float block_scale = a.torch() / 6.0f;
          float sc = block_scale / pts;
          if (!std::isnan(sc)) sc = std::clamp(sc, 0.015625f, 448.0f);
          p.scale_code = encode(sc, e4m3, profile_policy(profile::ml_dtypes, e4m3));
          p.scale_value = float(decode(p.scale_code, e4m3));
          p.by = (1.0f / pts) / p.scale_value;
          p.factor = p.scale_value * pts;
        }
        break;
      case block_scheme::family::fp32: {
        // TE Float8BlockScaling: compute_scale_from_types over the tile amax (scaler.cpp
        // block_scale), elements x * scale, scale_inv = 1 / scale stored for the GEMM.
        const double fp8_max = decode(elem.max_finite_bits(), elem);
        const float sc = kernel_scale(block_scale(a.fmax, fp8_max, s.pow2, s.eps));
        p.by = sc;
        p.factor = 1.0f / sc;
        p.scale_value = p.factor;
        p.scale_code = std::bit_cast<std::uint32_t>(p.factor);
        break;
      }
      case block_scheme::family::deepseek: {
        // deepseek-ai/DeepSeek-V3 inference/kernel.py (9b4e978) act_quant_kernel, lines 26-33:
        // amax = max(tl.max(|x|), 1e-4); s = amax / 448.; with scale_fmt "ue8m0"
        // s = exp2(ceil(log2(s))), log2 in float32 (libdevice's log2f there, the C library's here:
        // both within an ulp, so just above a power of two the float log2 can round down to it
        // and keep that power, where an exact ceil would double it); y = x / s.
        float amax = std::max(a.fmax, float(s.eps));
        float sc = amax / 448.0f;
        if (s.ue8m0 && std::isfinite(sc) && sc > 0) sc = std::exp2(std::ceil(std::log2(sc)));
        p.how = block_plan::op::div;
        p.by = p.factor = p.scale_value = sc;
        p.scale_code = std::bit_cast<std::uint32_t>(sc);
        break;
      }
    }
    return p;
  }
};

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

void add_scale(block_stats& st, float factor) {
  if (!(factor > 0) || !std::isfinite(factor)) return;
  st.min_scale = st.scale_binades.empty() ? factor : std::min(st.min_scale, double(factor));
  st.max_scale = std::max(st.max_scale, double(factor));
  ++st.scale_binades[std::ilogb(factor)];
}

}  // namespace

block_quant_result block_quantize(std::span<const float> x, std::size_t rows, std::size_t cols, recipe& r,
                                  operand_role role, block_axis axis) {
  if (rows == 0 || cols == 0 || x.size() / rows != cols || x.size() % rows != 0)
    throw option_error("quantize: " + std::to_string(x.size()) + " values are not " + std::to_string(rows) + " x " +
                       std::to_string(cols));
  block_quant_result out;
  out.rows = rows, out.cols = cols;
  const block_scheme* s = r.scheme();
  const bool rht = s && s->kind == block_scheme::family::nvfp4 && s->rht_wgrad && axis == block_axis::column &&
                   role != operand_role::weight;
  std::vector<float> transformed;
  if (rht) {
    if (rows % 16 != 0)
      throw option_error("nvfp4: the random Hadamard transform needs the reduction dimension (" + std::to_string(rows) +
                         " rows) to be a multiple of 16 (TE's too); give rht=false");
    transformed = rht_columns(x, rows, cols, false);
    x = transformed;
  }
  amax_of tensor;
  {
    // Plain locals, so that the loop keeps them in registers.
    float m = 0;
    bool nan = false;
    for (const float v : x) {
      nan |= std::isnan(v);
      m = std::max(m, std::isnan(v) ? 0.0f : std::fabs(v));
    }
    tensor.fmax = m, tensor.nan = nan;
  }

  // The plan of every block, and the block shape.
  static const block_scheme per_tensor_scheme{};  // per-tensor recipes read none of it
  engine eng{s ? *s : per_tensor_scheme, {}, {}};
  block_plan per_tensor;
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
    std::uint64_t infs = 0, nans = 0;
    float amax = 0;
    for (const float v : x) {
      if (std::isnan(v)) ++nans;
      else if (std::isinf(v)) ++infs;
      else amax = std::max(amax, std::fabs(v));
    }
    const std::uint64_t shape[2] = {rows, cols};
    tensor_meta t{"operand", shape, x.size(), amax, infs, nans, true};
    const float sc = kernel_scale(r.scale(t));
    per_tensor.by = sc;
    per_tensor.factor = per_tensor.scale_value = 1.0f / sc;  // TE stores scale_inv = 1 / scale
    per_tensor.scale_code = std::bit_cast<std::uint32_t>(per_tensor.factor);
    out.block_rows = rows, out.block_cols = cols;
    out.scale_format = fp32_scale_format;
    out.describe = r.describe() + " on " + std::string(eng.elem.name);
  }
  out.element = eng.elem;
  out.scale_rows = (rows + out.block_rows - 1) / out.block_rows;
  out.scale_cols = (cols + out.block_cols - 1) / out.block_cols;
  const std::size_t nblocks = out.scale_rows * out.scale_cols;
  // The element cast's policy resolved once (detail::prepare, the scalar API's own first step),
  // and every code's value and kind in tables: the format has at most 8 bits.
  const auto pk = detail::prepare<std::uint32_t>(eng.elem, eng.pol, eng.pol.round);
  std::array<float, 256> value_of{};
  std::array<std::uint8_t, 256> kind_of{};  // 0 zero, 1 subnormal, 2 normal, 3 inf or NaN
  for (std::uint32_t c = 0; c <= eng.elem.mask(); ++c) {
    value_of[c] = float(decode(c, eng.elem));
    kind_of[c] = eng.elem.is_nonfinite(c) ? 3 : (c & ~eng.elem.sign_mask()) == 0 ? 0 : eng.elem.is_subnormal(c) ? 1 : 2;
  }
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
      block_plan p = per_tensor;
      if (s) {
        float m = 0;
        bool nan = false;
        for (std::size_t i = r0; i < r1; ++i)
          for (std::size_t j = c0; j < c1; ++j) {
            const float v = x[i * cols + j];
            nan |= std::isnan(v);
            m = std::max(m, std::isnan(v) ? 0.0f : std::fabs(v));
          }
        amax_of a;
        a.fmax = m, a.nan = nan;
        p = eng.plan(a);
      }
      const std::size_t b = br * out.scale_cols + bc;
      out.scale_codes[b] = p.scale_code;
      out.scale_values[b] = p.scale_value;
      out.dequant_scale[b] = p.factor;
      ++st.blocks;
      if (std::isnan(p.scale_value)) ++st.nan_scale_blocks;
      add_scale(st, p.factor);
      std::uint64_t nonzero = 0, vanished = 0, clipped = 0;
      std::array<std::uint64_t, cast_class_count> cls{};
      error_sums es;
      for (std::size_t i = r0; i < r1; ++i)
        for (std::size_t j = c0; j < c1; ++j) {
          const std::size_t k = i * cols + j;
          const float v = x[k];
          const float y = p.scaled(v);
          unsigned flags = 0;
          const std::uint32_t code = detail::round_pack<float, true>(detail::to_bits(y), eng.elem, eng.pol.round, pk, k, &flags);
          out.codes[k] = static_cast<std::uint8_t>(code);
          const float d = value_of[code] * p.factor;
          out.dequant[k] = d;
          const int kind = kind_of[code];
          cast_class c;
          if (!std::isfinite(v)) c = cast_class::nonfinite;
          else if (v == 0) c = cast_class::zero;
          else if ((flags & flag_overflow) || !std::isfinite(y) || kind == 3) c = cast_class::overflow;
          else if (kind == 0) c = cast_class::underflow;
          else if (kind == 1) c = cast_class::subnormal;
          else c = cast_class::normal;
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
