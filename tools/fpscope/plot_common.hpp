// What the figures of `fpscope hist` (plot_hist.cpp) and `fpscope replay` (plot_replay.cpp) share: the
// colours, cairo's toy text API with superscripts, and the rendering to SVG or PNG bytes that go to the file
// through the library's output writer (fpscope/output.hpp). Internal to the fpscope tool; plot.hpp is the
// public face.
#pragma once

#include <cairo.h>

#include <cmath>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace fpscope::cli::plot {

struct rgb {
  double r, g, b;
};
constexpr rgb hex(unsigned v) { return {((v >> 16) & 255) / 255.0, ((v >> 8) & 255) / 255.0, (v & 255) / 255.0}; }

inline constexpr rgb ink = hex(0x222222), muted = hex(0x5c5c5c), grid = hex(0xe8e8e8);

inline void colour(cairo_t* cr, rgb c, double alpha = 1) { cairo_set_source_rgba(cr, c.r, c.g, c.b, alpha); }
// Crisp 1px lines in the PNG: centre them on a pixel.
inline double snap(double v) { return std::floor(v) + 0.5; }

/// A piece of text, raised and smaller when `sup` (exponents of 2^k).
struct run {
  std::string s;
  bool sup = false;
};

/// Draws `runs` with its anchor at `align` (0 left, 0.5 centre, 1 right) of x; returns the width. With
/// `draw` false, only measures.
double text(cairo_t* cr, double x, double y, const std::vector<run>& runs, double size, double align = 0,
            bool bold = false, bool draw = true);
double text(cairo_t* cr, double x, double y, const std::string& s, double size, double align = 0, bool bold = false,
            bool draw = true);

/// 2^k and 10^k with a raised exponent (10^0 is "1"); a log2 that is not whole keeps two decimals: "2^3.42".
std::vector<run> power_of_two(int k);
std::vector<run> power_of_two(double e);
std::vector<run> power_of_ten(int k);

/// An axis range in binades: from below `lo` to above `hi` in whole binades with `margin` spare each side,
/// widened about its middle to `min_span` (even) when narrower.
std::pair<double, double> whole_range(double lo, double hi, double margin, double min_span);

/// An italic remark centred at (cx, baseline cy) on a white box, so that lines behind it do not cross it.
void note(cairo_t* cr, double cx, double cy, const char* s);

/// Renders `paint(cr)` on a w x h canvas as SVG or PNG (by the extension of `path`: plot_is_svg) and writes
/// it to `path` (output.hpp: complete or not at all, never over one of `inputs`). Errors name `path`.
void write_figure(const std::string& path, int w, int h, const std::function<void(cairo_t*)>& paint,
                  const std::vector<std::string>& inputs);

}  // namespace fpscope::cli::plot
