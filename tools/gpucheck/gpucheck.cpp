// fpscope-gpucheck: the CUDA kernels of fpscope::cuda against the CPU emulator, bit for bit.
// Host side (always): the kernels' __host__ __device__ element code, compiled by nvcc and run
// on the CPU, against the emulator's bulk API and NVIDIA's own host implementations, on a
// strided subset of float32 plus every special and format boundary. Device side (with a GPU):
// all 2^32 float32 inputs through every conversion kernel, the histogram and unscale kernels.
#include <cuda_runtime_api.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "fpscope/convert.hpp"
#include "fpscope/cuda.hpp"
#include "fpscope/histogram.hpp"
#include "fpscope/npy.hpp"

namespace {

using fpscope::format;
using fpscope::policy;
using fpscope::rounding;
namespace fc = fpscope::cuda;
using json = nlohmann::json;

constexpr int exit_mismatch = 1, exit_usage = 2, exit_skip = 77;

struct options {
  bool host = true, device = true, as_json = false;
  std::uint32_t stride = 61;           // host: every stride-th float32 pattern, intrinsics
  std::uint32_t generic_stride = 241;  // host: the generic kernel under the cuda profile
  std::uint32_t small_stride = 4093;   // host: the generic kernel under every other policy
  std::string datasets = FPSCOPE_GPUCHECK_DATASETS;
};

const char* const usage = R"(fpscope-gpucheck: the CUDA kernels of fpscope::cuda against the CPU emulator, bit for bit.

Host side (no GPU needed): the kernels' __host__ __device__ element code run on the CPU, against
the emulator's bulk API (every format, rounding mode and profile) and against NVIDIA's host
implementations in cuda_fp16.h / cuda_bf16.h / cuda_fp8.h, on every STRIDE-th float32 pattern
plus every special value and format boundary; the histogram key and the unscale step on the
datasets. Device side (a GPU): all 2^32 float32 inputs through every conversion kernel, the
histogram kernel on the datasets and on all 2^32 patterns, and the unscale kernel.

Usage: fpscope-gpucheck [--host-only | --device-only] [--stride N] [--datasets DIR] [--json]

  --host-only     only the host side (exit 0 on a pass)
  --device-only   only the device side (exit 77 without a CUDA device)
  --stride N      host side: every N-th float32 pattern for every check (default: 61 for the
                  intrinsics, 241 for the generic kernel under the cuda profile, 4093 under the
                  other policies; always plus every special and format boundary; 1 is exhaustive
                  and needs about 40 GB of memory)
  --datasets DIR  .npy files for the histogram and unscale checks (default: the shipped lm-grads)
  --json          one JSON document on stdout instead of the report

Exit status: 0 all checks ran and passed, 1 a mismatch, 2 usage or I/O error,
77 the host side passed but the device side was SKIPPED (no CUDA device).

Examples:
  fpscope-gpucheck                      # both sides; on a GPU machine, the full proof
  fpscope-gpucheck --host-only          # CI without a GPU
  fpscope-gpucheck --device-only --json > gpucheck-h100.json
)";

struct mismatch {
  std::uint32_t input;
  std::uint32_t want, got;
};

/// One comparison: a name, what was compared, and the mismatches.
struct result {
  result(std::string s, std::string k, std::string n) : side(std::move(s)), kind(std::move(k)), name(std::move(n)) {}
  std::string side, kind, name;
  std::uint64_t count = 0, mismatches = 0;
  std::vector<mismatch> first;
  double seconds = 0, gbps = -1, copy_gbps = -1;
  std::string note;
};

struct report {
  options opt;
  std::vector<result> results;
  bool device_skipped = false;
  std::string device;
  void add(result r) {
    if (!opt.as_json) {
      std::printf("%-6s %-10s %-40s %12llu compared %8llu mismatches  %6.2f s", r.side.c_str(), r.kind.c_str(),
                  r.name.c_str(), (unsigned long long)r.count, (unsigned long long)r.mismatches, r.seconds);
      if (r.gbps >= 0) std::printf("  %.0f GB/s (copy %.0f GB/s)", r.gbps, r.copy_gbps);
      if (!r.note.empty()) std::printf("  [%s]", r.note.c_str());
      std::printf("\n");
      for (const auto& m : r.first)
        std::printf("         input 0x%08x (%a): want 0x%x got 0x%x\n", m.input, double(std::bit_cast<float>(m.input)),
                    m.want, m.got);
      std::fflush(stdout);
    }
    results.push_back(std::move(r));
  }
  std::uint64_t total_mismatches() const {
    std::uint64_t n = 0;
    for (const auto& r : results) n += r.mismatches;
    return n;
  }
};

fpscope::bulk_options scaled_by(float scale) {
  fpscope::bulk_options o;
  o.scale = scale;
  return o;
}
fpscope::bulk_options from_index(std::uint64_t first) {
  fpscope::bulk_options o;
  o.first_index = first;
  return o;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// ---- inputs --------------------------------------------------------------------------------

/// Every special float32 and, for every format but tf32 (2^19 codes), the neighbourhood of
/// every code and of every midpoint between neighbours, including the one above max finite
/// (the overflow threshold), both signs. tf32's boundaries are float32 patterns with 13 low
/// zero bits or 0x1000 below: the strided set hits them in proportion.
std::vector<std::uint32_t> boundary_inputs() {
  std::vector<std::uint32_t> v = {0x00000000, 0x00000001, 0x00000002, 0x00000003, 0x003FFFFF, 0x00400000,
                                  0x007FFFFE, 0x007FFFFF, 0x00800000, 0x00800001, 0x7F7FFFFE, 0x7F7FFFFF,
                                  0x7F800000, 0x7F800001, 0x7F800002, 0x7FBFFFFF, 0x7FC00000, 0x7FC00001,
                                  0x7FD55555, 0x7FFFFFFE, 0x7FFFFFFF, 0x3F800000, 0x3F7FFFFF, 0x3F800001};
  const auto near = [&v](double x) {
    const float f = float(x);
    if (double(f) != x || !std::isfinite(f)) return;  // not a float32 value: no exact boundary
    const std::uint32_t b = std::bit_cast<std::uint32_t>(f);
    for (int d = -1; d <= 1; ++d) {  // the boundary, just below and just above it
      const std::uint32_t c = b + std::uint32_t(d);
      if (c < 0x7F800000u || d <= 0) v.push_back(c);
    }
  };
  for (int id = 0; id < fpscope::builtin_count; ++id) {
    const format f = fpscope::builtin(fpscope::format_id(id));
    if (f.bits > 16) continue;
    const std::uint32_t top = f.max_finite_bits();
    for (std::uint32_t c = 0; c <= top; ++c) {
      const double x = fpscope::decode(c, f);
      double next;
      if (c < top) next = fpscope::decode(c + 1, f);
      else if (f.specials == fpscope::special::e8m0) next = 2 * x;
      else next = x + (x - fpscope::decode(c - 1, f));  // the quantum at max finite
      near(x);
      near((x + next) / 2);
    }
  }
  const std::size_t n = v.size();
  for (std::size_t i = 0; i < n; ++i) v.push_back(v[i] | 0x80000000u);
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

std::vector<float> inputs(std::uint32_t stride, const std::vector<std::uint32_t>& extra) {
  const std::uint64_t n = (std::uint64_t{1} << 32) / stride + 1;
  std::vector<float> x(n + extra.size());
#pragma omp parallel for
  for (std::int64_t i = 0; i < std::int64_t(n); ++i)
    x[std::size_t(i)] = std::bit_cast<float>(std::uint32_t(std::uint64_t(i) * stride));
  for (std::size_t i = 0; i < extra.size(); ++i) x[n + i] = std::bit_cast<float>(extra[i]);
  return x;
}

// ---- comparisons ---------------------------------------------------------------------------

template <class W>
void compare(std::span<const float> in, std::span<const W> want, std::span<const W> got, result& r) {
  r.count += in.size();
  std::uint64_t differ = 0;
#pragma omp parallel for reduction(+ : differ)
  for (std::int64_t i = 0; i < std::int64_t(in.size()); ++i) differ += want[std::size_t(i)] != got[std::size_t(i)];
  if (differ == 0) return;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (want[i] == got[i]) continue;
    ++r.mismatches;
    if (r.first.size() < 5) r.first.push_back({std::bit_cast<std::uint32_t>(in[i]), want[i], got[i]});
  }
}

/// Runs a host-side element function over `in` in parallel chunks (each its own index range).
template <class W, class Fn>
void chunked(std::span<const float> in, std::vector<W>& out, Fn fn) {
  constexpr std::size_t chunk = 1 << 16;
  const std::int64_t chunks = std::int64_t((in.size() + chunk - 1) / chunk);
#pragma omp parallel for schedule(dynamic, 16)
  for (std::int64_t c = 0; c < chunks; ++c) {
    const std::size_t lo = std::size_t(c) * chunk, n = std::min(chunk, in.size() - lo);
    fn(in.data() + lo, out.data() + lo, n, lo);
  }
}

template <class W>
void host_generic(std::span<const float> in, const format& f, const policy& p, float scale, report& rep,
                  const std::string& label) {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<W> want(in.size()), got(in.size());
  fpscope::encode(in, std::span<W>(want), f, p, scaled_by(scale));
  chunked(in, got, [&](const float* x, W* o, std::size_t n, std::size_t lo) {
    fc::host::convert_generic(x, o, n, scale, f, p, lo);
  });
  result r{"host", "generic", label};
  compare<W>(in, want, got, r);
  r.seconds = seconds_since(t0);
  rep.add(std::move(r));
}

void host_generic_any(std::span<const float> in, const format& f, const policy& p, float scale, report& rep,
                      const std::string& label) {
  switch (f.storage_bytes()) {
    case 1: host_generic<std::uint8_t>(in, f, p, scale, rep, label); break;
    case 2: host_generic<std::uint16_t>(in, f, p, scale, rep, label); break;
    default: host_generic<std::uint32_t>(in, f, p, scale, rep, label); break;
  }
}

std::vector<fc::intrinsic_spec> intrinsic_specs() {
  std::vector<fc::intrinsic_spec> s;
  for (auto k : {fc::intrinsic::f16, fc::intrinsic::bf16})
    for (auto r : {rounding::rne, rounding::rtz, rounding::rdn, rounding::rup}) s.push_back({k, r, true});
  for (auto k : {fc::intrinsic::e4m3, fc::intrinsic::e5m2})
    for (bool sat : {true, false}) s.push_back({k, rounding::rne, sat});
  return s;
}

template <class W>
void host_intrinsic(std::span<const float> in, const fc::intrinsic_spec& s, float scale, report& rep) {
  const auto t0 = std::chrono::steady_clock::now();
  const format f = fpscope::builtin(fc::format_of(s.kind));
  std::vector<W> want(in.size()), got(in.size());
  fpscope::encode(in, std::span<W>(want), f, fc::emulator_policy(s), scaled_by(scale));
  chunked(in, got, [&](const float* x, W* o, std::size_t n, std::size_t) { fc::host::convert_intrinsic(x, o, n, scale, s); });
  result r{"host", "intrinsic", std::string(fc::name(s)) + (scale != 1.0f ? " scale " + std::to_string(scale) : "")};
  r.note = "NVIDIA header host code vs emulator (cuda profile)";
  compare<W>(in, want, got, r);
  r.seconds = seconds_since(t0);
  rep.add(std::move(r));
}

std::vector<std::pair<std::string, std::vector<float>>> load_datasets(const std::string& dir) {
  std::vector<std::pair<std::string, std::vector<float>>> out;
  if (!std::filesystem::is_directory(dir)) return out;
  std::vector<std::string> paths;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".npy") paths.push_back(e.path().string());
  std::sort(paths.begin(), paths.end());
  for (const auto& p : paths) {
    fpscope::npy_reader r(p);
    if (r.dtype() != fpscope::npy_dtype::f4) continue;
    const auto v = r.values<float>();
    out.emplace_back(std::filesystem::path(p).filename().string(), std::vector<float>(v.begin(), v.end()));
  }
  return out;
}

result histogram_result(const std::string& side, const std::string& name, std::span<const float> x,
                        const std::vector<unsigned long long>& table) {
  fpscope::bucket_histogram h;
  h.add(x);
  result r{side, "histogram", name};
  r.count = x.size();
  for (std::uint32_t k = 0; k < fc::histogram_buckets; ++k) {
    if (h[k] == table[k]) continue;
    ++r.mismatches;
    if (r.first.size() < 5) r.first.push_back({k, std::uint32_t(h[k]), std::uint32_t(table[k])});
  }
  r.note = "mismatches are buckets; first: key, want count, got count";
  return r;
}

/// The unscale step's reference: plain C++ on the CPU (torch's definition).
void unscale_reference(std::vector<float>& x, float inv_scale, bool& found) {
  for (float& v : x) {
    if (!std::isfinite(v)) found = true;
    if (inv_scale != 1.0f) v *= inv_scale;
  }
}

/// Tensors for the unscale check: the datasets split in three, plus one with a NaN and one with an inf.
std::vector<std::vector<float>> unscale_tensors(const std::vector<std::pair<std::string, std::vector<float>>>& data,
                                                bool poison) {
  std::vector<std::vector<float>> t;
  for (const auto& [n, v] : data) {
    const std::size_t third = v.size() / 3;
    t.emplace_back(v.begin(), v.begin() + std::ptrdiff_t(third));
    t.emplace_back(v.begin() + std::ptrdiff_t(third), v.end());
  }
  t.push_back({1.0f, -2.5f, 1e-40f, 3e38f});
  if (poison) {
    t.back().push_back(std::numeric_limits<float>::infinity());
    t.push_back({0.5f, std::numeric_limits<float>::quiet_NaN(), -0.0f});
  }
  return t;
}

result compare_unscale(const std::string& side, const std::string& name, const std::vector<std::vector<float>>& want,
                       bool want_found, const std::vector<std::vector<float>>& got, bool got_found) {
  result r{side, "unscale", name};
  for (std::size_t t = 0; t < want.size(); ++t) {
    r.count += want[t].size();
    for (std::size_t i = 0; i < want[t].size(); ++i) {
      const auto a = std::bit_cast<std::uint32_t>(want[t][i]), b = std::bit_cast<std::uint32_t>(got[t][i]);
      if (a == b || (std::isnan(want[t][i]) && std::isnan(got[t][i]))) continue;  // NaN bits: the hardware's
      ++r.mismatches;
      if (r.first.size() < 5) r.first.push_back({std::uint32_t(i), a, b});
    }
  }
  if (want_found != got_found) {
    ++r.mismatches;
    r.note = "found_inf differs";
  }
  return r;
}

// ---- host side -------------------------------------------------------------------------------

void run_host(report& rep, const std::vector<std::pair<std::string, std::vector<float>>>& data) {
  const auto extra = boundary_inputs();
  const std::vector<float> wide = inputs(rep.opt.stride, extra);
  const std::vector<float> mid = inputs(rep.opt.generic_stride, extra);
  const std::vector<float> narrow = inputs(rep.opt.small_stride, extra);
  if (!rep.opt.as_json)
    std::printf("host side: %zu boundary inputs plus every %u-th float32 (%zu inputs) for the intrinsics, every "
                "%u-th (%zu) for the generic kernel under the cuda profile, every %u-th (%zu) for other policies\n",
                extra.size(), rep.opt.stride, wide.size(), rep.opt.generic_stride, mid.size(), rep.opt.small_stride,
                narrow.size());

  // NVIDIA's host implementations, through the kernels' own functors.
  for (const auto& s : intrinsic_specs()) {
    if (s.kind == fc::intrinsic::f16 || s.kind == fc::intrinsic::bf16) host_intrinsic<std::uint16_t>(wide, s, 1.0f, rep);
    else host_intrinsic<std::uint8_t>(wide, s, 1.0f, rep);
  }
  for (const auto& s : intrinsic_specs()) {
    if (s.round != rounding::rne) continue;
    if (s.kind == fc::intrinsic::f16 || s.kind == fc::intrinsic::bf16) host_intrinsic<std::uint16_t>(narrow, s, 1024.0f, rep);
    else host_intrinsic<std::uint8_t>(narrow, s, 0.375f, rep);
  }

  // The generic element code (nvcc's host pass) vs the emulator's bulk API (the CPU build):
  // the cuda profile on the middle set, every profile and the policy switches on the narrow one.
  const rounding modes[] = {rounding::rne, rounding::rtz, rounding::rup, rounding::rdn,
                            rounding::rna, rounding::rto, rounding::sr};
  for (int id = 0; id < fpscope::builtin_count; ++id) {
    const format f = fpscope::builtin(fpscope::format_id(id));
    for (rounding rm : modes) {
      policy p = fpscope::profile_policy(fpscope::profile::cuda, f);
      p.round = rm;
      p.seed = 0x5EEDull;
      host_generic_any(mid, f, p, 1.0f, rep, std::string(f.name) + " cuda " + std::string(fpscope::name(rm)));
    }
  }
  for (int id = 0; id < fpscope::builtin_count; ++id) {
    const format f = fpscope::builtin(fpscope::format_id(id));
    for (auto pr : {fpscope::profile::ieee, fpscope::profile::avx512bf16, fpscope::profile::ml_dtypes})
      for (rounding rm : modes) {
        policy p = fpscope::profile_policy(pr, f);
        p.round = rm;
        p.seed = 7;
        host_generic_any(narrow, f, p, 1.0f, rep,
                         std::string(f.name) + " " + std::string(fpscope::name(pr)) + " " + std::string(fpscope::name(rm)));
      }
    for (int variant = 0; variant < 4; ++variant) {
      policy p = fpscope::profile_policy(fpscope::profile::ieee, f);
      std::string label = std::string(f.name) + " ieee ";
      float scale = 1.0f;
      switch (variant) {
        case 0: p.on_overflow = fpscope::overflow::saturate; p.saturate_inf = false; label += "saturate, inf kept"; break;
        case 1: p.daz = p.ftz = true; p.round = rounding::rup; label += "daz ftz rup"; break;
        case 2: p.on_overflow = fpscope::overflow::saturate; scale = 0x1p-10f; label += "saturate scale 2^-10"; break;
        default: p.round = rounding::sr; p.seed = 99; scale = 3.0f; label += "sr scale 3"; break;
      }
      host_generic_any(narrow, f, p, scale, rep, label);
    }
  }

  // The bucket key (the C++17 path nvcc's host pass takes) vs the CPU bucket_histogram.
  for (const auto& [name, x] : data) {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<unsigned long long> table(fc::histogram_buckets);
    fc::host::bucket_histogram(x.data(), x.size(), table.data());
    result r = histogram_result("host", name, x, table);
    r.seconds = seconds_since(t0);
    rep.add(std::move(r));
  }
  {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<unsigned long long> table(fc::histogram_buckets);
    fc::host::bucket_histogram(wide.data(), wide.size(), table.data());
    result r = histogram_result("host", "adversarial (the wide input set)", wide, table);
    r.seconds = seconds_since(t0);
    rep.add(std::move(r));
  }

  // The unscale step vs torch's definition, with and without non-finite elements.
  for (bool poison : {false, true})
    for (float inv : {1.0f, 0x1p-16f, 0.3f}) {
      auto want = unscale_tensors(data, poison), got = want;
      bool want_found = false;
      for (auto& t : want) unscale_reference(t, inv, want_found);
      float found = 0.0f;
      std::vector<float*> ptrs;
      std::vector<std::size_t> sizes;
      for (auto& t : got) {
        ptrs.push_back(t.data());
        sizes.push_back(t.size());
      }
      fc::host::non_finite_check_and_unscale(ptrs.data(), sizes.data(), int(got.size()), &found, &inv);
      rep.add(compare_unscale("host", std::string(poison ? "with inf/NaN" : "finite") + " inv_scale " + std::to_string(inv),
                              want, want_found, got, found == 1.0f));
    }
}

// ---- device side ---------------------------------------------------------------------------

void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

/// Device buffers for one chunk of the exhaustive sweep.
struct device_buffers {
  float* in = nullptr;
  void* out = nullptr;
  void* copy = nullptr;
  std::size_t n;
  explicit device_buffers(std::size_t count) : n(count) {
    cuda_check(cudaMalloc(reinterpret_cast<void**>(&in), n * 4), "cudaMalloc");
    cuda_check(cudaMalloc(&out, n * 4), "cudaMalloc");
    cuda_check(cudaMalloc(&copy, n * 4), "cudaMalloc");
  }
  ~device_buffers() {
    cudaFree(in);
    cudaFree(out);
    cudaFree(copy);
  }
};

/// Milliseconds of fn() on the GPU, by events.
template <class Fn>
float gpu_ms(Fn fn) {
  cudaEvent_t a, b;
  cuda_check(cudaEventCreate(&a), "cudaEventCreate");
  cuda_check(cudaEventCreate(&b), "cudaEventCreate");
  cuda_check(cudaEventRecord(a), "cudaEventRecord");
  fn();
  cuda_check(cudaEventRecord(b), "cudaEventRecord");
  cuda_check(cudaEventSynchronize(b), "cudaEventSynchronize");
  float ms = 0;
  cuda_check(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms;
}

/// All 2^32 inputs through `launch` (device) and `emulate` (CPU), compared; GB/s of the kernel
/// (bytes read + written) against a device-to-device copy of as many bytes, on the first chunk.
template <class W, class Launch, class Emulate>
result sweep(const std::string& kind, const std::string& name, device_buffers& buf, Launch launch, Emulate emulate) {
  const auto t0 = std::chrono::steady_clock::now();
  result r{"device", kind, name};
  std::vector<float> x(buf.n);
  std::vector<W> want(buf.n), got(buf.n);
  for (std::uint64_t base = 0; base < (std::uint64_t{1} << 32); base += buf.n) {
#pragma omp parallel for
    for (std::int64_t i = 0; i < std::int64_t(buf.n); ++i) x[std::size_t(i)] = std::bit_cast<float>(std::uint32_t(base + std::uint64_t(i)));
    cuda_check(cudaMemcpy(buf.in, x.data(), buf.n * 4, cudaMemcpyHostToDevice), "cudaMemcpy");
    launch(buf.in, buf.out, buf.n, base);
    cuda_check(cudaGetLastError(), "kernel");
    if (base == 0) {
      const std::size_t bytes = buf.n * (4 + sizeof(W));
      const float k = gpu_ms([&] { launch(buf.in, buf.out, buf.n, base); });
      const float c = gpu_ms([&] { cuda_check(cudaMemcpyAsync(buf.copy, buf.in, bytes / 2, cudaMemcpyDeviceToDevice), "copy"); });
      r.gbps = double(bytes) / (k * 1e6);
      r.copy_gbps = double(bytes) / (c * 1e6);  // a copy reads and writes bytes / 2 each
    }
    cuda_check(cudaMemcpy(got.data(), buf.out, buf.n * sizeof(W), cudaMemcpyDeviceToHost), "cudaMemcpy");
    emulate(std::span<const float>(x), std::span<W>(want), base);
    compare<W>(x, want, got, r);
  }
  r.seconds = seconds_since(t0);
  return r;
}

void run_device(report& rep, const std::vector<std::pair<std::string, std::vector<float>>>& data) {
  int dev = 0;
  cudaDeviceProp prop{};
  cuda_check(cudaGetDevice(&dev), "cudaGetDevice");
  cuda_check(cudaGetDeviceProperties(&prop, dev), "cudaGetDeviceProperties");
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  rep.device = std::string(prop.name) + ", sm_" + std::to_string(prop.major * 10 + prop.minor) + ", driver " +
               std::to_string(driver) + ", runtime " + std::to_string(runtime);
  if (!rep.opt.as_json) std::printf("device side: %s\n", rep.device.c_str());
  const bool fp8_native = prop.major * 10 + prop.minor >= 89;
  device_buffers buf(std::size_t{1} << 28);

  for (const auto& s : intrinsic_specs()) {
    const format f = fpscope::builtin(fc::format_of(s.kind));
    const policy p = fc::emulator_policy(s);
    auto launch = [&](const float* in, void* out, std::size_t n, std::uint64_t) { fc::convert_intrinsic(in, out, n, 1.0f, s); };
    auto emulate = [&](std::span<const float> x, auto want, std::uint64_t) { fpscope::encode(x, want, f, p); };
    result r = f.bits == 16 ? sweep<std::uint16_t>("intrinsic", fc::name(s), buf, launch, emulate)
                            : sweep<std::uint8_t>("intrinsic", fc::name(s), buf, launch, emulate);
    if (f.bits == 8 && !fp8_native) r.note = "below sm_89: the emulator's element code, not cvt";
    rep.add(std::move(r));
  }
  const rounding modes[] = {rounding::rne, rounding::rtz, rounding::rup, rounding::rdn,
                            rounding::rna, rounding::rto, rounding::sr};
  for (int id = 0; id < fpscope::builtin_count; ++id) {
    const format f = fpscope::builtin(fpscope::format_id(id));
    for (rounding rm : modes) {
      policy p = fpscope::profile_policy(fpscope::profile::cuda, f);
      p.round = rm;
      p.seed = 0x5EEDull;
      auto launch = [&](const float* in, void* out, std::size_t n, std::uint64_t base) {
        fc::convert_generic(in, out, n, 1.0f, f, p, base);
      };
      auto emulate = [&](std::span<const float> x, auto want, std::uint64_t base) {
        fpscope::encode(x, want, f, p, from_index(base));
      };
      const std::string label = std::string(f.name) + " cuda " + std::string(fpscope::name(rm));
      switch (f.storage_bytes()) {
        case 1: rep.add(sweep<std::uint8_t>("generic", label, buf, launch, emulate)); break;
        case 2: rep.add(sweep<std::uint16_t>("generic", label, buf, launch, emulate)); break;
        default: rep.add(sweep<std::uint32_t>("generic", label, buf, launch, emulate)); break;
      }
    }
  }

  unsigned long long* table = nullptr;
  cuda_check(cudaMalloc(reinterpret_cast<void**>(&table), fc::histogram_buckets * 8), "cudaMalloc");
  std::vector<unsigned long long> host_table(fc::histogram_buckets);
  auto device_hist = [&](std::span<const float> x) {
    cuda_check(cudaMemset(table, 0, fc::histogram_buckets * 8), "cudaMemset");
    for (std::size_t lo = 0; lo < x.size(); lo += buf.n) {
      const std::size_t n = std::min(buf.n, x.size() - lo);
      cuda_check(cudaMemcpy(buf.in, x.data() + lo, n * 4, cudaMemcpyHostToDevice), "cudaMemcpy");
      fc::bucket_histogram(buf.in, n, table);
    }
    cuda_check(cudaMemcpy(host_table.data(), table, fc::histogram_buckets * 8, cudaMemcpyDeviceToHost), "cudaMemcpy");
  };
  for (const auto& [name, x] : data) {
    device_hist(x);
    rep.add(histogram_result("device", name, x, host_table));
  }
  {
    // Adversarial: every float32 pattern once (NaNs, infs, subnormals, one hot bucket per chunk
    // of equal exponents), large enough for the shared-memory kernel.
    std::vector<float> x(buf.n);
    std::vector<unsigned long long> sum(fc::histogram_buckets);
    cuda_check(cudaMemset(table, 0, fc::histogram_buckets * 8), "cudaMemset");
    fpscope::bucket_histogram h;
    for (std::uint64_t base = 0; base < (std::uint64_t{1} << 32); base += buf.n) {
#pragma omp parallel for
      for (std::int64_t i = 0; i < std::int64_t(buf.n); ++i) x[std::size_t(i)] = std::bit_cast<float>(std::uint32_t(base + std::uint64_t(i)));
      cuda_check(cudaMemcpy(buf.in, x.data(), buf.n * 4, cudaMemcpyHostToDevice), "cudaMemcpy");
      fc::bucket_histogram(buf.in, buf.n, table);
      h.add(x);
    }
    cuda_check(cudaMemcpy(host_table.data(), table, fc::histogram_buckets * 8, cudaMemcpyDeviceToHost), "cudaMemcpy");
    result r{"device", "histogram", "all 2^32 float32 patterns"};
    r.count = std::uint64_t{1} << 32;
    for (std::uint32_t k = 0; k < fc::histogram_buckets; ++k)
      if (h[k] != host_table[k]) {
        ++r.mismatches;
        if (r.first.size() < 5) r.first.push_back({k, std::uint32_t(h[k]), std::uint32_t(host_table[k])});
      }
    rep.add(std::move(r));
  }
  cudaFree(table);

  for (bool poison : {false, true})
    for (float inv : {1.0f, 0x1p-16f, 0.3f}) {
      auto want = unscale_tensors(data, poison), got = want;
      bool want_found = false;
      for (auto& t : want) unscale_reference(t, inv, want_found);
      std::vector<float*> dptr;
      std::vector<std::size_t> sizes;
      for (auto& t : got) {
        float* d = nullptr;
        cuda_check(cudaMalloc(reinterpret_cast<void**>(&d), std::max<std::size_t>(t.size(), 1) * 4), "cudaMalloc");
        cuda_check(cudaMemcpy(d, t.data(), t.size() * 4, cudaMemcpyHostToDevice), "cudaMemcpy");
        dptr.push_back(d);
        sizes.push_back(t.size());
      }
      float* d_scalars = nullptr;  // [0] found_inf, [1] inv_scale
      const float init[2] = {0.0f, inv};
      cuda_check(cudaMalloc(reinterpret_cast<void**>(&d_scalars), 8), "cudaMalloc");
      cuda_check(cudaMemcpy(d_scalars, init, 8, cudaMemcpyHostToDevice), "cudaMemcpy");
      fc::non_finite_check_and_unscale(dptr.data(), sizes.data(), int(got.size()), d_scalars, d_scalars + 1);
      float back[2];
      cuda_check(cudaMemcpy(back, d_scalars, 8, cudaMemcpyDeviceToHost), "cudaMemcpy");
      for (std::size_t t = 0; t < got.size(); ++t) {
        cuda_check(cudaMemcpy(got[t].data(), dptr[t], got[t].size() * 4, cudaMemcpyDeviceToHost), "cudaMemcpy");
        cudaFree(dptr[t]);
      }
      cudaFree(d_scalars);
      rep.add(compare_unscale("device", std::string(poison ? "with inf/NaN" : "finite") + " inv_scale " + std::to_string(inv),
                              want, want_found, got, back[0] == 1.0f));
    }
}

json to_json(const report& rep, int status) {
  json j;
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  j["date"] = date;
  j["device"] = rep.device_skipped ? json("SKIPPED: no CUDA device") : rep.opt.device ? json(rep.device) : json("not run");
  j["host_stride"] = rep.opt.stride;
  j["mismatches"] = rep.total_mismatches();
  j["exit_status"] = status;
  j["results"] = json::array();
  for (const auto& r : rep.results) {
    json e{{"side", r.side}, {"kind", r.kind}, {"name", r.name}, {"count", r.count}, {"mismatches", r.mismatches},
           {"seconds", r.seconds}};
    if (r.gbps >= 0) {
      e["gbps"] = r.gbps;
      e["copy_gbps"] = r.copy_gbps;
    }
    if (!r.note.empty()) e["note"] = r.note;
    e["first_mismatches"] = json::array();
    for (const auto& m : r.first) e["first_mismatches"].push_back({{"input", m.input}, {"want", m.want}, {"got", m.got}});
    j["results"].push_back(e);
  }
  return j;
}

}  // namespace

int main(int argc, char** argv) {
  report rep;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(usage, stdout);
      return 0;
    } else if (a == "--host-only") {
      rep.opt.device = false;
    } else if (a == "--device-only") {
      rep.opt.host = false;
    } else if (a == "--json") {
      rep.opt.as_json = true;
    } else if ((a == "--stride" || a == "--datasets") && i + 1 < argc) {
      const std::string v = argv[++i];
      if (a == "--datasets") {
        rep.opt.datasets = v;
      } else {
        const unsigned long s = std::strtoul(v.c_str(), nullptr, 10);
        if (s == 0 || s > 0xFFFFFFFFul) {
          std::fprintf(stderr, "fpscope-gpucheck: --stride wants a positive integer\n");
          return exit_usage;
        }
        rep.opt.stride = rep.opt.generic_stride = rep.opt.small_stride = std::uint32_t(s);
      }
    } else {
      std::fprintf(stderr, "fpscope-gpucheck: unknown argument %s (see --help)\n", a.c_str());
      return exit_usage;
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  int status = 0;
  try {
    const auto data = load_datasets(rep.opt.datasets);
    if (data.empty() && !rep.opt.as_json)
      std::printf("note: no float32 .npy files in %s: histogram and unscale checks use synthetic data only\n",
                  rep.opt.datasets.c_str());
    if (rep.opt.host) run_host(rep, data);
    if (rep.opt.device) {
      if (fc::device_count() == 0) {
        rep.device_skipped = true;
        if (!rep.opt.as_json) std::printf("device side: SKIPPED: no CUDA device\n");
        else std::fprintf(stderr, "SKIPPED: no CUDA device\n");
      } else {
        run_device(rep, data);
      }
    }
    status = rep.total_mismatches() ? exit_mismatch : rep.device_skipped ? exit_skip : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fpscope-gpucheck: %s\n", e.what());
    return exit_usage;
  }
  if (rep.opt.as_json) {
    std::cout << to_json(rep, status).dump(2) << "\n";
  } else {
    std::printf("%llu mismatches in %zu checks, %.1f s%s\n", (unsigned long long)rep.total_mismatches(),
                rep.results.size(), seconds_since(t0), rep.device_skipped ? "; device side SKIPPED" : "");
  }
  return status;
}
