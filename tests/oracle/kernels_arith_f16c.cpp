// Built with -mavx -mf16c: nothing here may run before the CPU said it has F16C and AVX.
// fp16 arithmetic the x86 way: F16C to float32, one AVX float32 operation, F16C back with
// nearest-even. One float32 rounding then one fp16 rounding equals one fp16 rounding of the
// exact result for + - * / and sqrt because float32 has p = 24 >= 2 * 11 + 2 bits and every
// fp16 result (subnormals included) lies in float32's normal range (Figueroa, "When is
// double rounding innocuous?", SIGNUM 1995).
#include <immintrin.h>

#include "kernels_arith.hpp"

namespace oracle::arith {
namespace {

// The float32 operation with the first operand as the first source (AT&T order: src2, src1,
// dst), so that the compiler cannot swap a commutative pair: with two NaN operands x86
// returns the first source, quieted.
template <bop Op>
inline __m256 op8(__m256 x, __m256 y) {
  __m256 r;
  if constexpr (Op == bop::add)
    __asm__("vaddps %2, %1, %0" : "=x"(r) : "x"(x), "x"(y));
  else if constexpr (Op == bop::sub)
    __asm__("vsubps %2, %1, %0" : "=x"(r) : "x"(x), "x"(y));
  else if constexpr (Op == bop::mul)
    __asm__("vmulps %2, %1, %0" : "=x"(r) : "x"(x), "x"(y));
  else
    __asm__("vdivps %2, %1, %0" : "=x"(r) : "x"(x), "x"(y));
  return r;
}

template <bop Op>
void run(std::uint16_t a, const std::uint16_t* b, std::uint16_t* out, std::size_t n) {
  const __m256 x = _mm256_cvtph_ps(_mm_set1_epi16(static_cast<short>(a)));
  for (std::size_t i = 0; i < n; i += 8) {
    const __m256 y = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i)));
    const __m128i h = _mm256_cvtps_ph(op8<Op>(x, y), 0);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), h);
  }
}

}  // namespace

bool x86_arith_built() { return true; }

void x86_fp16_kernel(bop op, std::uint16_t a, const std::uint16_t* b, std::uint16_t* out, std::size_t n) {
  switch (op) {
    case bop::add: run<bop::add>(a, b, out, n); break;
    case bop::sub: run<bop::sub>(a, b, out, n); break;
    case bop::mul: run<bop::mul>(a, b, out, n); break;
    case bop::div: run<bop::div>(a, b, out, n); break;
  }
}

void x86_fp16_sqrt_kernel(const std::uint16_t* in, std::uint16_t* out, std::size_t n) {
  for (std::size_t i = 0; i < n; i += 8) {
    const __m256 x = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_cvtps_ph(_mm256_sqrt_ps(x), 0));
  }
}

}  // namespace oracle::arith
