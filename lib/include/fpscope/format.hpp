// Formats as data: one struct describes every encoding the engine handles.
// C++17 and __host__ __device__-clean: the CUDA target includes this header.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "fpscope/detail/config.hpp"

namespace fpscope {

/// How a format spends its top exponent code (and sign) on inf and NaN.
enum class special : std::uint8_t {
  ieee,    ///< all-ones exponent: inf (mantissa 0) and NaN (mantissa != 0)
  fn,      ///< OCP "fn": no inf, NaN only at S.1111.111 (all ones)
  fnuz,    ///< no inf, no negative zero, the single NaN is 0x80 (sign bit alone)
  finite,  ///< no inf, no NaN: every code is a number (OCP FP6/FP4)
  e8m0,    ///< unsigned power of two, no zero, 0xFF is NaN (OCP MX scale)
};

/// A binary floating-point format. Values live as packed bits in the low `bits` bits.
struct format {
  const char* name;
  int bits;        ///< total width, sign included
  int exp_bits;
  int man_bits;    ///< stored fraction bits (the hidden bit is not counted)
  int bias;
  special specials;
  bool subnormals;  ///< exponent code 0 encodes subnormals (false only for e8m0)

  FPSCOPE_HD constexpr bool is_signed() const { return specials != special::e8m0; }
  FPSCOPE_HD constexpr bool has_inf() const { return specials == special::ieee; }
  FPSCOPE_HD constexpr bool has_nan() const { return specials != special::finite; }
  FPSCOPE_HD constexpr bool has_negative_zero() const {
    return specials != special::fnuz && specials != special::e8m0;
  }
  FPSCOPE_HD constexpr std::uint32_t sign_mask() const {
    return is_signed() ? std::uint32_t{1} << (bits - 1) : 0u;
  }
  FPSCOPE_HD constexpr std::uint32_t mask() const {
    return bits == 32 ? ~0u : (std::uint32_t{1} << bits) - 1;
  }
  /// Exponent of the smallest normal (e8m0: its smallest value, code 0).
  FPSCOPE_HD constexpr int emin() const { return subnormals ? 1 - bias : -bias; }
  /// Magnitude bits of the largest finite value.
  FPSCOPE_HD constexpr std::uint32_t max_finite_bits() const {
    const std::uint32_t mag = mask() & ~sign_mask();
    switch (specials) {
      case special::ieee: return (mag >> man_bits << man_bits) - 1;  // below the inf code
      case special::fn: return mag - 1;                              // below S.1111.111
      case special::e8m0: return mag - 1;                            // below 0xFF
      default: return mag;                                           // fnuz, finite
    }
  }
  /// Magnitude bits of +inf (only meaningful when has_inf()).
  FPSCOPE_HD constexpr std::uint32_t inf_bits() const { return max_finite_bits() + 1; }

  // THE recognition of the special codes, for every decoder (scalar, bulk, SIMD lanes). A code's
  // bits above `bits` are ignored. Every infinite or NaN code has a magnitude above
  // max_finite_bits() (IEEE: inf_bits() and up; "fn": S.1111.111; e8m0: 0xFF), except the fnuz
  // NaN, which is the negative-zero code: the sign bit alone.

  /// Whether code c is an infinity or a NaN.
  FPSCOPE_HD constexpr bool is_nonfinite(std::uint32_t c) const {
    c &= mask();
    return (c & ~sign_mask()) > max_finite_bits() || (specials == special::fnuz && c == sign_mask());
  }
  /// Whether code c is +inf or -inf.
  FPSCOPE_HD constexpr bool is_inf(std::uint32_t c) const {
    return has_inf() && (c & mask() & ~sign_mask()) == inf_bits();
  }
  /// Whether code c is a NaN.
  FPSCOPE_HD constexpr bool is_nan(std::uint32_t c) const { return is_nonfinite(c) && !is_inf(c); }
  /// Whether code c is a signalling NaN: IEEE-style formats only, quiet bit (top fraction bit) clear.
  FPSCOPE_HD constexpr bool is_snan(std::uint32_t c) const {
    return specials == special::ieee && is_nan(c) && !(c & (std::uint32_t{1} << (man_bits - 1)));
  }
  /// Whether code c is a subnormal (nonzero, exponent field 0, in a format with subnormals).
  FPSCOPE_HD constexpr bool is_subnormal(std::uint32_t c) const {
    const std::uint32_t mag = c & mask() & ~sign_mask();
    return subnormals && mag != 0 && mag < (std::uint32_t{1} << man_bits) && !is_nonfinite(c);
  }
  /// Largest finite exponent.
  FPSCOPE_HD constexpr int emax() const {
    return int(max_finite_bits() >> man_bits) - bias;
  }
  /// Bytes of the storage word (uint8_t, uint16_t or uint32_t).
  FPSCOPE_HD constexpr int storage_bytes() const { return bits <= 8 ? 1 : bits <= 16 ? 2 : 4; }
};

/// The built-in formats, in the order they are listed by `fpscope formats`.
enum class format_id : std::uint8_t {
  fp16, bf16, tf32, e4m3, e5m2, e4m3fnuz, e5m2fnuz, e2m3, e3m2, e2m1, e8m0
};
inline constexpr int builtin_count = 11;

/// The built-in format with this id.
FPSCOPE_HD constexpr format builtin(format_id id) {
  switch (id) {
    case format_id::fp16: return {"fp16", 16, 5, 10, 15, special::ieee, true};
    case format_id::bf16: return {"bf16", 16, 8, 7, 127, special::ieee, true};
    case format_id::tf32: return {"tf32", 19, 8, 10, 127, special::ieee, true};
    case format_id::e4m3: return {"e4m3", 8, 4, 3, 7, special::fn, true};
    case format_id::e5m2: return {"e5m2", 8, 5, 2, 15, special::ieee, true};
    case format_id::e4m3fnuz: return {"e4m3fnuz", 8, 4, 3, 8, special::fnuz, true};
    case format_id::e5m2fnuz: return {"e5m2fnuz", 8, 5, 2, 16, special::fnuz, true};
    case format_id::e2m3: return {"e2m3", 6, 2, 3, 1, special::finite, true};
    case format_id::e3m2: return {"e3m2", 6, 3, 2, 3, special::finite, true};
    case format_id::e2m1: return {"e2m1", 4, 2, 1, 1, special::finite, true};
    case format_id::e8m0: return {"e8m0", 8, 8, 0, 127, special::e8m0, false};
  }
  return {"fp16", 16, 5, 10, 15, special::ieee, true};
}

/// The id of a built-in format by name or alias ("fp16", "half", "float8_e4m3fn", "fp4", ...).
std::optional<format_id> find_format(std::string_view name);

/// The id of the built-in format `f` is the same encoding as (its name aside), if any.
std::optional<format_id> builtin_id(const format& f);

/// Comma-separated list of built-in names, for error messages and --help.
std::string_view format_names();

/// A format's figures, as `fpscope formats` prints them and Python's fpscope.format_info returns
/// them. The layout is the struct's; every other figure is found by decoding codes (facts_of
/// walks all 2^bits of them), none typed in.
struct format_facts {
  std::string name;
  int bits = 0, exponent_bits = 0, mantissa_bits = 0, bias = 0;
  std::optional<double> min_subnormal;  ///< smallest positive value; none without subnormals (e8m0)
  double min_normal = 0;                ///< smallest positive normal (e8m0: its smallest value)
  double max_finite = 0;
  std::uint32_t max_finite_bits = 0;    ///< the code of max_finite
  double epsilon = 0;                   ///< gap between 1 and the next larger value
  double decimal_digits = 0;            ///< (mantissa bits + 1) * log10(2)
  double binades = 0;                   ///< log2(max finite / smallest positive)
  int emin = 0, emax = 0;               ///< exponents of min_normal and of max_finite
  bool has_inf = false, has_nan = false, has_subnormals = false, has_negative_zero = false;
  bool is_signed = false;               ///< has negative values (key "signed")
  std::uint32_t nan_codes = 0, finite_codes = 0;
  int storage_bytes = 0;                ///< bytes of the word a code is stored in
  std::string specials;                 ///< summary: "+-inf, 2046 NaN", "no inf, 2 NaN", ...
};

format_facts facts_of(const format& f);

/// Calls visit(key, value) for every fact: THE key names of `fpscope formats --json` and of
/// Python's format_info dict (and fpscope.Format's fields). A value is a std::string, int,
/// std::uint32_t, double, bool or std::optional<double> (empty: JSON null, Python None).
template <class Visit>
void for_each_fact(const format_facts& r, Visit&& visit) {
  visit("name", r.name);
  visit("bits", r.bits);
  visit("exponent_bits", r.exponent_bits);
  visit("mantissa_bits", r.mantissa_bits);
  visit("bias", r.bias);
  visit("min_subnormal", r.min_subnormal);
  visit("min_normal", r.min_normal);
  visit("max_finite", r.max_finite);
  visit("max_finite_bits", r.max_finite_bits);
  visit("epsilon", r.epsilon);
  visit("decimal_digits", r.decimal_digits);
  visit("binades", r.binades);
  visit("emin", r.emin);
  visit("emax", r.emax);
  visit("has_inf", r.has_inf);
  visit("has_nan", r.has_nan);
  visit("has_subnormals", r.has_subnormals);
  visit("has_negative_zero", r.has_negative_zero);
  visit("signed", r.is_signed);
  visit("nan_codes", r.nan_codes);
  visit("finite_codes", r.finite_codes);
  visit("storage_bytes", r.storage_bytes);
  visit("specials", r.specials);
}

}  // namespace fpscope
