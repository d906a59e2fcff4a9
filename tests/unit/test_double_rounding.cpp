// 3. Double rounding: float64 inputs within float32's half-ulp of a midpoint or of a
// representable value, where going through float32 first rounds differently. encode(double)
// must round once (agree with the reference) and, on the constructed cases, must differ from
// encode(float(x)) wherever the reference says the two roundings differ.
#include <cmath>
#include <limits>

#include "common.hpp"

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
