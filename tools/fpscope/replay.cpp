// fpscope replay: parses the options, runs the library's replay engine (fpscope/replay.hpp) on
// the trace in a contained worker, and prints its result as text, JSON (fpscope/report_json.hpp)
// or CSV, with an optional figure.
#include <fmt/format.h>

#include <cmath>
#include <memory>
#include <sys/stat.h>

#include "cli.hpp"
#include "fpscope/recipe.hpp"
#include "fpscope/replay.hpp"
#include "fpscope/replay_mpi.hpp"
#include "fpscope/report_json.hpp"
#include "plot.hpp"
#include "text.hpp"

namespace fpscope::cli {
namespace {

struct replay_cli {
  std::vector<std::string> traces;
  std::string steps, plot, group;
  replay_options o;
  bool json = false, csv = false, quiet = false, mpi = false;
};

void print_csv(const replay_result& r) {
  fmt::print("step,tensor,scale,skipped,total,zero,underflow,subnormal,normal,overflow,nonfinite,exact\n");
  for (const auto& s : r.steps)
    for (const auto& t : s.tensors) {
      fmt::print("{},{},{},{},{}", s.step, csv_field(printable(t.name)), t.scale, s.skipped ? 1 : 0, t.counts.total());
      for (const auto n : t.counts.n) fmt::print(",{}", n);
      fmt::print(",{}\n", t.exact ? 1 : 0);
    }
}

void print_text(const replay_result& r) {
  const auto& steps = r.steps;
  const auto& m = r.summary;
  // The path and the trace's own text (its @model, tensor names) are data: printable().
  fmt::print("{}: {}\n", printable(r.trace), printable(r.model));
  fmt::print("policy {}, cast to {}\n", r.policy, r.cast);
  if (r.world_size) fmt::print("{} ranks replayed as one run; FP8 amax reduced over: {}\n", r.world_size, r.amax_group);
  for (const auto& note : r.incomplete) fmt::print("note: an incomplete last step was skipped ({})\n", printable(note));
  for (const auto& note : r.left_out) fmt::print("note: {}\n", printable(note));
  fmt::print("\n  {:>8}  {:>10}  {:>8}  {:>10}  {:>10}  {:>10}\n", "step", "scale", "skipped", "underflow", "subnormal", "overflow");
  // Every step when few, else the steps where something happened (a skip or a scale change).
  std::size_t shown = 0;
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const auto& s = steps[i];
    const bool event = s.skipped || i == 0 || i + 1 == steps.size() || s.scale != steps[i - 1].scale;
    if (steps.size() > 40 && !event) continue;
    if (++shown > 60) {
      fmt::print("  ... (more steps: --json or --csv for all)\n");
      break;
    }
    const auto n = s.total.nonzero_finite();
    fmt::print("  {:>8}  {:>10}  {:>8}  {:>10}  {:>10}  {:>10}\n", s.step, scale_label(s.scale, 4), s.skipped ? "SKIPPED" : "",
               percent_fixed(s.total[cast_class::underflow], n, 2), percent_fixed(s.total[cast_class::subnormal], n, 2),
               percent_fixed(s.total[cast_class::overflow], n, 2));
  }
  const auto& g = m.total;
  const auto n = g.nonzero_finite();
  fmt::print("\n{} steps replayed", steps.size());
  if (r.loss_scaler) fmt::print(", {} skipped", m.skipped.size());
  if (!steps.empty())
    fmt::print("; scale {} .. {}, final {}, {} changes", scale_label(m.scale_min, 4), scale_label(m.scale_max, 4),
               scale_label(m.scale_final, 4), m.scale_changes);
  fmt::print("\nover all steps: underflow {}, subnormal {}, overflow {} of {} nonzero finite values ({} zero, {} nonfinite)\n",
             percent_fixed(g[cast_class::underflow], n, 2), percent_fixed(g[cast_class::subnormal], n, 2), percent_fixed(g[cast_class::overflow], n, 2), n,
             g[cast_class::zero], g[cast_class::nonfinite]);
  if (m.stop_step) fmt::print("the run would have STOPPED at step {}: {}\n", *m.stop_step, m.stop_reason);
  if (!m.skip_causes.empty()) {
    fmt::print("tensors that caused skips (skipped steps in which they overflowed):\n");
    for (const auto& [t, c] : m.skip_causes) fmt::print("  {:<40} {}\n", printable(t), c);
  }
  if (!m.overflow_sources.empty()) {
    fmt::print("where overflows came from (steps in which each rank's tensor or shard overflowed):\n");
    for (const auto& [t, c] : m.overflow_sources) fmt::print("  {:<40} {}\n", printable(t), c);
  }
  if (!m.worst_underflow.empty()) {
    fmt::print("worst tensors by underflow (mean fraction of nonzero values that vanished):\n");
    for (const auto& [t, f] : m.worst_underflow)
      fmt::print("  {:<40} {}\n", printable(t), fraction_percent(f, 3));
  }
  if (m.partial)
    fmt::print("note: {} steps had tensors recorded as histograms only; {} needs raw values, so they were left out\n",
               m.partial, r.policy);
  if (!m.exact)
    fmt::print("note: some counts come from recorded histograms whose buckets straddle a boundary at these scales; "
               "those buckets are counted above it\n");
}

replay_picture picture(const replay_result& r) {
  replay_picture p;
  const std::size_t colon = r.cast.find(' ');
  p.title = fmt::format("{}: {} on {}", printable(r.trace), r.policy, r.cast.substr(0, colon));
  for (const auto& s : r.steps) {
    const auto nzf = s.total.nonzero_finite();
    p.steps.push_back(s.step);
    p.scale.push_back(s.scale);
    p.underflow.push_back(nzf ? double(s.total[cast_class::underflow]) / double(nzf) : 0);
    p.overflow.push_back(nzf ? double(s.total[cast_class::overflow]) / double(nzf) : 0);
    p.skipped.push_back(s.skipped);
  }
  return p;
}

void print(const replay_cli& c, const replay_result& r) {
  if (!c.plot.empty()) write_replay_plot(c.plot, picture(r), c.traces);
  if (c.json) fmt::print("{}\n", json_text(replay_json(r), 2));
  else if (c.csv) print_csv(r);
  else print_text(r);
}

// --mpi: every MPI process runs this; process 0 prints. A failure in any process is one line on
// its stderr and ends every process (MPI_Abort: the others would wait in an all-reduce).
int run_mpi(replay_cli& c, std::uint64_t bytes) {
  if (c.traces.size() < 2) throw usage_error("--mpi: needs several rank traces");
  replay_result r;
  try {
    progress bar("replaying", 1, bytes, !c.quiet && mpi_rank() == 0);
    c.o.progress = [&bar](std::size_t done, std::size_t total) {
      if (done < total) bar.update(done, total);
      else bar.clear();
    };
    r = replay_files_mpi(c.traces, c.o);
  } catch (const std::exception& e) {
    if (!mpi_built()) throw;
    report(e.what());
    mpi_abort(dynamic_cast<const option_error*>(&e) ? exit_usage : exit_runtime);
  }
  if (mpi_rank() == 0) print(c, r);
  mpi_finish();
  return 0;
}

int run(replay_cli& c) {
  if (c.json && c.csv) throw usage_error("--json and --csv exclude each other");
  if (!c.plot.empty()) try {
      plot_is_svg(c.plot);  // before the work, not after
    } catch (const std::invalid_argument& e) {
      throw usage_error(e.what());
    }
  c.o.steps = parse_steps(c.steps);
  if (!c.group.empty()) {
    if (c.traces.size() < 2) throw usage_error("--amax-group: needs several rank traces");
    c.o.group = parse_amax_group(c.group);
  }
  c.o.keep_tensors = c.json || c.csv;  // the text report needs only the totals and the summary
  std::uint64_t bytes = 0;
  for (const auto& t : c.traces) {
    struct stat st {};
    ::stat(t.c_str(), &st);
    bytes += std::uint64_t(st.st_size);
  }
  if (c.mpi) return run_mpi(c, bytes);
  // Drawn by the worker, which reads the trace; erased by it when the last step is read.
  progress bar("replaying", 1, bytes, !c.quiet);
  c.o.progress = [&bar](std::size_t done, std::size_t total) {
    if (done < total) bar.update(done, total);
    else bar.clear();
  };
  print(c, replay_files(c.traces, c.o));
  return 0;
}

// The --policy help, from the recipe table.
std::string policy_help() {
  std::string s = "a recipe and its keys, NAME[:key=value,flag,...] [default: torch]:";
  for (const auto& r : recipes()) s += "\n  " + std::string(r.name) + (r.keys.empty() ? "" : ":" + r.keys);
  return s;
}

std::string policy_footer() {
  std::string s = "Recipes (upstream argument names first, then aliases; numbers are decimals or 2^K):\n";
  for (const auto& r : recipes()) {
    s += fmt::format("  {:<11} {}\n", r.name, r.summary);
    if (!r.models.empty()) s += fmt::format("              models: {}\n", r.models);
  }
  return s;
}

runner setup(CLI::App& app) {
  auto c = std::make_shared<replay_cli>();
  auto* sub = app.add_subcommand("replay", "replay a gradient trace through a loss scaler or FP8 scaling recipe");
  sub->add_option("TRACE", c->traces,
                  "an fpscope trace (.h5, docs/trace.md); several: every rank's trace of one distributed run,\n"
                  "replayed as one run")
      ->required()
      ->check(CLI::ExistingFile);
  sub->add_option("-P,--policy", c->o.policy, policy_help())
      ->check(parsed_by([](const std::string& v) { (void)make_recipe(v); }, "--policy", "RECIPE"));
  sub->add_option("-f,--format", c->o.cast.format,
                  "format of the scaled gradients [default: fp16 for loss scalers,\n"
                  "e5m2 for te-* (HYBRID: gradients in E5M2), e4m3 for mx and block]")
      ->check(parsed_by([](const std::string& v) { parse_format(v); }, "format", "FORMAT"));
  add_policy_options(*sub, c->o.cast, "ieee for loss scalers, cuda (satfinite) for FP8 recipes");
  sub->add_option("--steps", c->steps, "only training steps A:B (inclusive; A: or :B open; A alone)")
      ->check(parsed_by([](const std::string& v) { parse_steps(v); }, "--steps", "A:B"));
  sub->add_option("--amax-group", c->group,
                  "several rank traces: reduce a per-tensor recipe's amax over the whole tensor, each\n"
                  "tensor-parallel group (tp) or each rank alone (rank: a wrong group, to see its effect)\n"
                  "[default: tensor]")
      ->check(parsed_by([](const std::string& v) { parse_amax_group(v); }, "--amax-group", "tensor|tp|rank"));
  sub->add_option("--top", c->o.top, "how many worst tensors to list [default: 5]")->check(CLI::Range(0, 10000));
  add_threads_option(*sub, c->o.threads, "-j,--threads", "threads that inflate and count a step's values [default: all]");
  sub->add_option("--plot", c->plot, "draw the scale and the underflow/overflow fractions over steps to FILE.svg|png");
  sub->add_flag("--json", c->json, "print JSON: every step and tensor, and the summary (docs/json.md)");
  sub->add_flag("--csv", c->csv, "print CSV: one line per step and tensor");
  sub->add_flag("-q,--quiet", c->quiet, "no progress bar");
  sub->add_flag("--mpi", c->mpi,
                "several rank traces under mpirun: each MPI process counts the values of every Nth\n"
                "trace and the step's counts are all-reduced; process 0 prints (docs/replay.md)");
  sub->footer(
      "Gradients are recorded unscaled; at each step the policy's scale S multiplies them (in float32)\n"
      "and they are cast to the format. Under a loss scaler a step overflows when any element of any\n"
      "tensor overflows (or was already inf/NaN); the scaler then skips it and backs off, as upstream.\n"
      "Counts are exact (see docs/hist.md); FP8 recipes never skip. The policy steps once per\n"
      "recorded step: a trace recorded every N training steps replays as if they were consecutive.\n"
      "\n" +
      policy_footer() +
      "\n"
      "Examples:\n"
      "  fpscope replay datasets/traces/digits-mlp.h5                  torch GradScaler on fp16\n"
      "  fpscope replay run.h5 -P deepspeed --json\n"
      "  fpscope replay run.h5 -P static:65536 --steps 100:200\n"
      "  fpscope replay run.h5 -P te-delayed:amax_history_len=16,margin=1 --plot te.svg\n"
      "  fpscope replay run.h5 -P mx:scaling_mode=rceil -f e4m3\n"
      "  fpscope replay rank*.h5 -P te-delayed --amax-group rank        a distributed run's ranks\n"
      "  mpirun -np 4 fpscope replay --mpi rank*.h5                      the same on 4 MPI processes\n"
      "\n"
      "Exit status:\n"
      "  0  success\n"
      "  1  a bad, corrupt or unreadable trace, one line on stderr (several traces: also shards that\n"
      "     do not tile a tensor exactly once, a missing or repeated rank); also when libhdf5 crashes on\n"
      "     it, or makes no progress on it for FPSCOPE_STALL_SECONDS seconds (default 60; 0: no\n"
      "     limit): it loops forever on some damaged files, and the reading process is then killed\n"
      "  2  usage error: bad option or policy, malformed FPSCOPE_STALL_SECONDS");
  return [c] { return run(*c); };
}

const registrar reg{"replay", 70, &setup};

}  // namespace
}  // namespace fpscope::cli
