// `fpscope trace merge`: the rank traces of one distributed run (docs/trace.md, "Multi-rank
// traces") as one logical trace, which replays as the ranks replay together
// (fpscope::replay_files; docs/replay.md, "Several ranks"). Target fpscope::replay.
#pragma once

#include <cstddef>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace fpscope {

class trace_reader;

struct merge_options {
  /// Keep raw values: a logical tensor whose every shard has them gets them, placed where the
  /// shards say (flat shards at their offsets, splits along their dimension). false: histograms only.
  bool values = true;
  int threads = 0;  ///< threads that inflate the shards' values (0: all)
  /// Called after each step with (steps done, steps in the run).
  std::function<void(std::size_t, std::size_t)> progress;
};

struct merge_result {
  std::size_t world_size = 0, steps = 0;  ///< the run's, and the steps written
  std::vector<std::string> incomplete;    ///< the ranks' unfinished last steps
  std::vector<std::string> left_out;      ///< steps not every rank recorded (not written): one line per rank
  std::string image;                      ///< the merged trace: an HDF5 file's bytes
};

/// Merges the open rank traces (every rank of one run) in memory. Per step that every rank
/// recorded, each logical tensor (checked to be tiled exactly once by its shards: trace_error
/// otherwise, as replay) becomes one float32 tensor: its values assembled from the shards, or
/// its histogram the sum of theirs; count, zeros, infs, NaNs summed; amax the max. A replica
/// (a whole tensor under data parallelism) is written once. The step's loss, lr and loss scale
/// are rank 0's.
merge_result merge(std::span<const trace_reader* const> ranks, const merge_options& o);

/// Reads and merges the traces at `paths` in a contained worker (fpscope/contain.hpp): a trace
/// that crashes or hangs libhdf5 becomes contained_error. The result holds the image (what
/// fpscope.Trace reads a run from, in memory).
merge_result merge_contained(std::span<const std::string> paths, const merge_options& o,
                             const std::function<bool()>& cancelled = {});

/// Reads and merges the traces at `paths` in a contained worker (fpscope/contain.hpp) and writes
/// the result to `out` through output_file (fpscope/output.hpp: atomic, never over an input).
/// The result's image is left empty.
merge_result merge_files(std::span<const std::string> paths, const std::string& out, const merge_options& o,
                         const std::function<bool()>& cancelled = {});

}  // namespace fpscope
