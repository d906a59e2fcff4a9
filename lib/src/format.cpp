#include "fpscope/format.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <string>

#include "fpscope/convert.hpp"

namespace fpscope {
namespace {

struct alias {
  std::string_view name;
  format_id id;
};

// Lower-case names a user may type, with the names the major libraries give these formats.
constexpr alias aliases[] = {
    {"fp16", format_id::fp16},         {"half", format_id::fp16},
    {"float16", format_id::fp16},      {"binary16", format_id::fp16},
    {"bf16", format_id::bf16},         {"bfloat16", format_id::bf16},
    {"tf32", format_id::tf32},         {"tensorfloat32", format_id::tf32},
    {"e4m3", format_id::e4m3},         {"e4m3fn", format_id::e4m3},
    {"fp8_e4m3", format_id::e4m3},     {"float8_e4m3fn", format_id::e4m3},
    {"e5m2", format_id::e5m2},         {"fp8_e5m2", format_id::e5m2},
    {"float8_e5m2", format_id::e5m2},  {"e4m3fnuz", format_id::e4m3fnuz},
    {"float8_e4m3fnuz", format_id::e4m3fnuz}, {"e5m2fnuz", format_id::e5m2fnuz},
    {"float8_e5m2fnuz", format_id::e5m2fnuz}, {"e2m3", format_id::e2m3},
    {"e2m3fn", format_id::e2m3},       {"fp6_e2m3", format_id::e2m3},
    {"float6_e2m3fn", format_id::e2m3}, {"e3m2", format_id::e3m2},
    {"e3m2fn", format_id::e3m2},       {"fp6_e3m2", format_id::e3m2},
    {"float6_e3m2fn", format_id::e3m2}, {"e2m1", format_id::e2m1},
    {"e2m1fn", format_id::e2m1},       {"fp4", format_id::e2m1},
    {"fp4_e2m1", format_id::e2m1},     {"float4_e2m1fn", format_id::e2m1},
    {"e8m0", format_id::e8m0},         {"e8m0fnu", format_id::e8m0},
    {"float8_e8m0fnu", format_id::e8m0}, {"ue8m0", format_id::e8m0},
};

}  // namespace

std::optional<format_id> find_format(std::string_view name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (const auto& a : aliases)
    if (a.name == lower) return a.id;
  return std::nullopt;
}

std::string_view format_names() {
  return "fp16, bf16, tf32, e4m3, e5m2, e4m3fnuz, e5m2fnuz, e2m3, e3m2, e2m1, e8m0";
}

std::optional<format_id> builtin_id(const format& f) {
  for (int i = 0; i < builtin_count; ++i) {
    const format b = builtin(static_cast<format_id>(i));
    if (b.bits == f.bits && b.exp_bits == f.exp_bits && b.man_bits == f.man_bits && b.bias == f.bias &&
        b.specials == f.specials && b.subnormals == f.subnormals)
      return static_cast<format_id>(i);
  }
  return std::nullopt;
}

format_facts facts_of(const format& f) {
  format_facts r;
  r.name = f.name;
  r.bits = f.bits;
  r.exponent_bits = f.exp_bits;
  r.mantissa_bits = f.man_bits;
  r.bias = f.bias;
  r.storage_bytes = f.storage_bytes();
  // Walk every code: what is special, the signs and the extremes come from decode().
  bool has_zero = false;
  double min_positive = INFINITY;
  for (std::uint64_t k = 0; k <= f.mask(); ++k) {
    const auto c = static_cast<std::uint32_t>(k);
    const double v = decode(c, f);
    if (std::isnan(v)) {
      ++r.nan_codes;
      continue;
    }
    if (std::isinf(v)) {
      r.has_inf = true;
      continue;
    }
    ++r.finite_codes;
    if (v == 0) {
      has_zero = true;
      r.has_negative_zero = r.has_negative_zero || std::signbit(v);
    }
    r.is_signed = r.is_signed || std::signbit(v);
    if (v > r.max_finite) {
      r.max_finite = v;
      r.max_finite_bits = c;
    }
    if (v > 0 && v < min_positive) min_positive = v;
  }
  r.has_nan = r.nan_codes != 0;
  // The smallest normal: exponent code 1, or 0 where that holds normals too (e8m0).
  r.min_normal = decode(f.subnormals ? std::uint32_t{1} << f.man_bits : 0u, f);
  r.has_subnormals = min_positive < r.min_normal;
  if (r.has_subnormals) r.min_subnormal = min_positive;
  r.emin = std::ilogb(r.min_normal);
  r.emax = std::ilogb(r.max_finite);
  const std::uint32_t one = encode(1.0, f);
  r.epsilon = decode(one + 1, f) - decode(one, f);
  r.decimal_digits = (f.man_bits + 1) * std::log10(2.0);
  r.binades = std::log2(r.max_finite / min_positive);

  r.specials = r.has_inf ? "+-inf" : "no inf";
  r.specials += r.nan_codes ? ", " + std::to_string(r.nan_codes) + " NaN" : ", no NaN";
  if (!has_zero) r.specials += ", no zero";
  else if (r.is_signed && !r.has_negative_zero) r.specials += ", no -0";
  if (!r.is_signed) r.specials += ", unsigned";
  return r;
}

}  // namespace fpscope
