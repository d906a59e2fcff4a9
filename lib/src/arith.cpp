// Bulk arithmetic (arith_bulk.hpp). The scalar apply (arith.hpp) carries the exact result to
// round_pack as binary64 rounded to odd; this file does the same in SIMD lanes, in binary32
// where that is wide enough for the format (twice the lanes) and in binary64 otherwise, and
// hands each block, rounded to odd at binary32, to the bulk float32 encoder: round_pack again.
//
// Which carrier. The values of every built-in format but e8m0 are binary32 values. The scheme
// of arith.hpp needs, for a format with p significand bits (hidden bit counted) and smallest
// positive value 2^lo, every finite value below 2^hi, and a carrier W with P bits and smallest
// normal 2^wmin:
//   add, sub  nothing more: two-sum's error is exact, with subnormals too;
//   mul, fma  2p <= P (products are exact) and 2 lo >= wmin (none falls below W's normal
//             range, where it would lose bits);
//   div       2p <= P, lo - hi >= wmin (the quotient is normal) and 2 lo - hi >= wmin (the
//             remainder fma(-q, b, a), a multiple of 2^(2 lo - hi - P + 1), is exact);
//   sqrt      2p <= P and lo - P + 1 >= wmin (the remainder fma(-s, s, a) is exact).
// fp16, e4m3, e5m2, their fnuz forms and fp6/fp4 meet all of these in binary32. bf16 and tf32
// (2 lo = -266, -272) add and subtract in binary32; they multiply in binary32 too, with the rare
// products below 2^-126 marked and redone by the scalar path (f32_low); they divide and take
// square roots in binary64, whose result is then rounded to odd at binary32 (narrow_odd): p + 2
// bits or more everywhere in the format's range still, since its quantum is 2^-136 or coarser
// and its overflow threshold (max + half an ulp) lies below FLT_MAX. A result that overflows
// the carrier is inf, which the scalar path also redoes.
// Rounding to odd at p + 2 bits or more and then once more in any deterministic mode equals
// rounding the exact result once (Boldo-Melquiond, cited in arith.hpp). Stochastic rounding
// reads 32 bits below the result, which a binary32 carrier does not keep, so it takes the
// scalar path, as do min/max (selects, not roundings), e8m0 and formats that fit none of this.
//
// Operands or results that are inf or NaN (and division by zero) are left to the scalar apply:
// the vector pass makes them NaN/inf results and a second pass over those rare elements redoes
// them, so NaN and invalid rules stay in one place (arith.hpp).
#include "fpscope/arith_bulk.hpp"

#include "float_encoder.hpp"
#include "fpscope/detail/round_odd.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <type_traits>
#include <stdexcept>
#include <string>

#include <omp.h>

namespace fpscope {
namespace {

using detail::binary;
using detail::from_bits;
using detail::to_bits;

constexpr std::size_t block = 2048;

// How a bulk operation carries its result (the conditions at the top of this file).
enum class carrier {
  none,     // the scalar path
  f32,      // binary32
  f32_low,  // binary32, with products below 2^-126 (inexact there) redone by the scalar path
  f64,      // binary64, narrowed to odd binary32
};

template <class W>
constexpr bool fits(op o, const format& f, bool low_products_ok) {
  constexpr int P = binary<W>::man + 1;
  constexpr int wmin = 1 - binary<W>::bias;
  const int p = f.man_bits + 1;
  const int lo = f.emin() - f.man_bits;
  const int hi = f.emax() + 1;
  switch (o) {
    case op::add:
    case op::sub: return true;  // two-sum's error is exact with subnormals too
    case op::mul:
    case op::fma: return 2 * p <= P && (low_products_ok || 2 * lo >= wmin);
    case op::div: return 2 * p <= P && lo - hi >= wmin && 2 * lo - hi >= wmin;
    case op::sqrt: return 2 * p <= P && lo - P + 1 >= wmin;
    default: return false;
  }
}

constexpr carrier pick_carrier(op o, const format& f, const policy& p) {
  if (p.round == rounding::sr || !f.subnormals || f.specials == special::e8m0 || f.man_bits < 1 ||
      f.exp_bits < 1 || f.exp_bits > 8)
    return carrier::none;
  const int lo = f.emin() - f.man_bits;
  const int hi = f.emax() + 1;
  // The values are float32 values, and (see compute_block) a binary32 rounded to odd keeps p + 2
  // bits everywhere in f's range, its overflow threshold included.
  if (!(f.man_bits + 3 <= 24 && lo >= -147 && hi <= 128)) return carrier::none;
  if (fits<float>(o, f, false)) return carrier::f32;
  if (fits<float>(o, f, true)) return carrier::f32_low;
  if (fits<double>(o, f, false)) return carrier::f64;
  return carrier::none;
}

// Nearest-even needs no rounding to odd for + - * / and sqrt when P >= 2p + 2: rounding to
// nearest at P bits and then at p bits equals rounding once (Figueroa, "When is double
// rounding innocuous?", SIGNUM 1995; the x86 fp16 oracle is exactly this with P = 24).
//
// fma is not covered by that theorem (a*b has 2p bits), but it is innocuous too when
// P >= 3p + 1 and every nonzero |value| 2^lo is at least 2^(hi + 1 - P) (hi: every finite
// value is below 2^hi). Double rounding goes wrong only when the exact x = a*b + c lies within
// 2^(e - P) of a midpoint m of the p-bit grid without being m (e: x's exponent, <= hi for a
// result in range; above the overflow threshold T = max + half an ulp both roundings overflow,
// and x just above T is the case "m = T" below). Take the three ways x can be near m:
//   c dominant, a*b near half a gap: a*b's 2p bits then span 2^(e-p-1) down to 2^(e-3p), so
//     x has at most 3p + 1 bits and P holds it exactly;
//   a*b a midpoint (or T) itself and |c| the tiny rest: |c| < 2^(e - P) <= 2^(hi - P) is
//     below every nonzero value;
//   otherwise x - m is c modulo a*b's quantum: a nonzero multiple of c's quantum (>= 2^lo), or
//     of a*b's (>= 2^(e - 2p)), both above 2^(e - P).
// In binary32 that holds for e4m3 (lo = -9, hi = 9), e4m3fnuz and fp6/fp4, not for e5m2 or
// fp16 (2^-16 and 2^-24 against 2^-7 and 2^-7), which keep the two-sum.
template <class W>
constexpr bool nearest_direct(op o, const format& f, const policy& p) {
  constexpr int P = binary<W>::man + 1;
  const int pf = f.man_bits + 1;
  if (p.round != rounding::rne || P < 2 * pf + 2) return false;
  if (o != op::fma) return true;
  const int lo = f.emin() - f.man_bits, hi = f.emax() + 1;
  return P >= 3 * pf + 1 && lo >= hi + 1 - P;
}

// Codes of f to exact float32 values (every built-in format's values are float32 values): the
// magnitude moved to float32's fraction position and the sign to its sign bit give a float32
// whose exponent field is f's, off by the bias difference, which one exact multiplication by
// a power of two removes (subnormal codes land on float32 subnormals, which the same
// multiplication normalises). inf and NaN codes read as a NaN, so that the result is one and
// the scalar path redoes the element (x / inf = 0 is the one finite result, and exact). Which
// codes those are is format::is_nonfinite's rule, held here as two constants for the lanes.
struct decoder {
  std::uint32_t code_mask;  // the bits of a code (bits above the format's width are ignored, as in apply)
  std::uint32_t mag_mask;   // magnitude bits of a code
  std::uint32_t max_mag;    // magnitudes above this are inf/NaN
  std::uint32_t spec_code;  // the NaN at the negative-zero code (fnuz), else unreachable (~0u)
  std::uint32_t daz_below;  // with DAZ, magnitudes below this (the subnormals) read as zero
  int sign_shift, man_shift;
  float scale;

  constexpr decoder(const format& f, bool daz)
      : code_mask(f.mask()),
        mag_mask(f.mask() & ~f.sign_mask()),
        max_mag(f.max_finite_bits()),
        spec_code(f.sign_mask() && f.is_nonfinite(f.sign_mask()) ? f.sign_mask() : ~0u),
        daz_below(daz ? 1u << f.man_bits : 0u),
        sign_shift(f.bits - 1),
        man_shift(23 - f.man_bits),
        scale(std::bit_cast<float>(std::uint32_t(127 - f.bias + 127) << 23)) {}

  static constexpr bool may_overflow = true;  // see fixed_decoder

  // The value of code c with magnitude bits m (inf/NaN codes aside).
  FPSCOPE_INLINE float value(std::uint32_t c, std::uint32_t m) const {
    return from_bits<float>(((c << (31 - sign_shift)) & 0x80000000u) | (m << man_shift)) * scale;
  }

  FPSCOPE_INLINE float operator()(std::uint32_t c) const {
    c &= code_mask;
    const std::uint32_t m = c & mag_mask;
    const bool special = (m > max_mag) | (c == spec_code);
    const float v = value(c, m < daz_below ? 0u : m);
    return special ? std::numeric_limits<float>::quiet_NaN() : v;
  }
};

// The decoder of a built-in format without DAZ, with every constant known to the compiler
// (masks it can drop, shifts by immediates): the common case, about a third fewer operations.
template <format_id F>
struct fixed_decoder {
  static constexpr decoder d{builtin(F), false};
  // Whether a sum, product or fma of two finite values can overflow binary32 (bf16 only):
  // if not, the round-to-odd step needs no guard against an inf result.
  static constexpr bool may_overflow = 2 * (builtin(F).emax() + 1) + 1 > 128;
  // The built-in formats of this path fill their storage word: no bits to mask off.
  static_assert(builtin(F).bits == 8 * builtin(F).storage_bytes());
  FPSCOPE_INLINE float operator()(std::uint32_t c) const {
    const std::uint32_t m = c & d.mag_mask;
    bool special = false;  // which tests can hold is known here, so only those are made
    if constexpr (d.spec_code != ~0u) special = c == d.spec_code;
    if constexpr (d.max_mag < d.mag_mask) special = special | (m > d.max_mag);
    return special ? std::numeric_limits<float>::quiet_NaN() : d.value(c, m);
  }
};

// The exact sum of x and y rounded to odd, with IEEE's zero sign: an exact zero sum of
// operands that are not both zeros of one sign is +0, or -0 when rounding down.
template <class W, bool Guard = true>
FPSCOPE_INLINE W sum_odd(W x, W y, W zero) {
  const W s = x + y;
  const W bb = s - x;
  const W t = (x - (s - bb)) + (y - bb);
  // (s is 0 with x == y only for two zeros of one sign, where it is their sum already.)
  const bool keep = (s != W(0)) | (to_bits(x) == to_bits(y));
  return detail::round_odd<W, Guard>(keep ? s : zero, t);
}

// o's exact result rounded to odd, or (Direct) rounded to nearest.
template <op O, class W, bool Direct, bool Guard = true>
FPSCOPE_INLINE W exact_odd(W a, W b, W c, W zero) {
  if constexpr (Direct && O == op::add) return a + b;
  if constexpr (Direct && O == op::sub) return a - b;
  if constexpr (Direct && O == op::div) return a / b;
  if constexpr (Direct && O == op::sqrt) return std::sqrt(a);
  if constexpr (Direct && O == op::fma) return a * b + c;  // a * b is exact: one rounding
  if constexpr (O == op::add) return sum_odd<W, Guard>(a, b, zero);
  if constexpr (O == op::sub) return sum_odd<W, Guard>(a, -b, zero);
  if constexpr (O == op::mul) return a * b;
  if constexpr (O == op::fma) return sum_odd<W, Guard>(a * b, c, zero);
  if constexpr (O == op::div) {
    const W q = a / b;
    const W r = std::fma(-q, b, a);
    // a/b - q = r/b: the error's sign is r's times b's (its size does not matter to round_odd).
    return detail::round_odd(q, r == W(0) ? W(0) : from_bits<W>(to_bits(r) ^ (to_bits(b) & to_bits(W(-0.0)))));
  }
  if constexpr (O == op::sqrt) {
    const W s = std::sqrt(a);
    return detail::round_odd(s, std::fma(-s, s, a));
  }
  return a;
}

// One block: the results rounded to odd at binary32 into r; returns whether any of them is
// inf or NaN (an inf or NaN operand, x/0, an overflowing sum, or a Low product), which the
// scalar path redoes.
template <op O, class W, bool Direct, bool Low, class D, class In>
bool compute_block(const In* __restrict a, const In* __restrict b, const In* __restrict c, float* __restrict r,
                   std::size_t n, const D d, const W zero) {
  std::uint32_t top = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const W x = d(a[i]);
    const W y = O == op::sqrt ? W(0) : W(d(b[i]));
    const W z = O == op::fma ? W(d(c[i])) : W(0);
    W v;
    if constexpr (Low) {
      // A nonzero product below 2^-126 (or 0) from nonzero operands lost bits: mark it.
      const W prod = x * y;
      using U = typename binary<W>::bits;
      const U xm = to_bits(x) << 1, ym = to_bits(y) << 1;  // magnitudes: both nonzero iff min != 0
      const U low = U((to_bits(prod) & binary<W>::exp_mask) == 0) & U((xm < ym ? xm : ym) != 0);
      const W pr = from_bits<W>(to_bits(prod) | (U(0) - low));  // all ones: a NaN
      v = O == op::mul ? pr : sum_odd(pr, z, zero);
    } else {
      // Division always keeps the guard (x/0); double carriers never overflow here.
      constexpr bool guard = O == op::div || (D::may_overflow && std::is_same_v<W, float>);
      v = exact_odd<O, W, Direct, guard || !std::is_same_v<W, float>>(x, y, z, zero);
    }
    // A binary64 carrier (bf16, tf32) narrows to odd at binary32: the format's p + 2 bits, its
    // subnormal quantum (2^-133, 2^-136 against 2^-149) and its overflow threshold all lie
    // inside binary32, so the float32 encoder still rounds the exact result once.
    float v32;
    if constexpr (std::is_same_v<W, float>)
      v32 = v;
    else
      v32 = detail::narrow_odd(v);
    const std::uint32_t mag = to_bits(v32) & 0x7FFFFFFFu;
    top = top > mag ? top : mag;
    r[i] = v32;
  }
  return top >= 0x7F800000u;
}

template <op O, class W, bool Direct, bool Low, class D, class In>
void fast_apply(const D d, const In* a, const In* b, const In* c, In* out, std::size_t n, const format& f,
                const policy& p, const bulk_options& opt) {
  const W zero = p.round == rounding::rdn ? W(-0.0) : W(0.0);
  // The operands' DAZ is done (decoder); the carrier's subnormals are results, not inputs.
  policy pack = p;
  pack.daz = false;
  const detail::float_encoder<In> encode_block(f, pack);
  const auto blocks = static_cast<std::ptrdiff_t>((n + block - 1) / block);
  const bool parallel = opt.threads > 1 || (opt.threads == 0 && n >= arith_parallel_threshold);
  const int threads = opt.threads > 0 ? opt.threads : omp_get_max_threads();
#pragma omp parallel for schedule(static) if (parallel) num_threads(threads)
  for (std::ptrdiff_t k = 0; k < blocks; ++k) {
    alignas(64) float r[block];
    const std::size_t lo = std::size_t(k) * block, m = std::min(block, n - lo);
    const In* bk = O == op::sqrt ? a + lo : b + lo;
    const In* ck = O == op::fma ? c + lo : a + lo;
    const bool any = compute_block<O, W, Direct, Low, D, In>(a + lo, bk, ck, r, m, d, zero);
    encode_block(r, out + lo, m);
    if (!any) continue;
    for (std::size_t i = 0; i < m; ++i) {
      if (std::isfinite(r[i])) continue;
      const std::uint32_t x = a[lo + i], y = O == op::sqrt ? 0u : bk[i], z = O == op::fma ? ck[i] : 0u;
      out[lo + i] = static_cast<In>(fpscope::apply(O, x, y, z, f, p, opt.first_index + lo + i));
    }
  }
}

template <class In>
void scalar_apply(op o, const In* a, const In* b, const In* c, In* out, std::size_t n, const format& f,
                  const policy& p, const bulk_options& opt) {
  const auto m = static_cast<std::ptrdiff_t>(n);
  const bool parallel = opt.threads > 1 || (opt.threads == 0 && n >= arith_parallel_threshold / 16);
  const int threads = opt.threads > 0 ? opt.threads : omp_get_max_threads();
#pragma omp parallel for schedule(static, block) if (parallel) num_threads(threads)
  for (std::ptrdiff_t i = 0; i < m; ++i)
    out[i] = static_cast<In>(fpscope::apply(o, a[i], o == op::sqrt ? 0u : b[i], o == op::fma ? c[i] : 0u, f, p,
                                            opt.first_index + std::uint64_t(i)));
}

// Carrier C's fast_apply for operation O, nearest-even taking the direct form where it may.
template <op O, carrier C, class D, class In>
void run_carrier(const D d, const In* a, const In* b, const In* c, In* out, std::size_t n, const format& f,
                 const policy& p, const bulk_options& opt) {
  if constexpr (C == carrier::f32) {
    if (nearest_direct<float>(O, f, p)) return fast_apply<O, float, true, false>(d, a, b, c, out, n, f, p, opt);
    fast_apply<O, float, false, false>(d, a, b, c, out, n, f, p, opt);
  } else if constexpr (C == carrier::f32_low) {
    if constexpr (O == op::mul || O == op::fma) fast_apply<O, float, false, true>(d, a, b, c, out, n, f, p, opt);
  } else if constexpr (C == carrier::f64) {
    if (nearest_direct<double>(O, f, p)) return fast_apply<O, double, true, false>(d, a, b, c, out, n, f, p, opt);
    fast_apply<O, double, false, false>(d, a, b, c, out, n, f, p, opt);
  }
}

// The built-in formats of the common cases get fixed_decoder, with only the carrier their
// operation needs (known at compile time); the rest take the run-time decoder and carrier.
template <op O, format_id F, class In>
bool run_fixed(const In* a, const In* b, const In* c, In* out, std::size_t n, const format& f, const policy& p,
               const bulk_options& opt) {
  constexpr format ff = builtin(F);
  constexpr carrier w = pick_carrier(O, ff, policy{});
  if constexpr (ff.storage_bytes() != sizeof(In) || w == carrier::none) {
    return false;
  } else {
    run_carrier<O, w>(fixed_decoder<F>{}, a, b, c, out, n, f, p, opt);
    return true;
  }
}

template <op O, class In>
void run(carrier w, const In* a, const In* b, const In* c, In* out, std::size_t n, const format& f, const policy& p,
         const bulk_options& opt) {
  if (const auto id = builtin_id(f); id && !p.daz) {
    switch (*id) {
      case format_id::fp16: if (run_fixed<O, format_id::fp16>(a, b, c, out, n, f, p, opt)) return; break;
      case format_id::bf16: if (run_fixed<O, format_id::bf16>(a, b, c, out, n, f, p, opt)) return; break;
      case format_id::e4m3: if (run_fixed<O, format_id::e4m3>(a, b, c, out, n, f, p, opt)) return; break;
      case format_id::e5m2: if (run_fixed<O, format_id::e5m2>(a, b, c, out, n, f, p, opt)) return; break;
      default: break;
    }
  }
  const decoder d(f, p.daz);
  switch (w) {
    case carrier::f32: return run_carrier<O, carrier::f32>(d, a, b, c, out, n, f, p, opt);
    case carrier::f32_low: return run_carrier<O, carrier::f32_low>(d, a, b, c, out, n, f, p, opt);
    case carrier::f64: return run_carrier<O, carrier::f64>(d, a, b, c, out, n, f, p, opt);
    case carrier::none: break;
  }
}

std::string sizes_message(const char* what, std::size_t got, std::size_t want) {
  return std::string("bulk arithmetic: ") + what + " has " + std::to_string(got) + " elements, expected " +
         std::to_string(want);
}

}  // namespace

bool apply_is_vectorised(op o, const format& f, const policy& p) {
  return pick_carrier(o, f, p) != carrier::none;
}

template <class W>
void apply(op o, std::span<const W> a, std::span<const W> b, std::span<const W> c, std::span<W> out,
           const format& f, const policy& p, const bulk_options& opt) {
  using In = W;  // the code word (W is the carrier elsewhere in this file)
  const std::size_t n = out.size();
  if (a.size() != n) throw std::invalid_argument(sizes_message("operand a", a.size(), n));
  if (o != op::sqrt && b.size() != n) throw std::invalid_argument(sizes_message("operand b", b.size(), n));
  if (o == op::fma && c.size() != n) throw std::invalid_argument(sizes_message("operand c", c.size(), n));
  if (static_cast<int>(sizeof(W)) != f.storage_bytes())
    throw std::invalid_argument(std::string("bulk arithmetic: ") + f.name + " is stored in " +
                                std::to_string(f.storage_bytes()) + "-byte words, not " + std::to_string(sizeof(W)));
  if (opt.scale != 1.0) throw std::invalid_argument("bulk arithmetic: bulk_options::scale must be 1");
  // Codes wider than the format are refused, not masked (convert.hpp's check_codes).
  const auto check = [&](const char* which, std::span<const W> v) {
    try {
      check_codes(v, f);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string("operand ") + which + ": " + e.what());
    }
  };
  check("a", a);
  if (o != op::sqrt) check("b", b);
  if (o == op::fma) check("c", c);
  if (n == 0) return;
  if (const carrier w = pick_carrier(o, f, p); w != carrier::none) {
    const In* x = a.data();
    const In* y = b.data();
    const In* z = c.data();
    switch (o) {
      case op::add: return run<op::add>(w, x, y, z, out.data(), n, f, p, opt);
      case op::sub: return run<op::sub>(w, x, y, z, out.data(), n, f, p, opt);
      case op::mul: return run<op::mul>(w, x, y, z, out.data(), n, f, p, opt);
      case op::div: return run<op::div>(w, x, y, z, out.data(), n, f, p, opt);
      case op::sqrt: return run<op::sqrt>(w, x, y, z, out.data(), n, f, p, opt);
      case op::fma: return run<op::fma>(w, x, y, z, out.data(), n, f, p, opt);
      default: break;
    }
  }
  scalar_apply(o, a.data(), b.data(), c.data(), out.data(), n, f, p, opt);
}

#define FPSCOPE_INSTANTIATE(W)                                                                              \
  template void apply<W>(op, std::span<const W>, std::span<const W>, std::span<const W>, std::span<W>, \
                         const format&, const policy&, const bulk_options&);
FPSCOPE_INSTANTIATE(std::uint8_t)
FPSCOPE_INSTANTIATE(std::uint16_t)
FPSCOPE_INSTANTIATE(std::uint32_t)
#undef FPSCOPE_INSTANTIATE

}  // namespace fpscope
