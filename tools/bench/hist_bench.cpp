// fpscope-bench-hist: the exact cast-class counts of fpscope/histogram.hpp ("multiplied by S
// and cast to F, how many values vanish, go subnormal, stay normal, overflow?") against the
// memory bandwidth and against the way users count them today.
//
// Everything is measured in ONE run with interleaved repetitions (round r times every
// implementation once, in a shuffled order), so that the ratios compare samples taken under
// the same machine state: on a shared, noisy machine the absolute values/s move, the paired
// ratios much less. Each cell reports the median over rounds and the best (min time) one.
//
//   stream    the hardware limit: a vectorised sum of the array's uint32 words, 1 and 2 threads
//   pass      bucket_histogram::add(x, threads), threads = 1 and 2
//   sweep     class_counter over 64 power-of-two scales 2^-16..2^47 x {fp16, bf16, e4m3, e5m2}
//             (256 specs, IEEE nearest-even): construct + add + refine if needed + counts,
//             timed phase by phase; the same with one counter kept (reset); the constructor
//             and the threshold search alone; and, in cache, the counter's two paths
//             (searched thresholds, bucket histogram) forced, and where one beats the other
//   peers     numpy, torch, ml_dtypes doing the same sweep (multiply, cast, compare, count)
//             through tools/bench/hist_peers.py, a subprocess fed the same array (.npy,
//             checksummed) and timed between our samples on a slice; their counts must equal
//             fpscope's exactly
//   memory    peak RSS around the from-memory runs, and the heap one class_counter holds at
//             each size (every operator new of the process is counted)
//
// See tools/bench/README.md.
#include <fpscope/convert.hpp>
#include <fpscope/format.hpp>
#include <fpscope/histogram.hpp>
#include <fpscope/npy.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <omp.h>

#include <algorithm>
#include <array>
#include <atomic>
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
#include <new>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <malloc.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_common.hpp"
#include "peer_process.hpp"

// ------------------------------------------------------------------------------------------
// Heap accounting. Every operator new of the process (the library's std::vectors included) is
// counted, so that the memory one class_counter holds can be read exactly: the RSS alone
// cannot tell, since glibc keeps freed pages for the next allocation. The data arrays use
// aligned_alloc directly and are not counted.

namespace {
std::atomic<std::size_t> heap_live{0}, heap_peak{0};

void heap_note(void* p) {
  const std::size_t b = malloc_usable_size(p);
  const std::size_t now = heap_live.fetch_add(b, std::memory_order_relaxed) + b;
  std::size_t peak = heap_peak.load(std::memory_order_relaxed);
  while (now > peak && !heap_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}
void heap_forget(void* p) {
  if (p) heap_live.fetch_sub(malloc_usable_size(p), std::memory_order_relaxed);
}
void* heap_alloc(std::size_t n, std::size_t align) {
  void* p = align <= alignof(std::max_align_t) ? std::malloc(n ? n : 1)
                                               : std::aligned_alloc(align, (std::max<std::size_t>(n, 1) + align - 1) / align * align);
  if (!p) throw std::bad_alloc();
  heap_note(p);
  return p;
}
}  // namespace

void* operator new(std::size_t n) { return heap_alloc(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) { return heap_alloc(n, static_cast<std::size_t>(a)); }
void operator delete(void* p) noexcept {
  heap_forget(p);
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  heap_forget(p);
  std::free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  heap_forget(p);
  std::free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  heap_forget(p);
  std::free(p);
}

namespace {

using json = nlohmann::json;
using fpscope::bench::median;
using fpscope::bench::minimum;
using fpscope::bench::peer_process;
using fpscope::bench::ratio;
using fpscope::bench::splitmix;
using fpscope::bench::table;
using fpscope::bench::time_ratio;
using clk = std::chrono::steady_clock;

// ------------------------------------------------------------------------------------------
// Options

struct options {
  bool json = false;
  bool peers = true;
  int rounds_cache = 15;
  int rounds_mem = 7;
  int peer_rounds = 8;  // the 64 scales split in this many subsets, one per round
  std::size_t cache_n = std::size_t{1} << 16;
  std::size_t mem_n = std::size_t{1} << 26;
  std::size_t peer_n = std::size_t{1} << 22;
  bool mem_n_given = false;
  double min_ms = 2.0;  // a sample repeats calls for at least this long (in-cache size)
  std::string input;    // .npy float32 instead of the synthetic data
  std::string python = FPSCOPE_BENCH_PYTHON;
  std::string script = FPSCOPE_BENCH_PEERS;
  std::string command;
};

const char* usage =
    "usage: fpscope-bench-hist [--json] [--quick] [--input FILE.npy] [--rounds N] [--mem-rounds N]\n"
    "         [--peer-rounds N] [--cache-n N] [--mem-n N] [--peer-n N] [--min-ms MS] [--no-peers]\n"
    "         [--python PATH] [--peers PATH]\n"
    "  --json          results as JSON on stdout (progress on stderr) instead of the tables\n"
    "  --quick         fewer rounds, 16 Mi values from memory, a 1 Mi peer slice (a smoke run)\n"
    "  --input F       float32 .npy data instead of the synthetic gradients: from memory = the\n"
    "                  whole file (or its first --mem-n values), in cache and the peer slice =\n"
    "                  its first --cache-n and --peer-n values\n"
    "  --rounds N      interleaved rounds for the in-cache size (default 15)\n"
    "  --mem-rounds N  rounds for the from-memory size (default 7)\n"
    "  --peer-rounds N rounds of the peer comparison: the 64 scales are split in N interleaved\n"
    "                  subsets, round r runs subset r, so every scale runs once (default 8)\n"
    "  --cache-n N     in-cache element count (default 65536)\n"
    "  --mem-n N       from-memory element count (default 67108864)\n"
    "  --peer-n N      the slice the peers sweep (default 4194304)\n"
    "  --min-ms MS     shortest in-cache sample; calls repeat until it is reached (default 2)\n"
    "  --no-peers      do not start hist_peers.py (peers print as n/a (SKIPPED))\n"
    "  --python P      interpreter for hist_peers.py (default: the project venv)\n"
    "  --peers P       the hist_peers.py script\n";

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
        o.mem_n = std::size_t{1} << 24;
        o.peer_n = std::size_t{1} << 20;
      } else if (a == "--input") o.input = value(i);
      else if (a == "--rounds") o.rounds_cache = std::stoi(value(i));
      else if (a == "--mem-rounds") o.rounds_mem = std::stoi(value(i));
      else if (a == "--peer-rounds") o.peer_rounds = std::stoi(value(i));
      else if (a == "--cache-n") o.cache_n = std::stoull(value(i));
      else if (a == "--mem-n") o.mem_n = std::stoull(value(i)), o.mem_n_given = true;
      else if (a == "--peer-n") o.peer_n = std::stoull(value(i));
      else if (a == "--min-ms") o.min_ms = std::stod(value(i));
      else if (a == "--no-peers") o.peers = false;
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
  if (o.rounds_cache < 1 || o.rounds_mem < 1 || o.peer_rounds < 1 || o.peer_rounds > 64 || o.cache_n < 64 ||
      o.mem_n < 64 || o.peer_n < 64) {
    fmt::print(stderr, "{}: rounds must be >= 1 (peer rounds <= 64) and sizes >= 64\n", argv[0]);
    std::exit(2);
  }
  return o;
}

template <class... A>
void progress(fmt::format_string<A...> f, A&&... a) {
  fmt::print(stderr, f, std::forward<A>(a)...);
  std::fflush(stderr);
}

// ------------------------------------------------------------------------------------------
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
  std::span<const float> first(std::size_t k) const { return {p.get(), std::min(k, n)}; }
};

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

constexpr double gen_mean = -14, gen_sd = 5, gen_zeros = 0.05;
constexpr std::uint64_t gen_seed = 20261125;

// Gradient-like values: 5 % exact zeros, else a random sign and log2|x| ~ normal(-14, 5)
// (Box-Muller). Blocks of 64 Ki values have their own seed, so the array is the same whatever
// the thread count, and the in-cache set and the peer slice are prefixes of the big one.
void generate(std::span<float> x) {
  constexpr std::size_t block = std::size_t{1} << 16;
  const std::size_t blocks = (x.size() + block - 1) / block;
#pragma omp parallel for schedule(dynamic, 16)
  for (std::size_t b = 0; b < blocks; ++b) {
    splitmix g{gen_seed ^ (b * 0xD1B54A32D192ED03ull)};
    const std::size_t hi = std::min(x.size(), (b + 1) * block);
    for (std::size_t i = b * block; i < hi; ++i) {
      const std::uint64_t r = g.next();
      const double u1 = 1.0 - g.uniform(), u2 = g.uniform();  // u1 in (0, 1]
      const double z = std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2);
      const std::uint32_t sign = static_cast<std::uint32_t>(r >> 63) << 31;
      const bool zero = double(r & 0xFFFFFFFFu) * 0x1p-32 < gen_zeros;
      x[i] = zero ? 0.0f : from_u32(to_u32(float(std::exp2(gen_mean + gen_sd * z))) | sign);
    }
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

// ------------------------------------------------------------------------------------------
// The streaming read: what reading the array once costs, with next to no arithmetic. The sum
// wraps modulo 2^32 so that the loop is one vector add per 16 words.

[[gnu::noinline]] std::uint32_t stream_sum(const std::uint32_t* __restrict in, std::size_t n) {
  std::uint32_t s = 0;
  for (std::size_t i = 0; i < n; ++i) s += in[i];
  return s;
}

std::uint32_t stream_sum_threads(const std::uint32_t* in, std::size_t n, int threads) {
  if (threads <= 1) return stream_sum(in, n);
  std::uint32_t s = 0;
#pragma omp parallel num_threads(threads) reduction(+ : s)
  {
    const std::size_t t = std::size_t(omp_get_thread_num()), nt = std::size_t(omp_get_num_threads());
    const std::size_t lo = n * t / nt, hi = n * (t + 1) / nt;
    s += stream_sum(in + lo, hi - lo);
  }
  return s;
}

inline void escape(const void* p) { asm volatile("" : : "g"(p) : "memory"); }

// The increments alone: ++table[key] over keys computed beforehand (a uint32 array read like the
// floats). No table of one increment per value can count faster on this core, whatever its key
// costs: it bounds the pass from above.
[[gnu::noinline]] void increments(const std::uint32_t* __restrict keys, std::size_t n, std::uint32_t* __restrict t) {
  for (std::size_t i = 0; i < n; ++i) ++t[keys[i]];
}

// ------------------------------------------------------------------------------------------
// The sweep

struct fmt_info {
  fpscope::format_id id;
  const char* name;
};
constexpr std::array<fmt_info, 4> formats{{{fpscope::format_id::fp16, "fp16"},
                                           {fpscope::format_id::bf16, "bf16"},
                                           {fpscope::format_id::e4m3, "e4m3"},
                                           {fpscope::format_id::e5m2, "e5m2"}}};
constexpr int scale_lo = -16, scale_count = 64;  // 2^-16 .. 2^47

/// The specs of the sweep, format-major: spec f * 64 + (e + 16) is format f at scale 2^e.
/// `only` >= 0 keeps that format alone.
std::vector<fpscope::cast_spec> make_specs(int only = -1) {
  std::vector<fpscope::cast_spec> s;
  for (int f = 0; f < int(formats.size()); ++f) {
    if (only >= 0 && f != only) continue;
    for (int e = scale_lo; e < scale_lo + scale_count; ++e)
      s.push_back({fpscope::builtin(formats[std::size_t(f)].id), fpscope::policy{}, std::ldexp(1.0f, e)});
  }
  return s;
}

/// Where a sweep's time goes, seconds per call.
struct phases {
  static constexpr int count = 6;
  static constexpr std::array<const char*, count> names{"construct or reset", "add", "needs_refine", "refine", "counts",
                                                        "destroy"};
  std::array<double, count> s{};
  int refines = 0;  // calls that needed the refine pass
};

double seconds(clk::duration d) { return std::chrono::duration<double>(d).count(); }

/// One whole sweep as a user runs it: construct, add, refine when asked, counts, destroy.
std::vector<fpscope::class_counts> sweep(std::span<const float> x, const std::vector<fpscope::cast_spec>& specs,
                                         std::uint64_t expected, int threads, phases* ph) {
  std::vector<fpscope::class_counts> out;
  const auto t0 = clk::now();
  clk::time_point t[5];
  {
    fpscope::class_counter cc(specs, expected, threads);
    t[0] = clk::now();
    cc.add(x);
    t[1] = clk::now();
    const bool again = cc.needs_refine();
    t[2] = clk::now();
    if (again) cc.refine(x);
    t[3] = clk::now();
    out = cc.counts();
    t[4] = clk::now();
    if (ph && again) ++ph->refines;
  }
  const auto t5 = clk::now();
  if (ph) {
    ph->s[0] += seconds(t[0] - t0);
    for (int i = 1; i < 5; ++i) ph->s[std::size_t(i)] += seconds(t[i] - t[i - 1]);
    ph->s[5] += seconds(t5 - t[4]);
  }
  return out;
}

/// The same with a counter kept from call to call (class_counter::reset), as for one tensor
/// after another: the thresholds are searched once; "construct" is then the reset.
std::vector<fpscope::class_counts> sweep_again(fpscope::class_counter& cc, std::span<const float> x,
                                               std::uint64_t expected, phases* ph) {
  clk::time_point t[6];
  t[0] = clk::now();
  cc.reset(expected);
  t[1] = clk::now();
  cc.add(x);
  t[2] = clk::now();
  const bool again = cc.needs_refine();
  t[3] = clk::now();
  if (again) cc.refine(x);
  t[4] = clk::now();
  auto out = cc.counts();
  t[5] = clk::now();
  if (ph) {
    for (int i = 0; i < 5; ++i) ph->s[std::size_t(i)] += seconds(t[i + 1] - t[i]);
    if (again) ++ph->refines;
  }
  return out;
}

// ------------------------------------------------------------------------------------------
// The peers (peer_process.hpp).

struct peer_desc {
  std::string id, format, lib, api, why;  // why: non-empty when skipped
  bool threaded = false;
};

// ------------------------------------------------------------------------------------------
// Measurement

double cpu_s(clockid_t which) {
  timespec ts{};
  clock_gettime(which, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

// One implementation at one size: samples (seconds per call), one per round.
struct item {
  std::string id;     // unique, e.g. "pass/t1"
  std::string group;  // stream, pass, sweep, ctor, peer
  std::string impl;   // what runs
  int threads = 1;
  std::function<void(phases*)> run;  // C++ implementations
  std::string peer, format, data;    // peers: their id, format and data set name
  std::string na;                    // non-empty: not available (why)
  std::vector<double> t;             // seconds per call, one per round (NaN: no sample)
  std::vector<phases> ph;            // sweeps: the phases of each sample, per call
  std::vector<int> scales;           // peers: scales run in each round
  int checked = 0, agreed = 0;       // peers: scales whose counts were compared, and equal
};

double total(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;  // NaN when a round is missing: no total
  return v.empty() ? NAN : s;
}

double maxrss_mib(int who = RUSAGE_SELF) {
  rusage ru{};
  getrusage(who, &ru);
  return double(ru.ru_maxrss) / 1024.0;  // Linux: KiB
}
double rss_mib() {
  std::ifstream f("/proc/self/statm");
  std::size_t pages = 0, resident = 0;
  f >> pages >> resident;
  return double(resident) * double(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}
constexpr double mib = 1024.0 * 1024.0;

struct mismatch {
  std::string peer, format;
  int threads, exponent;
  fpscope::class_counts ours, theirs;
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
  std::vector<double> cpu_shares, cpu_shares2;  // CPU time / wall time of 1- and 2-thread samples (per thread)
  std::vector<mismatch> mismatches;
  std::vector<fpscope::class_counts> slice_counts;  // fpscope's, on the peer slice
  std::vector<std::pair<std::string, double>> rss;  // checkpoints: peak RSS, MiB

  template <class... A>
  void emit(fmt::format_string<A...> f, A&&... a) {
    text += fmt::format(f, std::forward<A>(a)...);
  }
  void checkpoint(const std::string& what) { rss.emplace_back(what, maxrss_mib()); }

  double sample_cxx(item& it, double min_s) {
    phases acc;
    const double c0 = cpu_s(CLOCK_THREAD_CPUTIME_ID), p0 = cpu_s(CLOCK_PROCESS_CPUTIME_ID);
    const auto t0 = clk::now();
    int calls = 0;
    double el = 0;
    do {
      it.run(&acc);
      ++calls;
      el = seconds(clk::now() - t0);
    } while (el < min_s);
    // A share below 1: a thread of the sample was descheduled (other load on the machine).
    if (it.threads == 1) cpu_shares.push_back((cpu_s(CLOCK_THREAD_CPUTIME_ID) - c0) / el);
    else cpu_shares2.push_back((cpu_s(CLOCK_PROCESS_CPUTIME_ID) - p0) / (el * it.threads));
    if (it.group == "sweep") {
      for (double& s : acc.s) s /= calls;
      it.ph.push_back(acc);
    }
    return el / calls;
  }

  // The scales (exponents) of peer round r: every peer_rounds-th one, so that each round
  // spans the whole range and the rounds together run every scale once.
  std::vector<int> subset(int r) const {
    std::vector<int> e;
    for (int i = r; i < scale_count; i += opt.peer_rounds) e.push_back(scale_lo + i);
    return e;
  }

  int format_index(const std::string& name) const {
    for (int f = 0; f < int(formats.size()); ++f)
      if (name == formats[std::size_t(f)].name) return f;
    return -1;
  }

  // One peer sweep over the scales of round r (all of them timed as one call); its counts are
  // compared with fpscope's for the same slice, scale by scale.
  double sample_peer(item& it, int r, bool record) {
    const std::vector<int> ex = record ? subset(r) : std::vector<int>{0};
    json scales = json::array();
    for (int e : ex) scales.push_back(std::ldexp(1.0, e));
    std::string why;
    auto rep = py.request({{"cmd", "sweep"}, {"data", it.data}, {"peer", it.peer}, {"threads", it.threads},
                           {"scales", scales}}, why);
    if (!rep) {
      it.na = "error: " + why;
      return NAN;
    }
    if (!record) return NAN;
    it.scales.push_back(int(ex.size()));
    const int f = format_index(it.format);
    const json& counts = (*rep)["counts"];
    for (std::size_t k = 0; k < ex.size() && f >= 0 && !slice_counts.empty(); ++k) {
      fpscope::class_counts theirs;
      for (int c = 0; c < fpscope::cast_class_count; ++c) theirs.n[std::size_t(c)] = counts[k][std::size_t(c)].get<std::uint64_t>();
      const auto& ours = slice_counts[std::size_t(f * scale_count + ex[k] - scale_lo)];
      ++it.checked;
      if (ours == theirs) ++it.agreed;
      else mismatches.push_back({it.peer, it.format, it.threads, ex[k], ours, theirs});
    }
    return (*rep)["s"].get<double>();
  }

  // Every item once per round, in a fresh shuffled order each round.
  void measure(std::deque<item>& items, int rounds, double min_s, const std::string& label) {
    std::vector<item*> live;
    for (item& it : items)
      if (it.na.empty()) live.push_back(&it);
    for (item* it : live) {  // warm-up: caches, pages, first-call costs, the OpenMP team
      if (it->run) it->run(nullptr);
      else sample_peer(*it, 0, false);
    }
    std::mt19937 shuffle(12345);
    for (int r = 0; r < rounds; ++r) {
      progress("  [{}] round {}/{}\r", label, r + 1, rounds);
      std::shuffle(live.begin(), live.end(), shuffle);
      for (item* it : live) {
        double t = NAN;
        if (it->na.empty()) t = it->run ? sample_cxx(*it, min_s) : sample_peer(*it, r, true);
        it->t.push_back(t);
      }
    }
    progress("  [{}] {} rounds done          \n", label, rounds);
  }

  // ----------------------------------------------------------------------------------------
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
      const char* known[][3] = {{"numpy.fp16", "fp16", "numpy"},         {"torch.fp16", "fp16", "torch"},
                                {"torch.bf16", "bf16", "torch"},         {"ml_dtypes.bf16", "bf16", "ml_dtypes"},
                                {"ml_dtypes.e4m3", "e4m3", "ml_dtypes"}, {"ml_dtypes.e5m2", "e5m2", "ml_dtypes"}};
      for (const auto& k : known) peers.push_back({k[0], k[1], k[2], "", peers_why, false});
      progress("peers: all SKIPPED ({})\n", peers_why);
    }
  }

  // ----------------------------------------------------------------------------------------
  // Goals: each case by itself; a goal passes only if every case passes.
  json goals = json::array();
  void goal(const std::string& name, const std::string& where, double measured, double best, double target,
            bool at_least, const std::string& unit) {
    json g = {{"goal", name}, {"where", where}, {"target", target}, {"at_least", at_least}, {"unit", unit}};
    auto meets = [&](double v) { return at_least ? v >= target : v <= target; };
    if (std::isfinite(measured)) {
      g["measured_median"] = measured;
      g["measured_best"] = std::isfinite(best) ? json(best) : json(nullptr);
      g["pass"] = meets(measured);
      g["best_passes"] = std::isfinite(best) && meets(best);
    } else {
      g["measured_median"] = nullptr;
      g["pass"] = nullptr;
    }
    goals.push_back(g);
  }
  static std::string verdict(double v, double best, double target, bool at_least) {
    if (!std::isfinite(v)) return "";
    auto meets = [&](double x) { return at_least ? x >= target : x <= target; };
    return meets(v) ? " PASS" : std::isfinite(best) && meets(best) ? " MISS (best passes)" : " MISS";
  }

  static std::string gv(double s_per_call, std::size_t n) {
    return std::isfinite(s_per_call) ? fmt::format("{:.2f}", double(n) / s_per_call * 1e-9) : "n/a";
  }
  static std::string rate_cell(const item& it, std::size_t n) {
    if (!it.na.empty()) return it.na;
    return fmt::format("{} ({})", gv(median(it.t), n), gv(minimum(it.t), n));
  }
  static std::string ms_cell(const item& it) {
    if (!it.na.empty()) return it.na;
    return fmt::format("{:.3f} ({:.3f})", median(it.t) * 1e3, minimum(it.t) * 1e3);
  }
  static std::string ratio_cell(const ratio& r, double target = NAN, bool at_least = true, bool info = false) {
    if (!r.ok()) return "n/a";
    std::string c = fmt::format("{:.2f} ({:.2f})", r.median, r.best);
    if (std::isfinite(target)) c += verdict(r.median, r.best, target, at_least) + (info ? " (info)" : "");
    return c;
  }

  static json item_json(const item& it, std::size_t n) {
    json j = {{"id", it.id}, {"group", it.group}, {"impl", it.impl}, {"threads", it.threads}, {"n", n}};
    if (!it.format.empty()) j["format"] = it.format;
    if (!it.na.empty()) {
      j["na"] = it.na;
      return j;
    }
    j["samples_s"] = it.t;
    j["median_s"] = median(it.t);
    j["min_s"] = minimum(it.t);
    if (it.group != "peer") {
      j["median_values_per_s"] = double(n) / median(it.t);
      j["best_values_per_s"] = double(n) / minimum(it.t);
    }
    if (!it.ph.empty()) {
      json p = json::object();
      for (int k = 0; k < phases::count; ++k) {
        std::vector<double> v;
        for (const auto& s : it.ph) v.push_back(s.s[std::size_t(k)]);
        p[phases::names[std::size_t(k)]] = median(v);
      }
      j["phases_median_s"] = p;
    }
    if (!it.scales.empty()) {
      j["scales_per_round"] = it.scales;
      j["checked_scales"] = it.checked;
      j["agreeing_scales"] = it.agreed;
    }
    return j;
  }

  // ----------------------------------------------------------------------------------------
  // One size (in cache or from memory): stream, pass, sweep, constructor.
  struct size_run {
    std::size_t n;
    std::string label;
    int rounds;
    bool mem;
    std::deque<item> items;
    std::map<std::string, item*> by_id;
  };
  item& add(size_run& s, item it) {
    s.items.push_back(std::move(it));
    item& ref = s.items.back();
    s.by_id[ref.id] = &ref;
    return ref;
  }
  static const item& get(const size_run& s, const std::string& id) { return *s.by_id.at(id); }

  void run_size(size_run& s, std::span<const float> x, json& jsizes) {
    const std::size_t n = x.size();
    progress("{}: n = {} ({:.2f} MiB of float32)\n", s.label, n, double(n) * 4 / mib);
    const auto* words = reinterpret_cast<const std::uint32_t*>(x.data());
    const auto specs = std::make_shared<const std::vector<fpscope::cast_spec>>(make_specs());
    // Histograms of the pass items live across calls, as a user's would: counts accumulate.
    auto h1 = std::make_shared<fpscope::bucket_histogram>(), h2 = std::make_shared<fpscope::bucket_histogram>();
    for (int th : {1, 2}) {
      item st;
      st.id = fmt::format("stream/t{}", th);
      st.group = "stream";
      st.impl = "streaming read: sum of the uint32 words";
      st.threads = th;
      st.run = [=](phases*) { escape(reinterpret_cast<void*>(std::uintptr_t(stream_sum_threads(words, n, th)))); };
      add(s, std::move(st));

      item ps;
      ps.id = fmt::format("pass/t{}", th);
      ps.group = "pass";
      ps.impl = fmt::format("bucket_histogram::add(x, {})", th);
      ps.threads = th;
      auto h = th == 1 ? h1 : h2;
      ps.run = [=](phases*) {
        h->add(x, th);
        escape(h.get());
      };
      add(s, std::move(ps));

      if (th == 1) {
        auto keys = std::make_shared<std::vector<std::uint32_t>>(n);
        for (std::size_t i = 0; i < n; ++i) (*keys)[i] = fpscope::bucket_histogram::key(words[i]);
        auto table = std::make_shared<std::vector<std::uint32_t>>(fpscope::bucket_histogram::bucket_count);
        item inc;
        inc.id = "increments/t1";
        inc.group = "increments";
        inc.impl = "the increments alone: ++table[key], keys precomputed";
        inc.threads = 1;
        inc.run = [=](phases*) {
          increments(keys->data(), n, table->data());
          escape(table->data());
        };
        add(s, std::move(inc));
      }

      item sw;
      sw.id = fmt::format("sweep/t{}", th);
      sw.group = "sweep";
      sw.impl = fmt::format("class_counter(256 specs, expected_size = n, {}): add, refine?, counts", th);
      // expected_size = n: the counter picks its path (searched thresholds for small n).
      sw.threads = th;
      sw.run = [=](phases* p) { escape(sweep(x, *specs, n, th, p).data()); };
      add(s, std::move(sw));

      item sr;
      sr.id = fmt::format("sweep-reset/t{}", th);
      sr.group = "sweep";
      sr.impl = fmt::format("one class_counter kept (256 specs, {}): reset(n), add, refine?, counts", th);
      sr.threads = th;
      auto kept = std::make_shared<fpscope::class_counter>(*specs, n, th);
      sr.run = [=](phases* p) { escape(sweep_again(*kept, x, n, p).data()); };
      add(s, std::move(sr));

      // In cache, both paths forced, whichever the counter would pick for this n (the switch
      // is a constant of histogram.cpp): a search of the sorted thresholds per value, or the
      // bucket histogram. From memory the searched path would take seconds; it is not run.
      if (!s.mem) {
        item sh;
        sh.id = fmt::format("sweep-hist/t{}", th);
        sh.group = "sweep";
        sh.impl = fmt::format("class_counter(256 specs, expected_size default, {}): histogram path", th);
        sh.threads = th;
        sh.run = [=](phases* p) { escape(sweep(x, *specs, ~std::uint64_t{0}, th, p).data()); };
        add(s, std::move(sh));
        item ss;
        ss.id = fmt::format("sweep-searched/t{}", th);
        ss.group = "sweep";
        ss.impl = fmt::format("class_counter(256 specs, expected_size = 1, {}): searched path", th);
        ss.threads = th;
        ss.run = [=](phases* p) { escape(sweep(x, *specs, 1, th, p).data()); };
        add(s, std::move(ss));
      }
    }
    {
      item c;
      c.id = "ctor";
      c.group = "ctor";
      c.impl = "class_counter constructor alone (256 specs, expected_size = n)";
      c.run = [=](phases*) {
        fpscope::class_counter cc(*specs, n, 1);
        escape(&cc);
      };
      add(s, std::move(c));
      item t;
      t.id = "thresholds";
      t.group = "ctor";
      t.impl = "thresholds32() of the 256 specs alone";
      t.run = [=](phases*) {
        std::uint32_t sink = 0;
        for (const auto& sp : *specs) sink ^= fpscope::thresholds32(sp).at[0][0];
        escape(reinterpret_cast<void*>(std::uintptr_t(sink)));
      };
      add(s, std::move(t));
    }
    measure(s.items, s.rounds, s.mem ? 0.0 : opt.min_ms * 1e-3, s.label);
    report_size(s, n, jsizes);
  }

  void report_size(size_run& s, std::size_t n, json& jsizes) {
    json js = {{"label", s.label}, {"n", n}, {"rounds", s.rounds}, {"items", json::array()}};
    for (const item& it : s.items) js["items"].push_back(item_json(it, n));
    const std::string where = s.label;
    const bool mem = s.mem;
    const std::string info = mem ? "" : " (info)";
    emit("\n## {}: n = {} values ({:.2f} MiB float32), {} interleaved rounds\n\n", s.label, n, double(n) * 4 / mib,
         s.rounds);
    emit("Gval/s = 1e9 values/s: median over rounds (best round). Ratios: paired per round, median "
         "(best/best).{}\n\n",
         mem ? "" : " In cache the goals are informational, marked (info): they are set from memory.");

    // 1 + 2: the stream and the pass.
    std::vector<std::vector<std::string>> rows;
    const item &s1 = get(s, "stream/t1"), &s2 = get(s, "stream/t2"), &p1 = get(s, "pass/t1"), &p2 = get(s, "pass/t2");
    for (const item* it : {&s1, &s2}) {
      const double m = median(it->t);
      rows.push_back({it->impl, std::to_string(it->threads), rate_cell(*it, n),
                      fmt::format("{:.2f}", double(n) / m / it->threads * 1e-9),
                      fmt::format("{:.1f}", 4.0 * double(n) / m * 1e-9), "-", "-"});
    }
    const item& inc = get(s, "increments/t1");
    {
      const double m = median(inc.t);
      const ratio ir = time_ratio(s1.t, inc.t);
      rows.push_back({inc.impl, "1", rate_cell(inc, n), fmt::format("{:.2f}", double(n) / m * 1e-9),
                      fmt::format("{:.1f}", 4.0 * double(n) / m * 1e-9), fmt::format("{:.2f} ({:.2f})", 1 / ir.median, 1 / ir.best),
                      "-"});
    }
    const ratio pr1 = time_ratio(s1.t, p1.t), pr2 = time_ratio(s2.t, p2.t);
    const ratio sp = time_ratio(p2.t, p1.t), sps = time_ratio(s2.t, s1.t);
    const double rate1 = double(n) / median(p1.t), best1 = double(n) / minimum(p1.t);
    for (const item* it : {&p1, &p2}) {
      const double m = median(it->t);
      const bool one = it->threads == 1;
      std::string core = fmt::format("{:.2f}", double(n) / m / it->threads * 1e-9);
      if (one) core += verdict(rate1, best1, 2e9, true) + info;
      rows.push_back({it->impl, std::to_string(it->threads), rate_cell(*it, n), core,
                      fmt::format("{:.1f}", 4.0 * double(n) / m * 1e-9),
                      fmt::format("{:.2f} ({:.2f})", 1 / (one ? pr1 : pr2).median, 1 / (one ? pr1 : pr2).best),
                      one ? "-" : ratio_cell(sp, 1.7, true, !mem)});
    }
    emit("### Hardware limit (streaming read) and the histogram pass\n\n{}\n",
         table({"kernel", "threads", "Gval/s median (best)", "Gval/s per core (goal >= 2)", "GB/s read",
                "speed x stream (same threads)", "2T / 1T (goal >= 1.7)"},
               rows));
    emit("The stream itself gains {} from the second thread. The pass runs at {:.2f} (best/best {:.2f}) of the\n"
         "increments alone, which bound any table of one increment per value.\n\n",
         ratio_cell(sps), 1 / time_ratio(inc.t, p1.t).median, 1 / time_ratio(inc.t, p1.t).best);
    const std::string gsuffix = mem ? "" : " (in cache: info)";
    if (mem) {
      goal("pass: 1 thread >= 2e9 values/s (from memory)", where, rate1, best1, 2e9, true, "values/s");
      goal("pass: 2 threads >= 1.7 x 1 thread (from memory)", where, sp.median, sp.best, 1.7, true, "x");
    }
    js["pass"] = {{"t1_values_per_s", rate1}, {"t2_over_t1", {sp.median, sp.best}},
                  {"t1_speed_vs_stream", 1 / pr1.median}, {"t2_speed_vs_stream", 1 / pr2.median},
                  {"stream_t2_over_t1", sps.median}, {"increments_alone_values_per_s", double(n) / median(inc.t)},
                  {"t1_speed_vs_increments_alone", 1 / time_ratio(inc.t, p1.t).median}};

    // 3: the sweep, in passes.
    std::vector<std::vector<std::string>> srows, prow;
    json jsw = json::array();
    for (const char* id : {"sweep/t1", "sweep/t2", "sweep-reset/t1", "sweep-reset/t2", "sweep-hist/t1", "sweep-hist/t2",
                           "sweep-searched/t1", "sweep-searched/t2"}) {
      if (!s.by_id.count(id)) continue;
      const item& it = get(s, id);
      const item& pass = it.threads == 1 ? p1 : p2;
      const ratio r = time_ratio(pass.t, it.t);  // sweep time / pass time
      const bool main = std::string_view(id).rfind("sweep/", 0) == 0;
      int refines = 0;
      for (const auto& p : it.ph) refines += p.refines;
      srows.push_back({it.impl, std::to_string(it.threads), ms_cell(it), rate_cell(it, n),
                       ratio_cell(r, 1.5, false, !mem), refines ? "yes" : "no"});
      if (main && mem)
        goal("sweep (256 specs) <= 1.5 x one pass, same threads (from memory)",
             fmt::format("{} {} thread(s)", where, it.threads), r.median, r.best, 1.5, false, "x");
      std::vector<std::string> pr{it.impl, std::to_string(it.threads)};
      json jp = json::object();
      for (int k = 0; k < phases::count; ++k) {
        std::vector<double> v;
        for (const auto& p : it.ph) v.push_back(p.s[std::size_t(k)]);
        const double m = median(v);
        pr.push_back(fmt::format("{:.3f}", m * 1e3));
        jp[phases::names[std::size_t(k)]] = m;
      }
      prow.push_back(pr);
      jsw.push_back({{"id", it.id}, {"sweep_over_pass", {r.median, r.best}}, {"phases_median_s", jp}});
    }
    {
      const item& c = get(s, "ctor");
      const item& t = get(s, "thresholds");
      srows.push_back({c.impl, "-", ms_cell(c), "-", fmt::format("{:.2f} (vs 1T pass)", median(c.t) / median(p1.t)), "-"});
      srows.push_back({t.impl, "-", ms_cell(t), "-", fmt::format("{:.2f} (vs 1T pass)", median(t.t) / median(p1.t)), "-"});
    }
    emit("### The sweep: 64 scales 2^-16..2^47 x fp16, bf16, e4m3, e5m2 (256 specs){}\n\n{}\n", gsuffix,
         table({"what", "threads", "ms median (best)", "Gval/s", "sweep / pass time (goal <= 1.5)", "refine needed"},
               srows));
    std::vector<std::string> ph_head{"sweep", "threads"};
    for (const char* nm : phases::names) ph_head.push_back(std::string(nm) + " ms");
    emit("Where the sweep's time goes (median per phase, ms):\n\n{}\n", table(ph_head, prow));
    js["sweep"] = jsw;
    jsizes.push_back(js);
  }

  // ----------------------------------------------------------------------------------------
  // For a small expected_size class_counter searches the sorted thresholds per value instead
  // of building the histogram. Where does the histogram path start to win? A kept counter,
  // reset to either path each call (the thresholds are not searched again), 1 thread.
  void path_crossover(const buffer<float>& data) {
    std::vector<std::size_t> sizes;
    for (int e = 6; e <= 17; ++e)
      if ((std::size_t{1} << e) <= data.n) sizes.push_back(std::size_t{1} << e);
    progress("path crossover: sizes 2^6..2^17, {} rounds\n", opt.rounds_cache);
    fpscope::class_counter cc(make_specs(), ~std::uint64_t{0}, 1);
    std::map<std::pair<std::size_t, int>, std::vector<double>> t;  // (n, searched) -> samples
    const double min_s = 1e-3;
    for (int r = 0; r < opt.rounds_cache; ++r)
      for (std::size_t n : sizes)
        for (int k = 0; k < 2; ++k) {
          const int searched = (k + r) % 2;  // alternate which path goes first
          const auto x = data.first(n);
          const auto t0 = clk::now();
          int calls = 0;
          double el = 0;
          do {
            // expected_size 1 or "unknown" (the default): the two ends of the switch
            escape(sweep_again(cc, x, searched ? 1 : ~std::uint64_t{0}, nullptr).data());
            ++calls;
            el = seconds(clk::now() - t0);
          } while (el < min_s);
          t[{n, searched}].push_back(el / calls);
        }
    std::vector<std::vector<std::string>> rows;
    json jc = json::array();
    std::optional<std::size_t> wins;  // from here on the histogram path is faster at every size
    for (auto it = sizes.rbegin(); it != sizes.rend(); ++it) {
      if (time_ratio(t[{*it, 0}], t[{*it, 1}]).median > 1) wins = *it;
      else break;
    }
    for (std::size_t n : sizes) {
      const ratio r = time_ratio(t[{n, 0}], t[{n, 1}]);  // searched / histogram time
      rows.push_back({fmt::format("2^{} = {}", std::countr_zero(n), n), fmt::format("{:.4f}", median(t[{n, 1}]) * 1e3),
                      fmt::format("{:.4f}", median(t[{n, 0}]) * 1e3), ratio_cell(r)});
      jc.push_back({{"n", n}, {"searched_s", median(t[{n, 1}])}, {"histogram_s", median(t[{n, 0}])},
                    {"searched_over_histogram", r.median}});
    }
    emit("### Searched or histogram path? A kept counter reset to each path, 256 specs, 1 thread, in cache\n\n"
         "Per call: reset + add + counts, ms median over {} rounds (samples of >= 1 ms of calls). class_counter "
         "searches the sorted thresholds per value when expected_size is below a constant of histogram.cpp, and "
         "builds the bucket histogram otherwise; that constant should be about the size from which the histogram "
         "path wins.\n\n{}\n",
         opt.rounds_cache, table({"n", "searched ms", "histogram ms", "histogram speed-up median (best)"}, rows));
    emit("The histogram path is faster at every size from n = {}.\n",
         wins ? fmt::format("2^{} = {}", std::countr_zero(*wins), *wins) : std::string("(none in the range)"));
    out["path_crossover"] = {{"sizes", jc}, {"histogram_faster_from", wins ? json(*wins) : json(nullptr)}};
  }

  // ----------------------------------------------------------------------------------------
  // Self-check on the in-cache data: both counting paths against the per-element reference.
  void self_check(std::span<const float> x) {
    progress("self-check: class_counter against count_reference on {} values\n", x.size());
    const auto specs = make_specs();
    const auto hist = sweep(x, specs, ~std::uint64_t{0}, 1, nullptr);
    const auto searched = sweep(x, specs, 1, 1, nullptr);
    const auto ref = fpscope::count_reference(x, specs);
    int bad_h = 0, bad_s = 0;
    for (std::size_t i = 0; i < specs.size(); ++i) {
      bad_h += !(hist[i] == ref[i]);
      bad_s += !(searched[i] == ref[i]);
    }
    const bool ok = bad_h == 0 && bad_s == 0;
    emit("\nSelf-check on the in-cache data: class_counter's histogram path and searched path against "
         "count_reference (one cast per element and spec): {}\n",
         ok ? "all 256 specs equal." : fmt::format("DIFFERS: histogram path {} specs, searched path {} specs", bad_h, bad_s));
    out["self_check"] = {{"n", x.size()}, {"histogram_path_bad_specs", bad_h}, {"searched_path_bad_specs", bad_s}};
  }

  // ----------------------------------------------------------------------------------------
  // Memory: the heap one class_counter sweep holds at its peak, by size and path.
  void memory_footprint(const buffer<float>& data) {
    std::vector<std::vector<std::string>> rows;
    json jm = json::array();
    const auto specs = make_specs();
    std::vector<std::size_t> sizes{opt.cache_n, opt.peer_n, data.n};
    std::sort(sizes.begin(), sizes.end());
    sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
    for (std::size_t n : sizes) {
      const auto x = data.first(n);
      for (int th : {1, 2})
        for (bool searched : {false, true}) {
          if (searched && (th == 2 || n > opt.cache_n)) continue;
          const std::size_t live0 = heap_live.load();
          heap_peak.store(live0);
          const double rss0 = rss_mib();
          double rss1 = 0;
          {
            fpscope::class_counter cc(specs, searched ? 1 : ~std::uint64_t{0}, th);
            cc.add(x);
            if (cc.needs_refine()) cc.refine(x);
            escape(cc.counts().data());
            rss1 = rss_mib();
          }
          const double held = double(heap_peak.load() - live0) / mib;
          rows.push_back({fmt::format("{}", n), std::to_string(th), searched ? "searched (expected_size = 1)" : "histogram",
                          fmt::format("{:.1f}", held), fmt::format("{:+.1f}", rss1 - rss0)});
          jm.push_back({{"n", n}, {"threads", th}, {"path", searched ? "searched" : "histogram"}, {"heap_peak_mib", held},
                        {"rss_growth_mib", rss1 - rss0}});
        }
    }
    emit("\n## Memory\n\n");
    std::vector<std::vector<std::string>> rrows;
    json jr = json::array();
    for (const auto& [what, v] : rss) {
      rrows.push_back({what, fmt::format("{:.1f}", v)});
      jr.push_back({{"at", what}, {"peak_rss_mib", v}});
    }
    emit("Peak RSS of this process (getrusage ru_maxrss) at each point:\n\n{}\n",
         table({"point", "peak RSS MiB"}, rrows));
    emit("Heap one class_counter (256 specs) holds at its peak during construct + add + refine + counts "
         "(every operator new counted; the input array is not), and how much the RSS grew meanwhile (0 when "
         "glibc reused pages it kept from an earlier counter):\n\n{}\n",
         table({"n", "threads", "path", "heap peak MiB", "RSS growth MiB"}, rows));
    out["memory"] = {{"peak_rss", jr}, {"class_counter", jm}};
  }

  // ----------------------------------------------------------------------------------------
  // 4: the peers, on the first peer_n values, side by side with fpscope's sweep of that slice.
  void run_peers(std::span<const float> x, const item& mem_sweep1, const item& mem_sweep2, std::size_t mem_n) {
    const std::size_t n = x.size();
    progress("peers: slice of n = {}, {} rounds of {} scales\n", n, opt.peer_rounds,
             (scale_count + opt.peer_rounds - 1) / opt.peer_rounds);
    slice_counts = sweep(x, make_specs(), n, 1, nullptr);
    std::deque<item> items;
    std::map<std::string, item*> by_id;
    auto add_item = [&](item it) -> item& {
      items.push_back(std::move(it));
      by_id[items.back().id] = &items.back();
      return items.back();
    };
    const auto all = std::make_shared<const std::vector<fpscope::cast_spec>>(make_specs());
    for (int th : {1, 2}) {
      item it;
      it.id = fmt::format("fpscope/all/t{}", th);
      it.group = "sweep";
      it.impl = fmt::format("class_counter, 256 specs, threads={}", th);
      it.threads = th;
      it.run = [=](phases* p) { escape(sweep(x, *all, n, th, p).data()); };
      add_item(std::move(it));
    }
    for (int f = 0; f < int(formats.size()); ++f) {
      const auto one = std::make_shared<const std::vector<fpscope::cast_spec>>(make_specs(f));
      item it;
      it.id = fmt::format("fpscope/{}/t1", formats[std::size_t(f)].name);
      it.group = "sweep";
      it.format = formats[std::size_t(f)].name;
      it.impl = fmt::format("class_counter, 64 {} specs, threads=1", it.format);
      it.run = [=](phases* p) { escape(sweep(x, *one, n, 1, p).data()); };
      add_item(std::move(it));
    }
    const std::string dname = "slice";
    bool loaded = peers_up && py.running();
    std::string load_why = peers_why;
    if (loaded) {
      const auto path = (tmp / "slice.npy").string();
      fpscope::npy_save(path, fpscope::npy_dtype::f4, {n}, x);
      const checksum_t c = checksum(x);
      if (!py.request({{"cmd", "load"}, {"name", dname}, {"path", path}, {"sum", c.sum}, {"xor", c.xr}}, load_why))
        loaded = false;
      std::filesystem::remove(path);
    }
    for (const peer_desc& p : peers)
      for (int th : {1, 2}) {
        if (th == 2 && !p.threaded) continue;
        item it;
        it.id = fmt::format("peer/{}/t{}", p.id, th);
        it.group = "peer";
        it.format = p.format;
        it.impl = p.api.empty() ? p.id : p.api;
        it.threads = th;
        it.peer = p.id;
        it.data = dname;
        if (!p.why.empty()) it.na = "n/a (SKIPPED: " + p.why + ")";
        else if (!loaded) it.na = "n/a (SKIPPED: " + load_why + ")";
        add_item(std::move(it));
      }
    measure(items, opt.peer_rounds, 0.05, "peers");
    if (loaded) py.request({{"cmd", "forget"}, {"name", dname}}, load_why);
    py.stop();  // its peak RSS is known from here on (RUSAGE_CHILDREN)
    const double peers_rss = maxrss_mib(RUSAGE_CHILDREN);

    // A peer's time for all 64 scales of its format: the sum over rounds (each a different
    // subset of the scales; together every scale once).
    auto peer_total = [&](const item& it) {
      int sc = 0;
      for (int k : it.scales) sc += k;
      return it.na.empty() && sc == scale_count ? total(it.t) : NAN;
    };
    const double per_spec_values = double(n) * scale_count;

    emit("\n## Peers: the same sweep the way users count today, on the first {} values\n\n", n);
    emit("Each peer round runs every {}-th scale (round r: scales 2^(-16+r), 2^(-16+r+{}), ...), so the {} "
         "rounds together run each of the 64 scales once; a peer's 64-scale time is the sum over its rounds "
         "(one sample per scale, no best-of). The peers' counts are compared with fpscope's for every scale "
         "they run. fpscope's sweeps of the same slice ran interleaved with them ({} rounds).\n\n",
         opt.peer_rounds, opt.peer_rounds, opt.peer_rounds, opt.peer_rounds);
    std::vector<std::vector<std::string>> rows;
    json jp = json::array();
    for (const item& it : items) {
      if (it.group != "peer") continue;
      const double tt = peer_total(it);
      std::string check = it.na.empty() ? fmt::format("{}/{} scales equal", it.agreed, it.checked) : "-";
      if (it.na.empty() && it.agreed != it.checked) check += " MISMATCH";
      rows.push_back({it.format, it.peer, std::to_string(it.threads), it.na.empty() ? fmt::format("{:.3f}", tt) : it.na,
                      it.na.empty() ? fmt::format("{:.2f}", tt / per_spec_values * 1e9) : "-", check});
      json j = item_json(it, n);
      j["total_64_scales_s"] = std::isfinite(tt) ? json(tt) : json(nullptr);
      jp.push_back(j);
    }
    emit("{}\n", table({"format", "peer", "threads", "64 scales, s", "ns per value per scale", "counts vs fpscope"}, rows));
    emit("Calls: {}\n\n", [&] {
      std::string s;
      for (const peer_desc& p : peers)
        if (p.why.empty()) s += fmt::format("\n- {}: `{}`", p.id, p.api);
      return s;
    }());

    // The fastest peer per format with at most `threads` threads (for two: torch's 1- or 2-thread
    // run, whichever is faster, and the single-threaded libraries).
    struct best_peer {
      std::string id;
      double s = NAN;
    };
    auto fastest = [&](const std::string& fmt_name, int threads) {
      best_peer b;
      for (const item& it : items)
        if (it.group == "peer" && it.format == fmt_name && it.threads <= threads) {
          const double tt = peer_total(it);
          if (std::isfinite(tt) && !(tt >= b.s)) b = {fmt::format("{} ({}T)", it.peer, it.threads), tt};
        }
      return b;
    };
    std::vector<std::vector<std::string>> frows;
    json jf = json::array();
    for (const auto& f : formats) {
      const item& me = *by_id.at(fmt::format("fpscope/{}/t1", f.name));
      const best_peer b = fastest(f.name, 1);
      const double r = b.s / median(me.t), rb = b.s / minimum(me.t);
      frows.push_back({f.name, ms_cell(me), b.id.empty() ? "n/a" : b.id,
                       std::isfinite(b.s) ? fmt::format("{:.3f}", b.s) : "n/a",
                       std::isfinite(r) ? fmt::format("{:.1f} ({:.1f})", r, rb) : "n/a"});
      jf.push_back({{"format", f.name}, {"fpscope_64_specs_median_s", median(me.t)}, {"fastest_peer", b.id},
                    {"peer_64_scales_s", std::isfinite(b.s) ? json(b.s) : json(nullptr)},
                    {"x_faster", std::isfinite(r) ? json(r) : json(nullptr)}});
    }
    emit("### Per format, 1 thread: fpscope's class_counter with that format's 64 specs vs the fastest peer\n\n{}\n",
         table({"format", "fpscope 64 specs ms median (best)", "fastest peer", "peer 64 scales s", "x faster median (best)"},
               frows));

    // The whole sweep: the fastest peer of every format, summed.
    std::vector<std::vector<std::string>> wrows;
    json jw = json::array();
    for (int th : {1, 2}) {
      double sum = 0;
      std::string who;
      for (const auto& f : formats) {
        const best_peer b = fastest(f.name, th);
        sum += b.s;
        if (!who.empty()) who += " + ";
        who += b.id.empty() ? std::string("n/a") : b.id;
      }
      const item& me = *by_id.at(fmt::format("fpscope/all/t{}", th));
      const item& mm = th == 1 ? mem_sweep1 : mem_sweep2;
      const double same = sum / median(me.t), same_b = sum / minimum(me.t);
      const double peer_pv = sum / double(n), mem_pv = median(mm.t) / double(mem_n), mem_pv_b = minimum(mm.t) / double(mem_n);
      const double pv = peer_pv / mem_pv, pv_b = peer_pv / mem_pv_b;
      const std::string w = fmt::format("{} thread(s)", th);
      goal("sweep >= 20 x the fastest peers, same slice side by side", w, same, same_b, 20, true, "x");
      goal("sweep >= 20 x the fastest peers, per value (fpscope from memory)", w, pv, pv_b, 20, true, "x");
      wrows.push_back({std::to_string(th), who, std::isfinite(sum) ? fmt::format("{:.2f}", sum) : "n/a", ms_cell(me),
                       std::isfinite(same) ? fmt::format("{:.0f} ({:.0f}){}", same, same_b, verdict(same, same_b, 20, true)) : "n/a",
                       std::isfinite(peer_pv) ? fmt::format("{:.2f}", peer_pv * 1e9) : "n/a",
                       fmt::format("{:.3f}", mem_pv * 1e9),
                       std::isfinite(pv) ? fmt::format("{:.0f} ({:.0f}){}", pv, pv_b, verdict(pv, pv_b, 20, true)) : "n/a"});
      jw.push_back({{"threads", th}, {"peers", who}, {"peers_s", std::isfinite(sum) ? json(sum) : json(nullptr)},
                    {"fpscope_slice_median_s", median(me.t)}, {"x_same_slice", std::isfinite(same) ? json(same) : json(nullptr)},
                    {"peers_ns_per_value", std::isfinite(peer_pv) ? json(peer_pv * 1e9) : json(nullptr)},
                    {"fpscope_mem_ns_per_value", mem_pv * 1e9},
                    {"x_per_value", std::isfinite(pv) ? json(pv) : json(nullptr)}});
    }
    emit("### The whole sweep (256 specs): fpscope vs the fastest peer of each format, summed\n\n"
         "Same slice: fpscope's class_counter on the same {} values, timed between the peers' rounds. Per value: "
         "the peers' time per value on the slice against fpscope's from-memory sweep of {} values (its time "
         "per value; the peers are too slow to run there{}).\n\n{}\n",
         n, mem_n, [&] {
           double sum = 0;
           for (const auto& f : formats) sum += fastest(f.name, 1).s;
           return std::isfinite(sum) ? fmt::format(": at this rate one 256-spec sweep of {} values would take them "
                                                   "about {:.0f} s", mem_n, sum / double(n) * double(mem_n))
                                     : std::string();
         }(),
         table({"threads", "fastest peers", "peers s", "fpscope same slice ms median (best)",
                "x same slice (goal >= 20)", "peers ns/value", "fpscope from memory ns/value", "x per value (goal >= 20)"},
               wrows));

    // Counts: loud about every disagreement.
    json jmis = json::array();
    if (!peers_up || !loaded) {
      emit("Counts vs peers: not checked (peers SKIPPED).\n");
    } else if (mismatches.empty()) {
      emit("Counts vs peers: every peer's counts equal fpscope's for every scale it ran (all 6 classes).\n");
    } else {
      std::sort(mismatches.begin(), mismatches.end(), [](const mismatch& a, const mismatch& b) {
        return std::tie(a.peer, a.threads, a.exponent) < std::tie(b.peer, b.threads, b.exponent);
      });
      emit("Counts vs peers: {} (peer, scale) pairs DIFFER:\n\n", mismatches.size());
      for (const mismatch& m : mismatches) {
        std::string cls;
        for (int c = 0; c < fpscope::cast_class_count; ++c) {
          const auto cc = static_cast<fpscope::cast_class>(c);
          if (m.ours[cc] != m.theirs[cc])
            cls += fmt::format(" {} fpscope {} vs peer {};", fpscope::name(cc), m.ours[cc], m.theirs[cc]);
        }
        emit("MISMATCH {} ({}T) {} scale 2^{}:{}\n", m.peer, m.threads, m.format, m.exponent, cls);
        jmis.push_back({{"peer", m.peer}, {"threads", m.threads}, {"format", m.format}, {"scale_exp", m.exponent},
                        {"fpscope", m.ours.n}, {"peer_counts", m.theirs.n}});
      }
    }
    if (loaded)
      emit("\nThe peers' process reached a peak RSS of {:.0f} MiB with the {:.0f} MiB slice loaded (the interpreter "
           "and its imports, plus per scale the product, the cast and the comparison masks).\n",
           peers_rss, double(n) * 4 / mib);
    json jfp = json::array();
    for (item& it : items)
      if (it.group == "sweep") jfp.push_back(item_json(it, n));
    out["peers_run"] = {{"n", n}, {"rounds", opt.peer_rounds}, {"peers", jp}, {"fpscope", jfp}, {"per_format", jf},
                        {"whole", jw}, {"mismatches", jmis}, {"peers_peak_rss_mib", peers_rss}};
  }

  // ----------------------------------------------------------------------------------------
  json machine() {
    json m;
    std::ifstream ci("/proc/cpuinfo");
    std::string line, model;
    while (std::getline(ci, line))
      if (model.empty() && line.rfind("model name", 0) == 0) model = line.substr(line.find(':') + 2);
    std::ifstream mi("/proc/meminfo");
    std::string key;
    std::uint64_t kib = 0;
    while (mi >> key) {
      if (key == "MemTotal:") {
        mi >> kib;
        break;
      }
      std::getline(mi, line);
    }
    m["cpu"] = model;
    m["cpus_online"] = std::thread::hardware_concurrency();
    m["ram_gib"] = double(kib) / (1024.0 * 1024.0);
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
};

std::string goals_table(const json& goals, std::string& lines) {
  std::map<std::string, std::vector<const json*>> by_goal;
  std::vector<std::string> order;
  for (const auto& g : goals) {
    const std::string name = g["goal"];
    if (!by_goal.count(name)) order.push_back(name);
    by_goal[name].push_back(&g);
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& name : order) {
    int pass = 0, miss = 0, na = 0;
    std::string cases;
    const json& first = *by_goal[name].front();
    const bool rate = first["unit"] == "values/s";
    auto val = [&](double v) { return rate ? fmt::format("{:.2f}e9", v * 1e-9) : fmt::format("{:.2f}x", v); };
    for (const json* g : by_goal[name]) {
      if (!cases.empty()) cases += "; ";
      if (g->at("pass").is_null()) {
        ++na;
        cases += g->at("where").get<std::string>() + " n/a";
        continue;
      }
      const bool ok = g->at("pass").get<bool>();
      ok ? ++pass : ++miss;
      cases += fmt::format("{} {}{}", g->at("where").get<std::string>(), val(g->at("measured_median").get<double>()),
                           ok ? "" : g->at("best_passes").get<bool>() ? " MISS (best passes)" : " MISS");
    }
    const std::string v = miss == 0 && pass > 0 ? "PASS" : pass + miss == 0 ? "n/a" : "MISS";
    const std::string target = fmt::format("{} {}", first["at_least"].get<bool>() ? ">=" : "<=",
                                           val(first["target"].get<double>()));
    rows.push_back({name, v, target, cases});
    lines += fmt::format("VERDICT {}: {} ({})\n", name, v, cases);
  }
  return table({"goal", "verdict", "target", "cases: measured median"}, rows);
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  bench b;
  b.opt = parse(argc, argv);
  b.checkpoint("start");

  char tmpl[] = "/tmp/fpscope-bench-hist-XXXXXX";
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

    // The data: the big array; the in-cache set and the peer slice are its prefixes.
    buffer<float> data;
    std::string data_desc;
    if (!b.opt.input.empty()) {
      fpscope::npy_reader r(b.opt.input);
      const auto v = r.values<float>();
      const std::size_t n = b.opt.mem_n_given ? std::min<std::size_t>(b.opt.mem_n, v.size()) : v.size();
      if (n < 64) throw std::runtime_error(b.opt.input + ": fewer than 64 values");
      data = buffer<float>(n);
      std::copy_n(v.begin(), n, data.data());  // a private copy: no page faults of the mapping in a timing
      data_desc = fmt::format("{} (first {} of {} float32 values)", b.opt.input, n, v.size());
    } else {
      progress("generating {} values\n", b.opt.mem_n);
      data = buffer<float>(b.opt.mem_n);
      generate(std::span<float>(data.data(), data.n));
      data_desc = fmt::format("synthetic gradients, seed {}: sign random, log2|x| ~ normal({}, {}), {:.0f} % exact zeros",
                              gen_seed, gen_mean, gen_sd, gen_zeros * 100);
    }
    b.checkpoint(fmt::format("after allocating the data ({} values, {:.0f} MiB)", data.n, double(data.n) * 4 / mib));
    b.out["data"] = {{"description", data_desc}, {"n", data.n}};

    b.emit("# fpscope-bench-hist\n\n");
    b.emit("- command: `{}`\n- date: {}\n- cpu: {} ({} online), RAM {:.1f} GiB\n- compiler: {}, -march={}, "
           "{} (library histogram.cpp: -O3)\n- OpenMP {}, parallel_threshold {}\n- load average at start: {}\n- data: {}\n",
           b.opt.command, m["date"].get<std::string>(), m["cpu"].get<std::string>(), m["cpus_online"].get<unsigned>(),
           m["ram_gib"].get<double>(), m["compiler"].get<std::string>(), m["march"].get<std::string>(),
           m["build"].get<std::string>(), m["openmp"].get<int>(), fpscope::parallel_threshold,
           m.contains("loadavg_start") ? m["loadavg_start"].dump() : "?", data_desc);

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
    bench::size_run cache{std::min(b.opt.cache_n, data.n), "in-cache", b.opt.rounds_cache, false, {}, {}};
    b.run_size(cache, data.first(b.opt.cache_n), jsizes);
    b.path_crossover(data);
    b.self_check(data.first(b.opt.cache_n));
    cache.items.clear();  // their pass histograms: the RSS checkpoints below then show the from-memory runs alone
    cache.by_id.clear();
    b.checkpoint("before the from-memory runs");
    bench::size_run mem{data.n, "from-memory", b.opt.rounds_mem, true, {}, {}};
    b.run_size(mem, data.first(data.n), jsizes);
    b.checkpoint("after the from-memory runs");
    b.out["sizes"] = jsizes;

    b.run_peers(data.first(b.opt.peer_n), bench::get(mem, "sweep/t1"), bench::get(mem, "sweep/t2"), data.n);
    b.checkpoint("after the peer comparison");
    b.memory_footprint(data);
    b.checkpoint("after the class_counter footprint runs (end)");
    b.emit("Peak RSS at the end: {:.1f} MiB, of which the data array is {:.1f} MiB.\n", b.rss.back().second,
           double(data.n) * 4 / mib);

    b.emit("\n## Goals (a goal passes only if every case passes)\n\n");
    std::string lines;
    b.emit("{}\n", goals_table(b.goals, lines));
    b.emit("{}", lines);
    b.out["goals"] = b.goals;
    if (!b.mismatches.empty())
      b.emit("VERDICT counts vs peers: MISMATCH ({} peer/scale pairs, listed above)\n", b.mismatches.size());
    else if (b.peers_up)
      b.emit("VERDICT counts vs peers: all equal\n");

    if (!b.cpu_shares.empty()) {
      const double med = median(b.cpu_shares), mn = minimum(b.cpu_shares);
      const double med2 = median(b.cpu_shares2), mn2 = minimum(b.cpu_shares2);
      b.emit("\nMachine state: 1-thread samples ran with a median CPU share of {:.2f} (lowest {:.2f}), 2-thread samples "
             "with {:.2f} per thread (lowest {:.2f}): below 1 a thread was descheduled (other load on the machine) "
             "during the sample.",
             med, mn, med2, mn2);
      b.out["cpu_share"] = {{"median", med}, {"min", mn}, {"median_2t", med2}, {"min_2t", mn2}};
    }
    double la[3] = {0, 0, 0};
    if (getloadavg(la, 3) == 3) {
      b.out["machine"]["loadavg_end"] = {la[0], la[1], la[2]};
      b.emit(" Load average at the end: [{:.2f}, {:.2f}, {:.2f}].\n", la[0], la[1], la[2]);
    }
    if (b.opt.json) fmt::print("{}\n", b.out.dump(1));
    else fmt::print("{}", b.text);
  } catch (const std::exception& e) {
    fmt::print(stderr, "fpscope-bench-hist: {}\n", e.what());
    rc = 1;
  }
  b.py.stop();
  std::error_code ec;
  std::filesystem::remove_all(b.tmp, ec);
  return rc;
}
