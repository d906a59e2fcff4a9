// Figures of `fpscope hist` and `fpscope replay`. Each drawing routine renders into an in-memory SVG or PNG
// (cairo, toy text API only: no pango), and the bytes go through the library's output writer, so a failed
// render or write never leaves a partial figure behind.
#include "plot.hpp"

#include "fpscope/output.hpp"

#include <cairo-svg.h>
#include <cairo.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <numbers>
#include <numeric>
#include <stdexcept>
#include <string_view>
#include <tuple>
#include <utility>

namespace fpscope::cli {
namespace {

struct rgb {
  double r, g, b;
};
constexpr rgb hex(unsigned v) { return {((v >> 16) & 255) / 255.0, ((v >> 8) & 255) / 255.0, (v & 255) / 255.0}; }

constexpr rgb ink = hex(0x222222), muted = hex(0x5c5c5c), grid = hex(0xe8e8e8), bar = hex(0x93a1b3),
              band_edge = hex(0x9a9a9a);
constexpr rgb region_fill[4] = {hex(0xd0d0d0), hex(0xf7c65e), hex(0xe1f2da), hex(0xf3a097)};
constexpr const char* region_name[4] = {"vanish", "subnormal", "normal", "overflow"};
// Saturated hues away from the region fills, so a boundary line reads over bars, grid and bands alike.
constexpr rgb palette[] = {hex(0x1f5fbf), hex(0x8e24aa), hex(0x00897b), hex(0xd81b60),
                           hex(0x6d4c41), hex(0x3949ab), hex(0x558b2f), hex(0xe65100)};

// Boundaries beyond this (fp64's 2^-1074, say) would squash the bars into a sliver.
constexpr double far_binade = 160;

void colour(cairo_t* cr, rgb c, double alpha = 1) { cairo_set_source_rgba(cr, c.r, c.g, c.b, alpha); }
// Crisp 1px lines in the PNG: centre them on a pixel.
double snap(double v) { return std::floor(v) + 0.5; }

/// A piece of text, raised and smaller when `sup` (exponents of 2^k).
struct run {
  std::string s;
  bool sup = false;
};

// Draws `runs` with its anchor at `align` (0 left, 0.5 centre, 1 right) of x; returns the width.
double text(cairo_t* cr, double x, double y, const std::vector<run>& runs, double size, double align = 0,
            bool bold = false, bool draw = true) {
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                         bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  double width = 0;
  cairo_text_extents_t e;
  for (const auto& r : runs) {
    cairo_set_font_size(cr, r.sup ? size * 0.72 : size);
    cairo_text_extents(cr, r.s.c_str(), &e);
    width += e.x_advance;
  }
  if (!draw) return width;
  x -= align * width;
  for (const auto& r : runs) {
    cairo_set_font_size(cr, r.sup ? size * 0.72 : size);
    cairo_move_to(cr, x, r.sup ? y - size * 0.42 : y);
    cairo_show_text(cr, r.s.c_str());
    cairo_text_extents(cr, r.s.c_str(), &e);
    x += e.x_advance;
  }
  return width;
}
double text(cairo_t* cr, double x, double y, const std::string& s, double size, double align = 0, bool bold = false,
            bool draw = true) {
  return text(cr, x, y, std::vector<run>{{s}}, size, align, bold, draw);
}

std::vector<run> power_of_two(int k) {
  return {{"2"}, {k < 0 ? fmt::format("\u2212{}", -static_cast<long>(k)) : fmt::format("{}", k), true}};
}

std::string thousands(std::uint64_t n) {
  std::string digits = fmt::format("{}", n), out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

// Axis counts: "25k", "1.5M" once the numbers get wide.
std::string compact(double v, double top) {
  if (v == 0 || top < 1e4) return fmt::format("{:g}", v);
  if (top < 1e6) return fmt::format("{:g}k", v / 1e3);
  if (top < 1e9) return fmt::format("{:g}M", v / 1e6);
  return fmt::format("{:g}G", v / 1e9);
}

double nice_step(double raw) {
  const double p = std::pow(10.0, std::floor(std::log10(raw))), m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

// An italic remark centred at (cx, baseline cy) on a white box, so that lines behind it do not cross it.
void note(cairo_t* cr, double cx, double cy, const char* s) {
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_ITALIC, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 15);
  cairo_text_extents_t e;
  cairo_text_extents(cr, s, &e);
  const double nx = cx - e.x_advance / 2;
  colour(cr, hex(0xffffff));
  cairo_rectangle(cr, nx - 10, cy - 19, e.x_advance + 20, 28);
  cairo_fill(cr);
  colour(cr, muted);
  cairo_move_to(cr, nx, cy);
  cairo_show_text(cr, s);
}

void draw(cairo_t* cr, const hist_picture& pic, double w, double h) {
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
  lo = std::floor(lo) - 2;
  hi = std::ceil(hi) + 2;
  if (hi - lo < 12) {
    const double mid = std::floor((lo + hi) / 2);
    lo = mid - 6;
    hi = mid + 6;
  }

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
    ytick_w = std::max(ytick_w, text(cr, 0, 0, compact(v, ytop), 11, 0, false, false));
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
       fmt::format("{} nonzero finite  \u00b7  {} zero  \u00b7  {} non-finite", thousands(total),
                   thousands(pic.zero), thousands(pic.nonfinite)),
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
    text(cr, left - 7, Y(v) + 4, compact(v, ytop), 11, 1);
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

// ---- `fpscope replay`: the scale over the steps, and the underflow/overflow it left.

constexpr rgb scale_ink = hex(0x37474f), underflow_ink = hex(0x1f5fbf), overflow_ink = hex(0xe65100),
              skip_ink = hex(0xd32f2f);

struct point {
  double x, y;
};

// Strokes a polyline whose x ascends. Past about two points per pixel column it keeps only each column's
// first, lowest, highest and last point: the same picture, without thousands of sub-pixel segments (and
// without an SVG the size of the data).
void polyline(cairo_t* cr, const std::vector<point>& p) {
  if (p.size() < 2) return;
  if (double(p.size()) <= 2 * (p.back().x - p.front().x) + 8) {
    cairo_move_to(cr, p[0].x, p[0].y);
    for (std::size_t i = 1; i < p.size(); ++i) cairo_line_to(cr, p[i].x, p[i].y);
  } else {
    std::size_t last = p.size();  // the last point drawn, none yet
    for (std::size_t i = 0; i < p.size();) {
      const double col = std::floor(p[i].x);
      std::size_t j = i, lo = i, hi = i;
      for (; j < p.size() && std::floor(p[j].x) == col; ++j) {
        if (p[j].y < p[lo].y) lo = j;
        if (p[j].y > p[hi].y) hi = j;
      }
      for (std::size_t k : {i, std::min(lo, hi), std::max(lo, hi), j - 1}) {
        if (k == last) continue;
        if (last == p.size()) cairo_move_to(cr, p[k].x, p[k].y);
        else cairo_line_to(cr, p[k].x, p[k].y);
        last = k;
      }
      i = j;
    }
  }
  cairo_stroke(cr);
}

// Steps as "12,345", below zero too.
std::string grouped(std::int64_t n) {
  return n < 0 ? "\u2212" + thousands(std::uint64_t(-(n + 1)) + 1) : thousands(std::uint64_t(n));
}

std::vector<run> power_of_ten(int k) {
  if (k == 0) return {{"1"}};
  return {{"10"}, {k < 0 ? fmt::format("\u2212{}", -static_cast<long>(k)) : fmt::format("{}", k), true}};
}

// 2^e for a log2 that need not be whole (a geometric mean over tensors): "2^16", "2^3.42".
std::vector<run> power_of_two(double e) {
  if (std::abs(e - std::round(e)) < 1e-9) return power_of_two(int(std::round(e)));
  std::string s = fmt::format("{:.2f}", std::abs(e));
  while (s.back() == '0') s.pop_back();
  return {{"2"}, {(e < 0 ? "\u2212" : "") + s, true}};
}

void draw_replay(cairo_t* cr, const replay_picture& pic, double w, double h) {
  constexpr double nan = std::numeric_limits<double>::quiet_NaN();
  const std::size_t n = pic.steps.size();

  // The steps in order (promised ascending; a stable sort keeps a misordered input drawable), each vector
  // read defensively: a missing, non-finite or impossible entry becomes a gap (nan), a missing flag false.
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return pic.steps[a] < pic.steps[b]; });
  const auto at = [&](const std::vector<double>& v, std::size_t i, double min) {
    return i < v.size() && std::isfinite(v[i]) && v[i] >= min ? v[i] : nan;
  };
  std::vector<double> step(n), lscale(n), under(n), over(n);
  std::vector<char> skip(n);
  std::size_t skips = 0;
  bool any_fraction = false;
  double final_lscale = nan, smin = std::numeric_limits<double>::infinity(), smax = -smin, fmin = 1;
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t i = order[k];
    step[k] = double(pic.steps[i]);
    const double s = at(pic.scale, i, std::numeric_limits<double>::min());
    lscale[k] = std::log2(s);  // nan stays nan
    under[k] = at(pic.underflow, i, 0);
    over[k] = at(pic.overflow, i, 0);
    skip[k] = i < pic.skipped.size() && pic.skipped[i];
    skips += skip[k] ? 1 : 0;
    if (!std::isnan(lscale[k])) {
      final_lscale = lscale[k];
      smin = std::min(smin, lscale[k]);
      smax = std::max(smax, lscale[k]);
    }
    for (double f : {under[k], over[k]})
      if (f > 0) {
        fmin = std::min(fmin, f);
        any_fraction = true;
      }
  }
  const bool any_scale = smin <= smax;

  // x: each step owns [s - 1/2, s + 1/2], so a lone step sits mid-panel and the ticks fall on steps.
  const double xlo = n ? step.front() - 0.5 : 0, xhi = n ? step.back() + 0.5 : 1;

  // Top y: log2(scale), whole binades with one spare each side, at least four in all.
  double slo = 0, shi = 4;
  if (any_scale) {
    slo = std::floor(smin) - 1;
    shi = std::ceil(smax) + 1;
    if (shi - slo < 4) {
      const double mid = std::floor((slo + shi) / 2);
      slo = mid - 2;
      shi = mid + 2;
    }
  }
  // Bottom y: decades from 1e-7 (further down if the data goes there) to 1, and zero on the bottom edge.
  int dlo = std::min(-7, std::max(-15, int(std::floor(std::log10(fmin)))));

  // Vertical layout: title, caption, scale panel, fractions panel, x labels, axis title, legend.
  constexpr double top_t = 68, zero_gap = 18;
  const double top_b = top_t + std::round((h - 174) * 0.44), bot_t = top_b + 22, bot_b = h - 86,
               decade0 = bot_b - zero_gap;

  const double spx = (top_b - top_t) / (shi - slo);
  int sstep = 1;
  for (int s : {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}) {
    sstep = s;
    if (s * spx >= 22) break;
  }
  std::vector<int> sticks;
  if (any_scale)
    for (int k = int(std::ceil(slo / sstep)) * sstep; k <= shi; k += sstep) sticks.push_back(k);
  // Decades labelled every `dstep`, at least 16px apart; the lowest decade is always labelled, so it moves
  // down to a multiple of dstep (which may call for a wider step).
  double dpx = (decade0 - bot_t) / -dlo;
  int dstep = 1;
  for (int i = 0; i < 4; ++i) {
    dstep = std::max(1, int(std::ceil(16 / dpx)));
    dlo = -(-dlo + dstep - 1) / dstep * dstep;
    dpx = (decade0 - bot_t) / -dlo;
  }
  std::vector<int> dticks;
  for (int k = 0; k >= dlo; k -= dstep) dticks.push_back(k);

  // Horizontal layout: the left margin holds a rotated axis title and the widest tick label.
  double ytick_w = text(cr, 0, 0, "0", 11, 0, false, false);
  for (int k : sticks) ytick_w = std::max(ytick_w, text(cr, 0, 0, power_of_two(k), 11, 0, false, false));
  for (int k : dticks) ytick_w = std::max(ytick_w, text(cr, 0, 0, power_of_ten(k), 11, 0, false, false));
  const double left = std::ceil(std::max(34 + ytick_w + 8, 60.0)), right = w - 28;
  const double xpx = (right - left) / (xhi - xlo);
  const auto X = [&](double v) { return left + (v - xlo) * xpx; };
  const auto YS = [&](double l) { return top_b - (l - slo) * spx; };
  const auto YF = [&](double f) {
    if (f <= 0) return bot_b;
    return decade0 - (std::clamp(std::log10(f), double(dlo), 0.0) - dlo) * dpx;
  };

  // x ticks on whole steps, 1-2-5 apart, as far apart as the widest label needs.
  std::vector<double> xticks;
  if (n) {
    const double room = 16 + std::max(text(cr, 0, 0, grouped(pic.steps[order.front()]), 11, 0, false, false),
                                      text(cr, 0, 0, grouped(pic.steps[order.back()]), 11, 0, false, false));
    double xstep = 1;
    for (int i = 0; xstep * xpx < room && i < 60; ++i) xstep *= i % 3 == 1 ? 2.5 : 2;  // 1, 2, 5, 10, 20, ...
    for (double k = std::ceil(xlo / xstep) * xstep; k <= xhi; k += xstep) xticks.push_back(k);
  }

  colour(cr, hex(0xffffff));
  cairo_paint(cr);
  cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
  cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);

  colour(cr, ink);
  text(cr, left, 28, pic.title, 16, 0, true);
  std::vector<run> caption;
  if (!n) caption = {{"no steps replayed"}};
  else {
    caption = {{fmt::format("{} step{} replayed", grouped(std::int64_t(n)), n == 1 ? "" : "s")},
               {n == 1 ? fmt::format(" (step {})", grouped(pic.steps[order[0]]))
                       : fmt::format(" ({} \u2013 {})", grouped(pic.steps[order.front()]),
                                     grouped(pic.steps[order.back()]))},
               {fmt::format("  \u00b7  {} skipped", grouped(std::int64_t(skips)))}};
    if (skips) caption.push_back({fmt::format(" ({:.1f}%)", 100.0 * double(skips) / double(n))});
    caption.push_back({"  \u00b7  final scale "});
    if (std::isnan(final_lscale)) caption.push_back({"\u2014"});
    else
      for (auto& r : power_of_two(final_lscale)) caption.push_back(r);
  }
  colour(cr, muted);
  text(cr, left, 48, caption, 12);

  // Grids.
  cairo_set_line_width(cr, 1);
  colour(cr, grid);
  for (int k : sticks)
    if (k > slo) {
      cairo_move_to(cr, left, snap(YS(k)));
      cairo_line_to(cr, right, snap(YS(k)));
    }
  for (int k : dticks)
    if (k > dlo) {
      cairo_move_to(cr, left, snap(YF(std::pow(10.0, k))));
      cairo_line_to(cr, right, snap(YF(std::pow(10.0, k))));
    }
  for (double k : xticks)
    for (auto [t, b] : {std::pair{top_t, top_b}, std::pair{bot_t, bot_b}}) {
      cairo_move_to(cr, snap(X(k)), t);
      cairo_line_to(cr, snap(X(k)), b);
    }
  cairo_stroke(cr);

  // Skipped steps: a faint line through both panels (once per pixel column), a red tick atop the scale.
  std::vector<double> skip_x;
  for (std::size_t k = 0; k < n; ++k)
    if (skip[k] && (skip_x.empty() || snap(X(step[k])) != skip_x.back())) skip_x.push_back(snap(X(step[k])));
  colour(cr, skip_ink, 0.22);
  for (double x : skip_x)
    for (auto [t, b] : {std::pair{top_t, top_b}, std::pair{bot_t, bot_b}}) {
      cairo_move_to(cr, x, t);
      cairo_line_to(cr, x, b);
    }
  cairo_stroke(cr);

  // The scale as a step line: each step's scale holds from midway after the previous step to midway before
  // the next.
  cairo_save(cr);
  cairo_rectangle(cr, left, top_t, right - left, top_b - top_t);
  cairo_clip(cr);
  colour(cr, scale_ink);
  cairo_set_line_width(cr, 1.8);
  std::vector<point> line;
  for (std::size_t k = 0; k <= n; ++k) {
    if (k == n || std::isnan(lscale[k])) {
      polyline(cr, line);
      line.clear();
      continue;
    }
    const double a = k ? (step[k - 1] + step[k]) / 2 : xlo, b = k + 1 < n ? (step[k] + step[k + 1]) / 2 : xhi;
    line.push_back({X(a), YS(lscale[k])});
    line.push_back({X(b), YS(lscale[k])});
  }
  cairo_restore(cr);
  colour(cr, skip_ink);
  cairo_set_line_width(cr, 2);
  for (double x : skip_x) {
    cairo_move_to(cr, x, top_t);
    cairo_line_to(cr, x, top_t + 10);
  }
  cairo_stroke(cr);

  // The fractions: lines, plus dots where the steps are few enough to tell apart (or a value stands alone).
  cairo_save(cr);
  cairo_rectangle(cr, left, bot_t - 2, right - left + 2, bot_b - bot_t + 4);
  cairo_clip(cr);
  const bool dots = n && (right - left) / double(n) >= 8;
  for (const auto& [v, c] : {std::pair{&under, underflow_ink}, std::pair{&over, overflow_ink}}) {
    colour(cr, c);
    cairo_set_line_width(cr, 1.4);
    line.clear();
    for (std::size_t k = 0; k <= n; ++k) {
      if (k < n && !std::isnan((*v)[k])) {
        line.push_back({X(step[k]), YF((*v)[k])});
        continue;
      }
      if (line.size() == 1 && !dots) {
        cairo_arc(cr, line[0].x, line[0].y, 2.2, 0, 2 * std::numbers::pi);
        cairo_fill(cr);
      }
      polyline(cr, line);
      line.clear();
    }
    if (dots) {
      for (std::size_t k = 0; k < n; ++k)
        if (!std::isnan((*v)[k])) {
          cairo_new_sub_path(cr);
          cairo_arc(cr, X(step[k]), YF((*v)[k]), 2.2, 0, 2 * std::numbers::pi);
        }
      cairo_fill(cr);
    }
  }
  cairo_restore(cr);

  if (!n) {
    note(cr, (left + right) / 2, (top_t + top_b) / 2 + 5, "no steps");
    note(cr, (left + right) / 2, (bot_t + bot_b) / 2 + 5, "no steps");
  } else if (!any_fraction) {
    note(cr, (left + right) / 2, (bot_t + bot_b) / 2 + 5, "no underflow or overflow at any step");
  }

  // Axes, ticks and their labels.
  colour(cr, ink);
  cairo_set_line_width(cr, 1);
  for (auto [t, b] : {std::pair{top_t, top_b}, std::pair{bot_t, bot_b}}) {
    cairo_move_to(cr, snap(left), t);
    cairo_line_to(cr, snap(left), snap(b));
    cairo_line_to(cr, right, snap(b));
    for (double k : xticks) {
      cairo_move_to(cr, snap(X(k)), snap(b));
      cairo_line_to(cr, snap(X(k)), b + 4);
    }
  }
  for (int k : sticks) {
    cairo_move_to(cr, left - 4, snap(YS(k)));
    cairo_line_to(cr, left, snap(YS(k)));
  }
  for (double y : {bot_b, YF(std::pow(10.0, dlo))}) {
    cairo_move_to(cr, left - 4, snap(y));
    cairo_line_to(cr, left, snap(y));
  }
  for (int k : dticks) {
    cairo_move_to(cr, left - 4, snap(YF(std::pow(10.0, k))));
    cairo_line_to(cr, left, snap(YF(std::pow(10.0, k))));
  }
  cairo_stroke(cr);
  // The bottom axis breaks between 0 and its lowest decade.
  const double brk = snap(bot_b - zero_gap / 2);
  colour(cr, hex(0xffffff));
  cairo_rectangle(cr, snap(left) - 1.5, brk - 3, 3, 6);
  cairo_fill(cr);
  colour(cr, ink);
  for (double dy : {-3.0, 3.0}) {
    cairo_move_to(cr, snap(left) - 4, brk + dy + 2);
    cairo_line_to(cr, snap(left) + 4, brk + dy - 2);
  }
  cairo_stroke(cr);

  colour(cr, muted);
  for (int k : sticks) text(cr, left - 7, YS(k) + 4, power_of_two(k), 11, 1);
  for (int k : dticks) text(cr, left - 7, YF(std::pow(10.0, k)) + 4, power_of_ten(k), 11, 1);
  text(cr, left - 7, bot_b + 4, "0", 11, 1);
  for (double k : xticks) text(cr, X(k), bot_b + 19, grouped(std::int64_t(k)), 11, 0.5);
  colour(cr, ink);
  for (auto [label, t, b] :
       {std::tuple{"scale", top_t, top_b}, std::tuple{"fraction of nonzero values", bot_t, bot_b}}) {
    cairo_save(cr);
    cairo_translate(cr, 20, (t + b) / 2);
    cairo_rotate(cr, -std::numbers::pi / 2);
    text(cr, 0, 0, label, 12, 0.5);
    cairo_restore(cr);
  }
  text(cr, (left + right) / 2, bot_b + 38, "training step", 12, 0.5);

  // Legend, centred under everything.
  const double ly = bot_b + 66;
  struct entry {
    const char* name;
    rgb c;
    double width;
    bool tick;
  };
  const entry legend[] = {{"scale", scale_ink, 1.8, false},
                          {"skipped step", skip_ink, 2, true},
                          {"underflow (vanished to zero)", underflow_ink, 1.4, false},
                          {"overflow (to inf / saturated)", overflow_ink, 1.4, false}};
  double legend_w = -24;
  for (const auto& e : legend) legend_w += (e.tick ? 4 : 22) + 6 + text(cr, 0, 0, e.name, 11, 0, false, false) + 24;
  double lx = std::round((left + right - legend_w) / 2);
  for (const auto& e : legend) {
    colour(cr, e.c);
    cairo_set_line_width(cr, e.width);
    if (e.tick) {
      cairo_move_to(cr, lx + 1, ly - 10);
      cairo_line_to(cr, lx + 1, ly + 1);
    } else {
      cairo_move_to(cr, lx, ly - 4);
      cairo_line_to(cr, lx + 22, ly - 4);
    }
    cairo_stroke(cr);
    lx += (e.tick ? 4 : 22) + 6;
    colour(cr, ink);
    lx += text(cr, lx, ly, e.name, 11) + 24;
  }
}

cairo_status_t append(void* closure, const unsigned char* data, unsigned int n) {
  try {
    static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), n);
    return CAIRO_STATUS_SUCCESS;
  } catch (const std::bad_alloc&) {
    return CAIRO_STATUS_NO_MEMORY;
  }
}

// Renders `paint(cr)` on a w x h canvas as SVG or PNG bytes; errors name `path`.
template <class Paint>
std::string render(const std::string& path, int w, int h, bool svg, const Paint& paint) {
  std::string bytes;  // declared first: the SVG surface may still write into it when destroyed
  const std::unique_ptr<cairo_surface_t, decltype(&cairo_surface_destroy)> surface(
      svg ? cairo_svg_surface_create_for_stream(append, &bytes, w, h)
          : cairo_image_surface_create(CAIRO_FORMAT_ARGB32, w, h),
      cairo_surface_destroy);
  if (svg) cairo_svg_surface_set_document_unit(surface.get(), CAIRO_SVG_UNIT_PX);
  cairo_status_t st;
  {
    const std::unique_ptr<cairo_t, decltype(&cairo_destroy)> cr(cairo_create(surface.get()), cairo_destroy);
    paint(cr.get());
    st = cairo_status(cr.get());
  }
  if (st == CAIRO_STATUS_SUCCESS) {
    if (svg) cairo_surface_finish(surface.get());
    else st = cairo_surface_write_to_png_stream(surface.get(), append, &bytes);
  }
  if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_status(surface.get());
  if (st != CAIRO_STATUS_SUCCESS)
    throw std::runtime_error(fmt::format("{}: cannot draw the figure: {}", path, cairo_status_to_string(st)));
  return bytes;
}

void write_file(const std::string& path, std::string_view bytes, const std::vector<std::string>& inputs) {
  output_options opt;
  opt.inputs = inputs;
  write_output(path, bytes, opt);
}

}  // namespace

bool plot_is_svg(const std::string& path) {
  std::string ext = path.size() >= 4 ? path.substr(path.size() - 4) : "";
  for (char& ch : ext) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  if (ext != ".svg" && ext != ".png")
    throw std::invalid_argument(fmt::format("--plot: FILE must end in .svg or .png, not '{}'", path));
  return ext == ".svg";
}

void write_plot(const std::string& path, const hist_picture& pic, const std::vector<std::string>& inputs) {
  const bool svg = plot_is_svg(path);
  const int w = 1000, h = 400 + 40 * int(pic.formats.size());
  write_file(path, render(path, w, h, svg, [&](cairo_t* cr) { draw(cr, pic, w, h); }), inputs);
}

void write_replay_plot(const std::string& path, const replay_picture& pic, const std::vector<std::string>& inputs) {
  const bool svg = plot_is_svg(path);
  const int w = 1000, h = 600;
  write_file(path, render(path, w, h, svg, [&](cairo_t* cr) { draw_replay(cr, pic, w, h); }), inputs);
}

}  // namespace fpscope::cli
