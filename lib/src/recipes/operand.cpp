// The block-scaled GEMM-operand recipes: mxfp8, mxfp6, mxfp4 (OCP MX; TE MXFP8BlockScaling;
// torchao MXTensor), nvfp4 (TE NVFP4BlockScaling; torchao NVFP4Tensor), fp8-block (TE
// Float8BlockScaling) and deepseek (DeepSeek-V3's tiles). Each row fills a block_scheme
// (fpscope/block_quant.hpp); the arithmetic is block_quant.cpp's. In a gradient replay each
// tensor is counted as an input operand with blocks along its rows (the tensor seen as
// (count / last dimension) x (last dimension)).
#include <cmath>
#include <functional>
#include <vector>

#include "fpscope/block_quant.hpp"
#include "fpscope/block_stats.hpp"
#include "fpscope/scaler.hpp"
#include "recipes.hpp"

namespace fpscope::detail {
namespace {

class operand_recipe final : public recipe {
 public:
  explicit operand_recipe(block_scheme s) : s_(std::move(s)) {}
  std::string describe() const override {
    std::string d = s_.name;
    d.append(" (").append(s_.elem[0].name);
    if (std::string_view(s_.elem[2].name) != s_.elem[0].name) d.append(", grad ").append(s_.elem[2].name);
    d.append(", 1x").append(std::to_string(s_.block)).append(" blocks");
    if (s_.weight_tile) d.append(", weights ").append(std::to_string(s_.weight_tile)).append("x").append(std::to_string(s_.weight_tile));
    switch (s_.kind) {
      case block_scheme::family::mx: {
        static constexpr std::string_view m[] = {"floor", "ceil", "rceil(nvidia)", "even", "rceil"};
        d.append(", E8M0 scale ").append(s_.mx_mode == mx_mode_te ? std::string_view("te") : m[s_.mx_mode]);
        break;
      }
      case block_scheme::family::nvfp4: d.append(s_.torchao ? ", torchao two-level" : ", TE two-level"); break;
      case block_scheme::family::fp32: d.append(s_.pow2 ? ", power-of-two float32 scales" : ", float32 scales"); break;
      case block_scheme::family::deepseek: d.append(s_.ue8m0 ? ", ue8m0 scales" : ", float32 scales"); break;
    }
    if (s_.round == rounding::rna) d.append(", elements ties away");
    if (s_.rht_wgrad) d.append(", 16x16 random Hadamard transform of the wgrad operands");
    if (s_.sr_grad) d.append(", stochastic rounding of grad (seed ").append(std::to_string(s_.seed)).append(")");
    d.append(")");
    return d;
  }
  std::string_view default_format() const override { return s_.elem[0].name; }
  std::string_view default_profile() const override { return "cuda"; }
  void bind(const conversion& c) override {
    if (std::string_view(c.fmt.name) != s_.elem[0].name)
      throw option_error(s_.name + ": the element format is the recipe's (" + s_.elem[0].name +
                         "), not " + quoted(c.fmt.name) + "; choose it with the recipe's keys");
  }
  bool per_block() const override { return true; }
  double scale(const tensor_meta&) override { return 1; }
  bool end_step(std::span<const tensor_meta>, bool) override { return false; }
  const block_scheme* scheme() const override { return &s_; }

  block_counts count_blocks(const tensor_meta& t, std::span<const float> v) override {
    block_counts out;
    if (v.empty()) return out;
    const std::size_t cols = t.shape.empty() ? v.size() : std::max<std::size_t>(std::size_t(t.shape.back()), 1);
    // Power-of-two scales: the block statistics answer the counts and scales exactly (docs/recipes.md
    // "Block statistics") at about the counting pass's cost, where the values path costs 15x it.
    const bool pow2 = s_.kind == block_scheme::family::mx || (s_.kind == block_scheme::family::fp32 && s_.pow2) ||
                      (s_.kind == block_scheme::family::deepseek && s_.ue8m0);
    if (pow2 && v.size() % cols == 0) {
      const block_geometry g{1, std::uint32_t(std::min<std::size_t>(std::size_t(s_.block), cols))};
      const auto st = compute_block_stats(v, v.size() / cols, cols, std::span(&g, 1), 1);
      const auto a = answer_block_stats(st, *this, operand_role::input, block_axis::row);
      if (a.low.counts == a.high.counts && a.low.scale_binades == a.high.scale_binades) {
        out.counts = a.low.counts;
        out.blocks = a.low.blocks;
        // Each factor is 2^binade exactly: the scale multiplies by 1/factor.
        double log_sum = 0;
        std::uint64_t n = 0;
        for (const auto& [b, k] : a.low.scale_binades) log_sum -= double(b) * double(k), n += k;
        out.scale = n ? std::exp2(log_sum / double(n)) : 1;
        return out;
      }
    }
    const auto q = block_quantize(v, v.size() / cols, cols, *this, operand_role::input, block_axis::row);
    out.counts = q.stats.counts;
    out.blocks = q.stats.blocks;
    double log_sum = 0;
    std::uint64_t n = 0;
    for (const float f : q.dequant_scale)
      if (f > 0 && std::isfinite(f)) log_sum -= std::log2(double(f)), ++n;  // the scale multiplies, 1/factor
    out.scale = n ? std::exp2(log_sum / double(n)) : 1;
    return out;
  }

 private:
  block_scheme s_;
};

format fmt(format_id id) { return builtin(id); }

// Keys shared by the MX rows: torchao's to_mx(elem_dtype, block_size, scaling_mode) names.
constexpr std::string_view mx_modes[] = {"te", "floor", "ocp", "ceil", "rceil", "even"};
int mx_mode_of(int choice) {
  switch (choice) {
    case 0: return mx_mode_te;
    case 1:
    case 2: return int(mx_rounding::floor);  // the OCP MX v1.0 rule is torchao's FLOOR
    case 3: return int(mx_rounding::ceil);
    case 4: return int(mx_rounding::rceil_torchao);
    default: return int(mx_rounding::even);
  }
}

struct mx_options {
  std::string_view name;
  std::vector<format_id> elems;  // the first is the default
  int mode;                      // index into mx_modes
  int elem = 0, block = 32, ties_away = 0;
};

std::vector<spec_key> mx_keys(mx_options& o) {
  std::vector<std::string_view> names;
  for (const auto id : o.elems) names.push_back(builtin(id).name);
  std::vector<spec_key> k{
      {{"scaling_mode", "mode"}, spec_key::kind::choice,
       set_choice(o.name, "scaling_mode", o.mode, {mx_modes[0], mx_modes[1], mx_modes[2], mx_modes[3], mx_modes[4], mx_modes[5]}),
       "te|floor|ocp|ceil|rceil|even"},
      {{"block_size"}, spec_key::kind::integer, set_integer(o.name, "block_size", o.block, 1, 1 << 20), "32"},
      {{"rounding"}, spec_key::kind::choice, set_choice(o.name, "rounding", o.ties_away, {"rne", "rna"}), "rne|rna"}};
  if (names.size() > 1)
    k.push_back({{"elem_dtype", "elem"}, spec_key::kind::choice, set_choice(o.name, "elem_dtype", o.elem, names),
                 o.elems[0] == format_id::e4m3 ? "e4m3|e5m2" : "e2m3|e3m2"});
  return k;
}

template <int Which>
mx_options mx_defaults() {
  // mxfp8 defaults to TE's MXFP8BlockScaling; mxfp6 and mxfp4 to the OCP rule (torchao's default).
  if constexpr (Which == 8) return {"mxfp8", {format_id::e4m3, format_id::e5m2}, 0};
  else if constexpr (Which == 6) return {"mxfp6", {format_id::e2m3, format_id::e3m2}, 1};
  else return {"mxfp4", {format_id::e2m1}, 1};
}

template <int Which>
std::string mx_keys_text() {
  auto o = mx_defaults<Which>();
  return describe_keys(mx_keys(o));
}
template <int Which>
std::unique_ptr<recipe> make_mx(std::string_view name, std::string_view rest) {
  auto o = mx_defaults<Which>();
  parse_spec_keys(name, rest, mx_keys(o));
  block_scheme s;
  s.kind = block_scheme::family::mx;
  s.name = std::string(name);
  const format e = fmt(o.elems[std::size_t(o.elem)]);
  s.elem[0] = s.elem[1] = s.elem[2] = e;
  s.block = o.block;
  s.mx_mode = mx_mode_of(o.mode);
  s.round = o.ties_away ? rounding::rna : rounding::rne;
  return std::make_unique<operand_recipe>(s);
}

// A key holding a finite float32 >= 0 (an amax epsilon or floor).
std::function<void(std::string_view)> set_nonnegative(const char* policy, const char* key, double& out) {
  return [policy, key, &out](std::string_view v) {
    out = parse_number(v, std::string(policy) + ": " + key);
    if (!(out >= 0) || !std::isfinite(float(out)))
      throw option_error(std::string(policy) + ": " + key + " must be a finite float32 >= 0, not " + quoted(v));
  };
}

// ---- nvfp4 ----
struct nvfp4_options {
  int impl = 0;  // te, torchao
  bool two_d = true, sr = true, rht = true;
  int seed = 0;
};
std::vector<spec_key> keys(nvfp4_options& o) {
  // TE NVFP4BlockScaling's switches (recipe/__init__.py lines 527-562: disable_rht,
  // disable_stochastic_rounding, disable_2d_quantization), stated positively.
  return {{{"profile", "impl"}, spec_key::kind::choice, set_choice("nvfp4", "profile", o.impl, {"te", "torchao"}), "te|torchao"},
          {{"2d_quantization", "2d"}, spec_key::kind::boolean, set_boolean("nvfp4", "2d_quantization", o.two_d)},
          {{"stochastic_rounding", "sr"}, spec_key::kind::boolean, set_boolean("nvfp4", "stochastic_rounding", o.sr)},
          {{"random_hadamard_transform", "rht"}, spec_key::kind::boolean,
           set_boolean("nvfp4", "random_hadamard_transform", o.rht)},
          {{"seed"}, spec_key::kind::integer, set_integer("nvfp4", "seed", o.seed, 0, 1LL << 31), "0"}};
}
std::unique_ptr<recipe> make_nvfp4(std::string_view name, std::string_view rest) {
  nvfp4_options o;
  parse_spec_keys(name, rest, keys(o));
  block_scheme s;
  s.kind = block_scheme::family::nvfp4;
  s.name = "nvfp4";
  s.elem[0] = s.elem[1] = s.elem[2] = fmt(format_id::e2m1);
  s.block = 16;
  s.torchao = o.impl == 1;
  // torchao's NVFP4Tensor has 1x16 blocks and nearest rounding only.
  s.weight_tile = o.two_d && !s.torchao ? 16 : 0;
  s.sr_grad = o.sr && !s.torchao;
  s.rht_wgrad = o.rht && !s.torchao;
  s.seed = std::uint64_t(o.seed);
  return std::make_unique<operand_recipe>(s);
}

// ---- fp8-block ----
struct fp8_block_options {
  int format = 0;  // e4m3, hybrid
  bool pow2 = true;
  double eps = 0;
  int w_dim = 2;
};
std::vector<spec_key> keys(fp8_block_options& o) {
  // TE Float8BlockScaling(fp8_format, x/w/grad_block_scaling_dim) and its QParams
  // (power_2_scale, amax_epsilon): recipe/__init__.py lines 400-460.
  return {{{"fp8_format", "format"}, spec_key::kind::choice, set_choice("fp8-block", "fp8_format", o.format, {"e4m3", "hybrid"}), "e4m3|hybrid"},
          {{"power_2_scale", "pow2"}, spec_key::kind::boolean, set_boolean("fp8-block", "power_2_scale", o.pow2)},
          {{"amax_epsilon"}, spec_key::kind::number, set_nonnegative("fp8-block", "amax_epsilon", o.eps), "0"},
          {{"w_block_scaling_dim"}, spec_key::kind::integer, set_integer("fp8-block", "w_block_scaling_dim", o.w_dim, 1, 2), "2"}};
}
std::unique_ptr<recipe> make_fp8_block(std::string_view name, std::string_view rest) {
  fp8_block_options o;
  parse_spec_keys(name, rest, keys(o));
  block_scheme s;
  s.kind = block_scheme::family::fp32;
  s.name = "fp8-block";
  s.elem[0] = s.elem[1] = fmt(format_id::e4m3);
  s.elem[2] = fmt(o.format ? format_id::e5m2 : format_id::e4m3);
  s.block = 128;
  s.weight_tile = o.w_dim == 2 ? 128 : 0;
  s.pow2 = o.pow2;
  s.eps = o.eps;
  return std::make_unique<operand_recipe>(s);
}

// ---- deepseek ----
struct deepseek_options {
  bool ue8m0 = false;
  double floor = 1e-4;
};
std::vector<spec_key> keys(deepseek_options& o) {
  return {{{"scale_fmt_ue8m0", "ue8m0"}, spec_key::kind::boolean, set_boolean("deepseek", "scale_fmt_ue8m0", o.ue8m0)},
          {{"amax_floor", "eps"}, spec_key::kind::number, set_nonnegative("deepseek", "amax_floor", o.floor), "1e-4"}};
}
std::unique_ptr<recipe> make_deepseek(std::string_view name, std::string_view rest) {
  deepseek_options o;
  parse_spec_keys(name, rest, keys(o));
  block_scheme s;
  s.kind = block_scheme::family::deepseek;
  s.name = "deepseek";
  s.elem[0] = s.elem[1] = s.elem[2] = fmt(format_id::e4m3);
  s.block = 128;
  s.weight_tile = 128;
  s.ue8m0 = o.ue8m0;
  s.eps = float(o.floor);
  return std::make_unique<operand_recipe>(s);
}

}  // namespace

const entry mxfp8_entry{"mxfp8", "OCP MX / TE MXFP8BlockScaling on GEMM operands: E8M0 scale per 32 along the reduction dim",
                        "scaling_mode te is TE's (fmaxf amax, float_to_e8m0 of amax * (1/max), saturating); floor = "
                        "ocp = torchao FLOOR; ceil, even and rceil are torchao's to_mx modes",
                        &mx_keys_text<8>, &make_mx<8>};
const entry mxfp6_entry{"mxfp6", "OCP MX FP6 (e2m3|e3m2) on GEMM operands", "as mxfp8", &mx_keys_text<6>, &make_mx<6>};
const entry mxfp4_entry{"mxfp4", "OCP MX FP4 (e2m1) on GEMM operands", "as mxfp8", &mx_keys_text<4>, &make_mx<4>};
const entry nvfp4_entry{"nvfp4", "NVFP4: E2M1, E4M3 scale per 16, float32 tensor scale (TE or torchao)",
                        "profile te: transformer_engine/common/cast/nvfp4 (weights 16x16, stochastic rounding of grad); "
                        "profile torchao: torchao nvfp4_quantize two-level, 1x16 only; the random Hadamard transform "
                        "(TE's signs and H16) is the exact sum rounded to float32",
                        &keys_text<nvfp4_options>, &make_nvfp4};
const entry fp8_block_entry{"fp8-block", "TE Float8BlockScaling: 1x128 tiles, 128x128 weights, float32 scales",
                            "compute_scale_from_types per tile (scaler.cpp block_scale); the tile amax over its finite elements",
                            &keys_text<fp8_block_options>, &make_fp8_block};
const entry deepseek_entry{"deepseek", "DeepSeek-V3: E4M3, 1x128 activation tiles, 128x128 weight blocks, s = amax/448",
                           "inference/kernel.py act_quant_kernel arithmetic (x / s) for every tile",
                           &keys_text<deepseek_options>, &make_deepseek};

}  // namespace fpscope::detail
