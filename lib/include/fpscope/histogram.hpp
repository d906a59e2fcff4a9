// Exact class counts of scaled casts ("multiplied by S and cast to F, how many of these values
// vanish, go subnormal, stay normal, overflow?") and the mergeable bucket histogram they are
// counted from. The definitions are in docs/hist.md.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <limits>
#include <map>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "fpscope/detail/bucket_key.hpp"
#include "fpscope/format.hpp"
#include "fpscope/policy.hpp"

namespace fpscope {

/// What one element x becomes at scale S: y = fl32(x * S), q = the cast of y.
enum class cast_class : std::uint8_t {
  zero,       ///< x == 0
  underflow,  ///< x != 0 and q == +-0
  subnormal,  ///< q is a nonzero subnormal
  normal,     ///< q is normal and finite, no overflow happened
  overflow,   ///< q is inf or NaN, or was saturated (the IEEE overflow condition), or y is inf
  nonfinite,  ///< x is inf or NaN
};
inline constexpr int cast_class_count = 6;
std::string_view name(cast_class c);

/// Exact element counts per class.
struct class_counts {
  std::array<std::uint64_t, cast_class_count> n{};

  std::uint64_t& operator[](cast_class c) { return n[static_cast<int>(c)]; }
  std::uint64_t operator[](cast_class c) const { return n[static_cast<int>(c)]; }
  std::uint64_t total() const;
  /// underflow + subnormal + normal + overflow
  std::uint64_t nonzero_finite() const;
  class_counts& operator+=(const class_counts& o);
  bool operator==(const class_counts&) const = default;
};

/// One cast to count: the format, its policy (a deterministic rounding: not sr) and the scale,
/// a positive finite float32 (the GPU multiplies by a float32 scale).
struct cast_spec {
  format fmt;
  policy pol;
  float scale = 1.0f;
};

/// The float32 a kernel multiplies by for a scale held in a double: clamped into float32's
/// positive finite range (a recipe's scale can exceed it, e.g. a loss scale grown past 2^128).
inline float kernel_scale(double s) {
  return static_cast<float>(std::clamp(s, double(std::numeric_limits<float>::denorm_min()),
                                       double(std::numeric_limits<float>::max())));
}

/// Throws std::invalid_argument when a spec cannot be counted (sr, an unsigned format, a scale
/// that is not a positive finite float32).
void check(const cast_spec& c);

/// fl32(x * scale): the exact product rounded once to float32, nearest-even. (Inline: the error
/// pass scales blocks of values in a loop the compiler vectorises; the float64 product of two
/// float32s is exact, so one rounding to float32 is the correctly rounded product.)
inline float scaled(float x, float scale) { return static_cast<float>(double(x) * double(scale)); }
float scaled(double x, float scale);

/// The class of one element: the reference definition, computed by casting it.
cast_class classify_cast(float x, const cast_spec& c);
cast_class classify_cast(double x, const cast_spec& c);

/// Where the classes of a cast begin, as magnitude bits of the input type (float32 or float64):
/// an element of sign s (0 +, 1 -) and finite nonzero magnitude bits v is subnormal or above
/// iff v >= at[s][0], normal or above iff v >= at[s][1], overflows iff v >= at[s][2]. A
/// threshold no finite input reaches is the bits of infinity.
template <class U>
struct cast_thresholds {
  std::array<std::array<U, 3>, 2> at{};
};
cast_thresholds<std::uint32_t> thresholds32(const cast_spec& c);
cast_thresholds<std::uint64_t> thresholds64(const cast_spec& c);

/// The class of a float32 x from its cast's thresholds: classify_cast(x, c) for the spec c they
/// were found for, without casting (a compare per threshold).
inline cast_class threshold_class(const cast_thresholds<std::uint32_t>& t, float x) {
  const std::uint32_t b = std::bit_cast<std::uint32_t>(x);
  const std::uint32_t m = b & 0x7FFFFFFFu;
  if (m >= 0x7F800000u) return cast_class::nonfinite;
  if (m == 0) return cast_class::zero;
  const auto& a = t.at[b >> 31];
  return static_cast<cast_class>(1 + (m >= a[0]) + (m >= a[1]) + (m >= a[2]));
}

/// The exact bucket histogram of float32 values. Within a binade (sign and exponent), a value's
/// bucket is the run L of leading ones of its fraction (0..23), the bit after the zero that ends
/// the run, and whether every bit below those is zero: the value 1.1..10b000.. itself, or the
/// values above it. Every class boundary of every built-in format (max, min normal, min
/// subnormal, the midpoints, and each tie) is such a value or the one just above it, so at any
/// power-of-two scale, wherever x and x * S are float32 normals, the boundaries fall on bucket
/// edges; any other boundary is resolved exactly by a second pass over the values
/// (class_counter::refine). Float32 subnormals keep their raw fraction bits. A key is a few
/// vector instructions, and the table (128 slots per binade, 96 used) stays in cache.
/// Histograms merge by adding counts.
class bucket_histogram {
 public:
  static constexpr std::uint32_t per_binade = 128;
  static constexpr std::uint32_t per_sign = 256 * per_binade;
  static constexpr std::uint32_t bucket_count = 2 * per_sign;

  /// The bucket of a float32 bit pattern; buckets of a sign are ordered by magnitude.
  /// The same function as detail::bucket_key, which the CUDA kernels use.
  static constexpr std::uint32_t key(std::uint32_t bits) { return detail::bucket_key(bits); }
  /// The smallest magnitude bits in a bucket.
  static constexpr std::uint32_t lowest(std::uint32_t key) {
    const std::uint32_t run = (key >> 2) & 31, next = (key >> 1) & 1;
    const std::uint64_t ones = ((std::uint64_t{1} << run) - 1) << (23 - run);
    const std::uint32_t fraction = std::uint32_t(ones) | (run < 22 ? next << (21 - run) : 0);
    return ((key >> 7) & 0xFFu) << 23 | fraction | (key & 1);
  }
  /// Whether "magnitude < v" is a union of whole buckets.
  static constexpr bool is_edge(std::uint32_t v) { return v == lowest(key(v)); }

  bucket_histogram();
  /// Counts the values; OpenMP above fpscope::parallel_threshold unless threads == 1.
  void add(std::span<const float> x, int threads = 0) { (void)add_amax(x, threads); }
  /// add(), returning the bits of the largest finite magnitude among the values (0 when none:
  /// magnitudes of float32 order as their bits), found in the same read of the values: the
  /// recorder's summary (summary.hpp) needs both, and reading a tensor twice from memory costs
  /// more than the few vector instructions the max adds to the key loop.
  std::uint32_t add_amax(std::span<const float> x, int threads = 0);
  /// A few buckets whose values a count hands over as it reads them: those of a listed bucket
  /// with magnitude bits below the bucket's top, passed to sink(ctx, bits, count) in batches, in
  /// no particular order. class_counter resolves its few cut buckets this way, in the counting
  /// pass's own read, instead of a refine pass over the values again. The buckets sit in 32
  /// slots, key k in slot of(k) = ((k >> shift) ^ (k >> shift2)) & 31, so that a vector of keys
  /// finds its slots by two permutes, however many buckets are listed. (Two shifts: a boundary's
  /// bucket of each sign differs from the other only in the sign bit, 15, and one shift that
  /// reaches it keeps too few exponent bits to tell a spec's binades apart.)
  struct listing {
    static constexpr std::uint32_t none = ~0u;  // an empty slot's key (keys are below 2^16)
    unsigned shift = 0, shift2 = 16;
    std::uint32_t of(std::uint32_t k) const { return ((k >> shift) ^ (k >> shift2)) & 31; }
    std::array<std::uint32_t, 32> keys, top{};
    void (*sink)(void* ctx, const std::uint32_t* bits, std::size_t count) = nullptr;
    void* ctx = nullptr;
    listing() { keys.fill(none); }
    /// Places buckets keys[i] with tops top[i] (distinct keys) at the first shifts that give
    /// each a slot of its own; false (nothing placed) when none do.
    bool place(std::span<const std::uint32_t> keys, std::span<const std::uint32_t> top);
    /// Whether the value of bits u is listed.
    bool lists(std::uint32_t u) const {
      const std::uint32_t k = key(u), at = of(k);
      return keys[at] == k && (u & 0x7FFFFFFFu) < top[at];
    }
  };
  /// add(x, 1), handing l the values it lists.
  void add_listed(std::span<const float> x, const listing& l);
  bucket_histogram& operator+=(const bucket_histogram& o);
  void clear();
  std::uint64_t operator[](std::uint32_t key) const { return counts_.empty() ? 0 : counts_[key]; }
  std::uint64_t total() const;
  /// Elements of sign s with magnitude bits < v; v must be an edge.
  std::uint64_t below(int sign, std::uint32_t v) const;
  /// The nonzero buckets, by key: the compact form traces store.
  std::vector<std::pair<std::uint32_t, std::uint64_t>> sparse() const;
  void add_sparse(std::span<const std::pair<std::uint32_t, std::uint64_t>> buckets);
  /// floor(log2|x|) -> count of the nonzero finite values; float32 subnormals count at -127.
  std::map<int, std::uint64_t> binades() const;

 private:
  // add_amax, and with a listing add_listed (then on one thread).
  std::uint32_t count(std::span<const float> x, int threads, const listing* l);
  void prefix() const;
  void allocate();
  std::vector<std::uint64_t> counts_;  // empty until the first count: all zero
  mutable std::vector<std::uint64_t> prefix_;        // per sign, counts of keys below; empty: stale
};

/// Counts the classes of many casts over a stream of values, exactly. Float32 values go through
/// the bucket histogram (one pass, then refine() when needs_refine()); float64 values, and all
/// values when `expected_size` is small, through a search among the sorted thresholds.
class class_counter {
 public:
  explicit class_counter(std::vector<cast_spec> specs, std::uint64_t expected_size = ~std::uint64_t{0},
                         int threads = 0);
  const std::vector<cast_spec>& specs() const { return specs_; }
  /// Forgets the values (keeps the specs and their thresholds) for the next tensor.
  void reset(std::uint64_t expected_size = ~std::uint64_t{0});
  const cast_thresholds<std::uint32_t>& thresholds(std::size_t spec) const { return t32_[spec]; }

  void add(std::span<const float> x);
  void add(std::span<const double> x);
  /// After every add(): whether the float32 values must be passed once more, in any order,
  /// through refine() (a class boundary fell inside a bucket that holds values).
  bool needs_refine();
  void refine(std::span<const float> x);
  /// Adds recorded bucket counts (the bucket_histogram::sparse() form). A class boundary inside
  /// one of their buckets cannot be resolved without the values: counts() then counts that
  /// whole bucket above the boundary, and exact() is false.
  void add_histogram(std::span<const std::pair<std::uint32_t, std::uint64_t>> buckets);
  /// False only when histograms were added and a boundary fell inside one of their non-empty buckets.
  bool exact();
  /// The same for spec i alone.
  bool exact(std::size_t i) const;
  /// Counts per spec (needs the refine pass first when needs_refine()).
  std::vector<class_counts> counts();
  /// Specs whose float32 counts may stay inexact (loose[i] != 0; empty: none): their class
  /// boundaries are left out of the refine pass, so one inside a bucket that holds values counts
  /// that whole bucket above it (as with recorded histograms), exact(i) is then false and
  /// uncertain(i) says how many values could belong to another class. For counts that only
  /// choose among scales (fpscope::recommend_unsure); applies from the next add().
  void set_loose(std::vector<char> loose);
  /// The values in the buckets that spec i's boundaries cut and no refine pass resolved (0 for
  /// an exact spec).
  std::uint64_t uncertain(std::size_t i) const;
  /// Whether float32 subnormals were added (their buckets are coarse: loose counts of them
  /// would leave much uncertain).
  bool holds_subnormals() const;
  /// floor(log2|x|) -> count of every nonzero finite value added.
  std::map<int, std::uint64_t> binades() const;

 private:
  struct edges {
    std::array<std::vector<std::uint64_t>, 2> at;      // per sign, sorted, unique
    std::array<std::vector<std::uint64_t>, 2> counts;  // elements with (edges <= v) == i
  };
  template <class T>
  void add_searched(std::span<const T> x, edges& e);
  // by_spec: every boundary that is not a bucket edge, whatever the values (the fused refine's
  // plan, made before any is read); else those inside a bucket that holds values.
  void plan_refine(bool by_spec = false);
  // Whether the refine is fused into add() (decided at the first add after a reset).
  bool fusable();
  // listing_'s sink: the hits of the listed values.
  static void list_hits(void* ctx, const std::uint32_t* bits, std::size_t n);
  // The hits_ slot of a value of marked bucket k with magnitude bits mag: b the marked buckets
  // below k (a rank over the bit set, all in L1), then the boundaries of b at or below mag.
  std::size_t slot(std::uint32_t k, std::uint32_t mag) const {
    const std::uint32_t b =
        rank_[k / 64] + std::uint32_t(std::popcount(marked_[k / 64] & ((std::uint64_t{1} << (k % 64)) - 1)));
    std::uint32_t c = 0;
    for (std::uint32_t i = first_[b]; i < first_[b + 1]; ++i) c += mag >= cut_[i];
    return first_[b] + b + c;
  }
  // Whether the boundary v (magnitude bits) of sign s falls inside a non-empty bucket.
  bool inside(std::uint32_t s, std::uint32_t v) const {
    return !bucket_histogram::is_edge(v) && hist_[bucket_histogram::key(s << 31 | v)] != 0;
  }

  std::vector<cast_spec> specs_;
  std::vector<cast_thresholds<std::uint32_t>> t32_;
  std::vector<cast_thresholds<std::uint64_t>> t64_;
  int threads_;
  bool searched32_;
  bucket_histogram hist_;
  edges e32_, e64_;
  std::map<int, std::uint64_t> binades_;  // of searched values
  bool planned_ = false;
  // refine, in flat arrays (a bit test, a rank and a short scan per value, all in L1): the marked
  // buckets (a boundary inside, values in them) numbered b = 0, 1, ..., each with its
  // boundaries ascending in cut_[first_[b] .. first_[b + 1]); a value of bucket b with j of them
  // <= its magnitude counts in hits_[first_[b] + b + j].
  void refine_range(const std::uint32_t* in, std::size_t n, std::uint64_t* hits) const;
  std::uint64_t refined_below(std::uint32_t key, std::uint32_t v) const;
  std::vector<std::uint64_t> marked_;  // bit per key: a marked bucket; b is its rank among them
  std::vector<std::uint16_t> rank_;    // per word of marked_: marked buckets in the words before
  std::vector<std::uint32_t> cut_, first_;
  // per key: a marked bucket's largest boundary, else 0 (256 KB, filled when a refine is
  // planned). refine lists only the values below it: a bucket's last slot (values at or above
  // every boundary) is left empty, never read.
  std::vector<std::uint32_t> top_;
  std::vector<std::uint64_t> hits_;
  std::vector<char> loose_;  // set_loose
  bool loose(std::size_t i) const { return i < loose_.size() && loose_[i]; }
  bool refined_ = false;
  bool histograms_ = false;
  enum class fuse : std::uint8_t { unknown, yes, no };
  fuse fuse_ = fuse::unknown;
  bool added_ = false;  // values were added since the last reset
  // The marked buckets and their largest boundaries, when at most 32 and slots can take them
  // (listed_): the fused refine lists from it (fuse_ == yes), the refine pass finds its values
  // by it instead of gathering top_.
  bucket_histogram::listing listing_;
  bool listed_ = false;
  // (sign, magnitude bits): the boundaries plan_refine(true) left out (in float32 subnormals)
  std::vector<std::pair<std::uint32_t, std::uint32_t>> unplanned_;
};

/// Counts per spec by casting every element (the reference path: plain, slow).
std::vector<class_counts> count_reference(std::span<const float> x, std::span<const cast_spec> specs);
std::vector<class_counts> count_reference(std::span<const double> x, std::span<const cast_spec> specs);

/// Error of the representable part (subnormal and normal classes): |q/S - x| / |x| and the
/// signal-to-quantisation-noise ratio sum x^2 / sum (q/S - x)^2. Mergeable by +=. Computed by
/// fpscope::error_tally (counting.hpp), to the accuracy docs/hist.md states ("Error statistics").
struct error_stats {
  std::uint64_t n = 0;
  double sum_rel = 0, max_rel = 0, signal = 0, noise = 0;
  double mean_rel() const;
  /// +inf when the noise is zero; NaN when n == 0.
  double sqnr_db() const;
  error_stats& operator+=(const error_stats& o);
};
/// The statistics of one cast over x, added to e (an error_tally of one spec, on this thread).
void accumulate_errors(std::span<const float> x, const cast_spec& c, error_stats& e);
void accumulate_errors(std::span<const double> x, const cast_spec& c, error_stats& e);

}  // namespace fpscope
