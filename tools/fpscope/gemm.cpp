// fpscope gemm: D = A * B + C as a GPU's tensor-core instruction computes it (fpscope/mma.hpp,
// the models of MMA-Sim), with its error against the exact product, for one architecture or
// several side by side. This file parses and prints; the library computes.
#include <cmath>
#include <cstring>
#include <fmt/format.h>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli.hpp"
#include "fpscope/convert.hpp"
#include "fpscope/mma.hpp"
#include "fpscope/npy.hpp"
#include "fpscope/output.hpp"
#include "plot.hpp"
#include "plot_gemm.hpp"
#include "text.hpp"

namespace fpscope::cli {
namespace {

struct gemm_options {
  std::string a, b, c, out, scales;
  std::string arch, inst;
  std::string k_sweep, plot;  // --k-sweep DEPTHS, --plot FILE
  std::size_t promote = 0;
  int threads = 0;
  bool json = false, csv = false;
};

// What a run is: the instructions resolved (one per architecture), checked before any reading.
struct gemm_plan {
  std::vector<mma::instruction> insts;
};

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> v;
  for_each_item(s, [&](std::string_view item) { v.emplace_back(item); });
  return v;
}

gemm_plan plan(const gemm_options& o) {
  gemm_plan p;
  const auto archs = split_commas(o.arch), insts = split_commas(o.inst);
  if (insts.size() != 1 && insts.size() != archs.size())
    throw usage_error(fmt::format("--inst: give one instruction for all architectures or one per architecture "
                                  "({} given for {})", insts.size(), archs.size()));
  for (std::size_t i = 0; i < archs.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j)
      if (archs[j] == archs[i] && insts.size() == 1) throw usage_error("--arch: " + fpscope::quoted(archs[i]) + " given twice");
    p.insts.push_back(mma::find(archs[i], insts.size() == 1 ? insts[0] : insts[i]));
  }
  for (const auto& in : p.insts) {
    if (in.block && o.scales.empty())
      throw usage_error("--scales: " + in.name + " is block-scaled: give SA.npy,SB.npy (UE8M0 codes)");
    if (!o.scales.empty() && (in.block != 0) != (p.insts.front().block != 0))
      throw usage_error("--scales: " + in.name + " and " + p.insts.front().name +
                        " take different scales (block-scaled codes against 1x128 float32)");
    if (!o.scales.empty() && !in.block && (in.fam == mma::family::mfma || in.group))
      throw usage_error("--scales: " + in.arch + " " + in.name + " takes no 1x128 scales");
    if (!o.scales.empty() && !in.block && o.promote && o.promote != mma::fine_block)
      throw usage_error(fmt::format("--promote: 1x128 scales promote every {}, not {}", mma::fine_block, o.promote));
  }
  if (!o.out.empty() && p.insts.size() > 1) throw usage_error("-o: one architecture at a time (D differs by architecture)");
  if (!o.out.empty() && !o.k_sweep.empty()) throw usage_error("-o: not with --k-sweep (a sweep computes one D per depth)");
  if (!o.plot.empty() && o.k_sweep.empty()) throw usage_error("--plot: draws the error against K: give --k-sweep");
  if (o.csv && o.k_sweep.empty()) throw usage_error("--csv: one line per depth of --k-sweep: give --k-sweep");
  if (!o.plot.empty()) try {
      plot_is_svg(o.plot);  // before the work, not after
    } catch (const std::invalid_argument& e) {
      throw usage_error(e.what());
    }
  if (o.promote)
    for (const auto& in : p.insts)
      if (o.promote % std::size_t(in.k))
        throw usage_error(fmt::format("--promote: {} is not a multiple of {}'s k ({})", o.promote, in.name, in.k));
  return p;
}

// A 2-D array as float32: float16/float32 as they are, float64 only where float32 holds it
// exactly, codes (uint8/16/32) of `codes_format`.
struct matrix {
  std::vector<std::uint64_t> shape;
  std::vector<float> v;
};

matrix load(const std::string& path, const format& codes_format, const char* what) {
  const npy_reader in(path);
  matrix m;
  m.shape = in.shape();
  if (m.shape.size() != 2)
    throw npy_error(fmt::format("{}: {} must be a matrix, not shape {}", path, what, npy_shape_string(m.shape)));
  m.v.resize(in.size());
  switch (in.dtype()) {
    case npy_dtype::f4: {
      const auto x = in.values<float>();
      std::copy(x.begin(), x.end(), m.v.begin());
      break;
    }
    case npy_dtype::f8: {
      const auto x = in.values<double>();
      for (std::size_t i = 0; i < x.size(); ++i) {
        m.v[i] = float(x[i]);
        if (double(m.v[i]) != x[i] && !std::isnan(x[i]))
          throw npy_error(fmt::format("{}: element {} ({}) is not a float32 value", path, i, number_text(x[i])));
      }
      break;
    }
    case npy_dtype::f2: {
      const auto x = in.values<std::uint16_t>();
      const std::span<const std::uint16_t> codes(x.data(), x.size());
      decode(codes, std::span<float>(m.v), builtin(format_id::fp16));
      break;
    }
    case npy_dtype::u1: decode(in.values<std::uint8_t>(), std::span<float>(m.v), codes_format); break;
    case npy_dtype::u2: decode(in.values<std::uint16_t>(), std::span<float>(m.v), codes_format); break;
    case npy_dtype::u4: decode(in.values<std::uint32_t>(), std::span<float>(m.v), codes_format); break;
  }
  in.check_intact();
  return m;
}


// UE8M0 scale codes (uint8) of shape rows x cols, for a block-scaled instruction.
std::vector<std::uint8_t> load_scales(const std::string& path, std::uint64_t rows, std::uint64_t cols) {
  const npy_reader in(path);
  if (in.dtype() != npy_dtype::u1)
    throw npy_error(fmt::format("{}: scales are UE8M0 codes, uint8, not {}", path, npy_type_name(in.dtype())));
  if (in.shape() != std::vector<std::uint64_t>{rows, cols})
    throw usage_error(fmt::format("{}: scales of shape {}, the instruction needs ({}, {})", path,
                                  npy_shape_string(in.shape()), rows, cols));
  const auto v = in.values<std::uint8_t>();
  std::vector<std::uint8_t> out(v.begin(), v.end());
  in.check_intact();
  return out;
}

struct sweep_inputs {
  const float *A, *B, *C;
  std::size_t m, n, k;
  const std::uint8_t *sa, *sb;
  const float *fsa, *fsb;
};

// --k-sweep: the error against K of every architecture (and, with --promote, each without and
// with promotion) on the same A and B (their first K columns and rows), as a table, JSON or CSV,
// and --plot's figure.
int run_sweep(const gemm_options& o, const gemm_plan& p, const sweep_inputs& in) {
  const std::vector<std::size_t> ks = parse_depths(o.k_sweep, in.k);
  struct series {
    const mma::instruction* inst;
    std::size_t promote;
    std::vector<mma::k_point> points;
  };
  std::vector<series> runs;
  bool same_inst = true;
  for (const auto& inst : p.insts) same_inst = same_inst && inst.name == p.insts.front().name;
  for (const auto& inst : p.insts)
    for (const std::size_t promote : o.promote ? std::vector<std::size_t>{0, o.promote} : std::vector<std::size_t>{0}) {
      mma::gemm_options go{promote, o.threads};
      go.a_scale = in.sa;
      go.b_scale = in.sb;
      go.a_scale_1x128 = in.fsa;
      go.b_scale_128x128 = in.fsb;
      if (in.fsa && promote) continue;  // 1x128 always promotes every 128: one series
      runs.push_back({&inst, in.fsa ? mma::fine_block : promote,
                      mma::k_sweep(inst, in.m, in.n, in.k, in.A, in.B, in.C, ks, go)});
    }
  const auto label = [&](const series& s) {
    std::string l = s.inst->arch;
    if (!same_inst) l += " " + s.inst->name;
    if (in.fsa) l += ", 1x128 scales";
    else if (s.promote) l += fmt::format(", promoted every {}", s.promote);
    return l;
  };
  if (!o.plot.empty()) {
    k_sweep_picture pic;
    pic.title = fmt::format("{} x {}: error against K", printable(o.a), printable(o.b));
    pic.caption = fmt::format("{} x {} results, K = {} .. {}{}{}; errors over {} results per depth", in.m, in.n,
                              grouped(ks.front()), grouped(ks.back()), same_inst ? ", " + p.insts.front().name : "",
                              o.c.empty() ? "" : ", + C", grouped(runs.front().points.front().err.checked));
    for (const auto& s : runs) {
      k_sweep_picture::series line{label(s), {}, {}, {}};
      for (const auto& pt : s.points) {
        line.k.push_back(double(pt.k));
        line.max_rel.push_back(pt.err.max_abs_rel);
        line.mean_rel.push_back(pt.err.mean_abs_rel);
      }
      pic.lines.push_back(std::move(line));
    }
    std::vector<std::string> inputs{o.a, o.b};
    if (!o.c.empty()) inputs.push_back(o.c);
    write_k_sweep_plot(o.plot, pic, inputs);
  }
  if (o.json) {
    nlohmann::json sweep = nlohmann::json::array();
    for (const auto& s : runs) {
      nlohmann::json pts = nlohmann::json::array();
      for (const auto& pt : s.points)
        pts.push_back({{"k", pt.k},
                       {"checked", pt.err.checked},
                       {"undefined_errors", pt.err.undefined},
                       {"inexact", pt.err.differ},
                       {"max_abs_rel_error", pt.err.max_abs_rel},
                       {"mean_abs_rel_error", pt.err.mean_abs_rel},
                       {"max_abs_ulp_error", pt.err.max_abs_ulp}});
      sweep.push_back({{"arch", s.inst->arch}, {"inst", s.inst->name}, {"model", s.inst->describe()},
                       {"promote", s.promote}, {"points", pts}});
    }
    const nlohmann::json j{{"shape", {in.m, in.n, in.k}}, {"k_sweep", ks}, {"sweep", sweep}};
    fmt::print("{}\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
  } else if (o.csv) {
    fmt::print("arch,inst,promote,k,checked,undefined_errors,inexact,max_abs_rel_error,mean_abs_rel_error,"
               "max_abs_ulp_error\n");
    for (const auto& s : runs)
      for (const auto& pt : s.points)
        fmt::print("{},{},{},{},{},{},{},{},{},{}\n", s.inst->arch, csv_field(s.inst->name), s.promote, pt.k,
                   pt.err.checked, pt.err.undefined, pt.err.differ, pt.err.max_abs_rel, pt.err.mean_abs_rel,
                   pt.err.max_abs_ulp);
  } else {
    fmt::print("{} x {}: {} x {} results, K = {}{}\n", printable(o.a), printable(o.b), in.m, in.n,
               ks.size() == 1 ? grouped(ks[0]) : fmt::format("{} .. {} ({} depths)", grouped(ks.front()),
                                                             grouped(ks.back()), ks.size()),
               o.c.empty() ? "" : " + " + printable(o.c));
    const std::uint64_t checked = runs.front().points.front().err.checked;
    fmt::print("errors against the exact A*B+C over {} results per depth{}\n", grouped(checked),
               checked == std::uint64_t(in.m) * in.n ? " (all)" : " (evenly spaced)");
    for (const auto& s : runs) {
      fmt::print("{}{}\n", s.inst->describe(),
                 in.fsa ? ", 1x128 / 128x128 scales, promoted to fp32 every 128"
                 : s.promote ? fmt::format(", promoted to fp32 every {}", s.promote) : "");
      fmt::print("  {:>8} {:>12} {:>12} {:>10} {:>9}\n", "K", "max |rel|", "mean |rel|", "max ulps", "inexact");
      for (const auto& pt : s.points) {
        fmt::print("  {:>8} {:>12.4g} {:>12.4g} {:>10.4g} {:>9}", grouped(pt.k), pt.err.max_abs_rel,
                   pt.err.mean_abs_rel, pt.err.max_abs_ulp, grouped(pt.err.differ));
        if (pt.err.undefined) fmt::print("   ({} without exact value)", grouped(pt.err.undefined));
        fmt::print("\n");
      }
    }
  }
  if (!o.plot.empty() && !o.json && !o.csv) fmt::print("wrote {}\n", printable(o.plot));
  return exit_ok;
}

// float32 scales of the 1x128 recipe, rows x cols.
std::vector<float> load_fine_scales(const std::string& path, std::uint64_t rows, std::uint64_t cols, const char* what) {
  const npy_reader in(path);
  if (in.dtype() != npy_dtype::f4)
    throw npy_error(fmt::format("{}: {} scales are float32, not {} (an instruction without block scales of its "
                                "own takes DeepSeek-V3's 1x128 / 128x128 float32 scales)",
                                path, what, npy_type_name(in.dtype())));
  if (in.shape() != std::vector<std::uint64_t>{rows, cols})
    throw usage_error(fmt::format("{}: {} scales of shape {}, the product needs ({}, {})", path, what,
                                  npy_shape_string(in.shape()), rows, cols));
  const auto v = in.values<float>();
  std::vector<float> out(v.begin(), v.end());
  in.check_intact();
  return out;
}

int run(const gemm_options& o) {
  const gemm_plan p = plan(o);
  const auto& first = p.insts.front();
  // Codes are read as the first instruction's input types; several architectures with other
  // input types need values (floats), which every instruction reads alike.
  const matrix A = load(o.a, first.a, "A"), B = load(o.b, first.b, "B");
  if (A.shape[1] != B.shape[0])
    throw usage_error(fmt::format("shapes {} and {} do not chain: {} != {}", npy_shape_string(A.shape),
                                  npy_shape_string(B.shape), A.shape[1], B.shape[0]));
  const std::size_t m = A.shape[0], k = A.shape[1], n = B.shape[1];
  std::uint64_t mn = 0;  // D is allocated here, before the library's own check of the shapes
  if (__builtin_mul_overflow(std::uint64_t(m), std::uint64_t(n), &mn) || mn > mma::max_gemm_elements || k == 0)
    throw std::runtime_error(fmt::format("{} x {}: a {} x {} x {} product is refused (k = 0, or more than 2^30 results)",
                                         printable(o.a), printable(o.b), m, n, k));
  matrix C;
  if (!o.c.empty()) {
    C = load(o.c, first.c, "C");
    if (C.shape[0] != m || C.shape[1] != n)
      throw usage_error(fmt::format("C has shape {}, the product {}", npy_shape_string(C.shape),
                                    npy_shape_string(std::vector<std::uint64_t>{m, n})));
  }
  const float* cp = o.c.empty() ? nullptr : C.v.data();
  std::vector<std::uint8_t> sa, sb;
  std::vector<float> fsa, fsb;  // the 1x128 recipe's
  if (!o.scales.empty()) {
    const auto paths = split_commas(o.scales);
    if (paths.size() != 2) throw usage_error("--scales: give two files, A's and B's scales: SA.npy,SB.npy");
    int block = 0;
    for (const auto& in : p.insts) block = std::max(block, in.block);
    if (block) {
      const std::uint64_t nblk = (k + std::uint64_t(block) - 1) / std::uint64_t(block);
      sa = load_scales(paths[0], m, nblk);
      sb = load_scales(paths[1], nblk, n);
    } else {  // DeepSeek-V3's 1x128 / 128x128 float32 scales
      const std::uint64_t kb = (k + mma::fine_block - 1) / mma::fine_block, nb = (n + mma::fine_block - 1) / mma::fine_block;
      fsa = load_fine_scales(paths[0], m, kb, "A's 1x128");
      fsb = load_fine_scales(paths[1], kb, nb, "B's 128x128");
    }
  }
  if (!o.k_sweep.empty()) {
    const sweep_inputs in{A.v.data(), B.v.data(), cp, m, n, k, sa.empty() ? nullptr : sa.data(),
                          sb.empty() ? nullptr : sb.data(), fsa.empty() ? nullptr : fsa.data(),
                          fsb.empty() ? nullptr : fsb.data()};
    return run_sweep(o, p, in);
  }
  std::vector<float> D(m * n);
  struct row {
    const mma::instruction* in;
    mma::error_summary err;
  };
  std::vector<row> rows;
  std::vector<float> first_d;
  std::vector<std::uint64_t> differ_from_first;
  for (const auto& in : p.insts) {
    mma::gemm_options go{o.promote, o.threads};
    go.a_scale = sa.empty() ? nullptr : sa.data();
    go.b_scale = sb.empty() ? nullptr : sb.data();
    go.a_scale_1x128 = fsa.empty() ? nullptr : fsa.data();
    go.b_scale_128x128 = fsb.empty() ? nullptr : fsb.data();
    mma::gemm(in, m, n, k, A.v.data(), B.v.data(), cp, D.data(), go);
    rows.push_back({&in, mma::errors(in, m, n, k, A.v.data(), B.v.data(), cp, D.data(), go)});
    if (first_d.empty()) first_d = D;
    std::uint64_t diff = 0;
    for (std::size_t x = 0; x < D.size(); ++x)
      diff += std::memcmp(&D[x], &first_d[x], 4) != 0 && !(std::isnan(D[x]) && std::isnan(first_d[x]));
    differ_from_first.push_back(diff);
  }
  if (!o.out.empty()) {
    if (first.d.bits == 16) {  // f16 output: the hardware's codes (canonical NaN 0x7FFF)
      std::vector<std::uint16_t> h(D.size());
      policy cuda = profile_policy(profile::cuda, first.d);
      encode(std::span<const float>(D), std::span<std::uint16_t>(h), first.d, cuda);
      npy_save(o.out, npy_dtype::f2, {m, n}, std::span<const std::uint16_t>(h));
    } else {
      npy_save(o.out, npy_dtype::f4, {m, n}, std::span<const float>(D));
    }
  }
  const std::uint64_t results = std::uint64_t(m) * n;
  if (o.json) {
    nlohmann::json runs = nlohmann::json::array();
    for (std::size_t r = 0; r < rows.size(); ++r) {
      const auto& [in, e] = rows[r];
      runs.push_back({{"arch", in->arch},
                      {"inst", in->name},
                      {"model", in->describe()},
                      {"checked", e.checked},
                      {"undefined_errors", e.undefined},
                      {"inexact", e.differ},
                      {"max_abs_rel_error", e.max_abs_rel},
                      {"mean_abs_rel_error", e.mean_abs_rel},
                      {"max_abs_ulp_error", e.max_abs_ulp},
                      {"differ_from_first", differ_from_first[r]}});
    }
    const nlohmann::json j{{"shape", {m, n, k}}, {"promote", o.promote}, {"runs", runs}};
    fmt::print("{}\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
    return exit_ok;
  }
  fmt::print("{} x {}: {} x {} x {}{}{}\n", printable(o.a), printable(o.b), m, n, k,
             o.c.empty() ? "" : " + " + printable(o.c),
             !fsa.empty() ? ", 1x128 / 128x128 scales, promoted to fp32 every 128"
             : o.promote  ? fmt::format(", promoted to fp32 every {}", o.promote) : "");
  const std::uint64_t checked = rows.front().err.checked;
  fmt::print("errors against the exact A*B+C over {}{}\n", checked == results ? "every result" : grouped(checked) + " results",
             checked == results ? "" : " (evenly spaced)");
  fmt::print("  {:<14} {:<34} {:>12} {:>12} {:>10} {:>9}{}\n", "arch", "instruction", "max |rel|", "mean |rel|",
             "max ulps", "inexact", p.insts.size() > 1 ? "   differ from first" : "");
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const auto& [in, e] = rows[r];
    fmt::print("  {:<14} {:<34} {:>12.4g} {:>12.4g} {:>10.4g} {:>9}", in->arch, in->name, e.max_abs_rel,
               e.mean_abs_rel, e.max_abs_ulp, grouped(e.differ));
    if (p.insts.size() > 1) fmt::print("   {}", r ? grouped(differ_from_first[r]) : std::string("-"));
    if (e.undefined) fmt::print("   ({} without exact value)", grouped(e.undefined));
    fmt::print("\n");
  }
  for (const auto& in : p.insts) fmt::print("  model: {}\n", in.describe());
  if (results <= 16) {
    fmt::print("D ({}):\n", p.insts.back().arch);
    for (std::size_t i = 0; i < m; ++i) {
      fmt::print(" ");
      for (std::size_t j = 0; j < n; ++j) fmt::print(" {:>14.8g}", D[i * n + j]);
      fmt::print("\n");
    }
  }
  if (!o.out.empty()) fmt::print("wrote {} ({})\n", printable(o.out), first.d.bits == 16 ? "float16" : "float32");
  return exit_ok;
}

std::string arch_help() {
  std::string s;
  for (const auto& a : mma::architectures()) s += (s.empty() ? "" : ", ") + a;
  return s;
}

runner setup(CLI::App& app) {
  auto o = std::make_shared<gemm_options>();
  auto* sub = app.add_subcommand("gemm", "a matrix product as a GPU tensor-core instruction computes it, bit for bit");
  sub->add_option("A", o->a, ".npy matrix (m, k): values (float16/32/64) or codes (uint8/16/32) of the A type")
      ->required();
  sub->add_option("B", o->b, ".npy matrix (k, n), as A")->required();
  sub->add_option("--c", o->c, ".npy matrix (m, n) of the C type [default: zeros]");
  sub->add_option("--arch", o->arch, "architecture(s), comma-separated: " + arch_help())
      ->required()
      ->check(parsed_by([](const std::string& v) {
        for (const auto& a : split_commas(v)) mma::instruction_names(a);
      }, "--arch", "ARCH"));
  sub->add_option("--inst", o->inst, "instruction as MMA-Sim names it (one, or one per --arch)")->required();
  sub->add_option("--promote", o->promote, "add to an fp32 total every N elements of K (DeepSeek-V3; 0: never)")
      ->check(count_check(false));
  sub->add_option("--scales", o->scales,
                  "SA.npy,SB.npy: block scales (uint8 UE8M0/UE4M3 codes) of a block-scaled\n"
                  "instruction: A's (m, k/block) and B's (k/block, n); for any other (not AMD's):\n"
                  "DeepSeek-V3's float32 scales, A's 1x128 (m, k/128) and B's 128x128 (k/128, n/128),\n"
                  "each K-block of 128 promoted to fp32 times its two scales");
  sub->add_option("-o,--output", o->out, "write D as .npy (float32, or float16 for an f16 output)");
  add_threads_option(*sub, o->threads);
  sub->add_option("--k-sweep", o->k_sweep,
                  "DEPTHS: the error against K over the first K columns of A and rows of B, for each\n"
                  "K of DEPTHS: K,K,... or LO:HI (LO, 2LO, 4LO, ... and HI); with --promote N, each\n"
                  "architecture without and with promotion");
  sub->add_option("--plot", o->plot, "with --k-sweep: draw the error against K to FILE.svg|png");
  auto* j = sub->add_flag("--json", o->json, "print a JSON object instead of the table");
  sub->add_flag("--csv", o->csv, "with --k-sweep: print CSV, one line per architecture x depth")->excludes(j);
  sub->footer(
      "The K loop runs the instruction's depth at a time, each D the next C, as a kernel does;\n"
      "a K that is not a multiple of it is padded with zeros. Inputs must be exactly values of\n"
      "the instruction's types (else an error naming the first that is not). The models are\n"
      "MMA-Sim's (microsoft/MMA-Sim 2.1.1), checked bit for bit against it. Errors are against\n"
      "the exact A*B+C (exact sums): relative, and in units of D's type at |exact|; 'inexact'\n"
      "counts results that are not the exact value (rounded to double). At most 4096 results\n"
      "are measured (evenly spaced); all of D is computed.\n"
      "\n"
      "Instructions (fpscope gemm --arch ARCH --inst x lists an architecture's):\n"
      "  mma.sync  m16n8k16.f32.f16.f16.f32, m16n8k8.f32.tf32.tf32.f32, m8n8k4.f16.f16.f16.f16, ...\n"
      "  wgmma     (hopper) m64nNk16.f32.bf16.bf16, m64nNk32.f32.e4m3.e5m2, ... (N = 8..256)\n"
      "  tcgen05   (blackwell) mMnNk32.kind::f8f6f4.f32.e4m3.e4m3, ... (M = 64, 128)\n"
      "  MXFP8/6/4 (blackwell) m128nNk32.kind::mxf8f6f4.block32.f32.e4m3.e4m3.ue8m0,\n"
      "            (rtx-blackwell) m16n8k32.kind::mxf8f6f4.block32.f32.e2m1.e2m1.f32.ue8m0, ...\n"
      "  MXFP4     m128nNk64.kind::mxf4.block32.f32.e2m1.e2m1.ue8m0, m16n8k64.kind::mxf4...\n"
      "  NVFP4     m128nNk64.kind::mxf4nvf4.block16.f32.e2m1.e2m1.ue4m3, ...\n"
      "  v_mfma    (cdna3) f32_32x32x8_f16, f32_16x16x8_xf32, f32_16x16x32_fp8_bf8, ...\n"
      "            (cdna1, cdna2) f32_32x32x8f16, f32_32x32x4bf16, f32_32x32x2f32, ...,\n"
      "            (cdna2) f32_32x32x8bf16_1k, ...\n"
      "\n"
      "Examples:\n"
      "  fpscope gemm A.npy B.npy --arch ampere --inst m16n8k16.f32.f16.f16.f32 -o D.npy\n"
      "  fpscope gemm A.npy B.npy --c C.npy --arch volta,ampere,hopper --inst m8n8k4.f32.f16.f16.f32,\\\n"
      "      m16n8k16.f32.f16.f16.f32,m16n8k16.f32.f16.f16.f32      # three generations side by side\n"
      "  fpscope gemm A8.npy B8.npy --arch hopper --inst m64n128k32.f32.e4m3.e4m3 --promote 128\n"
      "  fpscope gemm A.npy B.npy --arch blackwell --inst m128n256k16.kind::f16.f32.bf16.bf16 --json\n"
      "  fpscope gemm A8.npy B8.npy --arch hopper,blackwell --inst m64n8k32.f32.e4m3.e4m3,\\\n"
      "      m128n8k32.kind::f8f6f4.f32.e4m3.e4m3 --k-sweep 32:4096 --promote 128 --plot err.svg\n"
      "  fpscope gemm X8.npy W8.npy --scales SX.npy,SW.npy --arch hopper \\\n"
      "      --inst m64n256k32.f32.e4m3.e4m3   # DeepSeek-V3's 1x128 / 128x128 float32 scales\n"
      "  fpscope gemm A8.npy B8.npy --scales SA.npy,SB.npy --arch blackwell \\\n"
      "      --inst m128n128k32.kind::mxf8f6f4.block32.f32.e4m3.e4m3.ue8m0   # MXFP8");
  return [o] { return run(*o); };
}

const registrar reg{"gemm", 55, &setup};

}  // namespace
}  // namespace fpscope::cli
