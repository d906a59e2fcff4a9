// fpscope gemm --k-sweep --plot: relative error against K (plot_gemm.hpp).
#include "plot_gemm.hpp"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <limits>

#include "plot_common.hpp"
#include "text.hpp"

namespace fpscope::cli {

namespace {
using namespace plot;

// Distinguishable on white and in grey print (Okabe-Ito, without its yellow).
constexpr rgb palette[] = {hex(0x0072b2), hex(0xd55e00), hex(0x009e73), hex(0xcc79a7),
                           hex(0x56b4e9), hex(0xe69f00), hex(0x000000), hex(0x999999)};

std::string k_label(double k) { return grouped(std::uint64_t(k)); }

// The legend's width: its widest label and the swatch before it.
double text_width_of(const k_sweep_picture& pic) {
  cairo_surface_t* s = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, 1, 1);
  cairo_t* cr = cairo_create(s);
  double w = text(cr, 0, 0, "mean |relative error|", 11, 0, false, false);
  for (const auto& line : pic.lines) w = std::max(w, text(cr, 0, 0, printable(line.label), 11, 0, false, false));
  cairo_destroy(cr);
  cairo_surface_destroy(s);
  return std::min(w, 900.0) + 40;
}
}  // namespace

void write_k_sweep_plot(const std::string& path, const k_sweep_picture& pic, const std::vector<std::string>& inputs) {
  // The legend's width, measured on a scratch surface: the figure widens to hold it.
  double legend_w = text_width_of(pic);
  const int w = int(600 + legend_w), h = 500;
  constexpr double inf = std::numeric_limits<double>::infinity();
  // Ranges: K in whole binades; errors in whole decades over the positive ones (at least 3).
  double klo = inf, khi = -inf, elo = inf, ehi = -inf;
  bool any_zero = false;
  for (const auto& s : pic.lines)
    for (std::size_t i = 0; i < s.k.size(); ++i) {
      if (s.k[i] > 0) {
        klo = std::min(klo, std::log2(s.k[i]));
        khi = std::max(khi, std::log2(s.k[i]));
      }
      for (const auto* v : {&s.max_rel, &s.mean_rel})
        if (i < v->size() && std::isfinite((*v)[i])) {
          if ((*v)[i] > 0) {
            elo = std::min(elo, std::log10((*v)[i]));
            ehi = std::max(ehi, std::log10((*v)[i]));
          } else if ((*v)[i] == 0) {
            any_zero = true;
          }
        }
    }
  if (klo > khi) klo = 4, khi = 12;
  if (elo > ehi) elo = -8, ehi = -1;
  klo = std::floor(klo);
  khi = std::max(std::ceil(khi), klo + 1);
  int dlo = int(std::floor(elo)), dhi = int(std::ceil(ehi));
  if (dhi == dlo) ++dhi;
  while (dhi - dlo < 3) --dlo;

  write_figure(path, w, h, [&](cairo_t* cr) {
    // Layout: title and caption above; the legend to the right of the panel.
    const double left = 74, right = w - 24 - legend_w, top = 70, zero_gap = any_zero ? 18 : 0, bottom = h - 62;
    const double decade0 = bottom - zero_gap;
    const auto X = [&](double k) { return left + (std::log2(k) - klo) / (khi - klo) * (right - left); };
    const auto Y = [&](double e) {
      if (e <= 0) return bottom;
      return decade0 - (std::clamp(std::log10(e), double(dlo), double(dhi)) - dlo) / (dhi - dlo) * (decade0 - top);
    };

    colour(cr, hex(0xffffff));
    cairo_paint(cr);
    colour(cr, ink);
    text(cr, left, 28, printable(pic.title), 15, 0, true);
    colour(cr, muted);
    text(cr, left, 48, printable(pic.caption), 11);

    // Grid and ticks: every binade of K (labelled as far apart as the labels need), every decade.
    cairo_set_line_width(cr, 1);
    const double per_binade = (right - left) / (khi - klo);
    const int kstep = per_binade >= 40 ? 1 : per_binade >= 20 ? 2 : 4;
    for (int b = int(klo); b <= int(khi); ++b) {
      const double x = snap(X(std::ldexp(1.0, b)));
      colour(cr, grid);
      cairo_move_to(cr, x, top);
      cairo_line_to(cr, x, bottom);
      cairo_stroke(cr);
      if ((b - int(klo)) % kstep == 0) {
        colour(cr, ink);
        text(cr, x, bottom + 16, k_label(std::ldexp(1.0, b)), 11, 0.5);
      }
    }
    for (int d = dlo; d <= dhi; ++d) {
      const double y = snap(Y(std::pow(10.0, d)));
      colour(cr, grid);
      cairo_move_to(cr, left, y);
      cairo_line_to(cr, right, y);
      cairo_stroke(cr);
      colour(cr, ink);
      text(cr, left - 6, y + 4, power_of_ten(d), 11, 1);
    }
    if (any_zero) text(cr, left - 6, bottom + 4, "0", 11, 1);
    colour(cr, ink);
    cairo_rectangle(cr, snap(left), snap(top), std::round(right - left), std::round(bottom - top));
    cairo_stroke(cr);
    text(cr, (left + right) / 2, h - 18, "K (elements of the inner dimension)", 12, 0.5);
    cairo_save(cr);
    cairo_translate(cr, 18, (top + bottom) / 2);
    cairo_rotate(cr, -M_PI / 2);
    text(cr, 0, 0, "relative error against the exact A\u00b7B + C", 12, 0.5);
    cairo_restore(cr);

    // The lines: the maximum solid with dots, the mean dashed; a missing or non-finite value breaks the line.
    cairo_save(cr);
    cairo_rectangle(cr, left, top - 4, right - left, bottom - top + 8);
    cairo_clip(cr);
    for (std::size_t s = 0; s < pic.lines.size(); ++s) {
      const auto& line = pic.lines[s];
      colour(cr, palette[s % std::size(palette)]);
      for (const bool mean : {false, true}) {
        const auto& v = mean ? line.mean_rel : line.max_rel;
        const double dash = 5;
        cairo_set_dash(cr, &dash, mean ? 1 : 0, 0);
        cairo_set_line_width(cr, mean ? 1.5 : 2);
        bool open = false;
        for (std::size_t i = 0; i < line.k.size(); ++i) {
          const bool ok = i < v.size() && std::isfinite(v[i]) && v[i] >= 0 && line.k[i] > 0;
          if (!ok) {
            if (open) cairo_stroke(cr);
            open = false;
            continue;
          }
          if (open) cairo_line_to(cr, X(line.k[i]), Y(v[i]));
          else cairo_move_to(cr, X(line.k[i]), Y(v[i]));
          open = true;
        }
        if (open) cairo_stroke(cr);
        cairo_set_dash(cr, nullptr, 0, 0);
        if (!mean)
          for (std::size_t i = 0; i < line.k.size(); ++i)
            if (i < v.size() && std::isfinite(v[i]) && v[i] >= 0 && line.k[i] > 0) {
              cairo_arc(cr, X(line.k[i]), Y(v[i]), 3, 0, 2 * M_PI);
              cairo_fill(cr);
            }
      }
    }
    cairo_restore(cr);

    // Legend.
    const double lx = right + 16;
    double ly = top + 8;
    for (std::size_t s = 0; s < pic.lines.size(); ++s, ly += 20) {
      colour(cr, palette[s % std::size(palette)]);
      cairo_set_line_width(cr, 2);
      cairo_move_to(cr, lx, ly - 4);
      cairo_line_to(cr, lx + 22, ly - 4);
      cairo_stroke(cr);
      colour(cr, ink);
      text(cr, lx + 28, ly, printable(pic.lines[s].label), 11);
    }
    colour(cr, muted);
    ly += 8;
    const double dash = 5;
    for (const bool mean : {false, true}) {
      cairo_set_dash(cr, &dash, mean ? 1 : 0, 0);
      cairo_set_line_width(cr, mean ? 1.5 : 2);
      cairo_move_to(cr, lx, ly - 4);
      cairo_line_to(cr, lx + 22, ly - 4);
      cairo_stroke(cr);
      cairo_set_dash(cr, nullptr, 0, 0);
      text(cr, lx + 28, ly, mean ? "mean |relative error|" : "max |relative error|", 11);
      ly += 18;
    }
  }, inputs);
}

}  // namespace fpscope::cli
