// Real implementations of 16-bit arithmetic that the arithmetic oracle tests compare
// fpscope::apply with. Like kernels.hpp: each behind a plain function so that only its own
// source file gets the ISA flags (-mf16c) or the headers (CUDA) it needs, and each caller runs
// it only after a run-time check.
#pragma once

#include <cstddef>
#include <cstdint>

namespace oracle::arith {

/// The binary operations, in the order of the kernels' `op` argument.
enum class bop : int { add = 0, sub = 1, mul = 2, div = 3 };

/// Pair kernels: out[i] = a op b[i] for i < n, the operands and result as 16-bit codes. The
/// caller pads b and out to a multiple of 16 elements (the padding is not compared).
using pair_kernel = void (*)(bop op, std::uint16_t a, const std::uint16_t* b, std::uint16_t* out,
                             std::size_t n);

// x86: both fp16 operands to float32 with F16C (vcvtph2ps), the float32 op with AVX
// (vaddps/vsubps/vmulps/vdivps, written as asm so that the first operand stays the first
// source: x86 returns that operand when both are NaN), back with vcvtps2ph imm 0 (nearest
// even). Nothing here may run before the CPU said it has F16C and AVX.
bool x86_arith_built();
void x86_fp16_kernel(bop op, std::uint16_t a, const std::uint16_t* b, std::uint16_t* out, std::size_t n);
/// out[i] = fp16(vsqrtps(float(in[i]))), n a multiple of 8.
void x86_fp16_sqrt_kernel(const std::uint16_t* in, std::uint16_t* out, std::size_t n);

// The CUDA headers' host code: __hadd/__hsub/__hmul/__hdiv on __half (cuda_fp16.h) and on
// __nv_bfloat16 (cuda_bf16.h), built by the host compiler (no nvcc, no GPU). CMake defines
// FPSCOPE_ORACLE_CUDA_ARITH when a host call of all eight compiles and links.
bool cuda_arith_built();
void cuda_fp16_kernel(bop op, std::uint16_t a, const std::uint16_t* b, std::uint16_t* out, std::size_t n);
void cuda_bf16_kernel(bop op, std::uint16_t a, const std::uint16_t* b, std::uint16_t* out, std::size_t n);

}  // namespace oracle::arith
