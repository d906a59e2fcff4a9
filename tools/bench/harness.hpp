// The harness of the benchmarks under tools/bench: everything fpscope-bench-convert, -hist and
// -arith share, so that each keeps only its kernels, its peers and its table of cases.
//
//   options   the command line every benchmark accepts, and the benchmark's own options
//   data      64-byte aligned buffers faulted in before any timing, a fixed-seed generator,
//             the checksums the peers verify, the CPU's features
//   items     one implementation at one size, with its samples, one per round
//   rounds    session::measure: every item once per round, in a fresh shuffled order, so that
//             the ratios compare samples taken under the same machine state: on a shared, noisy
//             machine the absolute rates move, the ratios paired per round much less
//   peers     numpy / torch / ml_dtypes in a Python subprocess (peer_serve.py with the
//             benchmark's *_peers.py) fed the same arrays, timed between fpscope's own samples
//   report    medians, paired ratios, Markdown tables, goals with PASS / MISS, the header of a
//             run and the machine state it ran in
//   sweep     the OpenMP crossover: from which size two threads beat one
//
// A benchmark's main() parses its options (parse), then hands its body to run(), which catches
// its errors and prints the report (or the --json document).
#pragma once

#include <fpscope/npy.hpp>
#include <fpscope/policy.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

// A benchmark's x86 kernels compile only there, with target attributes (so the file builds for
// any -march); cpu_has() says whether this CPU runs them.
#if defined(__x86_64__) || defined(__i386__)
#define FPSCOPE_BENCH_X86 1
#else
#define FPSCOPE_BENCH_X86 0
#endif

namespace fpscope::bench {

using json = nlohmann::json;
using clk = std::chrono::steady_clock;

// ------------------------------------------------------------------------------------------
// Statistics of interleaved rounds

/// Median of the finite samples (NaN: a round without a sample); NaN when there are none.
double median(std::vector<double> v);
/// Smallest finite sample (the best round of a time); NaN when there are none.
double minimum(const std::vector<double>& v);
/// Sum of the samples; NaN when one is missing (or there are none).
double total(const std::vector<double>& v);

struct ratio {
  double median = NAN, best = NAN;
  bool ok() const { return std::isfinite(median); }
};

/// b.t / a.t paired per round, median over rounds; best: min(b) / min(a). With times, that is
/// how many times faster a is than b.
ratio time_ratio(const std::vector<double>& a, const std::vector<double>& b);

/// The smallest of `sizes` (ascending) from which `wins` holds at every larger size too.
std::optional<std::size_t> winning_from(const std::vector<std::size_t>& sizes,
                                        const std::function<bool(std::size_t)>& wins);

// ------------------------------------------------------------------------------------------
// Time

double seconds(clk::duration d);

/// Keeps the compiler from dropping the work that wrote p.
inline void escape(const void* p) { asm volatile("" : : "g"(p) : "memory"); }

/// Seconds per call of f, calls repeated for at least min_s (at least one).
template <class F>
double per_call(F&& f, double min_s) {
  const auto t0 = clk::now();
  int calls = 0;
  double el = 0;
  do {
    f();
    ++calls;
    el = seconds(clk::now() - t0);
  } while (el < min_s);
  return el / calls;
}

/// A progress line on stderr (stdout holds the report).
template <class... A>
void progress(fmt::format_string<A...> f, A&&... a) {
  fmt::print(stderr, f, std::forward<A>(a)...);
  std::fflush(stderr);
}

// ------------------------------------------------------------------------------------------
// Options

/// One option of a benchmark's command line: a flag (no metavar) or one that takes a value.
struct option {
  std::string name, metavar, help;
  std::function<void(const std::string& value)> set;  // throws std::invalid_argument: a bad value
};

option flag(std::string name, std::string help, std::function<void()> set);
/// An integer option in [lo, hi]; the help ends with the current value as the default.
option count_option(std::string name, std::string help, std::function<void(int)> set, int now, int lo = 1,
                    int hi = INT_MAX);
option count_option(std::string name, std::string help, int& v, int lo = 1, int hi = INT_MAX);
/// An element count, at least 64.
option size_option(std::string name, std::string help, std::size_t& v);

/// The project venv's python if present, else /usr/bin/python3.
std::string default_python();

/// What every benchmark accepts. A benchmark sets its defaults before parse().
struct options {
  bool json = false;
  bool peers = true;
  int rounds_cache = 15;
  int rounds_mem = 5;
  std::size_t cache_n = std::size_t{1} << 16;
  std::size_t mem_n = std::size_t{1} << 26;
  double min_ms = 2.0;  // a sample repeats calls for at least this long (in-cache sizes)
  std::string python = default_python();
  std::string script;   // the benchmark's peers (peers_file)
  std::string command;  // the command line, for the report
};

/// --quick, a smoke run: 5 rounds in cache, 3 from memory, `mem_n` values from memory, and what
/// `also` changes in the benchmark's own options.
option quick_option(options& o, std::string help, std::size_t mem_n, std::function<void()> also);

/// tools/bench/<file>: a benchmark's default peers.
std::string peers_file(const std::string& file);

/// Parses argv into o and the benchmark's `own` options (one named like a common option
/// replaces it: its help and its action). --help prints the usage and exits 0; an unknown
/// option or a bad value prints one line and the usage on stderr and exits 2.
void parse(int argc, char** argv, options& o, const std::string& about, const std::vector<option>& own);

// ------------------------------------------------------------------------------------------
// Formats

/// A format the benchmarks measure: fpscope's id, its name in the tables and to the peers, and
/// the bytes of its codes.
struct fmt_info {
  format_id id;
  const char* name;
  int bytes;
};
/// fp16, bf16, e4m3, e5m2, in the order of every table.
inline constexpr std::array<fmt_info, 4> formats{{{format_id::fp16, "fp16", 2},
                                                  {format_id::bf16, "bf16", 2},
                                                  {format_id::e4m3, "e4m3", 1},
                                                  {format_id::e5m2, "e5m2", 1}}};
/// The index in `formats` of the one called `name`; formats.size() for none.
std::size_t format_index(std::string_view name);

// ------------------------------------------------------------------------------------------
// Data

/// 64-byte aligned, zeroed memory (every page faulted in now, not in a timing); std::bad_alloc.
void* aligned_zeroed(std::size_t bytes);
struct free_memory {
  void operator()(void* p) const;
};

/// 64-byte aligned, zeroed elements (aligned_zeroed).
template <class T>
class buffer {
 public:
  buffer() = default;
  explicit buffer(std::size_t count) : p_(static_cast<T*>(aligned_zeroed(count * sizeof(T)))), n_(count) {}
  T* data() const { return p_.get(); }
  std::size_t size() const { return n_; }
  std::span<const T> first(std::size_t k) const { return {p_.get(), std::min(k, n_)}; }
  /// The bytes as words of another type (a buffer<unsigned char> holding codes).
  template <class W>
  W* as() const {
    return reinterpret_cast<W*>(p_.get());
  }

 private:
  std::unique_ptr<T, free_memory> p_;
  std::size_t n_ = 0;
};

/// SplitMix64: a fixed-seed generator, the same numbers on every machine.
struct splitmix {
  std::uint64_t s;
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * 0x1p-53; }  // [0, 1)
};

/// Whether this CPU has every feature of a comma-separated list of f16c, avx2, fma, avx512f,
/// avx512bf16 (all false off x86).
bool cpu_has(std::string_view features);

// ------------------------------------------------------------------------------------------
// Items

/// One implementation at one size: samples (seconds per call), one per round. Every member has
/// an initializer, so that a designated initializer may name only the ones it sets.
struct item {
  std::string id{};     // unique within its set, e.g. "fpscope/fp16/wide/t1"
  std::string group{};  // what the report groups by: fpscope, hardware, stream, peer, ...
  std::string impl{};   // what runs
  std::string format{}, op{}, input{};  // the case, where the benchmark has these dimensions
  int threads = 1;
  double bytes = 0;  // memory traffic per element, where the report gives GB/s

  // How a sample is taken: exactly one of these.
  std::function<void()> run{};                // C++: calls repeated for at least min_s
  std::string peer{}, data{};                 // a peer on a loaded data set: its process times it
  std::function<double(int round)> sample{};  // anything else: one sample of round r (-1: warm-up)

  // C++: called after untimed calls (calls = 0: discard what they recorded) and after each
  // timed sample, with its number of calls (fpscope-bench-hist records a sweep's phases so).
  std::function<void(int calls)> sampled{};

  std::string na{};           // non-empty: not available (why); set by a failed peer request too
  std::vector<double> t{};    // seconds per call, one per round (NaN: no sample)
  std::vector<double> cpu{};  // thread CPU time / wall time of each 1-thread C++ sample
};

/// A benchmark's items at one size, in the order they were added, found by id.
class item_set {
 public:
  item& add(item it);
  const item* find(const std::string& id) const;
  const item& get(const std::string& id) const;  // throws std::out_of_range
  std::deque<item>::iterator begin() { return items_.begin(); }
  std::deque<item>::iterator end() { return items_.end(); }
  std::deque<item>::const_iterator begin() const { return items_.begin(); }
  std::deque<item>::const_iterator end() const { return items_.end(); }

 private:
  std::deque<item> items_;  // a deque: items keep their address as more are added
  std::map<std::string, item*> by_id_;
};

/// One size of a benchmark (in cache, from memory): its items, measured together. A benchmark
/// derives its own with the data of that size.
struct size_run {
  std::size_t n;
  std::string label;
  int rounds;
  bool mem;  // from memory: one call per sample (else calls repeat for --min-ms)
  item_set items;
};

// ------------------------------------------------------------------------------------------
// Cells of the report

/// n / s_per_call in 1e9 per second, 2 decimals ("n/a" without a sample).
std::string giga(double s_per_call, std::size_t n);
/// "median (best)" rate of an item at n elements per call, or its n/a.
std::string rate_cell(const item& it, std::size_t n);
/// "median (best)" milliseconds per call, or its n/a.
std::string ms_cell(const item& it);

/// A goal a cell is judged against: at least (or at most) value; info: set for another size.
struct target {
  double value = NAN;
  bool at_least = true;
  bool info = false;
};
/// " PASS", " MISS (best passes)", " MISS", followed by " (info)" for an info target; "" with
/// no target or no measure.
std::string verdict(double median, double best, const target& t);
/// "median (best)" of a ratio, with its verdict against t; "n/a" without one.
std::string ratio_cell(const ratio& r, const target& t = {}, int digits = 2);

/// An item's speed against, per round, the fastest of the items `pick` selects that ran (a
/// library's best API, the best hardware kernel): x = its speed / theirs, paired per round.
/// Without one, na holds the n/a of a picked item, else `none`.
struct versus {
  ratio r;
  std::string na;
  std::string cell(const target& t = {}, int digits = 2) const;  // the ratio_cell, or na
};
versus versus_fastest(const item& me, const item_set& items, std::size_t rounds,
                      const std::function<bool(const item&)>& pick, const std::string& none = "-");
/// Picks the 1-thread items of the peers of library `lib` (numpy, torch, ml_dtypes) that `also` picks.
std::function<bool(const item&)> peers_of(const std::string& lib, const std::function<bool(const item&)>& also);

/// A Markdown table, columns padded to their widest cell.
std::string table(const std::vector<std::string>& head, const std::vector<std::vector<std::string>>& rows);

/// The peers' items: format, the case's other dimension ("input" or "op"), peer, threads,
/// call and the rate, under the head `rate_head`.
std::string peers_table(const item_set& items, std::size_t n, const std::string& dimension, const std::string& rate_head);

/// An item in the --json document: what it is, its samples, medians and rates ("median_<unit>_per_s").
json item_json(const item& it, std::size_t n, const std::string& unit);

// ------------------------------------------------------------------------------------------
// Peers

/// A peer as peer_serve.py describes it (fields the benchmark does not use stay empty).
struct peer_desc {
  std::string id{}, format{}, op{}, lib{}, api{}, why{};  // why: non-empty when skipped
  bool threaded = false;                                  // obeys torch.set_num_threads
};

/// An array for the peers: float32 values or unsigned codes of 1 or 2 bytes.
struct peer_array {
  npy_dtype dtype;
  const void* data;
  std::size_t n;
};

/// The peers' process: `python -u peer_serve.py SCRIPT --serve`, one JSON request and reply per
/// line. A peer that cannot run (its library missing, --no-peers, no Python) is still listed,
/// with why, and its cells print as n/a (SKIPPED: why).
class peer_set {
 public:
  peer_set();
  ~peer_set();
  peer_set(const peer_set&) = delete;
  peer_set& operator=(const peer_set&) = delete;

  /// Starts the process unless --no-peers and asks who is there; `known` is every peer the
  /// benchmark knows, listed as skipped when the process cannot answer.
  void start(const options& o, const std::vector<peer_desc>& known);
  bool up() const;
  const std::string& why() const { return why_; }  // why every peer is skipped, when not up
  const std::vector<peer_desc>& all() const { return peers_; }
  const json& hello() const { return hello_; }

  /// Hands the arrays over as data set `name` (.npy files the peers check by checksum, removed
  /// again). False when they could not take it; its peers' items are then n/a with why.
  bool load(const std::string& name, const std::vector<peer_array>& arrays);
  void forget(const std::string& name);
  /// The codes peer `id` computes from data set `data` in one call; nullopt with why.
  std::optional<std::vector<std::uint32_t>> output(const std::string& id, const std::string& data, std::string& why);
  /// One request; nullopt with why when the process is gone or replies with an error.
  std::optional<json> request(const json& req, std::string& why);

  /// The items of every known peer (1 thread, and 2 for a threaded one), each on the data set
  /// data_of(peer): id "peer/<peer>/t<threads>", or "peer/<peer>/<input>/t<threads>" with an input.
  std::vector<item> items(const std::function<std::string(const peer_desc&)>& data_of,
                          const std::string& input = "") const;

  /// Ends the process (its peak RSS is then in RUSAGE_CHILDREN) and removes its files.
  void stop();

 private:
  class process;
  std::unique_ptr<process> py_;
  std::string why_;
  std::vector<peer_desc> peers_;
  json hello_;
  std::filesystem::path tmp_;
  std::map<std::string, std::string> load_failed_;  // data set -> why
};

// ------------------------------------------------------------------------------------------
// A run

/// How the goals table reads: the worst case and the cases missed (one row per goal), or
/// every case with its measure, plus a VERDICT line per goal.
enum class goal_layout { worst_case, every_case };

/// One benchmark run: its options, its peers, the rounds, the goals, the report and the --json
/// document.
class session {
 public:
  session(std::string name, options o);

  const options& opt() const { return opt_; }
  peer_set peers;
  json out = json::object();  // the --json document

  // The rounds. A 2-thread sample starts with warm_s of untimed calls and is followed by a
  // pause of settle_s (fpscope-bench-arith: OpenMP workers, ours or torch's, spin a while
  // after a parallel region and go to sleep; on two cores a spinning one takes a core from the
  // next sample, and the first calls after an idle spell can wait for the worker's vCPU).
  double warm_s = 0, settle_s = 0;
  bool report_2t_share = false;  // the closing line gives the 2-thread samples' CPU share too

  /// Every item once per round, in a fresh shuffled order each round, after one untimed call
  /// of each; a sample repeats calls for at least min_s.
  void measure(item_set& items, int rounds, double min_s, const std::string& label);
  /// The items of a size, its rounds, samples of --min-ms in cache and of one call from memory.
  void measure(size_run& s) { measure(s.items, s.rounds, s.mem ? 0.0 : opt_.min_ms * 1e-3, s.label); }

  template <class... A>
  void emit(fmt::format_string<A...> f, A&&... a) {
    text_ += fmt::format(f, std::forward<A>(a)...);
  }

  /// The title, the command, the machine and the build, then `lines` (the benchmark's), then
  /// the peers (started here) with the skipped ones.
  void begin(const std::vector<std::string>& lines, const std::vector<peer_desc>& known_peers);

  /// One case of a goal ("values/s", "ops/s" or "x"); NaN measured: n/a.
  void goal(const std::string& name, const std::string& where, double measured, double best, const target& t,
            const std::string& unit, const std::string& note = "");
  /// The goals table: a goal passes only if every case passes.
  void goals_report(goal_layout layout);

  /// The machine state over the run; then the report (or the --json document) on stdout.
  void finish();

 private:
  double sample_cxx(item& it, double min_s);
  double sample_peer(item& it, double min_s);

  std::string name_;
  options opt_;
  std::string text_;
  json goals_ = json::array();
  std::vector<double> share_1t_, share_2t_;  // CPU time / wall time of C++ samples (per thread)
  struct cpu_use {
    double busy = 0, steal = 0, ours = 0, wall = 0;
  };
  static cpu_use cpu_now();
  cpu_use start_;
};

/// A benchmark's main(): runs body (which calls begin() first), then finish(); an exception
/// prints one line on stderr and exits 1.
int run(const std::string& name, const options& o, const std::function<void(session&)>& body);

// ------------------------------------------------------------------------------------------
// The OpenMP crossover

/// Whether the crossover sweep runs (--no-sweep), and its rounds.
struct sweep_options {
  bool on = true;
  int rounds = 15;
  option no_sweep() { return flag("--no-sweep", "skip the 2^10..2^22 OpenMP crossover sweep", [this] { on = false; }); }
};

/// A series of the crossover sweep: one call at size n, `how` = 1 one thread, 2 two halves in
/// one `omp parallel num_threads(2)`, 3 the library's threads=2.
struct sweep_series {
  std::string name;
  std::function<void(std::size_t n, int how)> call;
};

struct sweep_spec {  // (every member has an initializer, for designated initializers)
  std::vector<std::size_t> sizes{};  // ascending
  int rounds = 15;
  std::string input{};           // "normal input"
  std::string halves{};          // the 2T call: "fpscope::encode, in one ... (... with threshold 0)"
  std::string threshold_name{};  // the library's constant the sweep recommends
  std::size_t threshold = 0;     // its value: from there the library's threads=2 is timed
  bool rate_columns = false;     // also each series' 1-thread rate, in `unit`
  std::string unit = "Gval/s";
  double warm_s = 0;             // each round starts with this much of untimed 2-thread calls
  bool busy_cold = false;        // cold calls after 20 ms of busy-waiting (else of sleep)
};

/// Hot (back-to-back calls, 1 ms samples) 1 vs 2 threads for every series and size, and cold
/// (one call after 20 ms without a parallel region) for the first, which also runs through the
/// library's threads=2; a table, the crossovers and the recommended threshold: the largest of
/// the hot crossovers and the cold one. Into out["sweep"].
void thread_sweep(session& s, const std::vector<sweep_series>& series, const sweep_spec& spec);

// ------------------------------------------------------------------------------------------
// Profiles: which fpscope policy another implementation's codes match

/// Codes that differ from fpscope's, split by whether a NaN is involved (the benchmark says
/// how: at NaN inputs, or where both results are NaN); nans: how many such places there are.
struct diff_count {
  std::size_t value_diff = 0, nan_diff = 0, nans = 0;
};

struct named_profile {
  const char* name;
  profile p;
};

/// Of the profiles ieee, ml_dtypes and cuda, the one under which `diff` (fpscope's codes under
/// that profile against the other's) is smallest: fewest value differences, then fewest NaN ones.
std::pair<named_profile, diff_count> closest_profile(const std::function<diff_count(profile)>& diff);

}  // namespace fpscope::bench
