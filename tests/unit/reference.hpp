// An independent model of rounding a binary32/binary64 value into a format: the slow, obvious
// way. All finite codes of the format are enumerated and valued exactly (Boost rationals, see
// ref_exact.hpp), sorted, and a value is rounded by finding its two neighbours in that list and
// choosing by mode. Nothing here shifts significands or looks at how fpscope packs bits.
//
// For speed the sorted values and midpoints are stored as doubles, but only after checking
// (against the rationals) that every one of them is exactly a double: comparing an input
// (float widened to double, or double) with them is then an exact comparison, so the model
// stays exact while a lookup is a binary search over doubles.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fpscope/convert.hpp"
#include "fpscope/format.hpp"
#include "fpscope/policy.hpp"

namespace ref {

/// The finite non-negative values of a format, in ascending order, and facts derived from them.
struct table {
  fpscope::format f;
  std::vector<double> val;          ///< exact values; val[0] is 0 (or 2^-127 for e8m0)
  std::vector<std::uint32_t> code;  ///< the code of val[i] (sign bit clear)
  std::vector<double> mid;          ///< mid[i] = (val[i] + val[i+1]) / 2; mid.back() = (max + next) / 2
  double next;                      ///< the value after max if the exponent were unbounded
  double min_normal;                ///< smallest normal value (e8m0: its smallest value)
  int emin;                         ///< log2(min_normal)
  std::uint32_t sign_bit;           ///< 0 for the unsigned e8m0
  std::uint32_t all_ones;           ///< every bit below the sign set
  std::uint32_t inf_code;           ///< ieee: exponent all ones, fraction 0
  bool has_zero, has_neg_zero, has_subnormals;
  std::size_t n() const { return val.size(); }
  std::uint32_t max_code() const { return code.back(); }
  double max() const { return val.back(); }
};

/// The reference table of a built-in format (built once, thread-safe).
const table& get(fpscope::format_id id);

/// An input value taken apart by the C++ standard library, in its own type.
struct input {
  double value = 0;  ///< exact value (finite inputs)
  bool neg = false, nan = false, inf = false;
  bool subnormal = false;       ///< subnormal in its own type (what DAZ flushes)
  bool signalling = false;      ///< NaN with the quiet bit (top fraction bit) clear
  std::uint64_t payload = 0;    ///< fraction field
  int man = 0;                  ///< fraction bits of the input type
  bool is_float = false;
};
input describe(float x);
input describe(double x);

/// Where a finite value lies among the format's values. Mode-independent, so one lookup
/// serves every rounding mode.
struct located {
  enum kind_t { nan, inf, zero, e8m0_invalid, below, finite, beyond } kind;
  bool neg;
  double a;         ///< |value| (0 after DAZ)
  std::size_t lo;   ///< finite: val[lo] <= a < val[lo+1] (or next)
  bool exact;       ///< a == val[lo]
  int vs_mid;       ///< sign of a - mid[lo]
};
located locate(const table& t, const input& in, bool daz);

struct result {
  std::uint32_t code;
  unsigned flags;  ///< fpscope::flag_* bits
};

/// The reference conversion for the deterministic modes (everything but rounding::sr).
result finish(const table& t, const located& l, const input& in, const fpscope::policy& p);
inline result encode(const table& t, const input& in, const fpscope::policy& p) {
  return finish(t, locate(t, in, p.daz), in, p);
}

/// Index (into val; n() stands for "overflowed") of the rounded magnitude, for a finite located
/// value, with IEEE-style directed modes made relative to the sign.
std::size_t pick(const table& t, const located& l, fpscope::rounding r);

/// The NaN a NaN input becomes (per policy.nan / nan_finite), from the oracle table's formulas.
std::uint32_t nan_code(const table& t, const fpscope::policy& p, bool neg, std::uint64_t payload, int in_man);

/// Whether `a` (> 0), rounded by `r` to the format's precision with an unbounded exponent,
/// is below the smallest normal: IEEE "tiny after rounding".
bool tiny_after_rounding(const table& t, double a, fpscope::rounding r, bool neg);

/// "fp16 rne sat ftz daz" etc. for messages.
std::string describe(const fpscope::format& f, const fpscope::policy& p);
std::string hex(std::uint64_t v);
std::string show(float x);
std::string show(double x);

/// The six deterministic modes, and the 12 (mode x overflow) policies the sweeps use.
inline constexpr fpscope::rounding deterministic_modes[] = {
    fpscope::rounding::rne, fpscope::rounding::rtz, fpscope::rounding::rup,
    fpscope::rounding::rdn, fpscope::rounding::rna, fpscope::rounding::rto};
std::vector<fpscope::policy> mode_overflow_policies(fpscope::policy base = {});

}  // namespace ref
