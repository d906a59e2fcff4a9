#include "hist_view.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fmt/color.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "fpscope/report_json.hpp"

#include "fpscope/npy.hpp"
#include "text.hpp"

namespace fpscope::cli {
namespace {

using json = nlohmann::ordered_json;

constexpr cast_class shown[] = {cast_class::underflow, cast_class::subnormal, cast_class::normal, cast_class::overflow};

// The picture's thresholds: where each class begins for a positive x at the view scale.
std::array<double, 3> view_thresholds(const report_format& f, float view) {
  const auto t = thresholds64(cast_spec{f.conv.fmt, f.conv.pol, view});
  std::array<double, 3> out;
  for (int c = 0; c < 3; ++c) {
    double v;
    std::memcpy(&v, &t.at[0][c], sizeof v);
    out[c] = v;
  }
  return out;
}

int region(const std::array<double, 3>& t, double v) { return (v >= t[0]) + (v >= t[1]) + (v >= t[2]); }

json errors_json(const report_row& r) {
  if (!r.has_errors) return nullptr;
  const auto num = [](double v) -> json { return std::isfinite(v) ? json(v) : json(nullptr); };
  return json{{"count", r.errors.n},
              {"mean_rel", num(r.errors.mean_rel())},
              {"max_rel", r.errors.n ? json(r.errors.max_rel) : json(nullptr)},
              {"sqnr_db", num(r.errors.sqnr_db())},
              {"exact", r.errors.n > 0 && r.errors.noise == 0}};
}

json row_json(const report_format& f, const report_row& r) {
  json j{{"format", f.conv.fmt.name},
         {"rounding", name(f.conv.pol.round)},
         {"on_overflow", name(f.conv.pol.on_overflow)},  // not "overflow": that key is the class count
         {"profile", name(f.conv.prof)},
         {"scale", r.scale}};
  int e;
  if (std::frexp(r.scale, &e) == 0.5f) j["scale_log2"] = e - 1;
  j.update(counts_json(r.counts));
  j["exact"] = r.exact;
  j["errors"] = errors_json(r);
  return j;
}

}  // namespace

void print_text(const report_input& in, const std::vector<report_format>& fmts, bool colour) {
  const class_counts all = fmts.front().rows.front().counts;
  for (const auto& t : in.tensors)
    fmt::print("{}  {} {}  {} values\n", printable(t.path), t.dtype, npy_shape_string(t.shape), grouped(t.size));
  const std::uint64_t nzf = all.nonzero_finite();
  if (in.tensors.size() > 1) fmt::print("all inputs: {} values\n", grouped(all.total()));
  fmt::print("{} nonzero finite, {} zero, {} nonfinite{}\n", grouped(nzf), grouped(all[cast_class::zero]),
             grouped(all[cast_class::nonfinite]), in.reference ? " (counted by the reference path)" : "");
  for (const auto& n : in.notes) fmt::print("note: {}\n", printable(n));

  const auto bold = fmt::emphasis::bold;
  for (const auto& f : fmts) {
    fmt::print("\n{}\n", paint(colour, bold, f.conv.describe()));
    fmt::print("  {:<18}{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}{:>9}\n", "scale", "underflow", "subnormal", "normal",
               "overflow", "mean rel", "max rel", "SQNR dB");
    const auto line = [&](const std::string& label, const report_row& r) {
      const auto& c = r.counts;
      const auto n = c.nonzero_finite();
      fmt::print("  {:<18}{:>11}{:>11}{:>11}{:>11}", label, percent(c[cast_class::underflow], n),
                 percent(c[cast_class::subnormal], n), percent(c[cast_class::normal], n),
                 percent(c[cast_class::overflow], n));
      if (r.has_errors)
        fmt::print("{:>11}{:>11}{:>9}\n", scientific(r.errors.mean_rel()), r.errors.n ? scientific(r.errors.max_rel) : "-",
                   decibels(r.errors.sqnr_db()));
      else
        fmt::print("{:>11}{:>11}{:>9}\n", "", "", "");
    };
    for (const auto& r : f.rows) line(scale_label(r.scale), r);
    if (f.gradscaler) line(scale_label(f.gradscaler->scale) + " GradScaler", *f.gradscaler);
    if (f.min_loss) line(scale_label(f.min_loss->scale) + " fewest lost", *f.min_loss);
    if (f.gradscaler)
      fmt::print("  GradScaler: the largest scale without overflow is 2^{}, less {} binade{} of headroom.\n",
                 f.no_overflow_log2, in.headroom, in.headroom == 1 ? "" : "s");
    else if (nzf)
      fmt::print("  GradScaler: every float32 power of two overflows some value.\n");
    if (f.min_loss) {
      const auto [a, b] = f.min_loss_range;
      fmt::print("  fewest lost: the least underflow + overflow, then subnormal{}.\n",
                 a == b ? std::string() : fmt::format("; 2^{}..2^{} tie, the middle taken", a, b));
    }
    if (!nzf) fmt::print("  no nonzero finite values: nothing to recommend.\n");
  }
  if (in.binades.empty() || !in.picture) return;

  // log2|x| picture: a row per binade (or per group of binades), a bar, and each format's region.
  const int lo = in.binades.begin()->first, hi = in.binades.rbegin()->first;
  const int group = (hi - lo + 1 + 47) / 48;
  std::vector<std::pair<int, std::uint64_t>> rows;
  for (int b = hi - (hi - lo) % group; b >= lo - group + 1 && b >= lo - 64; b -= group) {
    std::uint64_t n = 0;
    for (int i = b; i < b + group; ++i)
      if (auto it = in.binades.find(i); it != in.binades.end()) n += it->second;
    rows.emplace_back(b, n);
  }
  std::uint64_t peak = 1;
  for (const auto& [b, n] : rows) peak = std::max(peak, n);
  std::vector<std::array<double, 3>> th;
  for (const auto& f : fmts) th.push_back(view_thresholds(f, in.view));
  fmt::print("\nlog2|x| of the nonzero finite values{}, against each format at scale {}\n",
             group > 1 ? fmt::format(" ({} binades per row)", group) : "", scale_label(in.view));
  fmt::print("  {:<9}{:>12}  {:<32}", "|x| from", "count", "");
  const auto width = [](const report_format& f) { return std::max<std::size_t>(5, std::strlen(f.conv.fmt.name)) + 1; };
  for (const auto& f : fmts) fmt::print("{:>{}}", f.conv.fmt.name, width(f));
  fmt::print("\n");
  static const char* const eighths[] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
  for (const auto& [b, n] : rows) {
    const double w = 32.0 * double(n) / double(peak);
    int full = int(w), part = int((w - full) * 8);
    if (n && !full && !part) part = 1;
    std::string bar;
    for (int i = 0; i < full; ++i) bar += "█";
    bar += eighths[part];
    fmt::print("  {:<9}{:>12}  {}{}", pow2_label(b), grouped(n), bar, std::string(std::size_t(32 - full - (part > 0)), ' '));
    const double x0 = std::ldexp(1.0, b), x1 = std::nextafter(std::ldexp(1.0, b + group), 0.0);
    for (std::size_t i = 0; i < fmts.size(); ++i) {
      const int r0 = region(th[i], x0), r1 = region(th[i], x1);
      static const char* const mark[] = {"0", "s", "·", "X"};
      static const fmt::text_style style[] = {fmt::fg(fmt::terminal_color::bright_black),
                                              fmt::fg(fmt::terminal_color::yellow), fmt::text_style{},
                                              fmt::fg(fmt::terminal_color::red) | fmt::emphasis::bold};
      const std::string s = r0 == r1 ? paint(colour, style[r0], mark[r0]) : paint(colour, fmt::emphasis::bold, "¦");
      fmt::print("{}{}", std::string(width(fmts[i]) - 1, ' '), s);
    }
    fmt::print("\n");
  }
  fmt::print("  key: · normal, s subnormal, 0 vanishes, X overflows, ¦ a boundary inside the row\n");
  for (std::size_t i = 0; i < fmts.size(); ++i) {
    const auto& t = th[i];
    const auto at = [](double v) { return std::isinf(v) ? std::string("never") : fmt::format("{:.4g}", v); };
    fmt::print("  {}: |x| < {} vanishes, < {} is subnormal, >= {} overflows\n", fmts[i].conv.fmt.name, at(t[0]),
               at(t[1]), at(t[2]));
  }
}

void print_json(const report_input& in, const std::vector<report_format>& fmts) {
  json j;
  json inputs = json::array();
  for (const auto& t : in.tensors)
    inputs.push_back({{"path", t.path}, {"dtype", t.dtype}, {"shape", t.shape}, {"total", t.size}});
  j["inputs"] = inputs;
  j["exact"] = in.exact;
  j["notes"] = in.notes;
  j["definition"] =
      "y = fl32(x * scale), q = y cast to the format; zero: x == 0; underflow: x != 0, q == 0; subnormal: q "
      "nonzero subnormal; normal: q normal, no overflow; overflow: q inf/NaN or saturated; nonfinite: x inf/NaN";
  json results = json::array();
  for (std::size_t f = 0; f < fmts.size(); ++f)
    for (std::size_t r = 0; r < fmts[f].rows.size(); ++r) {
      json row = row_json(fmts[f], fmts[f].rows[r]);
      if (in.tensors.size() > 1) {
        json per = json::array();
        for (const auto& t : in.tensors) {
          json c{{"input", t.path}};
          c.update(counts_json(t.rows[f * fmts[f].rows.size() + r]));
          per.push_back(c);
        }
        row["tensors"] = per;
      }
      results.push_back(row);
    }
  j["results"] = results;
  json recs = json::array();
  for (const auto& f : fmts) {
    json r{{"format", f.conv.fmt.name}};
    if (f.gradscaler) {
      r["gradscaler"] = row_json(f, *f.gradscaler);
      r["gradscaler"]["largest_without_overflow_log2"] = f.no_overflow_log2;
      r["gradscaler"]["headroom"] = in.headroom;
    } else {
      r["gradscaler"] = nullptr;
    }
    if (f.min_loss) {
      r["min_loss"] = row_json(f, *f.min_loss);
      r["min_loss"]["tied_log2"] = {f.min_loss_range.first, f.min_loss_range.second};
    } else {
      r["min_loss"] = nullptr;
    }
    recs.push_back(r);
  }
  j["recommendations"] = recs;
  json bins = json::array();
  for (const auto& [b, n] : in.binades) bins.push_back({b, n});
  j["histogram"] = {{"log2_binades", bins}};
  fmt::print("{}\n", json_text(j, 2));
}

void print_csv(const report_input& in, const std::vector<report_format>& fmts) {
  fmt::print("input,format,rounding,on_overflow,profile,scale,total,zero,underflow,subnormal,normal,overflow,nonfinite,"
             "mean_rel_error,max_rel_error,sqnr_db\n");
  const auto num = [](double v) { return std::isnan(v) ? std::string() : std::isinf(v) ? std::string("inf") : fmt::format("{}", v); };
  for (std::size_t f = 0; f < fmts.size(); ++f)
    for (std::size_t r = 0; r < fmts[f].rows.size(); ++r) {
      const auto& row = fmts[f].rows[r];
      const auto emit = [&](const std::string& input, const class_counts& c, bool errors) {
        fmt::print("{},{},{},{},{},{}", csv_field(printable(input)), fmts[f].conv.fmt.name, name(fmts[f].conv.pol.round),
                   name(fmts[f].conv.pol.on_overflow), name(fmts[f].conv.prof), fmt::format("{}", row.scale));
        fmt::print(",{}", c.total());
        for (const auto v : c.n) fmt::print(",{}", v);
        if (errors && row.has_errors)
          fmt::print(",{},{},{}\n", num(row.errors.mean_rel()), row.errors.n ? num(row.errors.max_rel) : "",
                     num(row.errors.sqnr_db()));
        else
          fmt::print(",,,\n");
      };
      if (in.tensors.size() > 1)
        for (const auto& t : in.tensors) emit(t.path, t.rows[f * fmts[f].rows.size() + r], false);
      emit(in.tensors.size() > 1 ? "all" : in.tensors.front().path, row.counts, true);
    }
}

hist_picture picture(const report_input& in, const std::vector<report_format>& fmts) {
  hist_picture p;
  std::uint64_t total = 0;
  for (const auto& t : in.tensors) total += t.size;
  p.title = fmt::format("{}{}: {} values", printable(in.tensors.front().path), in.tensors.size() > 1 ? fmt::format(" and {} more", in.tensors.size() - 1) : "",
                        grouped(total));
  p.binades.assign(in.binades.begin(), in.binades.end());
  const class_counts c = fmts.front().rows.front().counts;
  p.zero = c[cast_class::zero];
  p.nonfinite = c[cast_class::nonfinite];
  for (const auto& f : fmts) {
    const auto t = view_thresholds(f, in.view);
    p.formats.push_back({fmt::format("{} x {}", f.conv.fmt.name, scale_label(in.view)), std::log2(t[0]),
                         std::log2(t[1]), std::log2(t[2])});
  }
  return p;
}

}  // namespace fpscope::cli
