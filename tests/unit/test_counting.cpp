// 14. Counting as the front ends use it (fpscope/counting.hpp): a tally of chunks from any
// thread, in any order, counts what one class_counter over the whole input counts (itself
// checked against the reference model in test_histogram.cpp); counts straight from a sparse
// histogram equal the bucket table's, exactness flags included; the sweep and its
// recommendations follow their definitions, recomputed here from the reference path
// (count_reference: every value cast).
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <thread>

#include "common.hpp"
#include "fpscope/counting.hpp"

using fpscope::cast_class;
using fpscope::cast_spec;
using fpscope::class_counts;

namespace {

// Gradient-like magnitudes over ~200 binades (float32 subnormals included), both signs, the
// specials, and values on fp16's boundaries.
std::vector<float> data(std::size_t n, unsigned seed) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> e(-150, 60);
  std::vector<float> x(n);
  for (auto& v : x) v = static_cast<float>(std::exp2(e(g)) * (g() & 1 ? -1 : 1));
  const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 0x1p-25f, 0x1.8p-25f, 65504.0f, 65520.0f, 0x1p-140f};
  for (std::size_t i = 0; i < std::size(special) && i < n; ++i) x[i * 7 % n] = special[i];
  return x;
}

std::vector<cast_spec> specs() {
  using fpscope::builtin;
  using fpscope::format_id;
  std::vector<cast_spec> s;
  for (const auto id : {format_id::fp16, format_id::bf16, format_id::e4m3, format_id::e5m2, format_id::e2m1})
    for (const float scale : {1.0f, 0x1p-20f, 0x1p30f, 3.0f, 0.1f, 0x1p-140f})  // powers of two and not
      s.push_back({builtin(id), fpscope::profile_policy(fpscope::profile::ieee, builtin(id)), scale});
  return s;
}

std::vector<class_counts> whole(const std::vector<float>& x, const std::vector<cast_spec>& sp) {
  fpscope::class_counter c(sp, x.size(), 1);
  c.add(x);
  if (c.needs_refine()) c.refine(x);
  return c.counts();
}

}  // namespace

TEST_CASE("counting: a tally of chunks counts what one counter over the whole input counts", "[counting]") {
  const auto sp = specs();
  const auto x = data(300000, 1);
  const auto want = whole(x, sp);
  REQUIRE(std::accumulate(want.begin(), want.end(), std::uint64_t{0},
                          [](auto a, const class_counts& c) { return a + c[cast_class::subnormal]; }) > 0);
  // Chunks of odd sizes, added in reverse order from two threads at once.
  std::vector<std::span<const float>> chunks;
  for (std::size_t at = 0, k = 1; at < x.size(); at += std::min<std::size_t>(k * 7919, x.size() - at), ++k)
    chunks.push_back(std::span<const float>(x).subspan(at, std::min<std::size_t>(k * 7919, x.size() - at)));
  REQUIRE(chunks.size() > 5);
  fpscope::class_tally t(sp, x.size());
  std::thread a([&] {
    for (std::size_t i = chunks.size(); i-- > 0;)
      if (i % 2) t.add(chunks[i]);
  });
  for (std::size_t i = chunks.size(); i-- > 0;)
    if (i % 2 == 0) t.add(chunks[i]);
  a.join();
  CHECK(t.counts() == want);
  CHECK(t.exact());
  CHECK(t.size() == x.size());
  fpscope::bucket_histogram h;
  h.add(x);
  CHECK(t.binades() == h.binades());
  // The parallel array path, under several thread counts, and count_classes.
  for (const int threads : {1, 2, 3}) {
    fpscope::class_tally p(sp, x.size());
    p.add_parallel(x, threads);
    CHECK(p.counts() == want);
    CHECK(fpscope::count_classes(std::span<const float>(x), sp, threads) == want);
  }
}

TEST_CASE("counting: the refine pass on several threads counts what casting every value counts", "[counting]") {
  // Scales that put boundaries inside well-filled buckets (3, 0.1, 2^-140: x * S in float32's
  // subnormals), so that the refine pass has work; its per-thread counts are added after.
  const auto sp = specs();
  const auto x = data(200000, 4);
  const auto want = fpscope::count_reference(std::span<const float>(x), sp);
  // Repeated: which thread takes which slice varies from run to run (a lost per-thread count
  // shows only when that thread did some of the work).
  for (const int threads : {1, 2, 3, 2, 3, 2, 3})
    for (const bool twice : {false, true}) {
      fpscope::class_counter c(sp, x.size(), threads);
      c.add(x);
      REQUIRE(c.needs_refine());
      c.refine(x);
      CHECK_FALSE(c.needs_refine());
      CHECK(c.counts() == want);
      if (!twice) continue;
      c.reset(x.size());  // the refine arrays are planned again for the next tensor
      c.add(std::span<const float>(x).first(x.size() / 2));
      c.add(std::span<const float>(x).subspan(x.size() / 2));
      if (c.needs_refine()) c.refine(x);
      CHECK(c.counts() == want);
    }
}

TEST_CASE("counting: the refine fused into the counting pass counts what casting every value counts", "[counting]") {
  // On one thread, a few specs whose boundaries fall inside buckets are resolved in the
  // counting pass's own read (class_counter lists their buckets' values as it counts): no
  // refine pass is asked for. Each spec alone and the 4 formats together, at scales that are
  // not powers of two (and 2^-140: bf16 into float32's subnormals), on values crowded around
  // every boundary (each one, its neighbours, random values of its binade, both signs) among
  // gradient-like ones; added in two parts, the second starting off a vector's alignment.
  using fpscope::builtin;
  using fpscope::format_id;
  std::vector<std::vector<cast_spec>> sets;
  std::vector<cast_spec> all4;
  for (const float scale : {3.0f, 0.1f, 0x1p-140f, 1.0f / 3.0f}) {
    all4.clear();
    for (const auto id : {format_id::fp16, format_id::bf16, format_id::e4m3, format_id::e5m2, format_id::e2m1}) {
      const cast_spec c{builtin(id), fpscope::profile_policy(fpscope::profile::ieee, builtin(id)), scale};
      sets.push_back({c});
      if (id != format_id::e2m1) all4.push_back(c);
    }
    sets.push_back(all4);
  }
  std::mt19937_64 g(11);
  auto x = data(150000, 5);
  for (const auto& sp : sets)
    for (const auto& c : sp) {
      const auto th = fpscope::thresholds32(c);
      for (std::uint32_t s = 0; s < 2; ++s)
        for (const std::uint32_t v : th.at[s]) {
          if (v >= 0x7F800000u) continue;
          for (std::uint32_t d = 0; d < 5; ++d) x.push_back(unit::f32_from_bits(s << 31 | (v + d - 2)));
          for (int k = 0; k < 40; ++k) x.push_back(unit::f32_from_bits(s << 31 | (v & 0x7F800000u) | std::uint32_t(g() & 0x7FFFFF)));
        }
    }
  std::shuffle(x.begin(), x.end(), g);
  // Boundaries among float32's subnormals are left out of the plan; where such a bucket holds
  // values, add() falls back to the separate pass: x has them, xn (x less its float32
  // subnormals) has none, so the fusion carries it through.
  std::vector<float> xn;
  std::copy_if(x.begin(), x.end(), std::back_inserter(xn), [](float v) { return !(std::fpclassify(v) == FP_SUBNORMAL); });
  REQUIRE(xn.size() + 1000 < x.size());
  std::size_t fused = 0, fused_n = 0;
  for (const auto& sp : sets)
    for (const bool normal_only : {false, true}) {
      const std::vector<float>& v = normal_only ? xn : x;
      const std::size_t cut = v.size() / 2 + 3;
      const std::span<const float> a(v.data(), cut), b(v.data() + cut, v.size() - cut);
      const auto want = fpscope::count_reference(std::span<const float>(v), sp);
      fpscope::class_counter two(sp, v.size(), 2);  // the refine pass, for comparison
      two.add(v);
      const bool needed = two.needs_refine();
      if (needed) two.refine(v);
      REQUIRE(two.counts() == want);
      fpscope::class_counter c(sp, v.size(), 1);
      c.add(a);
      c.add(b);
      (normal_only ? fused_n : fused) += needed && !c.needs_refine();
      if (c.needs_refine()) c.refine(v);
      CHECK(c.counts() == want);
      // Again after a reset (the listing is planned again), and in small adds (below the
      // pipelined loop's reach) of odd sizes.
      c.reset(v.size());
      for (std::size_t at = 0; at < v.size(); at += 1001) c.add(std::span<const float>(v).subspan(at, std::min<std::size_t>(1001, v.size() - at)));
      if (c.needs_refine()) c.refine(v);
      CHECK(c.counts() == want);
      // Loose, then not: the values already added were listed for the loose boundaries only, so
      // the refine pass must take them all (the tally does this for chunks with float32 subnormals).
      c.reset(v.size());
      std::vector<char> loose(sp.size(), 0);
      loose[0] = 1;  // the others, if any, listed
      c.set_loose(loose);
      c.add(a);
      c.set_loose({});
      c.add(b);
      REQUIRE(c.needs_refine() == needed);
      if (c.needs_refine()) c.refine(v);
      CHECK(c.counts() == want);
      // A recorded histogram after the values: its cut buckets stay whole, as without the fusion.
      fpscope::bucket_histogram h;
      h.add(b);
      fpscope::class_counter hc(sp, v.size(), 1), h2(sp, v.size(), 2);
      for (auto* k : {&hc, &h2}) {
        k->add(a);
        k->add_histogram(h.sparse());
        if (k->needs_refine()) k->refine(a);
      }
      CHECK(hc.counts() == h2.counts());
      CHECK(hc.exact() == h2.exact());
      // The tally (chunks of one thread each) on two threads.
      fpscope::class_tally t(sp, v.size());
      t.add_parallel(std::span<const float>(v), 2);
      CHECK(t.counts() == want);
    }
  // Every spec alone needs the refine pass somewhere; the fusion took it over where no float32
  // subnormal sits in a left-out bucket, and fell back where one does.
  CAPTURE(fused, fused_n, sets.size());
  CHECK(fused_n >= 15);
  CHECK(fused < fused_n);
}

TEST_CASE("counting: small inputs take the threshold search, and agree", "[counting]") {
  const auto sp = specs();
  const auto x = data(3000, 2);
  fpscope::class_tally t(sp, x.size());  // below 2^12 values: no bucket table at all
  t.add(std::span<const float>(x).first(1000));
  t.add(std::span<const float>(x).subspan(1000));
  CHECK(t.counts() == fpscope::count_reference(std::span<const float>(x), sp));
  std::vector<double> d(x.begin(), x.end());
  d[1] = 1e-300;  // beyond float32
  fpscope::class_tally td(sp, d.size());
  td.add(std::span<const double>(d));
  CHECK(td.counts() == fpscope::count_reference(std::span<const double>(d), sp));
}

TEST_CASE("counting: counts from a sparse histogram equal the bucket table's", "[counting]") {
  const auto sp = specs();
  const auto x = data(200000, 3);
  fpscope::bucket_histogram h;
  h.add(x);
  const auto sparse = h.sparse();
  REQUIRE(sparse.size() > 1000);
  std::vector<fpscope::cast_thresholds<std::uint32_t>> th;
  for (const auto& c : sp) th.push_back(fpscope::thresholds32(c));
  std::vector<char> inexact;
  const auto got = fpscope::count_histogram(sparse, th, inexact);
  // The bucket table's way (class_counter::add_histogram): counts and exactness per spec.
  fpscope::class_counter c(sp, ~std::uint64_t{0}, 1);
  c.add_histogram(sparse);
  CHECK(got == c.counts());
  std::size_t exact = 0;
  for (std::size_t i = 0; i < sp.size(); ++i) {
    CHECK(bool(inexact[i]) == !c.exact(i));
    exact += !inexact[i];
  }
  // Both kinds occur: powers of two in the float32 normals are exact, 0.1 and 2^-140 are not.
  CHECK(exact > 0);
  CHECK(exact < sp.size());
  // Where a spec is exact, it is the values' count; keys in any order give the same.
  const auto values = whole(x, sp);
  for (std::size_t i = 0; i < sp.size(); ++i)
    if (!inexact[i]) CHECK(got[i] == values[i]);
  auto shuffled = sparse;
  std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937(4));
  std::vector<char> again;
  CHECK(fpscope::count_histogram(shuffled, th, again) == got);
  CHECK(fpscope::histogram_binades(sparse) == h.binades());
  // A tally mixing a histogram and values: additive, and inexact only where the histogram is.
  fpscope::class_tally t(sp);
  t.add_histogram(sparse);
  t.add(std::span<const float>(x));
  for (std::size_t i = 0; i < sp.size(); ++i) {
    class_counts twice = values[i];
    twice += got[i];
    CHECK(t.counts()[i] == twice);
    CHECK(t.exact(i) == !inexact[i]);
  }
  CHECK_THROWS_AS(fpscope::count_histogram(std::vector<std::pair<std::uint32_t, std::uint64_t>>{{1u << 16, 1}}, th, inexact),
                  std::invalid_argument);
}

TEST_CASE("counting: the sweep and the scales it recommends", "[counting]") {
  using fpscope::scale_sweep;
  const fpscope::format f = fpscope::builtin(fpscope::format_id::fp16);
  const fpscope::policy p{};
  // Gradient-like: log2|x| ~ -30 +- 8, some zeros and an outlier.
  std::mt19937_64 g(5);
  std::normal_distribution<double> e(-30, 8);
  std::vector<float> x(20000);
  for (auto& v : x) v = static_cast<float>(std::exp2(e(g)));
  x[0] = 0, x[1] = 0, x[2] = 3.0f;
  const auto sp = scale_sweep::specs(f, p);
  REQUIRE(sp.size() == scale_sweep::size);
  CHECK(sp.front().scale == 0x1p-126f);
  CHECK(sp.back().scale == 0x1p127f);
  const auto ref = fpscope::count_reference(std::span<const float>(x), sp);  // every value cast
  const scale_sweep s(fpscope::count_classes(std::span<const float>(x), sp));
  for (int k = scale_sweep::kmin; k <= scale_sweep::kmax; ++k) CHECK(s.at(k) == ref[std::size_t(k - scale_sweep::kmin)]);
  CHECK_THROWS_AS(s.at(128), std::out_of_range);
  CHECK_THROWS_AS(s.at(-127), std::out_of_range);

  // The definitions, from the reference counts: the largest 2^k with no overflow, less the
  // headroom; fewest underflow + overflow, then subnormal, the middle of the tie.
  int top = 0;
  for (int k = scale_sweep::kmin; k <= scale_sweep::kmax; ++k)
    if (ref[std::size_t(k - scale_sweep::kmin)][cast_class::overflow] == 0) top = k;
  REQUIRE(top > 0);
  REQUIRE(top < 16);
  for (const int headroom : {0, 1, 3}) {
    const auto r = fpscope::recommend(s, headroom);
    REQUIRE(r.gradscaler);
    CHECK(r.no_overflow_log2 == top);
    CHECK(r.gradscaler->log2_scale == top - headroom);
    CHECK(r.gradscaler->counts == s.at(top - headroom));
  }
  std::vector<int> best;
  std::pair<std::uint64_t, std::uint64_t> low{~0ull, ~0ull};
  for (int k = scale_sweep::kmin; k <= scale_sweep::kmax; ++k) {
    const auto& c = ref[std::size_t(k - scale_sweep::kmin)];
    const std::pair<std::uint64_t, std::uint64_t> l{c[cast_class::underflow] + c[cast_class::overflow], c[cast_class::subnormal]};
    if (l < low) low = l, best = {k};
    else if (l == low) best.push_back(k);
  }
  const auto r = fpscope::recommend(s);
  REQUIRE(r.fewest_lost);
  CHECK(r.fewest_lost->log2_scale == best[best.size() / 2]);
  CHECK(r.fewest_lost_range == std::pair{best.front(), best.back()});

  // Nothing to recommend from zeros alone; every scale overflowing gives no GradScaler row.
  const std::vector<float> zeros(100, 0.0f);
  const auto none = fpscope::recommend(scale_sweep(fpscope::count_classes(std::span<const float>(zeros), sp)));
  CHECK_FALSE(none.gradscaler);
  CHECK_FALSE(none.fewest_lost);
  // float64 inputs beyond float32: 1e300 * 2^-126 is still beyond fp16 at every power of two.
  const std::vector<double> huge(10, 1e300);
  const auto over = fpscope::recommend(scale_sweep(fpscope::count_classes(std::span<const double>(huge), sp)));
  CHECK_FALSE(over.gradscaler);
  CHECK(over.fewest_lost);
}

// The sweep counted loose (no refine pass for its boundaries: what hist does) and the scales
// recommend_unsure names counted again exactly give the recommendations of the exact sweep,
// for formats whose boundaries land inside buckets at float32-subnormal x * S (bf16, tf32) and
// others, both signs' thresholds apart (rup), data with and without float32 subnormals. The
// loose counts keep their stated bounds; a scale without uncertain values is exact.
TEST_CASE("counting: a loose sweep and its unsure scales give the exact sweep's recommendations", "[counting]") {
  using fpscope::scale_sweep;
  using fpscope::format_id;
  std::mt19937_64 g(23);
  std::normal_distribution<double> nd;
  std::uniform_real_distribution<double> ud(0, 30);
  std::vector<std::vector<float>> sets;
  sets.push_back(data(30000, 3));  // ~210 binades, float32 subnormals, specials
  std::vector<float> issue(30000);  // issue 20's: normal values times 2^-U(0,30)
  for (auto& v : issue) v = static_cast<float>(nd(g) * std::exp2(-ud(g)));
  sets.push_back(issue);
  std::vector<float> tiny(5000);  // near float32's bottom: 2^-140 .. 2^-100
  for (auto& v : tiny) v = static_cast<float>(std::exp2(-100 - 40 * ud(g) / 30) * (g() & 1 ? 1 : -1));
  sets.push_back(tiny);
  // No float32 subnormals, the smallest values at 1.0001 x 2^-60: the bucket bf16's and tf32's
  // boundaries cut where x * S is a float32 subnormal, at the low end of the scales that lose
  // nothing, so that a loose count cannot tell whether they tie.
  std::vector<float> low(8000);
  for (auto& v : low) v = static_cast<float>(std::exp2(-60 + 63 * ud(g) / 30));
  for (std::size_t i = 0; i < 40; ++i) low[i * 97] = 0x1.0001p-60f * (i % 2 ? 1.0f : -1.0f);
  sets.push_back(low);
  // float32's whole normal range, its ends included: no scale keeps bf16 and tf32 from losing
  // or making subnormals, so the least lost is decided among scales with uncertain values.
  std::vector<float> span(8000);
  for (auto& v : span) v = static_cast<float>(std::min(std::exp2(-126 + 254 * ud(g) / 30), double(FLT_MAX)));
  span[0] = FLT_MAX, span[1] = FLT_MIN, span[2] = 0x1.0001p-126f, span[3] = -FLT_MAX;
  sets.push_back(span);
  std::size_t cases = 0, with_uncertain = 0, fast = 0, recounted = 0;
  for (std::size_t set = 0; set < sets.size(); ++set)
    for (const auto id : {format_id::bf16, format_id::tf32, format_id::fp16, format_id::e4m3, format_id::e2m1})
      for (const auto rnd : {fpscope::rounding::rne, fpscope::rounding::rup}) {
        const auto& x = sets[set];
        fpscope::policy p;
        p.round = rnd;
        const auto sp = scale_sweep::specs(fpscope::builtin(id), p);
        fpscope::class_tally exact(sp, x.size()), loose(sp, x.size(), std::vector<char>(sp.size(), 1));
        exact.add_parallel(std::span<const float>(x), 2);
        loose.add_parallel(std::span<const float>(x), 2);
        const auto ce = exact.counts(), cl = loose.counts();
        std::vector<std::uint64_t> u(sp.size());
        bool any = false;
        for (std::size_t i = 0; i < sp.size(); ++i) {
          INFO(fpscope::builtin(id).name << " 2^" << int(i) + scale_sweep::kmin);
          u[i] = loose.uncertain(i);
          any |= u[i] != 0;
          CHECK(exact.uncertain(i) == 0);
          CHECK(loose.exact(i) == (u[i] == 0));
          if (u[i] == 0) CHECK(cl[i] == ce[i]);
          // Each uncertain value counted in the highest class its bucket allows.
          CHECK(ce[i][cast_class::overflow] <= cl[i][cast_class::overflow]);
          CHECK(ce[i][cast_class::overflow] + u[i] >= cl[i][cast_class::overflow]);
          CHECK(ce[i][cast_class::underflow] >= cl[i][cast_class::underflow]);
          CHECK(ce[i][cast_class::underflow] <= cl[i][cast_class::underflow] + u[i]);
          CHECK(ce[i][cast_class::subnormal] + u[i] >= cl[i][cast_class::subnormal]);
          CHECK(ce[i][cast_class::subnormal] <= cl[i][cast_class::subnormal] + u[i]);
          CHECK(ce[i].total() == cl[i].total());
        }
        with_uncertain += any;
        // A chunk with float32 subnormals (sets 0 and 2: one chunk each) is counted exactly.
        if (set == 0 || set == 2) CHECK_FALSE(any);
        for (const int headroom : {0, 1, 3}) {
          const scale_sweep se(ce), sl(cl);
          const auto unsure = fpscope::recommend_unsure(sl, u, headroom);
          std::vector<class_counts> fixed = cl;
          for (const int k : unsure) fixed[std::size_t(k - scale_sweep::kmin)] = ce[std::size_t(k - scale_sweep::kmin)];
          const auto want = fpscope::recommend(se, headroom), got = fpscope::recommend(scale_sweep(fixed), headroom);
          INFO(fpscope::builtin(id).name << " headroom " << headroom << " unsure " << unsure.size());
          REQUIRE(bool(got.gradscaler) == bool(want.gradscaler));
          if (want.gradscaler) {
            CHECK(got.gradscaler->log2_scale == want.gradscaler->log2_scale);
            CHECK(got.gradscaler->counts == want.gradscaler->counts);
            CHECK(got.no_overflow_log2 == want.no_overflow_log2);
          }
          REQUIRE(bool(got.fewest_lost) == bool(want.fewest_lost));
          if (want.fewest_lost) {
            CHECK(got.fewest_lost->log2_scale == want.fewest_lost->log2_scale);
            CHECK(got.fewest_lost->counts == want.fewest_lost->counts);
            CHECK(got.fewest_lost_range == want.fewest_lost_range);
          }
          ++cases;
          fast += any && unsure.empty();
          recounted += !unsure.empty();
        }
      }
  INFO("with uncertain values " << with_uncertain << ", fast " << fast << ", recounted " << recounted);
  CHECK(cases == 5 * 5 * 2 * 3);
  CHECK(with_uncertain >= 6);  // bf16 and tf32 at float32-subnormal x * S, at least
  CHECK(fast >= 3);            // uncertain values that could not change the choice: no recount
  CHECK(recounted >= 1);       // and some that could: recounted
  CHECK_THROWS_AS(fpscope::recommend_unsure(scale_sweep(std::vector<class_counts>(scale_sweep::size)), std::vector<std::uint64_t>(3)),
                  std::invalid_argument);

  // Its rules on made-up counts (float32 data never puts an overflow boundary inside a bucket
  // that holds values at a power-of-two scale, so the GradScaler rule is checked here alone):
  // 100 values, overflow from 2^10 up, underflow below 2^-5, 2^0 .. 2^9 lose nothing.
  std::vector<class_counts> c(scale_sweep::size);
  std::vector<std::uint64_t> u(scale_sweep::size, 0);
  const auto at = [&](int k) -> class_counts& { return c[std::size_t(k - scale_sweep::kmin)]; };
  const auto un = [&](int k) -> std::uint64_t& { return u[std::size_t(k - scale_sweep::kmin)]; };
  for (int k = scale_sweep::kmin; k <= scale_sweep::kmax; ++k) {
    const std::uint64_t over = k >= 10 ? std::uint64_t(std::min(100, 3 * (k - 9))) : 0;
    const std::uint64_t under = k < -5 ? std::uint64_t(std::min(100, 4 * (-5 - k))) : 0;
    at(k)[cast_class::overflow] = over, at(k)[cast_class::underflow] = under;
    at(k)[cast_class::normal] = 100 - over - under;
  }
  // 2^11 and 2^8 also lose one value to underflow, so that only the GradScaler rules can name them.
  for (const int k : {8, 11}) at(k)[cast_class::underflow] = 1, at(k)[cast_class::normal] -= 1;
  CHECK(fpscope::recommend_unsure(scale_sweep(c), u, 1).empty());  // nothing uncertain
  un(11) = 6;  // 2^11 counts 6 overflowing: all of them may not be
  CHECK(fpscope::recommend_unsure(scale_sweep(c), u, 1) == std::vector<int>{11});
  un(11) = 5;  // at least one overflows at 2^11: the choice stands
  CHECK(fpscope::recommend_unsure(scale_sweep(c), u, 1).empty());
  un(8) = 1;  // the GradScaler row's own counts (2^(9 - 1)) are reported
  CHECK(fpscope::recommend_unsure(scale_sweep(c), u, 1) == std::vector<int>{8});
  un(8) = 0, un(3) = 2;  // 2^3, in the run that loses nothing, may lose 2: the tie may change
  CHECK(fpscope::recommend_unsure(scale_sweep(c), u, 1) == std::vector<int>{3});
  un(3) = 0, un(-6) = 4;  // 2^-6 loses at least its 4 counted: uncertain, but cannot tie
  CHECK(fpscope::recommend_unsure(scale_sweep(c), u, 1).empty());
  un(10) = 3;  // 2^10 may lose 0 (its 3 overflowing may not): both rules name it
  CHECK(fpscope::recommend_unsure(scale_sweep(c), u, 1) == std::vector<int>{10});
}
