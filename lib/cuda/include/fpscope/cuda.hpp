// fpscope::cuda: bulk conversions, the bucket histogram and the AMP non-finite check on an
// NVIDIA GPU, plus the same element code run on the host (namespace host) for checking it
// without a GPU. C++17; no CUDA header needed: streams are passed as void* (cudaStream_t).
// Device functions take device pointers and throw std::runtime_error on a CUDA error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

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

/// What cudaGetDeviceCount says about this machine, told apart: a driver too old for the
/// runtime linked in (cudaErrorInsufficientDriver with a driver present) is not "no device".
struct device_probe {
  enum class state : std::uint8_t {
    ok,              ///< count >= 1
    no_device,       ///< a driver but no device (cudaErrorNoDevice, or a count of 0)
    no_driver,       ///< no CUDA driver at all (cudaErrorInsufficientDriver, driver version 0)
    driver_too_old,  ///< a driver older than the runtime needs (cudaErrorInsufficientDriver)
    unusable,        ///< any other error (devices busy or unavailable, system not ready, ...)
  };
  state what = state::no_device;
  int count = 0;
  int error = 0;             ///< the cudaError_t of cudaGetDeviceCount (0: success)
  std::string error_text;    ///< "cudaErrorX: cudaGetErrorString" of it (empty on success)
  int driver_version = 0;    ///< cudaDriverGetVersion (1000 * major + 10 * minor; 0: none)
  int runtime_version = 0;   ///< cudaRuntimeGetVersion of the runtime linked in
};
/// The classification alone, for tests: `error` is cudaGetDeviceCount's cudaError_t.
device_probe::state classify_probe(int error, int count, int driver_version);
/// Calls cudaGetDeviceCount, cudaDriverGetVersion and cudaRuntimeGetVersion.
device_probe probe_devices();
/// "ok", "no_device", "no_driver", "driver_too_old", "unusable".
const char* name(device_probe::state s);
/// Number of CUDA devices; 0 when there is none or no usable driver (probe_devices tells why).
int device_count();

/// Buckets of the histogram table (bucket_histogram::bucket_count).
inline constexpr std::size_t histogram_buckets = 65536;

/// out[i] = intrinsic(fl32(in[i] * scale)) (the scale step: host::scale_input); out holds 2-byte (fp16/bf16) or 1-byte (fp8) words.
/// On devices below sm_89 the fp8 conversions run the emulator's element code instead.
void convert_intrinsic(const float* in, void* out, std::size_t n, float scale, const intrinsic_spec& s,
                       void* stream = nullptr);
/// out[i] = the emulator's round_pack of fl32(in[i] * scale) into f under p, stochastic
/// rounding index first_index + i; out holds f.storage_bytes()-wide words.
void convert_generic(const float* in, void* out, std::size_t n, float scale, const format& f, const policy& p,
                     std::uint64_t first_index = 0, void* stream = nullptr);
/// Adds the bucket counts of in[0..n) into table[histogram_buckets] (not cleared first).
/// n large enough on a device with 128 KiB of opt-in shared memory per block (sm_80, sm_90):
/// per-block 16-bit sub-histograms in shared memory (histogram_uses_shared); else global
/// 64-bit atomics.
bool histogram_uses_shared(std::size_t n);
void bucket_histogram(const float* in, std::size_t n, unsigned long long* table, void* stream = nullptr);
/// torch._amp_foreach_non_finite_check_and_unscale_: every element of every tensor is
/// multiplied by *inv_scale in place (left as is when *inv_scale == 1), and *found_inf is set
/// to 1.0f if any element is inf or NaN. tensors and sizes are host arrays of count entries
/// (the tensors themselves in device memory); found_inf and inv_scale point to device memory.
void non_finite_check_and_unscale(float* const* tensors, const std::size_t* sizes, int count, float* found_inf,
                                  const float* inv_scale, void* stream = nullptr);

/// A tensor-core instruction run on the GPU itself (lib/cuda/mma.cu), for checking the models of
/// fpscope::mma against the hardware. Named as fpscope::mma names it ("m16n8k16.f32.f16.f16.f32",
/// "m64n8k16.f32.f16.f16": wgmma with N = 8).
struct mma_device_instruction {
  const char* name;
  int m, n, k;
  int min_sm;           ///< 80: mma.sync; 90: wgmma
  bool arch_specific;   ///< sm_90a code (wgmma): runs on compute capability 9.0 only
};
/// The instructions mma_tiles runs: mma.sync f16/bf16/tf32 (sm_80 and up), wgmma f16/bf16/tf32/
/// e4m3/e5m2 with f32 and f16 accumulators (sm_90a).
const std::vector<mma_device_instruction>& mma_device_instructions();
/// Runs `tiles` independent instructions `name` on the current device: tile i reads A + i*m*k
/// (m x k, row-major), B + i*k*n (k x n), C + i*m*n and writes D + i*m*n (m x n), device
/// pointers. Every element is a register word in a uint32: the code of the input type (16 bits
/// for f16/bf16, 8 for e4m3/e5m2, the float32 bits for tf32), C and D float32 bits or binary16
/// codes for f16 accumulators. Throws std::invalid_argument for an unknown name or an instruction
/// the device lacks, std::runtime_error on a CUDA error.
void mma_tiles(const std::string& name, std::size_t tiles, const std::uint32_t* A, const std::uint32_t* B,
               const std::uint32_t* C, std::uint32_t* D, void* stream = nullptr);

/// The same element code compiled for and run on the host (host memory, serial): what the
/// device functions compute, for checking them where no GPU is present.
namespace host {
void convert_intrinsic(const float* in, void* out, std::size_t n, float scale, const intrinsic_spec& s);
void convert_generic(const float* in, void* out, std::size_t n, float scale, const format& f, const policy& p,
                     std::uint64_t first_index = 0);
void bucket_histogram(const float* in, std::size_t n, unsigned long long* table);
void non_finite_check_and_unscale(float* const* tensors, const std::size_t* sizes, int count, float* found_inf,
                                  const float* inv_scale);
/// The conversions' scale step, fl32(x * scale), as the kernels compute it (the same functor):
/// x itself at scale 1, a NaN quieted with its sign and payload kept (as x86 MULSS does, which
/// the CPU emulator uses), else the IEEE product rounded to nearest.
float scale_input(float x, float scale);
}  // namespace host

}  // namespace fpscope::cuda
