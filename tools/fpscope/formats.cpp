// fpscope formats: one row per built-in format, every figure obtained from the library by
// encoding and decoding codes, none typed in.
#include <cmath>
#include <fmt/format.h>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli.hpp"
#include "fpscope/convert.hpp"
#include "text.hpp"

namespace fpscope::cli {
namespace {

struct format_facts {
  format f;
  std::optional<double> min_subnormal;
  double min_normal;     ///< smallest positive normal (e8m0: its smallest value)
  double max_finite;
  double epsilon;        ///< gap between 1 and the next larger value
  double digits;         ///< (mantissa bits + 1) * log10(2)
  double binades;        ///< log2(max finite / smallest positive)
  bool has_inf = false;
  bool negative_zero = false;
  bool has_zero = false;
  bool negatives = false;
  std::uint32_t nan_codes = 0;
  std::uint32_t finite_codes = 0;

  std::string specials() const {
    std::string s = has_inf ? "+-inf" : "no inf";
    s += nan_codes ? fmt::format(", {} NaN", nan_codes) : ", no NaN";
    if (!has_zero) s += ", no zero";
    else if (negatives && !negative_zero) s += ", no -0";
    if (!negatives) s += ", unsigned";
    return s;
  }
};

format_facts facts(const format& f) {
  format_facts r{f, std::nullopt, 0, 0, 0, 0, 0};
  // Walk every code: what is special, and the extremes, come from decode().
  for (std::uint32_t c = 0; c <= f.mask(); ++c) {
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
      r.has_zero = true;
      if (std::signbit(v)) r.negative_zero = true;
    }
    if (std::signbit(v)) r.negatives = true;
  }
  if (f.subnormals) r.min_subnormal = decode(1, f);
  r.min_normal = decode(f.subnormals ? std::uint32_t{1} << f.man_bits : 0u, f);
  r.max_finite = decode(f.max_finite_bits(), f);
  const std::uint32_t one = encode(1.0, f);
  r.epsilon = decode(one + 1, f) - decode(one, f);
  r.digits = (f.man_bits + 1) * std::log10(2.0);
  r.binades = std::log2(r.max_finite / r.min_subnormal.value_or(r.min_normal));
  return r;
}

std::string number(double v) { return fmt::format("{:.5g}", v); }

struct formats_options {
  bool json = false;
};

int run(const formats_options& o) {
  std::vector<format_facts> all;
  for (int i = 0; i < builtin_count; ++i) all.push_back(facts(builtin(static_cast<format_id>(i))));

  if (o.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& r : all) {
      const format& f = r.f;
      nlohmann::json j;
      j["name"] = f.name;
      j["bits"] = f.bits;
      j["exponent_bits"] = f.exp_bits;
      j["mantissa_bits"] = f.man_bits;
      j["bias"] = f.bias;
      j["min_subnormal"] = r.min_subnormal ? nlohmann::json(*r.min_subnormal) : nlohmann::json(nullptr);
      j["min_normal"] = r.min_normal;
      j["max_finite"] = r.max_finite;
      j["epsilon"] = r.epsilon;
      j["decimal_digits"] = r.digits;
      j["binades"] = r.binades;
      j["emin"] = f.emin();
      j["emax"] = f.emax();
      j["has_inf"] = r.has_inf;
      j["nan_codes"] = r.nan_codes;
      j["finite_codes"] = r.finite_codes;
      j["has_negative_zero"] = r.negative_zero;
      j["signed"] = r.negatives;
      j["specials"] = r.specials();
      j["storage_bytes"] = f.storage_bytes();
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
    const format& f = r.f;
    // 2^k (all these are powers of two), with the decimal beside it.
    const auto both = [](double v) { return fmt::format("{} {}", scale_label(v, 6), number(v)); };
    const std::string name = fmt::format("{:<9}", f.name);
    fmt::print(fmt::runtime(row), paint(colour, fmt::fg(fmt::terminal_color::cyan), name), f.bits, f.exp_bits,
               f.man_bits, f.bias, r.min_subnormal ? both(*r.min_subnormal) : "-", both(r.min_normal),
               number(r.max_finite), both(r.epsilon), fmt::format("{:.2f}", r.digits),
               fmt::format("{:.1f}", r.binades), r.specials());
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
