// 6. Stochastic rounding (rounding::sr). sr_bits is checked against a plain splitmix64
// generator; every result is one of the reference's two neighbours (toward zero / away from
// zero); the choice is exactly the documented one (away when floor(f * 2^32) + bits >= 2^32,
// f the dropped fraction from the reference's neighbours); exact values never move; results
// are reproducible per (seed, index) and differ across seeds; the frequency of rounding away
// matches f within 5 sigma over 1e5 draws, and the mean over many indices is unbiased.
#include <cmath>
#include <limits>

#include "common.hpp"
#include "ref_exact.hpp"

using namespace unit;

namespace {

// splitmix64 as published (Steele, Lea, Flood 2014; Vigna's reference code): the state steps
// by the golden gamma, and each output is the mixed state.
struct splitmix64 {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
};

fpscope::policy with_mode(fpscope::rounding r, std::uint64_t seed = 0,
                          fpscope::overflow o = fpscope::overflow::infinity) {
  fpscope::policy p;
  p.round = r;
  p.seed = seed;
  p.on_overflow = o;
  return p;
}

// The reference's two candidates for x: toward zero and away from zero.
struct neighbours {
  std::uint32_t toward, away;
  bool beyond;  // at or past the value after max: every rounding overflows (to the away result)
  bool fixed;   // exact, or e8m0 below its smallest value: one result only (toward == away)
  double frac;  // dropped fraction in units of the gap (finite, inexact cases)
};

neighbours ref_neighbours(const ref::table& t, double x, fpscope::overflow o) {
  const ref::input in = ref::describe(x);
  const ref::located l = ref::locate(t, in, false);
  const auto away_mode = in.neg ? fpscope::rounding::rdn : fpscope::rounding::rup;
  neighbours n{};
  n.toward = ref::finish(t, l, in, with_mode(fpscope::rounding::rtz, 0, o)).code;
  n.away = ref::finish(t, l, in, with_mode(away_mode, 0, o)).code;
  n.beyond = l.kind == ref::located::beyond;
  n.fixed = l.kind == ref::located::below || (l.kind == ref::located::finite && l.exact);
  if (l.kind == ref::located::finite && !l.exact) {
    const double lo = t.val[l.lo], hi = l.lo + 1 < t.n() ? t.val[l.lo + 1] : t.next;
    n.frac = (l.a - lo) / (hi - lo);  // exact: a - lo by Sterbenz (or lo == 0), the gap a power of 2
  }
  return n;
}

}  // namespace

TEST_CASE("sr: sr_bits is splitmix64's output", "[sr]") {
  for (std::uint64_t seed : {0ull, 1ull, 0xDEADBEEFull, ~0ull}) {
    splitmix64 g{seed};
    for (std::uint64_t i = 0; i < 1000; ++i) {
      const auto want = static_cast<std::uint32_t>(g.next() >> 32);
      INFO("seed " << seed << " index " << i);
      REQUIRE(fpscope::sr_bits(seed, i) == want);
    }
  }
}

TEMPLATE_TEST_CASE("sr: one of the two neighbours as documented", "[sr]", FPSCOPE_UNIT_FORMATS) {
  const ref::table& t = ref::get(TestType::id);
  auto rng = rng_for(7, TestType::id);
  const input_set b = boundary_inputs(t, 2, t.n() > 4096 ? t.n() / 1024 : 1);
  const input_set r = random_inputs(t, rng, 20000);
  std::vector<double> xs = b.d;
  xs.insert(xs.end(), r.d.begin(), r.d.end());
  for (float x : b.f) xs.push_back(x);
  for (float x : r.f) xs.push_back(x);
  mismatches mm;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const double x = xs[i];
    if (!std::isfinite(x) || x == 0 || (t.f.specials == fpscope::special::e8m0 && x < 0)) continue;
    for (auto o : {fpscope::overflow::infinity, fpscope::overflow::saturate}) {
      const neighbours n = ref_neighbours(t, x, o);
      const std::uint64_t seed = rng(), index = rng() >> (i % 64);
      const fpscope::policy p = with_mode(fpscope::rounding::sr, seed, o);
      const std::uint32_t got = fpscope::encode(x, t.f, p, index);
      std::uint32_t want = n.toward;
      if (n.beyond) {
        want = n.away;
      } else if (!n.fixed) {
        // Away when floor(f * 2^32) + sr_bits >= 2^32 (the fraction kept to 32 bits).
        const auto f32 = static_cast<std::uint64_t>(std::floor(std::ldexp(n.frac, 32)));
        want = f32 + fpscope::sr_bits(seed, index) >= (1ull << 32) ? n.away : n.toward;
      }
      ++mm.checked;
      if (got != want || (got != n.toward && got != n.away))
        mm.add(ref::describe(t.f, p) + " index " + std::to_string(index) + ": " + ref::show(x) + " -> " +
               ref::hex(got) + ", reference " + ref::hex(want) + " (neighbours " + ref::hex(n.toward) + ", " +
               ref::hex(n.away) + ", fraction " + std::to_string(n.frac) + ")");
      // A float input with the same value gives the same bits.
      const float xf = static_cast<float>(x);
      if (double(xf) == x && fpscope::encode(xf, t.f, p, index) != got)
        mm.add(ref::describe(t.f, p) + ": float and double " + ref::show(x) + " differ");
    }
  }
  mm.report(std::string(t.f.name) + " sr neighbours");
}

TEMPLATE_TEST_CASE("sr: exact values unchanged and reproducible", "[sr]", FPSCOPE_UNIT_FORMATS) {
  const ref::table& t = ref::get(TestType::id);
  mismatches mm;
  const std::size_t stride = t.n() > 4096 ? t.n() / 4096 : 1;
  for (std::size_t i = 0; i < t.n(); i += stride) {
    for (double x : {t.val[i], -t.val[i]}) {
      if (t.f.specials == fpscope::special::e8m0 && x < 0) continue;
      const std::uint32_t rne = ref::encode(t, ref::describe(x), fpscope::policy{}).code;
      for (std::uint64_t index = 0; index < 16; ++index) {
        ++mm.checked;
        const std::uint32_t got = fpscope::encode(x, t.f, with_mode(fpscope::rounding::sr, index * 77), index);
        if (got != rne) mm.add("exact " + ref::show(x) + " moved to " + ref::hex(got) + ", expected " + ref::hex(rne));
      }
    }
  }
  mm.report(std::string(t.f.name) + " sr exact values");

  // A midpoint: reproducible for the same (seed, index), different seeds and indices differ.
  const double mid = t.mid[t.n() / 2];
  std::size_t up_a = 0, differ_seed = 0, same = 0;
  const std::size_t n = 4096;
  for (std::uint64_t index = 0; index < n; ++index) {
    const auto a = fpscope::encode(mid, t.f, with_mode(fpscope::rounding::sr, 1), index);
    const auto a2 = fpscope::encode(mid, t.f, with_mode(fpscope::rounding::sr, 1), index);
    const auto b = fpscope::encode(mid, t.f, with_mode(fpscope::rounding::sr, 2), index);
    same += a == a2;
    differ_seed += a != b;
    up_a += a != t.code[t.n() / 2];
  }
  CHECK(same == n);
  // Independent fair coins: they differ about half the time (n/2 +- 5 sigma, sigma = sqrt(n)/2).
  CHECK(std::fabs(double(differ_seed) - n / 2.0) < 5 * std::sqrt(double(n)) / 2);
  CHECK(std::fabs(double(up_a) - n / 2.0) < 5 * std::sqrt(double(n)) / 2);
}

TEMPLATE_TEST_CASE("sr: frequency of rounding away matches the fraction", "[sr]", FPSCOPE_UNIT_FORMATS) {
  const ref::table& t = ref::get(TestType::id);
  const std::size_t draws = 100000;
  // Pairs of neighbours: near 1 (or the middle of the table), the smallest subnormal gap, the
  // top gap below max; fractions of the gap, dyadic so that the inputs are exact.
  std::vector<std::size_t> los = {t.n() / 2, 0, t.n() - 2};
  if (t.f.specials == fpscope::special::e8m0) los = {t.n() / 2, 1, t.n() - 2};
  mismatches mm;
  for (std::size_t lo : los) {
    const double a = t.val[lo], b = t.val[lo + 1];
    for (double f : {0.5, 0.25, 0.75, 0.125, 1.0 / 1024, 0.6875, 1.0 - 1.0 / 64}) {
      for (int sgn : {1, -1}) {
        if (sgn < 0 && t.f.specials == fpscope::special::e8m0) continue;
        const double x = sgn * (a + f * (b - a));
        REQUIRE(ref::exact(x) == ref::exact(sgn * a) + (ref::exact(sgn * b) - ref::exact(sgn * a)) * ref::exact(f));
        const std::uint32_t away = ref::encode(t, ref::describe(x), with_mode(sgn > 0 ? fpscope::rounding::rup : fpscope::rounding::rdn)).code;
        std::size_t up = 0;
        double sum = 0;
        const std::uint64_t seed = 0xABCDEF + lo;
        for (std::uint64_t i = 0; i < draws; ++i) {
          const std::uint32_t c = fpscope::encode(x, t.f, with_mode(fpscope::rounding::sr, seed), i);
          up += c == away;
          sum += fpscope::decode(c, t.f);
        }
        const double sigma = std::sqrt(draws * f * (1 - f));
        const double mean_err = (sum / draws - x) / (b - a);  // bias in units of the gap
        ++mm.checked;
        if (std::fabs(double(up) - draws * f) > 5 * sigma || std::fabs(mean_err) > 5 * std::sqrt(f * (1 - f) / draws))
          mm.add(std::string(t.f.name) + " x=" + ref::show(x) + " fraction " + std::to_string(f) + ": " +
                 std::to_string(up) + " of " + std::to_string(draws) + " away (expected " +
                 std::to_string(draws * f) + " +- " + std::to_string(5 * sigma) + "), mean error " +
                 std::to_string(mean_err) + " gaps");
      }
    }
  }
  mm.report(std::string(t.f.name) + " sr frequencies");
}

TEMPLATE_TEST_CASE("sr: unbiased below the smallest subnormal", "[sr]", FPSCOPE_UNIT_FORMATS) {
  // Tiny values (a fraction of the smallest positive value) keep their expectation: the
  // mean of SR over many indices is the value itself.
  const ref::table& t = ref::get(TestType::id);
  if (t.f.specials == fpscope::special::e8m0) {
    // No zero: everything below the smallest value 2^-127 becomes it, whatever the draw.
    std::size_t moved = 0;
    for (double x : {0x1p-128, 0x1.8p-128, 0x1p-140, 0x1p-1000})
      for (std::uint64_t i = 0; i < 1000; ++i) {
        moved += fpscope::encode(x, t.f, with_mode(fpscope::rounding::sr, 5), i) != 0;
        if (static_cast<float>(x) != 0)  // 2^-1000 is no float (it would be zero: NaN in e8m0)
          moved += fpscope::encode(static_cast<float>(x), t.f, with_mode(fpscope::rounding::sr, 5), i) != 0;
      }
    CHECK(moved == 0);
    return;
  }
  const double q = t.val[1];
  const std::size_t draws = 200000;
  mismatches mm;
  for (double f : {0.5, 0.25, 0.125, 1.0 / 16, 1.0 / 256, 3.0 / 1024}) {
    for (bool as_float : {false, true}) {
      const double x = f * q;
      std::size_t up = 0;
      for (std::uint64_t i = 0; i < draws; ++i) {
        const fpscope::policy p = with_mode(fpscope::rounding::sr, 99);
        const std::uint32_t c = as_float ? fpscope::encode(static_cast<float>(x), t.f, p, i) : fpscope::encode(x, t.f, p, i);
        up += c != 0;
      }
      const double sigma = std::sqrt(draws * f * (1 - f));
      ++mm.checked;
      if (std::fabs(double(up) - draws * f) > 5 * sigma)
        mm.add(std::string(as_float ? "float " : "double ") + ref::show(x) + " (" + std::to_string(f) +
               " of the smallest subnormal): rounded up " + std::to_string(up) + " of " + std::to_string(draws) +
               " times, expected " + std::to_string(draws * f) + " +- " + std::to_string(5 * sigma));
    }
  }
  mm.report(std::string(t.f.name) + " sr below the smallest subnormal");
}
