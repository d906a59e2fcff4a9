// fpscope-bench-arith: bulk arithmetic (fpscope::apply on spans, arith_bulk.hpp) in fp16, bf16,
// e4m3 and e5m2, nearest-even: add, mul and fma, per element.
//
// Everything is measured in ONE run with interleaved repetitions (round r times every
// implementation once, in a shuffled order), so that the ratios compare samples taken under
// the same machine state: on a shared, noisy machine the absolute rates move, the paired
// ratios much less. Each cell reports the median over rounds and the best (min time) one.
//
//   fpscope   fpscope::apply(op, a, b, c, out, format), threads = 1 and 2, on typical operands
//             (finite, log-uniform over 12 binades, both signs, 2 % zeros) and, 1 thread, on
//             the same with 1 % NaN/inf operands (the elements the scalar path redoes)
//   hardware  the host's float arithmetic between hardware conversions: fp16 F16C vcvtph2ps ->
//             vaddps/vmulps/vfmadd231ps -> vcvtps2ph (ymm, and zmm with AVX-512F); bf16 a shift
//             left -> the float op -> AVX512-BF16 vcvtne2ps2bf16. e4m3/e5m2: no x86 instruction
//   reference streaming read of the operands and write of the result (a ^ b [^ c]), 1 and 2 threads
//   peers     numpy, torch, ml_dtypes through tools/bench/arith_peers.py, a subprocess fed the
//             same codes (.npy files, checksummed) and timed between our samples
//
// In cache it checks that the work is the same: the bulk path against the scalar apply, the
// hardware kernels and every peer against fpscope (under the profile closest to the peer), bit
// for bit. Then a sweep of sizes 2^10..2^22 finds where two threads start to beat one (the
// OpenMP `arith_parallel_threshold` of arith_bulk.hpp). See tools/bench/README.md.
#include <fpscope/cpu.hpp>
#include <fpscope/arith_bulk.hpp>
#include <fpscope/convert.hpp>
#include <fpscope/npy.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <omp.h>

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
// GCC 12 sees the AVX-512 intrinsics' "undefined" pass-through vectors (__m512i __Y = __Y) as
// maybe-uninitialized once they are inlined into a target("avx512f") function.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#define BENCH_X86 1
#else
#define BENCH_X86 0
#endif

#include "bench_common.hpp"
#include "peer_process.hpp"

namespace {

using json = nlohmann::json;
using fpscope::op;
using fpscope::bench::fastest;
using fpscope::bench::median;
using fpscope::bench::minimum;
using fpscope::bench::peer_process;
using fpscope::bench::ratio;
using fpscope::bench::splitmix;
using fpscope::bench::table;
using fpscope::bench::time_ratio;
using clk = std::chrono::steady_clock;

// ----------------------------------------------------------------------------------------
// Options

std::string default_python() {
  const std::string venv = FPSCOPE_BENCH_PYTHON;
  return access(venv.c_str(), X_OK) == 0 ? venv : std::string("/usr/bin/python3");
}

struct options {
  bool json = false;
  bool peers = true;
  bool sweep = true;
  int rounds_cache = 15;
  int rounds_mem = 7;
  int rounds_sweep = 15;
  std::size_t cache_n = std::size_t{1} << 16;
  std::size_t mem_n = std::size_t{1} << 24;
  double min_ms = 2.0;  // a sample repeats calls for at least this long (in-cache size)
  std::string python = default_python();
  std::string script = FPSCOPE_BENCH_PEERS;
  std::string command;
};

const char* usage =
    "usage: fpscope-bench-arith [--json] [--quick] [--rounds N] [--mem-rounds N] [--sweep-rounds N]\n"
    "         [--cache-n N] [--mem-n N] [--min-ms MS] [--no-peers] [--no-sweep]\n"
    "         [--python PATH] [--peers PATH]\n"
    "Bulk fp16/bf16/e4m3/e5m2 add, mul, fma (nearest-even) against the host's float arithmetic\n"
    "with hardware conversions, a streaming bandwidth reference and numpy/torch/ml_dtypes.\n"
    "  --json          results as JSON on stdout (progress on stderr) instead of the tables\n"
    "  --quick         fewer rounds and a 4 Mi from-memory size (a smoke run, ~30 s)\n"
    "  --rounds N      interleaved rounds for the in-cache size (default 15)\n"
    "  --mem-rounds N  rounds for the from-memory size (default 7)\n"
    "  --sweep-rounds N  rounds of the 2^10..2^22 thread crossover sweep (default 15)\n"
    "  --cache-n N     in-cache element count (default 65536)\n"
    "  --mem-n N       from-memory element count (default 16777216)\n"
    "  --min-ms MS     shortest in-cache sample; calls repeat until it is reached (default 2)\n"
    "  --no-peers      do not start arith_peers.py (peers print as n/a (SKIPPED))\n"
    "  --no-sweep      skip the OpenMP crossover sweep\n"
    "  --python P      interpreter for arith_peers.py (default: the project venv if present,\n"
    "                  else /usr/bin/python3)\n"
    "  --peers P       the arith_peers.py script\n";

options parse(int argc, char** argv) {
  options o;
  for (int i = 0; i < argc; ++i) {
    if (i) o.command += ' ';
    o.command += argv[i];
  }
  auto value = [&](int& i) -> std::string {
    if (i + 1 >= argc) {
      fmt::print(stderr, "{}: {} needs a value\n{}", argv[0], argv[i], usage);
      std::exit(2);
    }
    return argv[++i];
  };
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--json") o.json = true;
      else if (a == "--quick") {
        o.rounds_cache = 5;
        o.rounds_mem = 3;
        o.rounds_sweep = 3;
        o.mem_n = std::size_t{1} << 22;
      } else if (a == "--rounds") o.rounds_cache = std::stoi(value(i));
      else if (a == "--mem-rounds") o.rounds_mem = std::stoi(value(i));
      else if (a == "--sweep-rounds") o.rounds_sweep = std::stoi(value(i));
      else if (a == "--cache-n") o.cache_n = std::stoull(value(i));
      else if (a == "--mem-n") o.mem_n = std::stoull(value(i));
      else if (a == "--min-ms") o.min_ms = std::stod(value(i));
      else if (a == "--no-peers") o.peers = false;
      else if (a == "--no-sweep") o.sweep = false;
      else if (a == "--python") o.python = value(i);
      else if (a == "--peers") o.script = value(i);
      else if (a == "-h" || a == "--help") {
        fmt::print("{}", usage);
        std::exit(0);
      } else {
        fmt::print(stderr, "{}: unknown option {}\n{}", argv[0], a, usage);
        std::exit(2);
      }
    }
  } catch (const std::exception&) {
    fmt::print(stderr, "{}: bad number\n{}", argv[0], usage);
    std::exit(2);
  }
  if (o.rounds_cache < 1 || o.rounds_mem < 1 || o.rounds_sweep < 1 || o.cache_n < 64 || o.mem_n < 64) {
    fmt::print(stderr, "{}: rounds must be >= 1 and sizes >= 64\n", argv[0]);
    std::exit(2);
  }
  return o;
}

template <class... A>
void progress(fmt::format_string<A...> f, A&&... a) {
  fmt::print(stderr, f, std::forward<A>(a)...);
  std::fflush(stderr);
}

// ----------------------------------------------------------------------------------------
// Formats, operations, data

struct fmt_info {
  fpscope::format_id id;
  const char* name;
  int bytes;
};
constexpr std::array<fmt_info, 4> formats{{{fpscope::format_id::fp16, "fp16", 2},
                                           {fpscope::format_id::bf16, "bf16", 2},
                                           {fpscope::format_id::e4m3, "e4m3", 1},
                                           {fpscope::format_id::e5m2, "e5m2", 1}}};

struct op_info {
  op o;
  const char* name;
  int operands;
};
constexpr std::array<op_info, 3> ops{{{op::add, "add", 2}, {op::mul, "mul", 2}, {op::fma, "fma", 3}}};

enum class kind { typical, specials };
const char* kind_key(kind k) { return k == kind::typical ? "typical" : "specials"; }

constexpr double gen_lo = -8, gen_hi = 4;  // log2|x| uniform in [gen_lo, gen_hi)
constexpr double gen_zeros = 0.02, gen_specials = 0.01;

/// 64-byte aligned, zeroed (every page faulted in before any timing) bytes.
struct bytes_buffer {
  struct del {
    void operator()(unsigned char* p) const { std::free(p); }
  };
  std::unique_ptr<unsigned char, del> p;
  std::size_t size = 0;
  bytes_buffer() = default;
  explicit bytes_buffer(std::size_t bytes) : size(bytes) {
    const std::size_t b = (std::max<std::size_t>(bytes, 1) + 63) / 64 * 64;
    p.reset(static_cast<unsigned char*>(std::aligned_alloc(64, b)));
    if (!p) throw std::bad_alloc();
    std::memset(p.get(), 0, b);
  }
  template <class W>
  W* as() const {
    return reinterpret_cast<W*>(p.get());
  }
};

/// The operands a, b, c of one format and input kind, as codes.
struct operands {
  const fmt_info* f = nullptr;
  kind k = kind::typical;
  std::size_t n = 0;
  std::array<bytes_buffer, 3> x;
  std::size_t special_elements[3] = {0, 0, 0};  // elements with a NaN/inf among the first 2 or 3 operands
  template <class W>
  const W* get(int i) const {
    return x[std::size_t(i)].as<W>();
  }
};

/// A NaN or an infinity of f: for IEEE-style formats 40 % +-inf, 40 % quiet NaN with a random
/// payload, 20 % signalling NaN; e4m3 (fn) has only its NaN.
std::uint32_t special_code(const fpscope::format& f, std::uint64_t r) {
  const std::uint32_t sign = (r >> 63) ? f.sign_mask() : 0u;
  if (!f.has_inf()) return sign | (f.mask() & ~f.sign_mask());  // e4m3fn: S.1111.111
  const std::uint32_t inf = f.inf_bits(), quiet = std::uint32_t{1} << (f.man_bits - 1);
  const std::uint32_t payload = static_cast<std::uint32_t>(r >> 8) & (quiet - 1);
  const unsigned pick = static_cast<unsigned>(r % 10);
  if (pick < 4) return sign | inf;
  if (pick < 8) return sign | inf | quiet | payload;
  return sign | inf | (payload ? payload : 1u);  // signalling
}

template <class W>
void generate(const fmt_info& fi, kind k, W* out, std::size_t n, std::uint64_t seed) {
  const fpscope::format f = fpscope::builtin(fi.id);
  splitmix g{seed};
  constexpr std::size_t chunk = 4096;
  std::vector<float> v(chunk);
  for (std::size_t lo = 0; lo < n; lo += chunk) {
    const std::size_t m = std::min(chunk, n - lo);
    for (std::size_t i = 0; i < m; ++i) {
      const std::uint64_t r = g.next();
      const bool zero = double(r & 0xFFFFFFFFu) * 0x1p-32 < gen_zeros;
      const float mag = float(std::exp2(gen_lo + (gen_hi - gen_lo) * g.uniform()));
      v[i] = zero ? 0.0f : (r >> 63) ? -mag : mag;
    }
    fpscope::bulk_options o;
    o.threads = 1;
    fpscope::encode(std::span<const float>(v.data(), m), std::span<W>(out + lo, m), f, fpscope::policy{}, o);
  }
  if (k == kind::specials) {
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint64_t r = g.next();
      if (double(r & 0xFFFFFFFFu) * 0x1p-32 < gen_specials) out[i] = static_cast<W>(special_code(f, g.next()));
    }
  }
}

operands make_operands(const fmt_info& fi, kind k, std::size_t n, std::uint64_t seed) {
  operands d;
  d.f = &fi;
  d.k = k;
  d.n = n;
  const fpscope::format f = fpscope::builtin(fi.id);
  for (int j = 0; j < 3; ++j) {
    d.x[std::size_t(j)] = bytes_buffer(n * std::size_t(fi.bytes));
    const std::uint64_t s = seed * 131 + std::uint64_t(j) * 7919 + std::uint64_t(fi.id) * 104729;
    if (fi.bytes == 2) generate(fi, k, d.x[std::size_t(j)].as<std::uint16_t>(), n, s);
    else generate(fi, k, d.x[std::size_t(j)].as<std::uint8_t>(), n, s);
  }
  auto code = [&](int j, std::size_t i) -> std::uint32_t {
    return fi.bytes == 2 ? d.get<std::uint16_t>(j)[i] : d.get<std::uint8_t>(j)[i];
  };
  for (std::size_t i = 0; i < n; ++i) {
    bool any = false;
    for (int j = 0; j < 3; ++j) {
      const double v = fpscope::decode(code(j, i), f);
      any = any || !std::isfinite(v);
      if (j == 1) d.special_elements[1] += any;  // add, mul: a, b
      if (j == 2) d.special_elements[2] += any;  // fma: a, b, c
    }
  }
  return d;
}

struct checksum_t {
  std::uint64_t sum = 0;
  std::uint32_t xr = 0;
};
template <class W>
checksum_t checksum(const W* x, std::size_t n) {
  checksum_t c;
  for (std::size_t i = 0; i < n; ++i) {
    c.sum += x[i];
    c.xr ^= x[i];
  }
  return c;
}

// ----------------------------------------------------------------------------------------
// Kernels: fpscope, the hardware references, the streaming reference

template <class W>
void fp_apply(op o, const operands& d, W* out, std::size_t n, const fpscope::policy& p, int threads,
              std::size_t offset = 0) {
  const fpscope::format f = fpscope::builtin(d.f->id);
  fpscope::bulk_options opt;
  opt.threads = threads;
  const W* a = d.get<W>(0) + offset;
  const W* b = d.get<W>(1) + offset;
  const W* c = d.get<W>(2) + offset;
  fpscope::apply<W>(o, std::span<const W>(a, n), std::span<const W>(b, n),
                    o == op::fma ? std::span<const W>(c, n) : std::span<const W>(), std::span<W>(out + offset, n), f,
                    p, opt);
}

// Two threads on two halves, each a serial fpscope::apply: what the library's threads=2 call
// does above arith_parallel_threshold, at any size.
template <class W>
void fp_apply_split2(op o, const operands& d, W* out, std::size_t n, const fpscope::policy& p) {
#pragma omp parallel num_threads(2)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const std::size_t lo = (n * std::size_t(t) / std::size_t(nt)) & ~std::size_t{63};
    const std::size_t hi = t + 1 == nt ? n : (n * std::size_t(t + 1) / std::size_t(nt)) & ~std::size_t{63};
    fp_apply<W>(o, d, out, hi - lo, p, 1, lo);
  }
}

bool cpu_has(const char* what) {
#if BENCH_X86
  const std::string_view w(what);
  const fpscope::cpu_features& c = fpscope::cpu();
  if (w == "f16c") return c.f16c && c.avx2 && c.fma;
  if (w == "avx512f") return c.avx512f;
  if (w == "avx512bf16") return c.avx512bf16;
#endif
  (void)what;
  return false;
}

#if BENCH_X86
// fp16: F16C vcvtph2ps, the float op (vaddps, vmulps, vfmadd), vcvtps2ph nearest-even; 16
// elements per iteration in two ymm vectors. The tail goes through a zero-padded block.
template <op O>
[[gnu::target("avx2,fma,f16c"), gnu::noinline]] void f16c_arith(const std::uint16_t* __restrict a,
                                                                 const std::uint16_t* __restrict b,
                                                                 const std::uint16_t* __restrict c,
                                                                 std::uint16_t* __restrict out, std::size_t n) {
  auto body = [](const std::uint16_t* x, const std::uint16_t* y, const std::uint16_t* z, std::uint16_t* r) {
    for (int h = 0; h < 16; h += 8) {
      const __m256 u = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + h)));
      const __m256 v = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(y + h)));
      __m256 s;
      if constexpr (O == op::add) s = _mm256_add_ps(u, v);
      else if constexpr (O == op::mul) s = _mm256_mul_ps(u, v);
      else s = _mm256_fmadd_ps(u, v, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(z + h))));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(r + h), _mm256_cvtps_ph(s, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
  };
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) body(a + i, b + i, O == op::fma ? c + i : a + i, out + i);
  if (i < n) {
    std::uint16_t x[16] = {}, y[16] = {}, z[16] = {}, r[16];
    std::memcpy(x, a + i, (n - i) * 2);
    std::memcpy(y, b + i, (n - i) * 2);
    if (O == op::fma) std::memcpy(z, c + i, (n - i) * 2);
    body(x, y, z, r);
    std::memcpy(out + i, r, (n - i) * 2);
  }
}

// fp16 with AVX-512F: vcvtph2ps zmm, the float op, vcvtps2ph zmm; 32 per iteration.
template <op O>
[[gnu::target("avx512f"), gnu::noinline]] void avx512_fp16_arith(const std::uint16_t* __restrict a,
                                                                  const std::uint16_t* __restrict b,
                                                                  const std::uint16_t* __restrict c,
                                                                  std::uint16_t* __restrict out, std::size_t n) {
  auto body = [](const std::uint16_t* x, const std::uint16_t* y, const std::uint16_t* z, std::uint16_t* r) {
    for (int h = 0; h < 32; h += 16) {
      const __m512 u = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + h)));
      const __m512 v = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(y + h)));
      __m512 s;
      if constexpr (O == op::add) s = _mm512_add_ps(u, v);
      else if constexpr (O == op::mul) s = _mm512_mul_ps(u, v);
      else s = _mm512_fmadd_ps(u, v, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(z + h))));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(r + h), _mm512_cvtps_ph(s, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
  };
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) body(a + i, b + i, O == op::fma ? c + i : a + i, out + i);
  if (i < n) {
    std::uint16_t x[32] = {}, y[32] = {}, z[32] = {}, r[32];
    std::memcpy(x, a + i, (n - i) * 2);
    std::memcpy(y, b + i, (n - i) * 2);
    if (O == op::fma) std::memcpy(z, c + i, (n - i) * 2);
    body(x, y, z, r);
    std::memcpy(out + i, r, (n - i) * 2);
  }
}

// bf16: decode by a 16-bit shift left (vpmovzxwd, vpslld), the float op, AVX512-BF16
// vcvtne2ps2bf16 (nearest-even; float32 denormal inputs read as zero, denormal results
// flushed); 32 per iteration.
template <op O>
[[gnu::target("avx512f,avx512bf16"), gnu::noinline]] void avx512bf16_arith(const std::uint16_t* __restrict a,
                                                                            const std::uint16_t* __restrict b,
                                                                            const std::uint16_t* __restrict c,
                                                                            std::uint16_t* __restrict out,
                                                                            std::size_t n) {
  auto body = [](const std::uint16_t* x, const std::uint16_t* y, const std::uint16_t* z, std::uint16_t* r) {
    auto load = [](const std::uint16_t* p) {
      return _mm512_castsi512_ps(
          _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
    };
    __m512 s[2];
    for (int h = 0; h < 2; ++h) {
      const __m512 u = load(x + 16 * h), v = load(y + 16 * h);
      if constexpr (O == op::add) s[h] = _mm512_add_ps(u, v);
      else if constexpr (O == op::mul) s[h] = _mm512_mul_ps(u, v);
      else s[h] = _mm512_fmadd_ps(u, v, load(z + 16 * h));
    }
    const __m512bh q = _mm512_cvtne2ps_pbh(s[1], s[0]);  // low half from the second argument
    std::memcpy(r, &q, 64);
  };
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) body(a + i, b + i, O == op::fma ? c + i : a + i, out + i);
  if (i < n) {
    std::uint16_t x[32] = {}, y[32] = {}, z[32] = {}, r[32];
    std::memcpy(x, a + i, (n - i) * 2);
    std::memcpy(y, b + i, (n - i) * 2);
    if (O == op::fma) std::memcpy(z, c + i, (n - i) * 2);
    body(x, y, z, r);
    std::memcpy(out + i, r, (n - i) * 2);
  }
}
#endif

using hw_kernel = void (*)(const std::uint16_t*, const std::uint16_t*, const std::uint16_t*, std::uint16_t*,
                           std::size_t);
struct hw_info {
  const char* key;   // id part
  const char* name;  // what runs
  const char* format;
  const char* needs;  // cpu_has() feature
  std::array<hw_kernel, 3> k;  // by ops[]
};
const std::vector<hw_info>& hw_kernels() {
  static const std::vector<hw_info> v{
#if BENCH_X86
      {"f16c", "F16C ymm: vcvtph2ps, float op, vcvtps2ph", "fp16", "f16c",
       {f16c_arith<op::add>, f16c_arith<op::mul>, f16c_arith<op::fma>}},
      {"avx512", "AVX-512F zmm: vcvtph2ps, float op, vcvtps2ph", "fp16", "avx512f",
       {avx512_fp16_arith<op::add>, avx512_fp16_arith<op::mul>, avx512_fp16_arith<op::fma>}},
      {"avx512bf16", "AVX512-BF16 zmm: shift, float op, vcvtne2ps2bf16", "bf16", "avx512bf16",
       {avx512bf16_arith<op::add>, avx512bf16_arith<op::mul>, avx512bf16_arith<op::fma>}},
#endif
  };
  return v;
}

// Streaming reference: read the operands, write one word per element (a ^ b [^ c]): the same
// traffic as the arithmetic with next to no work.
template <class W, int K>
[[gnu::noinline]] void stream_ref(const W* __restrict a, const W* __restrict b, const W* __restrict c,
                                  W* __restrict out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    if constexpr (K == 3) out[i] = static_cast<W>(a[i] ^ b[i] ^ c[i]);
    else out[i] = static_cast<W>(a[i] ^ b[i]);
  }
}
template <class W, int K>
void stream_threads(const W* a, const W* b, const W* c, W* out, std::size_t n, int threads) {
  if (threads <= 1) return stream_ref<W, K>(a, b, c, out, n);
#pragma omp parallel num_threads(threads)
  {
    const std::size_t t = std::size_t(omp_get_thread_num()), nt = std::size_t(omp_get_num_threads());
    const std::size_t lo = n * t / nt, hi = n * (t + 1) / nt;
    stream_ref<W, K>(a + lo, b + lo, c + lo, out + lo, hi - lo);
  }
}

inline void escape(const void* p) { asm volatile("" : : "g"(p) : "memory"); }

/// CPU time of the whole machine (/proc/stat: busy and stolen by the host) and of this process
/// and its waited-for children (the peers' process once stopped), in seconds.
struct cpu_snapshot {
  double busy = 0, steal = 0, ours = 0, wall = 0;
  static cpu_snapshot now() {
    cpu_snapshot c;
    std::ifstream f("/proc/stat");
    std::string cpu;
    double v[8] = {};  // user nice system idle iowait irq softirq steal
    f >> cpu;
    for (double& x : v) f >> x;
    const double hz = double(sysconf(_SC_CLK_TCK));
    c.busy = (v[0] + v[1] + v[2] + v[5] + v[6]) / hz;
    c.steal = v[7] / hz;
    for (int who : {RUSAGE_SELF, RUSAGE_CHILDREN}) {
      rusage ru{};
      getrusage(who, &ru);
      c.ours += double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + 1e-6 * double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
    }
    c.wall = std::chrono::duration<double>(clk::now().time_since_epoch()).count();
    return c;
  }
};

// ----------------------------------------------------------------------------------------
// Measurement

double seconds(clk::duration d) { return std::chrono::duration<double>(d).count(); }

double cpu_s(clockid_t which) {
  timespec ts{};
  clock_gettime(which, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

// One implementation at one size: samples (seconds per call), one per round.
struct item {
  std::string id;      // unique, e.g. "fpscope/fp16/add/typical/t1"
  std::string group;   // fpscope, hardware, stream, peer
  std::string format;  // fp16, bf16, e4m3, e5m2 ("" for streams)
  std::string op;      // add, mul, fma ("" for streams)
  std::string impl;    // what runs
  kind input = kind::typical;
  int threads = 1;
  double bytes = 0;           // memory traffic per element (streams, hardware, fpscope)
  std::function<void()> run;  // C++ implementations
  std::string peer, data;     // peers: their id and data set name
  std::string na;             // non-empty: not available (why)
  std::vector<double> t;      // seconds per call, one per round (NaN: no sample)
  std::vector<double> cpu;    // thread CPU time / wall time of the sample (C++, 1 thread)
};

struct peer_desc {
  std::string id, format, op, lib, api, why;  // why: non-empty when skipped
  bool threaded = false;
};

/// Codes that differ: value_diff where not both are NaN (a NaN against a number counts),
/// nan_diff where both are NaN with other bits (sign, payload).
struct diff_count {
  std::size_t value_diff = 0, nan_diff = 0, nan_results = 0;
};

const std::array<std::pair<const char*, fpscope::profile>, 3> check_profiles{
    {{"ieee", fpscope::profile::ieee}, {"ml_dtypes", fpscope::profile::ml_dtypes}, {"cuda", fpscope::profile::cuda}}};

constexpr int settle_ms = 15, warm_ms = 20;

struct bench {
  options opt;
  peer_process py;
  bool peers_up = false;
  std::string peers_why;
  std::vector<peer_desc> peers;
  json peers_hello;
  std::filesystem::path tmp;
  json out = json::object();
  std::string text;
  std::vector<double> cpu_shares;  // 1-thread C++ samples
  json goals = json::array();

  template <class... A>
  void emit(fmt::format_string<A...> f, A&&... a) {
    text += fmt::format(f, std::forward<A>(a)...);
  }

  double sample_cxx(item& it, double min_s) {
    if (it.threads > 1) {  // wake the OpenMP worker, asleep since the settle pause (see measure)
      const auto w0 = clk::now();
      do it.run();
      while (seconds(clk::now() - w0) < warm_ms * 1e-3);
    }
    const double c0 = cpu_s(CLOCK_THREAD_CPUTIME_ID);
    const auto t0 = clk::now();
    int calls = 0;
    double el = 0;
    do {
      it.run();
      ++calls;
      el = seconds(clk::now() - t0);
    } while (el < min_s);
    // 1 thread: its CPU time / wall time; below 1, other load took the core during the sample.
    // (Another thread's CPU time is only seen at its ticks: too coarse for 2-thread samples,
    // which the machine-wide count in main() covers.)
    if (it.threads == 1) {
      const double share = (cpu_s(CLOCK_THREAD_CPUTIME_ID) - c0) / el;
      it.cpu.push_back(share);
      cpu_shares.push_back(share);
    }
    return el / calls;
  }

  double sample_peer(item& it, double min_s) {
    std::string why;
    auto r = py.request({{"cmd", "time"}, {"data", it.data}, {"peer", it.peer}, {"threads", it.threads},
                         {"min_s", min_s}, {"warm_s", it.threads > 1 ? warm_ms * 1e-3 : 0.0}}, why);
    if (!r) {
      it.na = "error: " + why;
      return NAN;
    }
    return (*r)["s"].get<double>();
  }

  // Every item once per round, in a fresh shuffled order each round.
  void measure(std::deque<item>& items, int rounds, double min_s, const std::string& label) {
    std::vector<item*> live;
    for (item& it : items)
      if (it.na.empty()) live.push_back(&it);
    for (item* it : live) {  // warm-up: caches, pages, first-call costs, the OpenMP team
      if (it->run) it->run();
      else sample_peer(*it, 0);
    }
    std::mt19937 shuffle(12345);
    for (int r = 0; r < rounds; ++r) {
      progress("  [{}] round {}/{}\r", label, r + 1, rounds);
      std::shuffle(live.begin(), live.end(), shuffle);
      for (item* it : live) {
        double t = NAN;
        if (it->na.empty()) t = it->run ? sample_cxx(*it, min_s) : sample_peer(*it, min_s);
        it->t.push_back(t);
        // After a 2-thread sample, the OpenMP workers (ours, or torch's in the peers' process)
        // spin for a few ms before they sleep: on two cores they would take one from the next
        // sample. Let them go to sleep first. A 2-thread sample then starts with warm_ms of
        // untimed calls: on a virtual machine, the first calls after an idle spell can wait
        // milliseconds for the worker's virtual CPU (the sweep's cold column measures that).
        if (it->threads > 1) std::this_thread::sleep_for(std::chrono::milliseconds(settle_ms));
      }
    }
    progress("  [{}] {} rounds done          \n", label, rounds);
  }

  // --------------------------------------------------------------------------------------
  void start_peers() {
    if (!opt.peers) {
      peers_why = "--no-peers";
    } else if (!py.start(opt.python, opt.script, peers_why)) {
      // peers_why says why
    } else if (auto h = py.request({{"cmd", "hello"}}, peers_why)) {
      peers_up = true;
      peers_hello = *h;
      for (const auto& p : (*h)["peers"])
        peers.push_back({p["id"].get<std::string>(), p["format"].get<std::string>(), p["op"].get<std::string>(),
                         p["lib"].get<std::string>(), p["api"].get<std::string>(), "", p["threaded"].get<bool>()});
      for (const auto& p : (*h)["skipped"])
        peers.push_back({p["id"].get<std::string>(), p["format"].get<std::string>(), p["op"].get<std::string>(),
                         p["lib"].get<std::string>(), "", p["why"].get<std::string>(), false});
    }
    if (!peers_up) {
      for (const char* lib : {"numpy", "torch", "ml_dtypes"})
        for (const auto& f : formats)
          for (const auto& o : ops) {
            const std::string fn = f.name, on = o.name, l = lib;
            const bool known = (l == "numpy" && fn == "fp16") || (l == "torch" && (fn == "fp16" || fn == "bf16")) ||
                               (l == "ml_dtypes" && fn != "fp16" && on != "fma");
            if (known) peers.push_back({l + "." + fn + "." + on, fn, on, l, "", peers_why, false});
          }
      progress("peers: all SKIPPED ({})\n", peers_why);
    }
  }

  // --------------------------------------------------------------------------------------
  // One size: data, items, measurement, checks, tables.
  struct size_run {
    std::size_t n;
    std::string label;
    int rounds;
    bool is_mem;
    std::map<std::pair<int, kind>, operands> data;  // (format index, kind)
    bytes_buffer o16, o8;                           // outputs: the items of a size run one at a time
    std::deque<item> items;
    std::map<std::string, item*> by_id;
  };

  item& add(size_run& s, item it) {
    s.items.push_back(std::move(it));
    item& ref = s.items.back();
    s.by_id[ref.id] = &ref;
    return ref;
  }
  static const item* find(const size_run& s, const std::string& id) {
    auto i = s.by_id.find(id);
    return i == s.by_id.end() ? nullptr : i->second;
  }

  static std::string data_name(const size_run& s, const fmt_info& f, kind k) {
    return fmt::format("{}-{}-{}", s.label, f.name, kind_key(k));
  }

  void run_size(size_run& s, json& jsizes) {
    const std::size_t n = s.n;
    progress("{}: n = {}: generating operands\n", s.label, n);
    {
      std::vector<std::pair<int, kind>> keys;
      for (int fi = 0; fi < int(formats.size()); ++fi)
        for (kind k : {kind::typical, kind::specials}) keys.push_back({fi, k});
      std::vector<operands> made(keys.size());
#pragma omp parallel for schedule(dynamic) num_threads(2)
      for (std::size_t i = 0; i < keys.size(); ++i)
        made[i] = make_operands(formats[std::size_t(keys[i].first)], keys[i].second, n,
                                keys[i].second == kind::typical ? 1 : 2);
      for (std::size_t i = 0; i < keys.size(); ++i) s.data.emplace(keys[i], std::move(made[i]));
    }
    s.o16 = bytes_buffer(n * 2);
    s.o8 = bytes_buffer(n);

    for (int fi = 0; fi < int(formats.size()); ++fi) {
      const fmt_info& f = formats[std::size_t(fi)];
      const fpscope::policy p = fpscope::profile_policy(fpscope::profile::ieee, fpscope::builtin(f.id));
      for (const op_info& o : ops)
        for (kind k : {kind::typical, kind::specials})
          for (int th : {1, 2}) {
            if (k == kind::specials && th == 2) continue;
            const operands* d = &s.data.at({fi, k});
            item it;
            it.id = fmt::format("fpscope/{}/{}/{}/t{}", f.name, o.name, kind_key(k), th);
            it.group = "fpscope";
            it.format = f.name;
            it.op = o.name;
            it.impl = fmt::format("fpscope::apply(op::{}, ...), threads={}", o.name, th);
            it.input = k;
            it.threads = th;
            it.bytes = double(f.bytes * (o.operands + 1));
            const op oo = o.o;
            if (f.bytes == 2) {
              std::uint16_t* w = s.o16.as<std::uint16_t>();
              it.run = [=] { fp_apply<std::uint16_t>(oo, *d, w, n, p, th); escape(w); };
            } else {
              std::uint8_t* w = s.o8.as<std::uint8_t>();
              it.run = [=] { fp_apply<std::uint8_t>(oo, *d, w, n, p, th); escape(w); };
            }
            add(s, std::move(it));
          }
    }
    for (const hw_info& h : hw_kernels()) {
      const int fi = std::string_view(h.format) == "fp16" ? 0 : 1;
      const operands* d = &s.data.at({fi, kind::typical});
      for (std::size_t oi = 0; oi < ops.size(); ++oi) {
        item it;
        it.id = fmt::format("hw/{}/{}", h.key, ops[oi].name);
        it.group = "hardware";
        it.format = h.format;
        it.op = ops[oi].name;
        it.impl = h.name;
        it.bytes = double(2 * (ops[oi].operands + 1));
        if (!cpu_has(h.needs)) {
          it.na = fmt::format("n/a (CPU lacks {})", h.needs);
        } else {
          const hw_kernel k = h.k[oi];
          std::uint16_t* w = s.o16.as<std::uint16_t>();
          it.run = [=] {
            k(d->get<std::uint16_t>(0), d->get<std::uint16_t>(1), d->get<std::uint16_t>(2), w, n);
            escape(w);
          };
        }
        add(s, std::move(it));
      }
    }
    for (int bytes : {2, 1})
      for (int K : {2, 3})
        for (int th : {1, 2}) {
          const operands* d = &s.data.at({bytes == 2 ? 0 : 2, kind::typical});
          item it;
          it.id = fmt::format("stream/w{}/k{}/t{}", bytes * 8, K, th);
          it.group = "stream";
          it.impl = fmt::format("stream: read {} x {} B, write {} B", K, bytes, bytes);
          it.threads = th;
          it.bytes = double(bytes * (K + 1));
          if (bytes == 2) {
            std::uint16_t* w = s.o16.as<std::uint16_t>();
            const std::uint16_t *a = d->get<std::uint16_t>(0), *b = d->get<std::uint16_t>(1), *c = d->get<std::uint16_t>(2);
            it.run = K == 2 ? std::function<void()>([=] { stream_threads<std::uint16_t, 2>(a, b, c, w, n, th); escape(w); })
                            : std::function<void()>([=] { stream_threads<std::uint16_t, 3>(a, b, c, w, n, th); escape(w); });
          } else {
            std::uint8_t* w = s.o8.as<std::uint8_t>();
            const std::uint8_t *a = d->get<std::uint8_t>(0), *b = d->get<std::uint8_t>(1), *c = d->get<std::uint8_t>(2);
            it.run = K == 2 ? std::function<void()>([=] { stream_threads<std::uint8_t, 2>(a, b, c, w, n, th); escape(w); })
                            : std::function<void()>([=] { stream_threads<std::uint8_t, 3>(a, b, c, w, n, th); escape(w); });
          }
          add(s, std::move(it));
        }

    // Peers: the same codes through .npy files, checked by checksum on the Python side. The
    // NaN/inf operands only in cache, for the checks.
    std::map<std::string, std::string> load_fail;  // data name -> why
    bool loaded = peers_up && py.running();
    std::vector<std::string> names;
    if (loaded) {
      for (int fi = 0; fi < int(formats.size()); ++fi)
        for (kind k : {kind::typical, kind::specials}) {
          const fmt_info& f = formats[std::size_t(fi)];
          if (k == kind::specials && s.is_mem) continue;
          if (std::none_of(peers.begin(), peers.end(), [&](const peer_desc& p) { return p.why.empty() && p.format == f.name; }))
            continue;
          const operands& d = s.data.at({fi, k});
          const std::string name = data_name(s, f, k);
          json paths = json::array(), sums = json::array(), xors = json::array();
          for (int j = 0; j < 3; ++j) {
            const std::string path = (tmp / fmt::format("{}-{}.npy", name, "abc"[j])).string();
            checksum_t c;
            if (f.bytes == 2) {
              fpscope::npy_save(path, fpscope::npy_dtype::u2, {n}, std::span<const std::uint16_t>(d.get<std::uint16_t>(j), n));
              c = checksum(d.get<std::uint16_t>(j), n);
            } else {
              fpscope::npy_save(path, fpscope::npy_dtype::u1, {n}, std::span<const std::uint8_t>(d.get<std::uint8_t>(j), n));
              c = checksum(d.get<std::uint8_t>(j), n);
            }
            paths.push_back(path);
            sums.push_back(c.sum);
            xors.push_back(c.xr);
          }
          std::string why;
          if (!py.request({{"cmd", "load"}, {"name", name}, {"paths", paths}, {"sums", sums}, {"xors", xors}}, why))
            load_fail[name] = why;
          else
            names.push_back(name);
          for (const auto& pth : paths) std::filesystem::remove(pth.get<std::string>());
        }
    }
    for (const peer_desc& p : peers)
      for (int th : {1, 2}) {
        if (th == 2 && !p.threaded) continue;
        const fmt_info& f = *std::find_if(formats.begin(), formats.end(), [&](const fmt_info& x) { return p.format == x.name; });
        item it;
        it.id = fmt::format("peer/{}/t{}", p.id, th);
        it.group = "peer";
        it.format = p.format;
        it.op = p.op;
        it.impl = p.api.empty() ? p.id : p.api;
        it.threads = th;
        it.peer = p.id;
        it.data = data_name(s, f, kind::typical);
        if (!p.why.empty()) it.na = "n/a (SKIPPED: " + p.why + ")";
        else if (!loaded) it.na = "n/a (SKIPPED: " + peers_why + ")";
        else if (load_fail.count(it.data)) it.na = "n/a (SKIPPED: " + load_fail[it.data] + ")";
        add(s, std::move(it));
      }

    json checks = json::array();
    if (!s.is_mem) checks = cross_check(s, loaded);

    measure(s.items, s.rounds, s.is_mem ? 0.0 : opt.min_ms * 1e-3, s.label);
    std::string why;
    for (const auto& nm : names) py.request({{"cmd", "forget"}, {"name", nm}}, why);

    report_size(s, checks, jsizes);
  }

  // --------------------------------------------------------------------------------------
  // Are we comparing the same work? In cache, on both input kinds.

  // fpscope's codes (as uint32) of op o on d under policy p; variant: "fpscope" (the op),
  // "mul+add" (fma as two roundings in the format), "f32fma" (fma as one binary32 fma rounded
  // once to the format).
  std::vector<std::uint32_t> ours(const operands& d, op o, const fpscope::policy& p, const std::string& variant,
                                  int threads = 1) {
    const std::size_t n = d.n;
    const fpscope::format f = fpscope::builtin(d.f->id);
    std::vector<std::uint32_t> r(n);
    auto run = [&](auto w) {
      using W = decltype(w);
      std::vector<W> t(n);
      if (variant == "fpscope") {
        fp_apply<W>(o, d, t.data(), n, p, threads);
      } else if (variant == "mul+add") {
        std::vector<W> prod(n);
        fp_apply<W>(op::mul, d, prod.data(), n, p, 1);
        for (std::size_t i = 0; i < n; ++i) t[i] = static_cast<W>(fpscope::apply(op::add, prod[i], d.get<W>(2)[i], 0, f, p));
      } else {  // f32fma
        std::vector<float> x(n), y(n), z(n), s(n);
        fpscope::decode(std::span<const W>(d.get<W>(0), n), std::span<float>(x), f);
        fpscope::decode(std::span<const W>(d.get<W>(1), n), std::span<float>(y), f);
        fpscope::decode(std::span<const W>(d.get<W>(2), n), std::span<float>(z), f);
        for (std::size_t i = 0; i < n; ++i) s[i] = std::fma(x[i], y[i], z[i]);
        fpscope::bulk_options bo;
        bo.threads = 1;
        fpscope::encode(std::span<const float>(s), std::span<W>(t), f, p, bo);
      }
      std::copy(t.begin(), t.end(), r.begin());
    };
    if (d.f->bytes == 2) run(std::uint16_t{});
    else run(std::uint8_t{});
    return r;
  }

  static diff_count compare(const std::vector<std::uint32_t>& a, const std::vector<std::uint32_t>& b,
                            const fpscope::format& f) {
    diff_count c;
    for (std::size_t i = 0; i < a.size(); ++i) {
      const bool na = std::isnan(fpscope::decode(a[i], f)), nb = std::isnan(fpscope::decode(b[i], f));
      c.nan_results += na;
      if (a[i] == b[i]) continue;
      ++(na && nb ? c.nan_diff : c.value_diff);
    }
    return c;
  }

  json check_row(const std::string& who, const operands& d, const std::string& opn, const std::string& against,
                 const char* profile, const diff_count& c) {
    return {{"who", who}, {"format", d.f->name}, {"op", opn}, {"input", kind_key(d.k)}, {"against", against},
            {"profile", profile}, {"n", d.n}, {"differ_values", c.value_diff}, {"differ_nan_bits", c.nan_diff},
            {"nan_results", c.nan_results}};
  }

  // The closest fpscope profile for `theirs` (fewest value differences, then NaN ones), and for
  // fma peers the double-rounded variants under it.
  void check_against(json& checks, const std::string& who, const operands& d, const op_info& o,
                     const std::vector<std::uint32_t>& theirs, bool fma_variants) {
    const fpscope::format f = fpscope::builtin(d.f->id);
    std::size_t best_i = 0;
    diff_count best;
    for (std::size_t i = 0; i < check_profiles.size(); ++i) {
      const diff_count c = compare(ours(d, o.o, fpscope::profile_policy(check_profiles[i].second, f), "fpscope"), theirs, f);
      if (i == 0 || c.value_diff < best.value_diff || (c.value_diff == best.value_diff && c.nan_diff < best.nan_diff)) {
        best = c;
        best_i = i;
      }
    }
    const fpscope::policy p = fpscope::profile_policy(check_profiles[best_i].second, f);
    checks.push_back(check_row(who, d, o.name, fmt::format("fpscope {}", o.name), check_profiles[best_i].first, best));
    if (fma_variants && o.o == op::fma) {
      for (const char* v : {"mul+add", "f32fma"})
        checks.push_back(check_row(who, d, o.name,
                                   std::string(v) == "mul+add" ? "fpscope mul, then fpscope add (two roundings)"
                                                               : "binary32 fma, then one rounding (fpscope encode)",
                                   check_profiles[best_i].first, compare(ours(d, op::fma, p, v), theirs, f)));
    }
  }

  json cross_check(size_run& s, bool loaded) {
    progress("{}: checking the work is the same (bulk vs scalar, hardware, peers)\n", s.label);
    json checks = json::array();
    // 1. The bulk path against the scalar apply, every format, op, input kind, 1 and 2 threads.
    for (int fi = 0; fi < int(formats.size()); ++fi)
      for (kind k : {kind::typical, kind::specials}) {
        const operands& d = s.data.at({fi, k});
        const fpscope::format f = fpscope::builtin(d.f->id);
        const fpscope::policy p = fpscope::profile_policy(fpscope::profile::ieee, f);
        for (const op_info& o : ops) {
          std::vector<std::uint32_t> ref(d.n);
          for (std::size_t i = 0; i < d.n; ++i) {
            const auto code = [&](int j) -> std::uint32_t {
              return d.f->bytes == 2 ? d.get<std::uint16_t>(j)[i] : d.get<std::uint8_t>(j)[i];
            };
            ref[i] = fpscope::apply(o.o, code(0), code(1), o.o == op::fma ? code(2) : 0u, f, p, i);
          }
          for (int th : {1, 2})
            checks.push_back(check_row(fmt::format("fpscope bulk apply, threads={}", th), d, o.name,
                                       "fpscope scalar apply", "ieee", compare(ours(d, o.o, p, "fpscope", th), ref, f)));
        }
      }
    // 2. The hardware references.
    for (const hw_info& h : hw_kernels()) {
      if (!cpu_has(h.needs)) continue;
      const int fi = std::string_view(h.format) == "fp16" ? 0 : 1;
      for (kind k : {kind::typical, kind::specials}) {
        const operands& d = s.data.at({fi, k});
        for (std::size_t oi = 0; oi < ops.size(); ++oi) {
          std::vector<std::uint16_t> w(d.n);
          h.k[oi](d.get<std::uint16_t>(0), d.get<std::uint16_t>(1), d.get<std::uint16_t>(2), w.data(), d.n);
          check_against(checks, h.name, d, ops[oi], std::vector<std::uint32_t>(w.begin(), w.end()), true);
        }
      }
    }
    // 3. The peers.
    if (!loaded) return checks;
    for (const peer_desc& pd : peers) {
      if (!pd.why.empty()) continue;
      const int fi = int(std::find_if(formats.begin(), formats.end(), [&](const fmt_info& x) { return pd.format == x.name; }) -
                         formats.begin());
      const op_info& o = *std::find_if(ops.begin(), ops.end(), [&](const op_info& x) { return pd.op == x.name; });
      for (kind k : {kind::typical, kind::specials}) {
        const operands& d = s.data.at({fi, k});
        const std::string path = (tmp / (pd.id + ".npy")).string();
        std::string why;
        if (!py.request({{"cmd", "output"}, {"data", data_name(s, *d.f, k)}, {"peer", pd.id}, {"path", path}}, why)) {
          checks.push_back({{"who", pd.id}, {"format", pd.format}, {"op", pd.op}, {"input", kind_key(k)}, {"error", why}});
          continue;
        }
        try {
          fpscope::npy_reader r(path);
          std::vector<std::uint32_t> theirs(d.n);
          if (d.f->bytes == 2) {
            auto v = r.values<std::uint16_t>();
            std::copy(v.begin(), v.end(), theirs.begin());
          } else {
            auto v = r.values<std::uint8_t>();
            std::copy(v.begin(), v.end(), theirs.begin());
          }
          check_against(checks, pd.id, d, o, theirs, true);
        } catch (const std::exception& e) {
          checks.push_back({{"who", pd.id}, {"format", pd.format}, {"op", pd.op}, {"input", kind_key(k)}, {"error", e.what()}});
        }
        std::filesystem::remove(path);
      }
    }
    return checks;
  }

  // --------------------------------------------------------------------------------------
  // Reporting

  static std::string gops(double s_per_call, std::size_t n) {
    return std::isfinite(s_per_call) ? fmt::format("{:.2f}", double(n) / s_per_call * 1e-9) : "n/a";
  }
  static std::string rate_cell(const item& it, std::size_t n) {
    if (!it.na.empty()) return it.na;
    return fmt::format("{} ({})", gops(median(it.t), n), gops(minimum(it.t), n));
  }
  static std::string verdict(double med, double best, double goal) {
    return med >= goal ? " PASS" : best >= goal ? " MISS (best passes)" : " MISS";
  }
  static std::string ratio_cell(const ratio& r, int digits = 2) {
    if (!r.ok()) return "n/a";
    return fmt::format("{:.{}f} ({:.{}f})", r.median, digits, r.best, digits);
  }

  void goal(const std::string& name, const std::string& where, double measured, double best, double target,
            const std::string& unit) {
    json g = {{"goal", name}, {"where", where}, {"target", target}, {"unit", unit}};
    if (std::isfinite(measured)) {
      g["measured_median"] = measured;
      g["measured_best"] = best;
      g["pass"] = measured >= target;
      g["best_passes"] = best >= target;
    } else {
      g["measured_median"] = nullptr;
      g["pass"] = nullptr;
    }
    goals.push_back(g);
  }

  static json item_json(const item& it, std::size_t n) {
    json j = {{"id", it.id}, {"group", it.group}, {"format", it.format}, {"op", it.op}, {"impl", it.impl},
              {"input", kind_key(it.input)}, {"threads", it.threads}};
    if (!it.na.empty()) {
      j["na"] = it.na;
      return j;
    }
    j["samples_s"] = it.t;
    j["median_s"] = median(it.t);
    j["min_s"] = minimum(it.t);
    j["median_ops_per_s"] = double(n) / median(it.t);
    j["best_ops_per_s"] = double(n) / minimum(it.t);
    if (!it.cpu.empty()) j["cpu_share_median"] = median(it.cpu);
    return j;
  }

  void report_size(size_run& s, const json& checks, json& jsizes) {
    const std::size_t n = s.n;
    const std::size_t rounds = std::size_t(s.rounds);
    json js = {{"label", s.label}, {"n", n}, {"rounds", s.rounds}, {"items", json::array()}, {"rows", json::array()},
               {"checks", checks}};
    for (const item& it : s.items) js["items"].push_back(item_json(it, n));

    emit("\n## {}: n = {} elements per operand, {} interleaved rounds\n\n", s.label, n, s.rounds);
    emit("Gops/s = 1e9 elements per second (one add, mul or fma per element): median over rounds (best round). "
         "Ratios x = fpscope's speed / the other's, paired per round: median (best/best).\n\n");

    // References.
    std::vector<std::vector<std::string>> rrows;
    for (const item& it : s.items)
      if (it.group == "hardware" || it.group == "stream") {
        const std::string gbs =
            it.na.empty() ? fmt::format("{:.1f}", it.bytes * double(n) / median(it.t) * 1e-9) : std::string("-");
        rrows.push_back({it.impl, it.format.empty() ? "-" : it.format, it.op.empty() ? "-" : it.op,
                         std::to_string(it.threads), rate_cell(it, n), gbs});
      }
    emit("### Hardware reference (the host's float arithmetic between hardware conversions) and bandwidth\n\n"
         "fp16 and bf16 fma here is a binary32 fma rounded once more to the format: double rounding, NOT "
         "correctly rounded (a speed reference, not a correctness one). add and mul are correctly rounded "
         "(binary32 has 24 >= 2p + 2 bits: Figueroa). e4m3 and e5m2 have no x86 instruction.\n\n{}\n",
         table({"kernel", "format", "op", "threads", "Gops/s median (best)", "GB/s median"}, rrows));

    auto peer_best = [&](const std::string& lib, const fmt_info& f, const op_info& o,
                         int th) -> std::pair<std::vector<double>, std::string> {
      std::vector<const item*> its;
      std::string na;
      for (const item& it : s.items)
        if (it.group == "peer" && it.format == f.name && it.op == o.name && it.threads == th &&
            it.peer.rfind(lib + ".", 0) == 0) {
          if (it.na.empty()) its.push_back(&it);
          else na = it.na;
        }
      if (its.empty()) return {{}, na.empty() ? "-" : na};
      return {fastest(its, rounds), ""};
    };

    // One core.
    std::vector<std::vector<std::string>> rows;
    for (const auto& f : formats)
      for (const auto& o : ops) {
        const item& me = *find(s, fmt::format("fpscope/{}/{}/typical/t1", f.name, o.name));
        std::vector<const item*> hw;
        std::string hw_na = "none (no x86 instruction)";
        for (const item& it : s.items)
          if (it.group == "hardware" && it.format == f.name && it.op == o.name) {
            if (it.na.empty()) hw.push_back(&it);
            else hw_na = it.na;
          }
        const ratio r_hw = hw.empty() ? ratio{} : time_ratio(me.t, fastest(hw, rounds));
        const item& st = *find(s, fmt::format("stream/w{}/k{}/t1", f.bytes * 8, o.operands));
        const ratio r_st = time_ratio(me.t, st.t);
        const auto [np_t, np_na] = peer_best("numpy", f, o, 1);
        const auto [to_t, to_na] = peer_best("torch", f, o, 1);
        const auto [ml_t, ml_na] = peer_best("ml_dtypes", f, o, 1);
        const ratio r_np = np_na.empty() ? time_ratio(me.t, np_t) : ratio{};
        const ratio r_to = to_na.empty() ? time_ratio(me.t, to_t) : ratio{};
        const ratio r_ml = ml_na.empty() ? time_ratio(me.t, ml_t) : ratio{};
        const double med = double(n) / median(me.t), best = double(n) / minimum(me.t);
        goal("per core >= 1e9 ops/s (nearest-even, 1 thread)", fmt::format("{} {} {}", s.label, f.name, o.name), med,
             best, 1e9, "ops/s");
        const bool dbl = o.o == op::fma && !hw.empty();
        rows.push_back({f.name, o.name, rate_cell(me, n) + verdict(med, best, 1e9),
                        hw.empty() ? hw_na : ratio_cell(r_hw) + (dbl ? " (ref. double-rounded)" : ""),
                        ratio_cell(r_st), r_np.ok() ? ratio_cell(r_np, 1) : np_na, r_to.ok() ? ratio_cell(r_to, 1) : to_na,
                        r_ml.ok() ? ratio_cell(r_ml, 1) : ml_na});
        js["rows"].push_back({{"format", f.name}, {"op", o.name}, {"median_ops_per_s", med}, {"best_ops_per_s", best},
                              {"vs_hardware", {r_hw.median, r_hw.best}}, {"vs_stream", {r_st.median, r_st.best}},
                              {"vs_numpy", {r_np.median, r_np.best}}, {"vs_torch", {r_to.median, r_to.best}},
                              {"vs_ml_dtypes", {r_ml.median, r_ml.best}}});
      }
    emit("### fpscope, one core (threads=1), typical operands\n\n"
         "x hardware: against the fastest hardware kernel of that format and op in each round (fp16: F16C ymm "
         "or AVX-512F zmm; bf16: AVX512-BF16). x stream: against reading the operands and writing the result. "
         "Peers: the library's call on its own dtype, 1 thread.\n\n{}\n",
         table({"format", "op", "fpscope Gops/s (goal >= 1)", "x hardware", "x stream", "x numpy", "x torch 1T",
                "x ml_dtypes"},
               rows));

    // Two cores.
    std::vector<std::vector<std::string>> trows;
    for (const auto& f : formats)
      for (const auto& o : ops) {
        const item& t1 = *find(s, fmt::format("fpscope/{}/{}/typical/t1", f.name, o.name));
        const item& t2 = *find(s, fmt::format("fpscope/{}/{}/typical/t2", f.name, o.name));
        const ratio sp = time_ratio(t2.t, t1.t);
        const double per_core = double(n) / median(t2.t) / 2;
        const item* p2 = find(s, fmt::format("peer/torch.{}.{}/t2", f.name, o.name));
        const item* p1 = find(s, fmt::format("peer/torch.{}.{}/t1", f.name, o.name));
        const std::string tsp = p2 && p1 ? (p2->na.empty() && p1->na.empty() ? ratio_cell(time_ratio(p2->t, p1->t)) : p2->na)
                                         : std::string("-");
        trows.push_back({f.name, o.name, rate_cell(t1, n), rate_cell(t2, n), ratio_cell(sp),
                         fmt::format("{:.2f}", per_core * 1e-9), tsp});
        js["rows_2t"].push_back({{"format", f.name}, {"op", o.name}, {"speedup", {sp.median, sp.best}},
                                 {"per_core_ops_per_s", per_core}});
      }
    {
      const item& s1 = *find(s, "stream/w16/k2/t1");
      const item& s2 = *find(s, "stream/w16/k2/t2");
      emit("### Second core: fpscope threads=2 vs threads=1 (library path; an explicit threads=2 runs parallel "
           "at any size, arith_parallel_threshold = {} governs threads=0)\n\n"
           "The stream reference (read 2 x 2 B, write 2 B) gains {} from a second thread here.\n\n{}\n",
           fpscope::arith_parallel_threshold,
           ratio_cell(time_ratio(s2.t, s1.t)),
           table({"format", "op", "1 thread Gops/s", "2 threads Gops/s", "speed-up", "2T Gops/s per core",
                  "torch speed-up 2T/1T"},
                 trows));
    }

    // The scalar fallback.
    std::vector<std::vector<std::string>> frows;
    for (int fi = 0; fi < int(formats.size()); ++fi)
      for (const auto& o : ops) {
        const fmt_info& f = formats[std::size_t(fi)];
        const item& a = *find(s, fmt::format("fpscope/{}/{}/typical/t1", f.name, o.name));
        const item& b = *find(s, fmt::format("fpscope/{}/{}/specials/t1", f.name, o.name));
        const operands& d = s.data.at({fi, kind::specials});
        const std::size_t redone = d.special_elements[o.operands - 1];
        const ratio slow = time_ratio(a.t, b.t);
        const double extra_ns = (median(b.t) - median(a.t)) / double(redone) * 1e9;
        frows.push_back({f.name, o.name, rate_cell(a, n), rate_cell(b, n), ratio_cell(slow),
                         fmt::format("{:.2f} %", 100.0 * double(redone) / double(n)), fmt::format("{:.0f}", extra_ns)});
        js["rows_specials"].push_back({{"format", f.name}, {"op", o.name}, {"slowdown", {slow.median, slow.best}},
                                       {"elements_redone", redone}, {"extra_ns_per_redone_element", extra_ns}});
      }
    emit("### NaN/inf operands: 1 % of each operand a NaN or an infinity (the scalar fallback), 1 thread\n\n"
         "Elements with a NaN/inf operand are computed by the vector pass, then redone by the scalar apply.\n\n{}\n",
         table({"format", "op", "typical Gops/s", "1% NaN/inf Gops/s", "time x typical", "elements redone",
                "extra ns per redone element"},
               frows));

    // Peers, raw.
    std::vector<std::vector<std::string>> prows;
    for (const item& it : s.items)
      if (it.group == "peer")
        prows.push_back({it.format, it.op, it.peer, std::to_string(it.threads), it.impl, rate_cell(it, n)});
    emit("### Peers (same operands, interleaved with the rows above)\n\n{}\n",
         table({"format", "op", "peer", "threads", "call", "Gops/s median (best)"}, prows));

    if (!checks.empty()) {
      std::vector<std::vector<std::string>> crows;
      std::size_t bulk_ok = 0, bulk_total = 0;
      for (const auto& c : checks) {
        if (c.contains("error")) {
          crows.push_back({c["who"], c["format"], c["op"], c["input"], "-", "-", "error: " + c["error"].get<std::string>()});
          continue;
        }
        const auto v = c["differ_values"].get<std::size_t>(), nb = c["differ_nan_bits"].get<std::size_t>();
        const std::string who = c["who"];
        if (who.rfind("fpscope bulk", 0) == 0) {  // summarised below, listed only when they differ
          ++bulk_total;
          if (v == 0 && nb == 0) {
            ++bulk_ok;
            continue;
          }
        }
        const std::string res = v == 0 && nb == 0 ? "bit-identical"
                                : v == 0 ? fmt::format("identical but for the bits of {} of {} NaN results", nb,
                                                       c["nan_results"].get<std::size_t>())
                                         : fmt::format("{} DIFFER ({:.3f} %){}", v, 100.0 * double(v) / double(s.n),
                                                       nb ? fmt::format(", + NaN bits of {}", nb) : std::string());
        crows.push_back({who, c["format"], c["op"], c["input"] == "typical" ? "typical" : "1% NaN/inf",
                         c["against"], c["profile"], res});
      }
      emit("### Same work? Result codes on the in-cache operands ({} elements), bit for bit\n\n"
           "fpscope's bulk apply against its scalar apply: {} of {} (format, op, input, threads) cases "
           "bit-identical{}. Every other result set is set against fpscope under the closest profile (fewest "
           "differences; NaN results differ only by the NaN rules of a profile). For an fma done in two steps, "
           "also against fpscope mul then add, and against a binary32 fma rounded once to the format: the row "
           "with 0 differences says what the peer computes.\n\n{}\n",
           s.n, bulk_ok, bulk_total, bulk_ok == bulk_total ? "" : " (the others are listed)",
           table({"who", "format", "op", "input", "against", "profile", "result"}, crows));
      emit("Reading it: a value difference in an fma row against `fpscope fma` is a double rounding (the row "
           "with 0 differences says what was computed). NaN bits: a profile has one NaN rule; torch's bfloat16 "
           "gives +NaN 0x7FC0 whatever the operands, and in ml_dtypes the NaN's sign follows the float operation "
           "compiled into its ufunc (which NaN operand x86 returns depends on the operand order the compiler "
           "chose).\n\n");
      js["bulk_vs_scalar"] = {{"identical", bulk_ok}, {"cases", bulk_total}};
    }
    jsizes.push_back(js);
  }

  // --------------------------------------------------------------------------------------
  // OpenMP crossover: two threads (two halves, each a serial apply) against one.
  void sweep() {
    constexpr int e_lo = 10, e_hi = 22;
    progress("sweep: sizes 2^{}..2^{}, {} rounds\n", e_lo, e_hi, opt.rounds_sweep);
    const std::size_t max_n = std::size_t{1} << e_hi;
    struct series {
      const char* name;
      int fi;
      op o;
      bool cold;
    };
    const std::array<series, 3> ser{{{"fp16 add", 0, op::add, true}, {"fp16 fma", 0, op::fma, false},
                                     {"e4m3 add", 2, op::add, false}}};
    std::map<int, operands> data;
    for (const series& z : ser)
      if (!data.count(z.fi)) data.emplace(z.fi, make_operands(formats[std::size_t(z.fi)], kind::typical, max_n, 3));
    bytes_buffer o(max_n * 2);
    struct cell {
      std::vector<double> t1, t2, lib2, t1c, t2c;
    };
    std::map<std::pair<int, std::size_t>, cell> cells;  // (series, n)
    const double min_s = 1e-3;
    auto timed = [&](auto&& f) {
      const auto t0 = clk::now();
      int calls = 0;
      double el = 0;
      do {
        f();
        ++calls;
        el = seconds(clk::now() - t0);
      } while (el < min_s);
      return el / calls;
    };
    // After 20 ms in which the calling thread computes (busy-waits here) and the OpenMP worker,
    // idle, has gone to sleep: a sporadic call in an application. (With the calling thread
    // asleep too, both virtual CPUs of this kind of machine go idle and a call can wait
    // milliseconds for the worker's.)
    auto once = [&](auto&& f) {
      const auto s0 = clk::now();
      while (seconds(clk::now() - s0) < 20e-3) {
      }
      const auto t0 = clk::now();
      f();
      return seconds(clk::now() - t0);
    };
    auto call = [&](const series& z, std::size_t n, int how) {  // how: 1 serial, 2 split, 3 library threads=2
      const operands& d = data.at(z.fi);
      const fpscope::policy p{};
      auto go = [&](auto* w) {
        using W = std::remove_pointer_t<decltype(w)>;
        if (how == 1) fp_apply<W>(z.o, d, w, n, p, 1);
        else if (how == 2) fp_apply_split2<W>(z.o, d, w, n, p);
        else fp_apply<W>(z.o, d, w, n, p, 2);
        escape(w);
      };
      if (d.f->bytes == 2) go(o.as<std::uint16_t>());
      else go(o.as<std::uint8_t>());
    };
    std::vector<std::size_t> sizes;
    for (int e = e_lo; e <= e_hi; ++e) sizes.push_back(std::size_t{1} << e);
    call(ser[0], max_n, 2);  // warm-up: the OpenMP team exists before the first sample
    for (int r = 0; r < opt.rounds_sweep; ++r) {
      progress("  [sweep] round {}/{}\r", r + 1, opt.rounds_sweep);
      // Hot, after 20 ms of untimed two-thread calls: the first calls after an idle spell can
      // wait milliseconds for the worker's virtual CPU, which would land in a 1 ms sample.
      const auto w0 = clk::now();
      do call(ser[0], std::size_t{1} << 16, 2);
      while (seconds(clk::now() - w0) < warm_ms * 1e-3);
      for (std::size_t n : sizes)
        for (int si = 0; si < int(ser.size()); ++si) {
          const series& z = ser[std::size_t(si)];
          cell& c = cells[{si, n}];
          auto one = [&] { call(z, n, 1); };
          auto two = [&] { call(z, n, 2); };
          if (r % 2) {
            c.t1.push_back(timed(one));
            c.t2.push_back(timed(two));
          } else {
            c.t2.push_back(timed(two));
            c.t1.push_back(timed(one));
          }
          if (n >= fpscope::arith_parallel_threshold) c.lib2.push_back(timed([&] { call(z, n, 3); }));
        }
      // Cold, after the hot ones: single calls after 20 ms without a parallel region.
      for (std::size_t n : sizes)
        for (int si = 0; si < int(ser.size()); ++si) {
          const series& z = ser[std::size_t(si)];
          if (!z.cold) continue;
          cell& c = cells[{si, n}];
          c.t1c.push_back(once([&] { call(z, n, 1); }));
          c.t2c.push_back(once([&] { call(z, n, 2); }));
        }
    }
    progress("  [sweep] {} rounds done          \n", opt.rounds_sweep);

    // Crossover: the smallest size from which two threads beat one at every larger size too.
    auto crossover = [&](auto speedup_of, double above) -> std::optional<std::size_t> {
      std::optional<std::size_t> x0;
      for (auto it = sizes.rbegin(); it != sizes.rend(); ++it) {
        if (speedup_of(*it) > above) x0 = *it;
        else break;
      }
      return x0;
    };
    json jsw = {{"rounds", opt.rounds_sweep}, {"sizes", json::array()}, {"crossover", json::object()}};
    std::vector<std::string> head{"n"};
    for (const series& z : ser) {
      head.push_back(fmt::format("{} 1T Gops/s", z.name));
      head.push_back(fmt::format("{} hot 2T/1T", z.name));
    }
    head.push_back("fp16 add cold 2T/1T");
    head.push_back("fp16 add library threads=2 / 1");
    std::vector<std::vector<std::string>> rows;
    for (std::size_t n : sizes) {
      std::vector<std::string> row{fmt::format("2^{} = {}", std::countr_zero(n), n)};
      json jn = {{"n", n}};
      for (int si = 0; si < int(ser.size()); ++si) {
        const cell& c = cells[{si, n}];
        const ratio sp = time_ratio(c.t2, c.t1);
        row.push_back(gops(median(c.t1), n));
        row.push_back(ratio_cell(sp));
        jn[ser[std::size_t(si)].name] = {{"t1_s", median(c.t1)}, {"t2_s", median(c.t2)}, {"speedup", sp.median},
                                         {"speedup_best", sp.best}};
      }
      const cell& c0 = cells[{0, n}];
      const ratio cold = time_ratio(c0.t2c, c0.t1c);
      row.push_back(ratio_cell(cold));
      jn["fp16 add cold"] = {{"t1_s", median(c0.t1c)}, {"t2_s", median(c0.t2c)}, {"speedup", cold.median}};
      if (!c0.lib2.empty()) {
        const ratio lib = time_ratio(c0.lib2, c0.t1);
        row.push_back(ratio_cell(lib));
        jn["fp16 add library t2 speedup"] = lib.median;
      } else {
        row.push_back("serial (< threshold)");
      }
      rows.push_back(row);
      jsw["sizes"].push_back(jn);
    }
    emit("\n## OpenMP crossover: where 2 threads start to beat 1 (typical operands, {} rounds)\n\n", opt.rounds_sweep);
    emit("hot: back-to-back calls, the OpenMP worker still spinning; 2T = two halves, each a serial\n"
         "fpscope::apply, in one `omp parallel num_threads(2)` (the library's threads=2 path with threshold 0).\n"
         "cold: one call after 20 ms of other work on the calling thread (busy-wait; the worker has gone to sleep),\n"
         "as for sporadic calls in an application.\n"
         "Samples: hot {} ms of repeated calls; cold a single call. Cells: speed-up median (best/best).\n\n{}\n",
         min_s * 1e3, table(head, rows));

    std::size_t worst = 0;
    bool all_found = true;
    std::string lines;
    for (int si = 0; si < int(ser.size()); ++si) {
      auto sp = [&](std::size_t n) {
        const cell& c = cells[{si, n}];
        return time_ratio(c.t2, c.t1).median;
      };
      const auto x1 = crossover(sp, 1.0), x15 = crossover(sp, 1.5);
      jsw["crossover"][ser[std::size_t(si)].name] = {{"beats", x1 ? json(*x1) : json(nullptr)},
                                                     {"speedup_1_5", x15 ? json(*x15) : json(nullptr)}};
      lines += fmt::format("- {} hot: 2T > 1T from n = {}; 2T >= 1.5x from n = {}\n", ser[std::size_t(si)].name,
                           x1 ? fmt::format("{}", *x1) : "never", x15 ? fmt::format("{}", *x15) : "never");
      if (x1) worst = std::max(worst, *x1);
      else all_found = false;
    }
    auto spc = [&](std::size_t n) {
      const cell& c = cells[{0, n}];
      return time_ratio(c.t2c, c.t1c).median;
    };
    const auto xc = crossover(spc, 1.0);
    jsw["crossover"]["fp16 add cold"] = xc ? json(*xc) : json(nullptr);
    lines += fmt::format("- fp16 add cold: 2T > 1T from n = {}\n", xc ? fmt::format("{}", *xc) : "never");
    // The larger of the hot crossovers and the cold one: from there a parallel call wins
    // whether or not the worker is awake.
    std::optional<std::size_t> rec;
    if (all_found && xc) rec = std::max(worst, *xc);
    jsw["recommended_arith_parallel_threshold"] = rec ? json(*rec) : json(nullptr);
    emit("{}\nRecommended `arith_parallel_threshold` (max of the hot crossovers and the cold one): {} (now {}).\n",
         lines, rec ? fmt::format("2^{} = {}", std::countr_zero(*rec), *rec) : std::string("none found in the sweep"),
         fpscope::arith_parallel_threshold);
    out["sweep"] = jsw;
  }

  // --------------------------------------------------------------------------------------
  json machine() {
    json m;
    std::ifstream ci("/proc/cpuinfo");
    std::string line, model, flags;
    while (std::getline(ci, line)) {
      if (model.empty() && line.rfind("model name", 0) == 0) model = line.substr(line.find(':') + 2);
      if (flags.empty() && line.rfind("flags", 0) == 0) flags = line.substr(line.find(':') + 2);
    }
    std::string rel;
    for (std::size_t p = 0; p < flags.size();) {
      const std::size_t q = std::min(flags.find(' ', p), flags.size());
      const std::string fl = flags.substr(p, q - p);
      if (fl == "f16c" || fl == "avx" || fl == "avx2" || fl == "fma" || fl.rfind("avx512", 0) == 0 ||
          fl.rfind("amx", 0) == 0 || fl == "avx_vnni")
        rel += (rel.empty() ? "" : " ") + fl;
      p = q + 1;
    }
    m["cpu"] = model;
    m["cpus_online"] = std::thread::hardware_concurrency();
    m["flags"] = rel;
    m["avx512_bf16"] = cpu_has("avx512bf16");
    m["compiler"] = FPSCOPE_BENCH_CXX;
    m["march"] = FPSCOPE_BENCH_MARCH;
    m["build"] = FPSCOPE_BENCH_BUILD;
    m["openmp"] = _OPENMP;
    m["omp_max_threads"] = omp_get_max_threads();
    double la[3] = {0, 0, 0};
    if (getloadavg(la, 3) == 3) m["loadavg_start"] = {la[0], la[1], la[2]};
    const std::time_t now = std::time(nullptr);
    char date[64];
    std::strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S %Z", std::localtime(&now));
    m["date"] = date;
    return m;
  }

  void goals_report() {
    emit("\n## Goals (a goal passes only if every case passes)\n\n");
    std::map<std::string, std::vector<const json*>> by_goal;
    std::vector<std::string> order;
    for (const auto& g : goals) {
      const std::string name = g["goal"];
      if (!by_goal.count(name)) order.push_back(name);
      by_goal[name].push_back(&g);
    }
    std::vector<std::vector<std::string>> grows;
    for (const auto& name : order) {
      int pass = 0, miss = 0, na = 0;
      const json* worst = nullptr;
      std::string misses;
      for (const json* g : by_goal[name]) {
        if (g->at("pass").is_null()) {
          ++na;
          continue;
        }
        if (g->at("pass").get<bool>()) ++pass;
        else {
          ++miss;
          misses += (misses.empty() ? "" : "; ") + g->at("where").get<std::string>() +
                    fmt::format(" {:.2f}e9", g->at("measured_median").get<double>() * 1e-9);
        }
        if (!worst || g->at("measured_median").get<double>() < worst->at("measured_median").get<double>()) worst = g;
      }
      const double target = by_goal[name].front()->at("target").get<double>();
      const std::string worst_s = worst ? fmt::format("{:.2f}e9 / {:.2f}e9 ({})", worst->at("measured_median").get<double>() * 1e-9,
                                                      target * 1e-9, worst->at("where").get<std::string>())
                                        : "n/a";
      const std::string v = miss == 0 && pass > 0 ? "PASS" : pass + miss == 0 ? "n/a" : "MISS";
      grows.push_back({name, v, fmt::format("{} pass, {} miss{}", pass, miss, na ? fmt::format(", {} n/a", na) : ""),
                       worst_s, misses.empty() ? "-" : misses});
    }
    emit("{}\n", table({"goal", "verdict", "cases", "worst case: measured / goal", "missed in"}, grows));
  }
};

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  bench b;
  b.opt = parse(argc, argv);

  char tmpl[] = "/tmp/fpscope-bench-arith-XXXXXX";
  if (!mkdtemp(tmpl)) {
    fmt::print(stderr, "cannot create a temporary directory: {}\n", std::strerror(errno));
    return 1;
  }
  b.tmp = tmpl;
  int rc = 0;
  const cpu_snapshot c0 = cpu_snapshot::now();
  try {
    b.out["machine"] = b.machine();
    b.out["command"] = b.opt.command;
    const json& m = b.out["machine"];
    b.emit("# fpscope-bench-arith\n\n");
    b.emit("- command: `{}`\n- date: {}\n- cpu: {} ({} online), flags: {}\n- avx512_bf16: {}\n"
           "- compiler: {}, -march={}, {}\n- OpenMP {}, arith_parallel_threshold {}\n- load average at start: {}\n"
           "- operands: codes of random values, sign random, log2|x| uniform in [{}, {}), {:.0f} % zeros, rounded "
           "to the format (nearest-even); the NaN/inf rows replace {:.0f} % of each operand by +-inf, quiet or "
           "signalling NaNs (e4m3: its NaN)\n",
           b.opt.command, m["date"].get<std::string>(), m["cpu"].get<std::string>(), m["cpus_online"].get<unsigned>(),
           m["flags"].get<std::string>(), m["avx512_bf16"].get<bool>() ? "yes" : "no (CPU lacks avx512_bf16)",
           m["compiler"].get<std::string>(), m["march"].get<std::string>(), m["build"].get<std::string>(),
           m["openmp"].get<int>(), fpscope::arith_parallel_threshold,
           m.contains("loadavg_start") ? m["loadavg_start"].dump() : "?", gen_lo, gen_hi, gen_zeros * 100,
           gen_specials * 100);
    {
      std::string vec;
      for (const auto& f : formats)
        for (const auto& o : ops)
          if (!fpscope::apply_is_vectorised(o.o, fpscope::builtin(f.id),
                                            fpscope::profile_policy(fpscope::profile::ieee, fpscope::builtin(f.id))))
            vec += fmt::format(" {} {}", f.name, o.name);
      b.emit("- vectorised path (apply_is_vectorised): {}\n", vec.empty() ? "every format and op measured" : "NOT for" + vec);
    }

    b.start_peers();
    if (b.peers_up) {
      const json& v = b.peers_hello["versions"];
      b.emit("- peers: python {}, numpy {}, torch {}, ml_dtypes {} (via {})\n", v["python"].get<std::string>(),
             v["numpy"].get<std::string>(), v["torch"].is_null() ? "n/a" : v["torch"].get<std::string>(),
             v["ml_dtypes"].is_null() ? "n/a" : v["ml_dtypes"].get<std::string>(), b.opt.python);
      b.out["peers"] = b.peers_hello;
    } else {
      b.emit("- peers: all n/a (SKIPPED: {})\n", b.peers_why);
      b.out["peers"] = {{"skipped", b.peers_why}};
    }
    for (const peer_desc& p : b.peers)
      if (!p.why.empty() && b.peers_up) b.emit("- peer {}: n/a (SKIPPED: {})\n", p.id, p.why);

    json jsizes = json::array();
    {
      bench::size_run cache{b.opt.cache_n, "in-cache", b.opt.rounds_cache, false, {}, {}, {}, {}, {}};
      b.run_size(cache, jsizes);
    }
    {
      bench::size_run mem{b.opt.mem_n, "from-memory", b.opt.rounds_mem, true, {}, {}, {}, {}, {}};
      b.run_size(mem, jsizes);
    }
    b.out["sizes"] = jsizes;
    b.py.stop();
    if (b.opt.sweep) b.sweep();

    b.goals_report();
    b.out["goals"] = b.goals;
    if (!b.cpu_shares.empty()) {
      const double med = median(b.cpu_shares), mn = minimum(b.cpu_shares);
      b.emit("Machine state: 1-thread samples ran with a median CPU share of {:.2f} (lowest {:.2f}): below 1 the "
             "thread was descheduled (other load on the machine) during the sample.",
             med, mn);
      b.out["cpu_share"] = {{"median", med}, {"min", mn}};
    }
    {
      const cpu_snapshot c1 = cpu_snapshot::now();
      const double wall = c1.wall - c0.wall;
      const double others = (c1.busy - c0.busy - (c1.ours - c0.ours)) / wall;
      const double steal = (c1.steal - c0.steal) / wall;
      b.emit(" Over the whole run ({:.0f} s), other processes kept {:.2f} of the {} CPUs busy on average and the host "
             "stole {:.2f} (/proc/stat, less this benchmark and its peers' process): the 2-thread cells need both "
             "CPUs, so read them with that in mind.",
             wall, std::max(others, 0.0), std::thread::hardware_concurrency(), steal);
      b.out["machine"]["other_load_cpus"] = others;
      b.out["machine"]["steal_cpus"] = steal;
    }
    double la[3] = {0, 0, 0};
    if (getloadavg(la, 3) == 3) {
      b.out["machine"]["loadavg_end"] = {la[0], la[1], la[2]};
      b.emit(" Load average at the end: [{:.2f}, {:.2f}, {:.2f}].\n", la[0], la[1], la[2]);
    }
    if (b.opt.json) fmt::print("{}\n", b.out.dump(1));
    else fmt::print("{}", b.text);
  } catch (const std::exception& e) {
    fmt::print(stderr, "fpscope-bench-arith: {}\n", e.what());
    rc = 1;
  }
  b.py.stop();
  std::error_code ec;
  std::filesystem::remove_all(b.tmp, ec);
  return rc;
}
