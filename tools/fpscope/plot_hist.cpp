// The figure of `fpscope hist`: the log2|x| histogram of the values, and under it one band per format with the
// regions where values vanish, go subnormal, stay normal or overflow at its scale.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <limits>
#include <numbers>
#include <tuple>

#include "plot.hpp"
#include "plot_common.hpp"
#include "text.hpp"

namespace fpscope::cli {
namespace plot {
namespace {

constexpr rgb bar = hex(0x93a1b3), band_edge = hex(0x9a9a9a);
constexpr rgb region_fill[4] = {hex(0xd0d0d0), hex(0xf7c65e), hex(0xe1f2da), hex(0xf3a097)};
constexpr const char* region_name[4] = {"vanish", "subnormal", "normal", "overflow"};
// Saturated hues away from the region fills, so a boundary line reads over bars, grid and bands alike.
constexpr rgb palette[] = {hex(0x1f5fbf), hex(0x8e24aa), hex(0x00897b), hex(0xd81b60),
                           hex(0x6d4c41), hex(0x3949ab), hex(0x558b2f), hex(0xe65100)};

// Boundaries beyond this (fp64's 2^-1074, say) would squash the bars into a sliver.
constexpr double far_binade = 160;

double nice_step(double raw) {
  const double p = std::pow(10.0, std::floor(std::log10(raw))), m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

void draw_hist(cairo_t* cr, const hist_picture& pic, double w, double h) {
  const std::size_t nf = pic.formats.size();
  constexpr double inf = std::numeric_limits<double>::infinity();

  // x range: every binade with data, every (near enough) region boundary, and a margin.
  double lo = inf, hi = -inf;
  std::uint64_t total = 0, peak = 0;
  for (const auto& [b, c] : pic.binades) {
    lo = std::min(lo, double(b));
    hi = std::max(hi, b + 1.0);
    total += c;
    peak = std::max(peak, c);
  }
  // Boundaries widen the range by at most `reach` binades beyond the data: bf16's far-away ones
  // would otherwise squeeze the data into a sliver (their bands run off the edge instead).
  constexpr double reach = 24;
  const bool data = lo <= hi;
  const double dlo = data ? lo - reach : -far_binade, dhi = data ? hi + reach : far_binade;
  for (const auto& f : pic.formats)
    for (double v : {f.nonzero_from, f.normal_from, f.overflow_from})
      if (std::isfinite(v)) {
        const double c = std::clamp(v, std::max(dlo, -far_binade), std::min(dhi, far_binade));
        lo = std::min(lo, c);
        hi = std::max(hi, c);
      }
  if (lo > hi) lo = hi = 0;
  std::tie(lo, hi) = whole_range(lo, hi, 2, 12);

  // y axis: linear, a "nice" step, a little headroom above the tallest bar.
  double ystep = 0, ytop = 1;
  if (peak > 0) {
    ystep = std::max(1.0, nice_step(double(peak) / 5));
    ytop = std::ceil(double(peak) / ystep) * ystep;
    if (ytop - double(peak) < 0.04 * ytop) ytop += ystep;
  }

  // Vertical layout: title, caption, histogram, one band per format, x labels, axis title, legend.
  constexpr double band_h = 24, band_pitch = 40, hist_top = 64;
  const double bands_bottom = h - 80;
  const double bands_top = bands_bottom - (nf ? nf * band_pitch - (band_pitch - band_h) : 0);
  const double hist_bottom = bands_top - (nf ? 16 : 0), axis_y = nf ? bands_bottom : hist_bottom;

  // Horizontal layout: the left margin holds the y label, its tick labels and the format labels.
  double ytick_w = 0, label_w = 0;
  for (double v = 0; ystep > 0 && v <= ytop + ystep / 2; v += ystep)
    ytick_w = std::max(ytick_w, text(cr, 0, 0, axis_number(v, ytop), 11, 0, false, false));
  for (const auto& f : pic.formats) label_w = std::max(label_w, text(cr, 0, 0, f.label, 12, 0, true, false));
  // Capped: an overlong format label runs off the left edge rather than squeezing out the plot.
  const double left = std::ceil(std::min(std::max({34 + ytick_w + 8, label_w + 20, 60.0}), w * 0.4)), right = w - 28;
  const double px = (right - left) / (hi - lo);
  const auto X = [&](double v) { return left + (std::clamp(v, lo, hi) - lo) * px; };
  const auto Y = [&](double c) { return hist_bottom - c / ytop * (hist_bottom - hist_top); };

  // x labels every `xstep` binades, as far apart as the widest label needs.
  const double label_room = 14 + std::max(text(cr, 0, 0, power_of_two(int(lo)), 11, 0, false, false),
                                          text(cr, 0, 0, power_of_two(int(hi)), 11, 0, false, false));
  int xstep = 1;
  for (int s : {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000}) {
    xstep = s;
    if (s * px >= label_room) break;
  }
  std::vector<int> xticks;
  for (int k = int(std::ceil(lo / xstep)) * xstep; k <= hi; k += xstep) xticks.push_back(k);

  colour(cr, hex(0xffffff));
  cairo_paint(cr);
  cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);

  colour(cr, ink);
  text(cr, left, 28, pic.title, 16, 0, true);
  colour(cr, muted);
  text(cr, left, 48,
       fmt::format("{} nonzero finite  \u00b7  {} zero  \u00b7  {} non-finite", grouped(total),
                   grouped(pic.zero), grouped(pic.nonfinite)),
       12);

  // Histogram panel: grid, bars, then the format boundaries on top of the bars.
  cairo_set_line_width(cr, 1);
  colour(cr, grid);
  for (double v = ystep; ystep > 0 && v <= ytop + ystep / 2; v += ystep) {
    cairo_move_to(cr, left, snap(Y(v)));
    cairo_line_to(cr, right, snap(Y(v)));
  }
  for (int k : xticks) {
    cairo_move_to(cr, snap(X(k)), hist_top);
    cairo_line_to(cr, snap(X(k)), hist_bottom);
  }
  cairo_stroke(cr);

  cairo_save(cr);
  cairo_rectangle(cr, left, hist_top, right - left, hist_bottom - hist_top);
  cairo_clip(cr);
  const double gap = px >= 6 ? 1.5 : px >= 3 ? 0.5 : 0;
  colour(cr, bar);
  // At least 1.5px wide, so a lone binade in a very wide range still shows.
  const double bar_w = std::max(px - gap, 1.5);
  for (const auto& [b, c] : pic.binades)
    if (b + 1 > lo && b < hi)
      cairo_rectangle(cr, X(b + 0.5) - bar_w / 2, Y(double(c)), bar_w, hist_bottom - Y(double(c)));
  cairo_fill(cr);
  cairo_set_line_width(cr, 1.4);
  for (std::size_t i = 0; i < nf; ++i) {
    const auto& f = pic.formats[i];
    // Alternate the dash phase so coinciding boundaries of neighbouring formats interleave.
    const double dash[] = {5, 4};
    cairo_set_dash(cr, dash, 2, i % 2 ? 4.5 : 0);
    colour(cr, palette[i % std::size(palette)], 0.9);
    for (double v : {f.nonzero_from, f.normal_from, f.overflow_from})
      if (std::isfinite(v) && v > lo && v < hi) {
        cairo_move_to(cr, X(v), hist_top);
        cairo_line_to(cr, X(v), hist_bottom);
      }
    cairo_stroke(cr);
  }
  cairo_set_dash(cr, nullptr, 0, 0);
  cairo_restore(cr);

  if (pic.binades.empty()) note(cr, (left + right) / 2, (hist_top + hist_bottom) / 2, "no nonzero finite values");

  // Axes of the histogram and their labels.
  cairo_set_line_width(cr, 1);
  colour(cr, ink);
  cairo_move_to(cr, snap(left), hist_top);
  cairo_line_to(cr, snap(left), snap(hist_bottom));
  cairo_line_to(cr, right, snap(hist_bottom));
  for (double v = 0; ystep > 0 && v <= ytop + ystep / 2; v += ystep) {
    cairo_move_to(cr, left - 4, snap(Y(v)));
    cairo_line_to(cr, left, snap(Y(v)));
  }
  for (int k : xticks) {
    cairo_move_to(cr, snap(X(k)), snap(hist_bottom));
    cairo_line_to(cr, snap(X(k)), hist_bottom + 4);
  }
  cairo_stroke(cr);
  colour(cr, muted);
  for (double v = 0; v == 0 || (ystep > 0 && v <= ytop + ystep / 2); v += std::max(ystep, 1.0))
    text(cr, left - 7, Y(v) + 4, axis_number(v, ytop), 11, 1);
  cairo_save(cr);
  cairo_translate(cr, 20, (hist_top + hist_bottom) / 2);
  cairo_rotate(cr, -std::numbers::pi / 2);
  text(cr, 0, 0, "values per binade", 12, 0.5);
  cairo_restore(cr);

  // One band per format: its regions, their boundaries, its label.
  for (std::size_t i = 0; i < nf; ++i) {
    const auto& f = pic.formats[i];
    const double y = bands_top + double(i) * band_pitch;
    double edge[5] = {lo, f.nonzero_from, f.normal_from, f.overflow_from, hi};
    for (int r = 1; r < 5; ++r) edge[r] = std::isnan(edge[r]) ? edge[r - 1] : std::max(edge[r], edge[r - 1]);
    for (int r = 0; r < 4; ++r) {
      const double x0 = X(edge[r]), x1 = X(edge[r + 1]);
      if (x1 <= x0) continue;
      colour(cr, region_fill[r]);
      cairo_rectangle(cr, x0, y, x1 - x0, band_h);
      cairo_fill(cr);
      colour(cr, muted);
      if (text(cr, 0, 0, region_name[r], 10, 0, false, false) + 10 <= x1 - x0)
        text(cr, (x0 + x1) / 2, y + band_h / 2 + 3.5, region_name[r], 10, 0.5);
    }
    const rgb c = palette[i % std::size(palette)];
    colour(cr, c);
    cairo_set_line_width(cr, 1.6);
    for (int r = 1; r < 4; ++r)
      if (edge[r] > lo && edge[r] < hi) {
        cairo_move_to(cr, X(edge[r]), y);
        cairo_line_to(cr, X(edge[r]), y + band_h);
      }
    cairo_stroke(cr);
    colour(cr, band_edge);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, snap(left), snap(y), std::round(right - left), std::round(band_h));
    cairo_stroke(cr);
    colour(cr, c);
    text(cr, left - 10, y + band_h / 2 + 4.5, f.label, 12, 1, true);
  }

  // The shared x axis under the last band.
  colour(cr, ink);
  cairo_set_line_width(cr, 1);
  for (int k : xticks) {
    cairo_move_to(cr, snap(X(k)), snap(axis_y));
    cairo_line_to(cr, snap(X(k)), axis_y + 5);
  }
  cairo_stroke(cr);
  colour(cr, muted);
  for (int k : xticks) text(cr, X(k), axis_y + 19, power_of_two(k), 11, 0.5);
  colour(cr, ink);
  text(cr, (left + right) / 2, axis_y + 40,
       {{"|x|    (bar k counts 2"}, {"k", true}, {" \u2264 |x| < 2"}, {"k+1", true}, {")"}}, 12, 0.5);

  // Legend, centred under everything (no regions to explain without formats).
  if (!nf) return;
  const double ly = h - 16;
  double legend_w = 0;
  for (const char* name : region_name) legend_w += 14 + 5 + text(cr, 0, 0, name, 11, 0, false, false) + 18;
  const std::string boundary_note = "region boundary, in the format's colour";
  legend_w += 22 + 5 + text(cr, 0, 0, boundary_note, 11, 0, false, false);
  double lx = std::round((left + right - legend_w) / 2);
  for (int r = 0; r < 4; ++r) {
    colour(cr, region_fill[r]);
    cairo_rectangle(cr, lx, ly - 9, 14, 10);
    cairo_fill_preserve(cr);
    colour(cr, band_edge);
    cairo_stroke(cr);
    colour(cr, ink);
    lx += 19 + text(cr, lx + 19, ly, region_name[r], 11) + 18;
  }
  const double dash[] = {5, 4};
  cairo_set_dash(cr, dash, 2, 0);
  cairo_set_line_width(cr, 1.4);
  colour(cr, muted);
  cairo_move_to(cr, lx, ly - 4);
  cairo_line_to(cr, lx + 22, ly - 4);
  cairo_stroke(cr);
  cairo_set_dash(cr, nullptr, 0, 0);
  colour(cr, ink);
  text(cr, lx + 27, ly, boundary_note, 11);
}

}  // namespace
}  // namespace plot

void write_plot(const std::string& path, const hist_picture& pic, const std::vector<std::string>& inputs) {
  const int w = 1000, h = 400 + 40 * int(pic.formats.size());
  plot::write_figure(path, w, h, [&](cairo_t* cr) { plot::draw_hist(cr, pic, w, h); }, inputs);
}

}  // namespace fpscope::cli
