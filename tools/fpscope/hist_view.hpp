// What `fpscope hist` prints: the table per format, the recommendations, the log2|x| picture in
// the terminal, JSON and CSV, and the figure's data.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cli.hpp"
#include "fpscope/histogram.hpp"
#include "plot.hpp"
#include "text.hpp"  // scale_label(), grouped(), ... for the report's users

namespace fpscope::cli {

struct report_row {
  float scale = 1;
  class_counts counts;
  error_stats errors;
  bool has_errors = false;
  bool exact = true;  ///< false: recorded histograms straddled a boundary it depends on
};

struct report_format {
  conversion_options conv;
  std::vector<report_row> rows;          ///< one per requested scale
  std::optional<report_row> gradscaler;  ///< largest power of two without overflow, less the headroom
  std::optional<report_row> min_loss;    ///< fewest underflow + overflow, then subnormal
  int no_overflow_log2 = 0;
  std::pair<int, int> min_loss_range{};  ///< the tied powers of two
};

struct report_tensor {
  std::string path, dtype;
  std::vector<std::uint64_t> shape;
  std::uint64_t size = 0;
  std::vector<class_counts> rows;  ///< format-major, then scale
};

struct report_input {
  std::vector<report_tensor> tensors;
  std::map<int, std::uint64_t> binades;  ///< floor(log2|x|) of the nonzero finite values
  int headroom = 1;
  float view = 1;  ///< the picture's scale
  bool reference = false;
  bool picture = true;  ///< the log2|x| picture in the text output
  bool exact = true;    ///< every row and recommendation is exact
  std::vector<std::string> notes;  ///< printed after the inputs (text) and as "notes" (JSON)
};

void print_text(const report_input& in, const std::vector<report_format>& fmts, bool colour);
void print_json(const report_input& in, const std::vector<report_format>& fmts);
void print_csv(const report_input& in, const std::vector<report_format>& fmts);
/// The --plot figure: the picture at the view scale.
hist_picture picture(const report_input& in, const std::vector<report_format>& fmts);

}  // namespace fpscope::cli
