// Figures of `fpscope hist` (the log2|x| histogram with each format's regions) and `fpscope replay` (a loss
// scaler's or FP8 recipe's scale and the underflow/overflow it left, step by step), as SVG or PNG (cairo).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace fpscope::cli {

/// One format's regions at its scale, as log2|x| of the input (x-space, i.e. already divided by the scale).
/// Values below `nonzero_from` vanish (underflow to zero), [nonzero_from, normal_from) become subnormal,
/// [normal_from, overflow_from) stay normal, from `overflow_from` up they overflow.
/// Each may be -inf/+inf (e.g. no overflow reachable: overflow_from = +inf).
struct plot_format {
  std::string label;  ///< e.g. "fp16 x 2^10"
  double nonzero_from, normal_from, overflow_from;
};

struct hist_picture {
  std::string title;                                   ///< e.g. "grads.npy: 1,048,576 values"
  std::vector<std::pair<int, std::uint64_t>> binades;  ///< floor(log2|x|) -> count, ascending, nonzero finite only
  std::uint64_t zero = 0, nonfinite = 0;               ///< shown in a caption
  std::vector<plot_format> formats;
};

/// Whether `path` names an SVG (else a PNG); throws std::invalid_argument for any other extension.
bool plot_is_svg(const std::string& path);

/// Writes the figure to `path`: .svg or .png by extension (case-insensitive). Throws std::invalid_argument
/// for another extension ("--plot: FILE must end in .svg or .png, not 'x.pdf'"), std::runtime_error naming
/// the path when it cannot be written. Written through fpscope::output_file (fpscope/output.hpp): the figure
/// appears complete or not at all, and never over a device, a FIFO, a directory or one of `inputs`.
void write_plot(const std::string& path, const hist_picture& pic, const std::vector<std::string>& inputs = {});

/// One replay, step by step. The per-step vectors run parallel to `steps`; where one is shorter, its missing
/// entries are drawn as gaps (no value, not skipped), as are non-finite values, scales <= 0 and negative
/// fractions. Fractions below the lowest decade drawn (1e-7, lower when the data goes there) sit on it.
struct replay_picture {
  std::string title;                ///< e.g. "digits-mlp.h5: torch (init 65536, growth 2, ...) on fp16"
  std::vector<std::int64_t> steps;  ///< training step indices, ascending
  std::vector<double> scale;        ///< the scale used at each step (> 0; per-tensor FP8 recipes: geometric mean)
  std::vector<double> underflow;    ///< fraction (0..1) of nonzero finite elements that vanished, per step
  std::vector<double> overflow;     ///< fraction (0..1) of nonzero finite elements that overflowed, per step
  std::vector<bool> skipped;        ///< the optimizer step was skipped (overflow under a loss scaler)
};

/// Writes the replay figure to `path` (.svg or .png): log2(scale) over the steps with the skipped steps marked,
/// above the underflow and overflow fractions on a log axis. Same errors and same atomic write as write_plot.
void write_replay_plot(const std::string& path, const replay_picture& pic,
                       const std::vector<std::string>& inputs = {});

}  // namespace fpscope::cli
