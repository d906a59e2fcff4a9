// Internal (not installed): the step of AMD CDNA1's and CDNA2's v_mfma models, and of CDNA3's f32 (mma_amd.cpp),
// which mma.cpp's K loop (scalar_k_loop) calls once per step of inst.L products.
#pragma once

#include <cstddef>
#include <cstdint>

#include "fpscope/mma.hpp"

namespace fpscope::mma::amd {

/// One step of `inst` (arith fma, e_fdpa or ftz_mul_add): the inst.L products a[t] * b[t]
/// (values of the input type; padding zeros) added to the accumulator c (binary32 bits), as
/// MMA-Sim's model computes it; `starts` when the step is the first of an instruction (c is then
/// its C operand). Returns binary32 bits; a NaN is the canonical 0x7FFFFFFF.
std::uint32_t step(const instruction& inst, const float* a, const float* b, std::uint32_t c, bool starts);

/// The whole GEMM D = A B + C (m x k, k x n, m x n, row-major; C may be null: zeros) of an AMD
/// instruction (arith fma, e_fdpa or ftz_mul_add), with o.promote and o.threads as gemm() takes
/// them: the vector kernels (AVX-512F), the same bits as the K loop over step(). Returns false,
/// computing nothing, where they do not run (another CPU, or the environment variable
/// FPSCOPE_MMA_SCALAR set: the scalar path, e.g. to test it) or where an element of A or B is
/// not a value of its type (the caller's check then says which).
bool gemm_fast(const instruction& inst, std::size_t m, std::size_t n, std::size_t k, const float* A, const float* B,
               const float* C, float* D, const gemm_options& o);

}  // namespace fpscope::mma::amd
