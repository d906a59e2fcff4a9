// fpscope-bench-hist: the exact cast-class counts of fpscope/histogram.hpp ("multiplied by S
// and cast to F, how many values vanish, go subnormal, stay normal, overflow?") against the
// memory bandwidth and against the way users count them today, in interleaved rounds
// (harness.hpp):
//
//   stream    the hardware limit: a vectorised sum of the array's uint32 words, 1 and 2 threads
//   pass      bucket_histogram::add(x, threads), threads = 1 and 2
//   sweep     class_counter over 64 power-of-two scales 2^-16..2^47 x {fp16, bf16, e4m3, e5m2}
//             (256 specs, IEEE nearest-even): construct + add + refine if needed + counts,
//             timed phase by phase; the same with one counter kept (reset); the constructor
//             and the threshold search alone; and, in cache, the counter's two paths
//             (searched thresholds, bucket histogram) forced, and where one beats the other
//   peers     numpy, torch, ml_dtypes doing the same sweep (multiply, cast, compare, count)
//             (hist_peers.py), fed the same array and timed between our samples on a slice;
//             their counts must equal fpscope's exactly
//   memory    peak RSS around the from-memory runs, and the heap one class_counter holds at
//             each size (every operator new of the process is counted)
//
// See tools/bench/README.md.
#include <fpscope/convert.hpp>
#include <fpscope/format.hpp>
#include <fpscope/histogram.hpp>
#include <fpscope/npy.hpp>

#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

#include "harness.hpp"

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

using namespace fpscope::bench;

// ------------------------------------------------------------------------------------------
// Data

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
      x[i] = zero ? 0.0f : std::bit_cast<float>(std::bit_cast<std::uint32_t>(float(std::exp2(gen_mean + gen_sd * z))) | sign);
    }
  }
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

// The increments alone: ++table[key] over keys computed beforehand (a uint32 array read like the
// floats). No table of one increment per value can count faster on this core, whatever its key
// costs: it bounds the pass from above.
[[gnu::noinline]] void increments(const std::uint32_t* __restrict keys, std::size_t n, std::uint32_t* __restrict t) {
  for (std::size_t i = 0; i < n; ++i) ++t[keys[i]];
}

// ------------------------------------------------------------------------------------------
// The sweep

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

/// The phases of a sweep item: accumulated over a sample's calls, then per call, one per sample.
struct phase_log {
  phases acc;
  std::vector<phases> per_sample;

  std::function<void(int)> hook() {
    return [this](int calls) {
      if (calls) {
        for (double& s : acc.s) s /= calls;
        per_sample.push_back(acc);
      }
      acc = {};
    };
  }
  double median_of(int k) const {
    std::vector<double> v;
    for (const auto& p : per_sample) v.push_back(p.s[std::size_t(k)]);
    return median(v);
  }
  json to_json() const {
    json p = json::object();
    for (int k = 0; k < phases::count; ++k) p[phases::names[std::size_t(k)]] = median_of(k);
    return p;
  }
};

/// What a peer item's rounds checked: scales run per round, scales compared and equal.
struct peer_log {
  std::vector<int> scales;
  int checked = 0, agreed = 0;
};

// Every peer hist_peers.py knows, listed as skipped when the peers cannot run.
std::vector<peer_desc> known_peers() {
  std::vector<peer_desc> k;
  for (const auto& [id, format, lib] : std::initializer_list<std::array<const char*, 3>>{
           {"numpy.fp16", "fp16", "numpy"}, {"torch.fp16", "fp16", "torch"}, {"torch.bf16", "bf16", "torch"},
           {"ml_dtypes.bf16", "bf16", "ml_dtypes"}, {"ml_dtypes.e4m3", "e4m3", "ml_dtypes"},
           {"ml_dtypes.e5m2", "e5m2", "ml_dtypes"}})
    k.push_back({.id = id, .format = format, .lib = lib});
  return k;
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

/// This benchmark's own options.
struct hist_options {
  int peer_rounds = 8;  // the 64 scales split in this many subsets, one per round
  std::size_t peer_n = std::size_t{1} << 22;
  bool mem_n_given = false;
  std::string input;  // .npy float32 instead of the synthetic data
};

class hist_bench {
 public:
  hist_bench(session& s, hist_options me) : s_(s), me_(std::move(me)) {
    s_.report_2t_share = true;  // its 2-thread samples are long enough for the process clock
  }

  void run() {
    const options& opt = s_.opt();
    checkpoint("start");
    // The data: the big array; the in-cache set and the peer slice are its prefixes.
    buffer<float> data;
    std::string data_desc;
    if (!me_.input.empty()) {
      fpscope::npy_reader r(me_.input);
      const auto v = r.values<float>();
      const std::size_t n = me_.mem_n_given ? std::min<std::size_t>(opt.mem_n, v.size()) : v.size();
      if (n < 64) throw std::runtime_error(me_.input + ": fewer than 64 values");
      data = buffer<float>(n);
      std::copy_n(v.begin(), n, data.data());  // a private copy: no page faults of the mapping in a timing
      data_desc = fmt::format("{} (first {} of {} float32 values)", me_.input, n, v.size());
    } else {
      progress("generating {} values\n", opt.mem_n);
      data = buffer<float>(opt.mem_n);
      generate(std::span<float>(data.data(), data.size()));
      data_desc = fmt::format("synthetic gradients, seed {}: sign random, log2|x| ~ normal({}, {}), {:.0f} % exact zeros",
                              gen_seed, gen_mean, gen_sd, gen_zeros * 100);
    }
    checkpoint(fmt::format("after allocating the data ({} values, {:.0f} MiB)", data.size(), double(data.size()) * 4 / mib));
    s_.out["data"] = {{"description", data_desc}, {"n", data.size()}};

    s_.begin({fmt::format("- library histogram.cpp: -O3; parallel_threshold {}", fpscope::parallel_threshold),
              "- data: " + data_desc},
             known_peers());

    json jsizes = json::array();
    {
      hist_size cache{{std::min(opt.cache_n, data.size()), "in-cache", opt.rounds_cache, false, {}}, {}};
      run_size(cache, data.first(opt.cache_n), jsizes);
      path_crossover(data);
      self_check(data.first(opt.cache_n));
    }  // its pass histograms go: the RSS checkpoints below then show the from-memory runs alone
    checkpoint("before the from-memory runs");
    hist_size mem{{data.size(), "from-memory", opt.rounds_mem, true, {}}, {}};
    run_size(mem, data.first(data.size()), jsizes);
    checkpoint("after the from-memory runs");
    s_.out["sizes"] = jsizes;

    run_peers(data.first(me_.peer_n), mem.items.get("sweep/t1"), mem.items.get("sweep/t2"), data.size());
    checkpoint("after the peer comparison");
    memory_footprint(data);
    checkpoint("after the class_counter footprint runs (end)");
    s_.emit("Peak RSS at the end: {:.1f} MiB, of which the data array is {:.1f} MiB.\n", rss_.back().second,
            double(data.size()) * 4 / mib);

    s_.goals_report(goal_layout::every_case);
    if (!mismatches_.empty())
      s_.emit("VERDICT counts vs peers: MISMATCH ({} peer/scale pairs, listed above)\n", mismatches_.size());
    else if (compared_)
      s_.emit("VERDICT counts vs peers: all equal\n");
  }

 private:
  // One size (in cache or from memory): stream, pass, sweep, constructor.
  struct hist_size : size_run {
    std::map<std::string, phase_log> phases;  // of the sweep items, by id
  };

  void checkpoint(const std::string& what) { rss_.emplace_back(what, maxrss_mib()); }

  /// A sweep item: run(p) does one sweep, recording its phases into p.
  static item& add_sweep(item_set& items, std::map<std::string, phase_log>& logs, item it,
                         std::function<void(phases*)> run) {
    phase_log* log = &logs[it.id];
    it.group = "sweep";
    it.run = [log, run = std::move(run)] { run(&log->acc); };
    it.sampled = log->hook();
    return items.add(std::move(it));
  }

  static json sweep_json(const item& it, std::size_t n, const std::map<std::string, phase_log>& logs) {
    json j = item_json(it, n, "values");
    if (auto l = logs.find(it.id); l != logs.end() && !l->second.per_sample.empty()) j["phases_median_s"] = l->second.to_json();
    return j;
  }

  void run_size(hist_size& s, std::span<const float> x, json& jsizes) {
    const std::size_t n = x.size();
    progress("{}: n = {} ({:.2f} MiB of float32)\n", s.label, n, double(n) * 4 / mib);
    const auto* words = reinterpret_cast<const std::uint32_t*>(x.data());
    const auto specs = std::make_shared<const std::vector<fpscope::cast_spec>>(make_specs());
    for (int th : {1, 2}) {
      s.items.add({.id = fmt::format("stream/t{}", th), .group = "stream",
                   .impl = "streaming read: sum of the uint32 words", .threads = th,
                   .run = [=] { escape(reinterpret_cast<void*>(std::uintptr_t(stream_sum_threads(words, n, th)))); }});
      // The histogram lives across calls, as a user's would: counts accumulate.
      auto h = std::make_shared<fpscope::bucket_histogram>();
      s.items.add({.id = fmt::format("pass/t{}", th), .group = "pass",
                   .impl = fmt::format("bucket_histogram::add(x, {})", th), .threads = th, .run = [=] {
                     h->add(x, th);
                     escape(h.get());
                   }});
      if (th == 1) {
        auto keys = std::make_shared<std::vector<std::uint32_t>>(n);
        for (std::size_t i = 0; i < n; ++i) (*keys)[i] = fpscope::bucket_histogram::key(words[i]);
        auto tab = std::make_shared<std::vector<std::uint32_t>>(fpscope::bucket_histogram::bucket_count);
        s.items.add({.id = "increments/t1", .group = "increments",
                     .impl = "the increments alone: ++table[key], keys precomputed", .run = [=] {
                       increments(keys->data(), n, tab->data());
                       escape(tab->data());
                     }});
      }
      // expected_size = n: the counter picks its path (searched thresholds for small n).
      add_sweep(s.items, s.phases,
                {.id = fmt::format("sweep/t{}", th),
                 .impl = fmt::format("class_counter(256 specs, expected_size = n, {}): add, refine?, counts", th),
                 .threads = th},
                [=](phases* p) { escape(sweep(x, *specs, n, th, p).data()); });
      auto kept = std::make_shared<fpscope::class_counter>(*specs, n, th);
      add_sweep(s.items, s.phases,
                {.id = fmt::format("sweep-reset/t{}", th),
                 .impl = fmt::format("one class_counter kept (256 specs, {}): reset(n), add, refine?, counts", th),
                 .threads = th},
                [=](phases* p) { escape(sweep_again(*kept, x, n, p).data()); });
      // In cache, both paths forced, whichever the counter would pick for this n (the switch
      // is a constant of histogram.cpp): a search of the sorted thresholds per value, or the
      // bucket histogram. From memory the searched path would take seconds; it is not run.
      if (!s.mem) {
        add_sweep(s.items, s.phases,
                  {.id = fmt::format("sweep-hist/t{}", th),
                   .impl = fmt::format("class_counter(256 specs, expected_size default, {}): histogram path", th),
                   .threads = th},
                  [=](phases* p) { escape(sweep(x, *specs, ~std::uint64_t{0}, th, p).data()); });
        add_sweep(s.items, s.phases,
                  {.id = fmt::format("sweep-searched/t{}", th),
                   .impl = fmt::format("class_counter(256 specs, expected_size = 1, {}): searched path", th),
                   .threads = th},
                  [=](phases* p) { escape(sweep(x, *specs, 1, th, p).data()); });
      }
    }
    s.items.add({.id = "ctor", .group = "ctor", .impl = "class_counter constructor alone (256 specs, expected_size = n)",
                 .run = [=] {
                   fpscope::class_counter cc(*specs, n, 1);
                   escape(&cc);
                 }});
    s.items.add({.id = "thresholds", .group = "ctor", .impl = "thresholds32() of the 256 specs alone", .run = [=] {
                   std::uint32_t sink = 0;
                   for (const auto& sp : *specs) sink ^= fpscope::thresholds32(sp).at[0][0];
                   escape(reinterpret_cast<void*>(std::uintptr_t(sink)));
                 }});
    s_.measure(s);
    report_size(s, n, jsizes);
  }

  void report_size(hist_size& s, std::size_t n, json& jsizes) {
    json js = {{"label", s.label}, {"n", n}, {"rounds", s.rounds}, {"items", json::array()}};
    for (const item& it : s.items) js["items"].push_back(sweep_json(it, n, s.phases));
    const std::string where = s.label;
    const bool mem = s.mem;
    s_.emit("\n## {}: n = {} values ({:.2f} MiB float32), {} interleaved rounds\n\n", s.label, n, double(n) * 4 / mib,
            s.rounds);
    s_.emit("Gval/s = 1e9 values/s: median over rounds (best round). Ratios: paired per round, median "
            "(best/best).{}\n\n",
            mem ? "" : " In cache the goals are informational, marked (info): they are set from memory.");

    // 1 + 2: the stream and the pass.
    std::vector<std::vector<std::string>> rows;
    const item &s1 = s.items.get("stream/t1"), &s2 = s.items.get("stream/t2"), &p1 = s.items.get("pass/t1"),
               &p2 = s.items.get("pass/t2");
    for (const item* it : {&s1, &s2}) {
      const double m = median(it->t);
      rows.push_back({it->impl, std::to_string(it->threads), rate_cell(*it, n),
                      fmt::format("{:.2f}", double(n) / m / it->threads * 1e-9),
                      fmt::format("{:.1f}", 4.0 * double(n) / m * 1e-9), "-", "-"});
    }
    const item& inc = s.items.get("increments/t1");
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
      if (one) core += verdict(rate1, best1, {2e9, true, !mem});
      rows.push_back({it->impl, std::to_string(it->threads), rate_cell(*it, n), core,
                      fmt::format("{:.1f}", 4.0 * double(n) / m * 1e-9),
                      fmt::format("{:.2f} ({:.2f})", 1 / (one ? pr1 : pr2).median, 1 / (one ? pr1 : pr2).best),
                      one ? "-" : ratio_cell(sp, {1.7, true, !mem})});
    }
    s_.emit("### Hardware limit (streaming read) and the histogram pass\n\n{}\n",
            table({"kernel", "threads", "Gval/s median (best)", "Gval/s per core (goal >= 2)", "GB/s read",
                   "speed x stream (same threads)", "2T / 1T (goal >= 1.7)"},
                  rows));
    s_.emit("The stream itself gains {} from the second thread. The pass runs at {:.2f} (best/best {:.2f}) of the\n"
            "increments alone, which bound any table of one increment per value.\n\n",
            ratio_cell(sps), 1 / time_ratio(inc.t, p1.t).median, 1 / time_ratio(inc.t, p1.t).best);
    const std::string gsuffix = mem ? "" : " (in cache: info)";
    if (mem) {
      s_.goal("pass: 1 thread >= 2e9 values/s (from memory)", where, rate1, best1, {2e9}, "values/s");
      s_.goal("pass: 2 threads >= 1.7 x 1 thread (from memory)", where, sp.median, sp.best, {1.7}, "x");
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
      if (!s.items.find(id)) continue;
      const item& it = s.items.get(id);
      const phase_log& log = s.phases.at(id);
      const item& pass = it.threads == 1 ? p1 : p2;
      const ratio r = time_ratio(pass.t, it.t);  // sweep time / pass time
      const bool main = std::string_view(id).starts_with("sweep/");
      int refines = 0;
      for (const auto& p : log.per_sample) refines += p.refines;
      srows.push_back({it.impl, std::to_string(it.threads), ms_cell(it), rate_cell(it, n),
                       ratio_cell(r, {1.5, false, !mem}), refines ? "yes" : "no"});
      if (main && mem)
        s_.goal("sweep (256 specs) <= 1.5 x one pass, same threads (from memory)",
                fmt::format("{} {} thread(s)", where, it.threads), r.median, r.best, {1.5, false}, "x");
      std::vector<std::string> pr{it.impl, std::to_string(it.threads)};
      for (int k = 0; k < phases::count; ++k) pr.push_back(fmt::format("{:.3f}", log.median_of(k) * 1e3));
      prow.push_back(pr);
      jsw.push_back({{"id", it.id}, {"sweep_over_pass", {r.median, r.best}}, {"phases_median_s", log.to_json()}});
    }
    {
      const item& c = s.items.get("ctor");
      const item& t = s.items.get("thresholds");
      srows.push_back({c.impl, "-", ms_cell(c), "-", fmt::format("{:.2f} (vs 1T pass)", median(c.t) / median(p1.t)), "-"});
      srows.push_back({t.impl, "-", ms_cell(t), "-", fmt::format("{:.2f} (vs 1T pass)", median(t.t) / median(p1.t)), "-"});
    }
    s_.emit("### The sweep: 64 scales 2^-16..2^47 x fp16, bf16, e4m3, e5m2 (256 specs){}\n\n{}\n", gsuffix,
            table({"what", "threads", "ms median (best)", "Gval/s", "sweep / pass time (goal <= 1.5)", "refine needed"},
                  srows));
    std::vector<std::string> ph_head{"sweep", "threads"};
    for (const char* nm : phases::names) ph_head.push_back(std::string(nm) + " ms");
    s_.emit("Where the sweep's time goes (median per phase, ms):\n\n{}\n", table(ph_head, prow));
    js["sweep"] = jsw;
    jsizes.push_back(js);
  }

  // For a small expected_size class_counter searches the sorted thresholds per value instead
  // of building the histogram. Where does the histogram path start to win? A kept counter,
  // reset to either path each call (the thresholds are not searched again), 1 thread.
  void path_crossover(const buffer<float>& data) {
    const int rounds = s_.opt().rounds_cache;
    std::vector<std::size_t> sizes;
    for (int e = 6; e <= 17; ++e)
      if ((std::size_t{1} << e) <= data.size()) sizes.push_back(std::size_t{1} << e);
    progress("path crossover: sizes 2^6..2^17, {} rounds\n", rounds);
    fpscope::class_counter cc(make_specs(), ~std::uint64_t{0}, 1);
    std::map<std::pair<std::size_t, int>, std::vector<double>> t;  // (n, searched) -> samples
    const double min_s = 1e-3;
    for (int r = 0; r < rounds; ++r)
      for (std::size_t n : sizes)
        for (int k = 0; k < 2; ++k) {
          const int searched = (k + r) % 2;  // alternate which path goes first
          const auto x = data.first(n);
          // expected_size 1 or "unknown" (the default): the two ends of the switch
          t[{n, searched}].push_back(
              per_call([&] { escape(sweep_again(cc, x, searched ? 1 : ~std::uint64_t{0}, nullptr).data()); }, min_s));
        }
    std::vector<std::vector<std::string>> rows;
    json jc = json::array();
    // From here on the histogram path is faster at every size.
    const auto wins = winning_from(sizes, [&](std::size_t n) { return time_ratio(t[{n, 0}], t[{n, 1}]).median > 1; });
    for (std::size_t n : sizes) {
      const ratio r = time_ratio(t[{n, 0}], t[{n, 1}]);  // searched / histogram time
      rows.push_back({fmt::format("2^{} = {}", std::countr_zero(n), n), fmt::format("{:.4f}", median(t[{n, 1}]) * 1e3),
                      fmt::format("{:.4f}", median(t[{n, 0}]) * 1e3), ratio_cell(r)});
      jc.push_back({{"n", n}, {"searched_s", median(t[{n, 1}])}, {"histogram_s", median(t[{n, 0}])},
                    {"searched_over_histogram", r.median}});
    }
    s_.emit("### Searched or histogram path? A kept counter reset to each path, 256 specs, 1 thread, in cache\n\n"
            "Per call: reset + add + counts, ms median over {} rounds (samples of >= 1 ms of calls). class_counter "
            "searches the sorted thresholds per value when expected_size is below a constant of histogram.cpp, and "
            "builds the bucket histogram otherwise; that constant should be about the size from which the histogram "
            "path wins.\n\n{}\n",
            rounds, table({"n", "searched ms", "histogram ms", "histogram speed-up median (best)"}, rows));
    s_.emit("The histogram path is faster at every size from n = {}.\n",
            wins ? fmt::format("2^{} = {}", std::countr_zero(*wins), *wins) : std::string("(none in the range)"));
    s_.out["path_crossover"] = {{"sizes", jc}, {"histogram_faster_from", wins ? json(*wins) : json(nullptr)}};
  }

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
    s_.emit("\nSelf-check on the in-cache data: class_counter's histogram path and searched path against "
            "count_reference (one cast per element and spec): {}\n",
            ok ? "all 256 specs equal." : fmt::format("DIFFERS: histogram path {} specs, searched path {} specs", bad_h, bad_s));
    s_.out["self_check"] = {{"n", x.size()}, {"histogram_path_bad_specs", bad_h}, {"searched_path_bad_specs", bad_s}};
  }

  // Memory: the heap one class_counter sweep holds at its peak, by size and path.
  void memory_footprint(const buffer<float>& data) {
    std::vector<std::vector<std::string>> rows;
    json jm = json::array();
    const auto specs = make_specs();
    std::vector<std::size_t> sizes{s_.opt().cache_n, me_.peer_n, data.size()};
    std::sort(sizes.begin(), sizes.end());
    sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
    for (std::size_t n : sizes) {
      const auto x = data.first(n);
      for (int th : {1, 2})
        for (bool searched : {false, true}) {
          if (searched && (th == 2 || n > s_.opt().cache_n)) continue;
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
    s_.emit("\n## Memory\n\n");
    std::vector<std::vector<std::string>> rrows;
    json jr = json::array();
    for (const auto& [what, v] : rss_) {
      rrows.push_back({what, fmt::format("{:.1f}", v)});
      jr.push_back({{"at", what}, {"peak_rss_mib", v}});
    }
    s_.emit("Peak RSS of this process (getrusage ru_maxrss) at each point:\n\n{}\n",
            table({"point", "peak RSS MiB"}, rrows));
    s_.emit("Heap one class_counter (256 specs) holds at its peak during construct + add + refine + counts "
            "(every operator new counted; the input array is not), and how much the RSS grew meanwhile (0 when "
            "glibc reused pages it kept from an earlier counter):\n\n{}\n",
            table({"n", "threads", "path", "heap peak MiB", "RSS growth MiB"}, rows));
    s_.out["memory"] = {{"peak_rss", jr}, {"class_counter", jm}};
  }

  // The scales (exponents) of peer round r: every peer_rounds-th one, so that each round
  // spans the whole range and the rounds together run every scale once.
  std::vector<int> subset(int r) const {
    std::vector<int> e;
    for (int i = r; i < scale_count; i += me_.peer_rounds) e.push_back(scale_lo + i);
    return e;
  }

  // One peer sweep over the scales of round r (all of them timed as one call); its counts are
  // compared with fpscope's for the same slice, scale by scale. Round -1: the warm-up, one scale.
  double sample_peer(item& it, int r, peer_log& log) {
    const bool record = r >= 0;
    const std::vector<int> ex = record ? subset(r) : std::vector<int>{0};
    json scales = json::array();
    for (int e : ex) scales.push_back(std::ldexp(1.0, e));
    std::string why;
    auto rep = s_.peers.request({{"cmd", "call"}, {"data", it.data}, {"peer", it.peer}, {"threads", it.threads},
                                 {"args", json::array({scales})}}, why);
    if (!rep) {
      it.na = "error: " + why;
      return NAN;
    }
    if (!record) return NAN;
    log.scales.push_back(int(ex.size()));
    const std::size_t f = format_index(it.format);
    const json& counts = (*rep)["result"];
    for (std::size_t k = 0; k < ex.size() && f < formats.size() && !slice_counts_.empty(); ++k) {
      fpscope::class_counts theirs;
      for (int c = 0; c < fpscope::cast_class_count; ++c) theirs.n[std::size_t(c)] = counts[k][std::size_t(c)].get<std::uint64_t>();
      const auto& ours = slice_counts_[f * std::size_t(scale_count) + std::size_t(ex[k] - scale_lo)];
      ++log.checked;
      if (ours == theirs) ++log.agreed;
      else mismatches_.push_back({it.peer, it.format, it.threads, ex[k], ours, theirs});
    }
    return (*rep)["s"].get<double>();
  }

  // 4: the peers, on the first peer_n values, side by side with fpscope's sweep of that slice.
  void run_peers(std::span<const float> x, const item& mem_sweep1, const item& mem_sweep2, std::size_t mem_n) {
    const std::size_t n = x.size();
    const int rounds = me_.peer_rounds;
    progress("peers: slice of n = {}, {} rounds of {} scales\n", n, rounds, (scale_count + rounds - 1) / rounds);
    slice_counts_ = sweep(x, make_specs(), n, 1, nullptr);
    item_set items;
    std::map<std::string, phase_log> logs;
    const auto all = std::make_shared<const std::vector<fpscope::cast_spec>>(make_specs());
    for (int th : {1, 2})
      add_sweep(items, logs,
                {.id = fmt::format("fpscope/all/t{}", th), .impl = fmt::format("class_counter, 256 specs, threads={}", th),
                 .threads = th},
                [=](phases* p) { escape(sweep(x, *all, n, th, p).data()); });
    for (int f = 0; f < int(formats.size()); ++f) {
      const auto one = std::make_shared<const std::vector<fpscope::cast_spec>>(make_specs(f));
      const std::string name = formats[std::size_t(f)].name;
      add_sweep(items, logs,
                {.id = fmt::format("fpscope/{}/t1", name), .impl = fmt::format("class_counter, 64 {} specs, threads=1", name),
                 .format = name},
                [=](phases* p) { escape(sweep(x, *one, n, 1, p).data()); });
    }
    const std::string dname = "slice";
    const bool loaded = s_.peers.load(dname, {{fpscope::npy_dtype::f4, x.data(), n}});
    std::map<std::string, peer_log> plogs;
    for (item& p : s_.peers.items([&](const peer_desc&) { return dname; })) {
      item& it = items.add(std::move(p));
      it.sample = [this, &it, log = &plogs[it.id]](int r) { return sample_peer(it, r, *log); };
    }
    s_.measure(items, rounds, 0.05, "peers");
    s_.peers.stop();  // its peak RSS is known from here on (RUSAGE_CHILDREN)
    compared_ = loaded;
    const double peers_rss = maxrss_mib(RUSAGE_CHILDREN);

    // A peer's time for all 64 scales of its format: the sum over rounds (each a different
    // subset of the scales; together every scale once).
    auto peer_total = [&](const item& it) {
      int sc = 0;
      for (int k : plogs[it.id].scales) sc += k;
      return it.na.empty() && sc == scale_count ? total(it.t) : NAN;
    };
    const double per_spec_values = double(n) * scale_count;

    s_.emit("\n## Peers: the same sweep the way users count today, on the first {} values\n\n", n);
    s_.emit("Each peer round runs every {}-th scale (round r: scales 2^(-16+r), 2^(-16+r+{}), ...), so the {} "
            "rounds together run each of the 64 scales once; a peer's 64-scale time is the sum over its rounds "
            "(one sample per scale, no best-of). The peers' counts are compared with fpscope's for every scale "
            "they run. fpscope's sweeps of the same slice ran interleaved with them ({} rounds).\n\n",
            rounds, rounds, rounds, rounds);
    std::vector<std::vector<std::string>> rows;
    json jp = json::array();
    for (const item& it : items) {
      if (it.group != "peer") continue;
      const peer_log& log = plogs[it.id];
      const double tt = peer_total(it);
      std::string check = it.na.empty() ? fmt::format("{}/{} scales equal", log.agreed, log.checked) : "-";
      if (it.na.empty() && log.agreed != log.checked) check += " MISMATCH";
      rows.push_back({it.format, it.peer, std::to_string(it.threads), it.na.empty() ? fmt::format("{:.3f}", tt) : it.na,
                      it.na.empty() ? fmt::format("{:.2f}", tt / per_spec_values * 1e9) : "-", check});
      json j = item_json(it, n, "values");
      j.erase("median_values_per_s");  // a sample is one subset of the scales: no rate
      j.erase("best_values_per_s");
      if (!log.scales.empty()) {
        j["scales_per_round"] = log.scales;
        j["checked_scales"] = log.checked;
        j["agreeing_scales"] = log.agreed;
      }
      j["total_64_scales_s"] = std::isfinite(tt) ? json(tt) : json(nullptr);
      jp.push_back(j);
    }
    s_.emit("{}\n", table({"format", "peer", "threads", "64 scales, s", "ns per value per scale", "counts vs fpscope"}, rows));
    s_.emit("Calls: {}\n\n", [&] {
      std::string calls;
      for (const peer_desc& p : s_.peers.all())
        if (p.why.empty()) calls += fmt::format("\n- {}: `{}`", p.id, p.api);
      return calls;
    }());

    // The fastest peer per format with at most `threads` threads (for two: torch's 1- or 2-thread
    // run, whichever is faster, and the single-threaded libraries).
    struct best_peer {
      std::string id;
      double s = NAN;
    };
    auto fastest_peer = [&](const std::string& fmt_name, int threads) {
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
      const item& me = items.get(fmt::format("fpscope/{}/t1", f.name));
      const best_peer b = fastest_peer(f.name, 1);
      const double r = b.s / median(me.t), rb = b.s / minimum(me.t);
      frows.push_back({f.name, ms_cell(me), b.id.empty() ? "n/a" : b.id,
                       std::isfinite(b.s) ? fmt::format("{:.3f}", b.s) : "n/a",
                       std::isfinite(r) ? fmt::format("{:.1f} ({:.1f})", r, rb) : "n/a"});
      jf.push_back({{"format", f.name}, {"fpscope_64_specs_median_s", median(me.t)}, {"fastest_peer", b.id},
                    {"peer_64_scales_s", std::isfinite(b.s) ? json(b.s) : json(nullptr)},
                    {"x_faster", std::isfinite(r) ? json(r) : json(nullptr)}});
    }
    s_.emit("### Per format, 1 thread: fpscope's class_counter with that format's 64 specs vs the fastest peer\n\n{}\n",
            table({"format", "fpscope 64 specs ms median (best)", "fastest peer", "peer 64 scales s", "x faster median (best)"},
                  frows));

    // The whole sweep: the fastest peer of every format, summed.
    std::vector<std::vector<std::string>> wrows;
    json jw = json::array();
    for (int th : {1, 2}) {
      double sum = 0;
      std::string who;
      for (const auto& f : formats) {
        const best_peer b = fastest_peer(f.name, th);
        sum += b.s;
        if (!who.empty()) who += " + ";
        who += b.id.empty() ? std::string("n/a") : b.id;
      }
      const item& me = items.get(fmt::format("fpscope/all/t{}", th));
      const item& mm = th == 1 ? mem_sweep1 : mem_sweep2;
      const double same = sum / median(me.t), same_b = sum / minimum(me.t);
      const double peer_pv = sum / double(n), mem_pv = median(mm.t) / double(mem_n), mem_pv_b = minimum(mm.t) / double(mem_n);
      const double pv = peer_pv / mem_pv, pv_b = peer_pv / mem_pv_b;
      const std::string w = fmt::format("{} thread(s)", th);
      s_.goal("sweep >= 20 x the fastest peers, same slice side by side", w, same, same_b, {20}, "x");
      s_.goal("sweep >= 20 x the fastest peers, per value (fpscope from memory)", w, pv, pv_b, {20}, "x");
      wrows.push_back({std::to_string(th), who, std::isfinite(sum) ? fmt::format("{:.2f}", sum) : "n/a", ms_cell(me),
                       std::isfinite(same) ? fmt::format("{:.0f} ({:.0f}){}", same, same_b, verdict(same, same_b, {20})) : "n/a",
                       std::isfinite(peer_pv) ? fmt::format("{:.2f}", peer_pv * 1e9) : "n/a",
                       fmt::format("{:.3f}", mem_pv * 1e9),
                       std::isfinite(pv) ? fmt::format("{:.0f} ({:.0f}){}", pv, pv_b, verdict(pv, pv_b, {20})) : "n/a"});
      jw.push_back({{"threads", th}, {"peers", who}, {"peers_s", std::isfinite(sum) ? json(sum) : json(nullptr)},
                    {"fpscope_slice_median_s", median(me.t)}, {"x_same_slice", std::isfinite(same) ? json(same) : json(nullptr)},
                    {"peers_ns_per_value", std::isfinite(peer_pv) ? json(peer_pv * 1e9) : json(nullptr)},
                    {"fpscope_mem_ns_per_value", mem_pv * 1e9},
                    {"x_per_value", std::isfinite(pv) ? json(pv) : json(nullptr)}});
    }
    s_.emit("### The whole sweep (256 specs): fpscope vs the fastest peer of each format, summed\n\n"
            "Same slice: fpscope's class_counter on the same {} values, timed between the peers' rounds. Per value: "
            "the peers' time per value on the slice against fpscope's from-memory sweep of {} values (its time "
            "per value; the peers are too slow to run there{}).\n\n{}\n",
            n, mem_n, [&] {
              double sum = 0;
              for (const auto& f : formats) sum += fastest_peer(f.name, 1).s;
              return std::isfinite(sum) ? fmt::format(": at this rate one 256-spec sweep of {} values would take them "
                                                      "about {:.0f} s", mem_n, sum / double(n) * double(mem_n))
                                        : std::string();
            }(),
            table({"threads", "fastest peers", "peers s", "fpscope same slice ms median (best)",
                   "x same slice (goal >= 20)", "peers ns/value", "fpscope from memory ns/value", "x per value (goal >= 20)"},
                  wrows));

    // Counts: loud about every disagreement.
    json jmis = json::array();
    if (!loaded) {
      s_.emit("Counts vs peers: not checked (peers SKIPPED).\n");
    } else if (mismatches_.empty()) {
      s_.emit("Counts vs peers: every peer's counts equal fpscope's for every scale it ran (all 6 classes).\n");
    } else {
      std::sort(mismatches_.begin(), mismatches_.end(), [](const mismatch& a, const mismatch& b) {
        return std::tie(a.peer, a.threads, a.exponent) < std::tie(b.peer, b.threads, b.exponent);
      });
      s_.emit("Counts vs peers: {} (peer, scale) pairs DIFFER:\n\n", mismatches_.size());
      for (const mismatch& m : mismatches_) {
        std::string cls;
        for (int c = 0; c < fpscope::cast_class_count; ++c) {
          const auto cc = static_cast<fpscope::cast_class>(c);
          if (m.ours[cc] != m.theirs[cc])
            cls += fmt::format(" {} fpscope {} vs peer {};", fpscope::name(cc), m.ours[cc], m.theirs[cc]);
        }
        s_.emit("MISMATCH {} ({}T) {} scale 2^{}:{}\n", m.peer, m.threads, m.format, m.exponent, cls);
        jmis.push_back({{"peer", m.peer}, {"threads", m.threads}, {"format", m.format}, {"scale_exp", m.exponent},
                        {"fpscope", m.ours.n}, {"peer_counts", m.theirs.n}});
      }
    }
    if (loaded)
      s_.emit("\nThe peers' process reached a peak RSS of {:.0f} MiB with the {:.0f} MiB slice loaded (the interpreter "
              "and its imports, plus per scale the product, the cast and the comparison masks).\n",
              peers_rss, double(n) * 4 / mib);
    json jfp = json::array();
    for (const item& it : items)
      if (it.group == "sweep") jfp.push_back(sweep_json(it, n, logs));
    s_.out["peers_run"] = {{"n", n}, {"rounds", rounds}, {"peers", jp}, {"fpscope", jfp}, {"per_format", jf},
                           {"whole", jw}, {"mismatches", jmis}, {"peers_peak_rss_mib", peers_rss}};
  }

  session& s_;
  hist_options me_;
  std::vector<std::pair<std::string, double>> rss_;  // checkpoints: peak RSS, MiB
  std::vector<fpscope::class_counts> slice_counts_;  // fpscope's, on the peer slice
  std::vector<mismatch> mismatches_;
  bool compared_ = false;  // the peers' counts were checked
};

}  // namespace

int main(int argc, char** argv) {
  options o;
  o.rounds_mem = 7;
  o.script = peers_file("hist_peers.py");
  hist_options me;
  parse(argc, argv, o,
        "The cast-class counts of histogram.hpp (bucket histogram, class_counter) against a streaming read\n"
        "and the numpy/torch/ml_dtypes scale sweeps.\n",
        {quick_option(o, "fewer rounds, 16 Mi values from memory, a 1 Mi peer slice (a smoke run)",
                      std::size_t{1} << 24, [&] { me.peer_n = std::size_t{1} << 20; }),
         {"--input", "F",
          "float32 .npy data instead of the synthetic gradients: from memory = the\nwhole file (or its first --mem-n "
          "values), in cache and the peer slice =\nits first --cache-n and --peer-n values",
          [&](const std::string& v) { me.input = v; }},
         {"--mem-n", "N", fmt::format("from-memory element count (default {})", o.mem_n),
          [&, set = size_option("--mem-n", "", o.mem_n).set](const std::string& v) {
            set(v);
            me.mem_n_given = true;
          }},
         count_option("--peer-rounds",
                      "rounds of the peer comparison: the 64 scales are split in N interleaved\nsubsets, round r runs "
                      "subset r, so every scale runs once",
                      me.peer_rounds, 1, 64),
         size_option("--peer-n", "the slice the peers sweep", me.peer_n)});
  return run("fpscope-bench-hist", o, [&](session& s) { hist_bench(s, me).run(); });
}
