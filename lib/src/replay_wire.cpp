// replay_result as bytes, for the trip from replay_file's worker to its caller: both ends are the
// same build of this library, so the layout is native and unversioned; the reader still checks
// every length against what is left, so a truncated answer is an error, not a crash.
#include <cstring>
#include <type_traits>

#include "fpscope/replay.hpp"
#include "fpscope/trace.hpp"

namespace fpscope {
namespace {

class writer {
 public:
  template <class T>
  void pod(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    out.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  void str(const std::string& s) {
    pod(std::uint64_t(s.size()));
    out += s;
  }
  void counts(const class_counts& c) { pod(c.n); }
  std::string out;
};

class reader {
 public:
  explicit reader(std::string_view b) : b_(b) {}
  template <class T>
  T pod() {
    static_assert(std::is_trivially_copyable_v<T>);
    T v;
    need(sizeof v);
    std::memcpy(&v, b_.data(), sizeof v);
    b_.remove_prefix(sizeof v);
    return v;
  }
  std::string str() {
    const auto n = pod<std::uint64_t>();
    need(n);
    std::string s(b_.substr(0, n));
    b_.remove_prefix(n);
    return s;
  }
  class_counts counts() {
    class_counts c;
    c.n = pod<decltype(c.n)>();
    return c;
  }
  // A count of elements each at least `min_bytes` long: bounded by what is left.
  std::uint64_t count(std::size_t min_bytes) {
    const auto n = pod<std::uint64_t>();
    need(n * min_bytes);
    return n;
  }
  bool done() const { return b_.empty(); }

 private:
  void need(std::uint64_t n) const {
    if (n > b_.size()) throw trace_error("replay: the worker's answer is truncated");
  }
  std::string_view b_;
};

}  // namespace

std::string serialize(const replay_result& r) {
  writer w;
  for (const auto* s : {&r.trace, &r.model, &r.policy, &r.cast}) w.str(*s);
  w.pod(r.loss_scaler);
  w.pod(std::uint64_t(r.incomplete.size()));
  for (const auto& s : r.incomplete) w.str(s);
  w.pod(std::uint64_t(r.steps.size()));
  for (const auto& s : r.steps) {
    w.pod(s.step), w.pod(s.scale), w.pod(s.skipped), w.pod(s.left_out), w.counts(s.total);
    w.pod(std::uint64_t(s.tensors.size()));
    for (const auto& t : s.tensors) w.str(t.name), w.pod(t.scale), w.counts(t.counts), w.pod(t.exact);
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
  w.pod(m.exact), w.pod(std::uint64_t(m.partial)), w.counts(m.total);
  return std::move(w.out);
}

replay_result deserialize_replay(std::string_view bytes) {
  reader rd(bytes);
  replay_result r;
  for (auto* s : {&r.trace, &r.model, &r.policy, &r.cast}) *s = rd.str();
  r.loss_scaler = rd.pod<bool>();
  for (auto n = rd.count(8); n--;) r.incomplete.push_back(rd.str());
  for (auto n = rd.count(8); n--;) {
    step_replay s;
    s.step = rd.pod<std::int64_t>(), s.scale = rd.pod<double>(), s.skipped = rd.pod<bool>(), s.left_out = rd.pod<bool>();
    s.total = rd.counts();
    for (auto k = rd.count(8); k--;) {
      tensor_replay t;
      t.name = rd.str(), t.scale = rd.pod<double>(), t.counts = rd.counts(), t.exact = rd.pod<bool>();
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
  m.exact = rd.pod<bool>(), m.partial = rd.pod<std::uint64_t>(), m.total = rd.counts();
  if (!rd.done()) throw trace_error("replay: the worker's answer has trailing bytes");
  return r;
}

}  // namespace fpscope
