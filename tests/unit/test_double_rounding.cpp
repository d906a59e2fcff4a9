// 3. Double rounding: float64 inputs within float32's half-ulp of a midpoint or of a
// representable value, where going through float32 first rounds differently. encode(double)
// must round once (agree with the reference) and, on the constructed cases, must differ from
// encode(float(x)) wherever the reference says the two roundings differ.
#include <cmath>
#include <limits>
#include <random>

#include "common.hpp"
#include "fpscope/detail/round_odd.hpp"

using namespace unit;

TEMPLATE_TEST_CASE("double rounding: float64 rounds once", "[double_rounding]", FPSCOPE_UNIT_FORMATS) {
  const ref::table& t = ref::get(TestType::id);
  mismatches mm;
  std::size_t differing = 0;  // cases where rounding through float32 would have been wrong
  const double inf = std::numeric_limits<double>::infinity();
  const std::size_t stride = t.n() > 4096 ? t.n() / 4096 : 1;
  for (std::size_t i = 0; i < t.n(); i += (i < 64 || i + 64 >= t.n()) ? 1 : stride) {
    for (double p : {t.mid[i], t.val[i]}) {
      if (p == 0) continue;
      const float pf = static_cast<float>(p);
      if (double(pf) != p) continue;  // only points float32 has: the double inputs collapse onto them
      // Just above and below p by less than half a float32 ulp: float(x) == p.
      const double ulp32 = double(std::nextafter(pf, std::numeric_limits<float>::infinity())) - p;
      for (double x : {std::nextafter(p, inf), std::nextafter(p, -inf), p + ulp32 / 4, p - ulp32 / 4,
                       p + ulp32 / 2.5, p - ulp32 / 2.5}) {
        if (static_cast<float>(x) != pf || x == p) continue;
        for (double sx : {x, -x}) {
          for (const fpscope::policy& pol : ref::mode_overflow_policies()) {
            const auto ri = prepare(t, sx);
            check_encode(t, ri, pol, mm);
            // Through float32 the input becomes the point itself.
            const ref::result once = ref::encode(t, ri.in, pol);
            const ref::result twice = ref::encode(t, ref::describe(static_cast<float>(sx)), pol);
            if (once.code != twice.code) {
              ++differing;
              const std::uint32_t got = fpscope::encode(sx, t.f, pol);
              if (got == twice.code)
                mm.add(ref::describe(t.f, pol) + ": " + ref::show(sx) + " rounded through float32 to " +
                       ref::hex(got) + ", once gives " + ref::hex(once.code));
            }
          }
        }
      }
    }
  }
  INFO(differing << " inputs where rounding through float32 differs");
  CHECK(differing > 0);
  mm.report(std::string(t.f.name) + " double rounding");
}

TEST_CASE("double rounding: hand-checked fp16 and bf16", "[double_rounding]") {
  using fpscope::builtin;
  using fpscope::format_id;
  // 1 + 2^-11 is the fp16 midpoint of 1 and 1 + 2^-10; 2^-40 above it is not a float32, which
  // would round it down onto the tie (and the tie to even 1.0).
  const double x = 1.0 + 0x1p-11 + 0x1p-40;
  REQUIRE(static_cast<float>(x) == 1.0f + 0x1p-11f);
  CHECK(fpscope::encode(x, builtin(format_id::fp16)) == 0x3C01);
  CHECK(fpscope::encode(static_cast<float>(x), builtin(format_id::fp16)) == 0x3C00);
  // bf16: the midpoint of 1 and 1 + 2^-7 is 1 + 2^-8.
  const double y = 1.0 + 0x1p-8 + 0x1p-50;
  CHECK(fpscope::encode(y, builtin(format_id::bf16)) == 0x3F81);
  CHECK(fpscope::encode(static_cast<float>(y), builtin(format_id::bf16)) == 0x3F80);
  // Directed: just above 1 by less than float32 resolution rounds up in rup.
  fpscope::policy p;
  p.round = fpscope::rounding::rup;
  CHECK(fpscope::encode(1.0 + 0x1p-40, builtin(format_id::e4m3), p) == 0x39);
}

// Rounding to odd (detail/round_odd.hpp), the cure for double rounding used by the scalar and
// bulk arithmetic and the histogram's scaled values, against its definition: of the two values
// of the narrower type around an inexact x, the one with an odd last bit.
namespace {

using fpscope::detail::narrow_odd;
using fpscope::detail::round_odd;

// The definition checked at compile time: round_odd and narrow_odd are constexpr.
static_assert(round_odd(1.0, 0.0) == 1.0);
static_assert(round_odd(1.0, 0x1p-60) == 1.0 + 0x1p-52);   // just above 1: up to the odd neighbour
static_assert(round_odd(1.0, -0x1p-60) == 1.0 - 0x1p-53);  // just below: down to it
static_assert(round_odd(-1.0, 0x1p-60) == -1.0 + 0x1p-53);
static_assert(round_odd(1.0f, 0x1p-30f) == 1.0f + 0x1p-23f);
static_assert(round_odd(std::numeric_limits<double>::infinity(), 1.0) == std::numeric_limits<double>::infinity());
static_assert(narrow_odd(1.0 + 0x1p-40) == 1.0f + 0x1p-23f);
static_assert(narrow_odd(1.0 - 0x1p-40) == 1.0f - 0x1p-24f);
static_assert(narrow_odd(1.5) == 1.5f);
static_assert(narrow_odd(0x1p200) == std::numeric_limits<float>::max());
static_assert(narrow_odd(std::numeric_limits<double>::infinity()) == std::numeric_limits<float>::infinity());

// Whether r is x rounded to odd, x = s + t exactly (s the nearest value of T, t the rest):
// r == s when t == 0; else r is odd and x lies strictly between r's neighbours. s minus a
// neighbour of r is exact (they are at most two units apart), so the comparisons are exact.
template <class T>
bool is_odd_rounding(T r, T s, T t) {
  if (t == 0) return unit::bits_of(r) == unit::bits_of(s);
  const T inf = std::numeric_limits<T>::infinity();
  return (unit::bits_of(r) & 1) && s - std::nextafter(r, -inf) > -t && std::nextafter(r, inf) - s > t;
}

// Whether r is the binary64 d rounded to odd at binary32 (the float neighbours of r, widened
// exactly, bracket d).
bool is_odd_narrowing(float r, double d) {
  if (double(float(d)) == d) return unit::bits_of(r) == unit::bits_of(float(d));
  const float inf = std::numeric_limits<float>::infinity();
  return (unit::bits_of(r) & 1) && double(std::nextafter(r, -inf)) < d && d < double(std::nextafter(r, inf));
}

}  // namespace

TEST_CASE("round to odd: two-sums in binary32 and binary64, binary64 narrowed to binary32",
          "[double_rounding]") {
  std::mt19937_64 rng(0x0DD);
  std::uniform_real_distribution<double> frac(1.0, 2.0);
  std::uniform_int_distribution<int> shift(0, 70);  // b from a's size to far below its last bit
  mismatches mm;
  for (int i = 0; i < 200000; ++i) {
    const double sign_a = rng() & 1 ? -1.0 : 1.0, sign_b = rng() & 1 ? -1.0 : 1.0;
    const int e = int(rng() % 200) - 100;
    const double a = sign_a * std::ldexp(frac(rng), e), b = sign_b * std::ldexp(frac(rng), e - shift(rng));
    // binary64: s + t == a + b exactly (Knuth's two-sum).
    const double s = a + b, bb = s - a, t = (a - (s - bb)) + (b - bb);
    const double r = round_odd(s, t);
    // binary32: the same on the operands rounded to float.
    const float af = float(a), bf = float(b);
    const float sf = af + bf, bbf = sf - af, tf = (af - (sf - bbf)) + (bf - bbf);
    const float rf = round_odd(sf, tf);
    // binary64 -> binary32: those sums, and values from below the float subnormals to beyond
    // FLT_MAX (which narrow to FLT_MAX, odd).
    const float n = narrow_odd(s);
    const double w = sign_b * std::ldexp(frac(rng), int(rng() % 320) - 170);
    ++mm.checked;
    if (!is_odd_rounding(r, s, t) || !is_odd_rounding(rf, sf, tf) || !is_odd_narrowing(n, s) ||
        !is_odd_narrowing(narrow_odd(w), w))
      mm.add("a " + ref::show(a) + " b " + ref::show(b) + " w " + ref::show(w) + ": binary64 " + ref::show(r) +
             ", binary32 " + ref::show(rf) + ", narrowed " + ref::show(n) + " and " + ref::show(narrow_odd(w)));
  }
  mm.report("round to odd");
}
