// 2. Encoding float32 and float64 inputs against the reference, with flags, for the six
// deterministic modes and every policy switch: special inputs under all 576 policy
// combinations, every boundary neighbourhood and a large random set under the 12 mode x
// overflow policies (the switches that only matter for special or tiny values take every
// value near the subnormals and rotate elsewhere), and a sampled float32 sweep in rne.
#include <chrono>
#include <cmath>
#include <cstdio>

#include "common.hpp"

using namespace unit;

namespace {

// The 12 mode x overflow policies with the other switches set from `k`: all four ftz/daz
// combinations when `tiny` (the value is near or below the subnormals, or a subnormal input),
// one of them (rotating) otherwise; NaN style, nan_to_finite and saturate_inf rotate.
template <class T>
void check_rotating(const ref::table& t, const ref_input<T>& ri, std::size_t k, mismatches& mm) {
  const bool tiny = ri.in.subnormal || std::fabs(ri.in.value) < 4 * t.min_normal;
  for (const fpscope::policy& base : ref::mode_overflow_policies()) {
    fpscope::policy p = base;
    p.nan = static_cast<fpscope::nan_style>(k % 3);
    p.nan_finite = static_cast<fpscope::nan_to_finite>((k / 3) % 2);
    p.saturate_inf = (k / 7) % 2 == 0;
    if (tiny) {
      for (int fd = 0; fd < 4; ++fd) {
        p.ftz = fd & 1;
        p.daz = fd & 2;
        check_encode(t, ri, p, mm);
      }
    } else {
      p.ftz = k & 1;
      p.daz = (k >> 1) & 1;
      check_encode(t, ri, p, mm);
    }
    ++k;
  }
}

template <class T>
void check_all_rotating(const ref::table& t, const std::vector<T>& xs, mismatches& mm) {
  for (std::size_t i = 0; i < xs.size(); ++i) check_rotating(t, prepare(t, xs[i]), i, mm);
}

}  // namespace

TEMPLATE_TEST_CASE("encode: special inputs under all 576 policies", "[encode]", FPSCOPE_UNIT_FORMATS) {
  const ref::table& t = ref::get(TestType::id);
  const input_set s = special_inputs(t);
  const auto ps = all_policies();
  REQUIRE(ps.size() == 576);
  mismatches mm;
  for (float x : s.f) {
    const auto ri = prepare(t, x);
    for (const auto& p : ps) check_encode(t, ri, p, mm);
  }
  for (double x : s.d) {
    const auto ri = prepare(t, x);
    for (const auto& p : ps) check_encode(t, ri, p, mm);
  }
  mm.report(std::string(t.f.name) + " special inputs");
}

TEMPLATE_TEST_CASE("encode: boundary neighbourhoods", "[encode]", FPSCOPE_UNIT_FORMATS) {
  const ref::table& t = ref::get(TestType::id);
  // tf32 has 2^18 magnitudes; keep every 4th pair there (and all near zero and max).
  const std::size_t stride = t.n() > (1u << 16) ? 4 : 1;
  const input_set s = boundary_inputs(t, 3, stride);
  mismatches mm;
  check_all_rotating(t, s.f, mm);
  check_all_rotating(t, s.d, mm);
  mm.report(std::string(t.f.name) + " boundary neighbourhoods (" + std::to_string(s.f.size()) + " floats, " +
            std::to_string(s.d.size()) + " doubles)");
}

TEMPLATE_TEST_CASE("encode: random inputs", "[encode]", FPSCOPE_UNIT_FORMATS) {
  const ref::table& t = ref::get(TestType::id);
  auto rng = rng_for(2, TestType::id);
  const input_set s = random_inputs(t, rng, 100000);
  mismatches mm;
  check_all_rotating(t, s.f, mm);
  check_all_rotating(t, s.d, mm);
  mm.report(std::string(t.f.name) + " random inputs");
}

// Every float32 bit pattern would take 2^32 reference lookups per format: measured at about
// 60 ns each (binary search), that is over four minutes, so the sweep takes a stratified
// sample instead: every exponent and sign, 2^22 patterns in all, low bits random.
TEMPLATE_TEST_CASE("encode: float32 sample sweep in rne", "[encode]", FPSCOPE_UNIT_FORMATS) {
  const ref::table& t = ref::get(TestType::id);
  auto rng = rng_for(3, TestType::id);
  const fpscope::policy p{};
  mismatches mm;
  const auto t0 = std::chrono::steady_clock::now();
  const std::uint32_t step = 1u << 10;  // 2^22 samples, one in every 1024 consecutive patterns
  for (std::uint64_t base = 0; base < (1ull << 32); base += step) {
    const auto b = static_cast<std::uint32_t>(base + (rng() & (step - 1)));
    const float x = f32_from_bits(b);
    const ref::input in = ref::describe(x);
    const ref::result want = ref::encode(t, in, p);
    const std::uint32_t got = fpscope::encode(x, t.f, p);
    ++mm.checked;
    if (got != want.code)
      mm.add(ref::show(x) + " -> " + ref::hex(got) + ", reference " + ref::hex(want.code));
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%s: float32 rne sample of %zu patterns in %.2f s (%.1f ns each; all 2^32 would take %.0f s)\n",
              t.f.name, mm.checked, s, 1e9 * s / double(mm.checked), s * double(1ull << 32) / double(mm.checked));
  mm.report(std::string(t.f.name) + " float32 sweep");
}

TEST_CASE("encode: hand-checked cases", "[encode]") {
  using fpscope::builtin;
  using fpscope::format_id;
  const auto fp16 = builtin(format_id::fp16);
  const auto e4m3 = builtin(format_id::e4m3);
  const auto e2m1 = builtin(format_id::e2m1);
  const auto e8m0 = builtin(format_id::e8m0);
  fpscope::policy p;
  CHECK(fpscope::encode(1.0f, fp16) == 0x3C00);
  CHECK(fpscope::encode(65504.0, fp16) == 0x7BFF);
  CHECK(fpscope::encode(65520.0, fp16) == 0x7C00);  // a tie with the odd max: overflows
  CHECK(fpscope::encode(0x1p-25, fp16) == 0x0000);  // a tie with zero: even
  CHECK(fpscope::encode(0x1.8p-24, fp16) == 0x0002);
  CHECK(fpscope::encode(-0.0f, fp16) == 0x8000);
  CHECK(fpscope::encode(464.0f, e4m3) == 0x7E);  // a tie with max 448 (even): stays
  CHECK(fpscope::encode(480.0f, e4m3) == 0x7F);  // overflow: NaN (no inf)
  CHECK(fpscope::encode(2.5f, e2m1) == 0x4);     // a tie between 2 (0x4) and 3 (0x5)
  CHECK(fpscope::encode(100.0f, e2m1) == 0x7);   // no inf or NaN: max
  CHECK(fpscope::encode(1.0f, e8m0) == 0x7F);
  CHECK(fpscope::encode(-1.0f, e8m0) == 0xFF);
  CHECK(fpscope::encode(0.0f, e8m0) == 0xFF);
  p.round = fpscope::rounding::rtz;
  CHECK(fpscope::encode(1e6, fp16, p) == 0x7BFF);
  p.round = fpscope::rounding::rup;
  CHECK(fpscope::encode(-1e6, fp16, p) == 0xFBFF);
  CHECK(fpscope::encode(1e-30, fp16, p) == 0x0001);
  p.round = fpscope::rounding::rto;
  CHECK(fpscope::encode(1.0 + 0x1p-30, fp16, p) == 0x3C01);
  unsigned fl = 0;
  fpscope::encode(0x1p-20, fp16, fpscope::policy{}, 0, fl);
  CHECK(fl == 0u);  // exact subnormal: no underflow
  fl = 0;
  fpscope::encode(0x1.001p-20, fp16, fpscope::policy{}, 0, fl);
  CHECK(fl == (fpscope::flag_inexact | fpscope::flag_underflow));
  fl = 0;
  fpscope::encode(1e6f, fp16, fpscope::policy{}, 0, fl);
  CHECK(fl == (fpscope::flag_inexact | fpscope::flag_overflow));
  fl = 0;
  fpscope::encode(f32_from_bits(0x7F800001u), fp16, fpscope::policy{}, 0, fl);
  CHECK(fl == unsigned(fpscope::flag_invalid));  // signalling NaN
}
