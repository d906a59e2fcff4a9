// The heatmaps of `fpscope recipes --plot`: operands (rows) x recipes (columns), each cell the
// fraction of the operand's nonzero elements the recipe loses (underflow + overflow); for a trace
// of GEMM operands, a panel per recipe of layers x operand-GEMM pairs.
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

/// A trace of GEMM operands: one panel per recipe, layers (rows) x operand-GEMM pairs
/// ("X fprop", ..., columns), each cell the fraction lost (NaN: not recorded).
struct operand_picture {
  std::string title;
  std::vector<std::string> layers, columns, recipes;
  std::vector<double> lost;  ///< recipes x layers x columns, row-major
};

/// Writes the panels to `path`, four to a row (the same rules as write_recipes_plot).
void write_operand_plot(const std::string& path, const operand_picture& pic, const std::vector<std::string>& inputs);

}  // namespace fpscope::cli
