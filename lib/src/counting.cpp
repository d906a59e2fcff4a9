#include "fpscope/counting.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <exception>
#include <mutex>
#include <omp.h>
#include <stdexcept>
#include <type_traits>

#include "fpscope/convert.hpp"
#include "fpscope/detail/round_pack.hpp"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__)
#define FPSCOPE_ERRORS_AVX512 1
// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized inside themselves (as in histogram.cpp).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

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
void cast_codes(std::span<const float> y, Code* codes, float* q, const cast_spec& c) {
  const bulk_options one{1.0, 0, 1};
  const std::size_t n = y.size();
  encode(y, std::span<Code>(codes, n), c.fmt, c.pol, one);
  decode(std::span<const Code>(codes, n), std::span<float>(q, n), c.fmt);
}

// A code buffer per storage width (no aliasing of one array), for a block.
struct code_buffers {
  alignas(64) std::uint32_t c32[error_block];
  alignas(64) std::uint16_t c16[error_block];
  alignas(64) std::uint8_t c8[error_block];
};

// The decoded casts q of a block y (at most error_block values) of spec c.
void cast_block(std::span<const float> y, code_buffers& b, float* q, const cast_spec& c) {
  switch (c.fmt.storage_bytes()) {
    case 1: cast_codes(y, b.c8, q, c); break;
    case 2: cast_codes(y, b.c16, q, c); break;
    default: cast_codes(y, b.c32, q, c);
  }
}

#if defined(FPSCOPE_ERRORS_AVX512)
// 1/m of 8 doubles m (normal, as are their reciprocals: the integer significands 2^23 <= m <
// 2^24 or float32 normals) within 2^-52.8 of itself: vrcp14pd (relative error below 2^-14),
// then two Newton steps r + r (1 - m r), each an fma for the residual (|1 - m r| <= 2^-14: its
// rounding is below 2^-67) and one for the update; the second leaves 2^-56 of the truncation
// plus the update's rounding, half an ulp. A division costs far more where the CPU
// has one 512-bit divider.
[[gnu::always_inline]] inline __m512d reciprocal(__m512d m) {
  const __m512d one = _mm512_set1_pd(1.0);
  __m512d r = _mm512_rcp14_pd(m);
  r = _mm512_fmadd_pd(r, _mm512_fnmadd_pd(m, r, one), r);
  return _mm512_fmadd_pd(r, _mm512_fnmadd_pd(m, r, one), r);
}


// r_d(m) of 16 24-bit significands m (neg: all ones in the lanes of negative values) at d
// dropped bits per lane (1 .. 23), as detail::round_significand(m, d, rm, neg, 0) << d computes
// it, for every rounding but sr (which never has a group).
[[gnu::always_inline]] inline __m512i round16(__m512i m, __m512i neg, rounding rm, __m512i d) {
  const __m512i one = _mm512_set1_epi32(1);
  const __m512i low = _mm512_sub_epi32(_mm512_sllv_epi32(one, d), one);
  const __m512i half = _mm512_sllv_epi32(one, _mm512_sub_epi32(d, one));
  __m512i bias;
  switch (rm) {
    case rounding::rne:
      bias = _mm512_add_epi32(_mm512_sub_epi32(half, one), _mm512_and_si512(_mm512_srlv_epi32(m, d), one));
      break;
    case rounding::rna: bias = half; break;
    case rounding::rup: bias = _mm512_andnot_si512(neg, low); break;
    case rounding::rdn: bias = _mm512_and_si512(neg, low); break;
    case rounding::rto: {
      const __m512i t = _mm512_srlv_epi32(_mm512_add_epi32(_mm512_and_si512(m, low), low), d);
      return _mm512_sllv_epi32(_mm512_or_si512(_mm512_srlv_epi32(m, d), t), d);
    }
    default: bias = _mm512_setzero_si512();  // rtz
  }
  return _mm512_andnot_si512(low, _mm512_add_epi32(m, bias));
}

// |r_d(m) - m| of 16 float32 bit patterns u at d dropped bits per lane, and their halves as
// doubles (exact: below 2^23).
struct abs_errors16 {
  __m512d h[2];
};
[[gnu::always_inline]] inline abs_errors16 abs_errors(__m512i u, rounding rm, __m512i d) {
  const __m512i m = _mm512_or_si512(_mm512_and_si512(u, _mm512_set1_epi32(0x7FFFFF)), _mm512_set1_epi32(0x800000));
  const __m512i ad = _mm512_abs_epi32(_mm512_sub_epi32(round16(m, _mm512_srai_epi32(u, 31), rm, d), m));
  return {{_mm512_cvtepi32_pd(_mm512_castsi512_si256(ad)), _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(ad, 1))}};
}
#endif

// ---- error statistics per binade (docs/hist.md "Error statistics": why this is exact) ----
//
// Where a float32 binade 2^e .. 2^(e+1) scales (by a power of two S) exactly into one binade of
// the format, normal or subnormal, the cast rounds x * S's 24-bit significand m by dropping the
// same number d of bits for every x of the binade, and q / S - x = (r(m) - m) 2^(e-150), r the
// rounding of round_significand (round_pack.hpp, the one place the engine rounds), which
// involves S only through d. So these sums are taken once per (binade, rounding, d), from
// integers: |r(m) - m| and its square exactly, the relative error |r(m) - m| * (1/m) with two
// roundings.

constexpr std::size_t binade_lanes = 8;
// Values sorted by binade at once: 4x the bulk conversion's block, so that the counting sort's
// fixed cost (its 512 counters) is spread over more values and the runs are longer. A run then
// holds at most 2^14 + 7 values, at most 2049 per lane.
constexpr std::size_t binade_block = std::size_t{1} << 14;

// The sums of one slot over a run of float32 bit patterns of one sign and exponent field: the
// squared errors in units of 2^(2(e-150)) (each < 2^46: exact; summed in double), the
// relative errors and their max. Each of the 8 lanes sums at most 2049 nonnegative terms, then
// the lanes are added: the sums err by at most (2048 + 7) 2^-53 < 2^-41.9 of themselves.
template <rounding Rm>
void binade_run(const std::uint32_t* b, const double* inv, std::size_t n, int dropped, std::uint32_t neg,
                double& d2, double& rel, double& mx) {
#if defined(FPSCOPE_ERRORS_AVX512)
  // 16 values at a time (GCC keeps the loop below in 256-bit vectors on Intel): 16 lanes of at
  // most 1025 terms each.
  (void)neg;  // the run's sign is in its bits
  const __m512i d = _mm512_set1_epi32(dropped);
  __m512d s0 = _mm512_setzero_pd(), s1 = s0, r0 = s0, r1 = s0, m0 = s0, m1 = s0;
  for (std::size_t i = 0; i < n; i += 16) {
    // n is a multiple of 8: the upper half of the last step may be past the run. Its lanes
    // load 0, which rounds exactly (no error) and reads 1/m as 0.
    const __mmask16 valid = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16(0xFF);
    const abs_errors16 a = abs_errors(_mm512_maskz_loadu_epi32(valid, b + i), Rm, d);
    const __m512d q0 = _mm512_mul_pd(a.h[0], _mm512_loadu_pd(inv + i));
    const __m512d q1 = _mm512_mul_pd(a.h[1], _mm512_maskz_loadu_pd(__mmask8(valid >> 8), inv + i + 8));
    s0 = _mm512_fmadd_pd(a.h[0], a.h[0], s0);  // < 2^46: exact before the add
    s1 = _mm512_fmadd_pd(a.h[1], a.h[1], s1);
    r0 = _mm512_add_pd(r0, q0), r1 = _mm512_add_pd(r1, q1);
    m0 = _mm512_max_pd(m0, q0), m1 = _mm512_max_pd(m1, q1);
  }
  d2 = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
  rel = _mm512_reduce_add_pd(_mm512_add_pd(r0, r1));
  mx = _mm512_reduce_max_pd(_mm512_max_pd(m0, m1));
  return;
#endif
  // n is a multiple of the lanes (runs are padded with exact values, contributing 0), so no
  // scalar tail: runs are short, a few hundred values.
  double s2[binade_lanes] = {}, sr[binade_lanes] = {}, m[binade_lanes] = {};
  for (std::size_t i = 0; i < n; i += binade_lanes)
#pragma omp simd
    for (std::size_t l = 0; l < binade_lanes; ++l) {
      const std::uint32_t sig = (b[i + l] & 0x7FFFFFu) | 0x800000u;
      const std::uint32_t r = detail::round_significand<std::uint32_t>(sig, dropped, Rm, neg, 0) << dropped;
      const std::uint32_t ad = r > sig ? r - sig : sig - r;
      const double da = double(std::int32_t(ad)), rl = da * inv[i + l];
      s2[l] = std::fma(da, da, s2[l]);  // da^2 < 2^46: exact before the add
      sr[l] += rl;
      m[l] = m[l] > rl ? m[l] : rl;
    }
  d2 = 0, rel = 0, mx = 0;
  for (std::size_t l = 0; l < binade_lanes; ++l) d2 += s2[l], rel += sr[l], mx = std::max(mx, m[l]);
}

// The sums of one spec over a run of one binade that its thresholds cut (kind 3): as
// binade_run, each value where lo <= |bits| < hi and it is one of the run's c values (not
// padding), with the count and the exact integer sum of m^2 of those.
template <rounding Rm>
void masked_run(const std::uint32_t* b, const double* inv, std::size_t c, std::size_t n, int dropped, std::uint32_t neg,
                std::uint32_t lo, std::uint32_t hi, error_tally::sums& out, double unit2) {
  double s2[binade_lanes] = {}, sr[binade_lanes] = {}, m[binade_lanes] = {};
  std::uint64_t x2[binade_lanes] = {}, cnt[binade_lanes] = {};
  for (std::size_t i = 0; i < n; i += binade_lanes)
#pragma omp simd
    for (std::size_t l = 0; l < binade_lanes; ++l) {
      // Selects by masks and multiplies by 0 or 1 (exact), so that the loop vectorises.
      const std::uint32_t u = b[i + l], mag = u & 0x7FFFFFFFu;
      const std::uint32_t w = std::uint32_t(i + l < c) & std::uint32_t(mag >= lo) & std::uint32_t(mag < hi);
      const std::uint32_t sig = (u & 0x7FFFFFu) | 0x800000u, sw = sig & (0u - w);
      const std::uint32_t r = detail::round_significand<std::uint32_t>(sig, dropped, Rm, neg, 0) << dropped;
      const std::uint32_t ad = (r > sig ? r - sig : sig - r) & (0u - w);
      const double da = double(std::int32_t(ad)), rl = da * inv[i + l];
      s2[l] += da * da;  // da < 2^24: da^2 exact; 0 where the value does not count
      sr[l] += rl;
      m[l] = m[l] > rl ? m[l] : rl;
      x2[l] += std::uint64_t(sw) * sw;
      cnt[l] += w;
    }
  double d2 = 0, rel = 0, mx = 0;
  std::uint64_t q2 = 0, k = 0;
  for (std::size_t l = 0; l < binade_lanes; ++l)
    d2 += s2[l], rel += sr[l], mx = std::max(mx, m[l]), q2 += x2[l], k += cnt[l];
  out.n += k;
  out.rel.add(rel);
  out.noise.add(d2 * unit2);
  out.signal.add(double(q2) * unit2);
  out.max_rel = std::max(out.max_rel, mx);
}

void masked_sums_of(rounding rm, const std::uint32_t* b, const double* inv, std::size_t c, std::size_t n, int dropped,
                    std::uint32_t neg, std::uint32_t lo, std::uint32_t hi, error_tally::sums& out, double unit2) {
  switch (rm) {
    case rounding::rne: return masked_run<rounding::rne>(b, inv, c, n, dropped, neg, lo, hi, out, unit2);
    case rounding::rtz: return masked_run<rounding::rtz>(b, inv, c, n, dropped, neg, lo, hi, out, unit2);
    case rounding::rup: return masked_run<rounding::rup>(b, inv, c, n, dropped, neg, lo, hi, out, unit2);
    case rounding::rdn: return masked_run<rounding::rdn>(b, inv, c, n, dropped, neg, lo, hi, out, unit2);
    case rounding::rna: return masked_run<rounding::rna>(b, inv, c, n, dropped, neg, lo, hi, out, unit2);
    case rounding::rto: return masked_run<rounding::rto>(b, inv, c, n, dropped, neg, lo, hi, out, unit2);
    case rounding::sr: break;
  }
  throw std::logic_error("error_tally: stochastic rounding has no per-binade sums");
}

void binade_sums_of(rounding rm, const std::uint32_t* b, const double* inv, std::size_t n, int dropped,
                    std::uint32_t neg, double& d2, double& rel, double& mx) {
  switch (rm) {
    case rounding::rne: return binade_run<rounding::rne>(b, inv, n, dropped, neg, d2, rel, mx);
    case rounding::rtz: return binade_run<rounding::rtz>(b, inv, n, dropped, neg, d2, rel, mx);
    case rounding::rup: return binade_run<rounding::rup>(b, inv, n, dropped, neg, d2, rel, mx);
    case rounding::rdn: return binade_run<rounding::rdn>(b, inv, n, dropped, neg, d2, rel, mx);
    case rounding::rna: return binade_run<rounding::rna>(b, inv, n, dropped, neg, d2, rel, mx);
    case rounding::rto: return binade_run<rounding::rto>(b, inv, n, dropped, neg, d2, rel, mx);
    case rounding::sr: break;  // never given a slot: the draw depends on the element, not the value
  }
  throw std::logic_error("error_tally: stochastic rounding has no per-binade sums");
}

template <class T>
std::vector<class_counts> count_array(std::span<const T> x, std::span<const cast_spec> specs, int threads) {
  class_tally t({specs.begin(), specs.end()}, x.size());
  t.add_parallel(x, threads);
  return t.counts();
}

}  // namespace

class_tally::class_tally(std::vector<cast_spec> specs, std::uint64_t expected_size, std::vector<char> loose)
    : proto_(std::move(specs), expected_size, 1),
      expected_(expected_size),
      counts_(proto_.specs().size()),
      inexact_(proto_.specs().size(), 0),
      loose_(std::move(loose)),
      uncertain_(proto_.specs().size(), 0) {
  if (!loose_.empty() && loose_.size() != proto_.specs().size())
    throw std::invalid_argument("class_tally: `loose` needs one entry per spec");
  thresholds_.reserve(proto_.specs().size());
  for (std::size_t i = 0; i < proto_.specs().size(); ++i) thresholds_.push_back(proto_.thresholds(i));
  proto_.set_loose(loose_);
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
  // A chunk with float32 subnormals is counted exactly throughout: their buckets are coarse,
  // and loose counts of them would leave many scales to count again.
  if (!loose_.empty() && cc.holds_subnormals()) cc.set_loose({});
  if (cc.needs_refine()) cc.refine(x);
  merge(cc.counts(), cc.binades(), x.size());
  if (loose_.empty()) return;
  std::vector<std::uint64_t> u(loose_.size(), 0);
  for (std::size_t i = 0; i < u.size(); ++i)
    if (loose_[i]) u[i] = cc.uncertain(i);
  const std::lock_guard lock(m_);
  for (std::size_t i = 0; i < u.size(); ++i) uncertain_[i] += u[i], inexact_[i] |= u[i] != 0;
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

std::uint64_t class_tally::uncertain(std::size_t spec) const {
  const std::lock_guard lock(m_);
  return uncertain_.at(spec);
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

void error_tally::sums::add(const sums& o) {
  n += o.n;
  rel.add(o.rel), signal.add(o.signal), noise.add(o.noise);
  max_rel = std::max(max_rel, o.max_rel);
}

error_tally::error_tally(std::vector<cast_spec> specs, method how)
    : specs_(std::move(specs)), per_binade_(specs_.size(), 0), kind_(specs_.size()), slot_of_(specs_.size()),
      total_(specs_.size()) {
  t32_.reserve(specs_.size());
  for (const auto& c : specs_) t32_.push_back(thresholds32(c));
  // Which binades each spec takes from the per-binade sums: at a power-of-two scale S = 2^ks,
  // under a rounding that depends on the value alone, a binade (sign, exponent field e) whose
  // values all count (the thresholds: the class is monotone in |x|) and scale exactly (x * S a
  // float32 normal: 1 <= e + ks <= 254). x * S then lies in one binade 2^E of the format: at
  // or above its smallest normal 2^emin the cast drops 23 - man_bits bits of the significand,
  // below it (subnormal results, without ftz) emin - E more. The binades that hold counted
  // values and are not taken so go through the bulk conversion.
  for (std::size_t r = 0; r < specs_.size(); ++r) {
    const cast_spec& c = specs_[r];
    const std::uint32_t sb = std::bit_cast<std::uint32_t>(c.scale);
    const int se = int(sb >> 23), dropped = 23 - c.fmt.man_bits;
    auto& kind = kind_[r];
    kind.fill(2);
    slot_of_[r].fill(-1);
    if ((sb & 0x7FFFFFu) != 0 || se < 1 || se > 254 || c.pol.round == rounding::sr || dropped < 1 || dropped > 23) continue;
    const int ks = se - 127;
    for (std::size_t k = 0; k < binades; ++k) {
      const auto& t = t32_[r].at[k >> 8];
      const int e = int(k & 0xFF);
      const std::uint32_t lo = std::uint32_t(e) << 23, hi = lo | 0x7FFFFFu;
      if (hi < t[0] || lo >= t[2]) {
        kind[k] = 0;
        continue;
      }
      if (e < 1 || e > 254 || e + ks < 1 || e + ks > 254) continue;
      const int big_e = e + ks - 127, emin = c.fmt.emin();
      int d = dropped;
      if (big_e < emin) {
        if (c.pol.ftz || !c.fmt.subnormals) continue;
        d += emin - big_e;
      }
      // A binade the spec's underflow or overflow edge cuts (or where d = 24, all of whose
      // values round to 0 or 2^24: the half of the smallest subnormal to it): summed for this
      // spec alone, each value where its thresholds count it (kind 3). d <= 24 keeps |r_d(m) -
      // m| below 2^24, its square exact in double.
      if (lo < t[0] || hi >= t[2] || d > 23) {
        if (d > 24) continue;
        kind[k] = 3;
        masked_[k].push_back({r, c.pol.round, d});
        per_binade_[r] = 1;
        continue;
      }
      auto& ids = bin_slots_[k];
      auto it = std::find_if(ids.begin(), ids.end(), [&](std::uint32_t i) {
        return slots_[i].round == c.pol.round && slots_[i].dropped == d;
      });
      if (it == ids.end()) {
        slots_.push_back({c.pol.round, d});
        it = ids.insert(ids.end(), std::uint32_t(slots_.size() - 1));
      }
      kind[k] = 1;
      slot_of_[r][k] = std::int32_t(*it);
      per_binade_[r] = 1;
    }
  }
  bin_n_.assign(binades, 0);
  bin_signal_.assign(binades, {});
  bin_.assign(slots_.size(), {});
  // The direct method's ranges (add_direct). x * S lies in the format's binade E = e + ks - 127:
  // the cast drops d = dropped bits at or above its smallest normal 2^emin (binade e >= n_e),
  // d = dropped + emin - E = below - e below it (subnormal results, not with ftz or without
  // subnormals), where x and x * S are float32 normals (e_lo <= e <= e_hi); d <= 24 keeps
  // |r_d(m) - m| below 2^24, its square exact in double. Each range is cut to the thresholds, so
  // that a value counts where it lies in one: the binades a threshold cuts need no list.
  for (std::size_t r = 0; r < specs_.size(); ++r) {
    if (!per_binade_[r]) continue;
    const cast_spec& c = specs_[r];
    const int dropped = 23 - c.fmt.man_bits;
    const int ks = int(std::bit_cast<std::uint32_t>(c.scale) >> 23) - 127, emin = c.fmt.emin();
    const int e_lo = std::max(1, 1 - ks), e_hi = std::min(254, 254 - ks), n_e = emin - ks + 127;
    const int below = dropped + n_e;
    const bool sub_ok = !c.pol.ftz && c.fmt.subnormals;
    const auto at = [](int e) { return std::uint32_t(std::clamp(e, 0, 255)) << 23; };
    using range = std::array<std::uint32_t, 2>;
    detail::direct_spec d{r, c.pol.round, dropped, below, {}, {}, {}, false, false, false};
    for (int sg = 0; sg < 2; ++sg) {
      const auto& t = t32_[r].at[sg];
      const auto cut = [&](std::uint32_t lo, std::uint32_t hi) {
        lo = std::max(lo, t[0]), hi = std::min(hi, t[2]);
        return lo < hi ? range{lo, hi} : range{0, 0};
      };
      d.normal[sg] = cut(at(std::max(e_lo, n_e)), at(e_hi + 1));
      d.under[sg] = sub_ok ? cut(at(std::max(e_lo, below - 24)), at(std::min(n_e, e_hi + 1))) : range{0, 0};
      d.counted[sg] = t[0] < t[2] ? range{t[0], t[2]} : range{0, 0};
      d.has_below |= d.under[sg][0] < d.under[sg][1];
      // Bulk unless `under` and `normal` (under lies below normal) tile `counted` exactly.
      std::uint32_t from = d.counted[sg][0];
      for (const range& iv : {d.under[sg], d.normal[sg]})
        if (iv[0] < iv[1]) from = iv[0] == from ? iv[1] : ~0u;
      d.has_bulk |= from != d.counted[sg][1];
    }
    d.by_sign = d.normal[0] != d.normal[1] || d.under[0] != d.under[1] || d.counted[0] != d.counted[1];
    dspecs_.push_back(d);
  }
  // Batches: specs of one (rounding, dropped) next to each other, at most direct_batch each.
  std::stable_sort(dspecs_.begin(), dspecs_.end(), [](const detail::direct_spec& a, const detail::direct_spec& b) {
    return std::pair{int(a.round), a.dropped} < std::pair{int(b.round), b.dropped};
  });
  for (std::size_t j = 0; j < dspecs_.size(); ++j) {
    const detail::direct_spec& d = dspecs_[j];
    if (!dbatches_.empty()) {
      direct_batch_of& b = dbatches_.back();
      const detail::direct_spec& f = dspecs_[b.first];
      if (b.count < direct_batch && f.round == d.round && f.dropped == d.dropped) {
        ++b.count, b.by_sign |= d.by_sign;
        continue;
      }
    }
    dbatches_.push_back({j, 1, d.by_sign});
  }
#if defined(FPSCOPE_ERRORS_AVX512)
  direct_ = !dspecs_.empty() &&
            (how == method::direct || (how == method::automatic && dspecs_.size() <= direct_max_specs));
#else
  (void)how;
#endif
}

void error_tally::measure_block(const float* v, std::size_t m, std::size_t r, sums& acc) const {
  if (m == 0) return;
  alignas(64) float y[error_block], q[error_block];
  alignas(64) double inv[error_block];
  code_buffers codes;
  const cast_spec& c = specs_[r];
  for (std::size_t i = 0; i < m; ++i) {
    inv[i] = 1.0 / std::fabs(double(v[i]));
    y[i] = scaled(v[i], c.scale);
  }
  cast_block(std::span<const float>(y, m), codes, q, c);
  acc.add(block_sums(v, q, inv, m, t32_[r].at, c.scale));
}

#if defined(FPSCOPE_ERRORS_AVX512)
namespace {
// The first min(left, 16) lanes: a vector's valid lanes, `left` values from its first on.
[[gnu::always_inline]] inline __mmask16 lanes_left(std::size_t left) {
  return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
}

// Values whose lane sums are folded at once: each double lane then sums at most 1024 terms of
// the main loop and 1024 of the lists (two per 16 values: the two halves of a vector).
constexpr std::size_t direct_block = std::size_t{1} << 13;

// Values whose lists (`under`, bulk) are drained at once (add_direct): they stay in L1.
constexpr std::size_t direct_sub = 256;

// One spec's sums over the blocks so far, in 8 double lanes each, both halves of a vector
// added in turn: the relative errors times 2^23, their max times 2^23, the squared errors times
// 2^46 (the terms of value_terms) and x^2.
struct direct_lanes {
  __m512d rel, noise, sig, mx;
  std::uint64_t n;
};

// A range [lo, hi) as vectors, per sign (blended by the lanes' signs where it differs by sign):
// lo and the width hi - lo (0 for an empty range), so that one unsigned compare of mag - lo
// against the width tests both ends. (Vector compares into a mask issue on one port only, which
// the list compresses also need.)
struct direct_bounds {
  __m512i lo[2], width[2];
  void set(const std::array<std::array<std::uint32_t, 2>, 2>& r) {
    for (int s = 0; s < 2; ++s)
      lo[s] = _mm512_set1_epi32(int(r[s][0])), width[s] = _mm512_set1_epi32(int(r[s][1] - r[s][0]));
  }
  // The lanes of `in` whose magnitude lies in the range.
  template <bool BySign>
  [[gnu::always_inline]] __mmask16 test(__mmask16 in, __mmask16 neg, __m512i mag) const {
    const __m512i l = BySign ? _mm512_mask_blend_epi32(neg, lo[0], lo[1]) : lo[0];
    const __m512i w = BySign ? _mm512_mask_blend_epi32(neg, width[0], width[1]) : width[0];
    return _mm512_mask_cmplt_epu32_mask(in, _mm512_sub_epi32(mag, l), w);
  }
};

// The terms of 16 float32 bit patterns u (exponent fields 1 .. 254) with |r_d(m) - m| = a (in
// its two halves as doubles), x = m 2^(e-150): x as a double (exact), the error a 2^(e-127) (the
// power of two is x with its significand cleared: exact, below 2^151 in magnitude, its square
// below 2^302 and above 2^-252) and the relative error a 2^(e-127) * (1/x) = 2^23 a / m, 1/x by
// reciprocal (one rounding more). Scaling 1/m by 2^(150-e) changes neither vrcp14pd's result
// nor the Newton steps' roundings (no double here is subnormal), so the relative error is
// 2^23 times the unscaled term, bit for bit: add_direct scales the sums back, exactly.
struct value_terms {
  __m512d x[2], err[2], rel[2];
};
// What value_terms takes from x alone: x as a double and 1/x, per half.
struct value_parts {
  __m512d x[2], inv[2];
};
[[gnu::always_inline]] inline value_parts parts_of(__m512i u) {
  const __m512 f = _mm512_castsi512_ps(u);
  value_parts p;
  p.x[0] = _mm512_cvtps_pd(_mm512_castps512_ps256(f));
  p.x[1] = _mm512_cvtps_pd(_mm512_extractf32x8_ps(f, 1));
  for (int h = 0; h < 2; ++h) p.inv[h] = reciprocal(p.x[h]);
  return p;
}
[[gnu::always_inline]] inline value_terms terms_of(const value_parts& p, const abs_errors16& a) {
  const __m512d expo = _mm512_castsi512_pd(_mm512_set1_epi64(std::int64_t(0xFFF0000000000000u)));
  value_terms t;
  for (int h = 0; h < 2; ++h) {
    t.x[h] = p.x[h];
    t.err[h] = _mm512_mul_pd(a.h[h], _mm512_and_pd(p.x[h], expo));
    t.rel[h] = _mm512_mul_pd(t.err[h], p.inv[h]);
  }
  return t;
}

// A sub-block's value_parts, formed once for all batches where a tally has more than one: a
// batch then loads them (two loads per half) instead of forming them again (a conversion and
// reciprocal's five operations per half).
struct direct_parts {
  alignas(64) double x[direct_sub], inv[direct_sub];
};

// Adds 16 values' terms (value_terms) where k is set, both halves into the same 8 lanes: the
// relative errors and their max, the squared errors and x^2 (each product exact, rounded once
// in the add).
[[gnu::always_inline]] inline void direct_add(direct_lanes& l, __mmask16 k, const value_terms& t) {
  for (int h = 0; h < 2; ++h) {
    const __mmask8 kh = __mmask8(h ? k >> 8 : k);
    l.rel = _mm512_mask_add_pd(l.rel, kh, l.rel, t.rel[h]);
    l.mx = _mm512_mask_max_pd(l.mx, kh, l.mx, t.rel[h]);
    l.noise = _mm512_mask3_fmadd_pd(t.err[h], t.err[h], l.noise, kh);
    l.sig = _mm512_mask3_fmadd_pd(t.x[h], t.x[h], l.sig, kh);
  }
  l.n += std::uint64_t(std::popcount(unsigned(k)));
}

// A spec's listed values (counted, in its `under` range) at d = below - e (dropped + 1 .. 24),
// 16 at a time.
template <rounding Rm>
void direct_below(const detail::direct_spec& ds, const std::uint32_t* list, std::size_t nb, direct_lanes& l) {
  const __m512i ff = _mm512_set1_epi32(0xFF);
  const __m512i dropped = _mm512_set1_epi32(ds.dropped), below = _mm512_set1_epi32(ds.below);
  for (std::size_t i = 0; i < nb; i += 16) {
    const __mmask16 valid = lanes_left(nb - i);
    const __m512i u = _mm512_maskz_loadu_epi32(valid, list + i);
    const __m512i e = _mm512_and_si512(_mm512_srli_epi32(u, 23), ff);
    const abs_errors16 a = abs_errors(u, Rm, _mm512_max_epi32(dropped, _mm512_sub_epi32(below, e)));
    direct_add(l, valid, terms_of(parts_of(u), a));
  }
}

// A batch of NB specs of one (rounding, dropped) over n values (at most direct_sub): each value
// rounded once at the dropped bits and its terms formed once, in registers, for the batch; the
// terms added under each spec's `normal` mask to lanes kept in registers (no call in the loop,
// the rounding a template argument); the values of a spec's `under` range listed and rounded
// after the loop; the values it counts in neither range appended to its buffer for the bulk
// conversion. Lists are compressed in a register and stored whole: no branch on the data.
template <rounding Rm, std::size_t NB, bool BySign>
void direct_rows(const detail::direct_spec* ds, const std::uint32_t* xb, std::size_t n, const direct_parts* dp,
                 direct_lanes* lanes, float* const* buf, std::size_t* fill) {
  const __m512i absm = _mm512_set1_epi32(0x7FFFFFFF), dropped = _mm512_set1_epi32(ds[0].dropped);
  direct_bounds normal[NB], under[NB], counted[NB];
  direct_lanes l[NB];
  std::size_t f[NB], nb[NB];
  bool has_below[NB], has_bulk[NB];  // local: no reload past the stores in the loop
  alignas(64) std::uint32_t below_buf[NB][direct_sub + 16];
  for (std::size_t j = 0; j < NB; ++j) {
    normal[j].set(ds[j].normal), under[j].set(ds[j].under), counted[j].set(ds[j].counted);
    l[j] = lanes[j], f[j] = fill[j], nb[j] = 0;
    has_below[j] = ds[j].has_below, has_bulk[j] = ds[j].has_bulk;
  }
  for (std::size_t i = 0; i < n; i += 16) {
    const __mmask16 valid = lanes_left(n - i);
    const __m512i u = _mm512_maskz_loadu_epi32(valid, xb + i), mag = _mm512_and_si512(u, absm);
    const __mmask16 neg = BySign ? _mm512_movepi32_mask(u) : __mmask16(0);
    value_parts p;
    if (dp)  // by tally, not by data
      for (int h = 0; h < 2; ++h) p.x[h] = _mm512_load_pd(dp->x + i + 8 * h), p.inv[h] = _mm512_load_pd(dp->inv + i + 8 * h);
    else
      p = parts_of(u);
    const value_terms t = terms_of(p, abs_errors(u, Rm, dropped));
    for (std::size_t j = 0; j < NB; ++j) {
      const __mmask16 dm = normal[j].template test<BySign>(valid, neg, mag);
      direct_add(l[j], dm, t);
      __mmask16 bm = 0;
      if (has_below[j]) {  // by spec, not by data: a branch the data would mispredict costs more
        bm = under[j].template test<BySign>(valid, neg, mag);
        _mm512_storeu_si512(below_buf[j] + nb[j], _mm512_maskz_compress_epi32(bm, u));
        nb[j] += std::size_t(std::popcount(unsigned(bm)));
      }
      if (has_bulk[j]) {
        const __mmask16 bulk = counted[j].template test<BySign>(valid, neg, mag) & ~dm & ~bm;
        _mm512_storeu_si512(buf[j] + f[j], _mm512_maskz_compress_epi32(bulk, u));
        f[j] += std::size_t(std::popcount(unsigned(bulk)));
      }
    }
  }
  for (std::size_t j = 0; j < NB; ++j) {
    lanes[j] = l[j], fill[j] = f[j];
    direct_below<Rm>(ds[j], below_buf[j], nb[j], lanes[j]);
  }
}

template <rounding Rm, std::size_t NB>
void direct_rows_by_sign(bool by_sign, const detail::direct_spec* ds, const std::uint32_t* xb, std::size_t n,
                         const direct_parts* dp, direct_lanes* l, float* const* buf, std::size_t* fill) {
  by_sign ? direct_rows<Rm, NB, true>(ds, xb, n, dp, l, buf, fill) : direct_rows<Rm, NB, false>(ds, xb, n, dp, l, buf, fill);
}

template <rounding Rm>
void direct_rows_of(std::size_t nb, bool by_sign, const detail::direct_spec* ds, const std::uint32_t* xb,
                    std::size_t n, const direct_parts* dp, direct_lanes* l, float* const* buf, std::size_t* fill) {
  switch (nb) {
    case 1: return direct_rows_by_sign<Rm, 1>(by_sign, ds, xb, n, dp, l, buf, fill);
    case 2: return direct_rows_by_sign<Rm, 2>(by_sign, ds, xb, n, dp, l, buf, fill);
    default: return direct_rows_by_sign<Rm, 3>(by_sign, ds, xb, n, dp, l, buf, fill);
  }
}
}  // namespace

// float32 values for the per-binade specs without a sort (docs/hist.md "Error statistics"). A
// value x = m 2^(e-150) (e the exponent field) that a spec takes directly scales exactly into
// one binade of the format, where the cast drops d bits of m: dropped in its normal range,
// below - e under it. |r_d(m) - m| is an integer; the relative error |r_d(m) - m| / m (through
// 1/x: two roundings), the error |r_d(m) - m| 2^(e-150) (exact) and x (exact) are formed per
// value, once per batch of specs of one (rounding, dropped), in registers (value_terms: the
// error and relative error times 2^23). Each spec tests its ranges (magnitude bits, cut to its
// thresholds) and adds its terms under a mask, in 8 double lanes per sum kept in registers; the
// values of its `under` range it lists and rounds after each sub-block of 256 values; the
// values it sends to the bulk conversion are compress-stored into its buffer. Each lane sums at
// most 2048 terms of a block of 2^13 values before the block's lane sums are scaled back (by
// powers of two: exact) and added (TwoSum) to acc.
void error_tally::add_direct(std::span<const float> x, std::vector<sums>& acc) {
  static_assert(direct_batch == 3, "direct_rows_of: a case per batch size");
  const std::size_t ns = dspecs_.size();
  constexpr std::size_t sub = direct_sub;
  std::vector<direct_lanes> ln(ns);
  std::vector<std::vector<float>> edge(ns, std::vector<float>(error_block + sub));
  std::vector<float*> bufp;
  for (auto& e : edge) bufp.push_back(e.data());
  std::vector<std::size_t> fill(ns, 0);
  direct_parts parts;
  direct_parts* const dp = dbatches_.size() > 1 ? &parts : nullptr;
  for (std::size_t lo = 0; lo < x.size(); lo += direct_block) {
    const std::size_t nb = std::min(direct_block, x.size() - lo);
    const float* xb = x.data() + lo;
    for (auto& l : ln) l.rel = l.noise = l.sig = l.mx = _mm512_setzero_pd(), l.n = 0;
    for (std::size_t s0 = 0; s0 < nb; s0 += sub) {
      const std::size_t n = std::min(sub, nb - s0);
      const auto* const u = reinterpret_cast<const std::uint32_t*>(xb + s0);
      // 2 KiB ahead (as key_counter's pass): the hardware prefetcher alone streams slower.
      for (std::size_t i = 0; i < n; i += 16) __builtin_prefetch(xb + s0 + i + 512);
      if (dp)
        for (std::size_t i = 0; i < n; i += 16) {
          const __mmask16 valid = lanes_left(n - i);
          const value_parts p = parts_of(_mm512_maskz_loadu_epi32(valid, u + i));
          for (int h = 0; h < 2; ++h) _mm512_store_pd(dp->x + i + 8 * h, p.x[h]), _mm512_store_pd(dp->inv + i + 8 * h, p.inv[h]);
        }
      for (const auto& [first, k, by_sign] : dbatches_) {
        const detail::direct_spec* const ds = dspecs_.data() + first;
        direct_lanes* const l = ln.data() + first;
        float* const* const bufs = bufp.data() + first;
        std::size_t* const fl = fill.data() + first;
        switch (ds->round) {
          case rounding::rne: direct_rows_of<rounding::rne>(k, by_sign, ds, u, n, dp, l, bufs, fl); break;
          case rounding::rtz: direct_rows_of<rounding::rtz>(k, by_sign, ds, u, n, dp, l, bufs, fl); break;
          case rounding::rup: direct_rows_of<rounding::rup>(k, by_sign, ds, u, n, dp, l, bufs, fl); break;
          case rounding::rdn: direct_rows_of<rounding::rdn>(k, by_sign, ds, u, n, dp, l, bufs, fl); break;
          case rounding::rna: direct_rows_of<rounding::rna>(k, by_sign, ds, u, n, dp, l, bufs, fl); break;
          default: direct_rows_of<rounding::rto>(k, by_sign, ds, u, n, dp, l, bufs, fl);  // sr is never per-binade
        }
        for (std::size_t r = first; r < first + k; ++r) {
          // The buffer holds a block and a sub-block: flushed once a sub-block more might not fit.
          if (fill[r] > error_block - sub) measure_block(edge[r].data(), fill[r], dspecs_[r].spec, acc[dspecs_[r].spec]), fill[r] = 0;
        }
      }
    }
    for (std::size_t j = 0; j < ns; ++j) {
      const direct_lanes& l = ln[j];
      sums& a = acc[dspecs_[j].spec];
      a.n += l.n;
      a.rel.add(_mm512_reduce_add_pd(l.rel) * 0x1p-23);
      a.noise.add(_mm512_reduce_add_pd(l.noise) * 0x1p-46);
      a.signal.add(_mm512_reduce_add_pd(l.sig));
      a.max_rel = std::max(a.max_rel, _mm512_reduce_max_pd(l.mx) * 0x1p-23);
    }
  }
  for (std::size_t j = 0; j < ns; ++j) measure_block(edge[j].data(), fill[j], dspecs_[j].spec, acc[dspecs_[j].spec]);
}
#else
void error_tally::add_direct(std::span<const float>, std::vector<sums>&) {
  throw std::logic_error("error_tally: the direct method needs AVX-512");
}
#endif

// float32 values for the specs with per-binade sums: each block is sorted by binade (a counting
// sort), each binade's run summed once per slot, and each spec's binades of kind 2 copied
// together and measured by the bulk conversion, into acc.
void error_tally::add_binades(std::span<const float> x, std::vector<sums>& acc) {
  std::vector<std::uint64_t> n(binades, 0);
  std::vector<wide_sum> sig(binades);
  std::vector<binade_sums> bs(slots_.size());
  // The specs with binades through the bulk conversion: their values gathered from the sorted
  // blocks until a block's worth is there, so that the conversion's fixed cost per call is
  // spread as in add_values.
  struct edge_values {
    std::size_t spec;
    std::vector<std::uint16_t> bins;
    std::vector<float> v;
    std::size_t fill = 0;
  };
  std::vector<edge_values> edges;
  for (std::size_t r = 0; r < specs_.size(); ++r) {
    if (!per_binade_[r]) continue;
    edge_values ed{r, {}, {}, 0};
    for (std::size_t k = 0; k < binades; ++k)
      if (kind_[r][k] == 2) ed.bins.push_back(std::uint16_t(k));
    if (ed.bins.empty()) continue;
    ed.v.resize(error_block);
    edges.push_back(std::move(ed));
  }
  std::vector<std::uint32_t> sorted_v(binade_block + binades * binade_lanes);
  std::vector<double> inv_v(binade_block + binade_lanes);
  std::uint32_t* const sorted = sorted_v.data();
  double* const inv = inv_v.data();
  std::uint32_t cnt[binades], start[binades], cnt4[4][binades], at4[4][binades];
  const auto flush = [&](edge_values& ed) {
    measure_block(ed.v.data(), ed.fill, ed.spec, acc[ed.spec]);
    ed.fill = 0;
  };
  std::uint16_t present[binades];
  for (std::size_t lo = 0; lo < x.size(); lo += binade_block) {
    const std::size_t nb = std::min(binade_block, x.size() - lo);
    const float* xb = x.data() + lo;
    // Four histograms in turn, so that runs of one binade do not wait on one counter.
    std::fill(&cnt4[0][0], &cnt4[0][0] + 4 * binades, 0u);
    std::size_t i4 = 0;
    for (; i4 + 4 <= nb; i4 += 4) {
      if (i4 % 16 == 0) __builtin_prefetch(xb + i4 + 512);  // 2 KiB ahead, as add_direct
      for (std::size_t h = 0; h < 4; ++h) ++cnt4[h][std::bit_cast<std::uint32_t>(xb[i4 + h]) >> 23];
    }
    for (; i4 < nb; ++i4) ++cnt4[0][std::bit_cast<std::uint32_t>(xb[i4]) >> 23];
#pragma omp simd
    for (std::size_t k = 0; k < binades; ++k) cnt[k] = cnt4[0][k] + cnt4[1][k] + cnt4[2][k] + cnt4[3][k];
    // Each binade's run starts at a multiple of the lanes; the gap after it is filled with the
    // binade's power of two (fraction 0: every rounding keeps it, so it adds no error).
    std::size_t np = 0;
    std::uint32_t pos = 0;
    // Within a run, the values of the four histograms one after the other, so that the scatter
    // below also has four independent positions.
    for (std::size_t k = 0; k < binades; ++k) {
      start[k] = pos;
      if (cnt[k] == 0) continue;
      present[np++] = std::uint16_t(k);
      std::uint32_t p = pos;
      for (std::size_t h = 0; h < 4; ++h) at4[h][k] = p, p += cnt4[h][k];
      const std::uint32_t end = (pos + cnt[k] + binade_lanes - 1) & ~std::uint32_t(binade_lanes - 1);
      for (std::uint32_t i = pos + cnt[k]; i < end; ++i) sorted[i] = std::uint32_t(k) << 23;
      pos = end;
    }
    for (i4 = 0; i4 + 4 <= nb; i4 += 4)
      for (std::size_t h = 0; h < 4; ++h) {
        const std::uint32_t u = std::bit_cast<std::uint32_t>(xb[i4 + h]);
        sorted[at4[h][u >> 23]++] = u;
      }
    for (; i4 < nb; ++i4) {
      const std::uint32_t u = std::bit_cast<std::uint32_t>(xb[i4]);
      sorted[at4[0][u >> 23]++] = u;
    }
    for (std::size_t j = 0; j < np; ++j) {
      const std::size_t k = present[j];
      if (bin_slots_[k].empty() && masked_[k].empty()) continue;
      const std::uint32_t* run = sorted + start[k];
      const std::size_t c = cnt[k], padded = (c + binade_lanes - 1) & ~(binade_lanes - 1);
      // x = sig 2^(e-150): x^2 and the squared errors in units of 2^(2(e-150)), summed exactly
      // (each < 2^48, at most 2^14 + 7 of them: < 2^63), then scaled exactly; a padding value adds 2^46.
      const double unit2 = std::ldexp(1.0, 2 * (int(k & 0xFF) - 150));
      std::uint64_t s2[binade_lanes] = {};
      for (std::size_t i = 0; i < padded; i += binade_lanes)
#pragma omp simd
        for (std::size_t l = 0; l < binade_lanes; ++l) {
          // 32-bit m: a widening multiply and an int32 conversion (cheaper vector forms).
          const std::uint32_t m = (run[i + l] & 0x7FFFFFu) | 0x800000u;
          s2[l] += std::uint64_t(m) * std::uint64_t(m);
        }
#if defined(FPSCOPE_ERRORS_AVX512)
      for (std::size_t i = 0; i < padded; i += binade_lanes) {
        const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(run + i));
        const __m256i m = _mm256_or_si256(_mm256_and_si256(b, _mm256_set1_epi32(0x7FFFFF)), _mm256_set1_epi32(0x800000));
        _mm512_storeu_pd(inv + i, reciprocal(_mm512_cvtepi32_pd(m)));
      }
#else
#pragma omp simd
      for (std::size_t i = 0; i < padded; ++i) inv[i] = 1.0 / double(std::int32_t((run[i] & 0x7FFFFFu) | 0x800000u));
#endif
      std::uint64_t x2 = std::uint64_t(0) - std::uint64_t(padded - c) * (std::uint64_t(1) << 46);
      for (const std::uint64_t l : s2) x2 += l;
      n[k] += c;
      sig[k].add(double(x2) * unit2);
      const std::uint32_t neg = k >> 8 ? ~0u : 0u;
      for (const masked& mk : masked_[k]) {
        const auto& t = t32_[mk.spec].at[k >> 8];
        masked_sums_of(mk.round, run, inv, c, padded, mk.dropped, neg, t[0], t[2], acc[mk.spec], unit2);
      }
      for (const std::uint32_t id : bin_slots_[k]) {
        double d2, rel, mx;
        binade_sums_of(slots_[id].round, run, inv, padded, slots_[id].dropped, neg, d2, rel, mx);
        binade_sums& b = bs[id];
        b.rel.add(rel);
        b.noise.add(d2 * unit2);
        b.max_rel = std::max(b.max_rel, mx);
      }
    }
    for (auto& ed : edges)
      for (const std::uint16_t k : ed.bins)
        for (std::size_t done = 0; done < cnt[k];) {
          const std::size_t take = std::min<std::size_t>(cnt[k] - done, error_block - ed.fill);
          std::memcpy(ed.v.data() + ed.fill, sorted + start[k] + done, take * sizeof(float));
          ed.fill += take, done += take;
          if (ed.fill == error_block) flush(ed);
        }
  }
  for (auto& ed : edges) flush(ed);
  const std::lock_guard lock(m_);
  for (std::size_t k = 0; k < binades; ++k) {
    bin_n_[k] += n[k];
    bin_signal_[k].add(sig[k]);
  }
  for (std::size_t i = 0; i < bs.size(); ++i) {
    bin_[i].rel.add(bs[i].rel);
    bin_[i].noise.add(bs[i].noise);
    bin_[i].max_rel = std::max(bin_[i].max_rel, bs[i].max_rel);
  }
}

template <class T>
void error_tally::add_values(std::span<const T> x) {
  if (x.empty() || specs_.empty()) return;
  if constexpr (std::is_same_v<T, double>)
    std::call_once(t64_once_, [this] {
      for (const auto& c : specs_) t64_.push_back(thresholds64(c));
    });
  std::vector<sums> acc(specs_.size());
  // Specs without per-binade sums (and every spec for float64 values): every value through the
  // bulk conversion.
  std::vector<std::size_t> bulk;
  for (std::size_t r = 0; r < specs_.size(); ++r)
    if (std::is_same_v<T, double> || !per_binade_[r]) bulk.push_back(r);
  if constexpr (std::is_same_v<T, float>)
    if (!slots_.empty()) {
      if (direct_)
        add_direct(x, acc);
      else
        add_binades(x, acc);
    }
  if (bulk.empty()) {
    const std::lock_guard lock(m_);
    for (std::size_t r = 0; r < acc.size(); ++r) total_[r].add(acc[r]);
    return;
  }
  alignas(64) float y[error_block], q[error_block];
  alignas(64) double inv[error_block];
  code_buffers codes;
  for (std::size_t lo = 0; lo < x.size(); lo += error_block) {
    const std::size_t n = std::min(error_block, x.size() - lo);
    const T* xb = x.data() + lo;
    for (std::size_t i = 0; i < n; ++i) inv[i] = 1.0 / std::fabs(double(xb[i]));
    for (const std::size_t r : bulk) {
      const cast_spec& c = specs_[r];
      for (std::size_t i = 0; i < n; ++i) y[i] = scaled(xb[i], c.scale);
      cast_block(std::span<const float>(y, n), codes, q, c);
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
    sums s = total_[r];
    for (std::size_t k = 0; k < binades; ++k) {
      if (slot_of_[r][k] < 0) continue;
      const binade_sums& b = bin_[std::size_t(slot_of_[r][k])];
      s.n += bin_n_[k];
      s.signal.add(bin_signal_[k]);
      s.rel.add(b.rel), s.noise.add(b.noise);
      s.max_rel = std::max(s.max_rel, b.max_rel);
    }
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

// A loose count puts each uncertain value in the highest class its bucket allows (the bucket
// counts above every boundary inside it), so with u such values at scale 2^k the exact counts
// have overflow in [over - u, over], underflow in [under, under + u], subnormal within u: a
// zero overflow is exact, and the lost (underflow + overflow) within u but not below the
// underflow. recommend() takes the largest k without overflow, and the least (lost, subnormal)
// over all k; what either could turn on is returned.
std::vector<int> recommend_unsure(const scale_sweep& s, std::span<const std::uint64_t> uncertain, int headroom) {
  if (uncertain.size() != scale_sweep::size)
    throw std::invalid_argument("recommend_unsure: needs one entry per power of two 2^-126 .. 2^127");
  std::vector<int> out;
  if (s.at(0).nonzero_finite() == 0) return out;
  const auto u = [&](int k) { return uncertain[std::size_t(k - scale_sweep::kmin)]; };
  // GradScaler: a larger scale whose overflow may be 0 after all; the scale reported.
  int top = scale_sweep::kmin - 1;
  for (int k = scale_sweep::kmin; k <= scale_sweep::kmax; ++k)
    if (s.at(k)[cast_class::overflow] == 0) top = k;
  for (int k = top + 1; k <= scale_sweep::kmax; ++k)
    if (u(k) != 0 && u(k) >= s.at(k)[cast_class::overflow]) out.push_back(k);
  if (top >= scale_sweep::kmin && u(std::max(scale_sweep::kmin, top - headroom)) != 0)
    out.push_back(std::max(scale_sweep::kmin, top - headroom));
  // Fewest lost: (lost, subnormal) of every k lies between lo and hi (lexicographically), so
  // the least is at most the least hi, and a k whose lo exceeds that cannot be it; any other
  // with uncertain values can.
  using key = std::pair<std::uint64_t, std::uint64_t>;
  const auto sat = [](std::uint64_t a, std::uint64_t b) { return a > b ? a - b : std::uint64_t{0}; };
  key best{~0ull, ~0ull};
  for (int k = scale_sweep::kmin; k <= scale_sweep::kmax; ++k) {
    const auto& c = s.at(k);
    best = std::min(best, key{c[cast_class::underflow] + c[cast_class::overflow] + u(k), c[cast_class::subnormal] + u(k)});
  }
  for (int k = scale_sweep::kmin; k <= scale_sweep::kmax; ++k) {
    if (u(k) == 0) continue;
    const auto& c = s.at(k);
    const key lo{std::max(sat(c[cast_class::underflow] + c[cast_class::overflow], u(k)), c[cast_class::underflow]),
                 sat(c[cast_class::subnormal], u(k))};
    if (!(lo > best)) out.push_back(k);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace fpscope
