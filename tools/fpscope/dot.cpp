// fpscope dot: what a mixed-precision dot product (or small matrix product) gives, against the
// exact value. Inputs are rounded to the input format first (nearest-even), products are exact,
// and the sums follow the accumulator model (format, rounding, promotion every K products).
#include <cmath>
#include <fmt/format.h>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <vector>

#include "cli.hpp"
#include "fpscope/accumulate.hpp"
#include "fpscope/convert.hpp"
#include "fpscope/mma.hpp"
#include "fpscope/npy.hpp"
#include "text.hpp"

namespace fpscope::cli {
namespace {

struct dot_options {
  std::string a, b, format = "fp16", acc = "fp32", acc_rounding;
  std::size_t block = 0;
  bool json = false;
  std::string mma;                      // --mma ARCH:INST (issue 17): a tensor-core instruction instead
  bool format_given = false, acc_given = false;
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
  in.check_intact();  // not a truncated file's zeros
  return v;
}

// --mma ARCH:INST: the instruction, and no --format/--acc/--acc-rounding beside it (it fixes them).
std::optional<mma::instruction> mma_of(const dot_options& o) {
  if (o.mma.empty()) return std::nullopt;
  const auto colon = o.mma.find(':');
  if (colon == std::string::npos) throw usage_error("--mma: expected ARCH:INST, got " + fpscope::quoted(o.mma));
  std::optional<mma::instruction> found;
  try {
    found = mma::find(o.mma.substr(0, colon), o.mma.substr(colon + 1));
  } catch (const option_error& e) {  // "--arch: ..." / "--inst: ...": here both are --mma's
    const std::string what = e.what();
    throw usage_error("--mma: " + what.substr(what.find(": ") + 2));
  }
  auto in = *found;
  if (o.format_given || o.acc_given || !o.acc_rounding.empty())
    throw usage_error("--mma: the instruction fixes the input format and the accumulation; drop --format/--acc/--acc-rounding");
  if (in.block) throw usage_error("--mma: block-scaled instructions need scales: use fpscope gemm --scales");
  if (o.block % std::size_t(in.k))
    throw usage_error(fmt::format("--block: {} is not a multiple of {}'s k ({})", o.block, in.name, in.k));
  return in;
}

int run(const dot_options& o) {
  const auto inst = mma_of(o);
  const format f = inst ? inst->a : parse_format(o.format, "--format");
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
  const auto a = load_as(o.a, f, sa), b = load_as(o.b, inst ? inst->b : f, sb);
  // (m, k) x (k, n), with a vector on the left as (1, k) and on the right as (k, 1).
  const std::uint64_t m = sa.size() == 2 ? sa[0] : 1, k = sa.back();
  const std::uint64_t kb = sb[0], n = sb.size() == 2 ? sb[1] : 1;
  if (k != kb)
    throw usage_error(fmt::format("shapes {} and {} do not chain: {} != {}", npy_shape_string(sa),
                                  npy_shape_string(sb), k, kb));
  // The result's size is bounded before any work (two 128-byte files can declare 4e10 results),
  // and results are printed as they come, never held.
  std::uint64_t results = 0;
  const bool beyond = __builtin_mul_overflow(m, n, &results);
  if (beyond || results > max_dot_results)
    throw std::runtime_error(fmt::format("{} x {}: the result has {} x {} = {} values, over dot's limit of {} (2^24): "
                                         "dot checks small products in detail; take a slice",
                                         o.a, o.b, m, n, beyond ? std::string("2^64 or more") : std::to_string(results),
                                         max_dot_results));
  // With --mma, D comes from the instruction model (promotion: --block), errors from mma::measure.
  std::vector<float> D;
  if (inst) {
    const std::vector<float> af(a.begin(), a.end()), bf(b.begin(), b.end());  // exact: values of 8-16 bit formats
    D.resize(m * n);
    mma::gemm(*inst, m, n, k, af.data(), bf.data(), nullptr, D.data(), {o.block, 0});
  }
  std::vector<double> col(k);
  // Maxima over the results whose error exists; `undefined` counts the others (inf or NaN
  // inputs: no exact value; or a NaN result), whose errors are NaN. An overflow to inf from
  // finite inputs is an infinite error, and the maxima say inf.
  double worst_rel = 0, worst_ulp = 0;
  std::uint64_t undefined = 0;
  const auto each = [&](auto&& print) {
    for (std::uint64_t i = 0; i < m; ++i)
      for (std::uint64_t j = 0; j < n; ++j) {
        for (std::uint64_t t = 0; t < k; ++t) col[t] = b[t * n + j];
        dot_result r = dot(std::span<const double>(a.data() + i * k, k), col, acc);
        if (inst) r = mma::measure(*inst, D[i * n + j], r.exact);
        if (std::isnan(r.rel_error)) {
          ++undefined;
        } else {
          worst_rel = std::max(worst_rel, std::fabs(r.rel_error));
          worst_ulp = std::max(worst_ulp, std::fabs(r.ulp_error));
        }
        print(i, j, r);
      }
  };
  // With no result that has an error, the maxima are NaN too, not 0.
  const auto worst = [&](double w) { return results > 0 && undefined == results ? NAN : w; };
  if (o.json) {
    // One result a line, streamed; JSON has no inf or NaN: those values are null.
    const auto num = [](double v) { return nlohmann::json(v).dump(); };
    fmt::print("{{\n  \"format\": {},\n  \"accumulator\": {},\n  \"k\": {},\n  \"shape\": [{}, {}],\n  \"results\": [",
               nlohmann::json(f.name).dump(), nlohmann::json(inst ? inst->describe() : describe(acc)).dump(), k, m, n);
    bool first = true;
    each([&](std::uint64_t i, std::uint64_t j, const dot_result& r) {
      fmt::print("{}\n    {{\"index\": [{}, {}], \"value\": {}, \"exact\": {}, \"abs_error\": {}, \"rel_error\": {}, "
                 "\"ulp_error\": {}}}",
                 first ? "" : ",", i, j, num(r.value), num(r.exact), num(r.abs_error), num(r.rel_error),
                 num(r.ulp_error));
      first = false;
    });
    fmt::print("{}],\n  \"max_abs_rel_error\": {},\n  \"max_abs_ulp_error\": {},\n  \"undefined_errors\": {}\n}}\n",
               first ? "" : "\n  ", num(worst(worst_rel)), num(worst(worst_ulp)),
               undefined);
    return exit_ok;
  }
  fmt::print("{} x {}: inputs in {}, {} products per result, accumulator {}\n", printable(o.a), printable(o.b), f.name, k,
             inst ? inst->describe() + (o.block ? fmt::format(", promoted every {}", o.block) : "") : describe(acc));
  fmt::print("  {:<7} {:<24} {:<24} {:<12} {:<12} {}\n", "index", "value", "exact", "abs error", "rel error",
             "ulps (acc)");
  std::uint64_t shown = 0;
  each([&](std::uint64_t i, std::uint64_t j, const dot_result& r) {
    if (shown++ < 20)
      fmt::print("  [{},{}]  {:<24.17g} {:<24.17g} {:<12.4g} {:<12.4g} {:.4g}\n", i, j, r.value, r.exact, r.abs_error,
                 r.rel_error, r.ulp_error);
  });
  if (results > 20) fmt::print("  ... {} more (use --json for all)\n", results - 20);
  std::string summary = fmt::format("max |rel error| {:.4g}, max |ulp error| {:.4g}", worst(worst_rel), worst(worst_ulp));
  if (undefined)
    summary += fmt::format(" ({} result{} no exact value: inf or NaN inputs, or a NaN result)", undefined,
                           undefined == 1 ? " has" : "s have");
  fmt::print("{}\n", summary);
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
  sub->add_option("--mma", o->mma,
                  "ARCH:INST: accumulate as that tensor-core instruction does (fpscope gemm's\n"
                  "models; inputs rounded to its types; --block promotes to fp32)");
  sub->footer(
      "Products of two input values are exact; each is added to the running partial sum and\n"
      "rounded once in the accumulator; with --block K the partial sum is added (fp32,\n"
      "nearest-even) to a total every K products and restarted, as FP8 GEMM kernels that\n"
      "promote every 128 elements do. Errors are against the exact sum (Boost integers):\n"
      "value - exact, relative, and in units of the accumulator's last place at |exact|.\n"
      "A sum of finite products that overflows the accumulator to inf has an infinite error;\n"
      "with inf or NaN inputs there is no exact value and the errors are nan. The summary's\n"
      "maxima are over the results with an error, and it counts those without (JSON:\n"
      "undefined_errors; inf and nan are null in JSON). At most 2^24 results (m x n) per run:\n"
      "larger products are refused before any work. Results are printed as they come.\n"
      "\n"
      "Examples:\n"
      "  fpscope dot x.npy y.npy --format e4m3 --acc bits:14            # Hopper-like FP8 accumulation\n"
      "  fpscope dot x.npy y.npy --format e4m3 --acc bits:14 --block 128  # with promotion every 128\n"
      "  fpscope dot A.npy B.npy --format bf16 --acc fp32 --json\n"
      "  fpscope dot x.npy y.npy --mma hopper:m64n8k32.f32.e4m3.e4m3 --block 128   # the real FP8 wgmma");
  return [o, sub] {
    o->format_given = sub->count("--format") > 0;
    o->acc_given = sub->count("--acc") > 0;
    return run(*o);
  };
}

const registrar reg{"dot", 50, &setup};

}  // namespace
}  // namespace fpscope::cli
