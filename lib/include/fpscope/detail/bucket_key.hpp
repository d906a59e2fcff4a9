// The bucket key of bucket_histogram (histogram.hpp), on its own so that the CUDA kernels can
// use it: C++17, __host__ __device__, no C++20 headers. bucket_histogram::key calls it.
#pragma once

#include <cstdint>

#include "fpscope/detail/config.hpp"

#if __cplusplus >= 202002L && !defined(__CUDA_ARCH__)
#include <bit>
#endif

namespace fpscope::detail {

/// Leading one bits of t, for t whose low bit is zero (so ~t != 0).
FPSCOPE_HD FPSCOPE_INLINE constexpr std::uint32_t leading_ones_even(std::uint32_t t) {
#if defined(__CUDA_ARCH__)
  return std::uint32_t(__clz(int(~t)));
#elif __cplusplus >= 202002L
  return std::uint32_t(std::countl_one(t));  // the CPU bulk loops vectorise this form
#else
  return std::uint32_t(__builtin_clz(~t));
#endif
}

/// The bucket of a float32 bit pattern (see bucket_histogram): sign and exponent, the run of
/// leading ones of the fraction, the bit after the zero ending it, and whether any bit is left.
FPSCOPE_HD FPSCOPE_INLINE constexpr std::uint32_t bucket_key(std::uint32_t bits) {
  const std::uint32_t t = bits << 9;  // the fraction, top-aligned; its low 9 bits are zero
  const std::uint32_t run = leading_ones_even(t);  // <= 23
  const std::uint32_t after = t << run << 1;       // past the run and the zero ending it
  return ((bits >> 16) & ~0x7Fu) | run << 2 | (after >> 30 & 2) | std::uint32_t((after << 1) != 0);
}

}  // namespace fpscope::detail
