#include "fpscope/format.hpp"

#include <algorithm>
#include <cctype>
#include <string>

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

}  // namespace fpscope
