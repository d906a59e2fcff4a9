// fpscope formats: one row per built-in format, every figure from the library's facts_of (found
// by decoding codes, none typed in); --json prints them under the library's key names
// (for_each_fact), the same keys Python's fpscope.format_info returns.
#include <cmath>
#include <fmt/format.h>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli.hpp"
#include "fpscope/format.hpp"
#include "text.hpp"

namespace fpscope::cli {
namespace {

std::string number(double v) { return fmt::format("{:.5g}", v); }

struct formats_options {
  bool json = false;
};

// A fact as JSON: an empty optional is null.
template <class T>
nlohmann::json json_of(const T& v) {
  return nlohmann::json(v);
}
template <class T>
nlohmann::json json_of(const std::optional<T>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

int run(const formats_options& o) {
  std::vector<format_facts> all;
  for (int i = 0; i < builtin_count; ++i) all.push_back(facts_of(builtin(static_cast<format_id>(i))));

  if (o.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& r : all) {
      nlohmann::json j;
      for_each_fact(r, [&j](const char* key, const auto& v) { j[key] = json_of(v); });
      out.push_back(std::move(j));
    }
    fmt::print("{}\n", out.dump(2));
    return exit_ok;
  }

  const bool colour = use_colour(stdout);
  const auto head = fmt::emphasis::bold;
  const std::string row = "{:<9} {:>4} {:>3} {:>3} {:>5}  {:<17} {:<17} {:<11} {:<17} {:>6} {:>7}  {}\n";
  fmt::print("{}", paint(colour, head,
                         fmt::format(fmt::runtime(row), "format", "bits", "e", "m", "bias", "min subnormal",
                                     "min normal", "max finite", "epsilon", "digits", "binades", "inf/NaN")));
  for (const auto& r : all) {
    const auto both = [](double v) { return fmt::format("{} {}", scale_label(v, 6), number(v)); };
    const std::string name = fmt::format("{:<9}", r.name);
    fmt::print(fmt::runtime(row), paint(colour, fmt::fg(fmt::terminal_color::cyan), name), r.bits, r.exponent_bits,
               r.mantissa_bits, r.bias, r.min_subnormal ? both(*r.min_subnormal) : "-", both(r.min_normal),
               number(r.max_finite), both(r.epsilon), fmt::format("{:.2f}", r.decimal_digits),
               fmt::format("{:.1f}", r.binades), r.specials);
  }
  return exit_ok;
}

runner setup(CLI::App& app) {
  auto o = std::make_shared<formats_options>();
  auto* sub = app.add_subcommand("formats", "list the built-in formats and their ranges");
  sub->add_flag("--json", o->json, "print a JSON array of objects instead of a table");
  sub->footer(
      "Every figure is computed by the library from the format's codes:\n"
      "  e, m            exponent and stored mantissa bits; bias the exponent bias\n"
      "  min subnormal   smallest positive value (- where the format has no subnormals)\n"
      "  min normal      smallest positive normal value (e8m0: its smallest value)\n"
      "  max finite      largest finite value\n"
      "  epsilon         gap between 1 and the next value, 2^-m\n"
      "  digits          decimal digits of precision, (m+1)*log10(2)\n"
      "  binades         log2(max finite / smallest positive)\n"
      "  inf/NaN         infinities, number of NaN codes, zero and sign\n"
      "\n"
      "Examples:\n"
      "  fpscope formats\n"
      "  fpscope formats --json | jq '.[] | select(.name==\"e4m3\") | .max_finite'");
  return [o] { return run(*o); };
}

const registrar reg{"formats", 10, &setup};

}  // namespace
}  // namespace fpscope::cli
