// Scaling recipes as policy objects: what the replay engine (fpscope/replay.hpp) steps a recorded
// run through. A recipe chooses, at each step, the scale each tensor is multiplied by before the
// cast (loss scalers: one loss scale for every tensor; Transformer Engine's FP8 recipes: a scale
// per tensor from its amax), or, for block recipes (MX, 1x128 / 128x128 tiles), a scale per block
// from the values themselves; after the step's counts it learns whether anything overflowed and
// answers whether the optimizer step is skipped.
//
// Every recipe is one file in lib/src/recipes/ and one row of the table there (recipes()); its
// options follow the one policy grammar of fpscope/options.hpp ("name:key=value,flag"), upstream
// argument names first. The algorithms themselves (and their upstream sources) are in
// fpscope/scaler.hpp.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "fpscope/histogram.hpp"
#include "fpscope/options.hpp"

namespace fpscope {

struct block_scheme;  // fpscope/block_quant.hpp

/// What a recipe sees of a tensor at a step before its values are counted: the recorded
/// metadata (docs/trace.md).
struct tensor_meta {
  std::string_view name;
  std::span<const std::uint64_t> shape;
  std::uint64_t count = 0;
  double amax = 0;  ///< the largest |x| over the finite elements (the trace's @amax)
  std::uint64_t infs = 0, nans = 0;
  bool has_values = false;
};

/// The counts of one tensor under a block recipe.
struct block_counts {
  class_counts counts;
  double scale = 1;  ///< geometric mean of the blocks' scales (1 with no blocks)
  std::uint64_t blocks = 0;
};

/// A scaling recipe, stepped once per recorded step.
class recipe {
 public:
  virtual ~recipe() = default;
  /// "torch (init 65536, growth 2, backoff 0.5, interval 2000)": the recipe and its parameters.
  virtual std::string describe() const = 0;
  /// The cast it implies when the user names none (e.g. fp16 / ieee for loss scalers).
  virtual std::string_view default_format() const = 0;
  virtual std::string_view default_profile() const = 0;
  /// Called once with the resolved cast, before the first step; option_error when the recipe
  /// cannot use it.
  virtual void bind(const conversion& c) = 0;

  /// Loss scalers: one scale for the whole step, and an overflow skips the optimizer step.
  virtual bool loss_scaler() const { return false; }
  /// Block recipes: the counts come from count_blocks() over each tensor's values (a recorded
  /// histogram cannot say which values share a block); per-tensor recipes use scale().
  virtual bool per_block() const { return false; }

  /// Per-tensor recipes: the scale tensor t is multiplied by at this step (from earlier steps
  /// and this step's metadata only).
  virtual double scale(const tensor_meta& t) = 0;
  /// Block recipes: the counts of a whole tensor's values (the base implementation throws).
  virtual block_counts count_blocks(const tensor_meta& t, std::span<const float> values);
  /// Block-scaled operand recipes (mxfp8, nvfp4, fp8-block, deepseek): how they quantize a GEMM
  /// operand (fpscope/block_quant.hpp); nullptr for the others.
  virtual const block_scheme* scheme() const { return nullptr; }

  /// After the step's counts: `overflow` tells whether any element of any tensor overflowed (or
  /// was already inf/NaN). Returns whether the optimizer step is skipped; throws scaler_error
  /// when the upstream implementation would stop the run.
  virtual bool end_step(std::span<const tensor_meta> tensors, bool overflow) = 0;
};

/// One row of the recipe table.
struct recipe_info {
  std::string_view name;     ///< "te-delayed"
  std::string_view summary;  ///< one line for --help
  std::string keys;          ///< the grammar of its keys ("amax_history_len|history=N,...")
  std::string_view models;   ///< which upstream path it models, where upstream has several
};

/// Every recipe, in --help order.
std::span<const recipe_info> recipes();

/// The recipe a spec names: "name[:key=value,flag,...]" (fpscope/options.hpp's grammar).
/// option_error with one line on any bad spec.
std::unique_ptr<recipe> make_recipe(std::string_view spec);

}  // namespace fpscope
