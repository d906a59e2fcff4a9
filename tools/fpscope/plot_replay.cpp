// The figure of `fpscope replay`: a loss scaler's or FP8 recipe's scale step by step, the skipped steps, and
// the fractions of values that underflowed or overflowed.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <numeric>
#include <tuple>
#include <utility>

#include "plot.hpp"
#include "plot_common.hpp"
#include "text.hpp"

namespace fpscope::cli {
namespace plot {
namespace {

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
std::string step_label(std::int64_t n) { return grouped_signed(n, unicode_minus); }

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
  if (any_scale) std::tie(slo, shi) = whole_range(smin, smax, 1, 4);
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
    const double room = 16 + std::max(text(cr, 0, 0, step_label(pic.steps[order.front()]), 11, 0, false, false),
                                      text(cr, 0, 0, step_label(pic.steps[order.back()]), 11, 0, false, false));
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
    caption = {{fmt::format("{} step{} replayed", step_label(std::int64_t(n)), n == 1 ? "" : "s")},
               {n == 1 ? fmt::format(" (step {})", step_label(pic.steps[order[0]]))
                       : fmt::format(" ({} \u2013 {})", step_label(pic.steps[order.front()]),
                                     step_label(pic.steps[order.back()]))},
               {fmt::format("  \u00b7  {} skipped", step_label(std::int64_t(skips)))}};
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
  for (double k : xticks) text(cr, X(k), bot_b + 19, step_label(std::int64_t(k)), 11, 0.5);
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

}  // namespace
}  // namespace plot

void write_replay_plot(const std::string& path, const replay_picture& pic, const std::vector<std::string>& inputs) {
  const int w = 1000, h = 600;
  plot::write_figure(path, w, h, [&](cairo_t* cr) { plot::draw_replay(cr, pic, w, h); }, inputs);
}

}  // namespace fpscope::cli
