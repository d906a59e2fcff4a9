// The real implementations the oracle tests compare fpscope with, each behind a plain
// function so that only its own source file is built with the ISA flags it needs
// (-mf16c, -mavx512bf16) or the headers it needs (CUDA), and every caller runs it only after
// a run-time check. Kernels: out[i] = oracle(in[i]) for i < n, n a multiple of 16; `ctx`
// points to the kernel's parameter (an int mode) or is null.
#pragma once

#include <cstddef>
#include <cstdint>

namespace oracle {

// x86 F16C, _mm256_cvtps_ph with the immediate *(const int*)ctx (0 rne, 1 rdn, 2 rup, 3 rtz).
bool f16c_built();
void f16c_kernel(const float* in, std::uint16_t* out, std::size_t n, const void* ctx);

// AVX512-BF16 _mm512_cvtneps_pbh.
bool avx512bf16_built();
void avx512bf16_kernel(const float* in, std::uint16_t* out, std::size_t n, const void* ctx);

// GCC _Float16 conversions through libgcc (__truncsfhf2, __truncdfhf2); the rounding comes
// from MXCSR.RC, which the double kernel sets to *(const int*)ctx for its run (0 nearest,
// 1 down, 2 up, 3 toward zero) and restores.
bool float16_built();
void float16_kernel(const float* in, std::uint16_t* out, std::size_t n, const void* ctx);
void float16_double_kernel(const double* in, std::uint16_t* out, std::size_t n, const void* ctx);

// CUDA headers' host code (cuda_fp16.h, cuda_bf16.h, cuda_fp8.h, cuda_fp6.h, cuda_fp4.h).
bool cuda_built();
bool cuda_fp6_built();
/// Rounding of the fp16/bf16 kernels: 0 rn, 1 rz, 2 rd, 3 ru.
void cuda_half_kernel(const float* in, std::uint16_t* out, std::size_t n, const void* ctx);
void cuda_bf16_kernel(const float* in, std::uint16_t* out, std::size_t n, const void* ctx);
/// fp8: ctx -> cuda_fp8_mode.
struct cuda_fp8_mode {
  bool e5m2;
  bool satfinite;
};
void cuda_fp8_kernel(const float* in, std::uint8_t* out, std::size_t n, const void* ctx);
void cuda_double2half_kernel(const double* in, std::uint16_t* out, std::size_t n, const void* ctx);
void cuda_double2bf16_kernel(const double* in, std::uint16_t* out, std::size_t n, const void* ctx);
void cuda_double_fp8_kernel(const double* in, std::uint8_t* out, std::size_t n, const void* ctx);
/// fp6/fp4 (cudaRoundNearest or cudaRoundZero): ctx -> cuda_small_mode.
struct cuda_small_mode {
  int format;  ///< 0 e2m3, 1 e3m2, 2 e2m1
  bool rtz;
};
void cuda_small_kernel(const float* in, std::uint8_t* out, std::size_t n, const void* ctx);
void cuda_small_double_kernel(const double* in, std::uint8_t* out, std::size_t n, const void* ctx);

}  // namespace oracle
