// THE one place a result is rounded to odd: the truncation toward zero of the exact value, with
// its last bit set when anything was dropped.
//
// Why to odd: rounding to odd at p + k bits (k >= 2) and then once more in any deterministic
// mode equals that rounding applied to the exact value (Boldo and Melquiond, "Emulation of FMA
// and correctly rounded sums: proved algorithms using rounding to odd", IEEE TC 2008). So an
// exact result is carried in a wider binary type rounded to odd, and round_pack rounds it once
// more into the target format. The users: the scalar arithmetic (arith.hpp, binary64), the bulk
// arithmetic (lib/src/arith.cpp, binary32 and binary64 SIMD lanes) and the scaled values of the
// histogram classes (lib/src/histogram.cpp, x * scale into binary32).
//
// Each form takes the nearest value s and the side the exact value lies on, and works on s's bit
// pattern: stepping the bits of s one unit toward zero is the truncation when s was rounded away
// from zero (the exact value is within half a unit of s), and or-ing in 1 marks inexactness.
// Integer selects, no branches, so that the bulk loops vectorise; constexpr where to_bits is.
// C++17 and __host__ __device__, like round_pack.hpp.
#pragma once

#include <cstdint>

#include "fpscope/detail/config.hpp"
#include "fpscope/detail/round_pack.hpp"

namespace fpscope {
namespace detail {

/// The bits of s (rounded to nearest) rounded to odd. `inexact` is 1 when the exact value is not
/// s, else 0; `toward_zero` is 1 when the exact value lies nearer zero than s (read only when
/// inexact).
template <class U>
FPSCOPE_HD FPSCOPE_INLINE constexpr U odd_bits(U s, U inexact, U toward_zero) {
  return (s - (toward_zero & inexact)) | inexact;
}

/// s + t rounded to odd, where s is the exact value s + t rounded to nearest in W (float or
/// double) and t the error, or any value with its sign (0 when s is exact). With Guard, an
/// infinite or NaN s is returned as it is (so that an overflow stays visible to the caller);
/// without, s must be finite or NaN (a NaN stays a NaN; an inf would step to the largest finite).
template <class W, bool Guard = true>
FPSCOPE_HD FPSCOPE_INLINE constexpr W round_odd(W s, W t) {
  using U = typename binary<W>::bits;
  const U sb = to_bits(s);
  U inexact = U(t != W(0));
  if constexpr (Guard) inexact &= U((sb & binary<W>::exp_mask) != binary<W>::exp_mask);
  // The exact value is nearer zero than s when the error's sign is not s's.
  const U toward_zero = (to_bits(t) ^ sb) >> (binary<W>::width - 1);
  return from_bits<W>(odd_bits(sb, inexact, toward_zero));
}

/// A binary64 rounded to odd at binary32. A finite value beyond FLT_MAX gives FLT_MAX (odd: the
/// truncation of an overflow); inf and NaN stay as they are.
FPSCOPE_HD FPSCOPE_INLINE constexpr float narrow_odd(double d) {
  const float f = static_cast<float>(d);
  const double back = f;
  const std::uint32_t inexact = back != d;
  // |back| > |d| when inexact, without fabs (not constexpr before C++23).
  const std::uint32_t toward_zero = (back > d) != (d < 0);
  return from_bits<float>(odd_bits(to_bits(f), inexact, toward_zero));
}

}  // namespace detail
}  // namespace fpscope
