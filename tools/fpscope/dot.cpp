// fpscope dot: what a mixed-precision dot product (or small matrix product) gives, against the
// exact value. Inputs are rounded to the input format first (nearest-even), products are exact,
// and the sums follow the accumulator model (format, rounding, promotion every K products).
#include <cmath>
#include <fmt/format.h>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "cli.hpp"
#include "fpscope/accumulate.hpp"
#include "fpscope/convert.hpp"
#include "fpscope/npy.hpp"

namespace fpscope::cli {
namespace {

struct dot_options {
  std::string a, b, format = "fp16", acc = "fp32", acc_rounding;
  std::size_t block = 0;
  bool json = false;
};

// The array's values rounded to `f` (nearest-even, IEEE policy) and decoded: exact doubles.
std::vector<double> load_as(const std::string& path, const format& f, std::vector<std::uint64_t>& shape) {
  const npy_reader in(path);
  shape = in.shape();
  if (shape.empty() || shape.size() > 2)
    throw npy_error(fmt::format("{}: dot takes vectors or matrices, not shape {}", path, npy_shape_string(shape)));
  std::vector<double> v(in.size());
  const policy p{};
  for (std::size_t i = 0; i < v.size(); ++i) {
    double x;
    switch (in.dtype()) {
      case npy_dtype::f4: x = in.values<float>()[i]; break;
      case npy_dtype::f8: x = in.values<double>()[i]; break;
      case npy_dtype::f2: x = decode(in.values<std::uint16_t>()[i], builtin(format_id::fp16)); break;
      default:
        throw npy_error(fmt::format("{}: dot reads float16, float32 or float64 arrays, not {}", path,
                                    npy_type_name(in.dtype())));
    }
    v[i] = decode(encode(x, f, p), f);
  }
  return v;
}

int run(const dot_options& o) {
  const format f = parse_format(o.format, "--format");
  if (f.man_bits > 25) throw usage_error("dot needs an input format of at most 26 significand bits");
  accumulator acc;
  try {
    acc = parse_accumulator(o.acc, o.block);
  } catch (const std::invalid_argument& e) {
    throw usage_error(e.what());
  }
  if (!o.acc_rounding.empty()) {
    acc.round = parse_rounding(o.acc_rounding, "--acc-rounding");
    if (acc.round == rounding::sr) throw usage_error("--acc-rounding: sr gives no fixed result; use a deterministic mode");
  }
  std::vector<std::uint64_t> sa, sb;
  const auto a = load_as(o.a, f, sa), b = load_as(o.b, f, sb);
  // (m, k) x (k, n), with a vector on the left as (1, k) and on the right as (k, 1).
  const std::uint64_t m = sa.size() == 2 ? sa[0] : 1, k = sa.back();
  const std::uint64_t kb = sb[0], n = sb.size() == 2 ? sb[1] : 1;
  if (k != kb)
    throw usage_error(fmt::format("shapes {} and {} do not chain: {} != {}", npy_shape_string(sa),
                                  npy_shape_string(sb), k, kb));
  nlohmann::json results = nlohmann::json::array();
  std::vector<double> col(k);
  double worst_rel = 0, worst_ulp = 0;
  std::vector<std::string> rows;
  for (std::uint64_t i = 0; i < m; ++i)
    for (std::uint64_t j = 0; j < n; ++j) {
      for (std::uint64_t t = 0; t < k; ++t) col[t] = b[t * n + j];
      const dot_result r = dot(std::span<const double>(a.data() + i * k, k), col, acc);
      worst_rel = std::max(worst_rel, std::fabs(r.rel_error));
      worst_ulp = std::max(worst_ulp, std::fabs(r.ulp_error));
      results.push_back({{"index", {i, j}}, {"value", r.value}, {"exact", r.exact}, {"abs_error", r.abs_error},
                         {"rel_error", r.rel_error}, {"ulp_error", r.ulp_error}});
      if (rows.size() < 20)
        rows.push_back(fmt::format("  [{},{}]  {:<24.17g} {:<24.17g} {:<12.4g} {:<12.4g} {:.4g}", i, j, r.value,
                                   r.exact, r.abs_error, r.rel_error, r.ulp_error));
    }
  if (o.json) {
    nlohmann::json out{{"format", f.name},           {"accumulator", describe(acc)},
                       {"k", k},                      {"shape", {m, n}},
                       {"max_abs_rel_error", worst_rel}, {"max_abs_ulp_error", worst_ulp},
                       {"results", results}};
    fmt::print("{}\n", out.dump(2));
    return exit_ok;
  }
  fmt::print("{} x {}: inputs in {}, {} products per result, accumulator {}\n", o.a, o.b, f.name, k, describe(acc));
  fmt::print("  {:<7} {:<24} {:<24} {:<12} {:<12} {}\n", "index", "value", "exact", "abs error", "rel error",
             "ulps (acc)");
  for (const auto& r : rows) fmt::print("{}\n", r);
  if (m * n > rows.size()) fmt::print("  ... {} more (use --json for all)\n", m * n - rows.size());
  fmt::print("max |rel error| {:.4g}, max |ulp error| {:.4g}\n", worst_rel, worst_ulp);
  return exit_ok;
}

runner setup(CLI::App& app) {
  auto o = std::make_shared<dot_options>();
  auto* sub = app.add_subcommand("dot", "mixed-precision dot or matrix product, with its error against the exact value");
  sub->add_option("A", o->a, ".npy vector (k) or matrix (m, k): float16, float32 or float64")->required();
  sub->add_option("B", o->b, ".npy vector (k) or matrix (k, n)")->required();
  sub->add_option("-f,--format", o->format, "input format; inputs are rounded to it (nearest-even) [default: fp16]")
      ->check(parsed_by([](const std::string& v) { parse_format(v, "--format"); }, "--format", "FORMAT"));
  sub->add_option("-a,--acc", o->acc,
                  "accumulator: fp32, fp16, bf16, tf32, or bits:N (N significand bits,\ntruncation) [default: fp32]");
  sub->add_option("--acc-rounding", o->acc_rounding, "rounding of each accumulation step: rne, rtz, rup, rdn, rna, rto")
      ->check(parsed_by([](const std::string& v) { parse_rounding(v, "--acc-rounding"); }, "--acc-rounding", "MODE"));
  sub->add_option("-k,--block", o->block, "promote the partial sum into an fp32 total every K products (0: never)")
      ->check(count_check(false));
  sub->add_flag("--json", o->json, "print a JSON object (every result) instead of the table");
  sub->footer(
      "Products of two input values are exact; each is added to the running partial sum and\n"
      "rounded once in the accumulator; with --block K the partial sum is added (fp32,\n"
      "nearest-even) to a total every K products and restarted, as FP8 GEMM kernels that\n"
      "promote every 128 elements do. Errors are against the exact sum (Boost integers):\n"
      "value - exact, relative, and in units of the accumulator's last place at |exact|.\n"
      "\n"
      "Examples:\n"
      "  fpscope dot x.npy y.npy --format e4m3 --acc bits:14            # Hopper-like FP8 accumulation\n"
      "  fpscope dot x.npy y.npy --format e4m3 --acc bits:14 --block 128  # with promotion every 128\n"
      "  fpscope dot A.npy B.npy --format bf16 --acc fp32 --json");
  return [o] { return run(*o); };
}

const registrar reg{"dot", 50, &setup};

}  // namespace
}  // namespace fpscope::cli
