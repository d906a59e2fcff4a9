// Rounding modes, overflow/subnormal/NaN policies and the named profiles that bundle them.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "fpscope/format.hpp"

namespace fpscope {

/// Rounding direction. `sr` draws its random bits from sr_bits(seed, index).
enum class rounding : std::uint8_t { rne, rtz, rup, rdn, rna, rto, sr };

/// What a finite value beyond the largest finite one becomes.
enum class overflow : std::uint8_t {
  infinity,  ///< inf where the format has it, else NaN, else (fp6/fp4) max finite
  saturate,  ///< +-max finite
};

/// The NaN a NaN input becomes, for formats that have NaN.
enum class nan_style : std::uint8_t {
  payload,    ///< sign kept, quieted, top payload bits kept (x86 F16C, SoftFloat)
  quiet,      ///< sign kept, payload dropped (ml_dtypes, torch fp16)
  canonical,  ///< positive all-ones NaN whatever the input (CUDA)
};

/// What a NaN input becomes in a format without NaN (fp6, fp4).
enum class nan_to_finite : std::uint8_t {
  max,           ///< +max finite (CUDA cvt.rn.satfinite)
  flipped_zero,  ///< zero with the NaN's sign inverted (ml_dtypes)
};

/// Every choice a conversion makes besides the format. Defaults are IEEE 754.
struct policy {
  rounding round = rounding::rne;
  overflow on_overflow = overflow::infinity;
  bool saturate_inf = true;  ///< with saturate: inf input becomes max finite (else inf, or NaN)
  bool daz = false;          ///< subnormal inputs read as signed zero
  bool ftz = false;          ///< subnormal results flushed to signed zero
  nan_style nan = nan_style::payload;
  nan_to_finite nan_finite = nan_to_finite::max;
  std::uint64_t seed = 0;  ///< stochastic rounding key
};

/// Named bundles of policy that reproduce real implementations.
enum class profile : std::uint8_t {
  ieee,        ///< IEEE 754 as x86 F16C and Berkeley SoftFloat: quiet NaN keeps its payload
  cuda,        ///< NVIDIA cvt / cuda_fp16.h, cuda_bf16.h, cuda_fp8.h: canonical NaN, fp8 satfinite
  avx512bf16,  ///< x86 VCVTNEPS2BF16: nearest-even, float32 denormal inputs read as zero
  ml_dtypes,   ///< ml_dtypes' NumPy casts: non-saturating, sign-kept quiet NaN
};

/// The policy a profile uses for a format (before user overrides of rounding or overflow).
policy profile_policy(profile p, const format& f);

std::optional<profile> find_profile(std::string_view name);
std::optional<rounding> find_rounding(std::string_view name);
std::string_view name(profile p);
std::string_view name(rounding r);
std::string_view name(overflow o);

}  // namespace fpscope
