#include "fpscope/policy.hpp"

#include <array>

namespace fpscope {
namespace {
constexpr std::array<std::string_view, 4> profile_names{"ieee", "cuda", "avx512bf16", "ml_dtypes"};
constexpr std::array<std::string_view, 7> rounding_names{"rne", "rtz", "rup", "rdn", "rna", "rto", "sr"};

template <class E, std::size_t N>
std::optional<E> find_in(const std::array<std::string_view, N>& names, std::string_view s) {
  for (std::size_t i = 0; i < N; ++i)
    if (names[i] == s) return static_cast<E>(i);
  return std::nullopt;
}
}  // namespace

policy profile_policy(profile pr, const format& f) {
  policy p;
  switch (pr) {
    case profile::ieee: break;
    case profile::cuda:
      // cvt.*.f16/bf16 overflow to inf; the fp8/fp6/fp4 types of cuda_fp8.h etc. default to
      // __NV_SATFINITE (NaN stays NaN there; inf becomes max finite).
      p.nan = nan_style::canonical;
      p.nan_finite = nan_to_finite::max;
      if (f.bits <= 8) p.on_overflow = overflow::saturate;
      break;
    case profile::avx512bf16: p.daz = true; break;
    case profile::ml_dtypes:
      p.nan = nan_style::quiet;
      p.nan_finite = nan_to_finite::flipped_zero;
      break;
  }
  return p;
}

std::optional<profile> find_profile(std::string_view s) { return find_in<profile>(profile_names, s); }
std::optional<rounding> find_rounding(std::string_view s) {
  return find_in<rounding>(rounding_names, s);
}
std::string_view name(profile p) { return profile_names[static_cast<std::size_t>(p)]; }
std::string_view name(rounding r) { return rounding_names[static_cast<std::size_t>(r)]; }
std::string_view name(overflow o) { return o == overflow::saturate ? "saturate" : "inf"; }

}  // namespace fpscope
