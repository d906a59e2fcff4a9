// fpscope-bench-convert: bulk float32 -> fp16 / bf16 / e4m3 / e5m2 (nearest-even) throughput.
//
// Everything is measured in ONE run with interleaved repetitions (round r times every
// implementation once, in a shuffled order), so that the ratios compare samples taken under
// the same machine state: on a shared, noisy machine the absolute values/s move, the paired
// ratios much less. Each cell reports the median over rounds and the best (min time) one.
//
//   fpscope   fpscope::encode, threads = 1 and threads = 2, 4 formats x 2 input kinds
//   hardware  x86 F16C _mm256_cvtps_ph (fp16), AVX512-BF16 _mm512_cvtneps_pbh (bf16)
//   reference memcpy of the input, and a streaming read 4 B / write 2 or 1 B kernel
//   peers     numpy, torch, ml_dtypes through tools/bench/peers.py, a subprocess that
//             is fed the same arrays (.npy files, checksummed) and timed between our samples
//
// Then a sweep of sizes 2^10..2^22 finds where two threads start to beat one (the OpenMP
// `parallel_threshold` of convert.hpp). See tools/bench/README.md.
#include <fpscope/cpu.hpp>
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
#include <vector>

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BENCH_X86 1
#else
#define BENCH_X86 0
#endif

#include "bench_common.hpp"
#include "peer_process.hpp"

namespace {

using json = nlohmann::json;
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

struct options {
  bool json = false;
  bool peers = true;
  bool sweep = true;
  int rounds_cache = 15;
  int rounds_mem = 5;
  int rounds_sweep = 15;
  std::size_t cache_n = std::size_t{1} << 16;
  std::size_t mem_n = std::size_t{1} << 26;
  double min_ms = 2.0;  // a sample repeats calls for at least this long (in-cache sizes)
  std::string python = FPSCOPE_BENCH_PYTHON;
  std::string script = FPSCOPE_BENCH_PEERS;
  std::string command;
};

const char* usage =
    "usage: fpscope-bench-convert [--json] [--quick] [--rounds N] [--mem-rounds N]\n"
    "         [--cache-n N] [--mem-n N] [--min-ms MS] [--no-peers] [--no-sweep]\n"
    "         [--python PATH] [--peers PATH]\n"
    "  --json        results as JSON on stdout (progress on stderr) instead of the tables\n"
    "  --quick       fewer rounds and a 16 Mi from-memory size (a smoke run, ~30 s)\n"
    "  --rounds N    interleaved rounds for the in-cache size and the sweep (default 15)\n"
    "  --mem-rounds N  rounds for the from-memory size (default 5)\n"
    "  --cache-n N   in-cache element count (default 65536)\n"
    "  --mem-n N     from-memory element count (default 67108864)\n"
    "  --min-ms MS   shortest in-cache sample; calls repeat until it is reached (default 2)\n"
    "  --no-peers    do not start peers.py (peers print as n/a (SKIPPED))\n"
    "  --no-sweep    skip the 2^10..2^22 OpenMP crossover sweep\n"
    "  --python P    interpreter for peers.py (default: the project venv)\n"
    "  --peers P     the peers.py script\n";

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
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json") o.json = true;
    else if (a == "--quick") { o.rounds_cache = o.rounds_sweep = 5; o.rounds_mem = 3; o.mem_n = std::size_t{1} << 24; }
    else if (a == "--rounds") o.rounds_cache = o.rounds_sweep = std::stoi(value(i));
    else if (a == "--mem-rounds") o.rounds_mem = std::stoi(value(i));
    else if (a == "--cache-n") o.cache_n = std::stoull(value(i));
    else if (a == "--mem-n") o.mem_n = std::stoull(value(i));
    else if (a == "--min-ms") o.min_ms = std::stod(value(i));
    else if (a == "--no-peers") o.peers = false;
    else if (a == "--no-sweep") o.sweep = false;
    else if (a == "--python") o.python = value(i);
    else if (a == "--peers") o.script = value(i);
    else if (a == "-h" || a == "--help") { fmt::print("{}", usage); std::exit(0); }
    else { fmt::print(stderr, "{}: unknown option {}\n{}", argv[0], a, usage); std::exit(2); }
  }
  if (o.rounds_cache < 1 || o.rounds_mem < 1 || o.cache_n < 64 || o.mem_n < 64) {
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
// Buffers and data

template <class T>
struct buffer {
  struct del {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, del> p;
  std::size_t n = 0;
  buffer() = default;
  explicit buffer(std::size_t count) : n(count) {
    const std::size_t bytes = (count * sizeof(T) + 63) / 64 * 64;
    p.reset(static_cast<T*>(std::aligned_alloc(64, bytes)));
    if (!p) throw std::bad_alloc();
    std::memset(static_cast<void*>(p.get()), 0, bytes);  // fault every page in now
  }
  T* data() const { return p.get(); }
};

enum class kind { normal, wide };
constexpr std::array kinds{kind::normal, kind::wide};
const char* kind_name(kind k) { return k == kind::normal ? "normal" : "wide"; }

float from_u32(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
std::uint32_t to_u32(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// normal: |x| log-uniform in [2^-6, 2^8), random signs: normal in float32 and in every target
//         (e4m3's smallest normal is 2^-6, its largest finite 448), no overflow, no NaN.
// wide:   |x| log-uniform in [2^-40, 2^40), random signs (underflow to zero, subnormal results
//         and overflow for every 8/16-bit target), plus 2 % specials: +-inf, quiet and
//         signalling NaNs with random payloads and signs, +-0, float32 denormals.
void generate(kind k, std::span<float> x, std::uint64_t seed) {
  splitmix g{seed};
  for (float& v : x) {
    const std::uint64_t r = g.next();
    const std::uint32_t sign = static_cast<std::uint32_t>(r >> 63) << 31;
    if (k == kind::normal) {
      v = from_u32(to_u32(std::exp2(float(-6.0 + 14.0 * g.uniform()))) | sign);
      continue;
    }
    const unsigned pick = static_cast<unsigned>(r % 1000);  // 20 per mille specials
    const std::uint32_t payload = static_cast<std::uint32_t>(g.next()) & 0x3FFFFF;
    if (pick < 4) v = from_u32(sign | 0x7F800000u);                          // +-inf
    else if (pick < 8) v = from_u32(sign | 0x7FC00000u | payload);           // quiet NaN
    else if (pick < 10) v = from_u32(sign | 0x7F800000u | (payload | 1u));   // signalling NaN
    else if (pick < 15) v = from_u32(sign);                                  // +-0
    else if (pick < 20) v = from_u32(sign | ((payload << 1) | 1u));          // denormal
    else v = from_u32(to_u32(std::exp2(float(-40.0 + 80.0 * g.uniform()))) | sign);
  }
}

struct checksum_t {
  std::uint64_t sum = 0;
  std::uint32_t xr = 0;
};
checksum_t checksum(std::span<const float> x) {
  checksum_t c;
  for (float v : x) {
    const std::uint32_t u = to_u32(v);
    c.sum += u;
    c.xr ^= u;
  }
  return c;
}

// ----------------------------------------------------------------------------------------
// Kernels: hardware conversions and bandwidth references

bool cpu_has(const char* what) {
#if BENCH_X86
  const fpscope::cpu_features& c = fpscope::cpu();
  if (std::string_view(what) == "f16c") return c.f16c;
  if (std::string_view(what) == "avx2") return c.avx2;
  if (std::string_view(what) == "avx512f") return c.avx512f;
  if (std::string_view(what) == "avx512bf16") return c.avx512bf16;
#endif
  (void)what;
  return false;
}

#if BENCH_X86
// x86 F16C, nearest-even, 4 vectors of 8 per iteration.
[[gnu::target("avx,f16c"), gnu::noinline]] void f16c_encode(const float* __restrict in,
                                                            std::uint16_t* __restrict out,
                                                            std::size_t n) {
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256 a = _mm256_loadu_ps(in + i), b = _mm256_loadu_ps(in + i + 8),
                 c = _mm256_loadu_ps(in + i + 16), d = _mm256_loadu_ps(in + i + 24);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i + 8), _mm256_cvtps_ph(b, _MM_FROUND_TO_NEAREST_INT));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i + 16), _mm256_cvtps_ph(c, _MM_FROUND_TO_NEAREST_INT));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i + 24), _mm256_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT));
  }
  for (; i < n; ++i) out[i] = _cvtss_sh(in[i], _MM_FROUND_TO_NEAREST_INT);
}

// AVX512-BF16 VCVTNEPS2BF16 (nearest-even, denormal inputs read as zero), 16 per vector.
[[gnu::target("avx512f,avx512bf16"), gnu::noinline]] void avx512bf16_encode(
    const float* __restrict in, std::uint16_t* __restrict out, std::size_t n) {
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(in + i));
    std::memcpy(out + i, &h, 32);
  }
  if (i < n) {
    alignas(64) float tail_in[16] = {};
    alignas(32) std::uint16_t tail_out[16];
    std::memcpy(tail_in, in + i, (n - i) * 4);
    const __m256bh h = _mm512_cvtneps_pbh(_mm512_load_ps(tail_in));
    std::memcpy(tail_out, &h, 32);
    std::memcpy(out + i, tail_out, (n - i) * 2);
  }
}
#endif

// Streaming references: read the 4-byte inputs, write 2- or 1-byte words (the top bytes:
// truncation), the same traffic as a conversion with next to no arithmetic.
template <class Out>
[[gnu::noinline]] void stream_encode(const float* __restrict in, Out* __restrict out, std::size_t n) {
  constexpr int shift = 32 - 8 * int(sizeof(Out));
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t u;
    std::memcpy(&u, in + i, 4);
    out[i] = static_cast<Out>(u >> shift);
  }
}

[[gnu::noinline]] void copy_bytes(void* __restrict dst, const void* __restrict src, std::size_t bytes) {
  std::memcpy(dst, src, bytes);
}

inline void escape(void* p) { asm volatile("" : : "g"(p) : "memory"); }

struct fmt_info {
  fpscope::format_id id;
  const char* name;
  int bytes;
};
constexpr std::array<fmt_info, 4> formats{{{fpscope::format_id::fp16, "fp16", 2},
                                           {fpscope::format_id::bf16, "bf16", 2},
                                           {fpscope::format_id::e4m3, "e4m3", 1},
                                           {fpscope::format_id::e5m2, "e5m2", 1}}};

// fpscope bulk encode into a 1- or 2-byte output buffer.
void fp_encode(const float* in, void* out, std::size_t n, const fmt_info& f, const fpscope::policy& p,
               int threads) {
  fpscope::bulk_options o;
  o.threads = threads;
  const fpscope::format fm = fpscope::builtin(f.id);
  if (f.bytes == 2)
    fpscope::encode(std::span<const float>(in, n), std::span<std::uint16_t>(static_cast<std::uint16_t*>(out), n), fm, p, o);
  else
    fpscope::encode(std::span<const float>(in, n), std::span<std::uint8_t>(static_cast<std::uint8_t*>(out), n), fm, p, o);
}

// Two threads on two halves, each a serial fpscope::encode: what encode_loop would do below
// its parallel_threshold if the threshold were 0 (and its 4096-element blocks no obstacle).
void fp_encode_split2(const float* in, void* out, std::size_t n, const fmt_info& f, const fpscope::policy& p) {
#pragma omp parallel num_threads(2)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const std::size_t lo = (n * std::size_t(t) / std::size_t(nt)) & ~std::size_t{63};
    const std::size_t hi = t + 1 == nt ? n : (n * std::size_t(t + 1) / std::size_t(nt)) & ~std::size_t{63};
    fp_encode(in + lo, static_cast<char*>(out) + lo * std::size_t(f.bytes), hi - lo, f, p, 1);
  }
}

struct peer_desc {
  std::string id, format, lib, api, why;  // why: non-empty when skipped
  bool threaded = false;
};

// ----------------------------------------------------------------------------------------
// Measurement

double seconds(clk::duration d) { return std::chrono::duration<double>(d).count(); }

double thread_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

// One implementation at one size and input kind: samples (seconds per call), one per round.
struct item {
  std::string id;     // unique, e.g. "fpscope/fp16/wide/t1"
  std::string group;  // fpscope, hardware, reference, peer
  std::string format; // fp16, bf16, e4m3, e5m2, or "" for references
  std::string impl;   // what runs
  kind input = kind::normal;
  int threads = 1;
  std::function<void()> run;  // C++ implementations
  std::string peer, data;     // peers: their id and data set name
  std::string na;             // non-empty: not available (why)
  std::vector<double> t;      // seconds per call, one per round (NaN: no sample)
  std::vector<double> cpu;    // thread CPU time / wall time of the sample (C++, 1 thread)
};

struct bench {
  options opt;
  peer_process py;
  bool peers_up = false;
  std::string peers_why;  // why every peer is skipped, when peers_up is false
  std::vector<peer_desc> peers;
  json peers_hello;
  std::filesystem::path tmp;
  json out = json::object();
  std::string text;
  double cpu_share_min = 1, cpu_share_med = 1;
  std::vector<double> cpu_shares;

  template <class... A>
  void emit(fmt::format_string<A...> f, A&&... a) {
    text += fmt::format(f, std::forward<A>(a)...);
  }

  double sample_cxx(item& it, double min_s) {
    const double c0 = thread_cpu_s();
    const auto t0 = clk::now();
    int calls = 0;
    double el = 0;
    do {
      it.run();
      ++calls;
      el = seconds(clk::now() - t0);
    } while (el < min_s);
    if (it.threads == 1) {
      const double share = (thread_cpu_s() - c0) / el;
      it.cpu.push_back(share);
      cpu_shares.push_back(share);
    }
    return el / calls;
  }

  double sample_peer(item& it, double min_s) {
    std::string why;
    auto r = py.request({{"cmd", "time"}, {"data", it.data}, {"peer", it.peer},
                         {"threads", it.threads}, {"min_s", min_s}}, why);
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
    for (item* it : live) {  // warm-up: caches, pages, first-call costs
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
        peers.push_back({p["id"].get<std::string>(), p["format"].get<std::string>(), p["lib"].get<std::string>(),
                         p["api"].get<std::string>(), "", p["threaded"].get<bool>()});
      for (const auto& p : (*h)["skipped"])
        peers.push_back({p["id"].get<std::string>(), p["format"].get<std::string>(), p["lib"].get<std::string>(), "",
                         p["why"].get<std::string>(), false});
    }
    if (!peers_up) {
      // Still list every known peer, as skipped.
      const char* known[][3] = {{"numpy.fp16.astype", "fp16", "numpy"}, {"numpy.fp16.copyto", "fp16", "numpy"},
                                {"torch.fp16.half", "fp16", "torch"}, {"torch.fp16.copy_", "fp16", "torch"},
                                {"torch.bf16.bfloat16", "bf16", "torch"}, {"torch.bf16.copy_", "bf16", "torch"},
                                {"ml_dtypes.bf16.astype", "bf16", "ml_dtypes"}, {"ml_dtypes.bf16.copyto", "bf16", "ml_dtypes"},
                                {"ml_dtypes.e4m3.astype", "e4m3", "ml_dtypes"}, {"ml_dtypes.e4m3.copyto", "e4m3", "ml_dtypes"},
                                {"ml_dtypes.e5m2.astype", "e5m2", "ml_dtypes"}, {"ml_dtypes.e5m2.copyto", "e5m2", "ml_dtypes"}};
      for (const auto& k : known) peers.push_back({k[0], k[1], k[2], "", peers_why, false});
      progress("peers: all SKIPPED ({})\n", peers_why);
    }
  }

  // --------------------------------------------------------------------------------------
  // One size: data, items, measurement, cross-checks, tables.
  struct size_run {
    std::size_t n;
    std::string label;
    int rounds;
    std::array<buffer<float>, 2> x;  // by kind
    std::deque<item> items;
    std::map<std::string, item*> by_id;
  };

  item& add(size_run& s, item it) {
    s.items.push_back(std::move(it));
    item& ref = s.items.back();
    s.by_id[ref.id] = &ref;
    return ref;
  }
  const item* find(const size_run& s, const std::string& id) const {
    auto i = s.by_id.find(id);
    return i == s.by_id.end() ? nullptr : i->second;
  }

  void run_size(size_run& s, bool is_mem, json& jsizes) {
    const std::size_t n = s.n;
    progress("{}: n = {} ({} MiB of float32 per input kind)\n", s.label, n, double(n) * 4 / (1 << 20));
    for (kind k : kinds) {
      s.x[int(k)] = buffer<float>(n);
      generate(k, std::span<float>(s.x[int(k)].data(), n), k == kind::normal ? 1 : 2);
    }
    // Outputs: one per (format, threads) would waste memory at the big size; the items of one
    // size run one after the other, so one 2-byte and one 1-byte buffer serve them all, plus the
    // memcpy destination.
    buffer<std::uint16_t> o16(n);
    buffer<std::uint8_t> o8(n);
    buffer<float> ocopy(n);
    const fpscope::policy rne{};

    for (kind k : kinds) {
      const float* xin = s.x[int(k)].data();
      for (const auto& f : formats)
        for (int th : {1, 2}) {
          void* o = f.bytes == 2 ? static_cast<void*>(o16.data()) : static_cast<void*>(o8.data());
          item it;
          it.id = fmt::format("fpscope/{}/{}/t{}", f.name, kind_name(k), th);
          it.group = "fpscope";
          it.format = f.name;
          it.impl = fmt::format("fpscope::encode, threads={}", th);
          it.input = k;
          it.threads = th;
          it.run = [=, &f] { fp_encode(xin, o, n, f, rne, th); escape(o); };
          add(s, std::move(it));
        }
      {
        item it;
        it.id = fmt::format("hw/fp16/{}", kind_name(k));
        it.group = "hardware";
        it.format = "fp16";
        it.impl = "F16C _mm256_cvtps_ph";
        it.input = k;
#if BENCH_X86
        if (cpu_has("f16c")) it.run = [=, &o16] { f16c_encode(xin, o16.data(), n); escape(o16.data()); };
        else it.na = "n/a (CPU lacks f16c)";
#else
        it.na = "n/a (not x86)";
#endif
        add(s, std::move(it));
      }
      {
        item it;
        it.id = fmt::format("hw/bf16/{}", kind_name(k));
        it.group = "hardware";
        it.format = "bf16";
        it.impl = "AVX512-BF16 _mm512_cvtneps_pbh";
        it.input = k;
#if BENCH_X86
        if (cpu_has("avx512bf16")) it.run = [=, &o16] { avx512bf16_encode(xin, o16.data(), n); escape(o16.data()); };
        else it.na = "n/a (CPU lacks avx512_bf16)";
#else
        it.na = "n/a (not x86)";
#endif
        add(s, std::move(it));
      }
    }
    {
      const float* xin = s.x[0].data();
      item a;
      a.id = "ref/stream16";
      a.group = "reference";
      a.impl = "stream: read 4 B, write 2 B (truncate)";
      a.run = [=, &o16] { stream_encode(xin, o16.data(), n); escape(o16.data()); };
      add(s, std::move(a));
      item b;
      b.id = "ref/stream8";
      b.group = "reference";
      b.impl = "stream: read 4 B, write 1 B (truncate)";
      b.run = [=, &o8] { stream_encode(xin, o8.data(), n); escape(o8.data()); };
      add(s, std::move(b));
      item c;
      c.id = "ref/memcpy";
      c.group = "reference";
      c.impl = "memcpy of the float32 input (4 B read + 4 B write)";
      c.run = [=, &ocopy] { copy_bytes(ocopy.data(), xin, n * 4); escape(ocopy.data()); };
      add(s, std::move(c));
    }

    // Peers: the same arrays through .npy files, checked by checksum on the Python side.
    std::array<std::string, 2> data_names;
    for (kind k : kinds) data_names[int(k)] = fmt::format("{}-{}", s.label, kind_name(k));
    bool loaded = peers_up && py.running();
    std::string load_why = peers_why;
    if (loaded) {
      for (kind k : kinds) {
        const auto path = (tmp / (data_names[int(k)] + ".npy")).string();
        std::span<const float> xs(s.x[int(k)].data(), n);
        fpscope::npy_save(path, fpscope::npy_dtype::f4, {n}, xs);
        const checksum_t c = checksum(xs);
        if (!py.request({{"cmd", "load"}, {"name", data_names[int(k)]}, {"path", path},
                         {"sum", c.sum}, {"xor", c.xr}}, load_why))
          loaded = false;
        std::filesystem::remove(path);
      }
    }
    for (kind k : kinds)
      for (const peer_desc& p : peers)
        for (int th : {1, 2}) {
          if (th == 2 && !p.threaded) continue;
          item it;
          it.id = fmt::format("peer/{}/{}/t{}", p.id, kind_name(k), th);
          it.group = "peer";
          it.format = p.format;
          it.impl = p.api.empty() ? p.id : p.api;
          it.input = k;
          it.threads = th;
          it.peer = p.id;
          it.data = data_names[int(k)];
          if (!p.why.empty()) it.na = "n/a (SKIPPED: " + p.why + ")";
          else if (!loaded) it.na = "n/a (SKIPPED: " + load_why + ")";
          add(s, std::move(it));
        }

    json checks = json::array();
    if (!is_mem) checks = cross_check(s, loaded, data_names);

    measure(s.items, s.rounds, is_mem ? 0.0 : opt.min_ms * 1e-3, s.label);
    if (loaded)
      for (const auto& d : data_names) py.request({{"cmd", "forget"}, {"name", d}}, load_why);

    report_size(s, checks, jsizes);
  }

  // Are we comparing the same work? Each peer's codes (in-cache size) against fpscope's under
  // the fpscope profiles, and the hardware's against fpscope's IEEE policy.
  json cross_check(size_run& s, bool loaded, const std::array<std::string, 2>& data_names) {
    json checks = json::array();
    const std::size_t n = s.n;
    struct prof {
      const char* name;
      std::optional<fpscope::profile> p;
    };
    const std::array<prof, 3> profs{{{"ieee", std::nullopt}, {"ml_dtypes", fpscope::profile::ml_dtypes},
                                     {"cuda", fpscope::profile::cuda}}};
    const kind k = kind::wide;  // the interesting one: specials, overflow, subnormals
    const float* xin = s.x[int(k)].data();
    auto fpscope_codes = [&](const fmt_info& f, const fpscope::policy& p) {
      std::vector<std::uint16_t> codes(n);
      if (f.bytes == 2) {
        fp_encode(xin, codes.data(), n, f, p, 1);
      } else {
        std::vector<std::uint8_t> c8(n);
        fp_encode(xin, c8.data(), n, f, p, 1);
        std::copy(c8.begin(), c8.end(), codes.begin());
      }
      return codes;
    };
    auto compare = [&](const std::string& who, const fmt_info& f, const std::vector<std::uint16_t>& theirs) {
      json best;
      std::size_t best_other = SIZE_MAX, best_nan = SIZE_MAX;
      for (const prof& pr : profs) {
        const fpscope::policy p = pr.p ? fpscope::profile_policy(*pr.p, fpscope::builtin(f.id)) : fpscope::policy{};
        const auto ours = fpscope_codes(f, p);
        std::size_t nan_diff = 0, other_diff = 0, nan_in = 0;
        for (std::size_t i = 0; i < n; ++i) {
          const bool is_nan = std::isnan(xin[i]);
          nan_in += is_nan;
          if (ours[i] != theirs[i]) ++(is_nan ? nan_diff : other_diff);
        }
        if (other_diff < best_other || (other_diff == best_other && nan_diff < best_nan)) {
          best_other = other_diff;
          best_nan = nan_diff;
          best = {{"who", who}, {"format", f.name}, {"profile", pr.name}, {"n", n}, {"nan_inputs", nan_in},
                  {"differ_nan_inputs", nan_diff}, {"differ_other_inputs", other_diff}};
        }
      }
      checks.push_back(best);
    };
#if BENCH_X86
    if (cpu_has("f16c")) {
      std::vector<std::uint16_t> hw(n);
      f16c_encode(xin, hw.data(), n);
      compare("F16C _mm256_cvtps_ph", formats[0], hw);
    }
#endif
    if (!loaded) return checks;
    for (const peer_desc& p : peers) {
      if (!p.why.empty()) continue;
      const auto* f = std::find_if(formats.begin(), formats.end(), [&](const fmt_info& x) { return p.format == x.name; });
      if (f == formats.end()) continue;
      const auto path = (tmp / (p.id + ".npy")).string();
      std::string why;
      if (!py.request({{"cmd", "output"}, {"data", data_names[int(k)]}, {"peer", p.id}, {"path", path}}, why)) {
        checks.push_back({{"who", p.id}, {"format", p.format}, {"error", why}});
        continue;
      }
      try {
        fpscope::npy_reader r(path);
        std::vector<std::uint16_t> theirs(n);
        if (f->bytes == 2) {
          auto v = r.values<std::uint16_t>();
          std::copy(v.begin(), v.end(), theirs.begin());
        } else {
          auto v = r.values<std::uint8_t>();
          std::copy(v.begin(), v.end(), theirs.begin());
        }
        compare(p.id, *f, theirs);
      } catch (const std::exception& e) {
        checks.push_back({{"who", p.id}, {"format", p.format}, {"error", e.what()}});
      }
      std::filesystem::remove(path);
    }
    return checks;
  }

  // --------------------------------------------------------------------------------------
  // Reporting

  static std::string gv(double s_per_call, std::size_t n) {
    return std::isfinite(s_per_call) ? fmt::format("{:.2f}", double(n) / s_per_call * 1e-9) : "n/a";
  }
  static std::string rate_cell(const item& it, std::size_t n) {
    if (!it.na.empty()) return it.na;
    return fmt::format("{} ({})", gv(median(it.t), n), gv(minimum(it.t), n));
  }
  static std::string ratio_cell(const ratio& r, double goal = NAN) {
    if (!r.ok()) return "n/a";
    std::string c = fmt::format("{:.2f} ({:.2f})", r.median, r.best);
    if (std::isfinite(goal)) c += r.median >= goal ? " PASS" : r.best >= goal ? " MISS (best passes)" : " MISS";
    return c;
  }

  json goals = json::array();
  void goal(const std::string& name, const std::string& where, double measured, double best, double target,
            const std::string& unit, const std::string& note = "") {
    json g = {{"goal", name}, {"where", where}, {"target", target}, {"unit", unit}, {"note", note}};
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
    json j = {{"id", it.id}, {"group", it.group}, {"format", it.format}, {"impl", it.impl},
              {"input", kind_name(it.input)}, {"threads", it.threads}};
    if (!it.na.empty()) {
      j["na"] = it.na;
      return j;
    }
    j["samples_s"] = it.t;
    j["median_s"] = median(it.t);
    j["min_s"] = minimum(it.t);
    j["median_values_per_s"] = double(n) / median(it.t);
    j["best_values_per_s"] = double(n) / minimum(it.t);
    if (!it.cpu.empty()) j["cpu_share_median"] = median(it.cpu);
    return j;
  }

  void report_size(size_run& s, const json& checks, json& jsizes) {
    const std::size_t n = s.n;
    const std::size_t rounds = std::size_t(s.rounds);
    json js = {{"label", s.label}, {"n", n}, {"rounds", s.rounds}, {"items", json::array()},
               {"rows", json::array()}, {"crosscheck", checks}};
    for (const item& it : s.items) js["items"].push_back(item_json(it, n));

    emit("\n## {}: n = {} values ({} KiB float32 in), {} interleaved rounds\n\n", s.label, n, n * 4 / 1024,
         s.rounds);
    emit("Values/s in 1e9 (Gval/s): median over rounds (best round). Ratios: paired per round, "
         "median (best/best).\n\n");

    // References.
    std::vector<std::vector<std::string>> rrows;
    for (const item& it : s.items)
      if (it.group == "hardware" || it.group == "reference") {
        std::string gbs = "";
        if (it.na.empty() && it.group == "reference") {
          const double bytes = it.id == "ref/memcpy" ? 8.0 : it.id == "ref/stream16" ? 6.0 : 5.0;
          gbs = fmt::format("{:.1f} GB/s", bytes * double(n) / median(it.t) * 1e-9);
        } else if (it.na.empty()) {
          gbs = fmt::format("{:.1f} GB/s", 6.0 * double(n) / median(it.t) * 1e-9);
        }
        rrows.push_back({it.impl, it.group == "reference" ? "-" : kind_name(it.input), rate_cell(it, n), gbs});
      }
    emit("### Hardware limit and bandwidth references (1 core)\n\n{}\n",
         table({"kernel", "input", "Gval/s median (best)", "traffic, median"}, rrows));

    // Single core, fpscope against everything.
    std::vector<std::vector<std::string>> rows;
    for (const auto& f : formats)
      for (kind k : kinds) {
        const std::string kn = kind_name(k);
        const item* me = find(s, fmt::format("fpscope/{}/{}/t1", f.name, kn));
        const item* f16c = find(s, "hw/fp16/" + kn);
        const item* bfhw = find(s, "hw/bf16/" + kn);
        const item* st = find(s, f.bytes == 2 ? "ref/stream16" : "ref/stream8");
        auto lib_best = [&](const std::string& lib) -> std::pair<std::vector<double>, std::string> {
          std::vector<const item*> its;
          std::string na;
          for (const item& it : s.items)
            if (it.group == "peer" && it.format == f.name && it.input == k && it.threads == 1 &&
                it.peer.rfind(lib + ".", 0) == 0) {
              if (it.na.empty()) its.push_back(&it);
              else na = it.na;
            }
          if (its.empty()) return {{}, na.empty() ? "-" : na};
          return {fastest(its, rounds), ""};
        };
        const auto [np_t, np_na] = lib_best("numpy");
        const auto [to_t, to_na] = lib_best("torch");
        const auto [ml_t, ml_na] = lib_best("ml_dtypes");

        const ratio r_f16c = f16c && f16c->na.empty() ? time_ratio(me->t, f16c->t) : ratio{};
        const ratio r_bfhw = bfhw && bfhw->na.empty() ? time_ratio(me->t, bfhw->t) : ratio{};
        const ratio r_st = time_ratio(me->t, st->t);
        const ratio r_np = np_na.empty() ? time_ratio(me->t, np_t) : ratio{};
        const ratio r_to = to_na.empty() ? time_ratio(me->t, to_t) : ratio{};
        const ratio r_ml = ml_na.empty() ? time_ratio(me->t, ml_t) : ratio{};
        const double med_rate = double(n) / median(me->t), best_rate = double(n) / minimum(me->t);
        const std::string where = fmt::format("{} {} {}", s.label, f.name, kn);

        std::string rate = rate_cell(*me, n);
        rate += med_rate >= 3e9 ? " PASS" : best_rate >= 3e9 ? " MISS (best passes)" : " MISS";
        goal("per-core >= 3e9 values/s", where, med_rate, best_rate, 3e9, "values/s");
        goal("per-core >= 0.6 x F16C", where, r_f16c.median, r_f16c.best, 0.6, "x");
        // ml_dtypes has no float16: there the goal is judged against numpy, which ml_dtypes users get.
        const bool fp16 = f.id == fpscope::format_id::fp16;
        const ratio& r_peer = fp16 ? r_np : r_ml;
        goal("per-core >= 3 x ml_dtypes", where, r_peer.median, r_peer.best, 3.0, "x",
             fp16 ? "ml_dtypes has no float16: numpy astype/copyto instead" : "");
        auto peer_cell = [&](const ratio& r, const std::string& na, double g) {
          return r.ok() ? ratio_cell(r, g) : na;
        };
        rows.push_back({f.name, kn, rate, ratio_cell(r_f16c, 0.6),
                        f.id == fpscope::format_id::bf16 ? (r_bfhw.ok() ? ratio_cell(r_bfhw) : bfhw->na) : "-",
                        ratio_cell(r_st), peer_cell(r_np, np_na, fp16 ? 3.0 : NAN), peer_cell(r_to, to_na, NAN),
                        fp16 ? "- (no float16; goal vs numpy)" : peer_cell(r_ml, ml_na, 3.0)});
        js["rows"].push_back({{"format", f.name}, {"input", kn}, {"median_values_per_s", med_rate},
                              {"best_values_per_s", best_rate},
                              {"vs_f16c", {r_f16c.median, r_f16c.best}},
                              {"vs_avx512bf16", {r_bfhw.median, r_bfhw.best}},
                              {"vs_stream", {r_st.median, r_st.best}},
                              {"vs_numpy", {r_np.median, r_np.best}},
                              {"vs_torch", {r_to.median, r_to.best}},
                              {"vs_ml_dtypes", {r_ml.median, r_ml.best}}});
      }
    emit("### fpscope, one core (threads=1): rate and speed ratios (x = fpscope / other)\n\n{}\n",
         table({"format", "input", "fpscope Gval/s (goal >= 3)", "x F16C (goal >= 0.6)", "x AVX512-BF16",
                "x stream r/w", "x numpy (best API)", "x torch 1T (best API)", "x ml_dtypes (best API, goal >= 3)"},
               rows));

    // Peers, raw.
    std::vector<std::vector<std::string>> prows;
    for (const item& it : s.items)
      if (it.group == "peer")
        prows.push_back({it.format, kind_name(it.input), it.peer, std::to_string(it.threads), it.impl,
                         rate_cell(it, n)});
    emit("### Peers (same arrays, interleaved with the rows above)\n\n{}\n",
         table({"format", "input", "peer", "threads", "call", "Gval/s median (best)"}, prows));

    // Two cores.
    std::vector<std::vector<std::string>> trows;
    for (const auto& f : formats)
      for (kind k : kinds) {
        const std::string kn = kind_name(k);
        const item* t1 = find(s, fmt::format("fpscope/{}/{}/t1", f.name, kn));
        const item* t2 = find(s, fmt::format("fpscope/{}/{}/t2", f.name, kn));
        const ratio sp = time_ratio(t2->t, t1->t);
        goal("2 threads >= 1.7 x 1 thread", fmt::format("{} {} {}", s.label, f.name, kn), sp.median, sp.best, 1.7, "x");
        std::string torch_sp = "-";
        for (const item& it : s.items)
          if (it.group == "peer" && it.threads == 2 && it.format == f.name && it.input == k) {
            const item* p1 = find(s, fmt::format("peer/{}/{}/t1", it.peer, kn));
            torch_sp = it.na.empty() && p1 && p1->na.empty()
                           ? fmt::format("{} {}", it.peer, ratio_cell(time_ratio(it.t, p1->t)))
                           : it.na;
            if (it.peer.find("copy_") != std::string::npos) break;
          }
        trows.push_back({f.name, kn, rate_cell(*t1, n), rate_cell(*t2, n), ratio_cell(sp, 1.7), torch_sp});
      }
    emit("### Second core: fpscope threads=2 vs threads=1 (library path, parallel_threshold = {})\n\n{}\n",
         fpscope::parallel_threshold,
         table({"format", "input", "1 thread Gval/s", "2 threads Gval/s", "speed-up (goal >= 1.7)",
                "torch speed-up 2T/1T"}, trows));

    if (!checks.empty()) {
      std::vector<std::vector<std::string>> crows;
      for (const auto& c : checks) {
        if (c.contains("error")) {
          crows.push_back({c["who"], c["format"], "-", "error: " + c["error"].get<std::string>()});
          continue;
        }
        const auto other = c["differ_other_inputs"].get<std::size_t>();
        const auto nan = c["differ_nan_inputs"].get<std::size_t>();
        std::string verdict = other == 0 && nan == 0 ? "bit-identical"
                              : other == 0 ? fmt::format("identical except {} of {} NaN inputs (NaN style)", nan,
                                                         c["nan_inputs"].get<std::size_t>())
                                           : fmt::format("DIFFERS on {} non-NaN inputs (+{} NaN)", other, nan);
        crows.push_back({c["who"], c["format"], c["profile"], verdict});
      }
      emit("### Same work? Codes on the wide input ({} values) against fpscope's closest profile\n\n{}\n", s.n,
           table({"implementation", "format", "fpscope profile", "result"}, crows));
    }
    jsizes.push_back(js);
  }

  // --------------------------------------------------------------------------------------
  // OpenMP crossover: two threads (two halves, each a serial encode) against one.
  void sweep(const float* x, std::size_t max_n) {
    progress("sweep: sizes 2^10..2^22, {} rounds\n", opt.rounds_sweep);
    std::vector<std::size_t> sizes;
    for (int e = 10; e <= 22; ++e)
      if ((std::size_t{1} << e) <= max_n) sizes.push_back(std::size_t{1} << e);
    buffer<std::uint16_t> o(sizes.back());
    const fpscope::policy rne{};
    struct cell {
      std::vector<double> t1, t2, lib2, t1c, t2c;
    };
    std::map<std::pair<std::size_t, int>, cell> cells;
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
    auto once = [&](auto&& f) {  // after 20 ms idle: the OpenMP worker has gone to sleep
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      const auto t0 = clk::now();
      f();
      return seconds(clk::now() - t0);
    };
    // warm-up: the OpenMP team exists before the first sample
    fp_encode_split2(x, o.data(), sizes.back(), formats[0], rne);
    for (int r = 0; r < opt.rounds_sweep; ++r) {
      progress("  [sweep] round {}/{}\r", r + 1, opt.rounds_sweep);
      for (std::size_t n : sizes)
        for (int fi = 0; fi < int(formats.size()); ++fi) {
          const fmt_info& f = formats[std::size_t(fi)];
          cell& c = cells[{n, fi}];
          auto one = [&] { fp_encode(x, o.data(), n, f, rne, 1); escape(o.data()); };
          auto two = [&] { fp_encode_split2(x, o.data(), n, f, rne); escape(o.data()); };
          auto lib = [&] { fp_encode(x, o.data(), n, f, rne, 2); escape(o.data()); };
          if (r % 2) {
            c.t1.push_back(timed(one));
            c.t2.push_back(timed(two));
          } else {
            c.t2.push_back(timed(two));
            c.t1.push_back(timed(one));
          }
          if (n >= fpscope::parallel_threshold) c.lib2.push_back(timed(lib));
          if (fi == 0) {
            c.t1c.push_back(once(one));
            c.t2c.push_back(once(two));
          }
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
    for (const auto& f : formats) head.push_back(fmt::format("{} hot 2T/1T", f.name));
    head.push_back("fp16 cold 2T/1T");
    head.push_back("fp16 library threads=2 / 1");
    std::vector<std::vector<std::string>> rows;
    for (std::size_t n : sizes) {
      std::vector<std::string> row{fmt::format("2^{} = {}", std::countr_zero(n), n)};
      json jn = {{"n", n}};
      for (int fi = 0; fi < int(formats.size()); ++fi) {
        const cell& c = cells[{n, fi}];
        const ratio sp = time_ratio(c.t2, c.t1);
        row.push_back(ratio_cell(sp));
        jn[std::string(formats[std::size_t(fi)].name)] = {{"t1_s", median(c.t1)}, {"t2_s", median(c.t2)},
                                                          {"speedup", sp.median}, {"speedup_best", sp.best}};
      }
      const cell& c0 = cells[{n, 0}];
      const ratio cold = time_ratio(c0.t2c, c0.t1c);
      row.push_back(ratio_cell(cold));
      jn["fp16_cold"] = {{"t1_s", median(c0.t1c)}, {"t2_s", median(c0.t2c)}, {"speedup", cold.median}};
      if (!c0.lib2.empty()) {
        const ratio lib = time_ratio(c0.lib2, c0.t1);
        row.push_back(ratio_cell(lib));
        jn["fp16_library_t2_speedup"] = lib.median;
      } else {
        row.push_back("serial (< threshold)");
      }
      rows.push_back(row);
      jsw["sizes"].push_back(jn);
    }
    emit("\n## OpenMP crossover: where 2 threads start to beat 1 (normal input, {} rounds)\n\n", opt.rounds_sweep);
    emit("hot: back-to-back calls, the OpenMP worker still spinning; 2T = two halves, each a serial\n"
         "fpscope::encode, in one `omp parallel num_threads(2)` (encode_loop with threshold 0).\n"
         "cold: one call after 20 ms idle (worker asleep), as for sporadic calls in an application.\n"
         "Samples: hot {} ms of repeated calls; cold a single call. Cells: speed-up median (best/best).\n\n{}\n",
         min_s * 1e3, table(head, rows));

    std::size_t worst = 0;
    bool all_found = true;
    std::string lines;
    for (int fi = 0; fi < int(formats.size()); ++fi) {
      auto sp = [&](std::size_t n) { const cell& c = cells[{n, fi}]; return time_ratio(c.t2, c.t1).median; };
      const auto x1 = crossover(sp, 1.0), x15 = crossover(sp, 1.5);
      jsw["crossover"][formats[std::size_t(fi)].name] = {{"beats", x1 ? json(*x1) : json(nullptr)},
                                                         {"speedup_1_5", x15 ? json(*x15) : json(nullptr)}};
      lines += fmt::format("- {} hot: 2T > 1T from n = {}; 2T >= 1.5x from n = {}\n", formats[std::size_t(fi)].name,
                           x1 ? fmt::format("{}", *x1) : "never", x15 ? fmt::format("{}", *x15) : "never");
      if (x1) worst = std::max(worst, *x1);
      else all_found = false;
    }
    auto spc = [&](std::size_t n) { const cell& c = cells[{n, 0}]; return time_ratio(c.t2c, c.t1c).median; };
    const auto xc = crossover(spc, 1.0);
    jsw["crossover"]["fp16_cold"] = xc ? json(*xc) : json(nullptr);
    lines += fmt::format("- fp16 cold: 2T > 1T from n = {}\n", xc ? fmt::format("{}", *xc) : "never");
    // Recommend the larger of the hot crossovers and the cold one: from there a parallel call
    // wins whether or not the worker is awake.
    std::optional<std::size_t> rec;
    if (all_found && xc) rec = std::max(worst, *xc);
    jsw["recommended_parallel_threshold"] = rec ? json(*rec) : json(nullptr);
    emit("{}\nRecommended `parallel_threshold` (max of the hot crossovers and the cold one): {} "
         "(now {}).\n",
         lines, rec ? fmt::format("2^{} = {}", std::countr_zero(*rec), *rec) : std::string("none found in the sweep"),
         fpscope::parallel_threshold);
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
    std::vector<std::string> rel;
    for (std::size_t p = 0; p < flags.size();) {
      const std::size_t q = std::min(flags.find(' ', p), flags.size());
      const std::string fl = flags.substr(p, q - p);
      if (fl == "f16c" || fl == "avx" || fl == "avx2" || fl == "fma" || fl.rfind("avx512", 0) == 0 ||
          fl.rfind("amx", 0) == 0 || fl == "avx_vnni")
        rel.push_back(fl);
      p = q + 1;
    }
    std::string relj;
    for (const auto& r : rel) {
      if (!relj.empty()) relj += ' ';
      relj += r;
    }
    m["cpu"] = model;
    m["cpus_online"] = std::thread::hardware_concurrency();
    m["flags"] = relj;
    m["avx512_bf16"] = cpu_has("avx512bf16");
    m["compiler"] = FPSCOPE_BENCH_CXX;
    m["march"] = FPSCOPE_BENCH_MARCH;
    m["omp_max_threads"] = omp_get_max_threads();
    double la[3] = {0, 0, 0};
    if (getloadavg(la, 3) == 3) m["loadavg_start"] = {la[0], la[1], la[2]};
    const std::time_t now = std::time(nullptr);
    char date[64];
    std::strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S %Z", std::localtime(&now));
    m["date"] = date;
    return m;
  }
};

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  bench b;
  b.opt = parse(argc, argv);

  char tmpl[] = "/tmp/fpscope-bench-XXXXXX";
  if (!mkdtemp(tmpl)) {
    fmt::print(stderr, "cannot create a temporary directory: {}\n", std::strerror(errno));
    return 1;
  }
  b.tmp = tmpl;
  int rc = 0;
  try {
    b.out["machine"] = b.machine();
    b.out["command"] = b.opt.command;
    const json& m = b.out["machine"];
    b.emit("# fpscope-bench-convert\n\n");
    b.emit("- command: `{}`\n- date: {}\n- cpu: {} ({} online), flags: {}\n- avx512_bf16: {}\n"
           "- compiler: {}, -march={}\n- load average at start: {}\n",
           b.opt.command, m["date"].get<std::string>(), m["cpu"].get<std::string>(), m["cpus_online"].get<unsigned>(),
           m["flags"].get<std::string>(), m["avx512_bf16"].get<bool>() ? "yes" : "no (CPU lacks avx512_bf16)",
           m["compiler"].get<std::string>(), m["march"].get<std::string>(),
           m.contains("loadavg_start") ? m["loadavg_start"].dump() : "?");

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
    bench::size_run cache{b.opt.cache_n, "in-cache", b.opt.rounds_cache, {}, {}, {}};
    b.run_size(cache, false, jsizes);
    cache = {};
    bench::size_run mem{b.opt.mem_n, "from-memory", b.opt.rounds_mem, {}, {}, {}};
    b.run_size(mem, true, jsizes);
    b.out["sizes"] = jsizes;
    if (b.opt.sweep) b.sweep(mem.x[0].data(), mem.n);
    mem = {};
    b.py.stop();

    // Goals, each case by itself: a miss anywhere is a miss.
    b.emit("\n## Goals (measured median / goal; a goal passes only if every case passes)\n\n");
    std::map<std::string, std::vector<const json*>> by_goal;
    std::vector<std::string> order;
    for (const auto& g : b.goals) {
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
          if (!misses.empty()) misses += "; ";
          misses += g->at("where").get<std::string>();
        }
        if (!worst || g->at("measured_median").get<double>() < worst->at("measured_median").get<double>()) worst = g;
      }
      const double target = by_goal[name].front()->at("target").get<double>();
      const bool rate = by_goal[name].front()->at("unit") == "values/s";
      auto val = [&](double v) { return rate ? fmt::format("{:.2f}e9", v * 1e-9) : fmt::format("{:.2f}x", v); };
      std::string worst_s = worst ? fmt::format("{} / {} ({})", val(worst->at("measured_median").get<double>()),
                                                val(target), worst->at("where").get<std::string>())
                                  : "n/a";
      const std::string verdict = miss == 0 && pass > 0 ? "PASS" : pass + miss == 0 ? "n/a" : "MISS";
      grows.push_back({name, verdict, fmt::format("{} pass, {} miss{}", pass, miss, na ? fmt::format(", {} n/a", na) : ""),
                       worst_s, misses.empty() ? "-" : misses});
    }
    b.emit("{}\n", table({"goal", "verdict", "cases", "worst case: measured / goal", "missed in"}, grows));
    b.out["goals"] = b.goals;

    if (!b.cpu_shares.empty()) {
      const double med = median(b.cpu_shares), mn = minimum(b.cpu_shares);
      b.emit("Machine state: 1-thread samples ran with a median CPU share of {:.2f} (lowest {:.2f}): below 1 the\n"
             "thread was descheduled (other load on the machine) during the sample.",
             med, mn);
      b.out["cpu_share"] = {{"median", med}, {"min", mn}};
    }
    double la[3] = {0, 0, 0};
    if (getloadavg(la, 3) == 3) {
      b.out["machine"]["loadavg_end"] = {la[0], la[1], la[2]};
      b.emit(" Load average at the end: [{:.2f}, {:.2f}, {:.2f}].\n", la[0], la[1], la[2]);
    }
    if (b.opt.json) fmt::print("{}\n", b.out.dump(1));
    else fmt::print("{}", b.text);
  } catch (const std::exception& e) {
    fmt::print(stderr, "fpscope-bench-convert: {}\n", e.what());
    rc = 1;
  }
  b.py.stop();
  std::error_code ec;
  std::filesystem::remove_all(b.tmp, ec);
  return rc;
}
