// The figures' shared drawing and output (plot_common.hpp). Each figure renders into an in-memory SVG or PNG
// (cairo, toy text API only: no pango), and the bytes go through the library's output writer, so a failed
// render or write never leaves a partial figure behind.
#include "plot_common.hpp"

#include <cairo-svg.h>
#include <fmt/format.h>

#include <cctype>
#include <memory>
#include <new>
#include <stdexcept>

#include "fpscope/output.hpp"
#include "plot.hpp"
#include "text.hpp"

namespace fpscope::cli::plot {
namespace {

// An exponent, with a typographic minus: "−24".
std::string exponent(long k) { return k < 0 ? fmt::format("{}{}", unicode_minus, -k) : fmt::format("{}", k); }

cairo_status_t append(void* closure, const unsigned char* data, unsigned int n) {
  try {
    static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), n);
    return CAIRO_STATUS_SUCCESS;
  } catch (const std::bad_alloc&) {
    return CAIRO_STATUS_NO_MEMORY;
  }
}

// Renders `paint(cr)` on a w x h canvas as SVG or PNG bytes; errors name `path`.
std::string render(const std::string& path, int w, int h, bool svg, const std::function<void(cairo_t*)>& paint) {
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

}  // namespace

double text(cairo_t* cr, double x, double y, const std::vector<run>& runs, double size, double align, bool bold,
            bool draw) {
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
double text(cairo_t* cr, double x, double y, const std::string& s, double size, double align, bool bold, bool draw) {
  return text(cr, x, y, std::vector<run>{{s}}, size, align, bold, draw);
}

std::vector<run> power_of_two(int k) { return {{"2"}, {exponent(k), true}}; }

// 2^e for a log2 that need not be whole (a geometric mean over tensors): "2^16", "2^3.42".
std::vector<run> power_of_two(double e) {
  if (std::abs(e - std::round(e)) < 1e-9) return power_of_two(int(std::round(e)));
  std::string s = fmt::format("{:.2f}", std::abs(e));
  while (s.back() == '0') s.pop_back();
  return {{"2"}, {(e < 0 ? std::string(unicode_minus) : "") + s, true}};
}

std::vector<run> power_of_ten(int k) {
  if (k == 0) return {{"1"}};
  return {{"10"}, {exponent(k), true}};
}

std::pair<double, double> whole_range(double lo, double hi, double margin, double min_span) {
  lo = std::floor(lo) - margin;
  hi = std::ceil(hi) + margin;
  if (hi - lo < min_span) {
    const double mid = std::floor((lo + hi) / 2);
    lo = mid - min_span / 2;
    hi = mid + min_span / 2;
  }
  return {lo, hi};
}

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

void write_figure(const std::string& path, int w, int h, const std::function<void(cairo_t*)>& paint,
                  const std::vector<std::string>& inputs) {
  const bool svg = plot_is_svg(path);
  output_options opt;
  opt.inputs = inputs;
  output_file out(path, opt);  // first: an unwritable target is refused before drawing
  out.write(render(path, w, h, svg, paint));
  out.commit();
}

}  // namespace fpscope::cli::plot

namespace fpscope::cli {

bool plot_is_svg(const std::string& path) {
  std::string ext = path.size() >= 4 ? path.substr(path.size() - 4) : "";
  for (char& ch : ext) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  if (ext != ".svg" && ext != ".png")
    throw std::invalid_argument(fmt::format("--plot: FILE must end in .svg or .png, not '{}'", path));
  return ext == ".svg";
}

}  // namespace fpscope::cli
