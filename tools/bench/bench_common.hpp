// Helpers the benchmarks under tools/bench share: the random generator of their synthetic
// data, the statistics of interleaved rounds (median, best, paired ratios) and the Markdown
// tables they print.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace fpscope::bench {

/// SplitMix64: a fixed-seed generator, the same numbers on every machine.
struct splitmix {
  std::uint64_t s;
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * 0x1p-53; }  // [0, 1)
};

/// Median of the finite samples (NaN: a round without a sample); NaN when there are none.
inline double median(std::vector<double> v) {
  std::erase_if(v, [](double x) { return !std::isfinite(x); });
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

/// Smallest finite sample (the best round of a time); NaN when there are none.
inline double minimum(const std::vector<double>& v) {
  double m = NAN;
  for (double x : v)
    if (std::isfinite(x) && !(x >= m)) m = x;
  return m;
}

struct ratio {
  double median = NAN, best = NAN;
  bool ok() const { return std::isfinite(median); }
};

/// b.t / a.t paired per round, median over rounds; best: min(b) / min(a). With times, that is
/// how many times faster a is than b.
inline ratio time_ratio(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> r;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i)
    if (std::isfinite(a[i]) && std::isfinite(b[i]) && a[i] > 0) r.push_back(b[i] / a[i]);
  ratio out;
  out.median = median(r);
  out.best = out.ok() ? minimum(b) / minimum(a) : NAN;
  return out;
}

/// Per round, the fastest of several series (anything with a `t`: seconds per round, NaN for
/// none): a library's best API, or the best hardware kernel, in that round.
template <class Item>
std::vector<double> fastest(const std::vector<const Item*>& its, std::size_t rounds) {
  std::vector<double> t(rounds, NAN);
  for (const Item* it : its)
    for (std::size_t r = 0; r < rounds && r < it->t.size(); ++r)
      if (std::isfinite(it->t[r]) && !(it->t[r] >= t[r])) t[r] = it->t[r];
  return t;
}

/// A Markdown table, columns padded to their widest cell.
inline std::string table(const std::vector<std::string>& head, const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> w(head.size());
  for (std::size_t c = 0; c < head.size(); ++c) w[c] = head[c].size();
  for (const auto& r : rows)
    for (std::size_t c = 0; c < r.size() && c < w.size(); ++c) w[c] = std::max(w[c], r[c].size());
  auto line = [&](const std::vector<std::string>& r) {
    std::string l = "|";
    for (std::size_t c = 0; c < w.size(); ++c) l += fmt::format(" {:<{}} |", c < r.size() ? r[c] : "", w[c]);
    return l + "\n";
  };
  std::string t = line(head);
  std::string sep = "|";
  for (std::size_t c = 0; c < w.size(); ++c) sep += std::string(w[c] + 2, '-') + "|";
  t += sep + "\n";
  for (const auto& r : rows) t += line(r);
  return t;
}

}  // namespace fpscope::bench
