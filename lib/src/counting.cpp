#include "fpscope/counting.hpp"

#include <algorithm>
#include <cmath>
#include <exception>
#include <mutex>
#include <omp.h>
#include <stdexcept>

#include "fpscope/convert.hpp"

namespace fpscope {
namespace {

// Chunks of one array counted on their own: large enough that a chunk's fixed costs (a copy of
// the counter's table, the counts of every spec) vanish against its values, small enough for
// the refine pass to find the chunk still in cache and for the threads to share work evenly.
constexpr std::size_t chunk_values = std::size_t{1} << 20;

template <class T>
void add_chunks(class_tally& t, std::span<const T> x, int threads) {
  const std::size_t chunks = (x.size() + chunk_values - 1) / chunk_values;
  const int nt = threads > 0 ? threads : (x.size() >= parallel_threshold ? omp_get_max_threads() : 1);
  if (nt <= 1 || chunks <= 1) {
    for (std::size_t c = 0; c < chunks; ++c) t.add(x.subspan(c * chunk_values, std::min(chunk_values, x.size() - c * chunk_values)));
    return;
  }
  // An exception may not leave an OpenMP region: the first is kept and rethrown after it.
  std::exception_ptr error;
  std::mutex m;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
  for (std::size_t c = 0; c < chunks; ++c) {
    try {
      t.add(x.subspan(c * chunk_values, std::min(chunk_values, x.size() - c * chunk_values)));
    } catch (...) {
      const std::lock_guard lock(m);
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

template <class T>
std::vector<class_counts> count_array(std::span<const T> x, std::span<const cast_spec> specs, int threads) {
  class_tally t({specs.begin(), specs.end()}, x.size());
  t.add_parallel(x, threads);
  return t.counts();
}

}  // namespace

class_tally::class_tally(std::vector<cast_spec> specs, std::uint64_t expected_size)
    : proto_(std::move(specs), expected_size, 1),
      expected_(expected_size),
      counts_(proto_.specs().size()),
      inexact_(proto_.specs().size(), 0) {
  thresholds_.reserve(proto_.specs().size());
  for (std::size_t i = 0; i < proto_.specs().size(); ++i) thresholds_.push_back(proto_.thresholds(i));
}

void class_tally::merge(const std::vector<class_counts>& c, const std::map<int, std::uint64_t>& b, std::uint64_t n) {
  const std::lock_guard lock(m_);
  for (std::size_t i = 0; i < c.size(); ++i) counts_[i] += c[i];
  for (const auto& [k, v] : b) binades_[k] += v;
  size_ += n;
}

void class_tally::add(std::span<const float> x) {
  if (x.empty()) return;
  class_counter cc = proto_;  // the thresholds, without finding them again
  cc.reset(expected_);
  cc.add(x);
  if (cc.needs_refine()) cc.refine(x);
  merge(cc.counts(), cc.binades(), x.size());
}

void class_tally::add(std::span<const double> x) {
  if (x.empty()) return;
  class_counter cc = proto_;
  cc.reset(expected_);
  cc.add(x);
  merge(cc.counts(), cc.binades(), x.size());
}

void class_tally::add_parallel(std::span<const float> x, int threads) { add_chunks(*this, x, threads); }
void class_tally::add_parallel(std::span<const double> x, int threads) { add_chunks(*this, x, threads); }

void class_tally::add_histogram(std::span<const std::pair<std::uint32_t, std::uint64_t>> buckets) {
  std::vector<char> inexact;
  const auto c = count_histogram(buckets, thresholds_, inexact);
  std::uint64_t n = 0;
  for (const auto& b : buckets) n += b.second;
  merge(c, histogram_binades(buckets), n);
  const std::lock_guard lock(m_);
  for (std::size_t i = 0; i < inexact.size(); ++i) inexact_[i] |= inexact[i];
}

std::vector<class_counts> class_tally::counts() const {
  const std::lock_guard lock(m_);
  return counts_;
}

bool class_tally::exact() const {
  const std::lock_guard lock(m_);
  return std::none_of(inexact_.begin(), inexact_.end(), [](char c) { return c != 0; });
}

bool class_tally::exact(std::size_t spec) const {
  const std::lock_guard lock(m_);
  return !inexact_.at(spec);
}

std::map<int, std::uint64_t> class_tally::binades() const {
  const std::lock_guard lock(m_);
  return binades_;
}

std::uint64_t class_tally::size() const {
  const std::lock_guard lock(m_);
  return size_;
}

std::vector<class_counts> count_classes(std::span<const float> x, std::span<const cast_spec> specs, int threads) {
  return count_array(x, specs, threads);
}
std::vector<class_counts> count_classes(std::span<const double> x, std::span<const cast_spec> specs, int threads) {
  return count_array(x, specs, threads);
}

// ---- sweep and recommendations ----

std::vector<cast_spec> scale_sweep::specs(const format& fmt, const policy& pol) {
  std::vector<cast_spec> out;
  out.reserve(size);
  for (int k = kmin; k <= kmax; ++k) out.push_back({fmt, pol, std::ldexp(1.0f, k)});
  return out;
}

scale_sweep::scale_sweep(std::span<const class_counts> counts) : c_(counts.begin(), counts.end()) {
  if (c_.size() != size) throw std::invalid_argument("scale_sweep: needs one count per power of two 2^-126 .. 2^127");
}

const class_counts& scale_sweep::at(int k) const {
  if (k < kmin || k > kmax) throw std::out_of_range("scale_sweep::at: 2^" + std::to_string(k) + " is not a float32 normal");
  return c_[std::size_t(k - kmin)];
}

// hist's recommendations (docs/hist.md "The scale to use"). The class is monotone in the scale
// only per value, not in aggregate over the sweep's two ends, so every power of two is looked at.
recommendations recommend(const scale_sweep& s, int headroom) {
  recommendations r;
  if (s.at(0).nonzero_finite() == 0) return r;
  int top = scale_sweep::kmin - 1;
  for (int k = scale_sweep::kmin; k <= scale_sweep::kmax; ++k)
    if (s.at(k)[cast_class::overflow] == 0) top = k;
  if (top >= scale_sweep::kmin) {
    const int k = std::max(scale_sweep::kmin, top - headroom);
    r.gradscaler = recommendation{k, s.at(k)};
    r.no_overflow_log2 = top;
  }
  std::vector<int> best;
  std::pair<std::uint64_t, std::uint64_t> best_loss{~0ull, ~0ull};
  for (int k = scale_sweep::kmin; k <= scale_sweep::kmax; ++k) {
    const auto& c = s.at(k);
    const std::pair<std::uint64_t, std::uint64_t> loss{c[cast_class::underflow] + c[cast_class::overflow], c[cast_class::subnormal]};
    if (loss < best_loss) best_loss = loss, best.clear();
    if (loss == best_loss) best.push_back(k);
  }
  const int k = best[best.size() / 2];
  r.fewest_lost = recommendation{k, s.at(k)};
  r.fewest_lost_range = {best.front(), best.back()};
  return r;
}

}  // namespace fpscope
