// __hadd/__hsub/__hmul/__hdiv of NVIDIA's cuda_fp16.h and cuda_bf16.h, built by the host
// compiler: no nvcc and no GPU. In CUDA 13 their host branch (NV_IF_ELSE_TARGET) is plain C++:
// __half2float / __bfloat162float (integer code), the float32 operation, then __float2half /
// __float2bfloat16 (integer code, nearest-even, canonical NaN 0x7FFF). CMake defines
// FPSCOPE_ORACLE_CUDA_ARITH when a host program calling all eight compiles and links.
#include "kernels_arith.hpp"

#ifdef FPSCOPE_ORACLE_CUDA_ARITH
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

namespace oracle::arith {

#ifdef FPSCOPE_ORACLE_CUDA_ARITH
namespace {
template <class T, class Raw, class F>
void loop(std::uint16_t a, const std::uint16_t* b, std::uint16_t* out, std::size_t n, F f) {
  Raw ra;
  ra.x = a;
  const T x(ra);
  for (std::size_t i = 0; i < n; ++i) {
    Raw rb;
    rb.x = b[i];
    out[i] = Raw(f(x, T(rb))).x;
  }
}

template <class T, class Raw>
void dispatch(bop op, std::uint16_t a, const std::uint16_t* b, std::uint16_t* out, std::size_t n) {
  switch (op) {
    case bop::add: loop<T, Raw>(a, b, out, n, [](T x, T y) { return __hadd(x, y); }); break;
    case bop::sub: loop<T, Raw>(a, b, out, n, [](T x, T y) { return __hsub(x, y); }); break;
    case bop::mul: loop<T, Raw>(a, b, out, n, [](T x, T y) { return __hmul(x, y); }); break;
    case bop::div: loop<T, Raw>(a, b, out, n, [](T x, T y) { return __hdiv(x, y); }); break;
  }
}
}  // namespace

bool cuda_arith_built() { return true; }
void cuda_fp16_kernel(bop op, std::uint16_t a, const std::uint16_t* b, std::uint16_t* out, std::size_t n) {
  dispatch<__half, __half_raw>(op, a, b, out, n);
}
void cuda_bf16_kernel(bop op, std::uint16_t a, const std::uint16_t* b, std::uint16_t* out, std::size_t n) {
  dispatch<__nv_bfloat16, __nv_bfloat16_raw>(op, a, b, out, n);
}
#else
bool cuda_arith_built() { return false; }
void cuda_fp16_kernel(bop, std::uint16_t, const std::uint16_t*, std::uint16_t*, std::size_t) {}
void cuda_bf16_kernel(bop, std::uint16_t, const std::uint16_t*, std::uint16_t*, std::size_t) {}
#endif

}  // namespace oracle::arith
