// Per-block statistics of a GEMM operand (fpscope/block_stats.hpp; docs/recipes.md "Block
// statistics"). Recording is one pass per block geometry with no rounding routine: integer
// operations on the float32 bits (vectorised), then one counter increment per element. Answering
// evaluates each histogram cell at its corners with the values path's own plan and cast
// (block_plan.hpp), so the two paths cannot drift apart.
#include "fpscope/block_stats.hpp"

#include <omp.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>

#include "block_plan.hpp"
#include "fpscope/histogram.hpp"
#include "fpscope/options.hpp"
#include "fpscope/recipe.hpp"

namespace fpscope {

namespace {

// ---- keys (docs/recipes.md "Block statistics") ----------------------------------------------
// amax key, 21 bits: ecode << 12 | class << 2 | nan << 1 | inf. ecode 0: no finite nonzero
// element (class 0); else the finite amax's exponent + 150 (float32 subnormals at their own
// exponent, down to -149). class: how many thresholds are <= the amax's 23-bit significand.
// element key: amax key << 11 | off << 5 | sig5; off = amax exponent - element exponent (0..61),
// 62 far below, 63 not finite nonzero (sig5 0 zero, 1 inf, 2 NaN); sig5: the element's top 4
// significand bits << 1 | any lower bit. block key: amax key << 5 | the amax's sig5. minimum key:
// amax key << 11 | the least nonzero finite |element|'s (off << 5 | sig5), 63 << 5 without one.
constexpr int ecode_bias = 150;
constexpr std::uint32_t off_far = 62, off_special = 63;
constexpr std::uint32_t sub_zero = off_special << 5, sub_inf = sub_zero | 1, sub_nan = sub_zero | 2;
constexpr std::uint32_t max_classes = 1024;

// The normalized exponent and 23-bit significand of a positive finite nonzero float32's bits.
// A subnormal's bits, an integer below 2^23, convert exactly to a normal float whose exponent
// and significand are theirs: no subnormal arithmetic (a process with flush-to-zero and
// denormals-are-zero set, as torch.set_flush_denormal(True) does, would read one as 0).
// Masks, not selects: GCC 12 sinks the conversion into a select's arm and then vectorises no
// loop that calls this.
inline void split(std::uint32_t b, std::int32_t& e, std::uint32_t& m) {
  const std::uint32_t sub = 0u - std::uint32_t(b < 0x00800000u);
  const std::uint32_t s = std::bit_cast<std::uint32_t>(float(std::int32_t(b & 0x7FFFFFu)));
  const std::uint32_t v = (s & sub) | (b & ~sub);
  e = std::int32_t(v >> 23) - 127 - std::int32_t(149u & sub);
  m = v & 0x7FFFFFu;
}
// Of |x|'s bits: the bits where x is finite, else 0 (a mask, not a select: GCC 12 vectorises a
// max reduction of this and not of `cond ? b : 0`); the bits less one, whose min over a block is
// its least nonzero finite magnitude less one (0 wraps to the top, inf and NaN lie above every
// finite value), or at least 0x7F7FFFFF without one (a plain min: vectorised);
// NaN << 1 | inf.
inline std::uint32_t finite_bits(std::uint32_t b) { return b & (0u - std::uint32_t(b < 0x7F800000u)); }
inline std::uint32_t nonzero_bits(std::uint32_t b) { return b - 1u; }
constexpr std::uint32_t no_nonzero = 0x7F7FFFFFu;
inline std::uint32_t nonfinite_flags(std::uint32_t b) { return std::uint32_t(b > 0x7F800000u) << 1 | std::uint32_t(b == 0x7F800000u); }
inline std::uint32_t sig5(std::uint32_t m) { return (m >> 19) << 1 | ((m & 0x7FFFFu) != 0); }

// The least (up) or largest (!up) float32 >= (resp. <=) (1 + m / 2^23) 2^e, e in [-149, 127];
// 0 when none is (below the least subnormal, rounding down).
float make_float(int e, std::uint64_t m, bool up) {
  if (e >= -126) return std::bit_cast<float>(std::uint32_t(e + 127) << 23 | std::uint32_t(m));
  const int shift = -126 - e;  // subnormal: the significand 1.m scaled down
  const std::uint64_t full = (std::uint64_t{1} << 23 | m);
  std::uint64_t q = full >> shift;
  if (up && (q << shift) != full) ++q;
  return std::bit_cast<float>(std::uint32_t(q));
}

// ---- the threshold partition ----------------------------------------------------------------

std::vector<std::uint32_t> derive_thresholds() {
  // Every power-of-two recipe whose scale the statistics answer exactly, per role (formats
  // differ by role): the plans are the values path's (setup_operand, engine::plan).
  std::vector<std::string> specs;
  for (const char* mode : {"te", "floor", "ceil", "rceil", "even"}) {
    for (const char* e : {"e4m3", "e5m2"}) specs.push_back(std::string("mxfp8:scaling_mode=") + mode + ",elem=" + e);
    for (const char* e : {"e2m3", "e3m2"}) specs.push_back(std::string("mxfp6:scaling_mode=") + mode + ",elem=" + e);
    specs.push_back(std::string("mxfp4:scaling_mode=") + mode);
  }
  specs.push_back("fp8-block");
  specs.push_back("fp8-block:fp8_format=hybrid");
  specs.push_back("deepseek:ue8m0=true");
  std::vector<std::uint32_t> out;
  const detail::tensor_summary none;
  for (const auto& spec : specs) {
    const auto r = make_recipe(spec);
    for (const auto role : {operand_role::input, operand_role::grad}) {
      const auto set = detail::setup_operand(*r, role, block_axis::row, 1, 1, none);
      for (int e = -149; e <= 127; ++e) {
        auto f = [&](std::uint32_t m) {
          return std::bit_cast<std::uint32_t>(set.eng.plan({make_float(e, m, false), false}).factor);
        };
        // The scale is monotone in the amax: bisect every change within the binade.
        struct range { std::uint32_t lo, hi, flo, fhi; };
        std::vector<range> todo{{0, 0x7FFFFFu, f(0), f(0x7FFFFFu)}};
        while (!todo.empty()) {
          const range g = todo.back();
          todo.pop_back();
          if (g.flo == g.fhi) continue;
          if (g.hi == g.lo + 1) {
            out.push_back(g.hi);
            continue;
          }
          const std::uint32_t mid = g.lo + (g.hi - g.lo) / 2, fm = f(mid);
          todo.push_back({g.lo, mid, g.flo, fm});
          todo.push_back({mid, g.hi, fm, g.fhi});
        }
      }
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  if (out.size() >= max_classes) throw std::logic_error("block_stats: too many amax thresholds");
  return out;
}

// ---- recording ----------------------------------------------------------------------------------

using sparse = std::vector<std::pair<std::uint32_t, std::uint64_t>>;

// Sorted by key, repeated keys summed.
sparse merged(sparse v) {
  std::sort(v.begin(), v.end());
  sparse out;
  for (const auto& [k, n] : v) {
    if (!out.empty() && out.back().first == k) out.back().second += n;
    else out.emplace_back(k, n);
  }
  return out;
}

// One task's counters: a dense table of 2048 element counters, 2048 minimum counters and 32
// block counters per amax key seen, found through (ecode, flags) -> class -> slot.
struct accumulator {
  static constexpr std::size_t per_slot = 2048 + 2048 + 32;
  const std::vector<std::uint32_t>& thr;
  std::vector<std::uint32_t> counts;  // slots x per_slot
  std::vector<std::uint32_t> keys;    // per slot: its amax key
  std::uint32_t largest = 0;           // the largest finite |x| seen, as bits
  std::vector<std::unique_ptr<std::int32_t[]>> by_ecode;  // (ecode << 2 | flags) -> class -> slot
  explicit accumulator(const std::vector<std::uint32_t>& t) : thr(t), by_ecode(512 * 4) {}

  // The slot index of a block's amax (counts may grow: pointers into it last until the next call).
  std::size_t slot(std::uint32_t amax_bits, bool nan, bool inf, std::int32_t& amax_exp) {
    std::uint32_t ecode = 0, cls = 0;
    amax_exp = 0;
    if (amax_bits) {
      std::uint32_t m;
      split(amax_bits, amax_exp, m);
      ecode = std::uint32_t(amax_exp + ecode_bias);
      cls = std::uint32_t(std::upper_bound(thr.begin(), thr.end(), m) - thr.begin());
    }
    const std::uint32_t outer = ecode << 2 | std::uint32_t(nan) << 1 | std::uint32_t(inf);
    auto& inner = by_ecode[outer];
    if (!inner) {
      inner.reset(new std::int32_t[thr.size() + 1]);
      std::fill_n(inner.get(), thr.size() + 1, -1);
    }
    std::int32_t& s = inner[cls];
    if (s < 0) {
      s = std::int32_t(keys.size());
      keys.push_back(ecode << 12 | cls << 2 | std::uint32_t(nan) << 1 | std::uint32_t(inf));
      counts.resize(counts.size() + per_slot);
    }
    return std::size_t(s);
  }

  // Appends the nonzero counters to the (key, count) lists (unsorted, a key possibly repeated:
  // merged()) and empties the accumulator (a new slot's counters are zeroed as it is made).
  void flush(sparse& el, sparse& bl, sparse& mi) {
    for (std::size_t s = 0; s < keys.size(); ++s) {
      const std::uint32_t* c = counts.data() + s * per_slot;
      for (std::uint32_t k = 0; k < 2048; ++k)
        if (c[k]) el.emplace_back(keys[s] << 11 | k, c[k]);
      for (std::uint32_t k = 0; k < 2048; ++k)
        if (c[2048 + k]) mi.emplace_back(keys[s] << 11 | k, c[2048 + k]);
      for (std::uint32_t k = 0; k < 32; ++k)
        if (c[4096 + k]) bl.emplace_back(keys[s] << 5 | k, c[4096 + k]);
    }
    for (auto& inner : by_ecode)
      if (inner) std::fill_n(inner.get(), thr.size() + 1, -1);
    keys.clear();
    counts.clear();
  }
};

// The sub key (off << 5 | sig5) of each |x| bits b against the amax exponent ea: for the vectoriser.
inline std::uint32_t sub_key(std::uint32_t b, std::int32_t ea) {
  std::int32_t e;
  std::uint32_t m;
  split(b, e, m);  // b = 0 and non-finite b give garbage that the mask below drops
  const std::int32_t off = std::min(ea - e, std::int32_t(off_far));
  const std::uint32_t fin = std::uint32_t(std::max(off, 0)) << 5 | sig5(m);
  const std::uint32_t special = b == 0 ? sub_zero : b == 0x7F800000u ? sub_inf : sub_nan;
  const std::uint32_t finite = 0u - std::uint32_t(b - 1u < 0x7F7FFFFFu);  // a mask: see split
  return (fin & finite) | (special & ~finite);
}

// The blocks of rows [r0, r1) (whole block rows) of one geometry into `acc`.
void record_rows(const float* x, std::size_t cols, std::size_t r0, std::size_t r1, block_geometry g, accumulator& acc) {
  const std::size_t bc = g.cols, nb = (cols + bc - 1) / bc;
  std::vector<std::uint32_t> amax(bc == 1 ? cols : nb), least(amax.size());
  std::vector<std::uint32_t> flags(amax.size());
  std::vector<std::size_t> slot_of(amax.size());
  std::vector<std::uint32_t*> slots(amax.size());
  std::vector<std::int32_t> ea(amax.size());  // per block: the amax exponent
  std::vector<std::uint32_t> ab(cols), sub(cols);
  for (std::size_t s0 = r0; s0 < r1; s0 += g.rows) {
    const std::size_t s1 = std::min(r1, s0 + g.rows);
    std::fill(amax.begin(), amax.end(), 0u);
    std::fill(least.begin(), least.end(), ~0u);
    std::fill(flags.begin(), flags.end(), 0u);
    // Pass 1: per block, the finite amax, the least nonzero finite magnitude (as bits: positive
    // floats order as their bits), NaN and inf present.
    for (std::size_t i = s0; i < s1; ++i) {
      const float* row = x + i * cols;
      for (std::size_t j = 0; j < cols; ++j) {
        std::uint32_t b;
        std::memcpy(&b, row + j, 4);
        ab[j] = b & 0x7FFFFFFFu;
      }
      if (bc == 1) {
        for (std::size_t j = 0; j < cols; ++j) {
          amax[j] = std::max(amax[j], finite_bits(ab[j]));
          least[j] = std::min(least[j], nonzero_bits(ab[j]));
          flags[j] |= nonfinite_flags(ab[j]);
        }
      } else {
        for (std::size_t k = 0; k < nb; ++k) {
          // Three plain reductions of 32-bit lanes: each vectorises on its own.
          std::uint32_t mx = 0, mn = ~0u, f = 0;
          const std::size_t j0 = k * bc, je = std::min(cols, j0 + bc);
          for (std::size_t j = j0; j < je; ++j) mx = std::max(mx, finite_bits(ab[j]));
          for (std::size_t j = j0; j < je; ++j) mn = std::min(mn, nonzero_bits(ab[j]));
          for (std::size_t j = j0; j < je; ++j) f |= nonfinite_flags(ab[j]);
          amax[k] = std::max(amax[k], mx), least[k] = std::min(least[k], mn), flags[k] |= f;
        }
      }
    }
    // The amax keys, the block and least-element counters.
    for (std::size_t k = 0; k < amax.size(); ++k) {
      std::int32_t e;
      slot_of[k] = acc.slot(amax[k], flags[k] & 2, flags[k] & 1, e);
      ea[k] = e;
    }
    for (std::size_t k = 0; k < amax.size(); ++k) {
      acc.largest = std::max(acc.largest, amax[k]);
      std::uint32_t* c = slots[k] = acc.counts.data() + slot_of[k] * accumulator::per_slot;
      std::uint32_t m = 0;
      std::int32_t e = 0;
      if (amax[k]) split(amax[k], e, m);
      ++c[4096 + (amax[k] ? sig5(m) : 0)];
      ++c[2048 + (least[k] >= no_nonzero ? sub_zero : sub_key(least[k] + 1u, e))];
    }
    // Pass 2: every element's key.
    for (std::size_t i = s0; i < s1; ++i) {
      const float* row = x + i * cols;
      if (bc == 1) {
        for (std::size_t j = 0; j < cols; ++j) {
          std::uint32_t b;
          std::memcpy(&b, row + j, 4);
          sub[j] = sub_key(b & 0x7FFFFFFFu, ea[j]);
        }
        for (std::size_t j = 0; j < cols; ++j) ++slots[j][sub[j]];
      } else {
        for (std::size_t k = 0; k < nb; ++k) {
          const std::size_t j0 = k * bc, je = std::min(cols, j0 + bc);
          const std::int32_t e = ea[k];
          for (std::size_t j = j0; j < je; ++j) {
            std::uint32_t b;
            std::memcpy(&b, row + j, 4);
            sub[j] = sub_key(b & 0x7FFFFFFFu, e);
          }
          std::uint32_t* c = slots[k];
          for (std::size_t j = j0; j < je; ++j) ++c[sub[j]];
        }
      }
    }
  }
}

}  // namespace

std::vector<block_geometry> default_block_geometries() { return {{1, 32}, {32, 1}, {1, 128}, {128, 1}, {128, 128}}; }

const std::vector<std::uint32_t>& block_stats_thresholds() {
  static const std::vector<std::uint32_t> t = derive_thresholds();
  return t;
}

operand_block_stats compute_block_stats(std::span<const float> x, std::size_t rows, std::size_t cols,
                                        std::span<const block_geometry> geometries, int threads) {
  if (rows == 0 || cols == 0 || x.size() / rows != cols || x.size() % rows != 0)
    throw option_error("block_stats: " + std::to_string(x.size()) + " values are not " + std::to_string(rows) + " x " +
                       std::to_string(cols));
  operand_block_stats out;
  out.rows = rows, out.cols = cols;
  out.thresholds = block_stats_thresholds();
  std::uint32_t amax = 0;  // the tensor's finite amax, as bits: the blocks' maximum
  const int nt = threads > 0 ? threads : x.size() >= parallel_threshold ? omp_get_max_threads() : 1;
  for (const auto g : geometries) {
    if (g.rows == 0 || g.cols == 0) throw option_error("block_stats: a block geometry has a zero edge");
    // Tasks of whole block rows, each under 2^31 elements (the counters are 32-bit).
    const std::size_t stripe = std::min<std::size_t>(g.rows, rows);
    if (stripe * cols >= (std::size_t{1} << 32))
      throw option_error("block_stats: a row of " + std::to_string(g.rows) + "x" + std::to_string(g.cols) +
                         " blocks holds 2^32 elements or more (the counters are 32-bit)");
    std::size_t per_task = std::max<std::size_t>(1, (std::size_t{1} << 31) / (stripe * cols)) * stripe;
    per_task = std::min(per_task, std::max(stripe, (rows / std::size_t(nt) + stripe - 1) / stripe * stripe));
    const std::size_t tasks = (rows + per_task - 1) / per_task;
    sparse el, bl, mi;
    std::mutex m;
#pragma omp parallel num_threads(nt)
    {
      accumulator acc(out.thresholds);
      sparse e2, b2, m2;
#pragma omp for schedule(dynamic, 1)
      for (std::size_t t = 0; t < tasks; ++t) {
        record_rows(x.data(), cols, t * per_task, std::min(rows, (t + 1) * per_task), g, acc);
        acc.flush(e2, b2, m2);
      }
      const std::lock_guard lock(m);
      el.insert(el.end(), e2.begin(), e2.end());
      bl.insert(bl.end(), b2.begin(), b2.end());
      mi.insert(mi.end(), m2.begin(), m2.end());
      amax = std::max(amax, acc.largest);
    }
    out.geometries.push_back({g, merged(std::move(el)), merged(std::move(bl)), merged(std::move(mi))});
  }
  if (geometries.empty()) {
    for (const float v : x) amax = std::max(amax, finite_bits(std::bit_cast<std::uint32_t>(v) & 0x7FFFFFFFu));
  }
  out.finite_amax = std::bit_cast<float>(amax);
  return out;
}

block_stats_arrays to_arrays(const operand_block_stats& st) {
  block_stats_arrays a;
  a.shape = {st.rows, st.cols};
  a.thresholds = st.thresholds;
  for (const auto& g : st.geometries) {
    a.geometry.push_back(g.geometry.rows), a.geometry.push_back(g.geometry.cols);
    for (const auto* l : {&g.elements, &g.blocks, &g.minima}) {
      a.lengths.push_back(l->size());
      for (const auto& [k, n] : *l) a.keys.push_back(k), a.counts.push_back(n);
    }
  }
  return a;
}

operand_block_stats from_arrays(const block_stats_arrays& a, double finite_amax) {
  auto fail = [](const std::string& what) { throw option_error("block statistics: " + what); };
  operand_block_stats st;
  if (a.shape.size() != 2 || a.shape[0] == 0 || a.shape[1] == 0 || a.shape[0] > (std::uint64_t{1} << 40) ||
      a.shape[1] > (std::uint64_t{1} << 40) || a.shape[0] * a.shape[1] > (std::uint64_t{1} << 40))
    fail("bstats_shape is not two dimensions of 1..2^40 elements");
  st.rows = a.shape[0], st.cols = a.shape[1];
  if (!(finite_amax >= 0) || !(finite_amax <= std::numeric_limits<float>::max()) || double(float(finite_amax)) != finite_amax)
    fail("the amax is not a finite float32 >= 0");
  st.finite_amax = float(finite_amax);
  if (a.thresholds.size() >= max_classes) fail("over 1023 thresholds");
  for (std::size_t i = 0; i < a.thresholds.size(); ++i)
    if (a.thresholds[i] == 0 || a.thresholds[i] > 0x7FFFFFu || (i && a.thresholds[i] <= a.thresholds[i - 1]))
      fail("bstats_thresholds are not increasing 23-bit significands");
  st.thresholds = a.thresholds;
  const std::size_t ng = a.geometry.size() / 2;
  if (a.geometry.size() % 2 || ng == 0 || ng > 64) fail("bstats_geometry is not 1..64 (rows, cols) pairs");
  if (a.lengths.size() != 3 * ng) fail("bstats_lengths is not three lengths per geometry");
  if (a.keys.size() != a.counts.size()) fail("bstats_keys and bstats_counts differ in length");
  std::uint64_t at = 0;
  const std::uint64_t classes = a.thresholds.size();
  // An amax key: its exponent code within float32's range, its class within the thresholds.
  auto amax_ok = [&](std::uint32_t k) {
    const std::uint32_t ecode = k >> 12, cls = (k >> 2) & 0x3FFu;
    return ecode <= 127 + ecode_bias && cls <= classes && (ecode != 0 || (cls == 0));
  };
  auto sub_ok = [](std::uint32_t sub) { return sub >> 5 != off_special || sub <= sub_nan; };
  for (std::size_t g = 0; g < ng; ++g) {
    block_geometry_stats gs;
    gs.geometry = {a.geometry[2 * g], a.geometry[2 * g + 1]};
    if (gs.geometry.rows == 0 || gs.geometry.cols == 0) fail("a block geometry with a zero edge");
    const std::uint64_t blocks = ((st.rows + gs.geometry.rows - 1) / gs.geometry.rows) *
                                 ((st.cols + gs.geometry.cols - 1) / gs.geometry.cols);
    const std::uint64_t want[3] = {st.rows * st.cols, blocks, blocks};
    const std::array lists{&gs.elements, &gs.blocks, &gs.minima};
    for (int l = 0; l < 3; ++l) {
      const std::uint64_t n = a.lengths[3 * g + std::size_t(l)];
      if (n > a.keys.size() - at) fail("bstats_lengths exceed the keys");
      long double total = 0;
      for (std::uint64_t i = at; i < at + n; ++i) {
        const std::uint32_t k = a.keys[i];
        if (i > at && k <= a.keys[i - 1]) fail("keys not strictly increasing");
        const bool ok = l == 1 ? amax_ok(k >> 5) : amax_ok(k >> 11) && sub_ok(k & 0x7FFu);
        if (!ok) fail("key " + std::to_string(k) + " out of range");
        total += (long double)a.counts[i];
        lists[std::size_t(l)]->emplace_back(k, a.counts[i]);
      }
      if (total != (long double)want[l])
        fail("counts of geometry " + std::to_string(gs.geometry.rows) + "x" + std::to_string(gs.geometry.cols) +
             " sum to " + std::to_string((unsigned long long)total) + ", not " + std::to_string(want[l]));
      at += n;
    }
    st.geometries.push_back(std::move(gs));
  }
  if (at != a.keys.size()) fail("bstats_keys longer than bstats_lengths say");
  return st;
}

// ---- answering ----------------------------------------------------------------------------------

namespace {

struct amax_cell {
  bool finite_nonzero = false;  // ecode != 0
  int e = 0;                    // the amax exponent
  float lo = 0, hi = 0;         // the least and largest finite amax the cell holds
  bool nan = false, inf = false;
};

amax_cell decode_amax(std::uint32_t key, const std::vector<std::uint32_t>& thr) {
  amax_cell c;
  const std::uint32_t ecode = key >> 12, cls = (key >> 2) & 0x3FFu;
  c.nan = key & 2, c.inf = key & 1;
  if (ecode == 0) return c;
  if (cls > thr.size()) throw option_error("block statistics: an amax class beyond the thresholds");
  c.finite_nonzero = true;
  c.e = int(ecode) - ecode_bias;
  if (c.e < -149 || c.e > 127) throw option_error("block statistics: an amax exponent out of range");
  const std::uint32_t mlo = cls ? thr[cls - 1] : 0, mhi = cls < thr.size() ? thr[cls] - 1 : 0x7FFFFFu;
  c.lo = make_float(c.e, mlo, true), c.hi = make_float(c.e, mhi, false);
  return c;
}

// The least and largest |x| of a sub key (off < 62: element exponent ea - off; 62: below
// 2^(ea - 61)), optionally narrowed to significands [mlo, mhi].
std::pair<float, float> element_range(int ea, std::uint32_t sub) {
  const std::uint32_t off = sub >> 5, s5 = sub & 31u;
  if (off == off_far) {
    const int top = ea - 61;  // x < 2^top
    const float hi = top > -149 ? std::nextafter(make_float(top, 0, false), 0.0f) : std::numeric_limits<float>::denorm_min();
    return {std::numeric_limits<float>::denorm_min(), hi};
  }
  const int e = ea - int(off);
  if (e < -149) return {std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::denorm_min()};
  const std::uint64_t base = std::uint64_t(s5 >> 1) << 19;
  if (!(s5 & 1)) return {make_float(e, base, true), make_float(e, base, false)};
  return {make_float(e, base + 1, true), make_float(e, base + 0x7FFFF, false)};
}

struct answerer {
  const detail::operand_setup& set;
  const detail::element_cast lo_cast, hi_cast;  // SR: toward zero and away, else the policy's
  bool sr;

  static policy with(policy p, rounding r) {
    p.round = r;
    return p;
  }
  answerer(const detail::operand_setup& s)
      : set(s), lo_cast(s.eng.elem, s.eng.pol.round == rounding::sr ? with(s.eng.pol, rounding::rtz) : s.eng.pol),
        hi_cast(s.eng.elem, s.eng.pol.round == rounding::sr ? with(s.eng.pol, rounding::rup) : s.eng.pol),
        sr(s.eng.pol.round == rounding::sr) {}

  detail::block_plan plan(const amax_cell& a, bool high) const {
    if (!set.blocked) return set.per_tensor;
    const float f = a.finite_nonzero ? (high ? a.hi : a.lo) : 0.0f;
    return set.eng.plan({a.inf ? std::numeric_limits<float>::infinity() : f, a.nan});
  }
  // The least and largest class, and whether the dequantized value is not finite (least, largest),
  // of a finite element in [xlo, xhi] of a block whose amax lies in cell a.
  struct range {
    cast_class lo, hi;
    bool nf_lo, nf_hi;
  };
  // The plans at a cell's least and largest amax, made once per amax key.
  struct plans {
    detail::block_plan lo, hi;
    bool one;  // the same: the cell's amaxes share one scale
  };
  plans plans_of(const amax_cell& a) const {
    plans p{plan(a, false), plan(a, true), false};
    p.one = std::bit_cast<std::uint32_t>(p.lo.by) == std::bit_cast<std::uint32_t>(p.hi.by) &&
            std::bit_cast<std::uint32_t>(p.lo.factor) == std::bit_cast<std::uint32_t>(p.hi.factor) && p.lo.how == p.hi.how;
    return p;
  }
  range classes(const plans& ps, float xlo, float xhi) const {
    range r{cast_class::nonfinite, cast_class::zero, true, false};
    for (const detail::block_plan* pp : {&ps.lo, &ps.hi}) {
      if (pp == &ps.hi && ps.one) break;
      const detail::block_plan& p = *pp;
      for (const float xv : {xlo, xhi}) {
        const float y = p.scaled(xv);
        for (const auto* c : {&lo_cast, &hi_cast}) {
          if (c == &hi_cast && !sr) break;  // one cast: the policy's
          const auto [code, cls] = (*c)(xv, y, 0);
          const bool nf = !std::isfinite(c->value_of[code] * p.factor);
          if (cls < r.lo) r.lo = cls;
          if (cls > r.hi) r.hi = cls;
          r.nf_lo = r.nf_lo && nf;
          r.nf_hi = r.nf_hi || nf;
        }
      }
    }
    return r;
  }
};


}  // namespace

bool block_stats_answer::exact() const {
  return low.counts == high.counts && low.blocks == high.blocks && low.clipped_blocks == high.clipped_blocks &&
         low.any_vanish_blocks == high.any_vanish_blocks && low.most_vanish_blocks == high.most_vanish_blocks &&
         low.zero_blocks == high.zero_blocks && low.nan_scale_blocks == high.nan_scale_blocks &&
         low.min_scale == high.min_scale && low.max_scale == high.max_scale && low.scale_binades == high.scale_binades &&
         low.nonfinite_dequant == high.nonfinite_dequant;
}

block_stats_answer answer_block_stats(const operand_block_stats& st, recipe& r, operand_role role, block_axis axis) {
  if (st.geometries.empty()) throw option_error("block statistics: none recorded");
  // The tensor's inf and NaN counts (te-current's tensor_meta) from any geometry's elements.
  detail::tensor_summary t;
  t.finite_amax = st.finite_amax;
  for (const auto& [k, n] : st.geometries.front().elements) {
    t.infs += (k & 0x7FFu) == sub_inf ? n : 0;
    t.nans += (k & 0x7FFu) == sub_nan ? n : 0;
  }
  const detail::operand_setup set = detail::setup_operand(r, role, axis, st.rows, st.cols, t);
  if (set.rht)
    throw option_error(set.describe + ": the random Hadamard transform of the wgrad operands mixes 16 elements; "
                                      "block statistics cannot answer it (give rht=false, or the values)");
  block_stats_answer out;
  out.describe = set.describe;
  out.element = set.eng.elem;
  out.block_rows = set.block_rows, out.block_cols = set.block_cols;
  const block_geometry want{std::uint32_t(std::min<std::size_t>(set.block_rows, st.rows)),
                            std::uint32_t(std::min<std::size_t>(set.block_cols, st.cols))};
  const block_geometry_stats* g = nullptr;
  for (const auto& c : st.geometries) {
    // A block at least as large as the operand is the whole operand in that dimension.
    const block_geometry have{std::uint32_t(std::min<std::uint64_t>(c.geometry.rows, st.rows)),
                              std::uint32_t(std::min<std::uint64_t>(c.geometry.cols, st.cols))};
    if (have == want || !set.blocked) g = &c;
    if (g) break;
  }
  if (!g)
    throw option_error(set.describe + ": the block statistics have no " + std::to_string(set.block_rows) + "x" +
                       std::to_string(set.block_cols) + " blocks");
  const answerer ans(set);
  block_stats& lo = out.low;
  block_stats& hi = out.high;
  const auto& thr = st.thresholds;
  auto widen = [](class_counts& l, class_counts& h, const answerer::range& rg, std::uint64_t n) {
    if (rg.lo == rg.hi) l[rg.lo] += n;
    for (int c = int(rg.lo); c <= int(rg.hi); ++c) h[cast_class(c)] += n;
  };
  std::uint32_t last = ~0u;
  amax_cell a;
  answerer::plans ps{};
  auto at = [&](std::uint32_t key) {
    if (key == last) return;
    last = key, a = decode_amax(key, thr), ps = ans.plans_of(a);
  };
  for (const auto& [k, n] : g->elements) {
    const std::uint32_t sub = k & 0x7FFu;
    at(k >> 11);
    if (sub >> 5 == off_special) {
      const cast_class c = sub == sub_zero ? cast_class::zero : cast_class::nonfinite;
      lo.counts[c] += n, hi.counts[c] += n;
      if (c == cast_class::zero) {
        // A zero dequantizes to NaN under a NaN scale (block_quantize counts it as nonfinite).
        const auto rg = ans.classes(ps, 0.0f, 0.0f);
        lo.nonfinite_dequant += rg.nf_lo ? n : 0;
        hi.nonfinite_dequant += rg.nf_hi ? n : 0;
      }
      continue;
    }
    if (!a.finite_nonzero) throw option_error("block statistics: a finite element in a block without one");
    const auto [xlo, xhi] = element_range(a.e, sub);
    const auto rg = ans.classes(ps, xlo, xhi);
    widen(lo.counts, hi.counts, rg, n);
    lo.nonfinite_dequant += rg.nf_lo ? n : 0;
    hi.nonfinite_dequant += rg.nf_hi ? n : 0;
  }
  if (!set.blocked) {
    // One block: the operand (block_quantize's per-tensor path).
    lo.blocks = hi.blocks = 1;
    const float f = set.per_tensor.factor;
    lo.nan_scale_blocks = hi.nan_scale_blocks = std::isnan(set.per_tensor.scale_value);
    detail::add_scale(lo, f, 1), detail::add_scale(hi, f, 1);
    for (block_stats* s : {&lo, &hi}) {
      const auto nz = s->counts.nonzero_finite();
      s->zero_blocks = nz == 0;
      s->clipped_blocks = s->counts[cast_class::overflow] > 0;
      s->any_vanish_blocks = s->counts[cast_class::underflow] > 0;
      s->most_vanish_blocks = 2 * s->counts[cast_class::underflow] > nz;
    }
    // The nonzero count is the same in both; an underflow bound moves most-vanish both ways.
    if (lo.most_vanish_blocks > hi.most_vanish_blocks) std::swap(lo.most_vanish_blocks, hi.most_vanish_blocks);
    return out;
  }
  // Blocks: scales, NaN scales, zero blocks, clipped blocks (the amax element overflows), and a
  // lower bound of blocks where most vanish (the amax element underflows: all do).
  last = ~0u;
  for (const auto& [k, n] : g->blocks) {
    at(k >> 5);
    lo.blocks += n, hi.blocks += n;
    const auto& pl = ps.lo;
    const auto& ph = ps.hi;
    lo.nan_scale_blocks += std::isnan(pl.scale_value) && std::isnan(ph.scale_value) ? n : 0;
    hi.nan_scale_blocks += std::isnan(pl.scale_value) || std::isnan(ph.scale_value) ? n : 0;
    detail::add_scale(lo, pl.factor, n), detail::add_scale(hi, ph.factor, n);
    if (!a.finite_nonzero) {
      lo.zero_blocks += n, hi.zero_blocks += n;
      continue;
    }
    // The amax's own cell: its sig5 within the class interval.
    auto [xlo, xhi] = element_range(a.e, k & 31u);
    xlo = std::max(xlo, a.lo), xhi = std::min(xhi, a.hi);
    const auto rg = ans.classes(ps, xlo, xhi);
    if (rg.lo == cast_class::overflow && !ans.sr) lo.clipped_blocks += n;
    if (rg.hi == cast_class::overflow) hi.clipped_blocks += n;
    if (rg.hi == cast_class::underflow && !ans.sr) lo.most_vanish_blocks += n;
  }
  // Blocks where some element vanishes: their least nonzero element underflows.
  last = ~0u;
  for (const auto& [k, n] : g->minima) {
    const std::uint32_t sub = k & 0x7FFu;
    at(k >> 11);
    if (sub >> 5 == off_special || !a.finite_nonzero) continue;
    const auto [xlo, xhi] = element_range(a.e, sub);
    const auto rg = ans.classes(ps, xlo, xhi);
    if (rg.hi == cast_class::underflow && !ans.sr) lo.any_vanish_blocks += n;
    if (rg.lo == cast_class::underflow) hi.any_vanish_blocks += n;
  }
  hi.most_vanish_blocks = hi.any_vanish_blocks;
  return out;
}

block_stats_answer answer_block_stats(const operand_block_stats& st, std::string_view spec, operand_role role,
                                      block_axis axis) {
  const auto r = make_recipe(spec);
  return answer_block_stats(st, *r, role, axis);
}

}  // namespace fpscope
