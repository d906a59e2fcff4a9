// 7. Profiles on hand-picked cases. Expected outputs are measured facts about the real
// implementations, from /work/shared/oracles.md (x86 F16C, AVX512-BF16, CUDA host headers,
// measured over float32 inputs) and, for ml_dtypes, from its float8.h conversion code
// (non-saturating, NaN and inf keep their sign, e8m0 ties go up) and Eigen's BFloat16.h
// (its bfloat16: NaN -> sign | 0x7FC0). None comes from fpscope.
#include <cmath>
#include <limits>

#include "common.hpp"

using namespace unit;
using fpscope::builtin;
using fpscope::format_id;
using fpscope::profile;

namespace {

std::uint32_t cast(profile pr, format_id id, float x, fpscope::overflow* o = nullptr) {
  const auto f = builtin(id);
  fpscope::policy p = fpscope::profile_policy(pr, f);
  if (o) p.on_overflow = *o;
  return fpscope::encode(x, f, p);
}

struct row {
  float x;
  std::uint32_t fp16, bf16, e4m3_sat, e4m3_nosat, e5m2_sat, e5m2_nosat;
};

}  // namespace

TEST_CASE("profiles: oracles.md overflow and rounding table", "[profiles]") {
  const float below65520 = std::nextafter(65520.0f, 0.0f);  // 65519.996
  REQUIRE(below65520 > 65519.99f);
  const row rows[] = {
      {65520.0f, 0x7C00, 0x4780, 0x7E, 0x7F, 0x7B, 0x7C},
      {below65520, 0x7BFF, 0x4780, 0x7E, 0x7F, 0x7B, 0x7C},
      {464.0f, 0x5F40, 0x43E8, 0x7E, 0x7E, 0x5F, 0x5F},
      {480.0f, 0x5F80, 0x43F0, 0x7E, 0x7F, 0x60, 0x60},
      {61440.0f, 0x7B80, 0x4770, 0x7E, 0x7F, 0x7B, 0x7C},
      {0x1p-25f, 0x0000, 0x3300, 0x00, 0x00, 0x00, 0x00},
      {std::nextafter(0x1p-25f, 1.0f), 0x0001, 0x3300, 0x00, 0x00, 0x00, 0x00},
  };
  auto nosat = fpscope::overflow::infinity;
  for (const row& r : rows) {
    for (float sx : {r.x, -r.x}) {
      const std::uint32_t s16 = sx < 0 ? 0x8000 : 0, s8 = sx < 0 ? 0x80 : 0;
      INFO("input " << ref::show(sx));
      // fp16: F16C (ieee profile) and CUDA __float2half_rn agree.
      CHECK(cast(profile::ieee, format_id::fp16, sx) == (s16 | r.fp16));
      CHECK(cast(profile::cuda, format_id::fp16, sx) == (s16 | r.fp16));
      // bf16: CUDA, torch and the avx512bf16 instruction (on normal inputs).
      CHECK(cast(profile::cuda, format_id::bf16, sx) == (s16 | r.bf16));
      CHECK(cast(profile::ieee, format_id::bf16, sx) == (s16 | r.bf16));
      CHECK(cast(profile::avx512bf16, format_id::bf16, sx) == (s16 | r.bf16));
      // CUDA fp8: the profile is satfinite; nosat by overriding overflow. The sign is or-ed in.
      CHECK(cast(profile::cuda, format_id::e4m3, sx) == (s8 | r.e4m3_sat));
      CHECK(cast(profile::cuda, format_id::e4m3, sx, &nosat) == (s8 | r.e4m3_nosat));
      CHECK(cast(profile::cuda, format_id::e5m2, sx) == (s8 | r.e5m2_sat));
      CHECK(cast(profile::cuda, format_id::e5m2, sx, &nosat) == (s8 | r.e5m2_nosat));
      // ml_dtypes is non-saturating: its e4m3fn/e5m2 agree with CUDA nosat on these.
      CHECK(cast(profile::ml_dtypes, format_id::e4m3, sx) == (s8 | r.e4m3_nosat));
      CHECK(cast(profile::ml_dtypes, format_id::e5m2, sx) == (s8 | r.e5m2_nosat));
    }
  }
}

TEST_CASE("profiles: infinities", "[profiles]") {
  const float inf = std::numeric_limits<float>::infinity();
  auto nosat = fpscope::overflow::infinity;
  for (float x : {inf, -inf}) {
    const std::uint32_t s16 = x < 0 ? 0x8000 : 0, s8 = x < 0 ? 0x80 : 0;
    INFO(ref::show(x));
    CHECK(cast(profile::ieee, format_id::fp16, x) == (s16 | 0x7C00));
    CHECK(cast(profile::cuda, format_id::fp16, x) == (s16 | 0x7C00));
    CHECK(cast(profile::cuda, format_id::bf16, x) == (s16 | 0x7F80));
    // CUDA satfinite: +-inf -> +-max; nosat: e4m3 0x7F | sign, e5m2 +-inf.
    CHECK(cast(profile::cuda, format_id::e4m3, x) == (s8 | 0x7E));
    CHECK(cast(profile::cuda, format_id::e5m2, x) == (s8 | 0x7B));
    CHECK(cast(profile::cuda, format_id::e4m3, x, &nosat) == (s8 | 0x7F));
    CHECK(cast(profile::cuda, format_id::e5m2, x, &nosat) == (s8 | 0x7C));
    // ml_dtypes: +-infinity() of the target; e4m3fn's is its NaN, with the sign applied.
    CHECK(cast(profile::ml_dtypes, format_id::e4m3, x) == (s8 | 0x7F));
    CHECK(cast(profile::ml_dtypes, format_id::e5m2, x) == (s8 | 0x7C));
  }
}

TEST_CASE("profiles: NaN outputs", "[profiles]") {
  // float32 NaNs: quiet and signalling, both signs, payloads in high and low bits.
  for (std::uint32_t b : {0x7FC00000u, 0x7F800001u, 0x7FA02000u, 0x7FFFFFFFu, 0x7F802000u, 0x7FD55555u}) {
    for (std::uint32_t sign : {0u, 0x80000000u}) {
      const std::uint32_t xb = b | sign;
      const float x = f32_from_bits(xb);
      INFO("input " << ref::hex(xb));
      // F16C / SoftFloat: sign | 0x7E00 | (mantissa >> 13).
      CHECK(cast(profile::ieee, format_id::fp16, x) == ((xb >> 16 & 0x8000) | 0x7E00 | ((xb & 0x7FFFFF) >> 13)));
      // CUDA fp16 and bf16: 0x7FFF always.
      CHECK(cast(profile::cuda, format_id::fp16, x) == 0x7FFF);
      CHECK(cast(profile::cuda, format_id::bf16, x) == 0x7FFF);
      // CUDA fp8 (float input): 0x7F always.
      CHECK(cast(profile::cuda, format_id::e4m3, x) == 0x7F);
      CHECK(cast(profile::cuda, format_id::e5m2, x) == 0x7F);
      // AVX512-BF16: (x >> 16) | 0x0040.
      CHECK(cast(profile::avx512bf16, format_id::bf16, x) == ((xb >> 16) | 0x0040));
      // ml_dtypes: +-quiet_NaN() of the target (e4m3fn: S.1111.111; fnuz and e8m0: their
      // single NaN). Its e5m2 quiet_NaN changed between releases (0x7F, later 0x7E): not checked.
      const std::uint32_t s8 = sign ? 0x80 : 0;
      CHECK(cast(profile::ml_dtypes, format_id::e4m3, x) == (s8 | 0x7F));
      // ml_dtypes' bfloat16 is Eigen's: float_to_bfloat16_rtne squashes every NaN to
      // signbit ? 0xFFC0 : 0x7FC0 (payload dropped).
      CHECK(cast(profile::ml_dtypes, format_id::bf16, x) == ((sign >> 16) | 0x7FC0));
      CHECK(cast(profile::ml_dtypes, format_id::e4m3fnuz, x) == 0x80);
      CHECK(cast(profile::ml_dtypes, format_id::e5m2fnuz, x) == 0x80);
      CHECK(cast(profile::ml_dtypes, format_id::e8m0, x) == 0xFF);
    }
  }
}

TEST_CASE("profiles: avx512bf16 reads float32 denormals as zero", "[profiles]") {
  // The instruction turns every float32 denormal input into signed zero; IEEE rounds them.
  for (std::uint32_t b : {0x00000001u, 0x00400000u, 0x007FFFFFu, 0x00010000u, 0x00008000u}) {
    for (std::uint32_t sign : {0u, 0x80000000u}) {
      const float x = f32_from_bits(b | sign);
      INFO(ref::show(x));
      CHECK(cast(profile::avx512bf16, format_id::bf16, x) == (sign >> 16));
    }
  }
  // The same inputs under the ieee profile are bf16 subnormals or round like them.
  CHECK(cast(profile::ieee, format_id::bf16, f32_from_bits(0x00400000u)) == 0x0040);
  CHECK(cast(profile::ieee, format_id::bf16, f32_from_bits(0x007FFFFFu)) == 0x0080);
  CHECK(cast(profile::ieee, format_id::bf16, f32_from_bits(0x00008000u)) == 0x0000);  // tie to even
  CHECK(cast(profile::ieee, format_id::bf16, f32_from_bits(0x00018000u)) == 0x0002);  // tie to even
  // Normal inputs are unaffected.
  CHECK(cast(profile::avx512bf16, format_id::bf16, 0x1p-126f) == 0x0080);
  CHECK(cast(profile::avx512bf16, format_id::bf16, 1.0f) == 0x3F80);
}

TEST_CASE("profiles: ml_dtypes e8m0 and fnuz", "[profiles]") {
  // e8m0fnu: no zero and unsigned, so zero and negatives are NaN; ties go up (the implicit bit).
  CHECK(cast(profile::ml_dtypes, format_id::e8m0, 0.0f) == 0xFF);
  CHECK(cast(profile::ml_dtypes, format_id::e8m0, -1.0f) == 0xFF);
  CHECK(cast(profile::ml_dtypes, format_id::e8m0, 1.5f) == 0x80);
  CHECK(cast(profile::ml_dtypes, format_id::e8m0, 3.0f) == 0x81);
  CHECK(cast(profile::ml_dtypes, format_id::e8m0, 1.4f) == 0x7F);
  CHECK(cast(profile::ml_dtypes, format_id::e8m0, 0x1p127f) == 0xFE);
  // fnuz: no negative zero; overflow (non-saturating) is the NaN 0x80.
  CHECK(cast(profile::ml_dtypes, format_id::e4m3fnuz, -0.0f) == 0x00);
  CHECK(cast(profile::ml_dtypes, format_id::e4m3fnuz, -1e-9f) == 0x00);
  CHECK(cast(profile::ml_dtypes, format_id::e4m3fnuz, 240.0f) == 0x7F);
  CHECK(cast(profile::ml_dtypes, format_id::e4m3fnuz, 1000.0f) == 0x80);
  CHECK(cast(profile::ml_dtypes, format_id::e5m2fnuz, -1e6f) == 0x80);
}
