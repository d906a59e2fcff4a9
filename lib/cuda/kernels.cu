// The kernels of fpscope::cuda and their host twins. Every element operation is a
// __host__ __device__ functor, so the host functions (namespace host) run exactly the code the
// kernels run; only the thread decomposition differs. C++17.
#include "fpscope/cuda.hpp"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "fpscope/detail/bucket_key.hpp"
#include "fpscope/detail/round_pack.hpp"

namespace fpscope::cuda {
namespace {

using packer32 = detail::packer<std::uint32_t>;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("fpscope::cuda: ") + what + ": " + cudaGetErrorString(e));
}
cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

// ---- element operations ------------------------------------------------------------------

/// The emulator's own element code (also the fp8 fallback below sm_89).
struct generic_op {
  format f;
  rounding rm;
  packer32 k;
  std::uint64_t first;
  FPSCOPE_HD std::uint32_t operator()(float y, std::size_t i) const {
    return detail::round_pack<float>(detail::to_bits(y), f, rm, k, first + i);
  }
};

struct f16_op {
  rounding rm;
  FPSCOPE_HD std::uint16_t operator()(float y, std::size_t) const {
    __half h;
    switch (rm) {
      case rounding::rtz: h = __float2half_rz(y); break;
      case rounding::rdn: h = __float2half_rd(y); break;
      case rounding::rup: h = __float2half_ru(y); break;
      default: h = __float2half_rn(y); break;
    }
    return __half_raw(h).x;
  }
};

struct bf16_op {
  rounding rm;
  FPSCOPE_HD std::uint16_t operator()(float y, std::size_t) const {
    __nv_bfloat16 h;
    switch (rm) {
      case rounding::rtz: h = __float2bfloat16_rz(y); break;
      case rounding::rdn: h = __float2bfloat16_rd(y); break;
      case rounding::rup: h = __float2bfloat16_ru(y); break;
      default: h = __float2bfloat16_rn(y); break;
    }
    return __nv_bfloat16_raw(h).x;
  }
};

struct fp8_op {
  __nv_saturation_t sat;
  __nv_fp8_interpretation_t fmt;
  generic_op fallback;  // the same conversion by the emulator's element code
  FPSCOPE_HD std::uint8_t operator()(float y, std::size_t i) const {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 890
    // No cvt.*.e4m3x2/e5m2x2 below sm_89: the emulator's element code, proven equal on the
    // host (fpscope-gpucheck) to the header's own software path.
    return std::uint8_t(fallback(y, i));
#else
    (void)i;
    return std::uint8_t(__nv_cvt_float_to_fp8(y, sat, fmt));
#endif
  }
};

/// The scale step fl32(x * S) exactly as the CPU emulator computes it (lib/src/convert.cpp,
/// encode_run: no multiply at all when S == 1, else `in[i] * scale` on x86). A GPU multiply
/// does not pass NaN payloads on: NVIDIA GPUs return the canonical NaN 0x7FFFFFFF for any
/// NaN operand (issue 22; the device `scale` rows see it). So a NaN is passed on here the way
/// x86 MULSS does (Intel SDM vol. 1, 4.8.3.5 and table 4-7: an SNaN operand is quieted, a QNaN
/// returned as is; sign and payload kept). The multiply itself is __fmul_rn: never an FMA.
struct scale_op {
  float scale;
  FPSCOPE_HD float operator()(float x) const {
    if (scale == 1.0f) return x;
    const std::uint32_t b = detail::to_bits(x);
    if ((b & 0x7FFFFFFFu) > 0x7F800000u) return detail::from_bits<float>(b | 0x00400000u);
#ifdef __CUDA_ARCH__
    return __fmul_rn(x, scale);
#else
    return x * scale;
#endif
  }
};

// ---- kernels -------------------------------------------------------------------------------

template <class Out, class Op>
__global__ void convert_kernel(const float* __restrict__ in, Out* __restrict__ out, std::size_t n, float scale,
                               Op op) {
  const scale_op s{scale};
  const std::size_t stride = std::size_t(gridDim.x) * blockDim.x;
  for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = static_cast<Out>(op(s(in[i]), i));
}

template <class Out, class Op>
void convert_host(const float* in, Out* out, std::size_t n, float scale, const Op& op) {
  const scale_op s{scale};
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<Out>(op(s(in[i]), i));
}

constexpr int block_threads = 256;

int grid_for(std::size_t n) {
  int dev = 0, sms = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "cudaDeviceGetAttribute");
  const std::size_t want = (n + block_threads - 1) / block_threads;
  const std::size_t cap = std::size_t(sms) * 16;  // grid-stride beyond this
  return int(want < cap ? (want ? want : 1) : cap);
}

template <class Out, class Op>
void convert_device(const float* in, void* out, std::size_t n, float scale, const Op& op, void* stream) {
  if (n == 0) return;
  convert_kernel<Out><<<grid_for(n), block_threads, 0, as_stream(stream)>>>(in, static_cast<Out*>(out), n, scale, op);
  check(cudaGetLastError(), "convert kernel launch");
}

generic_op make_generic(const format& f, const policy& p, std::uint64_t first) {
  return {f, p.round, detail::prepare<std::uint32_t>(f, p, p.round), first};
}

fp8_op make_fp8(const intrinsic_spec& s) {
  const format f = builtin(format_of(s.kind));
  return {s.satfinite ? __NV_SATFINITE : __NV_NOSAT, s.kind == intrinsic::e5m2 ? __NV_E5M2 : __NV_E4M3,
          make_generic(f, emulator_policy(s), 0)};
}

void require(const intrinsic_spec& s) {
  if (!supported(s)) throw std::invalid_argument(std::string("fpscope::cuda: no such intrinsic: ") + name(s));
}

// Dispatches on the output word of a format.
template <class Fn>
void by_width(const format& f, Fn&& fn) {
  switch (f.storage_bytes()) {
    case 1: fn(std::uint8_t{}); break;
    case 2: fn(std::uint16_t{}); break;
    default: fn(std::uint32_t{}); break;
  }
}

// Histogram: with 16-bit counters packed two to a word, the whole 65536-bucket table is
// 128 KiB of shared memory (sm_80 and sm_90 allow it per block, sm_89 does not). A block
// counts at most 65535 elements per round so that no half-word carries, then adds its
// non-zero counts to the global table.
constexpr std::size_t shared_words = histogram_buckets / 2;
constexpr std::size_t shared_bytes = shared_words * 4;
constexpr std::size_t round_elems = 65535;

__global__ void histogram_global_kernel(const float* __restrict__ in, std::size_t n, unsigned long long* table) {
  const std::size_t stride = std::size_t(gridDim.x) * blockDim.x;
  for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    atomicAdd(table + detail::bucket_key(__float_as_uint(in[i])), 1ull);
}

__global__ void histogram_shared_kernel(const float* __restrict__ in, std::size_t n, unsigned long long* table) {
  extern __shared__ unsigned int sub[];
  for (std::size_t base = std::size_t(blockIdx.x) * round_elems; base < n; base += std::size_t(gridDim.x) * round_elems) {
    for (std::size_t w = threadIdx.x; w < shared_words; w += blockDim.x) sub[w] = 0;
    __syncthreads();
    const std::size_t end = n - base < round_elems ? n : base + round_elems;
    for (std::size_t i = base + threadIdx.x; i < end; i += blockDim.x) {
      const std::uint32_t key = detail::bucket_key(__float_as_uint(in[i]));
      atomicAdd(sub + key / 2, 1u << (16 * (key & 1)));
    }
    __syncthreads();
    for (std::size_t w = threadIdx.x; w < shared_words; w += blockDim.x) {
      const unsigned int c = sub[w];
      if (c & 0xFFFFu) atomicAdd(table + 2 * w, (unsigned long long)(c & 0xFFFFu));
      if (c >> 16) atomicAdd(table + 2 * w + 1, (unsigned long long)(c >> 16));
    }
    __syncthreads();
  }
}

/// The AMP element step: whether y is non-finite, and the unscaled value.
struct unscale_op {
  float inv_scale;
  FPSCOPE_HD bool operator()(float& x) const {
    const bool bad = !isfinite(x);
    if (inv_scale != 1.0f) x *= inv_scale;
    return bad;
  }
};

struct tensor_ref {
  float* data;
  std::size_t n;
};

// grid.y walks the tensors, grid.x the elements of each.
__global__ void unscale_kernel(const tensor_ref* tensors, int count, float* found_inf, const float* inv_scale) {
  const unscale_op op{*inv_scale};
  bool bad = false;
  for (int t = blockIdx.y; t < count; t += gridDim.y) {
    const tensor_ref r = tensors[t];
    const std::size_t stride = std::size_t(gridDim.x) * blockDim.x;
    for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < r.n; i += stride) bad |= op(r.data[i]);
  }
  if (bad) *found_inf = 1.0f;  // benign race: every writer stores the same value
}

}  // namespace

// ---- API -----------------------------------------------------------------------------------

format_id format_of(intrinsic k) {
  switch (k) {
    case intrinsic::f16: return format_id::fp16;
    case intrinsic::bf16: return format_id::bf16;
    case intrinsic::e4m3: return format_id::e4m3;
    case intrinsic::e5m2: return format_id::e5m2;
  }
  return format_id::fp16;
}

bool supported(const intrinsic_spec& s) {
  if (s.kind == intrinsic::f16 || s.kind == intrinsic::bf16)
    return s.round == rounding::rne || s.round == rounding::rtz || s.round == rounding::rdn || s.round == rounding::rup;
  return s.round == rounding::rne;
}

policy emulator_policy(const intrinsic_spec& s) {
  const format f = builtin(format_of(s.kind));
  policy p = profile_policy(profile::cuda, f);
  p.round = s.round;
  if (s.kind == intrinsic::e4m3 || s.kind == intrinsic::e5m2)
    p.on_overflow = s.satfinite ? overflow::saturate : overflow::infinity;
  return p;
}

const char* name(const intrinsic_spec& s) {
  static const char* const halves[2][4] = {{"f16.rn", "f16.rz", "f16.rd", "f16.ru"},
                                           {"bf16.rn", "bf16.rz", "bf16.rd", "bf16.ru"}};
  switch (s.kind) {
    case intrinsic::f16:
    case intrinsic::bf16: {
      const int r = s.round == rounding::rtz ? 1 : s.round == rounding::rdn ? 2 : s.round == rounding::rup ? 3 : 0;
      return halves[s.kind == intrinsic::bf16][r];
    }
    case intrinsic::e4m3: return s.satfinite ? "e4m3.satfinite" : "e4m3.nosat";
    case intrinsic::e5m2: return s.satfinite ? "e5m2.satfinite" : "e5m2.nosat";
  }
  return "?";
}

device_probe::state classify_probe(int error, int count, int driver_version) {
  using st = device_probe::state;
  switch (error) {
    case cudaSuccess: return count > 0 ? st::ok : st::no_device;
    case cudaErrorNoDevice: return st::no_device;
    // cudart reports a missing libcuda.so as an insufficient driver; cudaDriverGetVersion
    // then gives 0 ("If no driver is installed, then 0 is returned", CUDA runtime API docs).
    case cudaErrorInsufficientDriver: return driver_version == 0 ? st::no_driver : st::driver_too_old;
    default: return st::unusable;
  }
}

device_probe probe_devices() {
  device_probe p;
  const cudaError_t e = cudaGetDeviceCount(&p.count);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // clear the error, sticky or not
    p.count = 0;
    p.error_text = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
  }
  p.error = int(e);
  (void)cudaDriverGetVersion(&p.driver_version);
  (void)cudaRuntimeGetVersion(&p.runtime_version);
  p.what = classify_probe(p.error, p.count, p.driver_version);
  return p;
}

const char* name(device_probe::state s) {
  switch (s) {
    case device_probe::state::ok: return "ok";
    case device_probe::state::no_device: return "no_device";
    case device_probe::state::no_driver: return "no_driver";
    case device_probe::state::driver_too_old: return "driver_too_old";
    case device_probe::state::unusable: return "unusable";
  }
  return "?";
}

int device_count() {
  const device_probe p = probe_devices();
  return p.what == device_probe::state::ok ? p.count : 0;
}

void convert_intrinsic(const float* in, void* out, std::size_t n, float scale, const intrinsic_spec& s, void* stream) {
  require(s);
  switch (s.kind) {
    case intrinsic::f16: convert_device<std::uint16_t>(in, out, n, scale, f16_op{s.round}, stream); break;
    case intrinsic::bf16: convert_device<std::uint16_t>(in, out, n, scale, bf16_op{s.round}, stream); break;
    default: convert_device<std::uint8_t>(in, out, n, scale, make_fp8(s), stream); break;
  }
}

void convert_generic(const float* in, void* out, std::size_t n, float scale, const format& f, const policy& p,
                     std::uint64_t first_index, void* stream) {
  const generic_op op = make_generic(f, p, first_index);
  by_width(f, [&](auto word) { convert_device<decltype(word)>(in, out, n, scale, op, stream); });
}

bool histogram_uses_shared(std::size_t n) {
  int dev = 0, optin = 0, sms = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), "cudaDeviceGetAttribute");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "cudaDeviceGetAttribute");
  // Below a few rounds per SM, clearing and flushing 32768 shared words costs more than it saves.
  return std::size_t(optin) >= shared_bytes && n >= std::size_t(sms) * round_elems * 2;
}

void bucket_histogram(const float* in, std::size_t n, unsigned long long* table, void* stream) {
  if (n == 0) return;
  if (histogram_uses_shared(n)) {
    int dev = 0, sms = 0;
    check(cudaGetDevice(&dev), "cudaGetDevice");
    check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "cudaDeviceGetAttribute");
    check(cudaFuncSetAttribute(histogram_shared_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared_bytes)),
          "cudaFuncSetAttribute");
    const std::size_t rounds = (n + round_elems - 1) / round_elems;
    const int grid = int(rounds < std::size_t(sms) ? rounds : std::size_t(sms));  // one 128 KiB block per SM
    histogram_shared_kernel<<<grid, 1024, shared_bytes, as_stream(stream)>>>(in, n, table);
  } else {
    histogram_global_kernel<<<grid_for(n), block_threads, 0, as_stream(stream)>>>(in, n, table);
  }
  check(cudaGetLastError(), "histogram kernel launch");
}

void non_finite_check_and_unscale(float* const* tensors, const std::size_t* sizes, int count, float* found_inf,
                                  const float* inv_scale, void* stream) {
  if (count <= 0) return;
  std::vector<tensor_ref> refs(static_cast<std::size_t>(count));
  std::size_t most = 0;
  for (int t = 0; t < count; ++t) {
    refs[std::size_t(t)] = {tensors[t], sizes[t]};
    most = sizes[t] > most ? sizes[t] : most;
  }
  if (most == 0) return;
  tensor_ref* d_refs = nullptr;
  const cudaStream_t s = as_stream(stream);
  check(cudaMallocAsync(reinterpret_cast<void**>(&d_refs), refs.size() * sizeof(tensor_ref), s), "cudaMallocAsync");
  check(cudaMemcpyAsync(d_refs, refs.data(), refs.size() * sizeof(tensor_ref), cudaMemcpyHostToDevice, s),
        "cudaMemcpyAsync");
  const dim3 grid(unsigned((most + block_threads - 1) / block_threads < 1024 ? (most + block_threads - 1) / block_threads : 1024),
                  unsigned(count < 65535 ? count : 65535));
  unscale_kernel<<<grid, block_threads, 0, s>>>(d_refs, count, found_inf, inv_scale);
  check(cudaGetLastError(), "unscale kernel launch");
  check(cudaFreeAsync(d_refs, s), "cudaFreeAsync");
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize");  // refs must outlive the copy
}

namespace host {

void convert_intrinsic(const float* in, void* out, std::size_t n, float scale, const intrinsic_spec& s) {
  require(s);
  switch (s.kind) {
    case intrinsic::f16: convert_host(in, static_cast<std::uint16_t*>(out), n, scale, f16_op{s.round}); break;
    case intrinsic::bf16: convert_host(in, static_cast<std::uint16_t*>(out), n, scale, bf16_op{s.round}); break;
    default: convert_host(in, static_cast<std::uint8_t*>(out), n, scale, make_fp8(s)); break;
  }
}

void convert_generic(const float* in, void* out, std::size_t n, float scale, const format& f, const policy& p,
                     std::uint64_t first_index) {
  const generic_op op = make_generic(f, p, first_index);
  by_width(f, [&](auto word) { convert_host(in, static_cast<decltype(word)*>(out), n, scale, op); });
}

void bucket_histogram(const float* in, std::size_t n, unsigned long long* table) {
  for (std::size_t i = 0; i < n; ++i) ++table[detail::bucket_key(detail::to_bits(in[i]))];
}

void non_finite_check_and_unscale(float* const* tensors, const std::size_t* sizes, int count, float* found_inf,
                                  const float* inv_scale) {
  const unscale_op op{*inv_scale};
  bool bad = false;
  for (int t = 0; t < count; ++t)
    for (std::size_t i = 0; i < sizes[t]; ++i) bad |= op(tensors[t][i]);
  if (bad) *found_inf = 1.0f;
}

float scale_input(float x, float scale) { return scale_op{scale}(x); }

}  // namespace host
}  // namespace fpscope::cuda
