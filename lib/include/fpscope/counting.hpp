// Class counts as the front ends need them: over values that arrive in chunks from any thread (a
// memory-mapped array split across cores, a trace's storage chunks as they inflate), over
// recorded histograms, and over a sweep of every power-of-two scale with the scales worth using.
// Built on fpscope/histogram.hpp; the definitions are in docs/hist.md.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "fpscope/histogram.hpp"

namespace fpscope {

/// Exact class counts of many casts, summed over chunks. Each chunk is counted completely where
/// it arrives (bucket pass, refine pass while it is in cache, counts), so chunks may come in any
/// order and from any thread; recorded histograms add in time proportional to their buckets.
class class_tally {
 public:
  /// std::invalid_argument when a spec cannot be counted (fpscope::check). `expected_size`, the
  /// number of values all chunks will hold, chooses the method as class_counter's does (a search
  /// among the thresholds below 2^12 values, the bucket pass above), the same for every chunk.
  /// `loose` (empty: none): specs whose float32 counts may stay inexact, as
  /// class_counter::set_loose: the refine pass leaves their boundaries out, exact(i) says
  /// whether they came out exact anyway, uncertain(i) how many values might not be.
  explicit class_tally(std::vector<cast_spec> specs, std::uint64_t expected_size = ~std::uint64_t{0},
                       std::vector<char> loose = {});
  class_tally(const class_tally&) = delete;
  class_tally& operator=(const class_tally&) = delete;

  const std::vector<cast_spec>& specs() const { return proto_.specs(); }

  /// Counts a chunk of values. Thread-safe.
  void add(std::span<const float> x);
  void add(std::span<const double> x);
  /// Counts one array split into chunks on `threads` OpenMP threads (0: all cores above
  /// fpscope::parallel_threshold values).
  void add_parallel(std::span<const float> x, int threads = 0);
  void add_parallel(std::span<const double> x, int threads = 0);
  /// Adds recorded bucket counts (bucket_histogram::sparse() form, keys in any order). A class
  /// boundary inside a non-empty bucket cannot be resolved without the values: that bucket
  /// counts above it, and exact() turns false. Thread-safe.
  void add_histogram(std::span<const std::pair<std::uint32_t, std::uint64_t>> buckets);

  /// Counts per spec.
  std::vector<class_counts> counts() const;
  /// Whether every count is exact (false only through add_histogram), and the same per spec.
  bool exact() const;
  bool exact(std::size_t spec) const;
  /// For a loose spec: the values (summed over chunks) that lay in buckets its boundaries cut,
  /// whose class the counts may have wrong; 0 for the others and for recorded histograms.
  std::uint64_t uncertain(std::size_t spec) const;
  /// floor(log2|x|) -> count of every nonzero finite value added (float32 subnormals at -127,
  /// float64 values at their own exponent).
  std::map<int, std::uint64_t> binades() const;
  /// Elements added (values and histogram buckets).
  std::uint64_t size() const;

 private:
  void merge(const std::vector<class_counts>& c, const std::map<int, std::uint64_t>& b, std::uint64_t n);
  class_counter proto_;  // the specs and their thresholds, copied for each chunk
  std::uint64_t expected_;
  std::vector<cast_thresholds<std::uint32_t>> thresholds_;  // proto_'s, for count_histogram
  mutable std::mutex m_;
  std::vector<class_counts> counts_;
  std::vector<char> inexact_, loose_;
  std::vector<std::uint64_t> uncertain_;
  std::map<int, std::uint64_t> binades_;
  std::uint64_t size_ = 0;
};

namespace detail {
/// What error_tally's direct method reads of a per-binade spec: its rounding and the bits it
/// drops in the format's normal range, and per sign (0 +, 1 -) three ranges [lo, hi) of
/// magnitude bits (the float32 bits less the sign; empty: {0, 0}): `normal` the values it counts
/// that x * S puts exactly into the format's normal range (d = dropped), `under` those it puts
/// exactly below it (subnormal results, d = below - e <= 24), `counted` all it counts (its
/// thresholds), whose values in neither range go through the bulk conversion.
struct direct_spec {
  std::size_t spec;
  rounding round;
  int dropped, below;
  std::array<std::array<std::uint32_t, 2>, 2> normal, under, counted;
  bool has_below, has_bulk, by_sign;  // a range `under` / values in bulk / ranges that differ by sign
};
}  // namespace detail

/// Error statistics (error_stats) of many casts over values that arrive in chunks from any
/// thread, every cast in one pass over each chunk. float32 values at a power-of-two scale under
/// a deterministic rounding are measured per float32 binade: where every value of a binade is
/// representable at the cast's scale, its errors depend on the scale only through the number
/// of significand bits the cast drops there, so they are summed once per (binade, rounding,
/// dropped bits) by integer rounding of the significands, and each cast adds its binades; the
/// binades its underflow or overflow edge cuts are summed for that cast alone where its
/// thresholds count each value; only float32 subnormals and values that x * S takes out of the
/// float32 normals go through the bulk conversion (convert.hpp), as every value of the other
/// casts does. Whether a
/// value counts (the subnormal and normal classes) comes from the same thresholds as the
/// counts. Each sum is accurate to 2^-40 of itself, the max to 2^-50 (docs/hist.md "Error
/// statistics").
class error_tally {
 public:
  /// How the float32 values of the per-binade specs are measured (docs/hist.md "Error
  /// statistics"): `sorted` sorts each block by binade and sums each (binade, rounding, dropped
  /// bits) once, whatever the number of specs sharing it; `direct` (AVX-512 builds only; else
  /// `sorted`) computes each value's terms once per batch of specs of one (rounding, dropped
  /// bits) and adds them to each spec whose range (of magnitudes in the format's normal range,
  /// cut to its thresholds) holds the value, without a sort: cheaper for a few specs, dearer
  /// for many. `automatic` picks by the number
  /// of specs. The statistics agree to the documented accuracy either way.
  enum class method { automatic, sorted, direct };
  /// std::invalid_argument when a spec cannot be counted (fpscope::check).
  explicit error_tally(std::vector<cast_spec> specs, method how = method::automatic);
  error_tally(const error_tally&) = delete;
  error_tally& operator=(const error_tally&) = delete;

  const std::vector<cast_spec>& specs() const { return specs_; }
  /// Adds a chunk of values. Thread-safe.
  void add(std::span<const float> x);
  void add(std::span<const double> x);
  /// Adds one array split into chunks on `threads` OpenMP threads (0: all cores above
  /// fpscope::parallel_threshold values).
  void add_parallel(std::span<const float> x, int threads = 0);
  void add_parallel(std::span<const double> x, int threads = 0);
  /// The statistics per spec.
  std::vector<error_stats> stats() const;
  /// Whether float32 values of spec `i` are measured (in part) through the per-binade sums.
  bool per_binade(std::size_t i) const { return per_binade_.at(i) != 0; }
  /// Whether the per-binade specs are measured by the `direct` method.
  bool direct() const { return direct_; }
  /// The most per-binade specs for which `automatic` picks `direct` (measured: the first spec
  /// costs the direct method under 1 ns a value, each one more about 0.4-0.6 ns, the sort about
  /// 2 ns a value once; docs/hist.md).
  static constexpr std::size_t direct_max_specs = 6;

  /// A sum of nonnegative terms carried as an unevaluated pair hi + lo (Knuth's TwoSum): adding
  /// block sums to it loses nothing but lo's own rounding.
  struct wide_sum {
    double hi = 0, lo = 0;
    void add(double v) {
      const double s = hi + v, bv = s - hi;
      lo += (hi - (s - bv)) + (v - bv);
      hi = s;
    }
    void add(const wide_sum& o) { add(o.hi), lo += o.lo; }
    double value() const { return hi + lo; }
  };
  struct sums {
    std::uint64_t n = 0;
    wide_sum rel, signal, noise;
    double max_rel = 0;
    void add(const sums& o);
  };

  /// Sums of one (rounding, dropped bits) over one binade of one sign.
  struct binade_sums {
    wide_sum rel, noise;
    double max_rel = 0;
  };
  /// Float32 sign and exponent field, bits >> 23: the binades the decomposition sums over.
  static constexpr std::size_t binades = 512;

 private:
  template <class T>
  void add_values(std::span<const T> x);
  void add_binades(std::span<const float> x, std::vector<sums>& acc);
  void add_direct(std::span<const float> x, std::vector<sums>& acc);
  // The bulk conversion's sums of spec r over m float32 values (at most 4096), into acc.
  void measure_block(const float* v, std::size_t m, std::size_t r, sums& acc) const;
  std::vector<cast_spec> specs_;
  // The per-binade decomposition (float32 values): what each binade is to each spec (0 nothing
  // counts, 1 taken from the per-binade sums, 2 through the bulk conversion, 3 summed for the
  // spec alone where its thresholds count each value: masked_) and, for 1, its
  // slot: the sums of one binade under one (rounding, dropped bits); the slots of each binade.
  struct slot {
    rounding round;
    int dropped;
  };
  std::vector<char> per_binade_;  // per spec: whether any binade is kind 1
  std::vector<std::array<std::uint8_t, binades>> kind_;
  std::vector<std::array<std::int32_t, binades>> slot_of_;
  std::vector<slot> slots_;
  std::array<std::vector<std::uint32_t>, binades> bin_slots_;
  // Kind 3: a binade some of whose values count for the spec (its thresholds cut it), summed
  // for that spec alone where the thresholds count each value.
  struct masked {
    std::size_t spec;
    rounding round;
    int dropped;
  };
  std::array<std::vector<masked>, binades> masked_;
  std::vector<std::uint64_t> bin_n_;  // per binade: values
  std::vector<wide_sum> bin_signal_;  // per binade: sum x^2
  std::vector<binade_sums> bin_;      // per slot
  // The direct method (detail::direct_spec): the per-binade specs, sorted so that those of one
  // (rounding, dropped) stand together, and their batches: specs of one (rounding, dropped)
  // share their rounding, at most direct_batch at a time.
  struct direct_batch_of {
    std::size_t first, count;  // in dspecs_
    bool by_sign;              // some spec of the batch has ranges that differ by sign
  };
  static constexpr std::size_t direct_batch = 3;
  bool direct_ = false;
  std::vector<detail::direct_spec> dspecs_;
  std::vector<direct_batch_of> dbatches_;
  std::vector<cast_thresholds<std::uint32_t>> t32_;
  std::vector<cast_thresholds<std::uint64_t>> t64_;  // found at the first float64 chunk
  std::once_flag t64_once_;
  mutable std::mutex m_;
  std::vector<sums> total_;
};

/// Exact counts per spec of one array (add -> refine -> counts), on `threads` threads.
std::vector<class_counts> count_classes(std::span<const float> x, std::span<const cast_spec> specs, int threads = 0);
std::vector<class_counts> count_classes(std::span<const double> x, std::span<const cast_spec> specs, int threads = 0);

/// Counts per set of thresholds from a sparse bucket histogram, in time proportional to its
/// buckets (no 2^16-entry table). inexact[i] is set where a boundary of thresholds[i] fell inside
/// a non-empty bucket (that bucket counted above it).
std::vector<class_counts> count_histogram(std::span<const std::pair<std::uint32_t, std::uint64_t>> buckets,
                                          std::span<const cast_thresholds<std::uint32_t>> thresholds,
                                          std::vector<char>& inexact);
/// floor(log2|x|) -> count of a sparse bucket histogram (bucket_histogram::binades()).
std::map<int, std::uint64_t> histogram_binades(std::span<const std::pair<std::uint32_t, std::uint64_t>> buckets);

// ---- the power-of-two sweep and the scales to use ---------------------------------------------

/// Counts of one cast at every float32 normal power of two 2^kmin .. 2^kmax, indexed by the
/// exponent.
class scale_sweep {
 public:
  static constexpr int kmin = -126, kmax = 127;
  static constexpr std::size_t size = kmax - kmin + 1;
  /// The specs to count, in exponent order: fmt and pol at 2^k for k = kmin .. kmax.
  static std::vector<cast_spec> specs(const format& fmt, const policy& pol);
  /// `counts` in the order of specs(); std::invalid_argument unless it has `size` entries.
  explicit scale_sweep(std::span<const class_counts> counts);
  /// The counts at scale 2^k; std::out_of_range outside [kmin, kmax].
  const class_counts& at(int k) const;

 private:
  std::vector<class_counts> c_;
};

/// A recommended scale 2^log2_scale and the counts there.
struct recommendation {
  int log2_scale = 0;
  class_counts counts;
};

/// The scales worth using, from a sweep (none when no nonzero finite value was counted).
struct recommendations {
  /// GradScaler-style: the largest power of two at which nothing overflows, less `headroom`
  /// binades (none when every scale overflows).
  std::optional<recommendation> gradscaler;
  int no_overflow_log2 = 0;  ///< that largest power of two (valid with gradscaler)
  /// Fewest lost: fewest underflow + overflow, then fewest subnormal; of a tied run of scales,
  /// the middle one.
  std::optional<recommendation> fewest_lost;
  std::pair<int, int> fewest_lost_range{};  ///< the tied run, as exponents
};
recommendations recommend(const scale_sweep& s, int headroom = 1);

/// The exponents k whose counts in `s` recommend(s, headroom) depends on but may have wrong:
/// `uncertain` holds, per exponent kmin..kmax, the values whose class a loose count (class_tally)
/// may have wrong, each counted in the highest class its bucket allows. Empty: recommend(s,
/// headroom) is what the exact counts give, and the counts it reports are exact; otherwise
/// count those scales exactly and ask again. std::invalid_argument unless `uncertain` has
/// scale_sweep::size entries. (docs/hist.md "Recommendations")
std::vector<int> recommend_unsure(const scale_sweep& s, std::span<const std::uint64_t> uncertain, int headroom = 1);

}  // namespace fpscope
