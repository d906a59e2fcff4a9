// Hardware conversions the bulk float32 encoder may use where they are bit-identical to the
// software path (convert.cpp decides when): F16C's vcvtps2ph for fp16 and AVX512-BF16's
// vcvtneps2bf16 for bf16, both nearest-even. Each function is compiled for its ISA alone
// (target attributes) and runs only after the CPU said it has it, so the library stays
// portable whatever -march it is built with.
#include "convert_hw.hpp"

#include "fpscope/cpu.hpp"

#if defined(__x86_64__) && defined(__GNUC__)
// GCC 12 warns inside its own AVX-512 intrinsics (the _mm512_undefined_* pass-through operand).
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <cpuid.h>
#include <immintrin.h>
#define FPSCOPE_HW_X86 1
#else
#define FPSCOPE_HW_X86 0
#endif

namespace fpscope::detail {

#if FPSCOPE_HW_X86

bool cpu_has_f16c() { return cpu().f16c; }
bool cpu_has_avx512bf16() { return cpu().avx512bf16; }
bool mxcsr_daz() { return (_mm_getcsr() & 0x0040u) != 0; }

__attribute__((target("avx,f16c"))) void f16c_rne(const float* in, std::uint16_t* out, std::size_t n, float scale) {
  const __m256 s = _mm256_set1_ps(scale);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 x = _mm256_loadu_ps(in + i);
    if (scale != 1.0f) x = _mm256_mul_ps(x, s);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
  }
  if (i < n) {  // the tail through a full vector (the padding is never stored)
    float t[8] = {};
    std::uint16_t r[8];
    for (std::size_t k = 0; k < n - i; ++k) t[k] = scale != 1.0f ? in[i + k] * scale : in[i + k];
    _mm_storeu_si128(reinterpret_cast<__m128i*>(r), _mm256_cvtps_ph(_mm256_loadu_ps(t), _MM_FROUND_TO_NEAREST_INT));
    for (std::size_t k = 0; k < n - i; ++k) out[i + k] = r[k];
  }
}

// vcvtneps2bf16 reads float32 denormals as zero whatever MXCSR says. Without DAZ those lanes
// take the software rounding of the bit pattern (nearest-even on the low 16 bits, exact for
// denormals, which neither overflow nor are NaN).
namespace {
__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx512bf16"))) inline __m256i bf16_16(__m512 x, bool daz) {
  __m256i h = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(x));
  if (!daz) {
    const __mmask16 denormal = _mm512_fpclass_ps_mask(x, 0x20);  // class bit 5: denormal
    if (denormal) {
      const __m512i b = _mm512_castps_si512(x), one = _mm512_set1_epi32(1);
      const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), one);
      const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(b, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), lsb)), 16);
      h = _mm256_mask_mov_epi16(h, denormal, _mm512_cvtepi32_epi16(r));
    }
  }
  return h;
}
}  // namespace

__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx512bf16"))) void bf16_rne(const float* in, std::uint16_t* out,
                                                                              std::size_t n, float scale, bool daz) {
  const __m512 s = _mm512_set1_ps(scale);
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 x = _mm512_loadu_ps(in + i);
    if (scale != 1.0f) x = _mm512_mul_ps(x, s);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), bf16_16(x, daz));
  }
  if (i < n) {
    const auto m = __mmask16((1u << (n - i)) - 1);
    __m512 x = _mm512_maskz_loadu_ps(m, in + i);
    if (scale != 1.0f) x = _mm512_mul_ps(x, s);
    _mm256_mask_storeu_epi16(out + i, m, bf16_16(x, daz));
  }
}

#else

bool cpu_has_f16c() { return false; }
bool cpu_has_avx512bf16() { return false; }
bool mxcsr_daz() { return false; }
void f16c_rne(const float*, std::uint16_t*, std::size_t, float) {}
void bf16_rne(const float*, std::uint16_t*, std::size_t, float, bool) {}

#endif

}  // namespace fpscope::detail

namespace fpscope {

// CPUID and XGETBV rather than __builtin_cpu_supports, whose feature names differ between
// compilers (clang 14 knows no "f16c").
const cpu_features& cpu() {
  static const cpu_features f = [] {
    cpu_features c;
#if FPSCOPE_HW_X86
    unsigned a = 0, b = 0, cx = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &cx, &d) || !(cx >> 27 & 1)) return c;  // OSXSAVE: XGETBV usable
    unsigned lo = 0, hi = 0;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    const bool ymm = (lo & 0x6u) == 0x6u && (cx >> 28 & 1), zmm = ymm && (lo & 0xE0u) == 0xE0u;  // AVX
    c.f16c = ymm && (cx >> 29 & 1);
    c.fma = ymm && (cx >> 12 & 1);
    if (__get_cpuid_max(0, nullptr) < 7) return c;
    __cpuid_count(7, 0, a, b, cx, d);
    c.avx2 = ymm && (b >> 5 & 1);
    c.avx512f = zmm && (b >> 16 & 1);
    // DQ, BW and VL: the 256-bit masked moves and stores of bf16_rne (_mm256_mask_mov_epi16,
    // _mm256_mask_storeu_epi16) are AVX512VL+BW; every AVX512-BF16 CPU has all three.
    const bool dq_bw_vl = (b >> 17 & 1) && (b >> 30 & 1) && (b >> 31 & 1);
    __cpuid_count(7, 1, a, b, cx, d);
    c.avx512bf16 = c.avx512f && dq_bw_vl && (a >> 5 & 1);
#endif
    return c;
  }();
  return f;
}

}  // namespace fpscope
