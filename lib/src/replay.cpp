#include "fpscope/replay.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <memory>
#include <optional>

#include "fpscope/contain.hpp"
#include "fpscope/counting.hpp"
#include "fpscope/recipe.hpp"
#include "fpscope/scaler.hpp"
#include "fpscope/trace.hpp"
#include "ranks.hpp"

namespace fpscope {
namespace {
using namespace ranks;

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

// An amax reduction group of a step: the merged metadata a per-tensor recipe sees.
struct amax_set {
  std::string key;
  std::vector<std::uint64_t> shape;
  tensor_meta meta;
  std::vector<std::string> seen;  // the shard descriptions merged (a replica merges once)
};

// Steps a run (one trace, or the traces of every rank) through one recipe; the summary is kept
// as it goes, so that the per-tensor results may be dropped step by step
// (replay_options::keep_tensors).
class engine {
 public:
  engine(std::span<const trace_reader* const> r, const replay_options& o, prepared p)
      : r_(r.begin(), r.end()), o_(o), p_(std::move(p)) {}

  replay_result run() {
    replay_result out;
    out.model = r_.front()->model();
    out.policy = p_.rec->describe();
    out.cast = p_.cast.describe();
    out.loss_scaler = p_.rec->loss_scaler();
    heartbeat();
    if (r_.size() == 1) {
      const trace_reader& r = *r_.front();
      out.trace = r.path();
      out.incomplete = r.incomplete();
      for (std::size_t i = 0; i < r.size() && !out.summary.stop_step; ++i) {
        std::vector<trace_step> s{r.step(i)};
        heartbeat();
        if (o_.steps.contains(s.front().step)) step(s, out);
        if (o_.progress) o_.progress(i + 1, r.size());
      }
    } else {
      run_ranks(out);
    }
    heartbeat_done();
    finish(out);
    return out;
  }

 private:
  // Several ranks (ranks.hpp): the steps every rank recorded replay, the others are listed.
  void run_ranks(replay_result& out) {
    const auto world = sort_ranks(r_);
    out.world_size = std::size_t(world);
    out.amax_group = std::string(name(o_.group));
    out.trace = r_.front()->path() + " and " + std::to_string(r_.size() - 1) + " more rank" + (r_.size() > 2 ? "s" : "");
    for (const auto* r : r_)
      for (const auto& note : r->incomplete()) out.incomplete.push_back(note);
    const auto index = step_index(r_);
    std::vector<std::vector<std::int64_t>> absent(r_.size());
    std::size_t done = 0;
    for (const auto& [st, at] : index) {
      if (out.summary.stop_step) break;
      if (o_.steps.contains(st)) {
        if (const auto ss = read_step(r_, at, st, absent)) step(*ss, out);
      }
      if (o_.progress) o_.progress(++done, index.size());
    }
    out.left_out = left_out_notes(r_, absent);
  }

  // The amax groups of a step and each piece's place in one.
  std::vector<amax_set> groups(std::vector<piece>& pieces, const std::vector<std::string>& logical) const {
    std::vector<amax_set> gs;
    std::map<std::string, std::size_t> at;
    const bool one = r_.size() == 1;
    for (auto& p : pieces) {
      std::string key = logical[p.logical];
      if (!one && o_.group == amax_group::rank) key += " [rank " + std::to_string(r_[p.rank]->layout()->rank) + "]";
      if (!one && o_.group == amax_group::tp) {
        const auto& l = *r_[p.rank]->layout();
        if (!l.tp)
          throw trace_error(r_[p.rank]->path() + ": --amax-group tp needs the tensor-parallel layout (@tp_rank, @tp_size)");
        key += " [dp " + std::to_string(l.dp ? l.dp->rank : 0) + ", pp " + std::to_string(l.pp ? l.pp->rank : 0) + "]";
      }
      auto [it, fresh] = at.emplace(key, gs.size());
      if (fresh) {
        amax_set g;
        g.key = key;
        if (one) g.shape = p.t->shape;
        else if (p.t->shard) g.shape = p.t->shard->logical_shape;
        else g.shape = p.t->shape;
        g.meta.has_values = true;
        gs.push_back(std::move(g));
      }
      p.group = it->second;
      amax_set& g = gs[it->second];
      const std::string desc = describe_shard(*p.t);
      if (std::find(g.seen.begin(), g.seen.end(), desc) != g.seen.end()) continue;  // a replica
      g.seen.push_back(desc);
      g.meta.count += p.t->count;
      g.meta.amax = std::max(g.meta.amax, p.t->amax);
      g.meta.infs += p.t->infs;
      g.meta.nans += p.t->nans;
      g.meta.has_values = g.meta.has_values && p.t->has_values;
    }
    for (auto& g : gs) g.meta.name = g.key, g.meta.shape = g.shape;
    return gs;
  }

  void step(const std::vector<trace_step>& ss, replay_result& out) {
    step_replay res;
    res.step = ss.front().step;
    std::vector<piece> pieces;
    std::vector<std::string> logical;
    assemble(r_, ss, pieces, logical);
    std::vector<amax_set> gs = groups(pieces, logical);
    std::vector<tensor_meta> metas;
    for (const auto& g : gs) metas.push_back(g.meta);
    const double loss_scale = p_.rec->loss_scaler() ? p_.rec->scale(tensor_meta{}) : 0;
    // The scales first (they follow from earlier steps and the recorded metadata); then the raw
    // values of every per-tensor piece of the step, each rank's at once, their storage chunks
    // inflated and counted on every thread.
    std::vector<double> scales(gs.size(), loss_scale);
    if (!p_.rec->loss_scaler() && !p_.rec->per_block())
      for (std::size_t g = 0; g < gs.size(); ++g) scales[g] = p_.rec->scale(metas[g]);
    std::vector<std::vector<const trace_tensor*>> raw(r_.size());
    std::vector<std::vector<std::unique_ptr<class_tally>>> tallies(r_.size());
    std::vector<std::vector<std::size_t>> raw_at(r_.size());
    for (std::size_t i = 0; i < pieces.size(); ++i) {
      piece& p = pieces[i];
      const trace_tensor& t = *p.t;
      const trace_reader& r = *r_[p.rank];
      if (p_.rec->per_block()) {
        if (!t.has_values) {  // block scales need the values' order: a histogram cannot tell
          p.left_out = res.left_out = true;
          continue;
        }
        if (!mine(p)) continue;  // another process counts it (options.owns)
        tensor_meta m = meta_of(t);
        m.name = gs[p.group].key;
        const block_counts b = p_.rec->count_blocks(m, whole_values(r, *p.step, t, o_.threads));
        p.scale = b.scale;
        p.counts = b.counts;
      } else {
        p.scale = scales[p.group];
        const cast_spec spec{p_.cast.fmt, p_.cast.pol, kernel_scale(p.scale)};
        if (!mine(p)) continue;  // another process counts it (options.owns)
        if (t.has_values) {
          raw[p.rank].push_back(&t);
          raw_at[p.rank].push_back(i);
          tallies[p.rank].push_back(std::make_unique<class_tally>(std::vector{spec}));
        } else {
          // Recorded buckets: time in proportion to the buckets, not to the values they stand for.
          std::vector<char> inexact;
          const cast_thresholds<std::uint32_t> th[] = {thresholds(spec)};
          p.counts = count_histogram(r.histogram(*p.step, t), th, inexact).front();
          p.exact = !inexact.front();
          heartbeat();
        }
      }
    }
    for (std::size_t k = 0; k < r_.size(); ++k) {
      if (raw[k].empty()) continue;
      r_[k]->values_parallel(
          ss[k], raw[k],
          [&](std::size_t i, std::uint64_t, std::span<const float> v) {
            heartbeat();
            tallies[k][i]->add(v);
          },
          o_.threads);
      for (std::size_t i = 0; i < raw[k].size(); ++i) pieces[raw_at[k][i]].counts = tallies[k][i]->counts().front();
    }
    if (o_.all_reduce) share(pieces);

    // The logical tensors: distinct pieces' counts summed; found_inf over every piece.
    bool overflow = false;
    std::vector<std::optional<tensor_replay>> lt(logical.size());
    std::vector<std::pair<double, int>> logs(logical.size());
    for (const auto& p : pieces) {
      if (p.left_out) continue;
      overflow = overflow || p.overflow();
      if (p.overflow() && r_.size() > 1) {
        const auto& l = *r_[p.rank]->layout();
        ++overflows_["rank " + std::to_string(l.rank) + ", " + p.t->name +
                     (p.t->shard ? " shard " + std::to_string(p.ordinal) : std::string())];
      }
      auto& t = lt[p.logical];
      if (!t) t.emplace(), t->name = logical[p.logical], t->scale = p.scale;
      if (!p.counted) continue;  // a replica: its overflow is in `overflow`, its counts are the first copy's
      t->counts += p.counts;
      t->exact = t->exact && p.exact;
      if (t->scale != p.scale) t->scale = -1;  // several scales: their geometric mean below
      if (p.scale > 0 && std::isfinite(p.scale)) logs[p.logical].first += std::log2(p.scale), ++logs[p.logical].second;
    }
    double log_sum = 0;
    int scaled = 0;
    for (std::size_t l = 0; l < lt.size(); ++l) {
      if (!lt[l]) continue;
      tensor_replay& tr = *lt[l];
      if (tr.scale == -1) tr.scale = logs[l].second ? std::exp2(logs[l].first / logs[l].second) : 1;
      if (tr.scale > 0 && std::isfinite(tr.scale)) log_sum += std::log2(tr.scale), ++scaled;
      res.total += tr.counts;
      res.tensors.push_back(std::move(tr));
    }
    res.scale = p_.rec->loss_scaler() ? loss_scale : scaled ? std::exp2(log_sum / scaled) : 1;
    try {
      res.skipped = p_.rec->end_step(metas, overflow);
    } catch (const scaler_error& e) {
      res.skipped = true;
      out.summary.stop_step = res.step;
      out.summary.stop_reason = e.what();
    }
    if (res.left_out) ++out.summary.partial;
    if (res.left_out && res.tensors.empty()) return;  // nothing of this step could be counted
    account(res, out.summary);
    if (!o_.keep_tensors) res.tensors.clear();
    out.steps.push_back(std::move(res));
  }

  bool mine(const piece& p) const { return !o_.owns || o_.owns(p.rank); }

  // Several processes (options.all_reduce): each piece's counts, exactness and (block recipes)
  // scale, packed as integers and summed over the processes: only its owner's are nonzero, so
  // the sum is the owner's, bit for bit (a double's bits plus zeros).
  void share(std::vector<piece>& pieces) const {
    constexpr std::size_t nc = std::size_t(cast_class_count), per = nc + 2;
    std::vector<std::uint64_t> packed(pieces.size() * per, 0);
    for (std::size_t i = 0; i < pieces.size(); ++i) {
      const piece& p = pieces[i];
      if (p.left_out || !mine(p)) continue;
      std::copy(p.counts.n.begin(), p.counts.n.end(), packed.begin() + std::ptrdiff_t(i * per));
      packed[i * per + nc] = p.exact ? 0 : 1;
      if (p_.rec->per_block()) packed[i * per + nc + 1] = std::bit_cast<std::uint64_t>(p.scale);
    }
    o_.all_reduce(packed);
    for (std::size_t i = 0; i < pieces.size(); ++i) {
      piece& p = pieces[i];
      std::copy_n(packed.begin() + std::ptrdiff_t(i * per), nc, p.counts.n.begin());
      p.exact = packed[i * per + nc] == 0;
      if (p_.rec->per_block()) p.scale = std::bit_cast<double>(packed[i * per + nc + 1]);
    }
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
    sm.overflow_sources = overflows_;
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

  std::vector<const trace_reader*> r_;
  const replay_options& o_;
  prepared p_;
  std::map<float, cast_thresholds<std::uint32_t>> th_;
  std::map<std::string, std::pair<double, int>> underflow_;  // tensor -> (sum of fractions, steps)
  std::map<std::string, std::uint64_t> overflows_;           // rank's shard -> steps it overflowed in
};

}  // namespace

void check(const replay_options& o) { (void)prepare(o); }

replay_result replay(const trace_reader& r, const replay_options& o) {
  const trace_reader* one[] = {&r};
  return engine(one, o, prepare(o)).run();
}

replay_result replay(std::span<const trace_reader* const> ranks, const replay_options& o) {
  if (ranks.empty()) throw option_error("replay: no trace");
  return engine(ranks, o, prepare(o)).run();
}

amax_group parse_amax_group(std::string_view s, std::string_view what) {
  for (const auto g : {amax_group::tensor, amax_group::tp, amax_group::rank})
    if (s == name(g)) return g;
  throw option_error(std::string(what) + ": '" + std::string(s) + "' is not an amax group (tensor, tp or rank)");
}

std::string_view name(amax_group g) {
  switch (g) {
    case amax_group::tensor: return "tensor";
    case amax_group::tp: return "tp";
    case amax_group::rank: return "rank";
  }
  return "?";
}

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

replay_result replay_files(std::span<const std::string> paths, const replay_options& o, const std::function<bool()>& cancelled) {
  if (paths.size() == 1) return replay_file(paths.front(), o, cancelled);
  if (paths.empty()) throw option_error("replay: no trace");
  check(o);
  // One worker reads every rank's trace: a crash names the first and how many more.
  const std::string label = paths.front() + " (or one of the " + std::to_string(paths.size() - 1) + " other rank traces)";
  return deserialize_replay(run_contained(
      label,
      [&] {
        std::vector<std::unique_ptr<trace_reader>> open;
        std::vector<const trace_reader*> rs;
        for (const auto& p : paths) open.push_back(std::make_unique<trace_reader>(p)), rs.push_back(open.back().get()), heartbeat();
        return serialize(replay(rs, o));
      },
      cancelled));
}

}  // namespace fpscope
