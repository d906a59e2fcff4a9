// Compact per-block statistics of a GEMM operand, recorded once from its float32 values, that
// answer a block-scaled recipe's statistics later without the values (issue 16; the design and
// which answers are exact: docs/recipes.md "Block statistics"; the trace datasets: docs/trace.md).
//
// Where a recipe's block scale is a power of two (MX in every scale mode, fp8-block with power-of-
// two scales, deepseek with ue8m0 scales, te-current with power-of-two scales), an element's class
// depends only on the scale exponent and on the element's bits rebased to it; the scale exponent
// depends only on the block amax (its flags and where its significand lies among the few
// thresholds at which some scale mode changes its exponent). So a histogram keyed by
//   (block amax exponent, amax significand class, NaN/inf in the block,
//    element exponent below the amax's (clamped at 62: "far below"), element's top 4 significand
//    bits and a sticky bit)
// gives every class count exactly; one keyed by (the same amax key, amax's own top bits) gives
// the scales and the clipped blocks; one keyed by (amax key, the block's least nonzero
// element's key) gives the blocks where some element vanishes. Answers for other recipes are
// bounds: each histogram cell is evaluated at its corners (least and largest amax and element
// it can hold) with the values path's own plan and cast (lib/src/block_plan.hpp), and a cell
// whose corners disagree widens [low, high].
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fpscope/block_quant.hpp"

namespace fpscope {

/// A block shape in the operand's orientation: rows x cols (1x32 runs along a row).
struct block_geometry {
  std::uint32_t rows = 1, cols = 32;
  bool operator==(const block_geometry&) const = default;
};

/// The statistics of one block geometry: sparse (key, count) lists sorted by key (keys in
/// docs/recipes.md "Block statistics").
struct block_geometry_stats {
  block_geometry geometry;
  std::vector<std::pair<std::uint32_t, std::uint64_t>> elements;  ///< element key -> elements
  std::vector<std::pair<std::uint32_t, std::uint64_t>> blocks;    ///< block key -> blocks
  std::vector<std::pair<std::uint32_t, std::uint64_t>> minima;    ///< least-element key -> blocks
};

/// The statistics of one operand.
struct operand_block_stats {
  std::uint64_t rows = 0, cols = 0;
  float finite_amax = 0;  ///< max |x| over the finite elements (NVFP4's and te-current's tensor amax)
  /// The amax significand partition the keys' classes index: sorted 23-bit significands at which
  /// a class begins (block_stats_thresholds() when recorded).
  std::vector<std::uint32_t> thresholds;
  std::vector<block_geometry_stats> geometries;
};

/// The geometries of the power-of-two recipes: 1x32 and 32x1 (MX), 1x128, 128x1 and 128x128
/// (fp8-block, deepseek).
std::vector<block_geometry> default_block_geometries();
/// The amax significand thresholds of every power-of-two recipe's scale (all MX scale modes and
/// element formats, fp8-block, deepseek ue8m0, in every float32 binade), computed once from the
/// recipes' own plans.
const std::vector<std::uint32_t>& block_stats_thresholds();

/// One pass per geometry over `x` (rows x cols, row-major float32), on `threads` OpenMP threads
/// (0: all cores above fpscope::parallel_threshold values). option_error when x.size() != rows *
/// cols, or for a geometry with a zero edge.
operand_block_stats compute_block_stats(std::span<const float> x, std::size_t rows, std::size_t cols,
                                        std::span<const block_geometry> geometries, int threads = 0);

/// Block statistics as a trace stores them (docs/trace.md "Block statistics"): flat arrays, the
/// geometries' three (key, count) lists concatenated in order (elements, blocks, minima of the
/// first geometry, then of the second, ...). The operand's finite amax is the tensor's @amax.
struct block_stats_arrays {
  std::vector<std::uint64_t> shape;       ///< bstats_shape: rows, cols
  std::vector<std::uint32_t> thresholds;  ///< bstats_thresholds
  std::vector<std::uint32_t> geometry;    ///< bstats_geometry: rows, cols per geometry
  std::vector<std::uint64_t> lengths;     ///< bstats_lengths: elements, blocks, minima per geometry
  std::vector<std::uint32_t> keys;        ///< bstats_keys
  std::vector<std::uint64_t> counts;      ///< bstats_counts
};
block_stats_arrays to_arrays(const operand_block_stats& st);
/// The statistics from their arrays, every bound checked (shape, thresholds, geometries, lengths,
/// each list's keys strictly increasing and decodable, the counts summing to the elements and
/// blocks of the shape); option_error naming the first problem.
operand_block_stats from_arrays(const block_stats_arrays& a, double finite_amax);

/// A recipe's statistics of the operand, from its block statistics: each field of block_stats
/// (block_quant.hpp) as [low, high]; a field is exact where low == high. The error statistics
/// (sqnr, relative error) need the values: errors.n is 0 in both.
struct block_stats_answer {
  block_stats low, high;
  std::string describe;
  format element{};
  std::size_t block_rows = 1, block_cols = 1;
  bool exact() const;
};

/// option_error when the statistics lack the recipe's geometry for that role and axis, for
/// NVFP4's wgrad operands under the random Hadamard transform (it mixes 16 elements: not
/// answerable), or for a spec with no block form.
block_stats_answer answer_block_stats(const operand_block_stats& st, recipe& r, operand_role role, block_axis axis);
block_stats_answer answer_block_stats(const operand_block_stats& st, std::string_view spec, operand_role role,
                                      block_axis axis);

/// Calls visit(key, low, high) for every scalar statistic of for_each_stat that the block
/// statistics answer (not the error statistics), then "counts.<class>" for each class.
template <class Visit>
void for_each_bound(const block_stats_answer& a, Visit&& visit) {
  visit("blocks", double(a.low.blocks), double(a.high.blocks));
  visit("clipped_blocks", double(a.low.clipped_blocks), double(a.high.clipped_blocks));
  visit("any_vanish_blocks", double(a.low.any_vanish_blocks), double(a.high.any_vanish_blocks));
  visit("most_vanish_blocks", double(a.low.most_vanish_blocks), double(a.high.most_vanish_blocks));
  visit("zero_blocks", double(a.low.zero_blocks), double(a.high.zero_blocks));
  visit("nan_scale_blocks", double(a.low.nan_scale_blocks), double(a.high.nan_scale_blocks));
  visit("min_scale", a.low.min_scale, a.high.min_scale);
  visit("max_scale", a.low.max_scale, a.high.max_scale);
  visit("nonfinite_dequant", double(a.low.nonfinite_dequant), double(a.high.nonfinite_dequant));
}

}  // namespace fpscope
