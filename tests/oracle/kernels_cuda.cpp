// The host code of NVIDIA's cuda_fp16.h, cuda_bf16.h, cuda_fp8.h (and cuda_fp6.h, cuda_fp4.h
// where present), compiled by the host compiler: no nvcc and no GPU. CMake defines
// FPSCOPE_ORACLE_CUDA (and FPSCOPE_ORACLE_CUDA_FP6) when the headers are found and compile.
#include "kernels.hpp"

#ifdef FPSCOPE_ORACLE_CUDA
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#endif
#ifdef FPSCOPE_ORACLE_CUDA_FP6
#include <cuda_fp4.h>
#include <cuda_fp6.h>
#endif

namespace oracle {

#ifdef FPSCOPE_ORACLE_CUDA
bool cuda_built() { return true; }

namespace {
template <class F>
void half_loop(const float* in, std::uint16_t* out, std::size_t n, F conv) {
  for (std::size_t i = 0; i < n; ++i) out[i] = conv(in[i]);
}
}  // namespace

void cuda_half_kernel(const float* in, std::uint16_t* out, std::size_t n, const void* ctx) {
  switch (*static_cast<const int*>(ctx)) {
    case 0: half_loop(in, out, n, [](float x) { return __half_raw(__float2half_rn(x)).x; }); break;
    case 1: half_loop(in, out, n, [](float x) { return __half_raw(__float2half_rz(x)).x; }); break;
    case 2: half_loop(in, out, n, [](float x) { return __half_raw(__float2half_rd(x)).x; }); break;
    default: half_loop(in, out, n, [](float x) { return __half_raw(__float2half_ru(x)).x; }); break;
  }
}

void cuda_bf16_kernel(const float* in, std::uint16_t* out, std::size_t n, const void* ctx) {
  switch (*static_cast<const int*>(ctx)) {
    case 0: half_loop(in, out, n, [](float x) { return __nv_bfloat16_raw(__float2bfloat16_rn(x)).x; }); break;
    case 1: half_loop(in, out, n, [](float x) { return __nv_bfloat16_raw(__float2bfloat16_rz(x)).x; }); break;
    case 2: half_loop(in, out, n, [](float x) { return __nv_bfloat16_raw(__float2bfloat16_rd(x)).x; }); break;
    default: half_loop(in, out, n, [](float x) { return __nv_bfloat16_raw(__float2bfloat16_ru(x)).x; }); break;
  }
}

void cuda_fp8_kernel(const float* in, std::uint8_t* out, std::size_t n, const void* ctx) {
  const auto& m = *static_cast<const cuda_fp8_mode*>(ctx);
  const __nv_saturation_t sat = m.satfinite ? __NV_SATFINITE : __NV_NOSAT;
  const __nv_fp8_interpretation_t fmt = m.e5m2 ? __NV_E5M2 : __NV_E4M3;
  for (std::size_t i = 0; i < n; ++i) out[i] = __nv_cvt_float_to_fp8(in[i], sat, fmt);
}

void cuda_double2half_kernel(const double* in, std::uint16_t* out, std::size_t n, const void*) {
  for (std::size_t i = 0; i < n; ++i) out[i] = __half_raw(__double2half(in[i])).x;
}

void cuda_double2bf16_kernel(const double* in, std::uint16_t* out, std::size_t n, const void*) {
  for (std::size_t i = 0; i < n; ++i) out[i] = __nv_bfloat16_raw(__double2bfloat16(in[i])).x;
}

void cuda_double_fp8_kernel(const double* in, std::uint8_t* out, std::size_t n, const void* ctx) {
  const auto& m = *static_cast<const cuda_fp8_mode*>(ctx);
  const __nv_saturation_t sat = m.satfinite ? __NV_SATFINITE : __NV_NOSAT;
  const __nv_fp8_interpretation_t fmt = m.e5m2 ? __NV_E5M2 : __NV_E4M3;
  for (std::size_t i = 0; i < n; ++i) out[i] = __nv_cvt_double_to_fp8(in[i], sat, fmt);
}
#else
bool cuda_built() { return false; }
void cuda_half_kernel(const float*, std::uint16_t*, std::size_t, const void*) {}
void cuda_bf16_kernel(const float*, std::uint16_t*, std::size_t, const void*) {}
void cuda_fp8_kernel(const float*, std::uint8_t*, std::size_t, const void*) {}
void cuda_double2half_kernel(const double*, std::uint16_t*, std::size_t, const void*) {}
void cuda_double2bf16_kernel(const double*, std::uint16_t*, std::size_t, const void*) {}
void cuda_double_fp8_kernel(const double*, std::uint8_t*, std::size_t, const void*) {}
#endif

#ifdef FPSCOPE_ORACLE_CUDA_FP6
bool cuda_fp6_built() { return true; }

namespace {
template <class In>
unsigned char small(In x, const cuda_small_mode& m) {
  const cudaRoundMode r = m.rtz ? cudaRoundZero : cudaRoundNearest;
  switch (m.format) {
    case 0: return __nv_cvt_double_to_fp6(double(x), __NV_E2M3, r);
    case 1: return __nv_cvt_double_to_fp6(double(x), __NV_E3M2, r);
    default: return __nv_cvt_double_to_fp4(double(x), __NV_E2M1, r);
  }
}
template <>
unsigned char small<float>(float x, const cuda_small_mode& m) {
  const cudaRoundMode r = m.rtz ? cudaRoundZero : cudaRoundNearest;
  switch (m.format) {
    case 0: return __nv_cvt_float_to_fp6(x, __NV_E2M3, r);
    case 1: return __nv_cvt_float_to_fp6(x, __NV_E3M2, r);
    default: return __nv_cvt_float_to_fp4(x, __NV_E2M1, r);
  }
}
}  // namespace

void cuda_small_kernel(const float* in, std::uint8_t* out, std::size_t n, const void* ctx) {
  const auto& m = *static_cast<const cuda_small_mode*>(ctx);
  for (std::size_t i = 0; i < n; ++i) out[i] = small(in[i], m);
}
void cuda_small_double_kernel(const double* in, std::uint8_t* out, std::size_t n, const void* ctx) {
  const auto& m = *static_cast<const cuda_small_mode*>(ctx);
  for (std::size_t i = 0; i < n; ++i) out[i] = small(in[i], m);
}
#else
bool cuda_fp6_built() { return false; }
void cuda_small_kernel(const float*, std::uint8_t*, std::size_t, const void*) {}
void cuda_small_double_kernel(const double*, std::uint8_t*, std::size_t, const void*) {}
#endif

}  // namespace oracle
