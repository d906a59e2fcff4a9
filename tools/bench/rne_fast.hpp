// PROTOTYPE of a nearest-even fast path for bulk float32 -> fp16 / bf16 / e4m3 / e5m2, measured
// by fpscope-bench-convert next to fpscope::encode and checked bit for bit against it over all
// 2^32 inputs (`fpscope-bench-convert --verify-proto`). Not part of the library: this file is
// the body of the patch proposed for lib/ (see tools/bench/README.md, "Vectorisation").
//
// Why it is faster than detail::round_pack: round_pack is general (any format, any mode, any
// policy, a per-lane variable shift d), and in encode_run only the format and the mode are
// constants; the policy fields stay run-time masks. GCC does vectorise the loop (AVX2, 16
// values per iteration) but needs ~185 instructions per 16 values, with spills and constants
// re-broadcast inside the loop (16 ymm registers are not enough). Here, for nearest-even:
//
//   normal results    one integer add does re-bias + round + carry: (a + K + odd) >> (23 - man)
//   subnormal results one float add rounds to the subnormal quantum in hardware:
//                     bits(|x| + 2^(emin - man + 23)) - bits(2^(emin - man + 23))
//                     (F. Giesen's float_to_half_fast3_rtne trick; exact in any MXCSR DAZ/FTZ
//                     state, needs the rounding mode to be nearest: the caller checks fegetround)
//   overflow          min(code, cap): cap is the inf (or NaN) code, or max finite (saturate)
//   NaN (inf for fn)  one select of a per-policy constant (+ sign, + payload bits)
//
// ~20 vector instructions per 8 values instead of ~92. fp16 under the IEEE policy can use F16C
// itself: VCVTPS2PH with an immediate nearest-even mode is bit-identical to policy{} (checked).
#pragma once

#include <cfenv>
#include <cstddef>
#include <cstdint>

#include "fpscope/detail/round_pack.hpp"
#include "fpscope/format.hpp"
#include "fpscope/policy.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace fpscope::proto {

/// The run-time constants of one (format, policy) pair on the fast path.
struct rne_consts {
  std::uint32_t cap;          ///< largest magnitude code of a non-NaN input: inf/NaN code, or max finite
  std::uint32_t nan_or;       ///< NaN code: nan_or | (sign & nan_sign) | ((a >> sh) & nan_payload)
  std::uint32_t nan_sign;
  std::uint32_t nan_payload;
  std::uint32_t daz;          ///< all ones: float32 denormal inputs read as zero (matters for bf16 only)
};

/// Whether the fast path computes exactly what round_pack computes for (f, p).
constexpr bool rne_fast_supported(const format& f, const policy& p) {
  return p.round == rounding::rne && !p.ftz && f.subnormals && f.man_bits < 23 && f.exp_bits <= 8 &&
         (f.specials == special::ieee || f.specials == special::fn) &&
         (p.on_overflow == overflow::infinity || p.saturate_inf);
}

constexpr rne_consts make_rne_consts(const format& f, const policy& p) {
  rne_consts c{};
  const std::uint32_t all_ones = f.mask() & ~f.sign_mask();
  c.cap = p.on_overflow == overflow::saturate ? f.max_finite_bits()
          : f.specials == special::ieee      ? f.inf_bits()
                                             : all_ones;  // fn: overflow is the NaN code, sign kept
  if (f.specials == special::ieee) {
    const bool canonical = p.nan == nan_style::canonical;
    c.nan_or = canonical ? all_ones : f.inf_bits() | (1u << (f.man_bits - 1));
    c.nan_sign = canonical ? 0u : ~0u;
    c.nan_payload = p.nan == nan_style::payload ? (1u << f.man_bits) - 1 : 0u;
  } else {  // fn: the one NaN, sign kept unless canonical; inf inputs become it too
    c.nan_or = all_ones;
    c.nan_sign = p.nan == nan_style::canonical ? 0u : ~0u;
    c.nan_payload = 0;
  }
  c.daz = p.daz ? ~0u : 0u;
  return c;
}

/// One element; F constant, so every shift and constant folds. Branch-free: vectorises.
template <format_id F>
FPSCOPE_INLINE std::uint32_t rne_fast(std::uint32_t x, const rne_consts& c) {
  constexpr format f = builtin(F);
  constexpr int sh = 23 - f.man_bits;
  constexpr std::int32_t inf32 = 0x7F800000;
  std::int32_t a = static_cast<std::int32_t>(x & 0x7FFFFFFFu);
  a &= ~static_cast<std::int32_t>(c.daz & (a < 0x00800000 ? ~0u : 0u));
  const std::uint32_t sign = (x >> (32 - f.bits)) & f.sign_mask();
  // Normal results: re-bias the exponent and round on the sh dropped bits in one add; a carry
  // out of the significand moves into the exponent (and to the inf code) by itself.
  constexpr std::uint32_t k = (static_cast<std::uint32_t>(f.bias - 127) << 23) + ((1u << (sh - 1)) - 1);
  std::uint32_t r = (static_cast<std::uint32_t>(a) + k + ((static_cast<std::uint32_t>(a) >> sh) & 1u)) >> sh;
  if constexpr (f.exp_bits < 8) {
    // Subnormal results (|x| < 2^emin): the FPU rounds |x| + 2^(emin - man + 23) to the
    // subnormal quantum, nearest-even; the difference of the bit patterns is the code.
    constexpr std::int32_t min_normal = (f.emin() + 127) << 23;
    constexpr std::uint32_t magic_bits = static_cast<std::uint32_t>(f.emin() - f.man_bits + 23 + 127) << 23;
    const bool tiny = a < min_normal;
    const float t = detail::from_bits<float>(static_cast<std::uint32_t>(tiny ? a : 0));  // no NaN in the add
    const std::uint32_t s = detail::to_bits(t + detail::from_bits<float>(magic_bits)) - magic_bits;
    r = tiny ? s : r;
  }
  r = r < c.cap ? r : c.cap;
  const bool special = f.specials == special::fn ? a >= inf32 : a > inf32;
  const std::uint32_t nan = c.nan_or | (sign & c.nan_sign) | ((static_cast<std::uint32_t>(a) >> sh) & c.nan_payload);
  return special ? nan : (sign | r);
}

template <format_id F, class Out>
void encode_rne_fast(const float* __restrict in, Out* __restrict out, std::size_t n, const rne_consts c) {
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<Out>(rne_fast<F>(detail::to_bits(in[i]), c));
}

#if defined(__x86_64__) || defined(__i386__)
/// fp16 under policy{} (IEEE, payload NaN, no DAZ/FTZ): the F16C instruction itself. The
/// immediate mode ignores MXCSR.RC; MXCSR.DAZ could only zero float32 denormals, which round
/// to +-0 in fp16 anyway.
[[gnu::target("avx,f16c")]] inline void encode_fp16_f16c(const float* __restrict in, std::uint16_t* __restrict out,
                                                         std::size_t n) {
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128i lo = _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT);
    const __m128i hi = _mm256_cvtps_ph(_mm256_loadu_ps(in + i + 8), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), lo);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i + 8), hi);
  }
  for (; i < n; ++i) out[i] = _cvtss_sh(in[i], _MM_FROUND_TO_NEAREST_INT);
}
inline bool have_f16c() { return __builtin_cpu_supports("f16c") != 0; }
#else
inline void encode_fp16_f16c(const float*, std::uint16_t*, std::size_t) {}
inline bool have_f16c() { return false; }
#endif

inline bool is_ieee_policy(const policy& p) {
  return p.round == rounding::rne && p.nan == nan_style::payload && !p.daz && !p.ftz;  // overflow: inf for fp16 both ways
}

/// The proposed dispatch: true when it handled the call (else the caller runs round_pack).
/// `Out` is the storage word of F. In the library this sits in encode_block, for scale == 1.
template <format_id F, class Out>
bool try_encode_rne_fast(const float* in, Out* out, std::size_t n, const policy& p, bool allow_f16c = true) {
  constexpr format f = builtin(F);
  if (!rne_fast_supported(f, p)) return false;
  if constexpr (F == format_id::fp16) {
    if (allow_f16c && is_ieee_policy(p) && p.on_overflow == overflow::infinity && have_f16c()) {
      encode_fp16_f16c(in, reinterpret_cast<std::uint16_t*>(out), n);
      return true;
    }
  }
  if constexpr (f.exp_bits < 8) {
    if (std::fegetround() != FE_TONEAREST) return false;  // the float add must round to nearest
  }
  encode_rne_fast<F>(in, out, n, make_rne_consts(f, p));
  return true;
}

}  // namespace fpscope::proto
