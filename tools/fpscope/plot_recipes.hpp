// The heatmap of `fpscope recipes --plot`: operands (rows) x recipes (columns), each cell the
// fraction of the operand's nonzero elements the recipe loses (underflow + overflow).
#pragma once

#include <string>
#include <vector>

namespace fpscope::cli {

struct recipes_picture {
  std::string title;
  std::vector<std::string> operands, recipes;
  std::vector<double> lost;  ///< operands x recipes, row-major, fractions in [0, 1]
};

/// Writes the heatmap to `path` (.svg or .png, the output writer's rules: never over `inputs`).
void write_recipes_plot(const std::string& path, const recipes_picture& pic, const std::vector<std::string>& inputs);

}  // namespace fpscope::cli
