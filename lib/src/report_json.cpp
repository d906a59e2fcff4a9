#include "fpscope/report_json.hpp"

namespace fpscope {
namespace {

using json = nlohmann::ordered_json;

constexpr cast_class nonzero_finite_classes[] = {cast_class::underflow, cast_class::subnormal, cast_class::normal,
                                                 cast_class::overflow};

json fraction(std::uint64_t n, std::uint64_t of) { return of ? json(double(n) / double(of)) : json(nullptr); }

// A scale or scale bound that may be absent (no steps).
json maybe(bool has, double v) { return has ? json(v) : json(nullptr); }

}  // namespace

json counts_json(const class_counts& c) {
  json j;
  j["total"] = c.total();
  for (int i = 0; i < cast_class_count; ++i) j[std::string(name(cast_class(i)))] = c.n[std::size_t(i)];
  json all, nzf;
  for (int i = 0; i < cast_class_count; ++i) all[std::string(name(cast_class(i)))] = fraction(c.n[std::size_t(i)], c.total());
  for (const auto k : nonzero_finite_classes) nzf[std::string(name(k))] = fraction(c[k], c.nonzero_finite());
  j["fraction_of_all"] = all;
  j["fraction_of_nonzero_finite"] = nzf;
  return j;
}

json replay_json(const replay_result& r) {
  json j;
  j["trace"] = r.trace;
  j["model"] = r.model;
  j["policy"] = r.policy;
  j["format"] = r.cast;
  json steps = json::array();
  for (const auto& s : r.steps) {
    json js{{"step", s.step}, {"scale", s.scale}, {"skipped", s.skipped}};
    js.update(counts_json(s.total));
    json ts = json::array();
    for (const auto& t : s.tensors) {
      json jt{{"name", t.name}, {"scale", t.scale}, {"exact", t.exact}};
      jt.update(counts_json(t.counts));
      ts.push_back(std::move(jt));
    }
    js["tensors"] = std::move(ts);
    steps.push_back(std::move(js));
  }
  j["steps"] = std::move(steps);
  const auto& m = r.summary;
  const bool any = !r.steps.empty();
  json causes = json::object();
  for (const auto& [n, c] : m.skip_causes) causes[n] = c;
  json worst = json::array();
  for (const auto& [n, f] : m.worst_underflow) worst.push_back({{"name", n}, {"mean_underflow_fraction_of_nonzero", f}});
  j["summary"] = {{"steps", r.steps.size()},
                  {"skipped", m.skipped},
                  {"stopped", m.stop_step ? json{{"step", *m.stop_step}, {"reason", m.stop_reason}} : json(nullptr)},
                  {"scale_min", maybe(any, m.scale_min)},
                  {"scale_max", maybe(any, m.scale_max)},
                  {"scale_final", maybe(any, m.scale_final)},
                  {"scale_changes", m.scale_changes},
                  {"skip_causes", causes},
                  {"worst_underflow", worst},
                  {"exact", m.exact},
                  {"steps_with_tensors_left_out", m.partial},
                  {"incomplete_steps", r.incomplete}};
  j["summary"].update(counts_json(m.total));
  if (r.world_size) {  // several rank traces (docs/json.md): only then, so one trace's report is as before
    json sources = json::object();
    for (const auto& [n, c] : m.overflow_sources) sources[n] = c;
    j["summary"]["world_size"] = r.world_size;
    j["summary"]["amax_group"] = r.amax_group;
    j["summary"]["overflow_sources"] = sources;
    j["summary"]["steps_left_out"] = r.left_out;
  }
  return j;
}

std::string json_text(const nlohmann::ordered_json& j, int indent) {
  const std::string raw = j.dump(indent, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  // JSON lets DEL and the C1 controls (U+0080..U+009F: C2 80..C2 9F) stand raw, and a terminal
  // may obey them (C2 9B is CSI): \u escapes instead. Outside strings JSON text is printable
  // ASCII, so these bytes are always inside one.
  std::string out;
  out.reserve(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) {
    const auto c = static_cast<unsigned char>(raw[i]);
    const auto next = i + 1 < raw.size() ? static_cast<unsigned char>(raw[i + 1]) : 0;
    if (c == 0x7f) {
      out += "\\u007f";
    } else if (c == 0xc2 && next >= 0x80 && next <= 0x9f) {
      constexpr char hex[] = "0123456789abcdef";
      out += "\\u00";
      out += hex[next >> 4];
      out += hex[next & 15];
      ++i;
    } else {
      out += char(c);
    }
  }
  return out;
}

}  // namespace fpscope
