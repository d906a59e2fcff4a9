#include "fpscope/summary.hpp"

#include <bit>

namespace fpscope {

tensor_summary summarize(std::span<const float> x, int threads) {
  tensor_summary s;
  s.count = x.size();
  // amax: the largest finite magnitude's bits, found in the histogram's own read of the values.
  s.amax = std::bit_cast<float>(s.hist.add_amax(x, threads));
  // The buckets that hold exactly one kind of special value (docs/hist.md): +-0 has the key of
  // sign and exponent 0 with an all-zero fraction, +-inf that of exponent 255; every other key
  // of exponent 255 is a NaN (its fraction is not zero).
  constexpr std::uint32_t neg = bucket_histogram::per_sign, top = 255 * bucket_histogram::per_binade;
  s.zeros = s.hist[0] + s.hist[neg];
  s.infs = s.hist[top] + s.hist[neg + top];
  for (std::uint32_t k = top; k < top + bucket_histogram::per_binade; ++k) s.nans += s.hist[k] + s.hist[neg + k];
  s.nans -= s.infs;
  return s;
}

}  // namespace fpscope
