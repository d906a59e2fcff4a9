#include "fpscope/replay.hpp"

#include <algorithm>
#include <cmath>
#include <memory>

#include "fpscope/contain.hpp"
#include "fpscope/counting.hpp"
#include "fpscope/recipe.hpp"
#include "fpscope/scaler.hpp"
#include "fpscope/trace.hpp"

namespace fpscope {
namespace {

tensor_meta meta_of(const trace_tensor& t) {
  return {t.name, t.shape, t.count, t.amax, t.infs, t.nans, t.has_values};
}

struct prepared {
  std::unique_ptr<recipe> rec;
  conversion cast;
};

prepared prepare(const replay_options& o) {
  prepared p;
  try {
    p.rec = make_recipe(o.policy);
  } catch (const option_error& e) {
    throw option_error(std::string("--policy: ") + e.what());
  }
  p.cast = resolve(o.cast, p.rec->default_format(), p.rec->default_profile());
  require_deterministic(p.cast, "replay");
  p.rec->bind(p.cast);
  check_threads(o.threads);
  return p;
}

// Steps a trace through one recipe; the summary is kept as it goes, so that the per-tensor
// results may be dropped step by step (replay_options::keep_tensors).
class engine {
 public:
  engine(const trace_reader& r, const replay_options& o, prepared p) : r_(r), o_(o), p_(std::move(p)) {}

  replay_result run() {
    replay_result out;
    out.trace = r_.path();
    out.model = r_.model();
    out.policy = p_.rec->describe();
    out.cast = p_.cast.describe();
    out.loss_scaler = p_.rec->loss_scaler();
    out.incomplete = r_.incomplete();
    heartbeat();
    for (std::size_t i = 0; i < r_.size() && !out.summary.stop_step; ++i) {
      const trace_step s = r_.step(i);
      heartbeat();
      if (o_.steps.contains(s.step)) step(s, out);
      if (o_.progress) o_.progress(i + 1, r_.size());
    }
    heartbeat_done();
    finish(out);
    return out;
  }

 private:
  void step(const trace_step& s, replay_result& out) {
    step_replay res;
    res.step = s.step;
    std::vector<tensor_meta> metas;
    metas.reserve(s.tensors.size());
    for (const auto& t : s.tensors) metas.push_back(meta_of(t));
    const double loss_scale = p_.rec->loss_scaler() ? p_.rec->scale(tensor_meta{}) : 0;
    // The scales first (they follow from earlier steps and the recorded metadata); then the raw
    // values of every per-tensor tensor of the step at once, their storage chunks inflated and
    // counted on every thread.
    std::vector<const trace_tensor*> raw;
    std::vector<std::unique_ptr<class_tally>> tallies;
    std::vector<std::size_t> raw_at;
    for (std::size_t i = 0; i < s.tensors.size(); ++i) {
      const trace_tensor& t = s.tensors[i];
      tensor_replay tr;
      tr.name = t.name;
      if (p_.rec->per_block()) {
        if (!t.has_values) {  // block scales need the values' order: a histogram cannot tell
          res.left_out = true;
          continue;
        }
        const block_counts b = p_.rec->count_blocks(metas[i], values_of(s, t));
        tr.scale = b.scale;
        tr.counts = b.counts;
      } else {
        tr.scale = p_.rec->loss_scaler() ? loss_scale : p_.rec->scale(metas[i]);
        const cast_spec spec{p_.cast.fmt, p_.cast.pol, kernel_scale(tr.scale)};
        if (t.has_values) {
          raw.push_back(&t);
          raw_at.push_back(res.tensors.size());
          tallies.push_back(std::make_unique<class_tally>(std::vector{spec}));
        } else {
          // Recorded buckets: time in proportion to the buckets, not to the values they stand for.
          std::vector<char> inexact;
          const cast_thresholds<std::uint32_t> th[] = {thresholds(spec)};
          tr.counts = count_histogram(r_.histogram(s, t), th, inexact).front();
          tr.exact = !inexact.front();
          heartbeat();
        }
      }
      res.tensors.push_back(std::move(tr));
    }
    if (!raw.empty())
      r_.values_parallel(
          s, raw,
          [&](std::size_t i, std::uint64_t, std::span<const float> v) {
            heartbeat();
            tallies[i]->add(v);
          },
          o_.threads);
    for (std::size_t i = 0; i < raw.size(); ++i) res.tensors[raw_at[i]].counts = tallies[i]->counts().front();

    double log_sum = 0;
    int scaled = 0;
    bool overflow = false;
    for (const auto& tr : res.tensors) {
      if (tr.scale > 0 && std::isfinite(tr.scale)) log_sum += std::log2(tr.scale), ++scaled;
      res.total += tr.counts;
      overflow = overflow || tr.overflow();
    }
    res.scale = p_.rec->loss_scaler() ? loss_scale : scaled ? std::exp2(log_sum / scaled) : 1;
    try {
      res.skipped = p_.rec->end_step(metas, overflow);
    } catch (const scaler_error& e) {
      res.skipped = true;
      out.summary.stop_step = s.step;
      out.summary.stop_reason = e.what();
    }
    if (res.left_out) ++out.summary.partial;
    if (res.left_out && res.tensors.empty()) return;  // nothing of this step could be counted
    account(res, out.summary);
    if (!o_.keep_tensors) res.tensors.clear();
    out.steps.push_back(std::move(res));
  }

  // A tensor's values, whole (a block's scale needs its values together); its chunks inflate in
  // parallel.
  std::vector<float> values_of(const trace_step& s, const trace_tensor& t) const {
    std::vector<float> v(t.count);
    const trace_tensor* one[] = {&t};
    r_.values_parallel(
        s, one,
        [&](std::size_t, std::uint64_t at, std::span<const float> c) {
          heartbeat();
          std::copy(c.begin(), c.end(), v.begin() + std::ptrdiff_t(at));
        },
        o_.threads);
    return v;
  }

  // A cast's thresholds, found once per float32 scale (a loss scale is shared by every tensor of
  // a step and rarely changes).
  const cast_thresholds<std::uint32_t>& thresholds(const cast_spec& c) {
    if (th_.size() > 4096) th_.clear();
    auto it = th_.find(c.scale);
    if (it == th_.end()) it = th_.emplace(c.scale, thresholds32(c)).first;
    return it->second;
  }

  void account(const step_replay& res, replay_summary& sm) {
    for (const auto& t : res.tensors) {
      if (res.skipped && t.overflow()) ++sm.skip_causes[t.name];
      const auto nzf = t.counts.nonzero_finite();
      auto& u = underflow_[t.name];
      if (nzf) u.first += double(t.counts[cast_class::underflow]) / double(nzf), ++u.second;
      sm.exact = sm.exact && t.exact;
    }
    sm.total += res.total;
  }

  void finish(replay_result& out) {
    auto& sm = out.summary;
    for (const auto& [n, u] : underflow_)
      if (u.second) sm.worst_underflow.emplace_back(n, u.first / u.second);
    std::stable_sort(sm.worst_underflow.begin(), sm.worst_underflow.end(),
                     [](const auto& a, const auto& b) { return a.second > b.second; });
    if (sm.worst_underflow.size() > o_.top) sm.worst_underflow.resize(o_.top);
    const auto& st = out.steps;
    for (std::size_t i = 0; i < st.size(); ++i) {
      if (st[i].skipped) sm.skipped.push_back(st[i].step);
      sm.scale_min = i ? std::min(sm.scale_min, st[i].scale) : st[i].scale;
      sm.scale_max = i ? std::max(sm.scale_max, st[i].scale) : st[i].scale;
      sm.scale_changes += i && st[i].scale != st[i - 1].scale;
    }
    if (!st.empty()) sm.scale_final = st.back().scale;
    if (st.empty() && sm.partial)
      throw trace_error(out.trace + ": " + out.policy + " needs raw values, and none of the " + std::to_string(sm.partial) +
                        " steps has them (histogram-only trace)");
  }

  const trace_reader& r_;
  const replay_options& o_;
  prepared p_;
  std::map<float, cast_thresholds<std::uint32_t>> th_;
  std::map<std::string, std::pair<double, int>> underflow_;  // tensor -> (sum of fractions, steps)
};

}  // namespace

void check(const replay_options& o) { (void)prepare(o); }

replay_result replay(const trace_reader& r, const replay_options& o) { return engine(r, o, prepare(o)).run(); }

replay_result replay_file(const std::string& path, const replay_options& o, const std::function<bool()>& cancelled) {
  check(o);  // option errors before the worker, and without it
  return deserialize_replay(run_contained(
      path,
      [&] {
        const trace_reader r(path);
        return serialize(replay(r, o));
      },
      cancelled));
}

}  // namespace fpscope
