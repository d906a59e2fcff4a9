// The replay engine: a recorded gradient trace (docs/trace.md) stepped through a scaling recipe
// (fpscope/recipe.hpp). At each step every tensor is multiplied by its scale (in float32) and
// cast; the result is, per step and tensor, the scale and the exact class counts
// (fpscope/histogram.hpp), whether the step was skipped, and a summary of the run. Target
// fpscope::replay.
//
// Values are read a step at a time and a bounded group of storage chunks at a time, inflated and
// counted on every thread (trace_reader::values_parallel); recorded histograms are counted in
// time proportional to their buckets.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "fpscope/histogram.hpp"
#include "fpscope/options.hpp"

namespace fpscope {

class trace_reader;

/// Over which ranks' shards a per-tensor recipe's amax is reduced when several rank traces
/// replay as one run (docs/replay.md, "Several ranks"): the whole logical tensor (what a correct
/// run does), each tensor-parallel group (ranks sharing their data- and pipeline-parallel
/// coordinates), or each rank alone (a wrong reduction group, to see what it does).
enum class amax_group : std::uint8_t { tensor, tp, rank };
/// "tensor" | "tp" | "rank"; option_error otherwise.
amax_group parse_amax_group(std::string_view s, std::string_view what = "--amax-group");
std::string_view name(amax_group g);

struct replay_options {
  std::string policy = "torch";  ///< a recipe spec (fpscope/recipe.hpp)
  /// The cast; empty fields take the recipe's defaults (fp16/ieee for loss scalers, e5m2/cuda
  /// for te-*, e4m3/cuda for mx and block). Stochastic rounding is refused.
  conversion_request cast;
  step_range steps;  ///< the recorded training steps to replay
  int threads = 0;   ///< 0: all cores
  std::size_t top = 5;          ///< how many worst tensors the summary lists
  amax_group group = amax_group::tensor;  ///< several rank traces: the amax reduction group
  bool keep_tensors = true;     ///< false: only the steps' totals are kept (the summary is complete either way)
  /// Called after each step read with (steps done, steps in the trace).
  std::function<void(std::size_t, std::size_t)> progress;
  /// Several rank traces, counted by several processes (fpscope/replay_mpi.hpp): whether this
  /// process counts the values of the rank trace at this index (in rank order), and the sum of
  /// a step's packed counts over the processes, in place (an all-reduce). Every process reads
  /// every trace's metadata and steps the recipe alike; only the counting is divided. Empty:
  /// this process counts everything.
  std::function<bool(std::size_t)> owns;
  std::function<void(std::span<std::uint64_t>)> all_reduce;
};

/// One tensor at one step.
struct tensor_replay {
  std::string name;
  double scale = 1;  ///< its scale (block recipes: the geometric mean of its blocks' scales)
  class_counts counts;
  bool exact = true;  ///< false: recorded histogram buckets straddled a class boundary
  bool overflow() const { return counts[cast_class::overflow] + counts[cast_class::nonfinite] > 0; }
};

/// One recorded step.
struct step_replay {
  std::int64_t step = 0;
  double scale = 1;  ///< the loss scale, or the geometric mean of the tensors' scales
  bool skipped = false;
  bool left_out = false;  ///< block recipes: tensors recorded as histograms only were left out
  class_counts total;
  std::vector<tensor_replay> tensors;  ///< empty unless replay_options::keep_tensors
};

/// What the whole run came to.
struct replay_summary {
  std::vector<std::int64_t> skipped;  ///< steps skipped
  std::optional<std::int64_t> stop_step;
  std::string stop_reason;  ///< the upstream error that would have stopped the run there
  double scale_min = 0, scale_max = 0, scale_final = 0;  ///< valid with at least one step
  std::size_t scale_changes = 0;
  std::map<std::string, std::uint64_t> skip_causes;  ///< tensor -> skipped steps it overflowed in
  /// The `top` tensors with the largest mean fraction of their nonzero finite values underflowing.
  std::vector<std::pair<std::string, double>> worst_underflow;
  bool exact = true;
  std::size_t partial = 0;  ///< steps with tensors left out (block recipes, histogram-only tensors)
  class_counts total;
  /// Several rank traces: "rank 1, fc2.weight shard 1" -> the steps in which that rank's shard
  /// overflowed (or held inf/NaN), skipped or not.
  std::map<std::string, std::uint64_t> overflow_sources;
};

struct replay_result {
  std::string trace, model;
  std::string policy;  ///< the recipe's describe()
  std::string cast;    ///< conversion::describe()
  bool loss_scaler = false;
  std::vector<std::string> incomplete;  ///< the trace's incomplete steps, skipped
  std::size_t world_size = 0;          ///< several rank traces: the run's world size (0: one trace)
  std::string amax_group;              ///< several rank traces: name(amax_group) of the options
  /// Several rank traces: steps some rank did not record (a rank's file truncated mid-run, ranks
  /// with different step sets), left out: one line per rank.
  std::vector<std::string> left_out;
  std::vector<step_replay> steps;
  replay_summary summary;
};

/// The recipe and cast the options name, checked: option_error on a bad spec or cast.
void check(const replay_options& o);

/// Replays an open trace, in this process.
replay_result replay(const trace_reader& r, const replay_options& o);
/// Replays several rank traces (docs/trace.md, "Multi-rank traces") as one run: every rank of
/// the run's world, once each. Per step: the logical tensors are assembled from their shards
/// (trace_error unless the shards of each tile it exactly once: a missing, duplicated or
/// overlapping shard), the amax of a per-tensor recipe is reduced over `o.group`, every shard is
/// cast and counted (counts summed over distinct shards; a replica counts once), and the step
/// overflows when any rank's shard does (found_inf's OR). Steps that not every rank recorded are
/// left out and listed in replay_result::left_out. One reader: replay(r, o).
replay_result replay(std::span<const trace_reader* const> ranks, const replay_options& o);

/// Replays the trace at `path` in a worker process (fpscope/contain.hpp): a trace that crashes
/// or hangs libhdf5 becomes contained_error; option_error and trace_error messages come back
/// as option_error and contained_error. `cancelled` as run_contained's.
replay_result replay_file(const std::string& path, const replay_options& o, const std::function<bool()>& cancelled = {});
/// The same for several rank traces (one: replay_file), all read in one worker.
replay_result replay_files(std::span<const std::string> paths, const replay_options& o,
                           const std::function<bool()>& cancelled = {});

/// The result as bytes and back (what replay_file's worker sends); trace_error on malformed bytes.
std::string serialize(const replay_result& r);
replay_result deserialize_replay(std::string_view bytes);

}  // namespace fpscope
