// GCC's _Float16 conversions. Built with -march=x86-64 so that the compiler calls libgcc's
// soft-fp (__truncsfhf2, __truncdfhf2) instead of emitting F16C/AVX512 vcvtps2ph, which the
// F16C test already covers. Clang 14 rejects _Float16 on x86: there the kernels are absent.
#include <cstring>
#include <xmmintrin.h>

#include "kernels.hpp"

#if defined(__GNUC__) && !defined(__clang__) && defined(__FLT16_MANT_DIG__)
#define FPSCOPE_ORACLE_FLOAT16 1
#endif

namespace oracle {

#ifdef FPSCOPE_ORACLE_FLOAT16
bool float16_built() { return true; }

void float16_kernel(const float* in, std::uint16_t* out, std::size_t n, const void*) {
  for (std::size_t i = 0; i < n; ++i) {
    const auto h = static_cast<_Float16>(in[i]);
    std::memcpy(out + i, &h, sizeof h);
  }
}

void float16_double_kernel(const double* in, std::uint16_t* out, std::size_t n, const void* ctx) {
  const unsigned saved = _mm_getcsr();
  _mm_setcsr((saved & ~0x6000u) | (unsigned(*static_cast<const int*>(ctx) & 3) << 13));
  for (std::size_t i = 0; i < n; ++i) {
    const auto h = static_cast<_Float16>(in[i]);
    std::memcpy(out + i, &h, sizeof h);
  }
  _mm_setcsr(saved);
}
#else
bool float16_built() { return false; }
void float16_kernel(const float*, std::uint16_t*, std::size_t, const void*) {}
void float16_double_kernel(const double*, std::uint16_t*, std::size_t, const void*) {}
#endif

}  // namespace oracle
