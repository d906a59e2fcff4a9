// fpscope trace merge: parses the options, runs the library's merge (fpscope/trace_merge.hpp) in a
// contained worker, which writes the merged trace through the atomic output writer, and prints
// what it did.
#include <fmt/format.h>

#include <memory>
#include <sys/stat.h>

#include "cli.hpp"
#include "fpscope/trace_merge.hpp"
#include "text.hpp"

namespace fpscope::cli {
namespace {

struct merge_cli {
  std::vector<std::string> traces;
  std::string out;
  merge_options o;
  bool histograms = false, quiet = false;
};

int merge(merge_cli& c) {
  if (c.traces.size() < 2) throw usage_error("trace merge: needs the traces of several ranks (rank*.h5)");
  c.o.values = !c.histograms;
  std::uint64_t bytes = 0;
  for (const auto& t : c.traces) {
    struct stat st {};
    ::stat(t.c_str(), &st);
    bytes += std::uint64_t(st.st_size);
  }
  progress bar("merging", 1, bytes, !c.quiet);
  c.o.progress = [&bar](std::size_t done, std::size_t total) {
    if (done < total) bar.update(done, total);
    else bar.clear();
  };
  const merge_result m = merge_files(c.traces, c.out, c.o);
  for (const auto& note : m.incomplete) fmt::print("note: an incomplete last step was skipped ({})\n", printable(note));
  for (const auto& note : m.left_out) fmt::print("note: {}\n", printable(note));
  fmt::print("{}: {} steps of {} ranks merged{}\n", printable(c.out), m.steps, m.world_size,
             c.histograms ? " (histograms only)" : "");
  return 0;
}

runner setup(CLI::App& app) {
  auto c = std::make_shared<merge_cli>();
  auto* sub = app.add_subcommand("trace", "work on gradient traces: merge the rank traces of a distributed run");
  sub->require_subcommand(1, 1);
  auto* m = sub->add_subcommand("merge", "merge the rank traces of one distributed run into one logical trace");
  m->add_option("TRACES", c->traces, "every rank's trace of the run (docs/trace.md, \"Multi-rank traces\")")
      ->required()
      ->check(CLI::ExistingFile);
  m->add_option("-o,--output", c->out, "the merged trace (.h5), written atomically")->required();
  m->add_flag("--histograms", c->histograms, "write histograms only (no raw values): smaller, enough for loss scalers and te-*");
  add_threads_option(*m, c->o.threads, "-j,--threads", "threads that inflate the shards' values [default: all]");
  m->add_flag("-q,--quiet", c->quiet, "no progress bar");
  m->footer(
      "Per step that every rank recorded, each logical tensor is assembled from its shards (flat\n"
      "shards at their offsets, tensor-parallel splits along their dimension; a replica once) and\n"
      "written as one float32 tensor: its values, or its histogram the sum of the shards'; counts\n"
      "and inf/NaN counts summed, amax the max. The shards must tile each tensor exactly once.\n"
      "Steps some rank lacks are left out and listed. The result replays as the ranks replay\n"
      "together (`fpscope replay rank*.h5`) under loss scalers and te-* with --amax-group tensor.\n"
      "\n"
      "Examples:\n"
      "  fpscope trace merge datasets/traces/ranks/zero/rank*.h5 -o run.h5\n"
      "  fpscope trace merge rank*.h5 -o run.h5 --histograms\n"
      "\n"
      "Exit status:\n"
      "  0  success\n"
      "  1  a bad, corrupt or unreadable trace, shards that do not tile a tensor exactly once, a\n"
      "     missing or repeated rank, an output that cannot be written (one line on stderr)\n"
      "  2  usage error");
  return [c, m] { return m->parsed() ? merge(*c) : 0; };
}

const registrar reg{"trace", 80, &setup};

}  // namespace
}  // namespace fpscope::cli
