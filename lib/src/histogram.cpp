#include "fpscope/histogram.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <numeric>
#include <optional>
#include <omp.h>
#include <stdexcept>
#include <string>
#if defined(__AVX512F__)
// GCC 12's AVX-512 headers start intrinsics from _mm512_undefined_epi32(), which
// -Wmaybe-uninitialized (and -Wuninitialized, once the key loop below inlines them)
// takes for a read of an uninitialised value. The warnings point into the header: silenced there only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

#include "fpscope/convert.hpp"
#include "fpscope/counting.hpp"
#include "fpscope/detail/round_odd.hpp"

namespace fpscope {
namespace {

using detail::from_bits;
using detail::to_bits;

constexpr std::uint32_t inf32 = 0x7F800000u;
constexpr std::uint64_t inf64 = 0x7FF0000000000000ull;

// The binade of a bucket key: floor(log2|x|) of its values, -127 for float32 subnormals; none
// for zero, inf and NaN.
std::optional<int> binade_of_key(std::uint32_t k) {
  const std::uint32_t m = k % bucket_histogram::per_sign, e = m / bucket_histogram::per_binade;
  if (m == 0 || e == 255) return std::nullopt;
  return e ? int(e) - 127 : -127;
}

// underflow 0, subnormal 1, normal 2, overflow 3: the order the classes come in as |y| grows.
int rank(cast_class c) { return static_cast<int>(c) - 1; }

// The class of a finite nonzero x whose scaled value is y.
cast_class class_of_y(float y, const cast_spec& c) {
  if (std::isinf(y)) return cast_class::overflow;
  unsigned fl = 0;
  const std::uint32_t q = encode(y, c.fmt, c.pol, 0, fl);
  switch (classify(q, c.fmt)) {
    case value_class::zero: return cast_class::underflow;
    case value_class::subnormal: return fl & flag_overflow ? cast_class::overflow : cast_class::subnormal;
    case value_class::normal: return fl & flag_overflow ? cast_class::overflow : cast_class::normal;
    default: return cast_class::overflow;
  }
}

// The smallest magnitude bits in [1, inf] whose class (for this sign) has rank >= r. The class
// is monotone in |x|: fl32 and every deterministic rounding are monotone in magnitude.
template <class T>
typename detail::binary<T>::bits first_of_rank(const cast_spec& c, int sign, int r) {
  using U = typename detail::binary<T>::bits;
  constexpr U inf = std::is_same_v<T, float> ? U(inf32) : U(inf64);
  const U s = U(sign) << (sizeof(U) * 8 - 1);
  U lo = 1, hi = inf;
  while (lo < hi) {
    const U mid = lo + (hi - lo) / 2;
    if (rank(class_of_y(scaled(from_bits<T>(s | mid), c.scale), c)) >= r)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

template <class T>
cast_thresholds<typename detail::binary<T>::bits> thresholds_of(const cast_spec& c) {
  check(c);
  cast_thresholds<typename detail::binary<T>::bits> t;
  for (int s = 0; s < 2; ++s)
    for (int r = 1; r <= 3; ++r) t.at[s][r - 1] = first_of_rank<T>(c, s, r);
  return t;
}

// Class counts of one sign from a `below(v)` that counts the elements of magnitude bits < v.
template <class U, class Below>
void add_sign(class_counts& out, const std::array<U, 3>& t, U one, U inf, std::uint64_t total, Below below) {
  const std::uint64_t b1 = below(one), b0 = below(t[0]), bn = below(t[1]), bo = below(t[2]), bi = below(inf);
  out[cast_class::zero] += b1;
  out[cast_class::underflow] += b0 - b1;
  out[cast_class::subnormal] += bn - b0;
  out[cast_class::normal] += bo - bn;
  out[cast_class::overflow] += bi - bo;
  out[cast_class::nonfinite] += total - bi;
}

}  // namespace

std::string_view name(cast_class c) {
  switch (c) {
    case cast_class::zero: return "zero";
    case cast_class::underflow: return "underflow";
    case cast_class::subnormal: return "subnormal";
    case cast_class::normal: return "normal";
    case cast_class::overflow: return "overflow";
    case cast_class::nonfinite: return "nonfinite";
  }
  return "?";
}

std::uint64_t class_counts::total() const { return std::accumulate(n.begin(), n.end(), std::uint64_t{0}); }

std::uint64_t class_counts::nonzero_finite() const {
  return n[1] + n[2] + n[3] + n[4];
}

class_counts& class_counts::operator+=(const class_counts& o) {
  for (int i = 0; i < cast_class_count; ++i) n[i] += o.n[i];
  return *this;
}

void check(const cast_spec& c) {
  if (c.pol.round == rounding::sr)
    throw std::invalid_argument("stochastic rounding gives no fixed class per value: use a deterministic rounding");
  if (!c.fmt.is_signed())
    throw std::invalid_argument(std::string(c.fmt.name) + " is an unsigned scale format: classes need a signed format");
  if (!(std::isfinite(c.scale) && c.scale > 0))
    throw std::invalid_argument("the scale must be a positive finite float32, not " + std::to_string(c.scale));
}

float scaled(double x, float scale) {
  // Round to odd at 53 bits, then to float32: one correct rounding of the exact product.
  const double p = x * double(scale);
  return static_cast<float>(detail::round_odd(p, std::fma(x, double(scale), -p)));
}

cast_class classify_cast(float x, const cast_spec& c) {
  if (!std::isfinite(x)) return cast_class::nonfinite;
  if (x == 0) return cast_class::zero;
  return class_of_y(scaled(x, c.scale), c);
}

cast_class classify_cast(double x, const cast_spec& c) {
  if (!std::isfinite(x)) return cast_class::nonfinite;
  if (x == 0) return cast_class::zero;
  return class_of_y(scaled(x, c.scale), c);
}

cast_thresholds<std::uint32_t> thresholds32(const cast_spec& c) { return thresholds_of<float>(c); }
cast_thresholds<std::uint64_t> thresholds64(const cast_spec& c) { return thresholds_of<double>(c); }

// ---------------------------------------------------------------------------------------------
// bucket_histogram

// The table is allocated at the first count: a class_counter that searches its thresholds
// (small inputs) never needs it, and copies of an empty one cost nothing.
bucket_histogram::bucket_histogram() = default;

void bucket_histogram::allocate() {
  if (counts_.empty()) counts_.assign(bucket_count, 0);
}

namespace {

// Counts bucket keys, software-pipelined: each step computes the keys of the next w values (a
// vector loop: lzcnt, shifts, compares) while it increments the counters of the previous w, so
// the vector work hides under the increments, which bound the pass (one load and one store per
// value). The counters are uint32, spilled into uint64 before any could wrap.
// Portable loop (w = 16), measured with a throwaway microbenchmark on 2^26 gradient-like values
// (log2|x| ~ N(-14, 5)), best of 5, three runs each, AMD EPYC (family 25):
// - pipelined by 16: 1.56-1.76e9/s (by 32: 1.40-1.72, by 64: 1.28-1.47; the same with AVX-512
//   intrinsics: 1.33-1.77); not pipelined, blocks of 64 keys then their increments: 1.18-1.51,
//   of 16, 32, 128, 256, 1024: 0.86, 1.31, 1.34-1.41, 1.04-1.23, 1.05-1.27e9/s;
// - 2 tables (alternate, or interleaved per key) 0.8-1.1e9/s; a uint16 table drained every
//   65472 values 1.41-1.47e9/s; rows rotated against L1 set conflicts 1.41e9/s: no gain;
// - the increments alone, from precomputed keys, 1.69-1.99e9/s: the ceiling of any
//   one-increment-per-value table on this core, key computation aside.
// AVX-512 loop (w = 64, intrinsics), taken on the Intel Xeon (family 6, model 207) of the shared
// 2-CPU VM, 2e7 values (the record bench's), user CPU time, best of 7 interleaved rounds of 5:
// the portable loop compiles there to increments that GCC 12 reorders through spills to vector
// registers (6 instructions each instead of a load and an add to memory): 7.2-8.3e8 values/s;
// the AVX-512 keys with increments unrolled by 16, 32, 64: 1.02-1.16, 1.09-1.28, 1.19-1.41e9;
// the increments alone, unrolled, from precomputed keys: 1.14-1.23e9 (a store of the same
// counter again, as a run of equal keys does, waits for the last one: 4e8/s). The portable loop
// with w = 32 or 64 and the increments unrolled: 8.2e8, 9.1e8.
class key_counter {
 public:
  using listing = bucket_histogram::listing;
  key_counter() : t_(bucket_histogram::bucket_count, 0) {}
  // Counts in[0, n); with a listing, also hands it the values it lists (listing::lists).
  void add(const std::uint32_t* __restrict in, std::size_t n, const listing* l = nullptr);
  // The largest finite magnitude's bits among the values added (0 if none).
  std::uint32_t finite_max() const { return std::uint32_t(top_); }
  // Adds every count to out. Most of the table is zero (a tensor fills a few thousand of its
  // 65536 buckets): a block of 16 counters is read once with a vector OR, and only a block that
  // holds a count is added (the adds of the whole table were part of a small tensor's fixed cost).
  void drain(std::uint64_t* __restrict out) const {
    if (!wide_.empty()) {
      for (std::size_t k = 0; k < bucket_histogram::bucket_count; ++k) out[k] += t_[k] + wide_[k];
      return;
    }
    constexpr std::size_t block = 16;
    for (std::size_t b = 0; b < bucket_histogram::bucket_count; b += block) {
      std::uint32_t any = 0;
      for (std::size_t k = b; k < b + block; ++k) any |= t_[k];
      if (any)
        for (std::size_t k = b; k < b + block; ++k) out[k] += t_[k];
    }
  }

 private:
  static constexpr std::size_t spill_after = std::size_t{1} << 31;
  void spill() {
    if (wide_.empty()) wide_.assign(bucket_histogram::bucket_count, 0);
    for (std::size_t k = 0; k < bucket_histogram::bucket_count; ++k) wide_[k] += t_[k], t_[k] = 0;
    since_spill_ = 0;
  }
  // Counts in[0, n), n a multiple of pipeline_width and at least twice it; the max into top_.
  template <bool List>
  void add_pipelined(const std::uint32_t* __restrict in, std::size_t n, const listing* l);
  std::vector<std::uint32_t> t_;
  std::vector<std::uint64_t> wide_;
  std::size_t since_spill_ = 0;
  std::int32_t top_ = 0;
};

// Values of a listing gathered on the stack and handed over a batch at a time (rarely: the
// buckets a listing names hold few of the values).
class listing_buffer {
 public:
  explicit listing_buffer(const bucket_histogram::listing* l) : l_(l) {}
  ~listing_buffer() { flush(); }
  listing_buffer(const listing_buffer&) = delete;
  listing_buffer& operator=(const listing_buffer&) = delete;
  // Room for `more` values (at most 64) at end(); the caller then advances by how many it wrote.
  std::uint32_t* end(std::size_t more) {
    if (fill_ + more > cap) flush();
    return buf_ + fill_;
  }
  void advance(std::size_t n) { fill_ += n; }
  void push(std::uint32_t u) { *end(1) = u, ++fill_; }
  void flush() {
    if (fill_) l_->sink(l_->ctx, buf_, fill_);
    fill_ = 0;
  }

 private:
  static constexpr std::size_t cap = 2048;
  const bucket_histogram::listing* l_;
  alignas(64) std::uint32_t buf_[cap + 64];
  std::size_t fill_ = 0;
};

// The values of in[0, n) that l lists, one by one (the vector loop's head and tail, small
// inputs, portable builds).
void list_each(const bucket_histogram::listing& l, const std::uint32_t* in, std::size_t n) {
  listing_buffer out(&l);
  for (std::size_t i = 0; i < n; ++i)
    if (l.lists(in[i])) out.push(in[i]);
}

// |x|'s bits when x is finite, else 0 (inf and NaN have the exponent field 255). Signed, because
// GCC 12 vectorises the signed max and not the unsigned one; the value fits (< 0x7F800000).
inline std::int32_t finite_magnitude(std::uint32_t bits) {
  const std::int32_t m = std::int32_t(bits & 0x7FFFFFFFu);
  return m < 0x7F800000 ? m : 0;
}

#if defined(__AVX512F__) && defined(__AVX512CD__)
constexpr std::size_t pipeline_width = 64;

// detail::bucket_key of 16 float32 bit patterns. With t the fraction top-aligned and L its run of
// leading ones (vplzcntd of ~t), t << L has the zero ending the run on top, then the key's
// "next" bit, then the rest: key = sign and exponent | L << 2 | next << 1 | (rest != 0), the
// last as min(rest, 1). The same keys as the scalar function on all 2^32 patterns (checked
// once by a throwaway loop; tests/unit/test_histogram.cpp checks every bucket kind).
inline __m512i bucket_keys16(__m512i b) {
  const __m512i t = _mm512_slli_epi32(b, 9);
  const __m512i run = _mm512_lzcnt_epi32(_mm512_ternarylogic_epi32(t, t, t, 0x55));  // ~t
  const __m512i after = _mm512_sllv_epi32(t, run);
  // (b >> 16 & ~0x7F) | run << 2, then (after >> 29 & 2) | min(after << 2, 1); ternary-logic
  // 0xEA is (A & B) | C.
  const __m512i high = _mm512_ternarylogic_epi32(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(~0x7F),
                                                 _mm512_slli_epi32(run, 2), 0xEA);
  const __m512i low = _mm512_ternarylogic_epi32(_mm512_srli_epi32(after, 29), _mm512_set1_epi32(2),
                                                _mm512_min_epu32(_mm512_slli_epi32(after, 2), _mm512_set1_epi32(1)), 0xEA);
  return _mm512_or_si512(high, low);
}

// A listing's 32 slots in registers: of 16 keys k and magnitudes mag, the lanes whose bucket is
// listed and that lie below its top, by two permutes and two compares however many buckets are
// listed (a compare and a blend per bucket made the counting pass 1.5-1.9x the plain count at 4
// buckets). The fused refine and the refine pass both find their values so.
class listing_slots {
 public:
  explicit listing_slots(const bucket_histogram::listing& l) : a_(l.shift), b_(l.shift2) {
    for (int h = 0; h < 2; ++h)
      keys_[h] = _mm512_loadu_si512(l.keys.data() + 16 * h), top_[h] = _mm512_loadu_si512(l.top.data() + 16 * h);
  }
  [[gnu::always_inline]] __mmask16 below_top(__m512i k, __m512i mag) const {
    // listing::of(k): the permutes read the low 5 bits.
    const __m512i at = _mm512_xor_si512(_mm512_srli_epi32(k, a_), _mm512_srli_epi32(k, b_));
    const __mmask16 own = _mm512_cmpeq_epi32_mask(k, _mm512_permutex2var_epi32(keys_[0], at, keys_[1]));
    return _mm512_mask_cmplt_epu32_mask(own, mag, _mm512_permutex2var_epi32(top_[0], at, top_[1]));
  }

 private:
  unsigned a_, b_;
  __m512i keys_[2], top_[2];
};

template <bool List>
void key_counter::add_pipelined(const std::uint32_t* __restrict in, std::size_t n, const listing* l) {
  constexpr std::size_t w = pipeline_width;
  std::uint32_t* t = t_.data();
  alignas(64) std::uint32_t keys[2][w];
  const __m512i magnitude = _mm512_set1_epi32(0x7FFFFFFF), inf = _mm512_set1_epi32(0x7F800000);
  __m512i top = _mm512_setzero_si512();
  listing_buffer out(l);
  const listing_slots slots(List ? *l : listing{});
  const auto keys_of = [&](const std::uint32_t* from, std::uint32_t* to) {
    // A prefetch 2 KiB ahead: the hardware prefetcher alone left a pass over a memory-mapped
    // file at about 0.6 ns a value on the Intel VM, this at about 0.4 (tools/bench).
    for (std::size_t j = 0; j < w; j += 16) {
      __builtin_prefetch(from + j + 512);
      const __m512i b = _mm512_loadu_si512(from + j);
      const __m512i k = bucket_keys16(b);
      _mm512_store_si512(to + j, k);
      const __m512i m = _mm512_and_si512(b, magnitude);
      top = _mm512_mask_max_epu32(top, _mm512_cmplt_epu32_mask(m, inf), top, m);
      if constexpr (List) {
        // The lanes below their bucket's top, compressed in a register and stored whole (a
        // masked compress-store to memory is slow on Intel).
        const __mmask16 hit = slots.below_top(k, m);
        // Without a branch: hits come in runs the predictor would miss.
        _mm512_storeu_si512(out.end(16), _mm512_maskz_compress_epi32(hit, b));
        out.advance(std::size_t(std::popcount(unsigned(hit))));
      }
    }
  };
  // Unrolled: each increment is then a load of its key and an add to memory.
  const auto count = [t](const std::uint32_t* k) {
#pragma GCC unroll 64
    for (std::size_t j = 0; j < w; ++j) ++t[k[j]];
  };
  keys_of(in, keys[0]);
  unsigned cur = 0;
  for (std::size_t i = w; i < n; i += w) {
    keys_of(in + i, keys[cur ^ 1]);
    count(keys[cur]);
    cur ^= 1;
  }
  count(keys[cur]);
  top_ = std::max(top_, std::int32_t(_mm512_reduce_max_epu32(top)));
}
#else
constexpr std::size_t pipeline_width = 16;

template <bool List>
void key_counter::add_pipelined(const std::uint32_t* __restrict in, std::size_t n, const listing* l) {
  constexpr std::size_t w = pipeline_width;
  std::uint32_t* __restrict t = t_.data();
  if constexpr (List) list_each(*l, in, n);  // portable builds list in a loop of their own
  alignas(64) std::uint32_t keys[2][w];
  // The finite max rides along in the key loop, in w lanes (a vector register), reduced at the end.
  alignas(64) std::int32_t top[w] = {};
  unsigned cur = 0;
  for (std::size_t j = 0; j < w; ++j) {
    keys[0][j] = bucket_histogram::key(in[j]);
    top[j] = std::max(top[j], finite_magnitude(in[j]));
  }
  for (std::size_t i = w; i < n; i += w) {
    std::uint32_t* __restrict next = keys[cur ^ 1];
    const std::uint32_t* __restrict now = keys[cur];
    for (std::size_t j = 0; j < w; ++j) {
      next[j] = bucket_histogram::key(in[i + j]);
      top[j] = std::max(top[j], finite_magnitude(in[i + j]));
    }
    for (std::size_t j = 0; j < w; ++j) ++t[now[j]];
    cur ^= 1;
  }
  for (std::size_t j = 0; j < w; ++j) ++t[keys[cur][j]];
  for (std::size_t j = 0; j < w; ++j) top_ = std::max(top_, top[j]);
}
#endif

void key_counter::add(const std::uint32_t* __restrict in, std::size_t n, const listing* l) {
  if (n > spill_after) {  // a counter could wrap within this call: in halves
    for (std::size_t lo = 0; lo < n; lo += spill_after / 2) add(in + lo, std::min(spill_after / 2, n - lo), l);
    return;
  }
  if (since_spill_ + n > spill_after) spill();
  since_spill_ += n;
  std::uint32_t* __restrict t = t_.data();
  const auto one_by_one = [&](std::size_t from, std::size_t to) {
    for (std::size_t i = from; i < to; ++i) {
      ++t[bucket_histogram::key(in[i])];
      top_ = std::max(top_, finite_magnitude(in[i]));
    }
    if (l) list_each(*l, in + from, to - from);
  };
  // The pipelined loop starts at a 64-byte boundary, the values before it counted one by one.
  // Where it started with the array mattered by up to 1.7x on the Intel VM: 2e6 values (in
  // cache) took 1.85 ms with the data at 16 or 32 bytes past a 4 KiB page boundary and 1.1 ms at
  // 48, 64, 80 and more (summarize, 1 thread, best of 3 x 50 calls); from a 64-byte boundary,
  // 1.02-1.20 ms at all of them. (Presumably 4K aliasing between the vector loads and the key
  // buffer's stores; the VM shows no performance counters to confirm it.)
  const std::size_t head = std::min(n, (64 - reinterpret_cast<std::uintptr_t>(in) % 64) % 64 / 4);
  one_by_one(0, head);
  std::size_t i = head;
  if (n - head >= 2 * pipeline_width) {
    const std::size_t m = (n - head) / pipeline_width * pipeline_width;
    if (l)
      add_pipelined<true>(in + head, m, l);
    else
      add_pipelined<false>(in + head, m, nullptr);
    i += m;
  }
  one_by_one(i, n);
}

}  // namespace

std::uint32_t bucket_histogram::add_amax(std::span<const float> x, int threads) { return count(x, threads, nullptr); }

void bucket_histogram::add_listed(std::span<const float> x, const listing& l) { (void)count(x, 1, &l); }

std::uint32_t bucket_histogram::count(std::span<const float> x, int threads, const listing* l) {
  if (l && threads != 1) throw std::logic_error("bucket_histogram: a listing is counted on one thread");
  prefix_.clear();
  if (x.empty()) return 0;
  allocate();
  const auto* in = reinterpret_cast<const std::uint32_t*>(x.data());
  const std::size_t n = x.size();
  const int t = threads > 0 ? threads : (n >= parallel_threshold ? omp_get_max_threads() : 1);
  if (n < 4096) {
    // Straight into the table: a counter table of its own would cost more to clear and drain
    // than counting does (the recorder pays this per tensor, however small).
    std::uint64_t* __restrict c = counts_.data();
    std::int32_t top = 0;
    for (std::size_t i = 0; i < n; ++i) {
      ++c[key(in[i])];
      top = std::max(top, finite_magnitude(in[i]));
    }
    if (l) list_each(*l, in, n);
    return std::uint32_t(top);
  }
  if (t <= 1) {
    key_counter c;
    c.add(in, n, l);
    c.drain(counts_.data());
    return c.finite_max();
  }
  // Slices handed out dynamically (about 8 per thread, at most 2^20 values): on a shared machine
  // one core often runs slower than the other.
  const std::size_t slice = std::clamp<std::size_t>(n / (8 * std::size_t(t)), 4096, std::size_t{1} << 20);
  const std::size_t slices = (n + slice - 1) / slice;
  std::vector<std::vector<std::uint64_t>> part(std::size_t(t - 1));
  std::uint32_t top = 0;
#pragma omp parallel num_threads(t) reduction(max : top)
  {
    const int id = omp_get_thread_num();
    key_counter c;
#pragma omp for schedule(dynamic, 1) nowait
    for (std::size_t k = 0; k < slices; ++k) c.add(in + k * slice, std::min(slice, n - k * slice));
    top = c.finite_max();
    if (id == 0) {
      c.drain(counts_.data());
    } else {
      part[std::size_t(id - 1)].assign(bucket_count, 0);
      c.drain(part[std::size_t(id - 1)].data());
    }
  }
  for (const auto& p : part)
    if (!p.empty())
      for (std::uint32_t k = 0; k < bucket_count; ++k) counts_[k] += p[k];
  return top;
}

bool bucket_histogram::listing::place(std::span<const std::uint32_t> k, std::span<const std::uint32_t> t) {
  if (k.size() != t.size()) throw std::invalid_argument("bucket_histogram::listing::place: a top per key");
  for (unsigned a = 0; a < 16; ++a)
    for (unsigned b = a + 1; b <= 16; ++b) {  // b = 16: k >> 16 is 0, one shift
      std::array<std::uint32_t, 32> sk, st{};
      sk.fill(none);
      bool clash = false;
      for (std::size_t i = 0; i < k.size() && !clash; ++i) {
        const std::uint32_t at = ((k[i] >> a) ^ (k[i] >> b)) & 31;
        clash = sk[at] != none;
        sk[at] = k[i], st[at] = t[i];
      }
      if (!clash) {
        shift = a, shift2 = b, keys = sk, top = st;
        return true;
      }
    }
  return false;
}

void bucket_histogram::clear() {
  prefix_.clear();
  counts_.clear();
}

bucket_histogram& bucket_histogram::operator+=(const bucket_histogram& o) {
  prefix_.clear();
  if (o.counts_.empty()) return *this;
  allocate();
  for (std::uint32_t k = 0; k < bucket_count; ++k) counts_[k] += o.counts_[k];
  return *this;
}

std::uint64_t bucket_histogram::total() const {
  return std::accumulate(counts_.begin(), counts_.end(), std::uint64_t{0});
}

void bucket_histogram::prefix() const {
  if (!prefix_.empty()) return;
  prefix_.assign(2 * (per_sign + 1), 0);
  if (counts_.empty()) return;
  for (int s = 0; s < 2; ++s) {
    std::uint64_t* p = prefix_.data() + s * (per_sign + 1);
    const std::uint64_t* c = counts_.data() + s * per_sign;
    for (std::uint32_t k = 0; k < per_sign; ++k) p[k + 1] = p[k] + c[k];
  }
}

std::uint64_t bucket_histogram::below(int sign, std::uint32_t v) const {
  if (v < 0x80000000u && !is_edge(v)) throw std::logic_error("bucket_histogram::below: not a bucket edge");
  prefix();
  const std::uint32_t k = v >= 0x80000000u ? per_sign : key(v);
  return prefix_[std::size_t(sign) * (per_sign + 1) + k];
}

std::vector<std::pair<std::uint32_t, std::uint64_t>> bucket_histogram::sparse() const {
  std::vector<std::pair<std::uint32_t, std::uint64_t>> out;
  if (counts_.empty()) return out;
  // Zero blocks of 8 skipped with one vector OR: the recorder calls this once a tensor, and a
  // branch per bucket was half the fixed cost of a small tensor's summary (45 of 100 us).
  constexpr std::uint32_t block = 8;
  for (std::uint32_t b = 0; b < bucket_count; b += block) {
    std::uint64_t any = 0;
    for (std::uint32_t k = b; k < b + block; ++k) any |= counts_[k];
    if (any)
      for (std::uint32_t k = b; k < b + block; ++k)
        if (counts_[k]) out.emplace_back(k, counts_[k]);
  }
  return out;
}

void bucket_histogram::add_sparse(std::span<const std::pair<std::uint32_t, std::uint64_t>> buckets) {
  prefix_.clear();
  allocate();
  for (const auto& [k, n] : buckets) {
    if (k >= bucket_count) throw std::invalid_argument("bucket key " + std::to_string(k) + " out of range");
    counts_[k] += n;
  }
}

std::map<int, std::uint64_t> bucket_histogram::binades() const {
  std::map<int, std::uint64_t> out;
  if (counts_.empty()) return out;
  for (std::uint32_t k = 0; k < bucket_count; ++k)
    if (const auto e = binade_of_key(k); e && counts_[k]) out[*e] += counts_[k];
  return out;
}

// ---------------------------------------------------------------------------------------------
// class_counter

// Below 2^12 values a search among the sorted thresholds beats the bucket pass with its fixed
// costs (measured: tools/bench/RESULTS-hist.md; the histogram path wins from 2^12, 19x at 2^16).
class_counter::class_counter(std::vector<cast_spec> specs, std::uint64_t expected_size, int threads)
    : specs_(std::move(specs)), threads_(threads), searched32_(expected_size < (std::uint64_t{1} << 12)) {
  t32_.reserve(specs_.size());
  for (const auto& c : specs_) t32_.push_back(thresholds32(c));
  for (int s = 0; s < 2; ++s) {
    auto& a = e32_.at[s];
    a = {1, inf32};
    for (const auto& t : t32_) a.insert(a.end(), t.at[s].begin(), t.at[s].end());
    std::sort(a.begin(), a.end());
    a.erase(std::unique(a.begin(), a.end()), a.end());
    e32_.counts[s].assign(a.size() + 1, 0);
  }
}

void class_counter::reset(std::uint64_t expected_size) {
  searched32_ = expected_size < (std::uint64_t{1} << 12);
  histograms_ = false;
  hist_.clear();
  for (auto* e : {&e32_, &e64_})
    for (auto& c : e->counts) std::fill(c.begin(), c.end(), 0);
  binades_.clear();
  cut_.clear();
  planned_ = refined_ = false;
  fuse_ = fuse::unknown;
  added_ = false;
}

template <class T>
void class_counter::add_searched(std::span<const T> x, edges& e) {
  using U = typename detail::binary<T>::bits;
  for (const T v : x) {
    const U b = to_bits(v);
    const int s = int(b >> (sizeof(U) * 8 - 1));
    const U m = b & (~U(0) >> 1);
    const auto& a = e.at[s];
    const std::size_t i = std::size_t(std::upper_bound(a.begin(), a.end(), std::uint64_t(m)) - a.begin());
    ++e.counts[s][i];
    if (std::isfinite(v) && v != 0) ++binades_[std::ilogb(v)];
  }
}

void class_counter::add(std::span<const float> x) {
  if (!searched32_ && fusable()) {
    // The refine fused into the count: listing_ hands this counter the values of its cut
    // buckets as the pass reads them (this, not the counter it may have been copied from).
    listing_.ctx = this;
    hist_.add_listed(x, listing_);
    added_ = true;
    // A boundary left out of the plan (in float32's subnormals) inside a bucket that now holds
    // values: the separate refine pass after all, over every value (the listed ones are
    // counted again from scratch).
    for (const auto& [sign, v] : unplanned_)
      if (inside(sign, v)) {
        fuse_ = fuse::no;
        planned_ = refined_ = false;
        break;
      }
    return;
  }
  added_ = true;
  planned_ = refined_ = false;
  if (searched32_)
    add_searched(x, e32_);
  else
    hist_.add(x, threads_);
}

// On one thread, with no recorded histograms, when the buckets that boundaries fall inside
// (whatever the values) fit a listing: then the refine is planned from the specs alone, before
// any value is read, and fused into the counting pass. A bucket planned that holds no value
// adds nothing, so the counts are those of the refine pass. (-s 3 and other scales that are not
// powers of two have a few such boundaries per spec; the pass on its own read the 4 MB chunk
// again, from L3.) Boundaries in float32's subnormals are left out of the plan: bf16 has them
// at every scale from 1 up, where gradients seldom have values, and listing those empty buckets
// cost the bf16 sweep 1.4x the counting pass; add() falls back to the separate pass in the rare
// case that one of them holds values.
bool class_counter::fusable() {
  if (fuse_ == fuse::unknown) {
    fuse_ = fuse::no;
    if (threads_ == 1 && !histograms_ && !added_) {  // decided before the first value
      plan_refine(true);
      if (!cut_.empty() && listed_) {
        fuse_ = fuse::yes;
        refined_ = true;  // by the adds themselves, as they count
      } else {
        planned_ = false;
      }
    }
  }
  return fuse_ == fuse::yes;
}

void class_counter::list_hits(void* ctx, const std::uint32_t* bits, std::size_t n) {
  auto& c = *static_cast<class_counter*>(ctx);
  for (std::size_t i = 0; i < n; ++i) ++c.hits_[c.slot(bucket_histogram::key(bits[i]), bits[i] & 0x7FFFFFFFu)];
}

void class_counter::add(std::span<const double> x) {
  if (t64_.empty() && !specs_.empty()) {
    for (const auto& c : specs_) t64_.push_back(thresholds64(c));
    for (int s = 0; s < 2; ++s) {
      auto& a = e64_.at[s];
      a = {1, inf64};
      for (const auto& t : t64_) a.insert(a.end(), t.at[s].begin(), t.at[s].end());
      std::sort(a.begin(), a.end());
      a.erase(std::unique(a.begin(), a.end()), a.end());
      e64_.counts[s].assign(a.size() + 1, 0);
    }
  }
  if (specs_.empty()) {
    for (const double v : x)
      if (std::isfinite(v) && v != 0) ++binades_[std::ilogb(v)];
    return;
  }
  add_searched(x, e64_);
}

void class_counter::plan_refine(bool by_spec) {
  cut_.clear(), first_.clear(), hits_.clear(), rank_.clear(), top_.clear(), unplanned_.clear();
  marked_.assign(bucket_histogram::bucket_count / 64, 0);
  planned_ = true;
  if (searched32_) return;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> cuts;  // (key, boundary)
  for (std::size_t i = 0; i < t32_.size(); ++i)
    if (!loose(i))
      for (std::uint32_t s = 0; s < 2; ++s)
        for (const std::uint32_t v : t32_[i].at[s])
          if (by_spec ? !bucket_histogram::is_edge(v) : inside(s, v)) {
            if (by_spec && v < 0x00800000u)
              unplanned_.emplace_back(s, v);  // float32 subnormal: fusable() says why
            else
              cuts.emplace_back(bucket_histogram::key(s << 31 | v), v);
          }
  if (cuts.empty()) return;
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  for (std::size_t i = 0; i < cuts.size(); ++i) {
    const std::uint32_t k = cuts[i].first;
    if (i == 0 || k != cuts[i - 1].first) {
      first_.push_back(std::uint32_t(cut_.size()));
      marked_[k / 64] |= std::uint64_t{1} << (k % 64);
    }
    cut_.push_back(cuts[i].second);
  }
  first_.push_back(std::uint32_t(cut_.size()));
  hits_.assign(cut_.size() + first_.size() - 1, 0);
  rank_.assign(marked_.size(), 0);
  for (std::size_t i = 1; i < marked_.size(); ++i)
    rank_[i] = std::uint16_t(rank_[i - 1] + std::popcount(marked_[i - 1]));
  // Each marked bucket's key and largest boundary, as a listing when its slots can take them
  // (the fused refine needs it; the refine pass uses it instead of gathering top_).
  listing_ = {};
  listing_.sink = &class_counter::list_hits;
  std::vector<std::uint32_t> keys, top;
  for (std::size_t i = 0; i < cuts.size(); ++i)
    if (i + 1 == cuts.size() || cuts[i + 1].first != cuts[i].first)
      keys.push_back(cuts[i].first), top.push_back(cuts[i].second);
  listed_ = keys.size() <= 32 && listing_.place(keys, top);
  if (by_spec) return;
  top_.assign(bucket_histogram::bucket_count, 0);
  for (std::size_t i = 0; i < cuts.size(); ++i) top_[cuts[i].first] = cuts[i].second;  // ascending: the last wins
}

bool class_counter::needs_refine() {
  if (!planned_) plan_refine();
  return !cut_.empty() && !refined_ && !histograms_;
}

void class_counter::add_histogram(std::span<const std::pair<std::uint32_t, std::uint64_t>> buckets) {
  if (searched32_) {
    if (std::any_of(e32_.counts.begin(), e32_.counts.end(),
                    [](const auto& c) { return std::any_of(c.begin(), c.end(), [](auto n) { return n != 0; }); }))
      throw std::logic_error("class_counter: histograms and searched values do not mix");
    searched32_ = false;
  }
  planned_ = refined_ = false;
  fuse_ = fuse::no;  // a boundary inside a recorded bucket stays unresolved, as without the fusion
  histograms_ = true;
  hist_.add_sparse(buckets);
}

bool class_counter::exact() {
  if (!planned_) plan_refine();
  return !histograms_ || cut_.empty();
}

void class_counter::set_loose(std::vector<char> loose) {
  loose_ = std::move(loose);
  planned_ = refined_ = false;
  // Values already listed were listed for the old boundaries: the refine pass then takes them all.
  fuse_ = added_ ? fuse::no : fuse::unknown;
}

std::uint64_t class_counter::uncertain(std::size_t i) const {
  if (searched32_ || (!histograms_ && !loose(i))) return 0;
  std::uint64_t n = 0;
  for (std::uint32_t s = 0; s < 2; ++s) {
    std::uint32_t last = ~0u;  // each bucket once, however many of the (ascending) boundaries it holds
    for (const std::uint32_t v : t32_.at(i).at[s]) {
      const std::uint32_t k = bucket_histogram::key(s << 31 | v);
      if (inside(s, v) && k != last) n += hist_[k], last = k;
    }
  }
  return n;
}

bool class_counter::holds_subnormals() const {
  // Exponent field 0: the first binade's buckets of each sign, less key 0 (zero alone).
  for (std::uint32_t s = 0; s < 2; ++s)
    for (std::uint32_t k = 1; k < bucket_histogram::per_binade; ++k)
      if (hist_[s * bucket_histogram::per_sign + k] != 0) return true;
  return false;
}

bool class_counter::exact(std::size_t i) const {
  if (!histograms_ && !loose(i)) return true;
  for (std::uint32_t s = 0; s < 2; ++s)
    for (const std::uint32_t v : t32_.at(i).at[s])
      if (inside(s, v)) return false;
  return true;
}

// Keys a block at a time (a vector loop), then the values of marked buckets below the bucket's
// largest boundary one by one. Only those are needed: a value at or above every boundary of its
// bucket counts in the bucket's last slot, which refined_below never reads (the values below a
// boundary are the slots before it). That matters where a boundary sits near the bottom of a
// well-filled bucket: bf16 at scales that push x * S into float32 subnormals puts its underflow
// boundary at 1 + 2^-16 + ulp of a bucket that holds a quarter of each binade, and almost none
// of those values are below it. Any format at S = 3 still lists many.
void class_counter::refine_range(const std::uint32_t* in, std::size_t n, std::uint64_t* hits) const {
  constexpr std::size_t w = 256;
  alignas(64) std::uint32_t keys[w], at[w + 16];
  const std::uint32_t* top = top_.data();
  for (std::size_t lo = 0; lo < n; lo += w) {
    const std::size_t m = std::min(w, n - lo);
    std::size_t q = 0;
#if defined(__AVX512F__) && defined(__AVX512CD__)
    for (; q + 16 <= m; q += 16) {
      __builtin_prefetch(in + lo + q + 512);  // 2 KiB ahead, as the counting pass
      _mm512_store_si512(keys + q, bucket_keys16(_mm512_loadu_si512(in + lo + q)));
    }
#endif
    for (; q < m; ++q) keys[q] = bucket_histogram::key(in[lo + q]);
    // The values below their bucket's largest boundary (0 for an unmarked bucket), listed
    // without a branch (which the data would mispredict): with AVX-512, 16 keys' boundaries at
    // once (from the listing, or gathered: the keys the data uses are a few KB of the table, in
    // L1) and the listed positions compress-stored at once; the scalar loop does the rest.
    std::size_t listed = 0, p = 0;
#if defined(__AVX512F__) && defined(__AVX512CD__)  // listing_slots, as bucket_keys16
    {
      const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
      const __m512i abs = _mm512_set1_epi32(0x7FFFFFFF);
      const listing_slots slots(listing_);
      for (; p + 16 <= m; p += 16) {
        const __m512i k = _mm512_load_si512(keys + p);
        const __m512i mag = _mm512_and_si512(_mm512_loadu_si512(in + lo + p), abs);
        // Up to 32 marked buckets (whether is the spec's, not the data's: no misprediction):
        // from the listing's slots; more, gathered from top_ (0 for an unmarked bucket).
        const __mmask16 hit =
            listed_ ? slots.below_top(k, mag) : _mm512_cmplt_epu32_mask(mag, _mm512_i32gather_epi32(k, top, 4));
        // Compressed in a register and stored whole (a masked compress-store to memory is slow
        // on Intel); `at` has room for the 16 lanes past the last listed.
        _mm512_storeu_si512(at + listed, _mm512_maskz_compress_epi32(hit, _mm512_add_epi32(lanes, _mm512_set1_epi32(int(p)))));
        listed += std::size_t(std::popcount(unsigned(hit)));
      }
    }
#endif
    for (; p < m; ++p) {
      at[listed] = std::uint32_t(p);
      listed += (in[lo + p] & 0x7FFFFFFFu) < top[keys[p]];
    }
    for (std::size_t l = 0; l < listed; ++l) {
      const std::uint32_t j = at[l];
      ++hits[slot(keys[j], in[lo + j] & 0x7FFFFFFFu)];
    }
  }
}

void class_counter::refine(std::span<const float> x) {
  if (fuse_ == fuse::yes) return;  // the adds listed every value the pass would
  if (!planned_) plan_refine();
  if (cut_.empty()) return;
  const auto* in = reinterpret_cast<const std::uint32_t*>(x.data());
  const std::size_t n = x.size();
  const int t = threads_ > 0 ? threads_ : (n >= parallel_threshold ? omp_get_max_threads() : 1);
  if (t <= 1 || n < 4096) {
    refine_range(in, n, hits_.data());
  } else {
    // Slices handed out dynamically, hits per thread, added up after (as bucket_histogram::add).
    const std::size_t slice = std::clamp<std::size_t>(n / (8 * std::size_t(t)), 4096, std::size_t{1} << 20);
    const std::size_t slices = (n + slice - 1) / slice;
    std::vector<std::vector<std::uint64_t>> part(std::size_t(t), std::vector<std::uint64_t>(hits_.size(), 0));
#pragma omp parallel for schedule(dynamic, 1) num_threads(t)
    for (std::size_t k = 0; k < slices; ++k)
      refine_range(in + k * slice, std::min(slice, n - k * slice), part[std::size_t(omp_get_thread_num())].data());
    for (const auto& p : part)
      for (std::size_t i = 0; i < p.size(); ++i) hits_[i] += p[i];
  }
  refined_ = true;
}

// Values of the bucket `key` below its boundary v (an entry of cut_): the slots of fewer than
// (v's place + 1) boundaries.
std::uint64_t class_counter::refined_below(std::uint32_t key, std::uint32_t v) const {
  if (rank_.empty() || !(marked_[key / 64] >> (key % 64) & 1)) return 0;
  const std::uint32_t b = rank_[key / 64] + std::uint32_t(std::popcount(marked_[key / 64] & ((std::uint64_t{1} << (key % 64)) - 1)));
  std::uint64_t n = 0;
  for (std::uint32_t i = first_[b]; i < first_[b + 1]; ++i) {
    n += hits_[first_[b] + b + (i - first_[b])];
    if (cut_[i] == v) return n;
  }
  return 0;  // not a boundary of this bucket: never asked
}

std::vector<class_counts> class_counter::counts() {
  if (needs_refine()) throw std::logic_error("class_counter::counts: the refine pass is missing");
  std::vector<class_counts> out(specs_.size());
  // Elements below each edge of a searched set, per sign.
  std::array<std::vector<std::uint64_t>, 2> p32, p64;
  std::array<std::uint64_t, 2> n32{}, n64{};
  for (int s = 0; s < 2; ++s) {
    p32[s].assign(e32_.counts[s].size(), 0);
    std::partial_sum(e32_.counts[s].begin(), e32_.counts[s].end(), p32[s].begin());
    n32[s] = p32[s].back();
    p64[s].assign(e64_.counts[s].size(), 0);
    std::partial_sum(e64_.counts[s].begin(), e64_.counts[s].end(), p64[s].begin());
    n64[s] = p64[s].empty() ? 0 : p64[s].back();
  }
  const auto searched_below = [](const std::vector<std::uint64_t>& at, const std::vector<std::uint64_t>& p,
                                 std::uint64_t v) {
    const std::size_t j = std::size_t(std::lower_bound(at.begin(), at.end(), v) - at.begin());
    return p[j];  // values with fewer than j+1 edges <= them, i.e. below at[j]
  };
  for (std::size_t i = 0; i < specs_.size(); ++i) {
    for (int s = 0; s < 2; ++s) {
      if (searched32_) {
        add_sign<std::uint32_t>(out[i], t32_[i].at[s], 1u, inf32, n32[s],
                                [&](std::uint32_t v) { return searched_below(e32_.at[s], p32[s], v); });
      } else {
        const std::uint64_t total = hist_.below(s, 0x80000000u);
        add_sign<std::uint32_t>(out[i], t32_[i].at[s], 1u, inf32, total, [&](std::uint32_t v) {
          if (bucket_histogram::is_edge(v)) return hist_.below(s, v);
          const std::uint64_t whole = hist_.below(s, bucket_histogram::lowest(bucket_histogram::key(v)));
          return whole + refined_below(bucket_histogram::key(std::uint32_t(s) << 31 | v), v);
        });
      }
      if (!t64_.empty())
        add_sign<std::uint64_t>(out[i], t64_[i].at[s], 1u, inf64, n64[s],
                                [&](std::uint64_t v) { return searched_below(e64_.at[s], p64[s], v); });
    }
  }
  return out;
}

std::map<int, std::uint64_t> class_counter::binades() const {
  auto out = searched32_ ? std::map<int, std::uint64_t>{} : hist_.binades();
  for (const auto& [b, n] : binades_) out[b] += n;
  return out;
}

// ---------------------------------------------------------------------------------------------
// counts straight from a sparse histogram

std::vector<class_counts> count_histogram(std::span<const std::pair<std::uint32_t, std::uint64_t>> buckets,
                                          std::span<const cast_thresholds<std::uint32_t>> thresholds,
                                          std::vector<char>& inexact) {
  std::vector<std::pair<std::uint32_t, std::uint64_t>> b(buckets.begin(), buckets.end());
  for (const auto& [k, n] : b)
    if (k >= bucket_histogram::bucket_count) throw std::invalid_argument("bucket key " + std::to_string(k) + " out of range");
  if (!std::is_sorted(b.begin(), b.end())) std::sort(b.begin(), b.end());
  // prefix[i]: elements in buckets b[0 .. i).
  std::vector<std::uint64_t> prefix(b.size() + 1, 0);
  for (std::size_t i = 0; i < b.size(); ++i) prefix[i + 1] = prefix[i] + b[i].second;
  const auto first_at = [&](std::uint32_t key) {
    return std::size_t(std::lower_bound(b.begin(), b.end(), std::pair<std::uint32_t, std::uint64_t>{key, 0}) - b.begin());
  };
  const std::size_t sign_at[3] = {0, first_at(bucket_histogram::per_sign), b.size()};
  // Elements of sign s whose bucket lies below v's: a boundary inside a bucket counts it above.
  const auto below = [&](int s, std::uint32_t v) {
    const std::size_t end = v >= 0x80000000u ? sign_at[s + 1] : first_at(bucket_histogram::key(std::uint32_t(s) << 31 | v));
    return prefix[end] - prefix[sign_at[s]];
  };
  const auto holds = [&](std::uint32_t key) {
    const std::size_t i = first_at(key);
    return i < b.size() && b[i].first == key && b[i].second != 0;
  };
  std::vector<class_counts> out(thresholds.size());
  inexact.resize(thresholds.size(), 0);
  for (std::size_t i = 0; i < thresholds.size(); ++i)
    for (int s = 0; s < 2; ++s) {
      add_sign<std::uint32_t>(out[i], thresholds[i].at[std::size_t(s)], 1u, inf32, below(s, 0x80000000u),
                              [&](std::uint32_t v) { return below(s, v); });
      for (const std::uint32_t v : thresholds[i].at[std::size_t(s)])
        if (!bucket_histogram::is_edge(v) && holds(bucket_histogram::key(std::uint32_t(s) << 31 | v))) inexact[i] = 1;
    }
  return out;
}

std::map<int, std::uint64_t> histogram_binades(std::span<const std::pair<std::uint32_t, std::uint64_t>> buckets) {
  std::map<int, std::uint64_t> out;
  for (const auto& [k, n] : buckets)
    if (const auto e = binade_of_key(k); e && n) out[*e] += n;
  return out;
}

// ---------------------------------------------------------------------------------------------

template <class T>
static std::vector<class_counts> reference_of(std::span<const T> x, std::span<const cast_spec> specs) {
  std::vector<class_counts> out(specs.size());
  for (std::size_t i = 0; i < specs.size(); ++i) {
    check(specs[i]);
    for (const T v : x) ++out[i][classify_cast(v, specs[i])];
  }
  return out;
}

std::vector<class_counts> count_reference(std::span<const float> x, std::span<const cast_spec> specs) {
  return reference_of(x, specs);
}
std::vector<class_counts> count_reference(std::span<const double> x, std::span<const cast_spec> specs) {
  return reference_of(x, specs);
}

double error_stats::mean_rel() const { return n ? sum_rel / double(n) : std::nan(""); }

double error_stats::sqnr_db() const {
  if (!n) return std::nan("");
  if (noise == 0) return INFINITY;
  return 10 * std::log10(signal / noise);
}

error_stats& error_stats::operator+=(const error_stats& o) {
  n += o.n;
  sum_rel += o.sum_rel;
  max_rel = std::max(max_rel, o.max_rel);
  signal += o.signal;
  noise += o.noise;
  return *this;
}

void accumulate_errors(std::span<const float> x, const cast_spec& c, error_stats& e) {
  error_tally t({c});
  t.add(x);
  e += t.stats().front();
}
void accumulate_errors(std::span<const double> x, const cast_spec& c, error_stats& e) {
  error_tally t({c});
  t.add(x);
  e += t.stats().front();
}

}  // namespace fpscope
