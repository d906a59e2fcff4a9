// Mixed-precision dot products: inputs in one format, exact products, sums kept in an
// accumulator of limited precision, optionally promoted into a binary32 total every K products
// (the fix for the ~14-bit accumulation reported for FP8 GEMM on Hopper). Every result comes
// with its error against the exact value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "fpscope/format.hpp"
#include "fpscope/policy.hpp"

namespace fpscope {

/// binary32 as a format (not a built-in storage format: the usual accumulator).
inline constexpr format fp32_format{"fp32", 32, 8, 23, 127, special::ieee, true};

/// A binary32-range accumulator keeping `bits` significand bits (hidden bit included), 2..24.
constexpr format limited_accumulator(int bits) {
  return {"acc", 9 + bits - 1, 8, bits - 1, 127, special::ieee, true};
}

/// How a dot product accumulates its exact products.
struct accumulator {
  format acc = fp32_format;            ///< format of the running partial sum
  rounding round = rounding::rne;      ///< rounding of each partial-sum update (rtz: truncation)
  std::size_t block = 0;               ///< promote the partial sum into a binary32 total (nearest-even)
                                       ///< every `block` products; 0: never
};

/// The accumulator named by `spec`: "fp32", "fp16", "bf16", "tf32" or "bits:N" (N significand
/// bits, truncation); nullopt-like: throws std::invalid_argument on anything else.
accumulator parse_accumulator(std::string_view spec, std::size_t block = 0);
/// "fp32 rne", "14-bit rtz, promoted every 128", ...
std::string describe(const accumulator& a);

/// A dot product and its error against the exact value.
struct dot_result {
  double value = 0;      ///< the modelled result
  double exact = 0;      ///< the exact dot product, rounded to nearest double
  double abs_error = 0;  ///< value - exact (computed exactly, then rounded to double)
  double rel_error = 0;  ///< abs_error / |exact| (0 when both are 0; inf when only exact is 0)
  double ulp_error = 0;  ///< abs_error in units of the last place of the accumulator format at |exact|
  bool exact_zero = false;
};

/// sum_i a[i] * b[i] with a[i], b[i] values of an input format of at most 26 significand bits
/// (so every product is exact in binary64), accumulated in order by `acc`. NaN/inf inputs
/// propagate as IEEE arithmetic does; they have no exact value (NaN) and their error fields are
/// NaN, as are a NaN result's. A sum of finite products that overflows the accumulator to +-inf
/// has its exact value and errors of +-inf.
dot_result dot(std::span<const double> a, std::span<const double> b, const accumulator& acc);

/// The most results (m x n) one matrix product of `fpscope dot` computes: 2^24, a 4096 x 4096
/// product. Larger results are refused before any work: dot checks small products in detail,
/// and each result is an exact sum.
inline constexpr std::uint64_t max_dot_results = std::uint64_t{1} << 24;

}  // namespace fpscope
