// fpscope::cuda: bulk conversions, the bucket histogram and the AMP non-finite check on an
// NVIDIA GPU, plus the same element code run on the host (namespace host) for checking it
// without a GPU. C++17; no CUDA header needed: streams are passed as void* (cudaStream_t).
// Device functions take device pointers and throw std::runtime_error on a CUDA error.
#pragma once

#include <cstddef>
#include <cstdint>

#include "fpscope/format.hpp"
#include "fpscope/policy.hpp"

namespace fpscope::cuda {

/// A conversion NVIDIA's headers provide as an intrinsic.
enum class intrinsic : std::uint8_t { f16, bf16, e4m3, e5m2 };

/// One intrinsic conversion: fp16/bf16 have rne/rtz/rdn/rup (__float2half_rn/_rz/_rd/_ru,
/// __float2bfloat16_*); e4m3/e5m2 only rne (__nv_cvt_float_to_fp8), with or without satfinite.
struct intrinsic_spec {
  intrinsic kind = intrinsic::f16;
  rounding round = rounding::rne;
  bool satfinite = true;  ///< fp8 only: __NV_SATFINITE, else __NV_NOSAT
};

/// The format an intrinsic produces.
format_id format_of(intrinsic k);
/// Whether NVIDIA provides this intrinsic.
bool supported(const intrinsic_spec& s);
/// The emulator policy that reproduces it: profile_policy(profile::cuda, f) with the spec's
/// rounding and, for fp8, saturation.
policy emulator_policy(const intrinsic_spec& s);
/// "f16.rz", "e4m3.satfinite", ...
const char* name(const intrinsic_spec& s);

/// Number of CUDA devices; 0 when there is none or no usable driver.
int device_count();

/// Buckets of the histogram table (bucket_histogram::bucket_count).
inline constexpr std::size_t histogram_buckets = 65536;

/// out[i] = intrinsic(fl32(in[i] * scale)); out holds 2-byte (fp16/bf16) or 1-byte (fp8) words.
/// On devices below sm_89 the fp8 conversions run the emulator's element code instead.
void convert_intrinsic(const float* in, void* out, std::size_t n, float scale, const intrinsic_spec& s,
                       void* stream = nullptr);
/// out[i] = the emulator's round_pack of fl32(in[i] * scale) into f under p, stochastic
/// rounding index first_index + i; out holds f.storage_bytes()-wide words.
void convert_generic(const float* in, void* out, std::size_t n, float scale, const format& f, const policy& p,
                     std::uint64_t first_index = 0, void* stream = nullptr);
/// Adds the bucket counts of in[0..n) into table[histogram_buckets] (not cleared first).
void bucket_histogram(const float* in, std::size_t n, unsigned long long* table, void* stream = nullptr);
/// torch._amp_foreach_non_finite_check_and_unscale_: every element of every tensor is
/// multiplied by *inv_scale in place (left as is when *inv_scale == 1), and *found_inf is set
/// to 1.0f if any element is inf or NaN. tensors and sizes are host arrays of count entries
/// (the tensors themselves in device memory); found_inf and inv_scale point to device memory.
void non_finite_check_and_unscale(float* const* tensors, const std::size_t* sizes, int count, float* found_inf,
                                  const float* inv_scale, void* stream = nullptr);

/// The same element code compiled for and run on the host (host memory, serial): what the
/// device functions compute, for checking them where no GPU is present.
namespace host {
void convert_intrinsic(const float* in, void* out, std::size_t n, float scale, const intrinsic_spec& s);
void convert_generic(const float* in, void* out, std::size_t n, float scale, const format& f, const policy& p,
                     std::uint64_t first_index = 0);
void bucket_histogram(const float* in, std::size_t n, unsigned long long* table);
void non_finite_check_and_unscale(float* const* tensors, const std::size_t* sizes, int count, float* found_inf,
                                  const float* inv_scale);
}  // namespace host

}  // namespace fpscope::cuda
