// Internal (not installed): the step of AMD CDNA1's and CDNA2's v_mfma models, and of CDNA3's f32 (mma_amd.cpp),
// which mma.cpp's K loop (scalar_k_loop) calls once per step of inst.L products.
#pragma once

#include <cstdint>

#include "fpscope/mma.hpp"

namespace fpscope::mma::amd {

/// One step of `inst` (arith fma, e_fdpa or ftz_mul_add): the inst.L products a[t] * b[t]
/// (values of the input type; padding zeros) added to the accumulator c (binary32 bits), as
/// MMA-Sim's model computes it; `starts` when the step is the first of an instruction (c is then
/// its C operand). Returns binary32 bits; a NaN is the canonical 0x7FFFFFFF.
std::uint32_t step(const instruction& inst, const float* a, const float* b, std::uint32_t c, bool starts);

}  // namespace fpscope::mma::amd
