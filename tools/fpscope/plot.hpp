// Figures of `fpscope hist`: the log2|x| histogram with each format's regions, as SVG or PNG (cairo).
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
/// the path when it cannot be written. Writes to a temporary file in the same directory and renames it into
/// place, so a failure never leaves a partial or empty file behind (remove the temporary on every error path).
void write_plot(const std::string& path, const hist_picture& pic);

}  // namespace fpscope::cli
