// The per-block arithmetic of the block-scaled recipes, shared by the values path
// (block_quant.cpp: every element cast) and the statistics path (block_stats.cpp: the same plans
// and the same cast evaluated at the corners of each histogram cell): one concept, one place.
// Private to lib/src.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "fpscope/block_quant.hpp"
#include "fpscope/convert.hpp"
#include "fpscope/histogram.hpp"
#include "fpscope/recipe.hpp"
#include "fpscope/scaler.hpp"

namespace fpscope::detail {

inline constexpr float flt_max = std::numeric_limits<float>::max();
inline const format e4m3 = builtin(format_id::e4m3);
inline const format e8m0 = builtin(format_id::e8m0);

// cuda_fp8.h's __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3): what static_cast<fp8e4m3>
// does in TE kernels (nearest-even, NaN to 0x7F, overflow and inf to +-448).
inline std::uint32_t to_e4m3_satfinite(float v) { return encode(v, e4m3, profile_policy(profile::cuda, e4m3)); }

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

// What a whole operand contributes before its blocks: the amax as each upstream reduces it and,
// for per-tensor recipes, what tensor_meta carries.
struct tensor_summary {
  float finite_amax = 0;  // max |x| over finite x
  std::uint64_t infs = 0, nans = 0;
  amax_of amax() const { return {infs ? std::numeric_limits<float>::infinity() : finite_amax, nans != 0}; }
};

// Everything about quantizing an operand that does not depend on its blocks: the engine (the
// recipe's scheme, element format and cast policy, NVFP4's tensor scales), a per-tensor recipe's
// one plan, the block shape. block_quantize and answer() both start here.
struct operand_setup {
  explicit operand_setup(const block_scheme& s) : eng{s, {}, {}} {}
  engine eng;
  bool blocked = false;   // a block_scheme recipe (else per-tensor: `per_tensor` everywhere)
  block_plan per_tensor;
  std::size_t block_rows = 1, block_cols = 1;
  format scale_format{};
  double tensor_scale = 1;
  std::string describe;
  bool rht = false;       // NVFP4's random Hadamard transform applies to this operand
};
// Adds n blocks of dequantization factor `factor` to the scale statistics (positive finite ones).
inline void add_scale(block_stats& st, float factor, std::uint64_t n = 1) {
  if (!(factor > 0) || !std::isfinite(factor)) return;
  st.min_scale = st.scale_binades.empty() ? factor : std::min(st.min_scale, double(factor));
  st.max_scale = std::max(st.max_scale, double(factor));
  st.scale_binades[std::ilogb(factor)] += n;
}

// Whether NVFP4's random Hadamard transform applies to the operand (the wgrad operands).
inline bool transforms(const block_scheme* s, operand_role role, block_axis axis) {
  return s && s->kind == block_scheme::family::nvfp4 && s->rht_wgrad && axis == block_axis::column &&
         role != operand_role::weight;
}
operand_setup setup_operand(recipe& r, operand_role role, block_axis axis, std::size_t rows, std::size_t cols,
                            const tensor_summary& t);

// The element cast of an operand: the policy resolved once (detail::prepare, the scalar API's
// own first step), every code's value and kind in tables (the format has at most 8 bits), and
// the class docs/hist.md gives an input v whose scaled value is y.
struct element_cast {
  format elem;
  rounding round;
  packer<std::uint32_t> pk;
  std::array<float, 256> value_of{};
  std::array<std::uint8_t, 256> kind_of{};  // 0 zero, 1 subnormal, 2 normal, 3 inf or NaN
  element_cast(const format& f, const policy& pol) : elem(f), round(pol.round), pk(prepare<std::uint32_t>(f, pol, pol.round)) {
    for (std::uint32_t c = 0; c <= f.mask(); ++c) {
      value_of[c] = float(decode(c, f));
      kind_of[c] = f.is_nonfinite(c) ? 3 : (c & ~f.sign_mask()) == 0 ? 0 : f.is_subnormal(c) ? 1 : 2;
    }
  }
  struct result {
    std::uint32_t code;
    cast_class cls;
  };
  // `k` keys stochastic rounding (the element's index), as fpscope::encode's bulk path does.
  result operator()(float v, float y, std::size_t k) const {
    unsigned flags = 0;
    const std::uint32_t code = round_pack<float, true>(to_bits(y), elem, round, pk, k, &flags);
    const int kind = kind_of[code];
    cast_class c;
    if (!std::isfinite(v)) c = cast_class::nonfinite;
    else if (v == 0) c = cast_class::zero;
    else if ((flags & flag_overflow) || !std::isfinite(y) || kind == 3) c = cast_class::overflow;
    else if (kind == 0) c = cast_class::underflow;
    else if (kind == 1) c = cast_class::subnormal;
    else c = cast_class::normal;
    return {code, c};
  }
};

}  // namespace fpscope::detail
