// Block-scaled recipes over a trace's GEMM operands (issue 16; docs/recipes.md, "Operand
// traces"): every recorded operand of one step (trace format 1.2, docs/trace.md "GEMM
// operands") quantized under each GEMM it feeds, with its role and blocks along that GEMM's
// reduction dimension, by each recipe; then per layer and recipe what a user acts on: the worst
// layers, the layers to keep in BF16 for a budget of elements lost, and the recipe (scale mode)
// that loses least. `fpscope recipes TRACE` prints it; Python's fpscope.recipes_report returns
// it (the same JSON, operand_report_json). Target fpscope::replay (reads traces; JSON).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "fpscope/block_quant.hpp"
#include "fpscope/trace.hpp"

namespace fpscope {

/// The recipes `fpscope recipes` and fpscope.recipes_report compare when none are named: the MX
/// scale modes of TE and OCP, MXFP4, NVFP4 in both profiles, Float8BlockScaling, DeepSeek-V3
/// and per-tensor current scaling.
std::span<const std::string_view> default_block_recipes();

/// A GEMM an operand feeds: its name, the operand's role in it, and the axis its blocks run
/// along (the GEMM's reduction dimension; docs/recipes.md's table).
struct gemm_use {
  std::string_view gemm;  ///< "fprop", "dgrad", "wgrad"
  operand_role role;
  block_axis axis;
};

/// The GEMMs a recorded tensor of role `r` feeds: input: fprop (rows), wgrad (columns); weight:
/// fprop (rows), dgrad (columns); grad: dgrad (rows), wgrad (columns); wgrad (dW, a GEMM's
/// result): none.
std::span<const gemm_use> gemms_of(trace_role r);

/// What a report keeps of one block_quantize() result (the statistics, not the codes), or, for
/// an operand recorded without values, of answer_block_stats() (block_stats.hpp): `stats` is then
/// the lower bound of each statistic and `high` the upper, equal where the answer is exact (every
/// power-of-two recipe); the error statistics are unknown (errors.n == 0: SQNR NaN).
struct operand_quant {
  block_stats stats;
  std::string element, scale_format, describe;
  std::size_t block_rows = 1, block_cols = 1;
  double tensor_scale = 1;
  bool from_stats = false;  ///< answered from the operand's block statistics, not its values
  bool exact = true;        ///< from_stats: every answered field has low == high
  block_stats high;         ///< from_stats: the upper bounds
  std::string unanswered;   ///< non-empty: the block statistics cannot answer this recipe (why)
  bool answered() const { return unanswered.empty(); }
  double lost() const { return answered() ? lost_fraction(stats) : std::nan(""); }
};

/// One operand under one GEMM, by every recipe of the report.
struct operand_cell {
  std::size_t layer = 0;  ///< index into operand_report::layers
  std::string tensor;     ///< the trace tensor's name
  trace_role role = trace_role::input;
  gemm_use use{};
  std::uint64_t rows = 0, cols = 0;
  std::vector<operand_quant> results;  ///< one per recipe, in operand_report::recipes' order
};

struct operand_report {
  std::string trace;
  std::size_t step_index = 0;
  std::int64_t step = 0;
  std::vector<std::string> recipes;  ///< the specs, as given
  std::vector<std::string> layers;   ///< in the order of their first operand in the step
  std::vector<operand_cell> cells;   ///< layer by layer; in a layer, input, weight, grad; each in gemms_of order
  /// Operands of the step with neither raw values nor block statistics (histograms only): not
  /// quantized, listed.
  std::vector<std::string> skipped;
};

/// Whether a step holds a GEMM operand (role input, weight or grad) with raw values or block
/// statistics: one a recipe can be answered for.
bool has_answerable_operands(const trace_step& s);

/// Quantizes the operands of step index `step` (-1: the last step with operands that have raw
/// values or block statistics) of a trace under each of `specs` (the recipe grammar): an operand
/// with raw values by block_quantize, one with only block statistics by answer_block_stats
/// (bounds where the recipe's scale is not a power of two; unanswered where the statistics
/// cannot answer it). trace_error when the trace has no GEMM operands or the step none with
/// values or statistics; option_error for a bad recipe or a step index past the end.
/// `progress` is called after each operand read and each quantization (a contained worker's
/// heartbeat).
operand_report report_operands(const trace_reader& tr, long long step, std::span<const std::string> specs,
                               const std::function<void()>& progress = {});

/// One layer under one recipe: its worst operand x GEMM.
struct layer_verdict {
  std::size_t layer = 0;
  std::size_t worst_cell = 0;  ///< the cell losing the largest fraction (then lowest SQNR)
  double worst_lost = 0;       ///< that fraction of its nonzero elements lost
  double min_sqnr_db = 0;      ///< the lowest SQNR over the layer's cells (NaN: none with a nonzero element)
  bool keep_bf16 = false;      ///< worst_lost > budget
};

/// One recipe over the whole step.
struct recipe_verdict {
  std::vector<layer_verdict> layers;  ///< worst first: largest worst_lost, then lowest min_sqnr_db, then model order
  std::vector<std::size_t> keep_bf16; ///< the layers over the budget, in model order
  std::uint64_t lost = 0, nonzero = 0;  ///< elements lost (underflow + overflow) and nonzero finite, over every cell
  /// Cells the block statistics could not answer under this recipe (left out of every verdict).
  std::size_t unanswered = 0;
  double lost_fraction() const { return nonzero ? double(lost) / double(nonzero) : 0; }
  error_stats errors;  ///< summed over every cell (sqnr_db(): the step's)
};

struct operand_verdicts {
  double budget = -1;  ///< the keep-in-BF16 budget (< 0: none asked; keep_bf16 lists are empty)
  std::vector<recipe_verdict> recipes;
  /// The recipes, least lossy first: fewest elements lost over the step, then highest SQNR; a
  /// recipe with cells left unanswered after every recipe answered whole (its totals are partial).
  std::vector<std::size_t> ranking;
  /// Per layer, the recipe that loses least on it (smallest worst_lost, then highest min SQNR).
  std::vector<std::size_t> best_per_layer;
};

/// The verdicts of a report for a keep-in-BF16 budget (a fraction in [0, 1]; < 0: no keep lists).
operand_verdicts judge(const operand_report& r, double budget);

/// THE JSON of both (`fpscope recipes TRACE --json`, fpscope.recipes_report): docs/recipes.md.
nlohmann::ordered_json operand_report_json(const operand_report& r, const operand_verdicts& v);

/// A quantization's statistics as JSON: for_each_stat's keys, "counts" by class, "scale_binades"
/// (the key names of `fpscope recipes --json`).
nlohmann::ordered_json block_stats_json(const block_stats& st);

}  // namespace fpscope
