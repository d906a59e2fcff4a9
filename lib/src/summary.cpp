#include "fpscope/summary.hpp"

#include <algorithm>
#include <bit>
#include <omp.h>

#include "fpscope/convert.hpp"

namespace fpscope {
namespace {

// The largest magnitude bits of the finite values (0 if none): inf and NaN count as 0. Signed,
// in this form, because GCC 12 vectorises the signed max and not the unsigned one.
std::int32_t finite_max_bits(const std::int32_t* __restrict in, std::size_t n) {
  std::int32_t top = 0;
  for (std::size_t i = 0; i < n; ++i) {
    std::int32_t m = in[i] & 0x7FFFFFFF;
    m = m < 0x7F800000 ? m : 0;
    top = m > top ? m : top;
  }
  return top;
}

}  // namespace

tensor_summary summarize(std::span<const float> x, int threads) {
  tensor_summary s;
  s.count = x.size();
  s.hist.add(x, threads);
  // The buckets that hold exactly one kind of special value (docs/hist.md): +-0 has the key of
  // sign and exponent 0 with an all-zero fraction, +-inf that of exponent 255; every other key
  // of exponent 255 is a NaN (its fraction is not zero).
  constexpr std::uint32_t neg = bucket_histogram::per_sign, top = 255 * bucket_histogram::per_binade;
  s.zeros = s.hist[0] + s.hist[neg];
  s.infs = s.hist[top] + s.hist[neg + top];
  for (std::uint32_t k = top; k < top + bucket_histogram::per_binade; ++k) s.nans += s.hist[k] + s.hist[neg + k];
  s.nans -= s.infs;
  // amax: the largest finite magnitude's bits (magnitudes of float32 order as their bits), in
  // slices on the threads.
  const auto* in = reinterpret_cast<const std::int32_t*>(x.data());
  const std::size_t n = x.size();
  const int t = threads > 0 ? threads : (n >= parallel_threshold ? omp_get_max_threads() : 1);
  const std::size_t slice = std::size_t{1} << 16, slices = (n + slice - 1) / slice;
  std::int32_t top_bits = 0;
#pragma omp parallel for num_threads(t) reduction(max : top_bits) schedule(static) if (t > 1)
  for (std::size_t k = 0; k < slices; ++k)
    top_bits = std::max(top_bits, finite_max_bits(in + k * slice, std::min(slice, n - k * slice)));
  s.amax = std::bit_cast<float>(top_bits);
  return s;
}

}  // namespace fpscope
