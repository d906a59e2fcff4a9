// Block quantization of one 2-D GEMM operand under a block-scaled recipe (MXFP8/MXFP6/MXFP4,
// NVFP4, Float8BlockScaling, DeepSeek-V3 tiles) or a per-tensor FP8 recipe (te-current): the
// element codes, the block scales (their format's codes and values), the dequantized operand,
// and per-block statistics with exact class counts. What `fpscope recipes` reports and
// Python's fpscope.quantize returns; the recipes are rows of the one recipe table
// (fpscope/recipe.hpp, lib/src/recipes/), their arithmetic cited there (docs/recipes.md).
//
// Orientation: a GEMM reduces over one dimension of each operand, and block scales run along it.
// `block_axis::row` puts each 1-D block along a row (the reduction dimension is the columns: X
// and W in fprop, dY in dgrad); `block_axis::column` along a column (dY and X in wgrad, W in
// dgrad). Transformer Engine quantizes each orientation separately from the high-precision
// tensor, and so does this. 2-D blocks (NVFP4 and Float8BlockScaling weights) are square and the
// same either way. A shape not divisible by the block leaves partial blocks at the edges: their
// amax is over the elements present (upstream pads with zeros, which leaves the amax alone).
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fpscope/format.hpp"
#include "fpscope/histogram.hpp"
#include "fpscope/policy.hpp"

namespace fpscope {

class recipe;

/// Which operand of a GEMM a tensor is: the forward input X (tokens x in), the weight W
/// (out x in), the output gradient dY (tokens x out). Recipes pick formats, 2-D blocks and
/// stochastic rounding by role.
enum class operand_role : std::uint8_t { input, weight, grad };
/// Along which dimension 1-D blocks run (see the file comment).
enum class block_axis : std::uint8_t { row, column };

std::string_view name(operand_role r);
std::string_view name(block_axis a);
/// "input|x|activation", "weight|w", "grad|dy|gradient"; option_error otherwise.
operand_role parse_role(std::string_view text, std::string_view what = "--role");
/// "row|rowwise", "column|col|columnwise"; option_error otherwise.
block_axis parse_axis(std::string_view text, std::string_view what = "--axis");

/// How a block-scaled recipe quantizes: filled by the recipe's row (lib/src/recipes/), read by
/// block_quantize. Per-tensor recipes have none.
struct block_scheme {
  enum class family : std::uint8_t {
    mx,       ///< E8M0 scale 2^e per 1-D block, elements x * 2^-e (OCP MX, TE MXFP8, torchao)
    nvfp4,    ///< E2M1 elements, E4M3 block scales, a float32 per-tensor scale
    fp32,     ///< a float32 scale per block: TE Float8BlockScaling (multiply by scale)
    deepseek  ///< DeepSeek-V3 kernel.py: s = amax / 448 per tile, elements x / s
  } kind = family::mx;
  std::string name;          ///< the recipe's row name, "mxfp8"
  format elem[3]{};          ///< element format per operand_role
  int block = 32;            ///< 1-D block length
  int weight_tile = 0;       ///< edge of the square weight blocks (16, 128); 0: weights 1-D
  int mx_mode = 0;           ///< mx: an mx_rounding, or mx_mode_te
  rounding round = rounding::rne;  ///< element rounding (rne, or rna: microxcaling's default)
  bool sr_grad = false;      ///< nvfp4: stochastic rounding of dY
  /// nvfp4: the 16x16 random Hadamard transform of the wgrad operands (input and grad with
  /// blocks along columns), as TE's NVFP4BlockScaling applies it; see block_quant.cpp.
  bool rht_wgrad = false;
  bool torchao = false;      ///< nvfp4: torchao's two-level arithmetic instead of TE's
  bool pow2 = true;          ///< fp32: power-of-two scales
  double eps = 0;            ///< fp32: amax_epsilon; deepseek: the amax floor
  bool ue8m0 = false;        ///< deepseek: scales rounded up to a power of two
  std::uint64_t seed = 0;    ///< stochastic rounding key (fpscope::sr_bits)
};
/// block_scheme::mx_mode for Transformer Engine's MXFP8 scale: rceil's arithmetic, with the
/// block amax reduced by fmaxf (NaN dropped, inf kept and saturated to 2^127).
inline constexpr int mx_mode_te = 100;

/// Per-block statistics of one quantized operand. "Scale" is the factor dequantization
/// multiplies an element code's value by (2^e for MX; the combined factor for NVFP4; 1/scale
/// for per-tensor and Float8BlockScaling; s for DeepSeek).
struct block_stats {
  std::uint64_t blocks = 0;
  std::uint64_t clipped_blocks = 0;      ///< blocks where an element overflowed (was saturated)
  std::uint64_t any_vanish_blocks = 0;   ///< blocks where a nonzero element became 0
  std::uint64_t most_vanish_blocks = 0;  ///< blocks where over half the nonzero finite elements became 0
  std::uint64_t zero_blocks = 0;         ///< blocks of zeros only
  std::uint64_t nan_scale_blocks = 0;    ///< blocks whose scale is NaN (every element lost)
  double min_scale = 0, max_scale = 0;   ///< over blocks with a positive finite scale (0 with none)
  std::map<int, std::uint64_t> scale_binades;  ///< floor(log2 scale) -> blocks (positive finite scales)
  class_counts counts;                   ///< exact, docs/hist.md's classes of each element's cast
  /// Over finite inputs whose dequantized value is finite: signal = sum x^2, noise = sum (d-x)^2,
  /// rel over nonzero x of |d-x|/|x|; n counts them.
  error_stats errors;
  std::uint64_t nonfinite_dequant = 0;   ///< finite inputs that dequantize to inf or NaN
};

/// The fraction of the nonzero finite elements lost: underflowed to 0 or overflowed (saturated);
/// 0 with none. What a budget for keeping an operand in BF16 is measured in.
inline double lost_fraction(const block_stats& st) {
  const auto n = st.counts.nonzero_finite();
  return n ? double(st.counts[cast_class::underflow] + st.counts[cast_class::overflow]) / double(n) : 0;
}

/// Calls visit(key, value) for every scalar statistic: THE key names of `fpscope recipes --json`
/// and of Python's quantize()["stats"] (which add "counts", by class name, and "scale_binades").
/// A value is a std::uint64_t or a double (NaN and inf possible: JSON null).
template <class Visit>
void for_each_stat(const block_stats& st, Visit&& visit) {
  visit("blocks", st.blocks);
  visit("clipped_blocks", st.clipped_blocks);
  visit("any_vanish_blocks", st.any_vanish_blocks);
  visit("most_vanish_blocks", st.most_vanish_blocks);
  visit("zero_blocks", st.zero_blocks);
  visit("nan_scale_blocks", st.nan_scale_blocks);
  visit("min_scale", st.min_scale);
  visit("max_scale", st.max_scale);
  visit("n", st.errors.n);
  visit("sqnr_db", st.errors.sqnr_db());
  visit("mean_rel_error", st.errors.mean_rel());
  visit("max_rel_error", st.errors.max_rel);
  visit("nonfinite_dequant", st.nonfinite_dequant);
  visit("lost_fraction", lost_fraction(st));
}

/// One quantized operand.
struct block_quant_result {
  std::size_t rows = 0, cols = 0;
  std::size_t block_rows = 1, block_cols = 1;  ///< the block shape in the input's orientation
  std::size_t scale_rows = 0, scale_cols = 0;  ///< the grid of blocks (ceil division)
  format element{};
  format scale_format{};                 ///< e8m0, e4m3, or fp32 (float32 bits)
  std::vector<std::uint8_t> codes;       ///< rows x cols element codes, row-major
  std::vector<std::uint32_t> scale_codes;  ///< scale_rows x scale_cols codes of scale_format
  std::vector<float> scale_values;       ///< the values of those codes
  std::vector<float> dequant_scale;      ///< per block, the factor dequantization multiplies by
  double tensor_scale = 1;               ///< NVFP4: the float32 per-tensor scale (TE S_enc; torchao amax/2688); else 1
  std::vector<float> dequant;            ///< rows x cols
  block_stats stats;
  std::string describe;                  ///< the recipe as it ran
};

/// The format of float32 scales (block_quant_result::scale_format of per-tensor recipes,
/// Float8BlockScaling and DeepSeek).
inline constexpr format fp32_scale_format{"fp32", 32, 8, 23, 127, special::ieee, true};

/// Quantizes `x` (rows x cols, row-major) as recipe `spec` (the one grammar: "nvfp4",
/// "mxfp8:scaling_mode=floor", "te-current", ...) quantizes the operand `role` with blocks
/// along `axis`. option_error on a bad spec, a recipe with no block form (loss scalers), or
/// x.size() != rows * cols.
block_quant_result block_quantize(std::span<const float> x, std::size_t rows, std::size_t cols, std::string_view spec,
                                  operand_role role, block_axis axis);
/// The same with a recipe already made (make_recipe): the replay engine's path.
block_quant_result block_quantize(std::span<const float> x, std::size_t rows, std::size_t cols, recipe& r,
                                  operand_role role, block_axis axis);

}  // namespace fpscope
