// Exact arithmetic side of the independent reference: codes taken apart by their fields and
// valued as Boost rationals, written from IEEE 754 / OCP definitions (never from fpscope's
// decode). Kept out of reference.hpp so that only the files that need Boost include it.
#pragma once

#include <boost/multiprecision/cpp_int.hpp>
#include <cstdint>
#include <optional>

#include "fpscope/arith.hpp"  // the op enumeration only
#include "fpscope/format.hpp"
#include "reference.hpp"

namespace ref {

using rational = boost::multiprecision::cpp_rational;

enum class cls { zero, subnormal, normal, infinite, nan };

/// One code of a format, taken apart per the standard's definition.
struct code_info {
  cls c;
  bool neg;        ///< sign bit (false for e8m0, which has none)
  rational value;  ///< exact signed value of finite codes; 0 for inf and NaN
};

/// 2^e exactly.
rational pow2(int e);

/// The exact value of a finite double (every finite double is a dyadic rational).
rational exact(double d);

/// `r` as a double; throws std::logic_error unless r is exactly representable.
double to_double_exact(const rational& r);

/// Sign, exponent field E and fraction field M of `code`, valued as
///   normal:    (-1)^s * 2^(E-bias) * (1 + M/2^p)
///   subnormal: (-1)^s * 2^(1-bias) * M/2^p          (E == 0)
///   e8m0:      2^(E-127), 0xFF NaN, no sign, no zero
/// with inf/NaN per style: ieee E all ones; fn only S.1111.111 NaN; fnuz only 0x80 NaN;
/// finite none.
code_info decode_fields(std::uint32_t code, const fpscope::format& f);

}  // namespace ref

// ---------------------------------------------------------------------------------------------
// Arithmetic: the exact result of an operation on codes, as a rational (or the square root of
// one), rounded by locating it among the format's values with exact comparisons only. Written
// from IEEE 754 (6.1, 6.2, 6.3, 7.2-7.4) and the policy's documented NaN rules, not from
// fpscope's arithmetic: nothing here uses binary64 arithmetic for a value that decides a result.

namespace ref {

/// |x| of an exact result: v itself, or sqrt(v) when `root` (v > 0). Square roots are never
/// formed: |x| is compared with a rational q >= 0 by comparing v with q^2.
struct magnitude {
  rational v;
  bool root = false;
  boost::multiprecision::cpp_int num, den;  ///< v's numerator and denominator (set by set())
  void set(rational value, bool is_root);
  /// The sign of |x| - q, exactly (q >= 0).
  int cmp(const rational& q) const;
  /// The same for a finite double q >= 0, in integers (no rational normalisation: fast).
  int cmp(double q) const;
  /// A double near |x|: only a starting point for searches, never a decision.
  double approx() const;
};

/// The exact result of an operation, before rounding.
struct exact_result {
  enum kind_t { nan, invalid, inf, zero, finite } kind = finite;
  bool neg = false;            ///< the sign (inf, zero, finite)
  bool sum_zero = false;       ///< zero: an exact zero sum, +0 in every mode but rdn (-0) (IEEE 754 6.3)
  std::uint32_t nan_from = 0;  ///< nan: the code of the first NaN operand, which the result quiets
  unsigned flags = 0;          ///< raised by the operation itself: invalid, infinite (division by zero)
  magnitude m;                 ///< finite: |x|
};

/// The exact result of `o` on the codes a, b, c (b for two-operand ops, c for fma) of the table's
/// format; DAZ reads subnormal operands as zeros of their sign. min/max: see min_max().
exact_result exact_op(const table& t, fpscope::op o, std::uint32_t a, std::uint32_t b, std::uint32_t c, bool daz);

/// An exact result with its place among the format's values (mode independent: one lookup
/// serves every policy).
struct exact_located {
  exact_result x;
  located l;  ///< finite results: kind below / finite / beyond, lo, exact, vs_mid
};
exact_located locate(const table& t, exact_result x);

/// The rounded result and flags under p (deterministic modes only).
result finish(const table& t, const exact_located& xl, const fpscope::policy& p);
inline result round_op(const table& t, fpscope::op o, std::uint32_t a, std::uint32_t b, std::uint32_t c,
                       const fpscope::policy& p) {
  return finish(t, locate(t, exact_op(t, o, a, b, c, p.daz)), p);
}

/// IEEE "tiny after rounding" for an exact magnitude (rounded to the format's precision with an
/// unbounded exponent, it is below the smallest normal).
bool tiny_after_rounding(const table& t, const magnitude& m, fpscope::rounding r, bool neg);

/// floor(f * 2^32), f = (|x| - lo) / (hi - lo) the place of |x| between two values lo <= |x| < hi
/// (stochastic rounding's documented input), found by exact comparisons.
std::uint64_t fraction32(const magnitude& m, const rational& lo, const rational& hi);

/// IEEE 754-2008 minNum / maxNum (-0 below +0; a quiet NaN operand ignored; both NaN, or any
/// signalling NaN: invalid for the signalling one and the first NaN operand quieted). DAZ
/// reads a subnormal operand as the zero of its sign, also as the result.
result min_max(const table& t, bool is_max, std::uint32_t a, std::uint32_t b, const fpscope::policy& p);

/// compareQuiet: -1 less, 0 equal, 1 greater, 2 unordered; invalid for a signalling NaN.
result compare(const table& t, std::uint32_t a, std::uint32_t b, const fpscope::policy& p);

/// The code of a finite value of the format (sign included), if it has one.
std::optional<std::uint32_t> code_of(const table& t, double v);

/// Whether `code` is a NaN / a signalling NaN (IEEE formats: quiet bit = top fraction bit clear).
bool is_nan(const table& t, std::uint32_t code);
bool is_snan(const table& t, std::uint32_t code);

}  // namespace ref
