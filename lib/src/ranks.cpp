// Several rank traces as one run: see ranks.hpp.
#include "ranks.hpp"

#include <algorithm>

#include "fpscope/contain.hpp"

namespace fpscope::ranks {
namespace {

void tile(const std::vector<const trace_reader*>& r_, const std::vector<trace_step>& ss, std::vector<piece>& pieces,
          const std::vector<std::size_t>& mine, const std::string& ln) {
  const auto rank_of = [&](const piece& p) { return r_[p.rank]->layout()->rank; };
  const auto fail = [&](const std::string& what) {
    throw trace_error("step " + std::to_string(ss.front().step) + ", tensor " + ln + ": " + what);
  };
  const piece& first = pieces[mine.front()];
  const trace_tensor& f = *first.t;
  for (const auto i : mine) {
    const trace_tensor& t = *pieces[i].t;
    if (t.shard.has_value() != f.shard.has_value())
      fail("rank " + std::to_string(rank_of(pieces[i])) + " holds " + describe_shard(t) + ", rank " +
           std::to_string(rank_of(first)) + " " + describe_shard(f) + ": a tensor is either whole on every rank or sharded");
    if (t.shard && (t.shard->how != f.shard->how || t.shard->logical_shape != f.shard->logical_shape ||
                    (t.shard->how == trace_shard::kind::split && (t.shard->dim != f.shard->dim || t.shard->parts != f.shard->parts))))
      fail("rank " + std::to_string(rank_of(pieces[i])) + "'s shard (" + describe_shard(t) + ") and rank " +
           std::to_string(rank_of(first)) + "'s (" + describe_shard(f) + ") do not describe one tensor");
    if (!t.shard && t.shape != f.shape)
      fail("the replicas on ranks " + std::to_string(rank_of(first)) + " and " + std::to_string(rank_of(pieces[i])) + " differ in shape");
  }
  // Two pieces with one description: replicas where the ranks are data-parallel peers (a
  // whole tensor under DP, a tensor-parallel split replicated over DP), else a duplicated
  // shard. A flat shard partitions the data-parallel group itself: never replicated.
  const auto replicas = [&](const piece& a, const piece& b) {
    if (!a.t->shard) return true;
    if (a.t->shard->how == trace_shard::kind::flat) return false;
    const auto& la = *r_[a.rank]->layout();
    const auto& lb = *r_[b.rank]->layout();
    return la.dp && lb.dp && la.dp->rank != lb.dp->rank;
  };
  if (!f.shard) {
    for (std::size_t j = 1; j < mine.size(); ++j) pieces[mine[j]].counted = false;
    return;
  }
  std::vector<std::size_t> order(mine);
  const bool flat = f.shard->how == trace_shard::kind::flat;
  const auto lo = [&](std::size_t i) { return flat ? pieces[i].t->shard->offset : std::uint64_t(pieces[i].t->shard->index); };
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return lo(a) < lo(b); });
  const auto hi = [&](std::size_t i) { return flat ? lo(i) + pieces[i].t->count : lo(i) + 1; };
  std::uint64_t end = 0, total = 1, ordinal = 0;
  if (flat)
    for (const auto e : f.shard->logical_shape) total *= e;
  else
    total = f.shard->parts;
  const auto span = [&](std::uint64_t a, std::uint64_t b) {
    return flat ? "elements " + std::to_string(a) + ".." + std::to_string(b - 1) + " of " + std::to_string(total)
                : (b - a > 1 ? "parts " + std::to_string(a) + ".." + std::to_string(b - 1) : "part " + std::to_string(a)) +
                      " of " + std::to_string(total) + " along dimension " + std::to_string(f.shard->dim);
  };
  for (std::size_t j = 0; j < order.size(); ++j) {
    piece& p = pieces[order[j]];
    if (j && lo(order[j]) == lo(order[j - 1]) && hi(order[j]) == hi(order[j - 1])) {
      const piece& q = pieces[order[j - 1]];
      if (!replicas(q, p))
        fail("ranks " + std::to_string(rank_of(q)) + " and " + std::to_string(rank_of(p)) + " both hold " +
             span(lo(order[j]), hi(order[j])) + ": a duplicated shard");
      p.counted = false, p.ordinal = q.ordinal;
      continue;
    }
    if (lo(order[j]) < end)
      fail("rank " + std::to_string(rank_of(p)) + "'s " + span(lo(order[j]), hi(order[j])) + " overlap rank " +
           std::to_string(rank_of(pieces[order[j - 1]])) + "'s " + span(lo(order[j - 1]), hi(order[j - 1])));
    if (lo(order[j]) > end) fail(span(end, lo(order[j])) + " are in no rank's trace: a missing shard");
    p.ordinal = flat ? ordinal++ : p.t->shard->index;
    end = hi(order[j]);
  }
  if (end != total) fail(span(end, total) + " are in no rank's trace: a missing shard");
}

}  // namespace

std::string describe_shard(const trace_tensor& t) {
  if (!t.shard) return "whole";
  const auto& s = *t.shard;
  if (s.how == trace_shard::kind::flat) return "flat " + std::to_string(s.offset) + "+" + std::to_string(t.count);
  return "split " + std::to_string(s.dim) + ":" + std::to_string(s.index) + "/" + std::to_string(s.parts);
}

std::int64_t sort_ranks(std::vector<const trace_reader*>& r_) {
  const auto where = [&](const trace_reader* r) { return r->path(); };
  for (const auto* r : r_)
    if (!r->layout())
      throw trace_error(where(r) + ": no @rank/@world_size: not one rank's trace of a distributed run "
                                   "(replay several traces only as the ranks of one run)");
  std::stable_sort(r_.begin(), r_.end(), [](const auto* a, const auto* b) { return a->layout()->rank < b->layout()->rank; });
  const auto world = r_.front()->layout()->world_size;
  for (std::size_t i = 0; i < r_.size(); ++i) {
    const auto& l = *r_[i]->layout();
    if (l.world_size != world)
      throw trace_error(where(r_[i]) + ": @world_size " + std::to_string(l.world_size) + " differs from " +
                        where(r_.front()) + "'s " + std::to_string(world) + ": not one run");
    if (i && l.rank == r_[i - 1]->layout()->rank)
      throw trace_error(where(r_[i]) + ": rank " + std::to_string(l.rank) + " is also " + where(r_[i - 1]) + ": one file per rank");
  }
  if (std::int64_t(r_.size()) != world) {
    std::string missing;
    for (std::int64_t k = 0, at = 0; k < world; ++k)
      if (std::size_t(at) < r_.size() && r_[std::size_t(at)]->layout()->rank == k) ++at;
      else missing += (missing.empty() ? "" : ", ") + std::to_string(k);
    throw trace_error("ranks " + missing + " of world size " + std::to_string(world) +
                      " have no trace: a run replays with every rank's (a step's overflow on a missing rank would go unseen)");
  }
  return world;
}

step_table step_index(const std::vector<const trace_reader*>& r) {
  step_table index;
  for (std::size_t k = 0; k < r.size(); ++k)
    for (std::size_t i = 0; i < r[k]->size(); ++i) {
      auto& at = index[r[k]->step_number(i)];
      at.resize(r.size());
      at[k] = i;
    }
  return index;
}

std::optional<std::vector<trace_step>> read_step(const std::vector<const trace_reader*>& r,
                                                 const std::vector<std::optional<std::size_t>>& at, std::int64_t step,
                                                 std::vector<std::vector<std::int64_t>>& absent) {
  bool whole = true;
  for (std::size_t k = 0; k < r.size(); ++k)
    if (!at[k]) absent[k].push_back(step), whole = false;
  if (!whole) return std::nullopt;
  std::vector<trace_step> ss;
  for (std::size_t k = 0; k < r.size(); ++k) ss.push_back(r[k]->step(*at[k])), heartbeat();
  return ss;
}

std::vector<std::string> left_out_notes(const std::vector<const trace_reader*>& r,
                                        const std::vector<std::vector<std::int64_t>>& absent) {
  std::vector<std::string> out;
  for (std::size_t k = 0; k < r.size(); ++k) {
    const auto& a = absent[k];
    if (a.empty()) continue;
    std::string list;
    for (std::size_t i = 0; i < a.size();) {
      std::size_t j = i;
      while (j + 1 < a.size() && a[j + 1] == a[j] + 1) ++j;
      list += (list.empty() ? "" : ", ") + std::to_string(a[i]) + (j > i ? ".." + std::to_string(a[j]) : "");
      i = j + 1;
    }
    out.push_back("rank " + std::to_string(r[k]->layout()->rank) + " (" + r[k]->path() + ") did not record step" +
                  (a.size() > 1 ? "s " : " ") + list + " that other ranks did: left out");
  }
  return out;
}

// The logical tensors of a step, from every rank's pieces: each tiled exactly once by its
// shards (replicas apart); trace_error otherwise.
void assemble(const std::vector<const trace_reader*>& r_, const std::vector<trace_step>& ss, std::vector<piece>& pieces,
              std::vector<std::string>& logical) {
  std::map<std::string, std::size_t> at;
  std::vector<std::vector<std::size_t>> of;
  for (std::size_t k = 0; k < ss.size(); ++k)
    for (const auto& t : ss[k].tensors) {
      const std::string& ln = t.shard ? t.shard->logical_name : t.name;
      auto [it, fresh] = at.emplace(ln, logical.size());
      if (fresh) logical.push_back(ln), of.emplace_back();
      of[it->second].push_back(pieces.size());
      piece p;
      p.rank = k, p.step = &ss[k], p.t = &t, p.logical = it->second;
      pieces.push_back(p);
    }
  if (ss.size() == 1) return;  // one trace: each tensor stands for itself
  for (std::size_t l = 0; l < logical.size(); ++l) tile(r_, ss, pieces, of[l], logical[l]);
}

std::vector<float> whole_values(const trace_reader& r, const trace_step& s, const trace_tensor& t, int threads) {
  std::vector<float> v(t.count);
  const trace_tensor* one[] = {&t};
  r.values_parallel(
      s, one,
      [&](std::size_t, std::uint64_t at, std::span<const float> c) {
        heartbeat();
        std::copy(c.begin(), c.end(), v.begin() + std::ptrdiff_t(at));
      },
      threads);
  return v;
}

}  // namespace fpscope::ranks
