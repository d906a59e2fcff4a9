// Harness of the exhaustive oracle tests: sweeps of all 2^32 float32 bit patterns (and of
// large double sets) through fpscope's bulk and scalar encoders and through a real
// implementation, compared word for word.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fpscope/convert.hpp"

namespace oracle {

/// Marks the running test case as skipped (main then exits 77 unless something failed).
void skip(const std::string& reason);

/// One differing input: its bit pattern, the oracle's code and fpscope's code.
struct mismatch {
  std::uint64_t input;
  std::uint32_t oracle;
  std::uint32_t fpscope;
};

struct result {
  std::uint64_t compared = 0;           ///< inputs run through bulk encode and the oracle
  std::uint64_t mismatches = 0;         ///< bulk fpscope != oracle
  std::uint64_t nan_inputs = 0;         ///< of the compared, NaN inputs
  std::uint64_t nan_mismatches = 0;     ///< of the mismatches, NaN inputs
  std::uint64_t scalar_checked = 0;     ///< inputs also run through the scalar encode
  std::uint64_t scalar_mismatches = 0;  ///< scalar fpscope != oracle
  std::uint64_t hardware_checked = 0;     ///< inputs also run through the bulk encoder's hardware path
  std::uint64_t hardware_mismatches = 0;  ///< hardware path != oracle
  std::vector<mismatch> first;          ///< bulk mismatches with the smallest inputs (<= 10)
  std::vector<mismatch> first_scalar;   ///< scalar mismatches with the smallest inputs (<= 10)
  double seconds = 0;
};

/// Oracle kernel on float32: out[i] = oracle(in[i]) for i < n (n a multiple of 16).
template <class Word>
using f32_kernel = void (*)(const float* in, Word* out, std::size_t n, const void* ctx);
template <class Word>
using f64_kernel = void (*)(const double* in, Word* out, std::size_t n, const void* ctx);

inline constexpr std::uint64_t all_f32 = std::uint64_t{1} << 32;

/// float32 bit patterns first, first + step, ... (count of them, modulo 2^32).
struct segment {
  std::uint64_t first;
  std::uint64_t count;
  std::uint64_t step = 1;
};

/// Runs the float32 bit patterns of `segments` (default: all 2^32) through `kernel` and
/// fpscope (bulk in software, bulk again through its hardware path where
/// fpscope::encode_uses_hardware, and scalar on a subsample), OpenMP-parallel over chunks of 2^16.
/// `drop_chunk` (>= 0) leaves that chunk out: only for the harness's own self-test.
template <class Word>
result sweep_f32(const fpscope::format& f, const fpscope::policy& p, f32_kernel<Word> kernel,
                 const void* ctx, const std::vector<segment>& segments = {{0, all_f32, 1}},
                 std::int64_t drop_chunk = -1);

/// Runs the doubles `in` through `kernel` and fpscope (bulk and scalar, every element).
template <class Word>
result sweep_f64(const std::vector<double>& in, const fpscope::format& f, const fpscope::policy& p,
                 f64_kernel<Word> kernel, const void* ctx);

/// Doubles that probe a format's every rounding boundary: for each pair of neighbouring
/// representable magnitudes, both of them and their midpoint, each with nextafter
/// neighbours and with the neighbours at half a float32 ulp (where double rounding through
/// float32 would go wrong); past the largest finite value the same for max + k ulp/2; the
/// underflow points 0, min/4, min/2; both signs; double/float range and special values; and
/// `random` values with exponents spread over the format's range and random significands.
/// Built from the format's parameters alone (not from fpscope's decoder).
std::vector<double> boundary_doubles(const fpscope::format& f, std::size_t random, std::uint64_t seed);

/// Prints one line: test name, inputs, mismatches, elapsed time and throughput.
void print(const std::string& name, const result& r);
/// Reports r through Catch: counts must be `expected`, mismatches 0 (first ones listed).
/// `in_digits`: hex digits of an input (8 float32, 16 float64).
void check(const std::string& name, const result& r, std::uint64_t expected, int in_digits = 8);
/// Catch INFO text listing mismatches.
std::string describe(const std::vector<mismatch>& m, int hex_digits_in, int hex_digits_out);

/// Sets MXCSR to its power-on default 0x1F80 (all exceptions masked, nearest, no DAZ/FTZ)
/// in the calling thread, or the rounding control `rc` (0 nearest, 1 down, 2 up, 3 zero).
void set_mxcsr_default(int rc = 0);
/// True when the calling thread's MXCSR control bits are the default (rounding `rc`).
bool mxcsr_is_default(int rc = 0);

/// F16C (with AVX state enabled by the OS), from CPUID and XCR0.
bool have_f16c();
/// AVX512F + AVX512_BF16 (with ZMM/opmask state enabled by the OS).
bool have_avx512bf16();

}  // namespace oracle
