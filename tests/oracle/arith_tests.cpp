// Arithmetic oracles: fpscope::apply, scalar and bulk (arith_bulk.hpp), on 16-bit operand pairs
// against x86 (F16C + AVX float32)
// and the CUDA headers' host __hadd/__hsub/__hmul/__hdiv, every result code compared bit for
// bit, NaN results included. The default tests sweep a subset of the 2^32 pairs (every
// operand a with every b whose magnitude differs from a's by a multiple of 61, both signs,
// plus every pair with a special or boundary code on either side); the `.full` tests take
// all 2^32 pairs. See README.md.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "fpscope/arith.hpp"
#include "fpscope/arith_bulk.hpp"
#include "kernels_arith.hpp"
#include "oracle.hpp"

using fpscope::format_id;
using fpscope::profile;
using oracle::arith::bop;

namespace {

constexpr std::uint32_t n_codes = 1u << 16;
constexpr std::size_t keep = 10;
// The default tests pair a with the b whose magnitude is |a| + 61 k (mod 2^15), both signs.
constexpr unsigned default_modulus = 61;

std::string current_name() { return Catch::getResultCapture().getCurrentTestName(); }

fpscope::op to_op(bop o) {
  switch (o) {
    case bop::add: return fpscope::op::add;
    case bop::sub: return fpscope::op::sub;
    case bop::mul: return fpscope::op::mul;
    case bop::div: return fpscope::op::div;
  }
  return fpscope::op::add;
}

const char* op_name(bop o) {
  static const char* const names[] = {"add", "sub", "mul", "div"};
  return names[static_cast<int>(o)];
}

// Special and boundary codes of a 16-bit IEEE-style format with `man` fraction bits, from its
// parameters alone (not from fpscope): zeros, subnormal edges, normal edges, around 1, the
// top binade, inf, and signalling and quiet NaNs with small, middle and full payloads; both
// signs.
std::vector<std::uint16_t> special_codes(const fpscope::format& f) {
  const std::uint32_t m = 1u << f.man_bits;                 // first normal magnitude
  const std::uint32_t inf = ((1u << f.exp_bits) - 1) << f.man_bits;
  const std::uint32_t one = std::uint32_t(f.bias) << f.man_bits;
  const std::uint32_t q = m / 2;                            // the quiet bit
  const std::uint32_t mags[] = {
      0, 1, 2, 3, q - 1, q, q + 1, m - 2, m - 1,             // zero, subnormals
      m, m + 1, 2 * m - 1, 2 * m, 2 * m + 1,                 // smallest normals
      one - m, one - 1, one, one + 1, one + q, one + m,      // 0.5, around 1, 1.5, 2
      inf - m - 1, inf - m, inf - 2, inf - 1,                // top binade, max
      inf,                                                   // infinity
      inf + 1, inf + q / 2, inf + q - 1,                     // signalling NaNs
      inf + q, inf + q + 1, inf + q + q / 2, inf + m - 1};   // quiet NaNs
  std::vector<std::uint16_t> out;
  for (const std::uint32_t v : mags) {
    out.push_back(static_cast<std::uint16_t>(v));
    out.push_back(static_cast<std::uint16_t>(v | 0x8000u));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

// Which pairs a sweep takes: all of them, or the subset described at the top of this file.
struct pair_set {
  bool full = false;
  unsigned modulus = default_modulus;
  std::vector<std::uint16_t> specials;
  std::vector<std::uint8_t> is_special = std::vector<std::uint8_t>(n_codes, 0);
  std::uint32_t a_lo = 0, a_hi = n_codes;  // first operands [a_lo, a_hi)

  pair_set(const fpscope::format& f, bool all) : full(all), specials(special_codes(f)) {
    for (const auto s : specials) is_special[s] = 1;
  }

  // The second operands paired with a, each once.
  void b_list(std::uint32_t a, std::vector<std::uint16_t>& bs) const {
    bs.clear();
    if (full || is_special[a]) {
      for (std::uint32_t b = 0; b < n_codes; ++b) bs.push_back(static_cast<std::uint16_t>(b));
      return;
    }
    for (std::uint32_t d = 0; d < 0x8000u; d += modulus) {
      const std::uint32_t mag = (a + d) & 0x7FFFu;
      for (const std::uint32_t b : {mag, mag | 0x8000u})
        if (!is_special[b]) bs.push_back(static_cast<std::uint16_t>(b));
    }
    bs.insert(bs.end(), specials.begin(), specials.end());
  }

  // How many pairs b_list yields in all, counted another way: a special a meets every b;
  // any other a meets every special b and the ceil(2^15 / modulus) magnitudes (two signs
  // each) at a distance 0 mod `modulus`, less those that are special.
  std::uint64_t expected() const {
    if (full) return std::uint64_t(a_hi - a_lo) * n_codes;
    const std::uint64_t per_a = 2 * ((0x8000u + modulus - 1) / modulus) + specials.size();
    std::uint64_t n = 0;
    for (std::uint32_t a = a_lo; a < a_hi; ++a) {
      if (is_special[a]) {
        n += n_codes;
        continue;
      }
      std::uint64_t hit = 0;
      for (const auto s : specials) hit += ((s - a) & 0x7FFFu) % modulus == 0;
      n += per_a - hit;
    }
    return n;
  }
};

struct pair_mismatch {
  std::uint16_t a, b, oracle, fpscope;
  bool bulk_only = false;  ///< the scalar apply agreed; the bulk API gave `fpscope`
};

struct pair_result {
  std::uint64_t compared = 0;
  std::uint64_t mismatches = 0;
  std::uint64_t nan_results = 0;     ///< pairs whose oracle result is a NaN code
  std::uint64_t nan_mismatches = 0;  ///< mismatches whose oracle result is a NaN code
  std::vector<pair_mismatch> first;  ///< the mismatches with the smallest (a, b), <= 10
  double seconds = 0;
};

void keep_smallest(std::vector<pair_mismatch>& v) {
  std::sort(v.begin(), v.end(), [](const pair_mismatch& x, const pair_mismatch& y) {
    return (std::uint32_t(x.a) << 16 | x.b) < (std::uint32_t(y.a) << 16 | y.b);
  });
  if (v.size() > keep) v.resize(keep);
}

// Every pair of `set` through `kernel` and through fpscope::apply (scalar), OpenMP-parallel
// over the first operand.
pair_result sweep_pairs(bop o, const fpscope::format& f, const fpscope::policy& p,
                        oracle::arith::pair_kernel kernel, const pair_set& set) {
  const auto t0 = std::chrono::steady_clock::now();
  const fpscope::op fo = to_op(o);
  const std::uint32_t inf = ((1u << f.exp_bits) - 1) << f.man_bits;
  pair_result total;
#pragma omp parallel
  {
    std::vector<std::uint16_t> bs, want(n_codes + 16), got(n_codes + 16), as(n_codes + 16), got_bulk(n_codes + 16);
    fpscope::bulk_options serial;
    serial.threads = 1;
    bs.reserve(n_codes + 16);
    pair_result mine;
#pragma omp for schedule(dynamic, 16) nowait
    for (std::int64_t ai = set.a_lo; ai < std::int64_t(set.a_hi); ++ai) {
      oracle::set_mxcsr_default();  // F16C obeys DAZ; float32 ops read RC
      const auto a = static_cast<std::uint16_t>(ai);
      set.b_list(a, bs);
      const std::size_t n = bs.size();
      bs.resize((n + 15) / 16 * 16, 0);  // kernels take multiples of 16: pad with +0
      kernel(o, a, bs.data(), want.data(), bs.size());
      // The bulk API on the same pairs (a broadcast), compared with the oracle as well.
      std::fill(as.begin(), as.begin() + std::ptrdiff_t(n), a);
      const std::span<const std::uint16_t> bspan(bs.data(), n);
      fpscope::apply<std::uint16_t>(fo, {as.data(), n}, bspan, bspan, {got_bulk.data(), n}, f, p, serial);
      std::uint64_t nans = 0, differ = 0;
      for (std::size_t i = 0; i < n; ++i) {
        got[i] = static_cast<std::uint16_t>(fpscope::apply(fo, a, bs[i], 0, f, p));
        nans += (want[i] & 0x7FFFu) > inf;
        differ += want[i] != got[i] || want[i] != got_bulk[i];
      }
      mine.compared += n;
      mine.nan_results += nans;
      if (differ != 0) {
        for (std::size_t i = 0; i < n; ++i) {
          if (want[i] == got[i] && want[i] == got_bulk[i]) continue;
          ++mine.mismatches;
          mine.nan_mismatches += (want[i] & 0x7FFFu) > inf;
          mine.first.push_back({a, bs[i], want[i], want[i] != got[i] ? got[i] : got_bulk[i], want[i] == got[i]});
        }
        keep_smallest(mine.first);
      }
    }
#pragma omp critical(oracle_arith_merge)
    {
      total.compared += mine.compared;
      total.mismatches += mine.mismatches;
      total.nan_results += mine.nan_results;
      total.nan_mismatches += mine.nan_mismatches;
      total.first.insert(total.first.end(), mine.first.begin(), mine.first.end());
      keep_smallest(total.first);
    }
  }
  total.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return total;
}

std::string describe(const std::vector<pair_mismatch>& m, const char* op) {
  std::ostringstream s;
  char line[160];
  for (const auto& x : m) {
    std::snprintf(line, sizeof line, "  0x%04X %s 0x%04X: oracle 0x%04X  fpscope%s 0x%04X\n", unsigned(x.a), op,
                  unsigned(x.b), unsigned(x.oracle), x.bulk_only ? " (bulk)" : "", unsigned(x.fpscope));
    s << line;
  }
  return s.str();
}

void print(const std::string& name, const pair_result& r, const char* what) {
  std::printf("%s: %" PRIu64 " %s, %" PRIu64 " mismatches (%" PRIu64 " where the oracle gave NaN); %" PRIu64
              " NaN results compared; %.2f s, %.1f M/s\n",
              name.c_str(), r.compared, what, r.mismatches, r.nan_mismatches, r.nan_results, r.seconds,
              r.seconds > 0 ? double(r.compared) / r.seconds * 1e-6 : 0.0);
  std::fflush(stdout);
}

void check(const std::string& name, const pair_result& r, std::uint64_t expected, const char* op,
           const char* what = "pairs") {
  print(name, r, what);
  INFO(name << ": " << r.compared << " " << what << " compared, " << r.mismatches << " mismatches ("
            << r.nan_mismatches << " where the oracle gave NaN); first ones (a " << op << " b):\n"
            << describe(r.first, op));
  CHECK(r.compared == expected);
  CHECK(r.nan_results > 0);  // NaN results were among those compared
  CHECK(r.mismatches == 0);
}

void pair_case(bop o, format_id id, profile pr, oracle::arith::pair_kernel kernel, bool full) {
  const auto f = fpscope::builtin(id);
  const auto p = fpscope::profile_policy(pr, f);  // nearest-even
  const pair_set set(f, full);
  check(current_name(), sweep_pairs(o, f, p, kernel, set), set.expected(), op_name(o));
}

bool x86_or_skip() {
  if (!oracle::arith::x86_arith_built()) {
    oracle::skip("x86 F16C arithmetic kernel not built");
    return false;
  }
  if (!oracle::have_f16c()) {
    oracle::skip("this CPU has no F16C (or AVX state)");
    return false;
  }
  return true;
}

bool cuda_or_skip() {
  if (oracle::arith::cuda_arith_built()) return true;
  oracle::skip("no host __hadd/__hsub/__hmul/__hdiv for __half and __nv_bfloat16 in the CUDA headers at configure "
               "time (headers missing, device-only, or FPSCOPE_ORACLE_CUDA=OFF)");
  return false;
}

void x86_case(bop o, bool full) {
  if (x86_or_skip()) pair_case(o, format_id::fp16, profile::ieee, oracle::arith::x86_fp16_kernel, full);
}
void cuda_case(bop o, format_id id, bool full) {
  if (!cuda_or_skip()) return;
  pair_case(o, id, profile::cuda, id == format_id::fp16 ? oracle::arith::cuda_fp16_kernel
                                                         : oracle::arith::cuda_bf16_kernel,
            full);
}

}  // namespace

// --- the harness itself: it must see differences, NaN bit patterns included --------------

TEST_CASE("oracle.arith.harness") {
  if (!x86_or_skip()) return;
  const auto f = fpscope::builtin(format_id::fp16);
  const auto ieee = fpscope::profile_policy(profile::ieee, f);

  // The subset: each pair once, every code on both sides, specials against everything.
  {
    const pair_set set(f, false);
    CHECK(set.specials.size() == 64);
    std::vector<std::uint32_t> as_b(n_codes, 0);
    std::vector<std::uint16_t> bs;
    std::uint64_t pairs = 0, dup = 0;
    std::vector<std::uint32_t> seen(n_codes, ~0u);
    for (std::uint32_t a = 0; a < n_codes; ++a) {
      set.b_list(a, bs);
      pairs += bs.size();
      for (const auto b : bs) {
        dup += seen[b] == a;
        seen[b] = a;
        ++as_b[b];
      }
      if (!set.is_special[a]) CHECK(bs.size() < 1200);
    }
    const auto fewest = *std::min_element(as_b.begin(), as_b.end());
    std::printf("harness subset: %" PRIu64 " pairs (%.2f%% of 2^32), %" PRIu64 " duplicates, every b paired "
                "with >= %u a\n",
                pairs, 100.0 * double(pairs) / 4294967296.0, dup, fewest);
    CHECK(pairs == set.expected());
    CHECK(dup == 0);
    CHECK(fewest >= 1000);
  }

  // fpscope rounding toward zero against x86's nearest-even, 1.0 + every b: many
  // differences, the first ones listed in order of b.
  {
    pair_set set(f, true);
    set.a_lo = 0x3C00;
    set.a_hi = 0x3C01;
    auto rtz = ieee;
    rtz.round = fpscope::rounding::rtz;
    const auto r = sweep_pairs(bop::add, f, rtz, oracle::arith::x86_fp16_kernel, set);
    print("harness add rne vs rtz", r, "pairs");
    CHECK(r.compared == n_codes);
    CHECK(r.mismatches > 1000);
    REQUIRE(r.first.size() == keep);
    CHECK(std::is_sorted(r.first.begin(), r.first.end(), [](const pair_mismatch& x, const pair_mismatch& y) {
      return x.b < y.b;
    }));
    for (const auto& m : r.first) CHECK(m.a == 0x3C00);
  }

  // The cuda profile (canonical NaN 0x7FFF) against x86 (first NaN operand, quieted; 0xFE00
  // for invalid): the only differences are NaN results, and there are some.
  {
    pair_set set(f, true);
    set.a_lo = 0x7BFF;  // max, inf, signalling and quiet NaNs
    set.a_hi = 0x7E02;
    const auto r = sweep_pairs(bop::add, f, fpscope::profile_policy(profile::cuda, f),
                               oracle::arith::x86_fp16_kernel, set);
    print("harness add ieee NaNs vs cuda profile", r, "pairs");
    CHECK(r.mismatches > 0);
    CHECK(r.mismatches == r.nan_mismatches);
    CHECK(r.mismatches < r.nan_results);  // 0x7FFF operands come out as 0x7FFF in both
  }
}

// --- x86: F16C + AVX float32 ---------------------------------------------------------------

TEST_CASE("oracle.arith.x86.fp16.add") { x86_case(bop::add, false); }
TEST_CASE("oracle.arith.x86.fp16.sub") { x86_case(bop::sub, false); }
TEST_CASE("oracle.arith.x86.fp16.mul") { x86_case(bop::mul, false); }
TEST_CASE("oracle.arith.x86.fp16.div") { x86_case(bop::div, false); }
TEST_CASE("oracle.arith.x86.fp16.add.full") { x86_case(bop::add, true); }
TEST_CASE("oracle.arith.x86.fp16.sub.full") { x86_case(bop::sub, true); }
TEST_CASE("oracle.arith.x86.fp16.mul.full") { x86_case(bop::mul, true); }
TEST_CASE("oracle.arith.x86.fp16.div.full") { x86_case(bop::div, true); }

// Every fp16 code through vsqrtps between F16C conversions.
TEST_CASE("oracle.arith.x86.fp16.sqrt") {
  if (!x86_or_skip()) return;
  const auto f = fpscope::builtin(format_id::fp16);
  const auto p = fpscope::profile_policy(profile::ieee, f);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::uint16_t> in(n_codes), want(n_codes);
  for (std::uint32_t a = 0; a < n_codes; ++a) in[a] = static_cast<std::uint16_t>(a);
  oracle::set_mxcsr_default();
  oracle::arith::x86_fp16_sqrt_kernel(in.data(), want.data(), n_codes);
  std::vector<std::uint16_t> bulk(n_codes);
  fpscope::apply<std::uint16_t>(fpscope::op::sqrt, in, {}, {}, bulk, f, p);
  pair_result r;
  for (std::uint32_t a = 0; a < n_codes; ++a) {
    const auto got = static_cast<std::uint16_t>(fpscope::apply(fpscope::op::sqrt, a, 0, 0, f, p));
    ++r.compared;
    const bool nan = (want[a] & 0x7FFFu) > 0x7C00u;
    r.nan_results += nan;
    if (got != want[a] || bulk[a] != want[a]) {
      ++r.mismatches;
      r.nan_mismatches += nan;
      if (r.first.size() < keep)
        r.first.push_back({static_cast<std::uint16_t>(a), 0, want[a], got != want[a] ? got : bulk[a], got == want[a]});
    }
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  check(current_name(), r, n_codes, "sqrt", "inputs");
}

// --- CUDA headers, host code -----------------------------------------------------------------

TEST_CASE("oracle.arith.cuda.fp16.add") { cuda_case(bop::add, format_id::fp16, false); }
TEST_CASE("oracle.arith.cuda.fp16.sub") { cuda_case(bop::sub, format_id::fp16, false); }
TEST_CASE("oracle.arith.cuda.fp16.mul") { cuda_case(bop::mul, format_id::fp16, false); }
TEST_CASE("oracle.arith.cuda.fp16.div") { cuda_case(bop::div, format_id::fp16, false); }
TEST_CASE("oracle.arith.cuda.bf16.add") { cuda_case(bop::add, format_id::bf16, false); }
TEST_CASE("oracle.arith.cuda.bf16.sub") { cuda_case(bop::sub, format_id::bf16, false); }
TEST_CASE("oracle.arith.cuda.bf16.mul") { cuda_case(bop::mul, format_id::bf16, false); }
TEST_CASE("oracle.arith.cuda.bf16.div") { cuda_case(bop::div, format_id::bf16, false); }
TEST_CASE("oracle.arith.cuda.fp16.add.full") { cuda_case(bop::add, format_id::fp16, true); }
TEST_CASE("oracle.arith.cuda.fp16.sub.full") { cuda_case(bop::sub, format_id::fp16, true); }
TEST_CASE("oracle.arith.cuda.fp16.mul.full") { cuda_case(bop::mul, format_id::fp16, true); }
TEST_CASE("oracle.arith.cuda.fp16.div.full") { cuda_case(bop::div, format_id::fp16, true); }
TEST_CASE("oracle.arith.cuda.bf16.add.full") { cuda_case(bop::add, format_id::bf16, true); }
TEST_CASE("oracle.arith.cuda.bf16.sub.full") { cuda_case(bop::sub, format_id::bf16, true); }
TEST_CASE("oracle.arith.cuda.bf16.mul.full") { cuda_case(bop::mul, format_id::bf16, true); }
TEST_CASE("oracle.arith.cuda.bf16.div.full") { cuda_case(bop::div, format_id::bf16, true); }
