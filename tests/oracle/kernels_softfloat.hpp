// Berkeley SoftFloat 3e as an oracle for fp16 arithmetic and IEEE flags (kernels_softfloat.cpp).
#pragma once

#include <cstddef>
#include <cstdint>

namespace oracle::softfloat {

enum class sop { add, sub, mul, div, sqrt, fma };

/// SoftFloat's rounding-mode numbers: near_even 0, minMag 1, min 2, max 3, near_maxMag 4, odd 6.
enum mode : int { near_even = 0, min_mag = 1, min = 2, max = 3, near_max_mag = 4, odd = 6 };

/// Whether the library was found and linked (else f16 does nothing).
bool built();

/// out[i] = o(a[i], b[i], c[i]) in fp16 under `mode`, flags[i] its exception flags (inexact 1,
/// underflow 2 with tininess after rounding, overflow 4, infinite 8, invalid 16). Not thread-safe.
void f16(sop o, int mode, const std::uint16_t* a, const std::uint16_t* b, const std::uint16_t* c, std::uint16_t* out,
         std::uint8_t* flags, std::size_t n);

}  // namespace oracle::softfloat
