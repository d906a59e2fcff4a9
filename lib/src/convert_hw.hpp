// Internal: hardware float32 -> fp16 / bf16 conversions (convert_hw.cpp). Not installed.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fpscope::detail {

/// CPU support (CPUID, cached): F16C with AVX, and AVX512F with AVX512_BF16.
bool cpu_has_f16c();
bool cpu_has_avx512bf16();
/// MXCSR.DAZ in the calling thread (F16C then reads float32 denormals as zero).
bool mxcsr_daz();

/// out[i] = vcvtps2ph(fl32(in[i] * scale), nearest-even). Only after cpu_has_f16c().
void f16c_rne(const float* in, std::uint16_t* out, std::size_t n, float scale);
/// out[i] = vcvtneps2bf16(fl32(in[i] * scale)), with float32 denormals rounded in software
/// unless `daz` (the instruction's own behaviour: they become zero). Only after
/// cpu_has_avx512bf16().
void bf16_rne(const float* in, std::uint16_t* out, std::size_t n, float scale, bool daz);

}  // namespace fpscope::detail
