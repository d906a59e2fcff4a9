// fpscope recipes --plot: the heatmap of elements lost, operands x recipes (plot_recipes.hpp).
#include "plot_recipes.hpp"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>

#include "plot_common.hpp"
#include "text.hpp"

namespace fpscope::cli {

namespace {
using namespace plot;

// White at no loss, through amber to red at all lost, on a log scale from 1e-5 (a fraction this
// small is what a budget talks about; linear would show every cell white).
rgb heat(double f) {
  if (!(f > 0)) return hex(0xffffff);
  const double t = std::clamp((std::log10(f) + 5.0) / 5.0, 0.0, 1.0);
  const rgb a = hex(0xfff3d6), b = hex(0xf59e2d), c = hex(0xc0281b);
  const auto mix = [](rgb u, rgb v, double s) { return rgb{u.r + (v.r - u.r) * s, u.g + (v.g - u.g) * s, u.b + (v.b - u.b) * s}; };
  return t < 0.5 ? mix(a, b, t * 2) : mix(b, c, (t - 0.5) * 2);
}
// The widest of `labels` at `size`, measured on a scratch surface.
double widest(const std::vector<std::string>& labels, double size, double at_least) {
  double w = at_least;
  cairo_surface_t* s = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, 1, 1);
  cairo_t* cr = cairo_create(s);
  for (const auto& o : labels) w = std::max(w, text(cr, 0, 0, printable(o), size, 0, false, false));
  cairo_destroy(cr);
  cairo_surface_destroy(s);
  return w;
}

const char* const legend = "cells: nonzero elements lost (underflow + overflow); colour on a log scale from 0.001% to 100%";
}  // namespace

void write_operand_plot(const std::string& path, const operand_picture& pic, const std::vector<std::string>& inputs) {
  const double cell_w = 62, cell_h = 20, head = 52, pad = 14, gap = 26, size = 10;
  const std::size_t nl = pic.layers.size(), nc = pic.columns.size(), per_row = std::min<std::size_t>(4, pic.recipes.size());
  const std::size_t rows = (pic.recipes.size() + per_row - 1) / per_row;
  const double label_w = widest(pic.layers, size, 60), panel_w = label_w + 8 + cell_w * double(nc);
  const double panel_h = head + cell_h * double(nl);
  const int w = int(pad + (panel_w + gap) * double(per_row) - gap + pad);
  const int h = int(40 + (panel_h + gap) * double(rows) + 30);
  write_figure(path, w, h, [&](cairo_t* cr) {
    colour(cr, hex(0xffffff));
    cairo_paint(cr);
    colour(cr, ink);
    text(cr, pad, 22, printable(pic.title), 13, 0, true);
    for (std::size_t k = 0; k < pic.recipes.size(); ++k) {
      const double x0 = pad + (panel_w + gap) * double(k % per_row), y0 = 40 + (panel_h + gap) * double(k / per_row);
      const double left = x0 + label_w + 8;
      colour(cr, ink);
      text(cr, left, y0 + 16, printable(pic.recipes[k]), 12, 0, true);
      for (std::size_t c = 0; c < nc; ++c) text(cr, left + cell_w * (double(c) + 0.5), y0 + head - 8, pic.columns[c], size, 0.5);
      for (std::size_t l = 0; l < nl; ++l) {
        const double y = y0 + head + cell_h * double(l);
        colour(cr, ink);
        text(cr, left - 8, y + cell_h * 0.7, printable(pic.layers[l]), size, 1);
        for (std::size_t c = 0; c < nc; ++c) {
          const double f = pic.lost[(k * nl + l) * nc + c];
          if (std::isnan(f)) continue;  // not recorded
          colour(cr, heat(f));
          cairo_rectangle(cr, left + cell_w * double(c) + 1, y + 1, cell_w - 2, cell_h - 2);
          cairo_fill(cr);
          colour(cr, f > 0.1 ? hex(0xffffff) : ink);
          text(cr, left + cell_w * (double(c) + 0.5), y + cell_h * 0.7, fraction_percent(f, 2), size - 1, 0.5);
        }
      }
    }
    colour(cr, muted);
    text(cr, pad, h - 14, legend, 10);
  }, inputs);
}

void write_recipes_plot(const std::string& path, const recipes_picture& pic, const std::vector<std::string>& inputs) {
  const double cell_w = 140, cell_h = 24, top = 64, pad = 14, size = 11;
  const double label_w = widest(pic.operands, size, 80);
  const double left = pad + label_w + 10;
  const int w = int(left + cell_w * double(pic.recipes.size()) + pad);
  const int h = int(top + cell_h * double(pic.operands.size()) + 40);
  write_figure(path, w, h, [&](cairo_t* cr) {
    colour(cr, hex(0xffffff));
    cairo_paint(cr);
    colour(cr, ink);
    text(cr, pad, 20, printable(pic.title), 13, 0, true);
    for (std::size_t k = 0; k < pic.recipes.size(); ++k) {
      std::string r = printable(pic.recipes[k]);
      if (r.size() > 22) r = r.substr(0, 21) + "~";
      colour(cr, ink);
      text(cr, left + cell_w * (double(k) + 0.5), top - 8, r, size, 0.5, true);
    }
    for (std::size_t i = 0; i < pic.operands.size(); ++i) {
      const double y = top + cell_h * double(i);
      colour(cr, ink);
      text(cr, left - 10, y + cell_h * 0.68, printable(pic.operands[i]), size, 1);
      for (std::size_t k = 0; k < pic.recipes.size(); ++k) {
        const double f = pic.lost[i * pic.recipes.size() + k];
        colour(cr, heat(f));
        cairo_rectangle(cr, left + cell_w * double(k) + 1, y + 1, cell_w - 2, cell_h - 2);
        cairo_fill(cr);
        colour(cr, f > 0.1 ? hex(0xffffff) : ink);
        text(cr, left + cell_w * (double(k) + 0.5), y + cell_h * 0.68, fraction_percent(f, 3), size, 0.5);
      }
    }
    colour(cr, muted);
    text(cr, pad, h - 14, legend, 10);
  }, inputs);
}

}  // namespace fpscope::cli
