// Conversions between binary32/binary64 and any format: scalar and bulk (spans in, spans out).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "fpscope/detail/round_pack.hpp"
#include "fpscope/format.hpp"
#include "fpscope/policy.hpp"

namespace fpscope {

/// float32 -> bits of `f`, rounded once. `index` keys stochastic rounding.
inline std::uint32_t encode(float x, const format& f, const policy& p = {}, std::uint64_t index = 0) {
  return detail::round_pack<float>(detail::to_bits(x), f, p, index);
}
/// float64 -> bits of `f`, rounded once (never through float32).
inline std::uint32_t encode(double x, const format& f, const policy& p = {}, std::uint64_t index = 0) {
  return detail::round_pack<double>(detail::to_bits(x), f, p, index);
}
/// As encode, or-ing IEEE flags (flag_inexact, ...) into `flags`.
inline std::uint32_t encode(double x, const format& f, const policy& p, std::uint64_t index,
                            unsigned& flags) {
  return detail::round_pack<double, true>(detail::to_bits(x), f, p, index, &flags);
}
inline std::uint32_t encode(float x, const format& f, const policy& p, std::uint64_t index,
                            unsigned& flags) {
  return detail::round_pack<float, true>(detail::to_bits(x), f, p, index, &flags);
}

/// Exact value of the code `bits` of `f` (NaN: a quiet NaN carrying the payload).
inline double decode(std::uint32_t bits, const format& f) { return detail::decode_bits(bits, f); }

/// bits of `from` -> bits of `to`, rounded once (the decoded value is exact in float64).
inline std::uint32_t recode(std::uint32_t bits, const format& from, const format& to,
                            const policy& p = {}, std::uint64_t index = 0) {
  return encode(decode(bits, from), to, p, index);
}

enum class value_class : std::uint8_t { zero, subnormal, normal, infinite, nan };
inline constexpr int value_class_count = 5;

/// The name of a value class, "zero", "subnormal", "normal", "infinite" or "nan": what `fpscope
/// cast` prints and Python's fpscope.VALUE_CLASSES holds (in enum order).
std::string_view name(value_class c);

/// The class of a code of `f`.
value_class classify(std::uint32_t bits, const format& f);

/// Options of the bulk conversions.
struct bulk_options {
  double scale = 1.0;             ///< inputs are multiplied first: fl32(x * scale) for float32 input
  std::uint64_t first_index = 0;  ///< stochastic rounding index of in[0]
  int threads = 0;  ///< 0: OpenMP's default thread count from the measured threshold on, else serial; N: N threads
  /// float32 input: take a hardware instruction where it gives the same bits as the software
  /// path (see encode_uses_hardware); false forces software (the oracle tests prove both).
  bool hardware = true;
};

/// Whether bulk float32 encode to `f` under `p` runs on a hardware instruction on this CPU
/// (with bulk_options::hardware): F16C for fp16 and AVX512-BF16 for bf16, nearest-even, when
/// the policy's results are exactly the instruction's (the ieee profile's overflow and NaN
/// rules; for bf16 also the avx512bf16 profile). MXCSR.DAZ set in the calling thread turns F16C
/// off (it would read float32 denormals as zero).
bool encode_uses_hardware(const format& f, const policy& p);

/// Element count from which bulk conversion goes parallel. Measured (tools/bench/RESULTS.md,
/// OpenMP crossover): back to back, 2 threads win from 2^13-2^14 values, but a call after the
/// workers went idle gains only from 2^20, and sporadic calls are the common case.
inline constexpr std::size_t parallel_threshold = std::size_t{1} << 20;

/// Bulk float32/float64 -> codes. `out` must hold f.storage_bytes()-wide words; throws
/// std::invalid_argument on a size or width mismatch.
template <class Out>
void encode(std::span<const float> in, std::span<Out> out, const format& f, const policy& p = {},
            const bulk_options& o = {});
template <class Out>
void encode(std::span<const double> in, std::span<Out> out, const format& f, const policy& p = {},
            const bulk_options& o = {});

/// "code 0x10 does not fit in e2m1 (4 bits: 0x0 to 0xf)": what every check of a code's width says.
std::string code_does_not_fit(std::uint32_t code, const format& f);

/// Throws std::invalid_argument, code_does_not_fit(...) + " (element I)" (I counted from
/// `first_index`), at the first code with a bit set above the format's width (an e2m1 code in a
/// uint8 above 0xf, a tf32 code in a uint32 above 0x7ffff). Such codes are refused, never masked:
/// the bulk decode and arithmetic check their operands with it, as calc and cast check theirs.
template <class W>
void check_codes(std::span<const W> codes, const format& f, std::uint64_t first_index = 0);

/// Bulk codes -> exact float32 / float64 values. Throws std::invalid_argument on a size mismatch
/// or a code wider than the format (check_codes).
template <class In>
void decode(std::span<const In> in, std::span<float> out, const format& f);
template <class In>
void decode(std::span<const In> in, std::span<double> out, const format& f);

}  // namespace fpscope
