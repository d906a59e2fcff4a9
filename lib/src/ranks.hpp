// Several rank traces as one run (docs/trace.md, "Multi-rank traces"): what the replay engine
// (replay.cpp) and the merge (trace_merge.cpp) share, private to fpscope_replay. The readers
// are checked to be the ranks of one run, the steps every rank recorded found, and each step's
// logical tensors assembled from the ranks' shards, each tiled exactly once.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "fpscope/histogram.hpp"
#include "fpscope/trace.hpp"

namespace fpscope::ranks {

/// One recorded tensor of one rank at one step, on its way to its logical tensor.
struct piece {
  std::size_t rank = 0;  ///< index into the readers (in rank order)
  const trace_step* step = nullptr;
  const trace_tensor* t = nullptr;
  std::size_t logical = 0;  ///< index into the step's logical tensors
  std::size_t group = 0;    ///< the replay's: index into the step's amax groups
  std::size_t ordinal = 0;  ///< its shard number (split index, or place in offset order)
  bool counted = true;      ///< false: a replica of a piece counted already
  double scale = 1;
  class_counts counts;
  bool exact = true, left_out = false;
  bool overflow() const { return counts[cast_class::overflow] + counts[cast_class::nonfinite] > 0; }
};

/// "whole", "flat 270+242", "split 0:1/2": a piece's shard description, for messages and as a key.
std::string describe_shard(const trace_tensor& t);

/// Sorts the readers by rank and checks that they are every rank of one run, once each;
/// trace_error otherwise. Returns the world size.
std::int64_t sort_ranks(std::vector<const trace_reader*>& r);

/// Step -> its index in each rank's trace (nullopt: that rank did not record it).
using step_table = std::map<std::int64_t, std::vector<std::optional<std::size_t>>>;
step_table step_index(const std::vector<const trace_reader*>& r);

/// The step's metadata from every rank, or nullopt when some rank lacks it (added to `absent`,
/// per rank).
std::optional<std::vector<trace_step>> read_step(const std::vector<const trace_reader*>& r,
                                                 const std::vector<std::optional<std::size_t>>& at, std::int64_t step,
                                                 std::vector<std::vector<std::int64_t>>& absent);

/// One line per rank that lacked steps: "rank 1 (f.h5) did not record steps 4..5, 9 that other
/// ranks did: left out".
std::vector<std::string> left_out_notes(const std::vector<const trace_reader*>& r,
                                        const std::vector<std::vector<std::int64_t>>& absent);

/// The logical tensors of a step (names, in order of first appearance over the ranks) and every
/// piece; with several ranks, each logical tensor tiled exactly once by its shards (replicas
/// marked not counted): trace_error naming the step and tensor otherwise (a missing,
/// duplicated or overlapping shard, shards that describe different tensors).
void assemble(const std::vector<const trace_reader*>& r, const std::vector<trace_step>& ss, std::vector<piece>& pieces,
              std::vector<std::string>& logical);

/// A tensor's values, whole, its storage chunks inflated on `threads` threads (a block recipe's
/// scales need a tensor's values together; a merge places a shard's). Heartbeats as it reads.
std::vector<float> whole_values(const trace_reader& r, const trace_step& s, const trace_tensor& t, int threads);

}  // namespace fpscope::ranks
