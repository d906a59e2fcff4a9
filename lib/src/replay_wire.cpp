// replay_result as bytes, for the trip from replay_file's worker to its caller (detail/wire.hpp).
#include "fpscope/detail/wire.hpp"
#include "fpscope/replay.hpp"
#include "fpscope/trace.hpp"

namespace fpscope {
namespace {

// class_counts as its array of counts.
void put_counts(detail::wire_writer& w, const class_counts& c) { w.pod(c.n); }
class_counts take_counts(detail::wire_reader& rd) {
  class_counts c;
  c.n = rd.pod<decltype(c.n)>();
  return c;
}

}  // namespace

std::string serialize(const replay_result& r) {
  detail::wire_writer w;
  for (const auto* s : {&r.trace, &r.model, &r.policy, &r.cast}) w.str(*s);
  w.pod(r.loss_scaler);
  w.pod(std::uint64_t(r.incomplete.size()));
  for (const auto& s : r.incomplete) w.str(s);
  w.pod(std::uint64_t(r.steps.size()));
  for (const auto& s : r.steps) {
    w.pod(s.step), w.pod(s.scale), w.pod(s.skipped), w.pod(s.left_out), put_counts(w, s.total);
    w.pod(std::uint64_t(s.tensors.size()));
    for (const auto& t : s.tensors) w.str(t.name), w.pod(t.scale), put_counts(w, t.counts), w.pod(t.exact);
  }
  const auto& m = r.summary;
  w.pod(std::uint64_t(m.skipped.size()));
  for (const auto k : m.skipped) w.pod(k);
  w.pod(m.stop_step.has_value()), w.pod(m.stop_step.value_or(0)), w.str(m.stop_reason);
  w.pod(m.scale_min), w.pod(m.scale_max), w.pod(m.scale_final), w.pod(std::uint64_t(m.scale_changes));
  w.pod(std::uint64_t(m.skip_causes.size()));
  for (const auto& [k, v] : m.skip_causes) w.str(k), w.pod(v);
  w.pod(std::uint64_t(m.worst_underflow.size()));
  for (const auto& [k, v] : m.worst_underflow) w.str(k), w.pod(v);
  w.pod(m.exact), w.pod(std::uint64_t(m.partial)), put_counts(w, m.total);
  // Several rank traces (replay_files)
  w.pod(std::uint64_t(r.world_size)), w.str(r.amax_group);
  w.pod(std::uint64_t(r.left_out.size()));
  for (const auto& s : r.left_out) w.str(s);
  w.pod(std::uint64_t(m.overflow_sources.size()));
  for (const auto& [k, v] : m.overflow_sources) w.str(k), w.pod(v);
  return std::move(w.out);
}

replay_result deserialize_replay(std::string_view bytes) {
  detail::wire_reader rd(bytes, "replay");
  replay_result r;
  for (auto* s : {&r.trace, &r.model, &r.policy, &r.cast}) *s = rd.str();
  r.loss_scaler = rd.pod<bool>();
  for (auto n = rd.count(8); n--;) r.incomplete.push_back(rd.str());
  for (auto n = rd.count(8); n--;) {
    step_replay s;
    s.step = rd.pod<std::int64_t>(), s.scale = rd.pod<double>(), s.skipped = rd.pod<bool>(), s.left_out = rd.pod<bool>();
    s.total = take_counts(rd);
    for (auto k = rd.count(8); k--;) {
      tensor_replay t;
      t.name = rd.str(), t.scale = rd.pod<double>(), t.counts = take_counts(rd), t.exact = rd.pod<bool>();
      s.tensors.push_back(std::move(t));
    }
    r.steps.push_back(std::move(s));
  }
  auto& m = r.summary;
  for (auto n = rd.count(8); n--;) m.skipped.push_back(rd.pod<std::int64_t>());
  const bool stopped = rd.pod<bool>();
  const auto stop_step = rd.pod<std::int64_t>();
  if (stopped) m.stop_step = stop_step;
  m.stop_reason = rd.str();
  m.scale_min = rd.pod<double>(), m.scale_max = rd.pod<double>(), m.scale_final = rd.pod<double>();
  m.scale_changes = rd.pod<std::uint64_t>();
  for (auto n = rd.count(8); n--;) {
    auto k = rd.str();
    m.skip_causes[std::move(k)] = rd.pod<std::uint64_t>();
  }
  for (auto n = rd.count(8); n--;) {
    auto k = rd.str();
    m.worst_underflow.emplace_back(std::move(k), rd.pod<double>());
  }
  m.exact = rd.pod<bool>(), m.partial = rd.pod<std::uint64_t>(), m.total = take_counts(rd);
  r.world_size = rd.pod<std::uint64_t>(), r.amax_group = rd.str();
  for (auto n = rd.count(8); n--;) r.left_out.push_back(rd.str());
  for (auto n = rd.count(8); n--;) {
    auto k = rd.str();
    m.overflow_sources[std::move(k)] = rd.pod<std::uint64_t>();
  }
  if (!rd.done()) throw trace_error("replay: the worker's answer has trailing bytes");
  return r;
}

}  // namespace fpscope
