// trace merge (fpscope/trace_merge.hpp): the logical tensors ranks.cpp assembles, written
// through an in-memory trace_writer whose image goes out through output_file.
#include "fpscope/trace_merge.hpp"

#include <algorithm>
#include <memory>

#include "fpscope/contain.hpp"
#include "fpscope/detail/wire.hpp"
#include "fpscope/options.hpp"
#include "fpscope/output.hpp"
#include "fpscope/summary.hpp"
#include "fpscope/trace.hpp"
#include "ranks.hpp"

namespace fpscope {
namespace {
using namespace ranks;

// Places a shard's values in its logical tensor's (C order): a flat shard at its offset; a split
// shard's rows of dimension d at index * (its extent along d).
void place(const trace_tensor& t, const std::vector<float>& v, std::vector<float>& whole) {
  if (!t.shard) {
    std::copy(v.begin(), v.end(), whole.begin());
    return;
  }
  const trace_shard& s = *t.shard;
  if (s.how == trace_shard::kind::flat) {
    std::copy(v.begin(), v.end(), whole.begin() + std::ptrdiff_t(s.offset));
    return;
  }
  std::uint64_t outer = 1, inner = 1;
  for (std::size_t i = 0; i < s.dim; ++i) outer *= s.logical_shape[i];
  for (std::size_t i = s.dim + 1; i < s.logical_shape.size(); ++i) inner *= s.logical_shape[i];
  const std::uint64_t part = s.logical_shape[s.dim] / s.parts * inner;  // a shard's row of the outer index
  const std::uint64_t row = s.logical_shape[s.dim] * inner;             // the logical tensor's
  for (std::uint64_t o = 0; o < outer; ++o)
    std::copy_n(v.begin() + std::ptrdiff_t(o * part), part, whole.begin() + std::ptrdiff_t(o * row + s.index * part));
}

void put_strings(detail::wire_writer& w, const std::vector<std::string>& v) {
  w.pod(std::uint64_t(v.size()));
  for (const auto& s : v) w.str(s);
}

std::vector<std::string> take_strings(detail::wire_reader& rd) {
  std::vector<std::string> v;
  for (auto n = rd.count(8); n--;) v.push_back(rd.str());
  return v;
}

}  // namespace

merge_result merge(std::span<const trace_reader* const> ranks_in, const merge_options& o) {
  std::vector<const trace_reader*> r(ranks_in.begin(), ranks_in.end());
  if (r.size() < 2) throw option_error("trace merge: needs the traces of several ranks");
  merge_result out;
  out.world_size = std::size_t(sort_ranks(r));
  for (const auto* x : r)
    for (const auto& note : x->incomplete()) out.incomplete.push_back(note);
  const auto index = step_index(r);
  trace_writer w(trace_writer::in_memory{}, "fpscope trace merge (" + std::to_string(r.size()) + " ranks)", r.front()->model(),
                 std::clamp<std::size_t>(index.size(), 1, 65535));
  std::vector<std::vector<std::int64_t>> absent(r.size());
  std::size_t done = 0;
  for (const auto& [st, at] : index) {
    if (const auto ss = read_step(r, at, st, absent)) {
      std::vector<piece> pieces;
      std::vector<std::string> logical;
      assemble(r, *ss, pieces, logical);
      const trace_step& s0 = ss->front();
      w.begin_step(st, s0.loss, s0.lr, s0.loss_scale);
      for (std::size_t l = 0; l < logical.size(); ++l) {
        std::vector<const piece*> mine;
        for (const auto& p : pieces)
          if (p.logical == l && p.counted) mine.push_back(&p);
        const trace_tensor& f = *mine.front()->t;
        const std::vector<std::uint64_t> shape = f.shard ? f.shard->logical_shape : f.shape;
        const bool values = std::all_of(mine.begin(), mine.end(), [](const piece* p) { return p->t->has_values; });
        const bool hists = std::all_of(mine.begin(), mine.end(), [](const piece* p) { return p->t->has_hist; });
        if (values && o.values) {
          std::uint64_t count = 0;
          for (const auto* p : mine) count += p->t->count;
          std::vector<float> whole(count);
          for (const auto* p : mine) place(*p->t, whole_values(*r[p->rank], *p->step, *p->t, o.threads), whole);
          w.add(logical[l], whole, shape, true, hists);
        } else {
          tensor_summary sum;
          for (const auto* p : mine) {
            const trace_tensor& t = *p->t;
            sum.count += t.count, sum.zeros += t.zeros, sum.infs += t.infs, sum.nans += t.nans;
            sum.amax = std::max(sum.amax, t.amax);
            if (t.has_hist) {
              const auto h = r[p->rank]->histogram(*p->step, t);
              sum.hist.add_sparse(h);
            } else {
              sum.hist.add(whole_values(*r[p->rank], *p->step, *p->t, o.threads), o.threads);
            }
            heartbeat();
          }
          w.add_summary(logical[l], sum, shape);
        }
      }
      w.end_step();
      ++out.steps;
    }
    if (o.progress) o.progress(++done, index.size());
  }
  out.left_out = left_out_notes(r, absent);
  out.image = w.image();
  return out;
}

merge_result merge_contained(std::span<const std::string> paths, const merge_options& o,
                             const std::function<bool()>& cancelled) {
  if (paths.size() < 2) throw option_error("trace merge: needs the traces of several ranks");
  const std::string label = paths.front() + " (or one of the " + std::to_string(paths.size() - 1) + " other rank traces)";
  const std::string bytes = run_contained(
      label,
      [&] {
        std::vector<std::unique_ptr<trace_reader>> open;
        std::vector<const trace_reader*> rs;
        for (const auto& p : paths) open.push_back(std::make_unique<trace_reader>(p)), rs.push_back(open.back().get()), heartbeat();
        merge_result m = merge(rs, o);
        heartbeat_done();
        detail::wire_writer ww;
        ww.pod(std::uint64_t(m.world_size)), ww.pod(std::uint64_t(m.steps));
        put_strings(ww, m.incomplete);
        put_strings(ww, m.left_out);
        ww.str(m.image);
        return std::move(ww.out);
      },
      cancelled);
  detail::wire_reader rd(bytes, "trace merge");
  merge_result m;
  m.world_size = rd.pod<std::uint64_t>(), m.steps = rd.pod<std::uint64_t>();
  m.incomplete = take_strings(rd);
  m.left_out = take_strings(rd);
  m.image = rd.str();
  if (!rd.done()) throw trace_error("trace merge: the worker's answer has trailing bytes");
  return m;
}

merge_result merge_files(std::span<const std::string> paths, const std::string& out_path, const merge_options& o,
                         const std::function<bool()>& cancelled) {
  if (paths.size() < 2) throw option_error("trace merge: needs the traces of several ranks");
  // Refused before any work: a directory, a device, an input as the output.
  output_options oo;
  oo.inputs.assign(paths.begin(), paths.end());
  auto file = std::make_unique<output_file>(out_path, oo);
  merge_result m = merge_contained(paths, o, cancelled);
  file->write(m.image);
  file->commit();
  m.image.clear();
  return m;
}

}  // namespace fpscope
