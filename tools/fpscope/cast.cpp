// fpscope cast: what values become in a format, shown exactly (for teaching).
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fmt/format.h>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <tuple>

#include "cli.hpp"
#include "fpscope/convert.hpp"
#include "fpscope/exact.hpp"

namespace fpscope::cli {
namespace {

enum class input_kind { decimal, hex_float, bit_pattern, special };

struct parsed_input {
  std::string text;
  input_kind kind = input_kind::decimal;
  double value = 0;           ///< the float64 the literal reads as (bit patterns: their exact value)
  std::uint32_t pattern = 0;  ///< bit_pattern only
  bool exact = true;          ///< the literal is exactly `value`
};

bool is_hex_digit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

[[noreturn]] void malformed(const std::string& text) {
  throw usage_error("malformed number '" + text +
                    "' (expected a decimal like 1.5e-3, a hex float like 0x1.8p-3, inf, nan, or a bit "
                    "pattern of the target format like 0x3c00)");
}

// The rule: 0x followed by hex digits only (no sign, '.' or 'p') is a bit pattern of the target
// format; everything else is read as a float64 by strtod (correctly rounded, hex floats exact).
parsed_input parse_value(const std::string& text, const format& f) {
  parsed_input in;
  in.text = text;
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) malformed(text);
  const bool signed_lit = text[0] == '-' || text[0] == '+';
  const std::string body = signed_lit ? text.substr(1) : text;
  const bool hex = body.size() >= 2 && body[0] == '0' && (body[1] == 'x' || body[1] == 'X');
  if (hex) {
    const std::string digits = body.substr(2);
    const bool plain = !digits.empty() && std::all_of(digits.begin(), digits.end(), is_hex_digit);
    if (plain) {
      if (signed_lit)
        throw usage_error("'" + text + "': a bit pattern has no sign; set the sign bit (e.g. " +
                          hex_code(f.sign_mask(), f) + ") or write a hex float such as " + text.substr(0, 1) +
                          "0x1p+0");
      std::size_t first = digits.find_first_not_of('0');
      const std::string sig = first == std::string::npos ? "0" : digits.substr(first);
      const unsigned long long v = sig.size() <= 8 ? std::strtoull(sig.c_str(), nullptr, 16) : ~0ull;
      if (v > f.mask())
        throw usage_error(fmt::format("bit pattern {} does not fit in {} ({} bits: {} to {})", text, f.name,
                                      f.bits, hex_code(0, f), hex_code(f.mask(), f)));
      in.kind = input_kind::bit_pattern;
      in.pattern = static_cast<std::uint32_t>(v);
      in.value = decode(in.pattern, f);
      return in;
    }
    in.kind = input_kind::hex_float;
  }
  errno = 0;
  char* end = nullptr;
  in.value = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || *end != '\0') malformed(text);
  if (!std::isfinite(in.value) && in.kind != input_kind::hex_float && !(errno == ERANGE)) in.kind = input_kind::special;
  in.exact = literal_is_exact(text, in.value);
  return in;
}

std::string kind_name(input_kind k) {
  switch (k) {
    case input_kind::decimal: return "decimal";
    case input_kind::hex_float: return "hex_float";
    case input_kind::bit_pattern: return "bit_pattern";
    case input_kind::special: return "special";
  }
  return "?";
}

std::string binary(std::uint32_t v, int width) {
  std::string s;
  for (int i = width - 1; i >= 0; --i) s += ((v >> i) & 1) ? '1' : '0';
  return s;
}

struct fields {
  std::optional<int> sign;
  std::string exponent, mantissa;
  std::string layout() const {
    std::string s;
    if (sign) s += std::to_string(*sign) + " | ";
    s += exponent;
    if (!mantissa.empty()) s += " | " + mantissa;
    return s;
  }
  std::string legend() const {
    std::string s = sign ? "sign | exponent" : "exponent";
    return mantissa.empty() ? s : s + " | mantissa";
  }
};

fields split_fields(std::uint32_t bits, const format& f) {
  fields r;
  if (f.is_signed()) r.sign = int((bits >> (f.bits - 1)) & 1);
  r.exponent = binary((bits >> f.man_bits) & ((1u << f.exp_bits) - 1), f.exp_bits);
  if (f.man_bits) r.mantissa = binary(bits & ((1u << f.man_bits) - 1), f.man_bits);
  return r;
}

// "+1.0000000010b x 2^-14" for a finite code: the significand as the format stores it.
std::string meaning(std::uint32_t bits, const format& f, value_class c) {
  if (c != value_class::normal && c != value_class::subnormal) return "";
  const fields fl = split_fields(bits, f);
  const std::string sign = fl.sign.value_or(0) ? "-" : "+";
  const std::uint32_t e = (bits >> f.man_bits) & ((1u << f.exp_bits) - 1);
  if (!f.subnormals) return fmt::format("{}2^{}", sign, int(e) - f.bias);
  const bool sub = c == value_class::subnormal;
  const int exp = sub ? 1 - f.bias : int(e) - f.bias;
  std::string sig = sub ? "0" : "1";
  if (!fl.mantissa.empty()) sig += "." + fl.mantissa;
  return fmt::format("{}{}b x 2^{}", sign, sig, exp);
}

struct neighbour {
  std::uint32_t bits;
  double value;
};

// The representable values next to v (NaN codes skipped; inf counts as a value), found by
// walking the codes. Going down to zero picks +0, going up to zero picks -0.
std::pair<std::optional<neighbour>, std::optional<neighbour>> neighbours(double v, const format& f) {
  std::optional<neighbour> below, above;
  if (std::isnan(v)) return {below, above};
  for (std::uint32_t c = 0; c <= f.mask(); ++c) {
    const double w = decode(c, f);
    if (std::isnan(w)) continue;
    if (w < v && (!below || w > below->value || (w == below->value && w == 0 && !std::signbit(w))))
      below = neighbour{c, w};
    if (w > v && (!above || w < above->value || (w == above->value && w == 0 && std::signbit(w))))
      above = neighbour{c, w};
  }
  return {below, above};
}

// Errors of the result against the value converted: exact strings, nullopt where undefined.
struct errors {
  std::optional<std::string> abs, rel;
};

errors error_of(double result, double ref) {
  errors e;
  if (std::isnan(result) || std::isnan(ref)) return e;
  if (result == ref) {
    e.abs = "0";
    e.rel = "0";
    return e;
  }
  if (std::isinf(result) || std::isinf(ref)) {
    e.abs = result - ref > 0 ? "inf" : "-inf";
    return e;
  }
  e.abs = exact_difference(result, ref);
  e.rel = relative_error(result, ref, 17);
  return e;
}

// The double nearest an exact decimal string (for the short form beside it).
double nearest(const std::string& exact) { return std::strtod(exact.c_str(), nullptr); }

std::string shortest(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
  return fmt::format("{}", v);
}

nlohmann::json number_or_null(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}
nlohmann::json string_or_null(const std::optional<std::string>& s) {
  return s ? nlohmann::json(*s) : nlohmann::json(nullptr);
}

struct cast_options {
  conversion_options conv;
  std::vector<std::string> values;
  bool json = false;
};

struct cast_result {
  parsed_input in;
  double scaled = 0;
  bool scale_exact = true;
  std::uint32_t bits = 0;
  double value = 0;
  value_class cls = value_class::zero;
  unsigned flags = 0;
  bool converted = true;  ///< false: a bit pattern taken as it is
  errors err;
  std::optional<neighbour> below, above;
};

cast_result cast_one(const std::string& text, const conversion_options& o, std::uint64_t index) {
  cast_result r;
  r.in = parse_value(text, o.fmt);
  r.scaled = r.in.value * o.scale;
  r.scale_exact = product_is_exact(r.in.value, o.scale, r.scaled);
  if (r.in.kind == input_kind::bit_pattern && o.scale == 1.0) {
    r.bits = r.in.pattern;  // the code itself, NaN payloads and all
    r.converted = false;
  } else {
    r.bits = encode(r.scaled, o.fmt, o.pol, index, r.flags);
  }
  r.value = decode(r.bits, o.fmt);
  r.cls = classify(r.bits, o.fmt);
  r.err = error_of(r.value, r.scaled);
  std::tie(r.below, r.above) = neighbours(r.value, o.fmt);
  return r;
}

std::vector<std::string> flag_names(unsigned flags) {
  std::vector<std::string> v;
  if (flags & flag_inexact) v.emplace_back("inexact");
  if (flags & flag_underflow) v.emplace_back("underflow");
  if (flags & flag_overflow) v.emplace_back("overflow");
  if (flags & flag_invalid) v.emplace_back("invalid");
  return v;
}

nlohmann::json to_json(const cast_result& r, const conversion_options& o, std::uint64_t index) {
  const format& f = o.fmt;
  const fields fl = split_fields(r.bits, f);
  nlohmann::json j;
  j["input"] = r.in.text;
  j["input_kind"] = kind_name(r.in.kind);
  j["parsed"] = number_or_null(r.in.value);
  j["parsed_exact"] = exact_decimal(r.in.value);
  j["parsed_is_exact"] = r.in.exact;
  j["scale"] = o.scale;
  j["scaled"] = number_or_null(r.scaled);
  j["scaled_exact"] = exact_decimal(r.scaled);
  j["scale_is_exact"] = r.scale_exact;
  j["format"] = f.name;
  j["rounding"] = std::string(name(o.pol.round));
  j["overflow"] = std::string(name(o.pol.on_overflow));
  j["profile"] = std::string(name(o.prof));
  j["seed"] = o.pol.seed;
  j["index"] = index;
  j["converted"] = r.converted;
  j["bits"] = r.bits;
  j["hex"] = hex_code(r.bits, f);
  j["layout"] = fl.layout();
  j["sign"] = fl.sign ? nlohmann::json(*fl.sign) : nlohmann::json(nullptr);
  j["exponent_field"] = fl.exponent;
  j["mantissa_field"] = fl.mantissa;
  j["value"] = number_or_null(r.value);
  j["value_exact"] = exact_decimal(r.value);
  j["class"] = std::string(name(r.cls));
  j["abs_error_exact"] = string_or_null(r.err.abs);
  j["abs_error"] = r.err.abs ? number_or_null(nearest(*r.err.abs)) : nlohmann::json(nullptr);
  j["rel_error_text"] = string_or_null(r.err.rel);
  j["rel_error"] = r.err.rel ? number_or_null(nearest(*r.err.rel)) : nlohmann::json(nullptr);
  j["flags"] = {{"inexact", (r.flags & flag_inexact) != 0},
                {"underflow", (r.flags & flag_underflow) != 0},
                {"overflow", (r.flags & flag_overflow) != 0},
                {"invalid", (r.flags & flag_invalid) != 0}};
  const auto side = [&](const std::optional<neighbour>& n) {
    if (!n) return nlohmann::json(nullptr);
    return nlohmann::json{{"bits", n->bits},
                          {"hex", hex_code(n->bits, f)},
                          {"value", number_or_null(n->value)},
                          {"value_exact", exact_decimal(n->value)}};
  };
  j["below"] = side(r.below);
  j["above"] = side(r.above);
  return j;
}

void print_text(const cast_result& r, const conversion_options& o, bool colour) {
  const format& f = o.fmt;
  const auto label = [&](std::string_view s) {
    return paint(colour, fmt::emphasis::bold, fmt::format("  {:<10} ", s));
  };
  const auto dim = [&](std::string_view s) { return paint(colour, fmt::emphasis::faint, s); };
  const std::string indent(13, ' ');

  fmt::print("{} -> {}\n", paint(colour, fmt::emphasis::bold, r.in.text), o.describe());

  // The input as read.
  if (r.in.kind == input_kind::bit_pattern) {
    fmt::print("{}bit pattern of {}: {}\n", label("input"), f.name, shortest(r.in.value));
  } else {
    std::string note = r.in.exact ? "exact" : "rounded: the literal is not a float64";
    fmt::print("{}float64 {}  {}\n", label("input"), shortest(r.in.value), dim("(" + note + ")"));
    if (std::isfinite(r.in.value) && !r.in.exact) fmt::print("{}exact {}\n", indent, exact_decimal(r.in.value));
  }
  if (o.scale != 1.0) {
    fmt::print("{}x {} = {}  {}\n", label("scaled"), shortest(o.scale), shortest(r.scaled),
               dim(r.scale_exact ? "(exact)" : "(rounded to float64)"));
    if (std::isfinite(r.scaled) && shortest(r.scaled) != exact_decimal(r.scaled))
      fmt::print("{}exact {}\n", indent, exact_decimal(r.scaled));
  }

  // The code, field by field.
  const fields fl = split_fields(r.bits, f);
  std::string layout;
  if (fl.sign) layout += paint(colour, fmt::fg(fmt::terminal_color::red), std::to_string(*fl.sign)) + " | ";
  layout += paint(colour, fmt::fg(fmt::terminal_color::green), fl.exponent);
  if (!fl.mantissa.empty()) layout += " | " + paint(colour, fmt::fg(fmt::terminal_color::blue), fl.mantissa);
  fmt::print("{}{}   {}   {}\n", label("bits"), hex_code(r.bits, f), layout, dim("(" + fl.legend() + ")"));

  const std::string m = meaning(r.bits, f, r.cls);
  fmt::print("{}{}{}\n", label("value"), shortest(r.value), m.empty() ? "" : "  = " + m);
  if (std::isfinite(r.value) && shortest(r.value) != exact_decimal(r.value))
    fmt::print("{}exact {}\n", indent, exact_decimal(r.value));
  fmt::print("{}{}\n", label("class"), name(r.cls));

  if (r.err.abs) {
    const bool finite_err = *r.err.abs != "inf" && *r.err.abs != "-inf";
    fmt::print("{}{}\n", label("abs error"), finite_err ? shortest(nearest(*r.err.abs)) : *r.err.abs);
    if (finite_err && shortest(nearest(*r.err.abs)) != *r.err.abs) fmt::print("{}exact {}\n", indent, *r.err.abs);
  } else {
    fmt::print("{}{}\n", label("abs error"), dim("undefined (NaN)"));
  }
  fmt::print("{}{}\n", label("rel error"), r.err.rel ? *r.err.rel : dim("undefined"));

  const auto fl_names = flag_names(r.flags);
  std::string flags = r.converted ? (fl_names.empty() ? "none" : fmt::format("{}", fmt::join(fl_names, " ")))
                                  : "none (the bit pattern is taken as it is)";
  if (!fl_names.empty()) flags = paint(colour, fmt::fg(fmt::terminal_color::yellow), flags);
  fmt::print("{}{}\n", label("flags"), flags);

  const auto side = [&](std::string_view what, const std::optional<neighbour>& n) {
    if (!n) {
      fmt::print("{}{}\n", label(what), dim("none"));
      return;
    }
    fmt::print("{}{}  {}", label(what), hex_code(n->bits, f), shortest(n->value));
    if (std::isfinite(n->value) && shortest(n->value) != exact_decimal(n->value))
      fmt::print("  {}", dim("exact " + exact_decimal(n->value)));
    fmt::print("\n");
  };
  side("below", r.below);
  side("above", r.above);
}

int run(cast_options& o) {
  resolve(o.conv);
  // Parse everything first: a malformed value fails before anything is printed.
  for (const auto& v : o.values) (void)parse_value(v, o.conv.fmt);
  std::vector<cast_result> results;
  for (std::size_t i = 0; i < o.values.size(); ++i) results.push_back(cast_one(o.values[i], o.conv, i));

  if (o.json) {
    nlohmann::json out = nlohmann::json::array();
    for (std::size_t i = 0; i < results.size(); ++i) out.push_back(to_json(results[i], o.conv, i));
    fmt::print("{}\n", out.dump(2));
    return exit_ok;
  }
  const bool colour = use_colour(stdout);
  for (std::size_t i = 0; i < results.size(); ++i) {
    if (i) fmt::print("\n");
    print_text(results[i], o.conv, colour);
  }
  return exit_ok;
}

runner setup(CLI::App& app) {
  auto o = std::make_shared<cast_options>();
  auto* sub = app.add_subcommand("cast", "show exactly what values become in a format");
  sub->add_option("VALUE", o->values, "values to convert (see 'How VALUE is read' below)")->required();
  add_conversion_options(*sub, o->conv);
  sub->add_flag("--json", o->json, "print a JSON array, one object per VALUE");
  sub->footer(
      "How VALUE is read:\n"
      "  1.2e-7, -3, 65520       decimal, read as the nearest float64 (correctly rounded)\n"
      "  0x1.8p-3, -0x1p-24      C hex float (has '.' or 'p'), read as float64\n"
      "  0x7e00, 0x3c00          0x and hex digits only: a bit pattern OF THE TARGET FORMAT,\n"
      "                          shown as it is (with --scale: its value, scaled and re-rounded);\n"
      "                          no sign allowed: set the sign bit instead (0xfe00)\n"
      "  inf, -inf, nan          the float64 specials\n"
      "Values starting with '-' and a letter (-inf, -0x1p-24) go after '--', options before it.\n"
      "The float64 is multiplied by --scale (in float64) and rounded once into the format.\n"
      "Errors are result - input and (result - input) / input, against the scaled float64.\n"
      "'below' and 'above' are the representable neighbours of the result.\n"
      "With --rounding sr the i-th VALUE (from 0) draws its random bits with index i.\n"
      "\n"
      "Examples:\n"
      "  fpscope cast 1.2e-7 --to fp16\n"
      "  fpscope cast 464 480 --to e4m3                   a tie that rounds to 448, and a NaN\n"
      "  fpscope cast 464 --to e4m3 --overflow saturate --rounding rup\n"
      "  fpscope cast 0x7e --to e4m3                      the bit pattern 0x7e of e4m3\n"
      "  fpscope cast 0x1.8p-3 --to bf16 --json\n"
      "  fpscope cast 1e-3 --to e5m2 --scale 1024 --rounding sr --seed 7\n"
      "  fpscope cast -2.5 7 --to e2m1 --json\n"
      "  fpscope cast --to fp16 -- -inf -0x1p-25");
  return [o] { return run(*o); };
}

const registrar reg{"cast", 20, &setup};

}  // namespace
}  // namespace fpscope::cli
