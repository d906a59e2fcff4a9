// fpscope-gpucheck: the CUDA kernels of fpscope::cuda against the CPU emulator, bit for bit.
// Host side: the kernels' __host__ __device__ element code, compiled by nvcc and run on the CPU,
// against the emulator's bulk API and NVIDIA's own host implementations, on a strided subset of
// float32 plus every special and format boundary. Device side (with a GPU): float32 inputs in
// chunks of 2^24 (all 256 chunks, or K spread across 2^32) through every conversion kernel, the
// histogram and unscale kernels. The checks run in order of risk, each row printed (and the
// --json-out file rewritten) as it finishes, within an optional time budget (README.md).
#include <cuda_runtime_api.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <functional>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "fpscope/convert.hpp"
#include "fpscope/cuda.hpp"
#include "fpscope/histogram.hpp"
#include "fpscope/mma.hpp"
#include "fpscope/npy.hpp"
#include "fpscope/options.hpp"
#include "fpscope/output.hpp"

namespace {

using fpscope::format;
using fpscope::policy;
using fpscope::rounding;
namespace fc = fpscope::cuda;
using json = nlohmann::json;

// Exit statuses (--help, README.md). A mismatch wins over everything else: it is a finding.
constexpr int exit_mismatch = 1, exit_usage = 2, exit_cuda = 3, exit_driver = 4, exit_budget = 5, exit_skip = 77;

// The device sweeps cut 2^32 into 128 chunks of 2^25 inputs (128 MiB of float32): one chunk is
// enough for the shared-memory histogram kernel up to 256 SMs (n >= SMs * 2 * 65535).
constexpr unsigned chunk_log2 = 25, total_chunks = 128;
constexpr std::size_t chunk_n = std::size_t{1} << chunk_log2;

struct options {
  bool host = true, device = true, as_json = false;
  std::uint32_t stride = 61;           // host: every stride-th float32 pattern, intrinsics
  std::uint32_t generic_stride = 241;  // host: the generic kernel under the cuda profile
  std::uint32_t small_stride = 4093;   // host: the generic kernel under every other policy
  std::string datasets;                // "" until resolved (find_datasets)
  unsigned device_chunks = 0;          // 0: all 128
  std::vector<std::string> only;       // kinds or row-name prefixes; empty: all
  double budget = 0;                   // seconds; 0: none
  std::string json_out;                // rewritten after every row
};

const char* const usage = R"(fpscope-gpucheck: the CUDA kernels of fpscope::cuda against the CPU emulator, bit for bit.

Host side (no GPU needed): the kernels' __host__ __device__ element code run on the CPU, against
the emulator's bulk API (every format, rounding mode and profile) and against NVIDIA's host
implementations in cuda_fp16.h / cuda_bf16.h / cuda_fp8.h, on every STRIDE-th float32 pattern
plus every special value and format boundary; the histogram key, the unscale step and the scale
step on NaN payloads. Device side (a GPU): float32 inputs in 128 chunks of 2^25 through every
conversion kernel, the histogram kernel on the datasets and on every pattern, the unscale kernel;
and the tensor-core instructions (mma.sync on sm_80 and up, wgmma on sm_90) against the models of
fpscope::mma for that GPU's architecture (MMA-Sim's), after a layout check on integer operands.
Each row names what it compares with what (hardware instruction, NVIDIA software routine or the
emulator's own element code compiled by nvcc, against the emulator or a CPU reference).

Usage: fpscope-gpucheck [--host-only | --device-only] [--stride N] [--device-chunks K]
                        [--only NAME[,NAME...]] [--budget SECONDS] [--datasets DIR]
                        [--json] [--json-out FILE]

  --host-only         only the host side
  --device-only       only the device side (exit 77 without a CUDA device)
  --stride N          host side: every N-th float32 pattern for every check (default: 61 for the
                      intrinsics, 241 for the generic kernel under the cuda profile, 4093 under the
                      other policies; always plus every special and format boundary; 1 is
                      exhaustive and needs about 40 GB of memory)
  --device-chunks K   device side: K of the 128 chunks of 2^25 inputs, spread evenly across 2^32
                      (chunk j*128/K for j < K; default all 128: every float32 pattern)
  --only NAME         only the checks whose kind is NAME (mma, histogram, unscale, scale, intrinsic,
                      generic) or whose name starts with NAME (f16.rn, e4m3, "fp16 cuda", m64n8k32);
                      comma-separated or repeated; matching no check is a usage error
  --budget SECONDS    start no check after SECONDS; those left are listed as not run (exit 5)
  --datasets DIR      .npy files for the histogram and unscale checks (default: datasets/lm-grads
                      in the first directory above the binary or the working directory that has it)
  --json              one JSON document on stdout instead of the report (also after an error)
  --json-out FILE     the report on stdout, and the JSON document rewritten (atomically) into FILE
                      after every row: a killed run leaves every row finished before the kill

Checks run in order of risk: on the device the tensor-core instructions, the histogram, unscale and scale-step kernels first,
then the hardware intrinsics, then the generic kernel; the device side before the host side.

Exit status: 1 a mismatch (whatever else happened); else 3 a CUDA error (cudaGetErrorString on
stderr; the rows finished before it are kept), 4 a CUDA driver too old for the runtime or no
usable device (not the same as none), 5 the budget ran out before every check ran, 77 no CUDA
device or no CUDA driver (the device side SKIPPED; the host side, if asked for, passed), 2 usage
or I/O error, 0 every check ran and passed.

Examples:
  fpscope-gpucheck --host-only                             # CI without a GPU
  fpscope-gpucheck --device-only --device-chunks 1 --json-out quick.json
  fpscope-gpucheck --device-only --only histogram,unscale --budget 60
)";

struct mismatch {
  std::uint32_t input;
  std::uint32_t want, got;
};

/// One comparison: a name, what was compared with what, and the mismatches.
struct result {
  result(std::string s, std::string k, std::string n) : side(std::move(s)), kind(std::move(k)), name(std::move(n)) {}
  std::string side, kind, name;
  std::string compares;  // "X vs Y": which implementation against which
  std::string state = "ran";  // ran, not run (budget), skipped (no device), error
  std::uint64_t count = 0, mismatches = 0;
  std::vector<mismatch> first;
  double seconds = 0, gbps = -1, copy_gbps = -1;
  std::string note;
};

/// A CUDA error inside a device check: the run stops there (exit 3).
struct cuda_failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw cuda_failure(std::string(what) + ": " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e));
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct report {
  options opt;
  std::vector<result> results;
  std::string device = "not run";  // the device line, or why the device side did not run
  std::string device_state = "not asked";
  std::string error;               // the CUDA error that stopped the run
  std::size_t skipped = 0, not_run = 0;
  bool complete = false;
  int status = -1;
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();

  void add(result r) {
    if (!opt.as_json && r.state == "ran") {
      std::printf("%-6s %-9s %-40s %12llu compared %8llu mismatches %7.2f s", r.side.c_str(), r.kind.c_str(),
                  r.name.c_str(), (unsigned long long)r.count, (unsigned long long)r.mismatches, r.seconds);
      if (r.gbps >= 0) std::printf("  %.0f GB/s (copy %.0f GB/s)", r.gbps, r.copy_gbps);
      std::printf("  [%s]", r.compares.c_str());
      if (!r.note.empty()) std::printf("  (%s)", r.note.c_str());
      std::printf("\n");
      for (const auto& m : r.first)
        if (r.kind == "mma")  // the input is the result's index (tile * m * n + row * n + col)
          std::printf("         result #%u: want 0x%x got 0x%x\n", m.input, m.want, m.got);
        else
          std::printf("         input 0x%08x (%a): want 0x%x got 0x%x\n", m.input, double(std::bit_cast<float>(m.input)),
                      m.want, m.got);
    } else if (!opt.as_json && r.state != "skipped") {
      std::printf("%-6s %-9s %-40s %s\n", r.side.c_str(), r.kind.c_str(), r.name.c_str(), r.state.c_str());
    }
    std::fflush(stdout);
    if (r.state == "skipped") ++skipped;
    if (r.state == "not run (budget)") ++not_run;
    results.push_back(std::move(r));
    save();
  }
  std::uint64_t total_mismatches() const {
    std::uint64_t n = 0;
    for (const auto& r : results) n += r.mismatches;
    return n;
  }
  std::size_t ran() const {
    return std::size_t(std::count_if(results.begin(), results.end(), [](const result& r) { return r.state == "ran"; }));
  }
  json to_json() const;
  /// Rewrites --json-out (atomically: a reader or a kill sees the last whole document).
  void save() const {
    if (!opt.json_out.empty()) fpscope::write_output(opt.json_out, to_json().dump(2) + "\n");
  }
};

json report::to_json() const {
  json j;
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  j["date"] = date;
  j["device"] = device;
  j["device_state"] = device_state;
  j["host_stride"] = opt.stride;
  j["device_chunks"] = opt.device_chunks ? opt.device_chunks : total_chunks;
  j["budget_seconds"] = opt.budget;
  j["complete"] = complete;
  j["exit_status"] = status < 0 ? json(nullptr) : json(status);
  if (!error.empty()) j["error"] = error;
  j["mismatches"] = total_mismatches();
  j["ran"] = ran();
  j["skipped"] = skipped;
  j["not_run"] = not_run;
  j["seconds"] = seconds_since(t0);
  j["results"] = json::array();
  for (const auto& r : results) {
    json e{{"side", r.side},   {"kind", r.kind},   {"name", r.name},   {"compares", r.compares},
           {"state", r.state}, {"count", r.count}, {"mismatches", r.mismatches}, {"seconds", r.seconds}};
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

fpscope::bulk_options scaled_by(float scale, std::uint64_t first = 0) {
  fpscope::bulk_options o;
  o.scale = scale;
  o.first_index = first;
  return o;
}
fpscope::bulk_options from_index(std::uint64_t first) { return scaled_by(1.0f, first); }

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
void host_generic(std::span<const float> in, const format& f, const policy& p, float scale, result& r) {
  std::vector<W> want(in.size()), got(in.size());
  fpscope::encode(in, std::span<W>(want), f, p, scaled_by(scale));
  chunked(in, got, [&](const float* x, W* o, std::size_t n, std::size_t lo) {
    fc::host::convert_generic(x, o, n, scale, f, p, lo);
  });
  compare<W>(in, want, got, r);
}

void host_generic_any(std::span<const float> in, const format& f, const policy& p, float scale, result& r) {
  switch (f.storage_bytes()) {
    case 1: host_generic<std::uint8_t>(in, f, p, scale, r); break;
    case 2: host_generic<std::uint16_t>(in, f, p, scale, r); break;
    default: host_generic<std::uint32_t>(in, f, p, scale, r); break;
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
void host_intrinsic(std::span<const float> in, const fc::intrinsic_spec& s, float scale, result& r) {
  const format f = fpscope::builtin(fc::format_of(s.kind));
  std::vector<W> want(in.size()), got(in.size());
  fpscope::encode(in, std::span<W>(want), f, fc::emulator_policy(s), scaled_by(scale));
  chunked(in, got, [&](const float* x, W* o, std::size_t n, std::size_t) { fc::host::convert_intrinsic(x, o, n, scale, s); });
  compare<W>(in, want, got, r);
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

/// The CPU bucket_histogram `h` against a kernel's table; mismatches are buckets.
void compare_tables(const fpscope::bucket_histogram& h, const std::vector<unsigned long long>& table, result& r) {
  for (std::uint32_t k = 0; k < fc::histogram_buckets; ++k) {
    if (h[k] == table[k]) continue;
    ++r.mismatches;
    if (r.first.size() < 5) r.first.push_back({k, std::uint32_t(h[k]), std::uint32_t(table[k])});
  }
  r.note = "mismatches are buckets; first: key, want count, got count";
}

void histogram_result(std::span<const float> x, const std::vector<unsigned long long>& table, result& r) {
  fpscope::bucket_histogram h;
  h.add(x);
  r.count = x.size();
  compare_tables(h, table, r);
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

void compare_unscale(const std::vector<std::vector<float>>& want, bool want_found,
                     const std::vector<std::vector<float>>& got, bool got_found, result& r) {
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
}

using datasets_t = std::vector<std::pair<std::string, std::vector<float>>>;

/// The datasets' default: datasets/lm-grads in the nearest directory above the binary that has
/// it (a build folder inside any checkout, wherever it lies), else above the working directory.
std::string find_datasets() {
  std::vector<std::filesystem::path> starts;
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) starts.push_back(exe.parent_path());
  starts.push_back(std::filesystem::current_path(ec));
  for (auto dir : starts)
    for (; !dir.empty(); dir = dir.parent_path()) {
      const auto d = dir / "datasets" / "lm-grads";
      if (std::filesystem::is_directory(d, ec)) return d.string();
      if (dir == dir.parent_path()) break;
    }
  return "datasets/lm-grads";
}

/// One planned check: run() fills the result's counts (and may refine `compares`).
struct check {
  std::string side, kind, name, compares;
  std::function<void(result&)> run;
};

bool selected(const options& o, const check& c) {
  if (o.only.empty()) return true;
  for (const auto& t : o.only)
    if (t == c.kind || c.name.rfind(t, 0) == 0) return true;
  return false;
}

const rounding all_modes[] = {rounding::rne, rounding::rtz, rounding::rup, rounding::rdn,
                              rounding::rna, rounding::rto, rounding::sr};

struct generic_config {
  std::string label;
  format f;
  policy p;
};

/// The generic kernel's configurations under the cuda profile: every format x rounding mode.
std::vector<generic_config> cuda_generic_configs() {
  std::vector<generic_config> v;
  for (int id = 0; id < fpscope::builtin_count; ++id) {
    const format f = fpscope::builtin(fpscope::format_id(id));
    for (rounding rm : all_modes) {
      policy p = fpscope::profile_policy(fpscope::profile::cuda, f);
      p.round = rm;
      p.seed = 0x5EEDull;
      v.push_back({std::string(f.name) + " cuda " + std::string(fpscope::name(rm)), f, p});
    }
  }
  return v;
}

/// The shortest text that reads back as the float32 `s` ("0.3", "1.5258789e-05").
std::string scale_text(float s) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, s);
  return std::string(buf, r.ptr);
}

// ---- host side -------------------------------------------------------------------------------

/// The host side's input sets, made on first use (a --only run makes only what it needs).
struct host_inputs {
  explicit host_inputs(const options& o) : opt(o) {}
  const options& opt;
  std::optional<std::vector<std::uint32_t>> extra_;
  std::optional<std::vector<float>> wide_, mid_, narrow_, nans_;
  const std::vector<std::uint32_t>& extra() {
    if (!extra_) extra_ = boundary_inputs();
    return *extra_;
  }
  const std::vector<float>& wide() { return wide_ ? *wide_ : *(wide_ = inputs(opt.stride, extra())); }
  const std::vector<float>& mid() { return mid_ ? *mid_ : *(mid_ = inputs(opt.generic_stride, extra())); }
  const std::vector<float>& narrow() { return narrow_ ? *narrow_ : *(narrow_ = inputs(opt.small_stride, extra())); }
  /// Every float32 NaN pattern, both signs (2 * (2^23 - 1)).
  const std::vector<float>& nans() {
    if (nans_) return *nans_;
    std::vector<float> v;
    v.reserve(std::size_t{2} << 23);
    for (std::uint32_t sign : {0u, 0x80000000u})
      for (std::uint32_t m = 1; m < (1u << 23); ++m) v.push_back(std::bit_cast<float>(sign | 0x7F800000u | m));
    return *(nans_ = std::move(v));
  }
};

// ---- tensor-core instructions (mma) ---------------------------------------------------------

/// MMA-Sim's architecture for a compute capability: the model a GPU's instructions are compared with.
std::string mma_arch_of(int sm) {
  if (sm == 70 || sm == 72) return "volta";
  if (sm == 75) return "turing";
  if (sm >= 80 && sm < 89) return "ampere";
  if (sm == 89) return "ada";
  if (sm >= 90 && sm < 100) return "hopper";
  if (sm >= 100 && sm < 120) return "blackwell";
  if (sm >= 120) return "rtx-blackwell";
  return "";
}

/// The values of one operand type an mma check draws from: every finite value, those of
/// magnitude in [2^-3, 2^4) ("narrow": products and sums of like size, where alignment and
/// truncation decide the low bits), and the specials (zeros, infinities, a NaN, the smallest
/// two nonzero magnitudes, the largest finite), both signs.
struct mma_values {
  format f;
  std::vector<float> finite, narrow, special;
  explicit mma_values(const format& fmt) : f(fmt) {
    std::vector<float> pos;
    bool nan = false;
    for (std::uint64_t c = 0; c < (std::uint64_t{1} << f.bits); ++c) {
      const double v = fpscope::decode(std::uint32_t(c), f);
      if (std::isnan(v)) {
        if (!nan) special.push_back(float(v));
        nan = true;
      } else if (std::isinf(v)) {
        special.push_back(float(v));
      } else {
        finite.push_back(float(v));
        const double a = std::fabs(v);
        if (a >= 0.125 && a < 16) narrow.push_back(float(v));
        if (v > 0) pos.push_back(float(v));
      }
    }
    std::sort(pos.begin(), pos.end());
    for (float v : {0.0f, pos[0], pos[1], pos.back()}) {
      special.push_back(v);
      special.push_back(-v);
    }
  }
};

/// float32 C operands: the same three kinds for binary32 (2^32 codes are too many to list).
float f32_value(std::mt19937_64& rng, int kind) {
  std::uniform_int_distribution<std::uint32_t> bits;
  if (kind == 0) {  // any finite binary32
    for (;;) {
      const float v = std::bit_cast<float>(bits(rng));
      if (std::isfinite(v)) return v;
    }
  }
  if (kind == 1) {  // narrow: magnitude in [2^-3, 2^4)
    const std::uint32_t e = std::uint32_t(124 + bits(rng) % 7), m = bits(rng) & 0x7FFFFF;
    return std::bit_cast<float>((bits(rng) & 0x80000000u) | e << 23 | m);
  }
  static const float sp[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, std::numeric_limits<float>::denorm_min(),
                             -std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::min(),
                             -std::numeric_limits<float>::min(), std::numeric_limits<float>::max(),
                             -std::numeric_limits<float>::max()};
  return sp[bits(rng) % std::size(sp)];
}

/// An operand's register word (fpscope::cuda::mma_tiles): the code, or float32's bits for
/// binary32 and tf32. The values are exactly representable (drawn from the format's own).
std::uint32_t mma_word(float v, const format& f) {
  if (f.bits == 32 || f.bits == 19) return std::bit_cast<std::uint32_t>(v);  // binary32, tf32
  return fpscope::encode(v, f);
}

/// The input sets of an mma check; "exact" is the layout check.
enum class mma_set { exact, random, narrow, special, cancel };
const char* name(mma_set s) {
  switch (s) {
    case mma_set::exact: return "exact";
    case mma_set::random: return "random";
    case mma_set::narrow: return "narrow";
    case mma_set::special: return "special";
    default: return "cancel";
  }
}

/// `tiles` instructions' operands of one set, as values (row-major per tile).
struct mma_operands {
  std::vector<float> A, B, C;
};
mma_operands mma_inputs(const fpscope::mma::instruction& in, mma_set set, std::size_t tiles, std::uint64_t seed) {
  const mma_values va(in.a), vb(in.b);
  const bool c32 = in.c.bits == 32;
  std::optional<mma_values> vc;
  if (!c32) vc.emplace(in.c);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::uint64_t> u;
  const auto pick = [&](const std::vector<float>& v) { return v[u(rng) % v.size()]; };
  const int m = in.m, n = in.n, k = in.k;
  mma_operands o;
  o.A.resize(tiles * m * k);
  o.B.resize(tiles * k * n);
  o.C.resize(tiles * m * n);
  // Small integers: every product and sum is exact in every model (|sum| <= 32 * 9 + 64), so the
  // hardware's D is the exact value wherever the fragments are laid out right.
  const auto small = [&](int r) { return float(int(u(rng) % (2 * r + 1)) - r); };
  const auto cval = [&](int kind) { return c32 ? f32_value(rng, kind) : pick(kind == 0 ? vc->finite : kind == 1 ? vc->narrow : vc->special); };
  for (std::size_t t = 0; t < tiles; ++t) {
    float* a = &o.A[t * m * k];
    float* b = &o.B[t * k * n];
    float* c = &o.C[t * m * n];
    for (int i = 0; i < m * k; ++i)
      a[i] = set == mma_set::exact ? small(3) : set == mma_set::random ? pick(va.finite) : pick(va.narrow);
    for (int i = 0; i < k * n; ++i)
      b[i] = set == mma_set::exact ? small(3) : set == mma_set::random ? pick(vb.finite) : pick(vb.narrow);
    for (int i = 0; i < m * n; ++i) c[i] = set == mma_set::exact ? small(64) : cval(set == mma_set::random ? int(u(rng) % 2) : 1);
    if (set == mma_set::special) {  // one element in 8 of each operand a special
      for (int i = 0; i < m * k; ++i)
        if (u(rng) % 8 == 0) a[i] = pick(va.special);
      for (int i = 0; i < k * n; ++i)
        if (u(rng) % 8 == 0) b[i] = pick(vb.special);
      for (int i = 0; i < m * n; ++i)
        if (u(rng) % 8 == 0) c[i] = cval(2);
    }
    if (set == mma_set::cancel) {
      // Products in opposite pairs: A's columns 2p and 2p+1 equal, B's rows 2p+1 = -(row 2p), one
      // in four nudged to a neighbouring value; the sum is a small residue of large terms, against
      // a C of any size (or zero): the cases where alignment to the largest exponent and the
      // truncation below it decide every bit.
      for (int i = 0; i < m; ++i)
        for (int p = 0; p + 1 < k; p += 2) a[i * k + p + 1] = a[i * k + p];
      for (int p = 0; p + 1 < k; p += 2)
        for (int j = 0; j < n; ++j) {
          float w = -b[p * n + j];
          if (u(rng) % 4 == 0) w = pick(vb.narrow);
          b[(p + 1) * n + j] = w;
        }
      for (int i = 0; i < m * n; ++i) {
        if (u(rng) % 3 == 0) {
          c[i] = 0;
        } else {  // C scaled by 2^-20..2^20, rounded into its own format
          const double v = std::ldexp(double(cval(1)), int(u(rng) % 41) - 20);
          c[i] = c32 ? float(v) : float(fpscope::decode(fpscope::encode(v, in.c), in.c));
        }
      }
    }
  }
  return o;
}

/// D's expected words for `tiles` tiles of operands: the model's D (a NaN as the hardware's
/// canonical 0x7FFFFFFF, 0x7FFF in binary16) or, `exact`, the exact A * B + C (for the integer
/// operands of the layout set: an integer every output type holds).
std::vector<std::uint32_t> mma_want(const fpscope::mma::instruction& in, const fc::mma_device_instruction& di,
                                    const mma_operands& o, std::size_t tiles, bool exact) {
  const std::size_t per_a = std::size_t(di.m) * di.k, per_b = std::size_t(di.k) * di.n, per_c = std::size_t(di.m) * di.n;
  const bool f16_out = in.d.bits == 16;
  std::vector<std::uint32_t> want(tiles * per_c);
#pragma omp parallel for schedule(dynamic, 16)
  for (std::int64_t t = 0; t < std::int64_t(tiles); ++t) {
    std::vector<float> dv(per_c);
    if (exact) {
      for (int i = 0; i < di.m; ++i)
        for (int j = 0; j < di.n; ++j) {
          double s = o.C[t * per_c + i * di.n + j];
          for (int p = 0; p < di.k; ++p) s += double(o.A[t * per_a + i * di.k + p]) * o.B[t * per_b + p * di.n + j];
          dv[i * di.n + j] = float(s);
        }
    } else {
      fpscope::mma::run(in, &o.A[t * per_a], &o.B[t * per_b], &o.C[t * per_c], dv.data());
    }
    for (std::size_t i = 0; i < per_c; ++i) {
      const float v = dv[i];
      want[t * per_c + i] = f16_out ? (std::isnan(v) ? 0x7FFFu : fpscope::encode(v, in.d))
                                    : (std::isnan(v) ? 0x7FFFFFFFu : std::bit_cast<std::uint32_t>(v));
    }
  }
  return want;
}

/// The host side of the mma rows: the model of `arch` against the exact result on the layout set's
/// integer operands (every model must give the exact value there), and the model run once over
/// every other set (the inputs the device rows use are valid operands of the instruction).
void mma_host_check(const fc::mma_device_instruction& di, const std::string& arch, std::size_t tiles, result& r) {
  const fpscope::mma::instruction in = fpscope::mma::find(arch, di.name);
  for (const mma_set set : {mma_set::exact, mma_set::random, mma_set::narrow, mma_set::special, mma_set::cancel}) {
    const mma_operands o = mma_inputs(in, set, tiles, 1 + std::uint64_t(set));
    const std::vector<std::uint32_t> model = mma_want(in, di, o, tiles, false);
    if (set != mma_set::exact) continue;
    const std::vector<std::uint32_t> exact = mma_want(in, di, o, tiles, true);
    for (std::size_t i = 0; i < exact.size(); ++i)
      if (exact[i] != model[i]) {
        ++r.mismatches;
        if (r.first.size() < 8) r.first.push_back({std::uint32_t(i), exact[i], model[i]});
      }
    r.count += exact.size();
  }
}

/// One instruction on the GPU against fpscope::mma's model of `arch`, over the sets (the "exact"
/// set alone: against the exact result, independent of any model). Each set is `tiles` tiles.
void mma_check(const fc::mma_device_instruction& di, const std::string& arch, bool layout,
               std::size_t tiles, result& r) {
  const fpscope::mma::instruction in = fpscope::mma::find(arch, di.name);
  const std::size_t per_a = std::size_t(di.m) * di.k, per_b = std::size_t(di.k) * di.n, per_c = std::size_t(di.m) * di.n;
  std::vector<mma_set> sets = layout ? std::vector<mma_set>{mma_set::exact}
                                     : std::vector<mma_set>{mma_set::random, mma_set::narrow, mma_set::special, mma_set::cancel};
  std::uint32_t *dA = nullptr, *dB = nullptr, *dC = nullptr, *dD = nullptr;
  cuda_check(cudaMalloc(reinterpret_cast<void**>(&dA), tiles * per_a * 4), "cudaMalloc");
  cuda_check(cudaMalloc(reinterpret_cast<void**>(&dB), tiles * per_b * 4), "cudaMalloc");
  cuda_check(cudaMalloc(reinterpret_cast<void**>(&dC), tiles * per_c * 4), "cudaMalloc");
  cuda_check(cudaMalloc(reinterpret_cast<void**>(&dD), tiles * per_c * 4), "cudaMalloc");
  std::string notes;
  try {
    for (const mma_set set : sets) {
      const std::uint64_t seed = std::hash<std::string>{}(arch + di.name) ^ (std::uint64_t(set) << 56);
      const mma_operands o = mma_inputs(in, set, tiles, seed);
      std::vector<std::uint32_t> wa(o.A.size()), wb(o.B.size()), wc(o.C.size()), got(o.C.size());
      for (std::size_t i = 0; i < wa.size(); ++i) wa[i] = mma_word(o.A[i], in.a);
      for (std::size_t i = 0; i < wb.size(); ++i) wb[i] = mma_word(o.B[i], in.b);
      for (std::size_t i = 0; i < wc.size(); ++i) wc[i] = mma_word(o.C[i], in.c);
      cuda_check(cudaMemcpy(dA, wa.data(), wa.size() * 4, cudaMemcpyHostToDevice), "cudaMemcpy");
      cuda_check(cudaMemcpy(dB, wb.data(), wb.size() * 4, cudaMemcpyHostToDevice), "cudaMemcpy");
      cuda_check(cudaMemcpy(dC, wc.data(), wc.size() * 4, cudaMemcpyHostToDevice), "cudaMemcpy");
      fc::mma_tiles(di.name, tiles, dA, dB, dC, dD);
      cuda_check(cudaDeviceSynchronize(), "mma kernel");
      cuda_check(cudaMemcpy(got.data(), dD, got.size() * 4, cudaMemcpyDeviceToHost), "cudaMemcpy");
      const std::vector<std::uint32_t> want = mma_want(in, di, o, tiles, set == mma_set::exact);
      std::uint64_t bad = 0;
      for (std::size_t i = 0; i < got.size(); ++i) {
        if (got[i] == want[i]) continue;
        ++bad;
        if (r.first.size() < 8) r.first.push_back({std::uint32_t(i), want[i], got[i]});
        if (bad <= 2) {  // the first two in words: which result, and its operands
          const std::size_t t = i / per_c, row = i % per_c / di.n, col = i % di.n;
          char buf[160];
          std::snprintf(buf, sizeof buf, "%s tile %zu D[%zu][%zu]: want 0x%x got 0x%x; C %a; A row", name(set), t, row, col,
                        want[i], got[i], double(o.C[i]));
          notes += (notes.empty() ? "" : "; ") + std::string(buf);
          for (int p = 0; p < di.k; ++p) {
            std::snprintf(buf, sizeof buf, " %a", double(o.A[t * per_a + row * di.k + p]));
            notes += buf;
          }
          notes += "; B col";
          for (int p = 0; p < di.k; ++p) {
            std::snprintf(buf, sizeof buf, " %a", double(o.B[t * per_b + p * di.n + col]));
            notes += buf;
          }
        }
      }
      r.count += got.size();
      r.mismatches += bad;
      notes += std::string(notes.empty() ? "" : "; ") + name(set) + ": " + std::to_string(bad) + " of " +
               std::to_string(got.size());
    }
  } catch (...) {
    cudaFree(dA), cudaFree(dB), cudaFree(dC), cudaFree(dD);
    throw;
  }
  cudaFree(dA), cudaFree(dB), cudaFree(dC), cudaFree(dD);
  r.note = notes;
}

void plan_host(std::vector<check>& plan, host_inputs& in, const datasets_t& data) {
  const auto add = [&](std::string kind, std::string name, std::string compares, std::function<void(result&)> run) {
    plan.push_back({"host", std::move(kind), std::move(name), std::move(compares), std::move(run)});
  };
  // The mma rows' host side: the models the device rows compare with, on the layout set's integer
  // operands, against the exact result (Hopper's models: the GPU this is run on, an H100).
  for (const auto& di : fc::mma_device_instructions())
    add("mma", di.name, "fpscope::mma hopper model vs exact result (integer operands)",
        [di](result& r) { mma_host_check(di, "hopper", std::size_t(1 << 14) / std::size_t(di.m * di.n), r); });
  // The scale step on every NaN payload: the kernels' functor against the x86 multiply the CPU
  // emulator itself runs (lib/src/convert.cpp), then through a whole conversion.
  add("scale", "scale step, every NaN pattern", "kernels' scale functor vs x86 MULSS (the emulator's multiply)",
      [&](result& r) {
        const auto& x = in.nans();
        for (float s : {0.3f, 0x1p-10f, 3.0f, 1.0f}) {
          std::vector<std::uint32_t> want(x.size()), got(x.size());
#pragma omp parallel for
          for (std::int64_t i = 0; i < std::int64_t(x.size()); ++i) {
            volatile float vs = s;  // a run-time multiply, as in encode_run
            const float y = s == 1.0f ? x[std::size_t(i)] : x[std::size_t(i)] * vs;
            want[std::size_t(i)] = std::bit_cast<std::uint32_t>(y);
            got[std::size_t(i)] = std::bit_cast<std::uint32_t>(fc::host::scale_input(x[std::size_t(i)], s));
          }
          compare<std::uint32_t>(x, want, got, r);
        }
      });
  for (const auto& [fid, pr] : {std::pair{fpscope::format_id::bf16, fpscope::profile::ieee},
                                std::pair{fpscope::format_id::fp16, fpscope::profile::ml_dtypes}}) {
    const format f = fpscope::builtin(fid);
    const policy p = fpscope::profile_policy(pr, f);
    add("scale", std::string(f.name) + " " + std::string(fpscope::name(pr)) + " rne scale 0.3, every NaN",
        "nvcc host pass of the scale step + element code vs emulator (same source)",
        [&in, f, p](result& r) { host_generic_any(in.nans(), f, p, 0.3f, r); });
  }

  // NVIDIA's host implementations, through the kernels' own functors.
  for (const auto& s : intrinsic_specs()) {
    add("intrinsic", fc::name(s), "NVIDIA header host code (nvcc host pass) vs emulator", [&in, s](result& r) {
      if (fc::format_of(s.kind) == fpscope::format_id::fp16 || fc::format_of(s.kind) == fpscope::format_id::bf16)
        host_intrinsic<std::uint16_t>(in.wide(), s, 1.0f, r);
      else
        host_intrinsic<std::uint8_t>(in.wide(), s, 1.0f, r);
    });
  }
  for (const auto& s : intrinsic_specs()) {
    if (s.round != rounding::rne) continue;
    const bool half = s.kind == fc::intrinsic::f16 || s.kind == fc::intrinsic::bf16;
    const float scale = half ? 1024.0f : 0.375f;
    add("intrinsic", std::string(fc::name(s)) + " scale " + scale_text(scale),
        "NVIDIA header host code (nvcc host pass) vs emulator", [&in, s, half, scale](result& r) {
          if (half) host_intrinsic<std::uint16_t>(in.narrow(), s, scale, r);
          else host_intrinsic<std::uint8_t>(in.narrow(), s, scale, r);
        });
  }

  // The generic element code (nvcc's host pass) vs the emulator's bulk API (the CPU build):
  // the cuda profile on the middle set, every profile and the policy switches on the narrow one.
  const std::string same = "nvcc host pass of the element code vs emulator (same source)";
  for (const auto& [label, f, p] : cuda_generic_configs())
    add("generic", label, same, [&in, f, p](result& r) { host_generic_any(in.mid(), f, p, 1.0f, r); });
  for (int id = 0; id < fpscope::builtin_count; ++id) {
    const format f = fpscope::builtin(fpscope::format_id(id));
    for (auto pr : {fpscope::profile::ieee, fpscope::profile::avx512bf16, fpscope::profile::ml_dtypes})
      for (rounding rm : all_modes) {
        policy p = fpscope::profile_policy(pr, f);
        p.round = rm;
        p.seed = 7;
        add("generic", std::string(f.name) + " " + std::string(fpscope::name(pr)) + " " + std::string(fpscope::name(rm)),
            same, [&in, f, p](result& r) { host_generic_any(in.narrow(), f, p, 1.0f, r); });
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
      add("generic", label, same, [&in, f, p, scale](result& r) { host_generic_any(in.narrow(), f, p, scale, r); });
    }
  }

  // The bucket key (the C++17 path nvcc's host pass takes) vs the CPU bucket_histogram.
  const std::string key = "bucket key (nvcc host pass) vs CPU bucket_histogram";
  for (const auto& d : data) {
    const auto& x = d.second;
    add("histogram", d.first, key, [&x](result& r) {
      std::vector<unsigned long long> table(fc::histogram_buckets);
      fc::host::bucket_histogram(x.data(), x.size(), table.data());
      histogram_result(x, table, r);
    });
  }
  add("histogram", "adversarial (the wide input set)", key, [&in](result& r) {
    std::vector<unsigned long long> table(fc::histogram_buckets);
    fc::host::bucket_histogram(in.wide().data(), in.wide().size(), table.data());
    histogram_result(in.wide(), table, r);
  });

  // The unscale step vs torch's definition, with and without non-finite elements.
  for (bool poison : {false, true})
    for (float inv : {1.0f, 0x1p-16f, 0.3f}) {
      add("unscale", std::string(poison ? "with inf/NaN" : "finite") + " inv_scale " + scale_text(inv),
          "element code (nvcc host pass) vs plain C++ (torch's definition)", [&data, poison, inv](result& r) {
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
            compare_unscale(want, want_found, got, found == 1.0f, r);
          });
    }
}

// ---- device side ---------------------------------------------------------------------------

/// Everything the device sweeps reuse, allocated once: two slots (pinned host input and
/// output, device input and output, a stream each) so that one chunk's copies and kernel run
/// while the CPU emulates and compares the other; a scratch buffer for the copy-speed
/// reference and the histogram table.
struct device_ctx {
  struct slot {
    float* h_in = nullptr;
    void* h_out = nullptr;
    float* d_in = nullptr;
    void* d_out = nullptr;
    cudaStream_t stream = nullptr;
  };
  slot slots[2];
  void* d_copy = nullptr;
  unsigned long long* d_table = nullptr;
  int sm = 0;
  std::string line;

  device_ctx() {
    int dev = 0;
    cudaDeviceProp prop{};
    cuda_check(cudaGetDevice(&dev), "cudaGetDevice");
    cuda_check(cudaGetDeviceProperties(&prop, dev), "cudaGetDeviceProperties");
    sm = prop.major * 10 + prop.minor;
    int driver = 0, runtime = 0;
    cuda_check(cudaDriverGetVersion(&driver), "cudaDriverGetVersion");
    cuda_check(cudaRuntimeGetVersion(&runtime), "cudaRuntimeGetVersion");
    line = std::string(prop.name) + ", sm_" + std::to_string(sm) + ", " + std::to_string(prop.multiProcessorCount) +
           " SMs, driver API " + std::to_string(driver) + ", runtime " + std::to_string(runtime);
    for (auto& s : slots) {
      cuda_check(cudaMallocHost(reinterpret_cast<void**>(&s.h_in), chunk_n * 4), "cudaMallocHost");
      cuda_check(cudaMallocHost(&s.h_out, chunk_n * 4), "cudaMallocHost");
      cuda_check(cudaMalloc(reinterpret_cast<void**>(&s.d_in), chunk_n * 4), "cudaMalloc");
      cuda_check(cudaMalloc(&s.d_out, chunk_n * 4), "cudaMalloc");
      cuda_check(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking), "cudaStreamCreate");
    }
    cuda_check(cudaMalloc(&d_copy, chunk_n * 4), "cudaMalloc");
    cuda_check(cudaMalloc(reinterpret_cast<void**>(&d_table), fc::histogram_buckets * 8), "cudaMalloc");
  }
  ~device_ctx() {
    for (auto& s : slots) {
      cudaFreeHost(s.h_in);
      cudaFreeHost(s.h_out);
      cudaFree(s.d_in);
      cudaFree(s.d_out);
      if (s.stream) cudaStreamDestroy(s.stream);
    }
    cudaFree(d_copy);
    cudaFree(d_table);
  }
  device_ctx(const device_ctx&) = delete;
  device_ctx& operator=(const device_ctx&) = delete;
};

/// The first input of each chunk the sweeps cover: all 128, or K spread evenly.
std::vector<std::uint64_t> chunk_bases(unsigned k) {
  std::vector<std::uint64_t> b;
  const unsigned n = k ? k : total_chunks;
  for (unsigned j = 0; j < n; ++j) b.push_back(std::uint64_t(j) * total_chunks / n << chunk_log2);
  return b;
}

void fill_chunk(float* x, std::uint64_t base) {
#pragma omp parallel for
  for (std::int64_t i = 0; i < std::int64_t(chunk_n); ++i) x[i] = std::bit_cast<float>(std::uint32_t(base + std::uint64_t(i)));
}

/// Milliseconds of fn() on `stream`, by events.
template <class Fn>
float gpu_ms(cudaStream_t stream, Fn fn) {
  cudaEvent_t a, b;
  cuda_check(cudaEventCreate(&a), "cudaEventCreate");
  cuda_check(cudaEventCreate(&b), "cudaEventCreate");
  cuda_check(cudaEventRecord(a, stream), "cudaEventRecord");
  fn();
  cuda_check(cudaEventRecord(b, stream), "cudaEventRecord");
  cuda_check(cudaEventSynchronize(b), "cudaEventSynchronize");
  float ms = 0;
  cuda_check(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms;
}

/// The chunks through launch(d_in, d_out, n, base, stream) on the GPU and emulate(x, want, base)
/// on the CPU, compared. Chunk c is filled, copied and launched on slot c % 2 before chunk c - 1
/// is emulated and compared, so the GPU side of one overlaps the CPU side of the other. Then
/// GB/s of the kernel (bytes read + written) against a device-to-device copy of as many bytes.
template <class W, class Launch, class Emulate>
void sweep(device_ctx& d, const std::vector<std::uint64_t>& bases, result& r, Launch launch, Emulate emulate) {
  std::vector<W> want(chunk_n);
  const auto submit = [&](std::size_t c) {
    auto& s = d.slots[c % 2];
    fill_chunk(s.h_in, bases[c]);
    cuda_check(cudaMemcpyAsync(s.d_in, s.h_in, chunk_n * 4, cudaMemcpyHostToDevice, s.stream), "cudaMemcpyAsync");
    launch(s.d_in, s.d_out, chunk_n, bases[c], s.stream);
    cuda_check(cudaMemcpyAsync(s.h_out, s.d_out, chunk_n * sizeof(W), cudaMemcpyDeviceToHost, s.stream),
               "cudaMemcpyAsync");
  };
  const auto finish = [&](std::size_t c) {
    auto& s = d.slots[c % 2];
    const std::span<const float> x(s.h_in, chunk_n);
    emulate(x, std::span<W>(want), bases[c]);  // on the CPU while the GPU works
    cuda_check(cudaStreamSynchronize(s.stream), "kernel or copy");
    compare<W>(x, want, std::span<const W>(static_cast<const W*>(s.h_out), chunk_n), r);
  };
  for (std::size_t c = 0; c < bases.size(); ++c) {
    submit(c);
    if (c > 0) finish(c - 1);
  }
  finish(bases.size() - 1);
  auto& s = d.slots[0];
  const std::size_t bytes = chunk_n * (4 + sizeof(W));
  const float k = gpu_ms(s.stream, [&] { launch(s.d_in, s.d_out, chunk_n, bases[0], s.stream); });
  const float c = gpu_ms(s.stream, [&] {
    cuda_check(cudaMemcpyAsync(d.d_copy, s.d_in, bytes / 2, cudaMemcpyDeviceToDevice, s.stream), "cudaMemcpyAsync");
  });
  r.gbps = double(bytes) / (double(k) * 1e6);
  r.copy_gbps = double(bytes) / (double(c) * 1e6);  // a copy reads and writes bytes / 2 each
}

template <class Launch, class Emulate>
void sweep_any(const format& f, device_ctx& d, const std::vector<std::uint64_t>& bases, result& r, Launch launch,
               Emulate emulate) {
  switch (f.storage_bytes()) {
    case 1: sweep<std::uint8_t>(d, bases, r, launch, emulate); break;
    case 2: sweep<std::uint16_t>(d, bases, r, launch, emulate); break;
    default: sweep<std::uint32_t>(d, bases, r, launch, emulate); break;
  }
}

/// What a device intrinsic row compares, by what the headers compile to on this device
/// (cuda_fp16.hpp / cuda_bf16.hpp: cvt.{rn,rz,rm,rp}.{f16,bf16}.f32 from sm_80; cuda_fp8.hpp:
/// cvt.rn.satfinite.e{4m3,5m2}x2.f32 from sm_89, __NV_NOSAT always the header's C code).
std::string intrinsic_compares(const fc::intrinsic_spec& s, int sm) {
  if (s.kind == fc::intrinsic::f16 || s.kind == fc::intrinsic::bf16)
    return sm >= 80 ? "hardware cvt instruction vs emulator" : "NVIDIA software routine vs emulator";
  if (sm < 89) return "emulator's element code on the GPU vs emulator (same source: not independent)";
  return s.satfinite ? "hardware cvt.rn.satfinite instruction vs emulator"
                     : "NVIDIA software routine (cuda_fp8.hpp, nvcc) vs emulator";
}

void plan_device(std::vector<check>& plan, std::optional<device_ctx>& dev, const options& opt, const datasets_t& data) {
  const auto ctx = [&dev]() -> device_ctx& {
    if (!dev) dev.emplace();
    return *dev;
  };
  const auto bases = chunk_bases(opt.device_chunks);
  const auto add = [&](std::string kind, std::string name, std::string compares, std::function<void(result&)> run) {
    plan.push_back({"device", std::move(kind), std::move(name), std::move(compares), std::move(run)});
  };
  const std::string hist = "kernel vs CPU bucket_histogram";

  // Least proven of all: the tensor-core instructions, never run here before. Per instruction a
  // layout row (integer operands: the exact result, independent of any model) and a row against
  // fpscope::mma's model of this GPU's architecture (MMA-Sim's), 2^17 results per input set.
  for (const auto& di : fc::mma_device_instructions()) {
    for (const bool layout : {true, false}) {
      const std::string compares = layout ? "hardware instruction vs exact result (fragment layout)"
                                          : "hardware instruction vs fpscope::mma model";
      add("mma", std::string(layout ? "layout " : "") + di.name, compares, [ctx, di, layout](result& r) {
        device_ctx& d = ctx();
        const std::string arch = mma_arch_of(d.sm);
        if (d.sm < di.min_sm || (di.arch_specific && d.sm != 90) || arch.empty()) {
          r.state = "not on this device (sm_" + std::to_string(d.sm) + ")";
          return;
        }
        if (!layout) r.compares = "hardware instruction vs fpscope::mma " + arch + " model";
        mma_check(di, arch, layout, std::size_t(1 << 17) / std::size_t(di.m * di.n), r);
      });
    }
  }

  // The least proven first: the histogram (128 KiB of opt-in shared memory) and unscale
  // (cudaMallocAsync) kernels, then the scale step's NaNs, the intrinsics, the generic kernel.
  for (const auto& ds : data) {
    const auto& x = ds.second;
    add("histogram", ds.first, hist, [ctx, &x](result& r) {
      device_ctx& d = ctx();
      auto& s = d.slots[0];
      cuda_check(cudaMemsetAsync(d.d_table, 0, fc::histogram_buckets * 8, s.stream), "cudaMemsetAsync");
      for (std::size_t lo = 0; lo < x.size(); lo += chunk_n) {
        const std::size_t n = std::min(chunk_n, x.size() - lo);
        std::memcpy(s.h_in, x.data() + lo, n * 4);
        cuda_check(cudaMemcpyAsync(s.d_in, s.h_in, n * 4, cudaMemcpyHostToDevice, s.stream), "cudaMemcpyAsync");
        fc::bucket_histogram(s.d_in, n, d.d_table, s.stream);
        cuda_check(cudaStreamSynchronize(s.stream), "histogram kernel");  // before h_in is refilled
      }
      cuda_check(cudaStreamSynchronize(s.stream), "histogram kernel");  // the memset too, for an empty file
      std::vector<unsigned long long> table(fc::histogram_buckets);
      cuda_check(cudaMemcpy(table.data(), d.d_table, fc::histogram_buckets * 8, cudaMemcpyDeviceToHost), "cudaMemcpy");
      histogram_result(x, table, r);
      r.note = std::string(fc::histogram_uses_shared(std::min(chunk_n, x.size())) ? "shared-memory kernel"
                                                                                   : "global-atomics kernel") +
               "; " + r.note;
    });
  }
  add("histogram", "float32 patterns, " + std::to_string(bases.size()) + " chunks", hist, [ctx, bases](result& r) {
    // Every pattern of each chunk once (NaNs, infs, subnormals, a hot bucket per run of equal
    // exponents), large enough for the shared-memory kernel; both slots add into one table.
    device_ctx& d = ctx();
    // The slots' streams are non-blocking: nothing orders them after the legacy stream's memset.
    cuda_check(cudaMemset(d.d_table, 0, fc::histogram_buckets * 8), "cudaMemset");
    cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    fpscope::bucket_histogram h;
    const auto submit = [&](std::size_t c) {
      auto& s = d.slots[c % 2];
      fill_chunk(s.h_in, bases[c]);
      cuda_check(cudaMemcpyAsync(s.d_in, s.h_in, chunk_n * 4, cudaMemcpyHostToDevice, s.stream), "cudaMemcpyAsync");
      fc::bucket_histogram(s.d_in, chunk_n, d.d_table, s.stream);
    };
    const auto finish = [&](std::size_t c) {
      auto& s = d.slots[c % 2];
      h.add(std::span<const float>(s.h_in, chunk_n));
      cuda_check(cudaStreamSynchronize(s.stream), "histogram kernel");
    };
    for (std::size_t c = 0; c < bases.size(); ++c) {
      submit(c);
      if (c > 0) finish(c - 1);
    }
    finish(bases.size() - 1);
    std::vector<unsigned long long> table(fc::histogram_buckets);
    cuda_check(cudaMemcpy(table.data(), d.d_table, fc::histogram_buckets * 8, cudaMemcpyDeviceToHost), "cudaMemcpy");
    r.count = bases.size() * chunk_n;
    compare_tables(h, table, r);
    r.note = std::string(fc::histogram_uses_shared(chunk_n) ? "shared-memory kernel" : "global-atomics kernel") +
             "; " + r.note;
  });

  for (bool poison : {false, true})
    for (float inv : {1.0f, 0x1p-16f, 0.3f}) {
      add("unscale", std::string(poison ? "with inf/NaN" : "finite") + " inv_scale " + scale_text(inv),
          "kernel vs plain C++ (torch's definition)", [ctx, &data, poison, inv](result& r) {
            ctx();
            auto want = unscale_tensors(data, poison), got = want;
            bool want_found = false;
            for (auto& t : want) unscale_reference(t, inv, want_found);
            std::vector<float*> dptr;
            std::vector<std::size_t> sizes;
            for (auto& t : got) {
              float* p = nullptr;
              cuda_check(cudaMalloc(reinterpret_cast<void**>(&p), std::max<std::size_t>(t.size(), 1) * 4), "cudaMalloc");
              dptr.push_back(p);
              cuda_check(cudaMemcpy(p, t.data(), t.size() * 4, cudaMemcpyHostToDevice), "cudaMemcpy");
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
            compare_unscale(want, want_found, got, back[0] == 1.0f, r);
          });
    }

  // NaN through the scale: the GPU's multiply must leave sign and payload as x86 does, where
  // the profile keeps them (ieee, ml_dtypes), and the multiply itself round to nearest.
  for (const auto& [fid, pr] : {std::pair{fpscope::format_id::bf16, fpscope::profile::ieee},
                                std::pair{fpscope::format_id::fp16, fpscope::profile::ml_dtypes}}) {
    const format f = fpscope::builtin(fid);
    const policy p = fpscope::profile_policy(pr, f);
    add("scale", std::string(f.name) + " " + std::string(fpscope::name(pr)) + " rne scale 0.3",
        "GPU scale step + element code (nvcc) vs emulator", [ctx, bases, f, p](result& r) {
          sweep_any(
              f, ctx(), bases, r,
              [&](const float* in, void* out, std::size_t n, std::uint64_t base, cudaStream_t s) {
                fc::convert_generic(in, out, n, 0.3f, f, p, base, s);
              },
              [&](std::span<const float> x, auto want, std::uint64_t base) {
                fpscope::encode(x, want, f, p, scaled_by(0.3f, base));
              });
        });
  }

  for (const auto& s : intrinsic_specs()) {
    add("intrinsic", fc::name(s), intrinsic_compares(s, 90) + " (on sm_90; from the device when run)",
        [ctx, bases, s](result& r) {
      device_ctx& d = ctx();
      r.compares = intrinsic_compares(s, d.sm);
      const format f = fpscope::builtin(fc::format_of(s.kind));
      const policy p = fc::emulator_policy(s);
      sweep_any(
          f, d, bases, r,
          [&](const float* in, void* out, std::size_t n, std::uint64_t, cudaStream_t st) {
            fc::convert_intrinsic(in, out, n, 1.0f, s, st);
          },
          [&](std::span<const float> x, auto want, std::uint64_t) { fpscope::encode(x, want, f, p); });
    });
  }
  for (const auto& [label, f, p] : cuda_generic_configs())
    add("generic", label, "emulator's element code compiled by nvcc, on the GPU, vs emulator (same source)",
        [ctx, bases, f, p](result& r) {
          sweep_any(
              f, ctx(), bases, r,
              [&](const float* in, void* out, std::size_t n, std::uint64_t base, cudaStream_t s) {
                fc::convert_generic(in, out, n, 1.0f, f, p, base, s);
              },
              [&](std::span<const float> x, auto want, std::uint64_t base) {
                fpscope::encode(x, want, f, p, from_index(base));
              });
        });
}

int final_status(const report& rep, bool cuda_error, bool driver_bad) {
  if (rep.total_mismatches()) return exit_mismatch;
  if (cuda_error) return exit_cuda;
  if (driver_bad) return exit_driver;
  if (rep.not_run) return exit_budget;
  if (rep.skipped) return exit_skip;
  return 0;
}

/// Parses the command line into `o`; throws fpscope::option_error on a bad one.
bool parse(int argc, char** argv, options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw fpscope::option_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(usage, stdout);
      return false;
    } else if (a == "--host-only") {
      o.device = false;
    } else if (a == "--device-only") {
      o.host = false;
    } else if (a == "--json") {
      o.as_json = true;
    } else if (a == "--json-out") {
      o.json_out = value();
    } else if (a == "--datasets") {
      o.datasets = value();
    } else if (a == "--stride") {
      o.stride = o.generic_stride = o.small_stride = std::uint32_t(fpscope::parse_integer(value(), "--stride", 1, 0xFFFFFFFFll));
    } else if (a == "--device-chunks") {
      o.device_chunks = unsigned(fpscope::parse_integer(value(), "--device-chunks", 1, total_chunks));
    } else if (a == "--budget") {
      const std::string v = value();
      o.budget = fpscope::parse_number(v, "--budget");
      if (!(o.budget > 0) || !std::isfinite(o.budget))
        throw fpscope::option_error("--budget wants a positive number of seconds, not " + fpscope::quoted(v));
    } else if (a == "--only") {
      const std::string v = value();
      for (std::size_t lo = 0; lo <= v.size();) {
        const std::size_t hi = std::min(v.find(',', lo), v.size());
        if (hi == lo) throw fpscope::option_error("--only: empty name in " + fpscope::quoted(v));
        o.only.push_back(v.substr(lo, hi - lo));
        lo = hi + 1;
      }
    } else {
      throw fpscope::option_error("unknown argument " + fpscope::quoted(a) + " (see --help)");
    }
  }
  if (!o.host && !o.device) throw fpscope::option_error("--host-only and --device-only exclude each other");
  if (o.as_json && !o.json_out.empty()) throw fpscope::option_error("--json and --json-out exclude each other");
  return true;
}

void error_line(const std::string& what) { std::fprintf(stderr, "fpscope-gpucheck: error: %s\n", what.c_str()); }

}  // namespace

int main(int argc, char** argv) {
  report rep;
  try {
    if (!parse(argc, argv, rep.opt)) return 0;
  } catch (const std::exception& e) {
    error_line(e.what());
    return exit_usage;
  }
  options& opt = rep.opt;
  bool cuda_error = false, driver_bad = false;
  std::optional<device_ctx> dev;
  std::vector<check> plan;
  try {
    if (opt.datasets.empty()) opt.datasets = find_datasets();
    const datasets_t data = load_datasets(opt.datasets);
    if (data.empty() && !opt.as_json)
      std::printf("note: no float32 .npy files in %s: histogram and unscale checks use synthetic data only\n",
                  opt.datasets.c_str());
    host_inputs in(opt);
    bool device_usable = false;
    if (opt.device) {
      const fc::device_probe p = fc::probe_devices();
      rep.device_state = fc::name(p.what);
      const auto v = [](int x) { return std::to_string(x / 1000) + "." + std::to_string(x % 1000 / 10); };
      const std::string versions = "driver supports CUDA " + (p.driver_version ? v(p.driver_version) : std::string("-")) +
                                   ", runtime " + v(p.runtime_version);
      switch (p.what) {
        case fc::device_probe::state::ok: device_usable = true; break;
        case fc::device_probe::state::no_device:
        case fc::device_probe::state::no_driver:
          rep.device = std::string("SKIPPED: ") + (p.what == fc::device_probe::state::no_driver ? "no CUDA driver" : "no CUDA device") +
                       " (" + versions + (p.error_text.empty() ? "" : "; " + p.error_text) + ")";
          break;
        default:
          driver_bad = true;
          rep.device = std::string(p.what == fc::device_probe::state::driver_too_old
                                       ? "CUDA driver too old for the runtime"
                                       : "no usable CUDA device") +
                       " (" + versions + "; " + p.error_text + ")";
          error_line(rep.device);
          break;
      }
      plan_device(plan, dev, opt, data);
    }
    if (opt.host) plan_host(plan, in, data);
    std::erase_if(plan, [&](const check& c) { return !selected(opt, c); });
    if (plan.empty()) {
      error_line("--only matched no check on the sides asked for (kinds: mma, histogram, unscale, scale, intrinsic, generic)");
      return exit_usage;
    }
    if (!opt.as_json && opt.device)
      std::printf("device side: %s, %zu of %u chunks of 2^%u inputs per sweep\n",
                  device_usable ? "(context made at the first check)" : rep.device.c_str(), chunk_bases(opt.device_chunks).size(),
                  total_chunks, chunk_log2);
    rep.save();
    for (auto& c : plan) {
      result r{c.side, c.kind, c.name};
      r.compares = c.compares;
      if (c.side == "device" && !device_usable) {
        r.state = "skipped";
      } else if (cuda_error) {
        r.state = "not run (CUDA error)";
      } else if (opt.budget > 0 && seconds_since(rep.t0) > opt.budget) {
        r.state = "not run (budget)";
      } else {
        const auto t0 = std::chrono::steady_clock::now();
        try {
          c.run(r);
        } catch (const cuda_failure& e) {
          cuda_error = true;
          r.state = "error";
          rep.error = c.side + " " + c.kind + " " + c.name + ": " + e.what();
          error_line("CUDA error in " + rep.error);
        } catch (const std::runtime_error& e) {
          // fpscope::cuda's own checks throw runtime_error with cudaGetErrorString in it.
          if (c.side != "device") throw;
          cuda_error = true;
          r.state = "error";
          rep.error = c.side + " " + c.kind + " " + c.name + ": " + e.what();
          error_line("CUDA error in " + rep.error);
        }
        r.seconds = seconds_since(t0);
        if (dev && rep.device == "not run") {
          rep.device = dev->line;
          if (!opt.as_json) std::printf("device: %s\n", dev->line.c_str());
        }
      }
      rep.add(std::move(r));
    }
    rep.complete = !cuda_error;
  } catch (const std::exception& e) {
    error_line(e.what());
    rep.error = e.what();
    rep.status = exit_usage;
    if (opt.as_json) std::cout << rep.to_json().dump(2) << "\n";
    else try { rep.save(); } catch (const std::exception&) {}
    return exit_usage;
  }
  rep.status = final_status(rep, cuda_error, driver_bad);
  try {
    rep.save();
  } catch (const std::exception& e) {
    error_line(e.what());
    return exit_usage;
  }
  if (opt.as_json) {
    std::cout << rep.to_json().dump(2) << "\n";
  } else {
    std::printf("%llu mismatches in %zu checks, %.1f s%s%s%s\n", (unsigned long long)rep.total_mismatches(), rep.ran(),
                seconds_since(rep.t0), rep.skipped ? ("; " + std::to_string(rep.skipped) + " device checks SKIPPED").c_str() : "",
                rep.not_run ? ("; " + std::to_string(rep.not_run) + " not run (budget)").c_str() : "",
                cuda_error ? "; stopped by a CUDA error" : "");
  }
  return rep.status;
}
