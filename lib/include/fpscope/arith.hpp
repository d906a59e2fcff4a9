// Arithmetic in any format: add, sub, mul, div, sqrt, fma, min, max, compare, each the exact
// result rounded once, with IEEE flags.
//
// How the exact result is rounded once. Every built-in format's values are binary64 values, and
// the exact result of an operation on them is carried to round_pack in binary64 *rounded to odd*
// (the 53-bit truncation with its last bit set when anything was dropped: detail::round_odd in
// detail/round_odd.hpp). Boldo and Melquiond ("Emulation of FMA and correctly rounded sums:
// proved algorithms using rounding to odd", IEEE TC 2008) prove that rounding to odd at p+k bits
// (k >= 2) followed by any rounding to p bits equals that rounding applied to the exact value;
// binary64 has 53 >= 11 + 2 bits, the widest built-in significand (fp16, tf32) plus two. The
// odd bit also keeps the sticky information for inexact, tininess-after-rounding and stochastic
// rounding (which reads the top 32 dropped bits, far above the odd bit). The binary64 result and
// its rounding direction come from error-free transformations, exact because no intermediate
// overflows or underflows for these formats:
//   add/sub  Knuth's two-sum: s + e == a + b exactly
//   mul      exact: significands of at most 11 bits give products of at most 22 bits
//   div      r = fma(-q, b, a) is the exact remainder, its sign that of a/b - q (times b's)
//   sqrt     r = fma(-s, s, a) likewise
//   fma      exact product, then two-sum
// The host's binary64 arithmetic must round to nearest (the default rounding mode).
//
// NaN results follow the policy's NaN style, so the profiles reproduce real implementations:
// payload (x86 SSE + F16C, SoftFloat's 8086-SSE rules): the first NaN operand, quieted, wins;
// an invalid operation gives the default NaN (negative quiet NaN); quiet: likewise without
// payload bits (torch, ml_dtypes); canonical: the format's canonical NaN (CUDA).
// C++17 and header-only so that the CUDA target can use the same element code.
#pragma once

#include <cmath>
#include <cstdint>

#include "fpscope/detail/round_odd.hpp"
#include "fpscope/detail/round_pack.hpp"
#include "fpscope/format.hpp"
#include "fpscope/policy.hpp"

namespace fpscope {

/// The operations `calc` and the bulk API know.
enum class op : std::uint8_t { add, sub, mul, div, sqrt, fma, min, max };

/// Name and operand count of each operation, in `op` order (the names `calc` and the Python
/// module take).
struct op_info {
  const char* name;
  op o;
  int arity;
};
inline constexpr op_info op_table[] = {{"add", op::add, 2}, {"sub", op::sub, 2},  {"mul", op::mul, 2},
                                       {"div", op::div, 2}, {"sqrt", op::sqrt, 1}, {"fma", op::fma, 3},
                                       {"min", op::min, 2}, {"max", op::max, 2}};

/// Ordering of two codes: less, equal, greater, or unordered (a NaN is involved).
enum class ordering : std::int8_t { less = -1, equal = 0, greater = 1, unordered = 2 };

namespace detail {

/// An operand as binary64, after DAZ (a subnormal reads as zero of its sign).
FPSCOPE_HD inline double operand(std::uint32_t c, const format& f, const policy& p) {
  // (Not c & sign_mask: in fnuz formats that code is the NaN.)
  if (p.daz && f.is_subnormal(c)) return (c & f.sign_mask()) ? -0.0 : 0.0;
  return decode_bits(c, f);
}

/// RN(a + b) and its error, exactly: s + t == a + b (Knuth's two-sum, no overflow here).
FPSCOPE_HD inline double two_sum(double a, double b, double& t) {
  const double s = a + b;
  const double bb = s - a;
  t = (a - (s - bb)) + (b - bb);
  return s;
}

/// The sign an exact zero sum takes: +0, but -0 when rounding down (IEEE 754 6.3).
FPSCOPE_HD inline double zero_sum(double s, double a, double b, rounding rm) {
  if (s != 0 || (a == 0 && b == 0 && std::signbit(a) == std::signbit(b))) return s;
  return rm == rounding::rdn ? -0.0 : 0.0;
}

/// The NaN an invalid operation gives: x86's default NaN, negative and quiet.
FPSCOPE_HD inline double default_nan() { return from_bits<double>(0xFFF8000000000000ull); }

/// Binary64 exact-or-odd result of `o` on a, b, c (c for fma only), with the operation's own
/// flags (invalid, infinite) or-ed into fl. NaN operands are handled by the caller.
FPSCOPE_HD inline double exact_odd(op o, double a, double b, double c, rounding rm, unsigned& fl) {
  double t = 0;
  switch (o) {
    case op::add:
    case op::sub: {
      const double bb = o == op::sub ? -b : b;
      if (std::isinf(a) && std::isinf(bb) && (a < 0) != (bb < 0)) {
        fl |= flag_invalid;
        return default_nan();
      }
      const double s = two_sum(a, bb, t);
      return round_odd(zero_sum(s, a, bb, rm), t);
    }
    case op::mul:
      if ((std::isinf(a) && b == 0) || (a == 0 && std::isinf(b))) {
        fl |= flag_invalid;
        return default_nan();
      }
      return a * b;  // exact
    case op::div: {
      if ((a == 0 && b == 0) || (std::isinf(a) && std::isinf(b))) {
        fl |= flag_invalid;
        return default_nan();
      }
      if (b == 0) {
        if (!std::isinf(a)) fl |= flag_infinite;  // divideByZero needs a finite dividend (IEEE 754 7.3)
        return (std::signbit(a) != std::signbit(b)) ? -INFINITY : INFINITY;
      }
      const double q = a / b;
      if (std::isinf(a) || std::isinf(b) || q == 0) return q;
      const double r = std::fma(-q, b, a);
      // a/b - q = r/b: its sign is r's times b's.
      return round_odd(q, r == 0 ? 0.0 : (r < 0) != (b < 0) ? -1.0 : 1.0);
    }
    case op::sqrt: {
      if (a < 0) {
        fl |= flag_invalid;
        return default_nan();
      }
      const double s = std::sqrt(a);
      if (a == 0 || std::isinf(a)) return s;
      return round_odd(s, std::fma(-s, s, a));
    }
    case op::fma: {
      // The product is exact, so a*b + c is the exact sum of it and c (rounded to odd once).
      const double p = exact_odd(op::mul, a, b, 0, rm, fl);
      return p != p ? p : exact_odd(op::add, p, c, 0, rm, fl);
    }
    case op::min:
    case op::max: break;
  }
  return default_nan();
}

/// The NaN operand result: the first NaN among the operands (quiet, payload kept in binary64;
/// round_pack then applies the policy's NaN style).
FPSCOPE_HD inline double first_nan(const double* v, int n) {
  for (int i = 0; i < n; ++i)
    if (v[i] != v[i]) return v[i];
  return default_nan();
}

}  // namespace detail

/// `o` applied to the codes a, b (and c for fma) of format `f`, rounded once under policy `p`
/// (p.round, or stochastic rounding keyed by (p.seed, index)). IEEE flags are or-ed into
/// *flags when given. sqrt reads `a` alone; min and max are IEEE 754-2008 minNum/maxNum
/// (a quiet NaN operand is ignored; -0 orders below +0).
FPSCOPE_HD inline std::uint32_t apply(op o, std::uint32_t a, std::uint32_t b, std::uint32_t c, const format& f,
                                      const policy& p = {}, std::uint64_t index = 0, unsigned* flags = nullptr) {
  using namespace detail;
  const int arity = o == op::sqrt ? 1 : o == op::fma ? 3 : 2;
  const std::uint32_t code[3] = {a & f.mask(), b & f.mask(), c & f.mask()};
  double v[3] = {0, 0, 0};
  unsigned fl = 0;
  bool any_nan = false;
  for (int i = 0; i < arity; ++i) {
    v[i] = operand(code[i], f, p);
    if (f.is_snan(code[i])) fl |= flag_invalid;
    any_nan = any_nan || v[i] != v[i];
  }
  double r;
  if (o == op::min || o == op::max) {
    // Operands are values of f already: the result is one of them, unrounded (DAZ aside).
    const bool na = v[0] != v[0], nb = v[1] != v[1];
    if (!(na && nb) && !(fl & flag_invalid)) {
      std::uint32_t pick;
      if (na || nb) {
        pick = na ? code[1] : code[0];  // a quiet NaN operand is ignored
      } else if (v[0] != v[1]) {
        pick = (v[0] < v[1]) == (o == op::min) ? code[0] : code[1];
      } else {  // equal: -0 orders below +0; equal signs give a
        const bool sa = std::signbit(v[0]), sb = std::signbit(v[1]);
        pick = (o == op::min ? (sa || !sb) : (!sa || sb)) ? code[0] : code[1];
      }
      if (flags) *flags |= fl;
      if (!(p.daz && f.is_subnormal(pick))) return pick;
      return f.has_negative_zero() ? pick & f.sign_mask() : 0u;  // fnuz: no -0 (0x80 is the NaN)
    }
    r = first_nan(v, 2);  // both NaN, or a signalling one (IEEE 754-2008 minNum/maxNum)
  } else if (any_nan) {
    // 0 x inf + NaN: x86 FMA returns the NaN operand without invalid (so does this profile's
    // first-NaN rule); SoftFloat would raise invalid. IEEE 754 leaves it open.
    r = first_nan(v, arity);
  } else {
    r = exact_odd(o, v[0], v[1], v[2], p.round, fl);
  }
  // round_pack raises invalid for a quiet NaN only in formats without NaN (fp6/fp4), where
  // the result is then not a NaN: right for a NaN result too.
  const std::uint32_t out = round_pack<double, true>(to_bits(r), f, p, index, &fl);
  if (flags) *flags |= fl;
  return out;
}

/// Ordering of a and b (DAZ applies; -0 == +0; any NaN: unordered). A signalling NaN raises
/// invalid, as IEEE 754 compareQuiet* does.
FPSCOPE_HD inline ordering compare(std::uint32_t a, std::uint32_t b, const format& f, const policy& p = {},
                                   unsigned* flags = nullptr) {
  using namespace detail;
  const double x = operand(a & f.mask(), f, p), y = operand(b & f.mask(), f, p);
  if (flags && (f.is_snan(a) || f.is_snan(b))) *flags |= flag_invalid;
  if (x != x || y != y) return ordering::unordered;
  return x < y ? ordering::less : x > y ? ordering::greater : ordering::equal;
}

/// Named forms of apply().
FPSCOPE_HD inline std::uint32_t add(std::uint32_t a, std::uint32_t b, const format& f, const policy& p = {},
                                    std::uint64_t index = 0, unsigned* flags = nullptr) {
  return apply(op::add, a, b, 0, f, p, index, flags);
}
FPSCOPE_HD inline std::uint32_t sub(std::uint32_t a, std::uint32_t b, const format& f, const policy& p = {},
                                    std::uint64_t index = 0, unsigned* flags = nullptr) {
  return apply(op::sub, a, b, 0, f, p, index, flags);
}
FPSCOPE_HD inline std::uint32_t mul(std::uint32_t a, std::uint32_t b, const format& f, const policy& p = {},
                                    std::uint64_t index = 0, unsigned* flags = nullptr) {
  return apply(op::mul, a, b, 0, f, p, index, flags);
}
FPSCOPE_HD inline std::uint32_t div(std::uint32_t a, std::uint32_t b, const format& f, const policy& p = {},
                                    std::uint64_t index = 0, unsigned* flags = nullptr) {
  return apply(op::div, a, b, 0, f, p, index, flags);
}
FPSCOPE_HD inline std::uint32_t sqrt(std::uint32_t a, const format& f, const policy& p = {},
                                     std::uint64_t index = 0, unsigned* flags = nullptr) {
  return apply(op::sqrt, a, 0, 0, f, p, index, flags);
}
FPSCOPE_HD inline std::uint32_t fma(std::uint32_t a, std::uint32_t b, std::uint32_t c, const format& f,
                                    const policy& p = {}, std::uint64_t index = 0, unsigned* flags = nullptr) {
  return apply(op::fma, a, b, c, f, p, index, flags);
}

}  // namespace fpscope
