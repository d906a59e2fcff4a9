// fpscope hist: how many values vanish, go subnormal, stay normal or overflow when multiplied by
// a scale and cast to each format; exact counts from the bucket histogram (fpscope/histogram.hpp),
// the scale to use, and where the values sit against each format's thresholds.
#include <algorithm>
#include <atomic>
#include <mutex>
#include <omp.h>
#include <cmath>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <deque>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "cli.hpp"
#include "fpscope/convert.hpp"
#include "fpscope/counting.hpp"
#include "fpscope/contain.hpp"
#include "fpscope/histogram.hpp"
#include "fpscope/input.hpp"
#include "fpscope/npy.hpp"
#include "fpscope/trace.hpp"
#include "hist_view.hpp"
#include "plot.hpp"

namespace fpscope::cli {
namespace {

struct hist_options {
  std::vector<std::string> inputs;
  std::string formats = "fp16,bf16,e4m3,e5m2", scales = "1", input_format, errors = "auto", plot;
  std::string view_scale, steps;
  conversion_request policy;  // --rounding, --profile, --overflow (the formats come from -f)
  int headroom = 1, threads = 0;
  bool json = false, csv = false, reference = false, quiet = false, no_picture = false;
};

// One input: an .npy array, or one named tensor of a trace over the chosen steps.
struct loaded {
  std::optional<npy_reader> npy;
  std::optional<format> codes;  // uint arrays hold codes of this format
  const trace_reader* trace = nullptr;
  std::string name;                                                     // the trace's tensor
  std::vector<std::pair<const trace_step*, const trace_tensor*>> parts;  // one per step
  std::uint64_t size() const {
    if (npy) return npy->size();
    std::uint64_t n = 0;
    for (const auto& p : parts) n += p.second->count;
    return n;
  }
  std::size_t histogram_only() const {
    return std::size_t(std::count_if(parts.begin(), parts.end(), [](const auto& p) { return !p.second->has_values; }));
  }
};

// Calls f(span<const float>) or f(span<const double>) over the values, in chunks, concurrently
// on `threads` threads: an .npy array's (fpscope::for_each_chunk), a trace tensor's storage
// chunks as trace_reader::values_parallel inflates them. f must be thread-safe. A trace
// tensor's histogram-only steps are not values: each_histogram() passes those.
template <class F>
void each_chunk(const loaded& t, F&& f, int threads, progress* bar = nullptr, std::atomic<std::uint64_t>* done = nullptr) {
  const auto advance = [&](std::size_t n) {
    if (bar && done) {
      const std::uint64_t now = *done += n;
      if (omp_get_thread_num() == 0) bar->update(now);
    }
  };
  if (t.trace) {
    for (const auto& [s, tt] : t.parts) {
      if (!tt->has_values) continue;
      const trace_tensor* one[] = {tt};
      t.trace->values_parallel(
          *s, one,
          [&](std::size_t, std::uint64_t, std::span<const float> v) {
            heartbeat();
            f(v);
            advance(v.size());
          },
          threads);
    }
    return;
  }
  for_each_chunk(
      *t.npy, t.codes ? &*t.codes : nullptr, [&](std::span<const float> x) { f(x); },
      [&](std::span<const double> x) { f(x); }, threads, advance);
}

template <class F>
void each_histogram(const loaded& t, F&& f) {
  for (const auto& [s, tt] : t.parts)
    if (!tt->has_values) f(t.trace->histogram(*s, *tt)), heartbeat();
}

// A trace's steps in [first, last] (metadata only), and one input per tensor name, in order of
// first appearance.
struct opened_trace {
  std::unique_ptr<trace_reader> reader;
  std::vector<trace_step> steps;
};
std::vector<loaded> open_trace(opened_trace& ot, const std::string& path, step_range range) {
  ot.reader = std::make_unique<trace_reader>(path);
  heartbeat();
  for (std::size_t i = 0; i < ot.reader->size(); ++i) {
    trace_step s = ot.reader->step(i);
    heartbeat();
    if (range.contains(s.step)) ot.steps.push_back(std::move(s));
  }
  std::vector<loaded> out;
  std::map<std::string, std::size_t> at;
  for (const auto& s : ot.steps)
    for (const auto& t : s.tensors) {
      auto [it, fresh] = at.emplace(t.name, out.size());
      if (fresh) {
        out.emplace_back();
        out.back().trace = ot.reader.get();
        out.back().name = t.name;
      }
      out[it->second].parts.emplace_back(&s, &t);
    }
  if (out.empty())
    throw trace_error(path + ": no tensors" + (ot.reader->size() ? " in the steps chosen by --steps" : " (no complete step)"));
  return out;
}

loaded open_input(const std::string& path, const std::string& input_format) {
  loaded t;
  t.npy.emplace(path);
  const npy_dtype d = t.npy->dtype();
  const bool uint = d == npy_dtype::u1 || d == npy_dtype::u2 || d == npy_dtype::u4;
  if (!input_format.empty()) {
    const format f = parse_format(input_format, "--input-format");
    if (!uint || int(npy_itemsize(d)) != f.storage_bytes())
      throw npy_error(fmt::format("{}: --input-format {} reads uint{} arrays of codes, not {}", path, f.name,
                                  8 * f.storage_bytes(), npy_type_name(d)));
    t.codes = f;
  } else if (uint) {
    throw npy_error(fmt::format("{}: {} holds no values by itself; name the format of its codes with "
                                "--input-format (e.g. --input-format bf16 for uint16)",
                                path, npy_type_name(d)));
  }
  return t;
}

int run(const hist_options& o) {
  if (o.json && o.csv) throw usage_error("--json and --csv exclude each other");
  if (o.errors != "auto" && o.errors != "all" && o.errors != "recommended" && o.errors != "none")
    throw usage_error("--errors: unknown value " + fpscope::quoted(o.errors) + " (known: auto, all, recommended, none)");
  if (!o.plot.empty()) try {
      plot_is_svg(o.plot);  // before the work, not after
    } catch (const std::invalid_argument& e) {
      throw usage_error(e.what());
    }
  const std::vector<float> scales = parse_scales(o.scales);

  // One format per name, each with the profile's policy and the user's overrides.
  std::vector<conversion_options> fmts;
  for (const format& f : parse_formats(o.formats)) {
    conversion_options c;
    c.req = o.policy;
    c.req.format = f.name;
    resolve(c);
    require_deterministic(c, "hist");
    fmts.push_back(c);
  }

  // Specs: per format, the sweep over every float32 normal power of two (for the
  // recommendations), then the rows.
  const std::size_t stride = scale_sweep::size + scales.size();
  std::vector<cast_spec> specs;
  for (const auto& c : fmts) {
    for (const auto& sp : scale_sweep::specs(c.fmt, c.pol)) specs.push_back(sp);
    for (const float s : scales) specs.push_back({c.fmt, c.pol, s});
  }

  std::vector<loaded> tensors;
  std::deque<opened_trace> traces;  // stable: inputs point into them
  std::uint64_t total_values = 0, total_bytes = 0;
  const step_range range = parse_steps(o.steps);
  for (const auto& p : o.inputs) {
    if (sniff_input(p) == input_kind::hdf5) {  // refuses a FIFO or a directory, never blocks
      for (auto& t : open_trace(traces.emplace_back(), p, range)) tensors.push_back(std::move(t));
      continue;
    }
    if (!o.steps.empty()) throw usage_error("--steps: " + p + " is not a trace");
    tensors.push_back(open_input(p, o.input_format));
    total_bytes += tensors.back().npy->data_bytes();
  }
  for (const auto& t : tensors) total_values += t.size();
  // A trace's values count as float32 for the progress bar's size rule (cli.hpp).
  for (const auto& t : tensors)
    if (t.trace) total_bytes += 4 * t.size();
  const bool some_histograms =
      std::any_of(tensors.begin(), tensors.end(), [](const loaded& t) { return t.histogram_only() > 0; });
  if (o.reference && some_histograms)
    throw usage_error("--reference casts every value: the trace has histogram-only tensors (no values to cast)");

  std::vector<char> straddled(specs.size(), 0);  // a boundary inside a recorded bucket
  std::vector<class_counts> totals(specs.size());
  // The sweep's counts only choose the recommendations: they are counted loose (no refine pass
  // for their boundaries, docs/hist.md "Recommendations"), and the few scales whose uncertain
  // values could change the choice are counted again exactly below. (Recorded histograms are
  // inexact anyway: everything counted as before.)
  const bool loose_sweep = !some_histograms && !o.reference;
  std::vector<char> loose(specs.size(), 0);
  if (loose_sweep)
    for (std::size_t f = 0; f < fmts.size(); ++f) std::fill_n(loose.begin() + std::ptrdiff_t(f * stride), scale_sweep::size, 1);
  std::vector<std::uint64_t> uncertain(specs.size(), 0);
  std::vector<std::vector<class_counts>> per_tensor;  // rows only
  std::map<int, std::uint64_t> binades;
  {
    progress bar("counting", total_values, total_bytes, !o.quiet);
    std::atomic<std::uint64_t> done{0};
    for (const auto& t : tensors) {
      // Every chunk counted where it arrives (class_tally), values and recorded histograms alike.
      class_tally tally(o.reference ? std::vector<cast_spec>{} : specs, t.size(), o.reference ? std::vector<char>{} : loose);
      std::vector<class_counts> c(specs.size());
      std::mutex m;
      each_chunk(
          t,
          [&](auto x) {
            tally.add(x);
            if (!o.reference) return;
            const auto r = count_reference(x, specs);
            const std::lock_guard lock(m);
            for (std::size_t i = 0; i < c.size(); ++i) c[i] += r[i];
          },
          o.threads, &bar, &done);
      each_histogram(t, [&](const auto& h) { tally.add_histogram(h); });
      if (!o.reference) {
        c = tally.counts();
        for (std::size_t i = 0; i < specs.size(); ++i)
          straddled[i] = straddled[i] || !tally.exact(i), uncertain[i] += tally.uncertain(i);
      }
      for (const auto& [k, n] : tally.binades()) binades[k] += n;
      for (std::size_t i = 0; i < specs.size(); ++i) totals[i] += c[i];
      auto& rows = per_tensor.emplace_back();
      for (std::size_t f = 0; f < fmts.size(); ++f)
        for (std::size_t j = 0; j < scales.size(); ++j) rows.push_back(c[f * stride + scale_sweep::size + j]);
    }
  }

  // The sweep's scales the recommendations could turn on, counted exactly in one more pass.
  if (loose_sweep) {
    std::vector<std::size_t> again;
    for (std::size_t f = 0; f < fmts.size(); ++f) {
      const scale_sweep sweep(std::span<const class_counts>(totals).subspan(f * stride, scale_sweep::size));
      for (const int k : recommend_unsure(sweep, std::span<const std::uint64_t>(uncertain).subspan(f * stride, scale_sweep::size),
                                          o.headroom))
        again.push_back(f * stride + std::size_t(k - scale_sweep::kmin));
    }
    if (!again.empty()) {
      std::vector<cast_spec> sub;
      for (const std::size_t i : again) sub.push_back(specs[i]), totals[i] = {}, straddled[i] = 0;
      progress bar("recounting", total_values, total_bytes, !o.quiet);
      std::atomic<std::uint64_t> done{0};
      for (const auto& t : tensors) {
        class_tally tally(sub, t.size());
        each_chunk(t, [&](auto x) { tally.add(x); }, o.threads, &bar, &done);
        const auto c = tally.counts();
        for (std::size_t j = 0; j < again.size(); ++j)
          totals[again[j]] += c[j], straddled[again[j]] = straddled[again[j]] || !tally.exact(j);
      }
    }
  }

  // Recommendations, from the sweep over every power of two.
  std::vector<report_format> report;
  for (std::size_t f = 0; f < fmts.size(); ++f) {
    report_format r;
    r.conv = fmts[f];
    for (std::size_t j = 0; j < scales.size(); ++j)
      r.rows.push_back({scales[j], totals[f * stride + scale_sweep::size + j], {}, false});
    const scale_sweep sweep(std::span<const class_counts>(totals).subspan(f * stride, scale_sweep::size));
    const recommendations rec = recommend(sweep, o.headroom);
    if (rec.gradscaler) {
      r.gradscaler = report_row{std::ldexp(1.0f, rec.gradscaler->log2_scale), rec.gradscaler->counts, {}, false};
      r.no_overflow_log2 = rec.no_overflow_log2;
    }
    if (rec.fewest_lost) {
      r.min_loss = report_row{std::ldexp(1.0f, rec.fewest_lost->log2_scale), rec.fewest_lost->counts, {}, false};
      r.min_loss_range = rec.fewest_lost_range;
    }
    report.push_back(std::move(r));
  }

  // Error statistics of the rows that need them, every one in the same pass over the values
  // (fpscope::error_tally); a row that is also a recommendation is measured once.
  // Histogram-only steps of a trace have no values to measure errors on: none then, rather
  // than statistics of part of the input.
  const bool rows_errors = !some_histograms && (o.errors == "all" || (o.errors == "auto" && scales.size() <= 4));
  const bool rec_errors = !some_histograms && o.errors != "none";
  std::vector<cast_spec> measured;
  std::vector<std::vector<report_row*>> measured_rows;  // per spec of `measured`
  std::map<std::pair<std::size_t, float>, std::size_t> measured_at;
  for (std::size_t f = 0; f < report.size(); ++f) {
    auto& r = report[f];
    std::vector<report_row*> want;
    if (rows_errors)
      for (auto& row : r.rows) want.push_back(&row);
    if (rec_errors) {
      if (r.gradscaler) want.push_back(&*r.gradscaler);
      if (r.min_loss) want.push_back(&*r.min_loss);
    }
    for (auto* row : want) {
      const auto [it, fresh] = measured_at.emplace(std::pair{f, row->scale}, measured.size());
      if (fresh) measured.push_back({r.conv.fmt, r.conv.pol, row->scale}), measured_rows.emplace_back();
      measured_rows[it->second].push_back(row);
    }
  }
  if (!measured.empty()) {
    error_tally errors(measured);
    progress bar("errors", total_values, total_bytes, !o.quiet);
    std::atomic<std::uint64_t> done{0};
    for (const auto& t : tensors) each_chunk(t, [&](auto x) { errors.add(x); }, o.threads, &bar, &done);
    const auto stats = errors.stats();
    for (std::size_t k = 0; k < measured.size(); ++k)
      for (auto* row : measured_rows[k]) row->errors = stats[k], row->has_errors = true;
  }

  // The picture's scale: --view-scale, else the first row's.
  const float view = o.view_scale.empty() ? scales.front() : parse_scales(o.view_scale, "--view-scale").front();
  report_input in;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    if (t.trace) {
      const trace_tensor& first = *t.parts.front().second;
      const std::size_t h = t.histogram_only();
      in.tensors.push_back({t.trace->path() + ":" + t.name,
                            fmt::format("{} x {} steps{}", name(first.dtype), t.parts.size(),
                                        h ? fmt::format(" ({} histogram-only)", h) : ""),
                            first.shape, t.size(), std::move(per_tensor[i])});
      continue;
    }
    const auto& r = *t.npy;
    in.tensors.push_back({r.path(), std::string(npy_type_name(r.dtype())) +
                                        (t.codes ? std::string(" codes of ") + t.codes->name : ""),
                          r.shape(), r.size(), std::move(per_tensor[i])});
  }
  // A printed row (a requested scale or a recommendation) is exact unless its own boundaries
  // straddled a recorded bucket. (The sweep that chooses the recommendations straddles some at
  // extreme scales, where x * S leaves the float32 normals; docs/hist.md.)
  for (std::size_t f = 0; f < fmts.size(); ++f) {
    for (std::size_t j = 0; j < scales.size(); ++j) report[f].rows[j].exact = !straddled[f * stride + scale_sweep::size + j];
    for (auto* r : {&report[f].gradscaler, &report[f].min_loss})
      if (*r) (*r)->exact = !straddled[f * stride + std::size_t(std::ilogb((*r)->scale) - scale_sweep::kmin)];
    for (const auto& r : report[f].rows) in.exact = in.exact && r.exact;
    for (const auto& r : {report[f].gradscaler, report[f].min_loss}) in.exact = in.exact && (!r || r->exact);
  }
  const bool exact = in.exact;
  if (some_histograms)
    in.notes.push_back("some trace steps hold histograms only (no values): no error statistics");
  if (!exact)
    in.notes.push_back("not exact: a class boundary fell inside a recorded histogram bucket (a scale that is not a "
                       "power of two, or float32 subnormals); that bucket's values are counted above the boundary "
                       "(\"exact\" per row in --json)");
  in.binades = std::move(binades);
  in.headroom = o.headroom;
  in.view = view;
  in.reference = o.reference;
  in.picture = !o.no_picture;

  if (!o.plot.empty()) write_plot(o.plot, picture(in, report), o.inputs);
  if (o.json)
    print_json(in, report);
  else if (o.csv)
    print_csv(in, report);
  else
    print_text(in, report, use_colour(stdout));
  return 0;
}

runner setup(CLI::App& app) {
  auto o = std::make_shared<hist_options>();
  auto* sub = app.add_subcommand("hist", "how many values vanish / go subnormal / overflow per format and scale");
  sub->add_option("INPUT", o->inputs,
                  ".npy files (float16/32/64, or uint codes with --input-format) and fpscope traces\n"
                  "(.h5, docs/trace.md: one input per tensor name, summed over the steps)")
      ->required()
      ->check(CLI::ExistingFile);
  sub->add_option("-f,--formats", o->formats, "comma-separated formats [default: fp16,bf16,e4m3,e5m2]")
      ->check(parsed_by([](const std::string& v) { parse_formats(v); }, "--formats", "F,F,..."));
  sub->add_option("-s,--scales", o->scales,
                  "scales S (x is multiplied by S, in float32, before the cast): 2^K, numbers,\n"
                  "ranges 2^A:2^B[:STEP] (every (STEP-th) power of two between),\n"
                  "comma-separated [default: 1]")
      ->check(parsed_by([](const std::string& v) { parse_scales(v); }, "--scales", "S,..."));
  add_policy_options(*sub, o->policy, "ieee");
  sub->add_option("--steps", o->steps, "traces: only training steps A:B (inclusive; A: or :B open; A alone)")
      ->check(parsed_by([](const std::string& v) { parse_steps(v); }, "--steps", "A:B"));
  sub->add_option("--input-format", o->input_format, "the format of uint arrays' codes (bf16 for uint16, e4m3 for uint8, ...)")
      ->check(parsed_by([](const std::string& v) { parse_format(v, "--input-format"); }, "--input-format", "FORMAT"));
  sub->add_option("--headroom", o->headroom, "binades below the largest scale without overflow (the GradScaler\n"
                                             "recommendation) [default: 1]")
      ->check(CLI::Range(0, 64));
  sub->add_option("--errors", o->errors,
                  "error statistics: auto (every row when at most 4 scales, else the\n"
                  "recommendations), all, recommended, none [default: auto]");
  sub->add_option("--view-scale", o->view_scale, "scale of the terminal picture and --plot [default: the first scale]")
      ->check(parsed_by([](const std::string& v) { parse_scales(v, "--view-scale"); }, "--view-scale", "S"));
  sub->add_option("--plot", o->plot, "also draw the histogram and the formats' regions to FILE.svg or FILE.png");
  sub->add_flag("--no-picture", o->no_picture, "leave the log2|x| picture out of the text output");
  sub->add_flag("--json", o->json, "print JSON (counts are exact integers)");
  sub->add_flag("--csv", o->csv, "print CSV: one line per input (and 'all') x format x scale");
  sub->add_flag("--reference", o->reference, "count by casting every value (slow; the same counts, as a cross-check)");
  add_threads_option(*sub, o->threads);
  sub->add_flag("-q,--quiet", o->quiet, "no progress bar");
  sub->footer(
      "Each finite x: y = fl32(x * S), q = y cast to the format. Classes: zero (x == 0), underflow\n"
      "(q == 0), subnormal, normal, overflow (inf, NaN, or saturated), nonfinite (x inf or NaN).\n"
      "Percentages are of the nonzero finite values. Counts are exact: a bucket histogram whose edges\n"
      "hold every class boundary, refined by a second pass where a boundary falls inside a bucket.\n"
      "\n"
      "Examples:\n"
      "  fpscope hist grads.npy                         fp16, bf16, e4m3, e5m2 at scale 1, and the scales to use\n"
      "  fpscope hist grads.npy -f fp16 -s 2^0:2^24     a GradScaler-style sweep\n"
      "  fpscope hist a.npy b.npy -f e4m3 -p cuda -s 2^-4,1,16 --json\n"
      "  fpscope hist w_bf16.npy --input-format bf16 --plot w.svg\n"
      "  fpscope hist datasets/traces/lm-char.h5 -f fp16 --steps 100:   every tensor of a trace\n"
      "\n"
      "A trace's histogram-only steps count exactly at power-of-two scales wherever x and x * S are\n"
      "float32 normals; elsewhere a boundary inside a recorded bucket counts the bucket above it (the\n"
      "output says \"not exact\"), and they have no values for error statistics.\n"
      "\n"
      "Exit status: 0 success; 1 a bad input file (one line on stderr; a trace that crashes or hangs\n"
      "libhdf5 too, see fpscope replay --help); 2 usage error.");
  return [o] {
    // Traces are read in a worker process that a libhdf5 crash or hang cannot take down.
    const auto trace = std::find_if(o->inputs.begin(), o->inputs.end(),
                                    [](const std::string& p) { return sniff_input(p) == input_kind::hdf5; });
    if (trace == o->inputs.end()) return run(*o);
    return contained(*trace, [&] { return run(*o); });
  };
}

const registrar reg{"hist", 60, &setup};

}  // namespace
}  // namespace fpscope::cli
