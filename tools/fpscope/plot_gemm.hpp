// The figure of `fpscope gemm --k-sweep --plot`: a GEMM's relative error against the exact product
// as K grows, one colour per architecture (and promotion), the maximum solid, the mean dashed.
#pragma once

#include <string>
#include <vector>

namespace fpscope::cli {

struct k_sweep_picture {
  std::string title, caption;
  struct series {
    std::string label;                   ///< "hopper m64n8k32.f32.e4m3.e4m3, promoted every 128"
    std::vector<double> k, max_rel, mean_rel;  ///< parallel; errors < 0 or non-finite are gaps
  };
  std::vector<series> lines;
};

/// Writes the figure to `path` (.svg or .png by extension, the output writer's rules: complete or
/// not at all, never over one of `inputs`): log2 K across, log10 of the relative error up, zero
/// errors on the bottom edge.
void write_k_sweep_plot(const std::string& path, const k_sweep_picture& pic, const std::vector<std::string>& inputs);

}  // namespace fpscope::cli
