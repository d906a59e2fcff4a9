// 9. Exact class counts (fpscope/histogram.hpp): the bucket path (with its refine pass) and the
// threshold-search path count exactly what the reference model says, element by element: y is
// the product rounded by this file's own integer arithmetic, cast by the Boost reference
// (ref::encode), and classed from the reference table. Inputs sit on every class boundary of
// the format, their ties and neighbours, at scales that keep y normal and at scales that push y
// into float32 subnormals (where the refine pass must step in), plus random and special values.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <span>
#include <thread>

#include <boost/multiprecision/cpp_bin_float.hpp>

#include "common.hpp"
#include "fpscope/counting.hpp"
#include "fpscope/histogram.hpp"
#include "fpscope/npy.hpp"

using namespace unit;
using fpscope::cast_class;

namespace {

__extension__ typedef unsigned __int128 u128;

// The product x * s rounded once to float32, by integers: the exact product of the significands
// (at most 77 bits), rounded to odd at 64 bits, then the x87 conversion to float.
float exact_scaled(double x, float s) {
  if (x == 0 || !std::isfinite(x)) return static_cast<float>(x * double(s));
  int ex, es;
  const double mx = std::frexp(std::fabs(x), &ex), ms = std::frexp(double(s), &es);
  const auto ix = static_cast<std::uint64_t>(std::ldexp(mx, 53));
  const auto is = static_cast<std::uint64_t>(std::ldexp(ms, 24));
  u128 p = static_cast<u128>(ix) * is;
  int e = ex - 53 + es - 24;
  const int width = 128 - (std::uint64_t(p >> 64) ? std::countl_zero(std::uint64_t(p >> 64))
                                                   : 64 + std::countl_zero(std::uint64_t(p)));
  if (width > 64) {
    const int sh = width - 64;
    const bool sticky = (p & ((static_cast<u128>(1) << sh) - 1)) != 0;
    p >>= sh;
    e += sh;
    if (sticky) p |= 1;
  }
  const float y = static_cast<float>(std::ldexp(static_cast<long double>(static_cast<std::uint64_t>(p)), e));
  return std::signbit(x) ? -y : y;
}
float exact_scaled(float x, float s) { return static_cast<float>(double(x) * double(s)); }

// The class of one element by the reference model.
template <class T>
cast_class ref_class(const ref::table& t, T x, float s, const fpscope::policy& p) {
  if (!std::isfinite(x)) return cast_class::nonfinite;
  if (x == 0) return cast_class::zero;
  const float y = exact_scaled(x, s);
  if (std::isinf(y)) return cast_class::overflow;
  const ref::result r = ref::encode(t, ref::describe(y), p);
  if (!t.has_neg_zero && r.code == t.sign_bit) return cast_class::overflow;  // fnuz's NaN
  const std::uint32_t mag = r.code & ~t.sign_bit;
  const auto it = std::lower_bound(t.code.begin(), t.code.end(), mag);
  if (it == t.code.end() || *it != mag) return cast_class::overflow;  // inf, NaN
  if (r.flags & fpscope::flag_overflow) return cast_class::overflow;
  const double v = t.val[std::size_t(it - t.code.begin())];
  if (v == 0) return cast_class::underflow;
  return v < t.min_normal ? cast_class::subnormal : cast_class::normal;
}

const float scales[] = {1.0f,        2.0f,        0.125f,     0x1p-20f, 0x1p7f,  0x1p15f, 0x1p24f,  0x1p40f,
                        3.0f,        0.1f,        1000.0f,    0x1p-100f, 0x1p-120f, 0x1p-126f, 1e-30f};

// Inputs on and around every class boundary of the format at every scale, both signs, as float
// and as double, plus specials and random values.
input_set adversarial(const ref::table& t, std::mt19937_64& rng) {
  std::vector<double> marks;
  const std::size_t n = t.n();
  std::size_t first_normal = 0;
  while (first_normal < n && t.val[first_normal] < t.min_normal) ++first_normal;
  for (std::size_t i : {std::size_t(0), std::size_t(1), first_normal - 1, first_normal, first_normal + 1, n - 2, n - 1}) {
    if (i >= n) continue;
    marks.push_back(t.val[i]);
    marks.push_back(t.mid[i]);
  }
  marks.push_back(t.next);
  input_set out;
  for (const float s : scales)
    for (const double m : marks) {
      if (m == 0) continue;
      for (const double b : {m, m * (1 + 0x1p-24), m * (1 - 0x1p-24), m * (1 + 0x1p-25), m * (1 - 0x1p-25)}) {
        const double x = b / double(s);
        double d = x;
        for (int i = 0; i < 2; ++i) d = std::nextafter(d, 0.0);
        for (int i = 0; i < 5; ++i, d = std::nextafter(d, INFINITY)) out.d.push_back(d);
        float f = static_cast<float>(x);
        for (int i = 0; i < 3; ++i) f = std::nextafter(f, 0.0f);
        for (int i = 0; i < 7; ++i, f = std::nextafter(f, INFINITY)) out.f.push_back(f);
      }
    }
  std::uniform_int_distribution<std::uint32_t> u32;
  for (int i = 0; i < 3000; ++i) {
    out.f.push_back(f32_from_bits(u32(rng)));
    out.d.push_back(double(f32_from_bits(u32(rng))) * std::ldexp(1.0, int(u32(rng) % 64) - 32));
  }
  for (const float v : {0.0f, 1e-45f, 1e-40f, 1e-38f, std::numeric_limits<float>::infinity(),
                        std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::max()}) {
    out.f.push_back(v);
    out.d.push_back(v);
  }
  out.d.push_back(1e-300);
  out.d.push_back(1e300);
  const std::size_t nf = out.f.size(), nd = out.d.size();
  for (std::size_t i = 0; i < nf; ++i) out.f.push_back(-out.f[i]);
  for (std::size_t i = 0; i < nd; ++i) out.d.push_back(-out.d[i]);
  return out;
}

std::vector<fpscope::policy> hist_policies(const fpscope::format& f) {
  auto ps = ref::mode_overflow_policies();
  for (const auto pr : {fpscope::profile::cuda, fpscope::profile::avx512bf16, fpscope::profile::ml_dtypes})
    ps.push_back(fpscope::profile_policy(pr, f));
  fpscope::policy ftz;
  ftz.ftz = true;
  ps.push_back(ftz);
  return ps;
}

template <class T>
void check_counts(const ref::table& t, const std::vector<T>& x, const fpscope::policy& p, mismatches& mm,
                  bool& refined) {
  std::vector<fpscope::cast_spec> specs;
  for (const float s : scales) specs.push_back({t.f, p, s});
  std::vector<fpscope::class_counts> want(specs.size());
  for (std::size_t i = 0; i < specs.size(); ++i)
    for (const T v : x) {
      const cast_class c = ref_class(t, v, specs[i].scale, p);
      ++want[i][c];
      if (fpscope::classify_cast(v, specs[i]) != c && mm.first.size() < mm.keep) {
        std::ostringstream os;
        os << ref::describe(t.f, p) << " scale " << specs[i].scale << ": " << ref::show(v) << " classed "
           << name(fpscope::classify_cast(v, specs[i])) << ", reference " << name(c);
        mm.add(os.str());
      }
    }
  const auto compare = [&](const char* path, const std::vector<fpscope::class_counts>& got) {
    for (std::size_t i = 0; i < specs.size(); ++i) {
      ++mm.checked;
      if (got[i] == want[i]) continue;
      std::ostringstream os;
      os << path << " " << ref::describe(t.f, p) << " scale " << specs[i].scale << ":";
      for (int c = 0; c < fpscope::cast_class_count; ++c) os << " " << got[i].n[c] << "/" << want[i].n[c];
      mm.add(os.str());
    }
  };
  for (const std::uint64_t size : {std::uint64_t(0), ~std::uint64_t(0)}) {  // search path, bucket path
    fpscope::class_counter cc(specs, size, 1);
    // Two add() calls and a refine in another order: the passes must not depend on either.
    const std::size_t half = x.size() / 2;
    cc.add(std::span<const T>(x.data(), half));
    cc.add(std::span<const T>(x.data() + half, x.size() - half));
    if constexpr (std::is_same_v<T, float>) {
      if (cc.needs_refine()) {
        refined = true;
        cc.refine(std::span<const T>(x.data() + half, x.size() - half));
        cc.refine(std::span<const T>(x.data(), half));
      }
    }
    compare(size ? "bucket" : "search", cc.counts());
  }
  compare("count_reference", fpscope::count_reference(std::span<const T>(x), specs));
}

}  // namespace

TEMPLATE_TEST_CASE("hist: class counts == the reference model on every boundary, every policy and scale", "[hist]",
                   fp16, bf16, tf32, e4m3, e5m2, e4m3fnuz, e5m2fnuz, e2m3, e3m2, e2m1) {
  const ref::table& t = ref::get(TestType::id);
  auto rng = rng_for(90, TestType::id);
  const input_set in = adversarial(t, rng);
  mismatches mm;
  bool refined = false;
  for (const auto& p : hist_policies(t.f)) {
    check_counts(t, in.f, p, mm, refined);
    check_counts(t, in.d, p, mm, refined);
  }
  mm.report("class counts");
  // bf16 and tf32 reach float32's subnormals at the tiny scales: the second pass must have run.
  if (TestType::id == fpscope::format_id::bf16 || TestType::id == fpscope::format_id::tf32) CHECK(refined);
}

TEMPLATE_TEST_CASE("hist: every class boundary is a bucket edge while x and x * S are float32 normals", "[hist]",
                   fp16, bf16, tf32, e4m3, e5m2, e4m3fnuz, e5m2fnuz, e2m3, e3m2, e2m1) {
  const fpscope::format f = fmt_of<TestType>;
  std::size_t checked = 0, off = 0;
  std::vector<std::string> first;
  for (const auto& p : hist_policies(f))
    for (int k = -126; k <= 127; ++k) {
      const float s = std::ldexp(1.0f, k);
      const auto th = fpscope::thresholds32({f, p, s});
      for (const auto& side : th.at)
        for (const auto v : side) {
          const float x = f32_from_bits(v);
          if (v == 0x7F800000u || x < 0x1p-126f || double(x) * double(s) < 0x1p-126) continue;  // exact product
          ++checked;
          if (fpscope::bucket_histogram::is_edge(v)) continue;
          if (++off <= 5) first.push_back(ref::describe(f, p) + " 2^" + std::to_string(k) + ": " + ref::show(x));
        }
    }
  std::string msg = std::to_string(checked) + " thresholds checked";
  for (const auto& s : first) msg += "\n  " + s;
  INFO(msg);
  CHECK(checked > 1000);
  CHECK(off == 0);
}

TEST_CASE("hist: bucket_histogram keys, below(), merging, sparse form and threads", "[hist]") {
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<std::uint32_t> u32;
  std::vector<float> x(300000);
  // Random patterns, and values whose fractions are short runs of ones (every bucket kind).
  for (auto& v : x) {
    const std::uint32_t run = u32(rng) % 24, tail = u32(rng) % 4 == 0 ? 0 : u32(rng) & ((1u << (22 - std::min(run, 22u))) - 1);
    v = u32(rng) & 1 ? f32_from_bits(u32(rng))
                     : f32_from_bits((u32(rng) & 0xFF800000u) | (((1u << run) - 1) << (23 - run) & 0x7FFFFFu) | tail);
  }
  // Keys are ordered like magnitudes within a sign.
  for (int i = 0; i < 100000; ++i) {
    const std::uint32_t a = u32(rng) & 0x7FFFFFFFu, b = u32(rng) & 0x7FFFFFFFu;
    if (a < b) REQUIRE(fpscope::bucket_histogram::key(a) <= fpscope::bucket_histogram::key(b));
  }
  fpscope::bucket_histogram serial, threaded, halves, other;
  serial.add(x, 1);
  threaded.add(x, 2);
  halves.add(std::span<const float>(x).first(1000), 1);
  other.add(std::span<const float>(x).subspan(1000), 2);
  halves += other;
  fpscope::bucket_histogram rebuilt;
  const auto sp = serial.sparse();
  rebuilt.add_sparse(sp);
  CHECK(serial.total() == x.size());
  std::size_t differ = 0;
  for (std::uint32_t k = 0; k < fpscope::bucket_histogram::bucket_count; ++k)
    differ += serial[k] != threaded[k] || serial[k] != halves[k] || serial[k] != rebuilt[k];
  CHECK(differ == 0);
  // The pipelined count (16 keys, 64 with AVX-512, computed ahead of their increments; values
  // past the last whole step counted one by one; inputs under 4096 values all counted one by
  // one, straight into the histogram) against a plain count of key(), at every length around
  // its steps and at every start within a vector; add_amax's max against a plain max of the
  // finite magnitudes (x holds infs and NaNs of both signs).
  const auto plain_amax = [](std::span<const float> v) {
    float m = 0;
    for (const float f : v)
      if (std::isfinite(f)) m = std::max(m, std::fabs(f));
    return m;
  };
  for (std::size_t start : {0, 1, 5, 15})
    for (std::size_t base : {0, 4096})
    for (std::size_t more = 0; more < 330; more += more < 140 || more % 64 < 3 || more % 64 > 60 ? 1 : 5) {
      const std::size_t len = base + more;
      const auto part = std::span<const float>(x).subspan(start, len);
      fpscope::bucket_histogram h;
      const float amax = f32_from_bits(h.add_amax(part, 1));
      std::map<std::uint32_t, std::uint64_t> plain;
      for (const float f : part) ++plain[fpscope::bucket_histogram::key(bits_of(f))];
      const auto got = h.sparse();
      INFO("start " << start << ", length " << len);
      REQUIRE(std::vector<std::pair<std::uint32_t, std::uint64_t>>(plain.begin(), plain.end()) == got);
      REQUIRE(bits_of(amax) == bits_of(plain_amax(part)));
    }
  // Threaded: the max over the threads' slices; every finite value below the largest one too.
  {
    std::vector<float> y(x.size());
    for (std::size_t i = 0; i < y.size(); ++i) y[i] = std::isfinite(x[i]) ? std::ldexp(x[i], -200) : x[i];
    y[123457] = -0x1.fffffep+100f;
    for (const auto& v : {x, y}) {
      fpscope::bucket_histogram h;
      CHECK(bits_of(f32_from_bits(h.add_amax(v, 2))) == bits_of(plain_amax(v)));
    }
    fpscope::bucket_histogram nothing;
    CHECK(nothing.add_amax(std::vector<float>{NAN, -INFINITY, INFINITY}, 1) == 0);
  }
  // below() against a plain count, at edges of both kinds.
  for (int i = 0; i < 200; ++i) {
    std::uint32_t k = u32(rng) % fpscope::bucket_histogram::per_sign;
    const std::uint32_t s = u32(rng) & 1;
    if (k % 128 >= 96) k -= 32;  // runs of 24+ do not exist
    if (k % 128 >= 84) k &= ~1u;  // after a run of 21 or more nothing is below the "next" bit
    if (k % 128 >= 88) k &= ~3u;  // after a run of 22 or 23 no bit is left
    const std::uint32_t v = fpscope::bucket_histogram::lowest(k);
    REQUIRE(fpscope::bucket_histogram::is_edge(v));
    REQUIRE(fpscope::bucket_histogram::key(v) == k);
    std::uint64_t want = 0;
    for (const float f : x) want += (bits_of(f) >> 31) == s && (bits_of(f) & 0x7FFFFFFFu) < v;
    REQUIRE(serial.below(int(s), v) == want);
  }
  CHECK_THROWS(serial.below(0, 0x3F800005u));
  // binades: every nonzero finite value once, at floor(log2|x|) (float32 subnormals at -127).
  std::map<int, std::uint64_t> want;
  for (const float f : x)
    if (std::isfinite(f) && f != 0) ++want[std::fabs(f) >= 0x1p-126f ? std::ilogb(f) : -127];
  CHECK(serial.binades() == want);
}

TEST_CASE("hist: scaled(double) rounds the exact product once", "[hist]") {
  std::mt19937_64 rng(11);
  std::uniform_int_distribution<std::uint64_t> u64;
  std::size_t bad = 0;
  for (int i = 0; i < 2000000; ++i) {
    double x = f64_from_bits(u64(rng));
    if (!std::isfinite(x)) continue;
    int e;
    x = std::ldexp(std::frexp(x, &e), int(u64(rng) % 400) - 250);
    const float s = f32_from_bits(std::uint32_t(u64(rng) % 0x7F000000u) + 0x00800000u);
    bad += bits_of(fpscope::scaled(x, s)) != bits_of(exact_scaled(x, s));
  }
  CHECK(bad == 0);
}

TEST_CASE("hist: refuses sr, unsigned formats and bad scales", "[hist]") {
  const auto fp16 = fpscope::builtin(fpscope::format_id::fp16);
  fpscope::policy sr;
  sr.round = fpscope::rounding::sr;
  CHECK_THROWS_AS(fpscope::check({fp16, sr, 1.0f}), std::invalid_argument);
  CHECK_THROWS_AS(fpscope::check({fpscope::builtin(fpscope::format_id::e8m0), {}, 1.0f}), std::invalid_argument);
  for (const float s : {0.0f, -1.0f, INFINITY, NAN}) CHECK_THROWS_AS(fpscope::check({fp16, {}, s}), std::invalid_argument);
}

// The error statistics against exact sums: every term formed and summed in 332-bit binary
// floating point (Boost.Multiprecision; far below the bounds checked) from the reference
// model's cast, never fpscope's.
namespace {

using wide = boost::multiprecision::cpp_bin_float_100;

struct exact_errors {
  std::uint64_t n = 0;
  wide sum_rel = 0, max_rel = 0, signal = 0, noise = 0;
};

template <class T>
exact_errors exact_errors_of(const ref::table& t, std::span<const T> x, float s, const fpscope::policy& p) {
  exact_errors e;
  const wide ws = s;
  for (const T v : x) {
    const cast_class c = ref_class(t, v, s, p);
    if (c != cast_class::subnormal && c != cast_class::normal) continue;
    const ref::result r = ref::encode(t, ref::describe(exact_scaled(v, s)), p);
    const auto it = std::lower_bound(t.code.begin(), t.code.end(), r.code & ~t.sign_bit);
    const wide q = wide(t.val[std::size_t(it - t.code.begin())]) * (std::signbit(v) ? -1 : 1);
    const wide xv = v, err = q / ws - xv, rel = abs(err) / abs(xv);
    ++e.n;
    e.sum_rel += rel;
    e.max_rel = std::max(e.max_rel, rel);
    e.signal += xv * xv;
    e.noise += err * err;
  }
  return e;
}

// |got - want| <= 2^-bits * want
bool within(double got, const wide& want, int bits) { return abs(wide(got) - want) <= ldexp(want, -bits); }

// Whether anything was measured (a scale can leave nothing representable: then n == 0 too).
bool check_errors(const fpscope::error_stats& e, const exact_errors& w) {
  CHECK(e.n == w.n);
  if (w.n == 0) return false;
  CHECK(within(e.sum_rel, w.sum_rel, 40));  // docs/hist.md "Error statistics": sums to 2^-40
  CHECK(within(e.signal, w.signal, 40));
  CHECK(within(e.noise, w.noise, 40));
  CHECK(within(e.max_rel, w.max_rel, 50));  // the max to 2^-50
  return true;
}

using method = fpscope::error_tally::method;
// Whether this build has the direct method (error_tally falls back to the sort without AVX-512).
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__)
constexpr bool direct_available = true;
#else
constexpr bool direct_available = false;
#endif

// Wide-range values: normal values times 2^-30..2^0 (the data of issue 20), lognormal ones over
// ~60 binades, both signs, zeros, infinities, NaN, float32 subnormals.
std::vector<float> error_data(std::size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd;
  std::lognormal_distribution<float> ld(-9, 4);
  std::vector<float> x(n);
  for (std::size_t i = 0; i < n; ++i)
    x[i] = i % 2 ? nd(rng) * std::ldexp(1.0f, -int(rng() % 31)) : ld(rng) * (rng() & 1 ? 1.0f : -1.0f);
  const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 0x1p-140f, -0x1.8p-135f, 65504.0f, 448.0f, 460.0f};
  for (std::size_t i = 0; i < std::size(special); ++i) x[i * 13 % n] = special[i];
  return x;
}

}  // namespace

TEMPLATE_TEST_CASE("hist: error statistics == exact sums, to the documented accuracy", "[hist]", fp16, bf16, e4m3, e5m2,
                   e4m3fnuz, e2m1) {
  const ref::table& t = ref::get(TestType::id);
  const auto x = error_data(20000, 5);
  const std::vector<double> xd(x.begin(), x.begin() + 5000);
  std::vector<fpscope::cast_spec> specs;
  for (const auto rnd : {fpscope::rounding::rne, fpscope::rounding::rtz, fpscope::rounding::rup})
    for (const float s : {1.0f, 1024.0f, 0x1p-20f, 3.0f, 0.1f, 0x1p-126f}) {
      fpscope::policy p;
      p.round = rnd;
      specs.push_back({t.f, p, s});
    }
  // All the specs in one tally, the chunks added from two threads in odd sizes; every method.
  const auto how = GENERATE(method::automatic, method::sorted, method::direct);
  fpscope::error_tally all(specs, how), all64(specs, how);
  CHECK(all.direct() == (how == method::direct && direct_available));
  std::thread other([&] { all.add(std::span<const float>(x).subspan(7777)); });
  all.add(std::span<const float>(x).first(7777));
  other.join();
  all64.add_parallel(std::span<const double>(xd), 2);
  const auto got = all.stats(), got64 = all64.stats();
  std::size_t measured = 0;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    INFO(t.f.name << " scale " << specs[i].scale << " rounding " << int(specs[i].pol.round));
    measured += check_errors(got[i], exact_errors_of(t, std::span<const float>(x), specs[i].scale, specs[i].pol));
    measured += check_errors(got64[i], exact_errors_of(t, std::span<const double>(xd), specs[i].scale, specs[i].pol));
    fpscope::error_stats one;  // the one-spec entry point is the same tally
    fpscope::accumulate_errors(x, specs[i], one);
    CHECK(one.n == got[i].n);
    CHECK(one.max_rel == got[i].max_rel);
  }
  CHECK(measured >= specs.size());  // most specs measured something (of 2 x 18)
  CHECK(std::isnan(fpscope::error_stats{}.sqnr_db()));
}

// The per-binade sums (float32 values at power-of-two scales): every deterministic rounding,
// overflow policy, profile and ftz, at scales that put the data's binades into the formats'
// normal and subnormal ranges (several dropped-bit counts per binade) and across both edges.
TEMPLATE_TEST_CASE("hist: per-binade error statistics == exact sums, every policy and power-of-two scale", "[hist]",
                   fp16, bf16, e4m3, e5m2, e4m3fnuz, e2m1) {
  const ref::table& t = ref::get(TestType::id);
  const auto x = error_data(6000, 11);
  std::vector<fpscope::cast_spec> specs;
  for (const auto& p : hist_policies(t.f))
    for (const int k : {0, 10, -20, 30, -60, 100, -126}) specs.push_back({t.f, p, std::ldexp(1.0f, k)});
  const auto how = GENERATE(method::automatic, method::sorted, method::direct);
  fpscope::error_tally all(specs, how);
  CHECK(all.direct() == (how == method::direct && direct_available));
  all.add_parallel(std::span<const float>(x), 2);
  const auto got = all.stats();
  std::size_t measured = 0, per_binade = 0;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    INFO(t.f.name << " scale " << specs[i].scale << " rounding " << int(specs[i].pol.round) << " overflow "
                  << int(specs[i].pol.on_overflow) << " ftz " << specs[i].pol.ftz);
    per_binade += all.per_binade(i);
    measured += check_errors(got[i], exact_errors_of(t, std::span<const float>(x), specs[i].scale, specs[i].pol));
  }
  CHECK(per_binade >= specs.size() * 3 / 4);  // the decomposition did the work, not the fallback
  CHECK(measured >= specs.size() / 2);
}

// The direct method's edges: every float32 binade 2^-149 .. 2^127 (both signs) at its bottom,
// its top, one ulp off each, and the ties of every dropped-bit count and their neighbours (odd
// and even kept bits: 1 + 2^-k + 2^-(k+1) sits there too as the +ulp of the next), with zeros,
// infinities and NaN, at scales that move the formats' normal-range edges (where a spec's
// binades change from summed directly to rounded below the normal range to the bulk conversion
// to uncounted) across the data. One spec per tally, so `automatic` picks the direct method
// too (where the build has it), the way `hist -s 2^k --errors all` and replay use it.
TEMPLATE_TEST_CASE("hist: error statistics at every binade edge and class threshold == exact sums", "[hist]", fp16, bf16, e4m3,
                   e5m2, e4m3fnuz, e2m1) {
  const ref::table& t = ref::get(TestType::id);
  std::vector<float> x = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN};
  for (int e = -149; e <= 127; ++e)
    for (const float sign : {1.0f, -1.0f}) {
      const float p = std::ldexp(1.0f, e);
      x.push_back(sign * p);
      x.push_back(sign * std::nextafter(p, INFINITY));
      if (e > -149) x.push_back(sign * std::nextafter(p, 0.0f));
      if (e < 127) x.push_back(sign * std::nextafter(2 * p, 0.0f));
      for (int d = 1; d <= 23 && e - 23 + d > -150; ++d) {  // the tie at d dropped bits, and an ulp off
        const float tie = p + std::ldexp(1.0f, e - 23 + d - 1);
        for (const float v : {tie, std::nextafter(tie, 0.0f), std::nextafter(tie, INFINITY)}) x.push_back(sign * v);
      }
      x.push_back(sign * 1.3f * p);
    }
  // Both methods: the direct one (automatic, one spec) and the sort's masked runs for the
  // binades an edge cuts. Each spec's class thresholds and their neighbours join the data (our
  // thresholds choose the points only; the exact sums judge them).
  const auto how = GENERATE(method::automatic, method::sorted);
  std::size_t measured = 0, direct = 0;
  for (const auto& p : hist_policies(t.f))
    for (const int k : {0, -20, 15, -126, 100, 127}) {
      const fpscope::cast_spec c{t.f, p, std::ldexp(1.0f, k)};
      INFO(t.f.name << " scale 2^" << k << " rounding " << int(p.round) << " overflow " << int(p.on_overflow)
                    << " ftz " << p.ftz << " method " << int(how));
      std::vector<float> xs = x;
      const auto th = fpscope::thresholds32(c);
      for (std::uint32_t sg = 0; sg < 2; ++sg)
        for (const std::uint32_t v : th.at[sg])
          for (const std::uint32_t b : {v - 1, v, v + 1})
            if (b < 0x7F800000u) xs.push_back(std::bit_cast<float>(sg << 31 | b));
      fpscope::error_tally one({c}, how);
      direct += one.direct();
      one.add(std::span<const float>(xs));
      measured += check_errors(one.stats().front(), exact_errors_of(t, std::span<const float>(xs), c.scale, p));
    }
  CHECK(measured >= 12);
  if (direct_available && how == method::automatic) CHECK(direct >= measured);  // the direct method did the work
  if (how == method::sorted) CHECK(direct == 0);
}

TEST_CASE("hist: the shipped gradients, every fp16/bf16/e4m3/e5m2 count == the reference model", "[hist]") {
  const std::filesystem::path file = std::filesystem::path(FPSCOPE_SOURCE_DIR) / "datasets/lm-grads/step0300.npy";
  const fpscope::npy_reader r(file.string());
  const auto x = r.values<float>();
  for (const auto id : {fpscope::format_id::fp16, fpscope::format_id::bf16, fpscope::format_id::e4m3,
                        fpscope::format_id::e5m2}) {
    const ref::table& t = ref::get(id);
    std::vector<fpscope::cast_spec> specs;
    for (int k = -10; k <= 30; k += 4) specs.push_back({t.f, {}, std::ldexp(1.0f, k)});
    fpscope::class_counter cc(specs);
    cc.add(x);
    if (cc.needs_refine()) cc.refine(x);
    const auto got = cc.counts();
    for (std::size_t i = 0; i < specs.size(); ++i) {
      fpscope::class_counts want;
      for (const float v : x) ++want[ref_class(t, v, specs[i].scale, {})];
      INFO(t.f.name << " scale " << specs[i].scale);
      CHECK(got[i] == want);
    }
  }
}
