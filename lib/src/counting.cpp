#include "fpscope/counting.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <exception>
#include <mutex>
#include <omp.h>
#include <stdexcept>
#include <type_traits>

#include "fpscope/convert.hpp"
#include "fpscope/detail/round_pack.hpp"

namespace fpscope {
namespace {

// Chunks of one array counted on their own: large enough that a chunk's fixed costs (a copy of
// the counter's table, the counts of every spec) vanish against its values, small enough for
// the refine pass to find the chunk still in cache and for the threads to share work evenly.
constexpr std::size_t chunk_values = std::size_t{1} << 20;

template <class Tally, class T>
void add_chunks(Tally& t, std::span<const T> x, int threads) {
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

// ---- error statistics ----

// Values converted at once: the block's values, scaled values, codes, decoded values and
// reciprocals (about 100 KB) stay in L2 while every cast passes over them, and the bulk
// conversion's fixed cost per call (resolving the policy) is spread over enough values.
constexpr std::size_t error_block = 4096;

template <class T>
using bits_of = typename detail::binary<T>::bits;

// The sums of one block for one cast: x the values, q the decoded casts of fl32(x * S), inv
// 1/|x|, t the cast's thresholds (the value counts iff it is subnormal or normal). The lanes
// of `omp simd` sum a few hundred terms each (the reduction may reorder: that is what lets it
// vectorise without -ffast-math); the caller adds the block sums up without loss.
//
// Each term: es = q - x*S is exact for float32 x (the product has 48 bits, and q and x*S are
// within a factor 2 of each other wherever the cast kept the value's exponent: Sterbenz), one
// rounding otherwise (fma for float64 x); rel = |es| * (1/|x|) * (1/S) and err = es * (1/S)
// add at most 3 roundings; x^2 is exact for float32 x. So each term is within 2^-50 of itself.
template <class T>
error_tally::sums block_sums(const T* x, const float* q, const double* inv, std::size_t n,
                             const std::array<std::array<bits_of<T>, 3>, 2>& t, float scale) {
  using U = bits_of<T>;
  constexpr int top = int(sizeof(U) * 8 - 1);
  const U lo0 = t[0][0], hi0 = t[0][2], lo1 = t[1][0], hi1 = t[1][2];
  const double s = scale, inv_s = 1.0 / s;
  std::uint64_t cnt = 0;
  double sr = 0, sg = 0, ns = 0, mx = 0;
#pragma omp simd reduction(+ : cnt, sr, sg, ns) reduction(max : mx)
  for (std::size_t i = 0; i < n; ++i) {
    // Branch-free (selects, no short-circuit), so that the loop vectorises.
    const U b = std::bit_cast<U>(x[i]);
    const U m = b & (~U(0) >> 1);
    const bool neg = (b >> top) != 0;
    const U lo = neg ? lo1 : lo0, hi = neg ? hi1 : hi0;
    const bool in = (m >= lo) & (m < hi);
    const double xd = double(x[i]), qd = double(q[i]);
    double es;
    if constexpr (std::is_same_v<T, float>)
      es = qd - xd * s;
    else
      es = std::fma(-xd, s, qd);
    const double rel = std::fabs(es) * inv[i] * inv_s, err = es * inv_s;
    const double rel_in = in ? rel : 0.0;
    cnt += in ? 1u : 0u;
    sr += rel_in;
    mx = mx > rel_in ? mx : rel_in;
    sg += in ? xd * xd : 0.0;
    ns += in ? err * err : 0.0;
  }
  error_tally::sums r;
  r.n = cnt;
  r.rel.hi = sr, r.signal.hi = sg, r.noise.hi = ns, r.max_rel = mx;
  return r;
}

// Encodes y to codes of f and decodes them to q: the bulk conversion, on this thread.
template <class Code>
void cast_block(std::span<const float> y, Code* codes, float* q, const cast_spec& c) {
  const bulk_options one{1.0, 0, 1};
  const std::size_t n = y.size();
  encode(y, std::span<Code>(codes, n), c.fmt, c.pol, one);
  decode(std::span<const Code>(codes, n), std::span<float>(q, n), c.fmt);
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

void error_tally::wide_sum::add(double v) {
  const double s = hi + v, bv = s - hi;
  lo += (hi - (s - bv)) + (v - bv);
  hi = s;
}

void error_tally::sums::add(const sums& o) {
  n += o.n;
  rel.add(o.rel), signal.add(o.signal), noise.add(o.noise);
  max_rel = std::max(max_rel, o.max_rel);
}

error_tally::error_tally(std::vector<cast_spec> specs) : specs_(std::move(specs)), total_(specs_.size()) {
  t32_.reserve(specs_.size());
  for (const auto& c : specs_) t32_.push_back(thresholds32(c));
}

template <class T>
void error_tally::add_values(std::span<const T> x) {
  if (x.empty() || specs_.empty()) return;
  if constexpr (std::is_same_v<T, double>)
    std::call_once(t64_once_, [this] {
      for (const auto& c : specs_) t64_.push_back(thresholds64(c));
    });
  std::vector<sums> acc(specs_.size());
  alignas(64) float y[error_block], q[error_block];
  alignas(64) double inv[error_block];
  alignas(64) std::uint32_t c32[error_block];
  alignas(64) std::uint16_t c16[error_block];
  alignas(64) std::uint8_t c8[error_block];
  for (std::size_t lo = 0; lo < x.size(); lo += error_block) {
    const std::size_t n = std::min(error_block, x.size() - lo);
    const T* xb = x.data() + lo;
    for (std::size_t i = 0; i < n; ++i) inv[i] = 1.0 / std::fabs(double(xb[i]));
    for (std::size_t r = 0; r < specs_.size(); ++r) {
      const cast_spec& c = specs_[r];
      for (std::size_t i = 0; i < n; ++i) y[i] = scaled(xb[i], c.scale);
      const std::span<const float> ys(y, n);
      switch (c.fmt.storage_bytes()) {
        case 1: cast_block(ys, c8, q, c); break;
        case 2: cast_block(ys, c16, q, c); break;
        default: cast_block(ys, c32, q, c);
      }
      if constexpr (std::is_same_v<T, float>)
        acc[r].add(block_sums(xb, q, inv, n, t32_[r].at, c.scale));
      else
        acc[r].add(block_sums(xb, q, inv, n, t64_[r].at, c.scale));
    }
  }
  const std::lock_guard lock(m_);
  for (std::size_t r = 0; r < acc.size(); ++r) total_[r].add(acc[r]);
}

void error_tally::add(std::span<const float> x) { add_values(x); }
void error_tally::add(std::span<const double> x) { add_values(x); }
void error_tally::add_parallel(std::span<const float> x, int threads) { add_chunks(*this, x, threads); }
void error_tally::add_parallel(std::span<const double> x, int threads) { add_chunks(*this, x, threads); }

std::vector<error_stats> error_tally::stats() const {
  const std::lock_guard lock(m_);
  std::vector<error_stats> out(total_.size());
  for (std::size_t r = 0; r < total_.size(); ++r) {
    const sums& s = total_[r];
    out[r] = {s.n, s.rel.value(), s.max_rel, s.signal.value(), s.noise.value()};
  }
  return out;
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
