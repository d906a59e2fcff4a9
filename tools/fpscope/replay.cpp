// fpscope replay: steps a recorded gradient trace (docs/trace.md) through a loss scaler or an FP8
// scaling recipe (fpscope/scaler.hpp) and reports, per step and tensor, the scale, overflow,
// skipped steps and the exact underflow/subnormal/overflow counts (fpscope/histogram.hpp).
// Streams: one step's metadata at a time, and its values a bounded group of storage chunks at a
// time (trace_reader::values_parallel).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <fmt/format.h>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <sys/stat.h>

#include "cli.hpp"
#include "fpscope/convert.hpp"
#include "fpscope/histogram.hpp"
#include "fpscope/scaler.hpp"
#include "fpscope/trace.hpp"
#include "plot.hpp"

namespace fpscope::cli {
namespace {

using json = nlohmann::ordered_json;

struct replay_options {
  std::string trace, policy = "torch", format, profile, rounding, overflow, steps, plot;
  int top = 5, threads = 0;
  bool json = false, csv = false, quiet = false;
};

enum class family { loss, te_delayed, te_current, mx, block };

// "name:k=v,k=v,flag" -> name and options.
struct policy_spec {
  std::string name;
  std::map<std::string, std::string> opt;
  std::string text;
};

policy_spec parse_policy(const std::string& s) {
  policy_spec p{s.substr(0, s.find(':')), {}, s};
  if (const auto colon = s.find(':'); colon != std::string::npos) {
    const std::string rest = s.substr(colon + 1);
    for (std::size_t at = 0; at <= rest.size();) {
      const std::size_t comma = std::min(rest.find(',', at), rest.size());
      const std::string item = rest.substr(at, comma - at);
      const auto eq = item.find('=');
      if (!item.empty()) p.opt[item.substr(0, eq)] = eq == std::string::npos ? "" : item.substr(eq + 1);
      at = comma + 1;
    }
  }
  return p;
}

int as_int(const policy_spec& p, const std::string& key, int def, int lo, int hi) {
  const auto it = p.opt.find(key);
  if (it == p.opt.end()) return def;
  try {
    std::size_t used = 0;
    const int v = std::stoi(it->second, &used);
    if (used == it->second.size() && v >= lo && v <= hi) return v;
  } catch (const std::exception&) {
  }
  throw usage_error(fmt::format("--policy {}: {}={} is not an integer in [{}, {}]", p.name, key, it->second, lo, hi));
}

void only(const policy_spec& p, std::initializer_list<const char*> keys) {
  for (const auto& kv : p.opt) {
    const std::string& k = kv.first;  // a plain name: clang 14 cannot capture structured bindings
    if (std::none_of(keys.begin(), keys.end(), [&](const char* a) { return k == a; }))
      throw usage_error("--policy " + p.name + ": unknown option '" + k + "'");
  }
}

struct tensor_result {
  std::string name;
  double scale = 1;
  class_counts counts;
  bool exact = true;
  bool overflow() const { return counts[cast_class::overflow] + counts[cast_class::nonfinite] > 0; }
};

struct step_result {
  std::int64_t step = 0;
  double scale = 1;  // the loss scale, or the geometric mean of per-tensor scales
  bool skipped = false;
  bool histogram_only = false;  ///< mx/block: some tensors had no raw values and were left out
  std::vector<tensor_result> tensors;
  class_counts total;
};

// The class of x from a cast's thresholds (fpscope/histogram.hpp's definition).
cast_class class_of(const cast_thresholds<std::uint32_t>& t, float x) {
  std::uint32_t b;
  std::memcpy(&b, &x, 4);
  const std::uint32_t m = b & 0x7FFFFFFFu;
  if (m >= 0x7F800000u) return cast_class::nonfinite;
  if (m == 0) return cast_class::zero;
  const auto& a = t.at[b >> 31];
  return cast_class(1 + (m >= a[0]) + (m >= a[1]) + (m >= a[2]));
}

class replayer {
 public:
  replayer(const replay_options& o) : o_(o), spec_(parse_policy(o.policy)) {
    const std::string& n = spec_.name;
    if (n == "static" || n == "torch" || n == "deepspeed" || n == "megatron") {
      fam_ = family::loss;
      try {
        loss_ = make_loss_scaler(o.policy);
      } catch (const std::invalid_argument& e) {
        throw usage_error(std::string("--policy: ") + e.what());
      }
    } else if (n == "te-delayed") {
      fam_ = family::te_delayed;
      only(spec_, {"history", "algo", "margin"});
      te_.amax_history_len = as_int(spec_, "history", te_.amax_history_len, 1, 1 << 20);
      te_.margin = as_int(spec_, "margin", te_.margin, -64, 64);
      if (auto it = spec_.opt.find("algo"); it != spec_.opt.end()) {
        if (it->second == "max") te_.amax_compute = te_delayed_options::algo::max;
        else if (it->second == "most_recent") te_.amax_compute = te_delayed_options::algo::most_recent;
        else throw usage_error("--policy te-delayed: algo is max or most_recent, not '" + it->second + "'");
      }
    } else if (n == "te-current") {
      fam_ = family::te_current;
      only(spec_, {"pow2"});
      pow2_ = spec_.opt.count("pow2") > 0;
    } else if (n == "mx") {
      fam_ = family::mx;
      only(spec_, {"rounding"});
      const std::string r = spec_.opt.count("rounding") ? spec_.opt.at("rounding") : "floor";
      if (r == "floor") mx_round_ = mx_rounding::floor;
      else if (r == "ceil") mx_round_ = mx_rounding::ceil;
      else if (r == "rceil") mx_round_ = mx_rounding::rceil;
      else if (r == "even") mx_round_ = mx_rounding::even;
      else throw usage_error("--policy mx: rounding is floor, ceil, rceil or even, not '" + r + "'");
    } else if (n == "block") {
      fam_ = family::block;
      only(spec_, {"tile", "pow2"});
      const std::string tile = spec_.opt.count("tile") ? spec_.opt.at("tile") : "1x128";
      if (tile != "1x128" && tile != "128x128") throw usage_error("--policy block: tile is 1x128 or 128x128, not '" + tile + "'");
      square_ = tile == "128x128";
      pow2_ = spec_.opt.count("pow2") > 0;
    } else {
      throw usage_error("--policy: unknown policy '" + n +
                        "' (known: static:S, torch, deepspeed, megatron, te-delayed, te-current, mx, block)");
    }
    conv_.to = !o.format.empty() ? o.format : fam_ == family::loss ? "fp16" : fam_ == family::te_delayed || fam_ == family::te_current ? "e5m2" : "e4m3";
    conv_.profile = !o.profile.empty() ? o.profile : fam_ == family::loss ? "ieee" : "cuda";
    conv_.rounding = o.rounding;
    conv_.overflow = o.overflow;
    resolve(conv_);
    if (!conv_.fmt.is_signed()) throw usage_error(std::string(conv_.fmt.name) + " is an unsigned scale format");
    if (conv_.pol.round == rounding::sr) throw usage_error("--rounding sr gives no fixed counts: use a deterministic rounding");
    fmax_ = decode(conv_.fmt.max_finite_bits(), conv_.fmt);
  }

  std::string describe() const {
    switch (fam_) {
      case family::loss: return loss_->describe();
      case family::te_delayed:
        return fmt::format("te-delayed (amax_history_len {}, amax_compute_algo {}, margin {})", te_.amax_history_len,
                           te_.amax_compute == te_delayed_options::algo::max ? "max" : "most_recent", te_.margin);
      case family::te_current: return fmt::format("te-current (per-tensor current scaling{})", pow2_ ? ", power-of-two scales" : "");
      case family::mx: return fmt::format("mx (32-element blocks, E8M0 scale, rounding {})", spec_.opt.count("rounding") ? spec_.opt.at("rounding") : "floor");
      case family::block: return fmt::format("block ({} tiles{})", square_ ? "128x128" : "1x128", pow2_ ? ", power-of-two scales" : "");
    }
    return "";
  }
  const conversion_options& conv() const { return conv_; }
  bool is_loss() const { return fam_ == family::loss; }

  // One step. Returns false when the run would have stopped (a scaler error), with `stop` set.
  step_result run(const trace_reader& r, const trace_step& s, std::string& stop) {
    step_result out;
    out.step = s.step;
    double log_sum = 0;
    int scaled = 0;
    const double loss_scale = fam_ == family::loss ? loss_->scale() : 0;
    // The scales first (they follow from earlier steps and the recorded amax); then the raw
    // values of all the step's tensors at once, their storage chunks inflated and counted on
    // every thread (counted()).
    std::vector<const trace_tensor*> raw;
    std::vector<std::size_t> raw_at;
    for (const auto& t : s.tensors) {
      tensor_result tr;
      tr.name = t.name;
      if (fam_ == family::mx || fam_ == family::block) {
        if (!t.has_values) {  // block scales need the values' order: a histogram cannot tell
          out.histogram_only = true;
          continue;
        }
        blocked(r, s, t, tr);
      } else {
        double scale = loss_scale;
        if (fam_ == family::te_delayed) {
          auto it = te_state_.find(t.name);
          if (it == te_state_.end()) it = te_state_.emplace(t.name, te_delayed(te_, fmax_)).first;
          scale = it->second.scale();
        } else if (fam_ == family::te_current) {
          scale = te_current_scale(t.amax, fmax_, pow2_);
        }
        tr.scale = scale;
        if (t.has_values) {
          raw.push_back(&t), raw_at.push_back(out.tensors.size());
        } else {
          class_counter cc({cast_spec{conv_.fmt, conv_.pol, float_scale(scale)}}, t.count, 1);
          cc.add_histogram(r.histogram(s, t));
          heartbeat();
          tr.exact = cc.exact();
          tr.counts = cc.counts().front();
        }
      }
      out.tensors.push_back(std::move(tr));
    }
    counted(r, s, raw, raw_at, out.tensors);
    for (const auto& tr : out.tensors) {
      if (tr.scale > 0 && std::isfinite(tr.scale)) log_sum += std::log2(tr.scale), ++scaled;
      out.total += tr.counts;
    }
    out.scale = fam_ == family::loss ? loss_scale : scaled ? std::exp2(log_sum / scaled) : 1;
    const bool overflow = std::any_of(out.tensors.begin(), out.tensors.end(), [](const auto& t) { return t.overflow(); });
    if (fam_ == family::loss) {
      try {
        out.skipped = loss_->update(overflow);
      } catch (const scaler_error& e) {
        out.skipped = true;
        stop = e.what();
      }
    } else if (fam_ == family::te_delayed) {
      for (const auto& t : s.tensors) te_state_.at(t.name).update(t.amax);
    }
    return out;
  }

 private:
  // A float32 scale (what a kernel multiplies by); a double beyond float32 is clamped to its range.
  static float float_scale(double s) {
    const float f = static_cast<float>(std::clamp(s, double(std::numeric_limits<float>::denorm_min()),
                                                  double(std::numeric_limits<float>::max())));
    return f;
  }

  // Counts the raw values of tensors[i] into results[at[i]] (whose scale is set). Each storage
  // chunk is counted on its own, on whichever thread inflated it, and the counts are summed.
  void counted(const trace_reader& r, const trace_step& s, const std::vector<const trace_tensor*>& tensors,
               const std::vector<std::size_t>& at, std::vector<tensor_result>& results) {
    // One counter per tensor holds the cast's thresholds; each chunk copies it (cheap: a table
    // of counts) rather than deriving them again.
    std::vector<class_counter> proto;
    proto.reserve(tensors.size());
    for (std::size_t i = 0; i < tensors.size(); ++i)
      proto.emplace_back(std::vector{cast_spec{conv_.fmt, conv_.pol, float_scale(results[at[i]].scale)}},
                         ~std::uint64_t{0}, 1);
    std::mutex m;
    // heartbeat(): each chunk of values (contained()'s watchdog).
    r.values_parallel(
        s, tensors,
        [&](std::size_t i, std::uint64_t, std::span<const float> v) {
          heartbeat();
          class_counter cc = proto[i];
          cc.reset(v.size());
          cc.add(v);
          if (cc.needs_refine()) cc.refine(v);
          const class_counts c = cc.counts().front();
          const std::lock_guard lock(m);
          results[at[i]].counts += c;
        },
        o_.threads);
  }

  // MX (32-element blocks of the flattened tensor) and 1x128 / 128x128 tiles: a scale per block.
  void blocked(const trace_reader& r, const trace_step& s, const trace_tensor& t, tensor_result& tr) {
    // The whole tensor (a block's scale needs its values together); its chunks inflate in parallel.
    std::vector<float> v(t.count);
    const trace_tensor* one[] = {&t};
    r.values_parallel(
        s, one,
        [&](std::size_t, std::uint64_t at, std::span<const float> c) {
          heartbeat();
          std::copy(c.begin(), c.end(), v.begin() + std::ptrdiff_t(at));
        },
        o_.threads);
    const std::size_t cols = t.shape.empty() ? 1 : std::size_t(t.shape.back());
    const std::size_t rows = cols ? v.size() / std::max<std::size_t>(cols, 1) : 0;
    double log_sum = 0;
    std::size_t blocks = 0;
    const auto count_block = [&](double scale, auto&& each) {
      const cast_thresholds<std::uint32_t>& th = thresholds_for(float_scale(scale));
      each([&](float x) { ++tr.counts[class_of(th, x)]; });
      log_sum += std::log2(float_scale(scale));
      ++blocks;
    };
    if (fam_ == family::mx) {
      const int emax = conv_.fmt.emax();
      for (std::size_t lo = 0; lo < v.size(); lo += 32) {
        const std::size_t hi = std::min(v.size(), lo + 32);
        float amax = 0;
        bool nonfinite = false;
        for (std::size_t i = lo; i < hi; ++i) {
          nonfinite |= !std::isfinite(v[i]);
          if (std::isfinite(v[i])) amax = std::max(amax, std::fabs(v[i]));
        }
        const int e = nonfinite ? mx_scale_nan : mx_scale_exponent(amax, emax, fmax_, mx_round_);
        if (e == mx_scale_nan) {  // the block's E8M0 scale is NaN: every element of the block is lost
          for (std::size_t i = lo; i < hi; ++i)
            ++tr.counts[!std::isfinite(v[i]) ? cast_class::nonfinite : v[i] == 0 ? cast_class::zero : cast_class::overflow];
          continue;
        }
        count_block(std::ldexp(1.0, -e), [&](auto&& f) {
          for (std::size_t i = lo; i < hi; ++i) f(v[i]);
        });
      }
    } else {
      const std::size_t th = square_ ? 128 : 1;
      for (std::size_t r0 = 0; r0 < rows; r0 += th)
        for (std::size_t c0 = 0; c0 < cols; c0 += 128) {
          const std::size_t r1 = std::min(rows, r0 + th), c1 = std::min(cols, c0 + 128);
          double amax = 0;
          for (std::size_t i = r0; i < r1; ++i)
            for (std::size_t j = c0; j < c1; ++j)
              if (std::isfinite(v[i * cols + j])) amax = std::max(amax, double(std::fabs(v[i * cols + j])));
          count_block(block_scale(amax, fmax_, pow2_), [&](auto&& f) {
            for (std::size_t i = r0; i < r1; ++i)
              for (std::size_t j = c0; j < c1; ++j) f(v[i * cols + j]);
          });
        }
    }
    tr.scale = blocks ? std::exp2(log_sum / double(blocks)) : 1;
  }

  const cast_thresholds<std::uint32_t>& thresholds_for(float scale) {
    auto it = thresholds_.find(scale);
    if (it == thresholds_.end()) it = thresholds_.emplace(scale, thresholds32({conv_.fmt, conv_.pol, scale})).first;
    return it->second;
  }

  const replay_options& o_;
  policy_spec spec_;
  family fam_ = family::loss;
  conversion_options conv_;
  double fmax_ = 0;
  std::unique_ptr<loss_scaler> loss_;
  te_delayed_options te_;
  std::map<std::string, te_delayed> te_state_;
  bool pow2_ = false, square_ = false;
  mx_rounding mx_round_ = mx_rounding::floor;
  std::map<float, cast_thresholds<std::uint32_t>> thresholds_;
};

std::string pct(std::uint64_t n, std::uint64_t of) {
  if (!of) return "-";
  if (!n) return "0";
  const double p = 100.0 * double(n) / double(of);
  return p >= 1 ? fmt::format("{:.2f}%", p) : fmt::format("{:.2g}%", p);
}

std::string scale_text(double s) {
  int e;
  if (s > 0 && std::isfinite(s) && std::frexp(s, &e) == 0.5) return fmt::format("2^{}", e - 1);
  return fmt::format("{:.4g}", s);
}

json counts_json(const class_counts& c) {
  json j;
  for (int i = 0; i < cast_class_count; ++i) j[std::string(name(cast_class(i)))] = c.n[i];
  const auto nzf = c.nonzero_finite();
  json all, nz;
  for (const auto k : {cast_class::underflow, cast_class::subnormal, cast_class::overflow}) {
    all[std::string(name(k))] = c.total() ? json(double(c[k]) / double(c.total())) : json(nullptr);
    nz[std::string(name(k))] = nzf ? json(double(c[k]) / double(nzf)) : json(nullptr);
  }
  j["fraction_of_all"] = all;
  j["fraction_of_nonzero_finite"] = nz;
  return j;
}

int run(const replay_options& o) {
  if (o.json && o.csv) throw usage_error("--json and --csv exclude each other");
  if (!o.plot.empty()) try {
      plot_is_svg(o.plot);
    } catch (const std::invalid_argument& e) {
      throw usage_error(e.what());
    }
  const auto [first, last] = parse_steps(o.steps);
  replayer rp(o);
  const trace_reader r(o.trace);
  heartbeat();
  struct stat st {};
  ::stat(o.trace.c_str(), &st);
  progress bar("replaying", r.size(), std::uint64_t(st.st_size), !o.quiet);

  std::vector<step_result> steps;
  std::string stop;
  std::int64_t stop_step = 0;
  std::map<std::string, std::uint64_t> skip_cause;  // tensor -> skipped steps it overflowed in
  std::map<std::string, std::pair<double, int>> underflow;  // tensor -> (sum of fractions, steps)
  class_counts grand;
  bool exact = true;
  std::size_t partial = 0;  // steps with tensors left out for want of raw values (mx, block)
  for (std::size_t i = 0; i < r.size() && stop.empty(); ++i) {
    bar.update(i);
    const trace_step s = r.step(i);
    heartbeat();
    if (s.step < first || s.step > last) continue;
    step_result res = rp.run(r, s, stop);
    if (res.histogram_only) ++partial;
    if (res.histogram_only && res.tensors.empty()) continue;
    if (!stop.empty()) stop_step = s.step;
    for (const auto& t : res.tensors) {
      if (res.skipped && t.overflow()) ++skip_cause[t.name];
      const auto nzf = t.counts.nonzero_finite();
      auto& u = underflow[t.name];
      if (nzf) u.first += double(t.counts[cast_class::underflow]) / double(nzf), ++u.second;
      exact = exact && t.exact;
    }
    grand += res.total;
    if (!o.json && !o.csv) res.tensors.clear();  // the text report needs only the totals
    steps.push_back(std::move(res));
  }
  bar.update(r.size());
  heartbeat_done();  // the trace is read: what follows (plot, output to a pipe) has no stall limit
  if (steps.empty() && partial)
    throw trace_error(o.trace + ": " + rp.describe() + " needs raw values, and none of the " + std::to_string(partial) +
                      " steps has them (histogram-only trace)");

  std::vector<std::pair<double, std::string>> worst;
  for (const auto& [n, u] : underflow)
    if (u.second) worst.emplace_back(u.first / u.second, n);
  std::sort(worst.begin(), worst.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  if (worst.size() > std::size_t(o.top)) worst.resize(std::size_t(o.top));
  std::vector<std::int64_t> skipped;
  double smin = INFINITY, smax = 0;
  int changes = 0;
  for (std::size_t i = 0; i < steps.size(); ++i) {
    if (steps[i].skipped) skipped.push_back(steps[i].step);
    smin = std::min(smin, steps[i].scale);
    smax = std::max(smax, steps[i].scale);
    changes += i && steps[i].scale != steps[i - 1].scale;
  }

  if (!o.plot.empty()) {
    replay_picture p;
    p.title = fmt::format("{}: {} on {}", o.trace, rp.describe(), rp.conv().fmt.name);
    for (const auto& s : steps) {
      const auto nzf = s.total.nonzero_finite();
      p.steps.push_back(s.step);
      p.scale.push_back(s.scale);
      p.underflow.push_back(nzf ? double(s.total[cast_class::underflow]) / double(nzf) : 0);
      p.overflow.push_back(nzf ? double(s.total[cast_class::overflow]) / double(nzf) : 0);
      p.skipped.push_back(s.skipped);
    }
    write_replay_plot(o.plot, p);
  }

  if (o.json) {
    json j;
    j["trace"] = o.trace;
    j["model"] = r.model();
    j["policy"] = rp.describe();
    j["format"] = rp.conv().describe();
    json arr = json::array();
    for (const auto& s : steps) {
      json js{{"step", s.step}, {"scale", s.scale}, {"skipped", s.skipped}};
      js.update(counts_json(s.total));
      json ts = json::array();
      for (const auto& t : s.tensors) {
        json jt{{"name", t.name}, {"scale", t.scale}, {"overflow", t.overflow()}, {"exact", t.exact}};
        jt.update(counts_json(t.counts));
        ts.push_back(jt);
      }
      js["tensors"] = ts;
      arr.push_back(js);
    }
    j["steps"] = arr;
    json causes = json::object();
    for (const auto& [n, c] : skip_cause) causes[n] = c;
    json w = json::array();
    for (const auto& [f, n] : worst) w.push_back({{"name", n}, {"mean_underflow_fraction_of_nonzero", f}});
    j["summary"] = {{"steps", steps.size()},
                    {"skipped", skipped},
                    {"stopped", stop.empty() ? json(nullptr) : json{{"step", stop_step}, {"reason", stop}}},
                    {"scale_min", steps.empty() ? json(nullptr) : json(smin)},
                    {"scale_max", steps.empty() ? json(nullptr) : json(smax)},
                    {"scale_final", steps.empty() ? json(nullptr) : json(steps.back().scale)},
                    {"scale_changes", changes},
                    {"skip_causes", causes},
                    {"worst_underflow", w},
                    {"exact", exact},
                    {"steps_with_tensors_left_out", partial},
                    {"incomplete_steps", r.incomplete()}};
    j["summary"].update(counts_json(grand));
    fmt::print("{}\n", j.dump(2));
    return 0;
  }
  if (o.csv) {
    fmt::print("step,tensor,scale,skipped,total,zero,underflow,subnormal,normal,overflow,nonfinite,exact\n");
    for (const auto& s : steps)
      for (const auto& t : s.tensors) {
        fmt::print("{},\"{}\",{},{},{}", s.step, t.name, t.scale, s.skipped ? 1 : 0, t.counts.total());
        for (const auto n : t.counts.n) fmt::print(",{}", n);
        fmt::print(",{}\n", t.exact ? 1 : 0);
      }
    return 0;
  }

  fmt::print("{}: {}\n", o.trace, r.model());
  fmt::print("policy {}, cast to {}\n", rp.describe(), rp.conv().describe());
  for (const auto& m : r.incomplete()) fmt::print("note: an incomplete last step was skipped ({})\n", m);
  fmt::print("\n  {:>8}  {:>10}  {:>8}  {:>10}  {:>10}  {:>10}\n", "step", "scale", "skipped", "underflow", "subnormal", "overflow");
  // Every step when few, else the steps where something happened (a skip or a scale change).
  std::size_t shown = 0;
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const auto& s = steps[i];
    const bool event = s.skipped || i == 0 || i + 1 == steps.size() || s.scale != steps[i - 1].scale;
    if (steps.size() > 40 && !event) continue;
    if (++shown > 60) {
      fmt::print("  ... (more steps: --json or --csv for all)\n");
      break;
    }
    const auto n = s.total.nonzero_finite();
    fmt::print("  {:>8}  {:>10}  {:>8}  {:>10}  {:>10}  {:>10}\n", s.step, scale_text(s.scale), s.skipped ? "SKIPPED" : "",
               pct(s.total[cast_class::underflow], n), pct(s.total[cast_class::subnormal], n),
               pct(s.total[cast_class::overflow], n));
  }
  const auto n = grand.nonzero_finite();
  fmt::print("\n{} steps replayed", steps.size());
  if (rp.is_loss()) fmt::print(", {} skipped", skipped.size());
  if (!steps.empty())
    fmt::print("; scale {} .. {}, final {}, {} changes", scale_text(smin), scale_text(smax), scale_text(steps.back().scale), changes);
  fmt::print("\nover all steps: underflow {}, subnormal {}, overflow {} of {} nonzero finite values ({} zero, {} nonfinite)\n",
             pct(grand[cast_class::underflow], n), pct(grand[cast_class::subnormal], n), pct(grand[cast_class::overflow], n),
             n, grand[cast_class::zero], grand[cast_class::nonfinite]);
  if (!stop.empty()) fmt::print("the run would have STOPPED at step {}: {}\n", stop_step, stop);
  if (!skip_cause.empty()) {
    fmt::print("tensors that caused skips (skipped steps in which they overflowed):\n");
    for (const auto& [t, c] : skip_cause) fmt::print("  {:<40} {}\n", t, c);
  }
  if (!worst.empty()) {
    fmt::print("worst tensors by underflow (mean fraction of nonzero values that vanished):\n");
    for (const auto& [f, t] : worst) fmt::print("  {:<40} {}\n", t, f == 0 ? std::string("0") : fmt::format("{:.3g}%", 100 * f));
  }
  if (partial)
    fmt::print("note: {} steps had tensors recorded as histograms only; {} needs raw values, so they were left out\n",
               partial, rp.describe());
  if (!exact)
    fmt::print("note: some counts come from recorded histograms whose buckets straddle a boundary at these scales; "
               "those buckets are counted above it\n");
  return 0;
}

runner setup(CLI::App& app) {
  auto o = std::make_shared<replay_options>();
  auto* sub = app.add_subcommand("replay", "replay a gradient trace through a loss scaler or FP8 scaling recipe");
  sub->add_option("TRACE", o->trace, "an fpscope trace (.h5, docs/trace.md)")->required()->check(CLI::ExistingFile);
  sub->add_option("-P,--policy", o->policy,
                  "static:S, torch[:init=,growth=,backoff=,interval=], deepspeed[:...], megatron[:...],\n"
                  "te-delayed[:history=N,algo=max|most_recent,margin=M], te-current[:pow2],\n"
                  "mx[:rounding=floor|ceil|rceil|even], block[:tile=1x128|128x128,pow2] [default: torch]");
  sub->add_option("-f,--format", o->format, "format of the scaled gradients [default: fp16 for loss scalers,\n"
                                            "e5m2 for te-* (HYBRID: gradients in E5M2), e4m3 for mx and block]");
  sub->add_option("-p,--profile", o->profile, "policy bundle: " + profile_names() + " [default: ieee for loss\nscalers, cuda (satfinite) for FP8 recipes]");
  sub->add_option("-r,--rounding", o->rounding, "rounding mode (not sr) [default: the profile's]");
  sub->add_option("--overflow", o->overflow, "inf or saturate [default: the profile's]");
  sub->add_option("--steps", o->steps, "only training steps A:B (inclusive; A: or :B open)");
  sub->add_option("--top", o->top, "how many worst tensors to list [default: 5]")->check(CLI::Range(0, 10000));
  sub->add_option("-j,--threads", o->threads, "threads that inflate and count a step's values [default: all]")
      ->check(CLI::Range(0, 1024));
  sub->add_option("--plot", o->plot, "draw the scale and the underflow/overflow fractions over steps to FILE.svg|png");
  sub->add_flag("--json", o->json, "print JSON: every step and tensor, and the summary");
  sub->add_flag("--csv", o->csv, "print CSV: one line per step and tensor");
  sub->add_flag("-q,--quiet", o->quiet, "no progress bar");
  sub->footer(
      "Gradients are recorded unscaled; at each step the policy's scale S multiplies them (in float32)\n"
      "and they are cast to the format. Under a loss scaler a step overflows when any element of any\n"
      "tensor overflows (or was already inf/NaN); the scaler then skips it and backs off, as upstream.\n"
      "Counts are exact (see docs/hist.md); FP8 recipes never skip. The policy steps once per\n"
      "recorded step: a trace recorded every N training steps replays as if they were consecutive.\n"
      "\n"
      "Examples:\n"
      "  fpscope replay datasets/traces/digits-mlp.h5                  torch GradScaler on fp16\n"
      "  fpscope replay run.h5 -P deepspeed --json\n"
      "  fpscope replay run.h5 -P static:65536 --steps 100:200\n"
      "  fpscope replay run.h5 -P te-delayed:history=16,margin=1 --plot te.svg\n"
      "  fpscope replay run.h5 -P mx:rounding=rceil -f e4m3\n"
      "\n"
      "Exit status:\n"
      "  0  success\n"
      "  1  a bad, corrupt or unreadable trace, one line on stderr; also when libhdf5 crashes on\n"
      "     it, or makes no progress on it for FPSCOPE_STALL_SECONDS seconds (default 60; 0: no\n"
      "     limit): it loops forever on some damaged files, and the reading process is then killed\n"
      "  2  usage error: bad option or policy, malformed FPSCOPE_STALL_SECONDS");
  return [o] { return contained(o->trace, [&] { return run(*o); }); };
}

const registrar reg{"replay", 70, &setup};

}  // namespace
}  // namespace fpscope::cli
