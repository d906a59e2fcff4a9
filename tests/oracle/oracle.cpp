#include "oracle.hpp"

#include <cpuid.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <sstream>

#include <catch2/catch.hpp>
#include <xmmintrin.h>

namespace oracle {
namespace {

constexpr std::uint64_t chunk = std::uint64_t{1} << 16;
constexpr std::size_t keep = 10;
// Every `stride`-th input of a chunk (from an offset that moves with the chunk) also goes
// through the scalar encoder.
constexpr std::uint64_t stride = 509;

void keep_smallest(std::vector<mismatch>& v) {
  std::sort(v.begin(), v.end(), [](const mismatch& a, const mismatch& b) { return a.input < b.input; });
  if (v.size() > keep) v.resize(keep);
}

void merge(result& into, const result& r) {
  into.compared += r.compared;
  into.mismatches += r.mismatches;
  into.nan_inputs += r.nan_inputs;
  into.nan_mismatches += r.nan_mismatches;
  into.scalar_checked += r.scalar_checked;
  into.scalar_mismatches += r.scalar_mismatches;
  into.hardware_checked += r.hardware_checked;
  into.hardware_mismatches += r.hardware_mismatches;
  into.first.insert(into.first.end(), r.first.begin(), r.first.end());
  into.first_scalar.insert(into.first_scalar.end(), r.first_scalar.begin(), r.first_scalar.end());
  keep_smallest(into.first);
  keep_smallest(into.first_scalar);
}

constexpr unsigned mxcsr_default = 0x1F80;  // exceptions masked, nearest, no FTZ/DAZ
constexpr unsigned mxcsr_flags = 0x3F;      // sticky exception flags (not control)

template <class T>
bool is_nan_bits(std::uint64_t bits) {
  if constexpr (sizeof(T) == 4)
    return (bits & 0x7FFFFFFFu) > 0x7F800000u;
  else
    return (bits & 0x7FFFFFFFFFFFFFFFull) > 0x7FF0000000000000ull;
}

// Compares one block: bulk codes `got` and oracle codes `want` for inputs `in` (bit
// patterns `bits_of(i)`), and the scalar encoder on every stride-th element from `offset`.
template <class In, class Word, class Bits>
void compare_block(const In* in, const Word* want, const Word* got, std::size_t n,
                   std::uint64_t offset, const fpscope::format& f, const fpscope::policy& p,
                   Bits bits_of, result& r) {
  // A branch-free count first (vectorised); the slow look at each element only on a difference.
  std::size_t differ = 0;
  for (std::size_t i = 0; i < n; ++i) differ += want[i] != got[i];
  if (differ != 0) {
    for (std::size_t i = 0; i < n; ++i) {
      if (want[i] != got[i]) {
        const std::uint64_t b = bits_of(i);
        ++r.mismatches;
        if (is_nan_bits<In>(b)) ++r.nan_mismatches;
        if (r.first.size() < keep) r.first.push_back({b, want[i], got[i]});
      }
    }
  }
  for (std::size_t i = offset; i < n; i += stride) {
    const std::uint32_t s = fpscope::encode(in[i], f, p, 0);
    ++r.scalar_checked;
    if (s != want[i]) {
      ++r.scalar_mismatches;
      if (r.first_scalar.size() < keep) r.first_scalar.push_back({bits_of(i), want[i], s});
    }
  }
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

void set_mxcsr_default(int rc) {
  _mm_setcsr(mxcsr_default | (unsigned(rc & 3) << 13));
}
bool mxcsr_is_default(int rc) {
  return (_mm_getcsr() & ~mxcsr_flags) == (mxcsr_default | (unsigned(rc & 3) << 13));
}

template <class Word>
result sweep_f32(const fpscope::format& f, const fpscope::policy& p, f32_kernel<Word> kernel,
                 const void* ctx, const std::vector<segment>& segments, std::int64_t drop_chunk) {
  const auto t0 = std::chrono::steady_clock::now();
  // Chunks of every segment, numbered consecutively: segment s owns [starts[s], starts[s+1]).
  std::vector<std::int64_t> starts{0};
  for (const auto& s : segments) starts.push_back(starts.back() + std::int64_t((s.count + chunk - 1) / chunk));
  const std::int64_t chunks = starts.back();
  result total;
  fpscope::bulk_options o;
  o.threads = 1;         // parallel over chunks here, serial inside
  o.hardware = false;    // the software path; the hardware one (if any) is compared apart below
  fpscope::bulk_options hw = o;
  hw.hardware = true;
  const bool with_hw = fpscope::encode_uses_hardware(f, p);
#pragma omp parallel
  {
    std::vector<float> in(chunk);
    std::vector<Word> want(chunk), got(chunk), got_hw(chunk);
    result mine;
#pragma omp for schedule(dynamic, 8) nowait
    for (std::int64_t c = 0; c < chunks; ++c) {
      if (c == drop_chunk) continue;
      set_mxcsr_default();  // F16C obeys DAZ; libgcc and the CUDA host code read RC
      const auto s = std::size_t(std::upper_bound(starts.begin(), starts.end(), c) - starts.begin() - 1);
      const segment& seg = segments[s];
      const std::uint64_t k0 = std::uint64_t(c - starts[s]) * chunk;
      const std::size_t n = std::size_t(std::min(chunk, seg.count - k0));
      const auto first32 = static_cast<std::uint32_t>(seg.first + k0 * seg.step);
      const auto step32 = static_cast<std::uint32_t>(seg.step);
      std::uint64_t nans = 0;
      for (std::uint32_t i = 0; i < std::uint32_t(n); ++i) {
        const std::uint32_t b = first32 + i * step32;
        std::memcpy(&in[i], &b, sizeof b);
        nans += (b & 0x7FFFFFFFu) > 0x7F800000u;
      }
      mine.nan_inputs += nans;
      // Kernels take multiples of 16 elements: pad with +0 (not compared).
      const std::size_t padded = (n + 15) / 16 * 16;
      std::fill(in.begin() + std::ptrdiff_t(n), in.begin() + std::ptrdiff_t(padded), 0.0f);
      fpscope::encode(std::span<const float>(in.data(), n), std::span<Word>(got.data(), n), f, p, o);
      kernel(in.data(), want.data(), padded, ctx);
      compare_block(in.data(), want.data(), got.data(), n, std::uint64_t(c) * 7 % stride, f, p,
                    [first32, step32](std::size_t i) { return std::uint64_t(first32 + std::uint32_t(i) * step32); },
                    mine);
      mine.compared += n;
      if (with_hw) {
        fpscope::encode(std::span<const float>(in.data(), n), std::span<Word>(got_hw.data(), n), f, p, hw);
        for (std::size_t i = 0; i < n; ++i) mine.hardware_mismatches += got_hw[i] != want[i];
        mine.hardware_checked += n;
      }
    }
#pragma omp critical(oracle_merge)
    merge(total, mine);
  }
  total.seconds = seconds_since(t0);
  return total;
}

template <class Word>
result sweep_f64(const std::vector<double>& in, const fpscope::format& f, const fpscope::policy& p,
                 f64_kernel<Word> kernel, const void* ctx) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto n = in.size();
  const auto chunks = static_cast<std::int64_t>((n + chunk - 1) / chunk);
  result total;
  fpscope::bulk_options o;
  o.threads = 1;
#pragma omp parallel
  {
    std::vector<Word> want(chunk), got(chunk);
    result mine;
#pragma omp for schedule(dynamic, 1) nowait
    for (std::int64_t c = 0; c < chunks; ++c) {
      set_mxcsr_default();
      const std::size_t lo = std::size_t(c) * chunk, len = std::min<std::size_t>(chunk, n - lo);
      const double* x = in.data() + lo;
      fpscope::encode(std::span<const double>(x, len), std::span<Word>(got.data(), len), f, p, o);
      kernel(x, want.data(), len, ctx);
      // Every double also goes through the scalar encoder (offset 0, stride 1 below).
      compare_block(x, want.data(), got.data(), len, len, f, p,
                    [x](std::size_t i) {
                      std::uint64_t b;
                      std::memcpy(&b, x + i, sizeof b);
                      return b;
                    },
                    mine);
      for (std::size_t i = 0; i < len; ++i) {
        mine.nan_inputs += std::isnan(x[i]);
        const std::uint32_t s = fpscope::encode(x[i], f, p, 0);
        ++mine.scalar_checked;
        if (s != want[i]) {
          ++mine.scalar_mismatches;
          std::uint64_t b;
          std::memcpy(&b, x + i, sizeof b);
          if (mine.first_scalar.size() < keep) mine.first_scalar.push_back({b, want[i], s});
        }
      }
      mine.compared += len;
    }
#pragma omp critical(oracle_merge)
    merge(total, mine);
  }
  total.seconds = seconds_since(t0);
  return total;
}

template result sweep_f32<std::uint8_t>(const fpscope::format&, const fpscope::policy&,
                                        f32_kernel<std::uint8_t>, const void*,
                                        const std::vector<segment>&, std::int64_t);
template result sweep_f32<std::uint16_t>(const fpscope::format&, const fpscope::policy&,
                                         f32_kernel<std::uint16_t>, const void*,
                                         const std::vector<segment>&, std::int64_t);
template result sweep_f64<std::uint8_t>(const std::vector<double>&, const fpscope::format&,
                                        const fpscope::policy&, f64_kernel<std::uint8_t>, const void*);
template result sweep_f64<std::uint16_t>(const std::vector<double>&, const fpscope::format&,
                                         const fpscope::policy&, f64_kernel<std::uint16_t>, const void*);

std::vector<double> boundary_doubles(const fpscope::format& f, std::size_t random, std::uint64_t seed) {
  const int M = f.man_bits;
  const int E = f.exp_bits;
  // Largest finite magnitude code, from the format's rules (not from fpscope's helpers).
  const std::uint32_t all = (std::uint32_t{1} << (E + M)) - 1;
  std::uint32_t max_code = all;
  switch (f.specials) {
    case fpscope::special::ieee: max_code = all - ((std::uint32_t{1} << M) - 1) - 1; break;
    case fpscope::special::fn: max_code = all - 1; break;
    case fpscope::special::e8m0: max_code = all - 1; break;
    default: break;
  }
  std::vector<double> values;  // every finite magnitude, ascending
  for (std::uint32_t c = 0; c <= max_code; ++c) {
    const std::uint32_t e = c >> M, m = c & ((std::uint32_t{1} << M) - 1);
    if (!f.subnormals)
      values.push_back(std::ldexp(1.0, int(c) - f.bias));
    else if (e == 0)
      values.push_back(std::ldexp(double(m), 1 - f.bias - M));
    else
      values.push_back(std::ldexp(double(m + (std::uint32_t{1} << M)), int(e) - f.bias - M));
  }
  std::vector<double> points(values);
  for (std::size_t i = 0; i + 1 < values.size(); ++i) points.push_back((values[i] + values[i + 1]) / 2);
  const double top = values.back();
  const double ulp = values.size() > 1 ? top - values[values.size() - 2] : top;
  for (int k = 1; k <= 4; ++k) points.push_back(top + k * ulp / 2);
  points.push_back(2 * top);
  const double smallest = values.size() > 1 ? (values[0] == 0 ? values[1] : values[0]) : values[0];
  points.push_back(smallest / 4);
  points.push_back(smallest / 2);
  // float32 and float64 range edges.
  const double flt_max = std::numeric_limits<float>::max();
  for (double q : {flt_max, std::ldexp(1.0, 128), std::ldexp(1.0, 128) - std::ldexp(1.0, 103),
                   double(std::numeric_limits<float>::min()), std::ldexp(1.0, -149), std::ldexp(1.0, -150),
                   std::ldexp(1.0, -151), std::ldexp(3.0, -151), std::numeric_limits<double>::max(),
                   std::numeric_limits<double>::min(), std::numeric_limits<double>::denorm_min(), 1.0})
    points.push_back(q);

  std::vector<double> out;
  out.reserve(points.size() * 26 + random + 64);
  const double inf = std::numeric_limits<double>::infinity();
  for (double q : points) {
    std::vector<double> near{q};
    double up = q, dn = q;
    for (int k = 0; k < 3; ++k) {
      up = std::nextafter(up, inf);
      dn = std::nextafter(dn, -inf);
      near.push_back(up);
      near.push_back(dn);
    }
    if (q > 0 && q < inf) {
      // Half a float32 ulp of q: where rounding q to float32 first would land on a tie.
      int ex = 0;
      std::frexp(q, &ex);  // q = fr * 2^ex, 0.5 <= fr < 1
      const double half_ulp = std::ldexp(1.0, std::max(ex - 1 - 23, -149) - 1);
      for (double h : {q + half_ulp, q - half_ulp}) {
        near.push_back(h);
        near.push_back(std::nextafter(h, inf));
        near.push_back(std::nextafter(h, -inf));
      }
    }
    for (double v : near) {
      out.push_back(v);
      out.push_back(-v);
    }
  }
  for (std::uint64_t b : {0x7FF0000000000000ull, 0x7FF8000000000000ull, 0x7FF0000000000001ull,
                          0x7FF4000000000000ull, 0x7FFC000000000000ull, 0x7FF8000000000001ull,
                          0x7FFFFFFFFFFFFFFFull, 0x7FF7FFFFFFFFFFFFull, 0x7FFFE00000000000ull,
                          0x7FF0020000000000ull, 0x7FF0000020000000ull}) {
    double v;
    std::memcpy(&v, &b, sizeof v);
    out.push_back(v);
    const std::uint64_t nb = b | (std::uint64_t{1} << 63);
    std::memcpy(&v, &nb, sizeof v);
    out.push_back(v);
  }
  std::mt19937_64 rng(seed);
  // Exponents over the format's range and a few beyond, random significands and signs.
  const int lo = (f.subnormals ? 1 - f.bias - M : -f.bias) - 4;
  const int hi = int(std::ilogb(top)) + 4;
  std::uniform_int_distribution<int> exp_dist(lo, hi);
  for (std::size_t i = 0; i < random; ++i) {
    const std::uint64_t r = rng();
    const int e = exp_dist(rng);
    const std::uint64_t bits = (r & 0x800FFFFFFFFFFFFFull) | (std::uint64_t(e + 1023) << 52);
    double v;
    std::memcpy(&v, &bits, sizeof v);
    out.push_back(v);
  }
  // And some entirely random bit patterns (any exponent, NaNs included).
  for (std::size_t i = 0; i < random / 16; ++i) {
    const std::uint64_t bits = rng();
    double v;
    std::memcpy(&v, &bits, sizeof v);
    out.push_back(v);
  }
  // Each bit pattern once.
  std::vector<std::uint64_t> bits(out.size());
  std::memcpy(bits.data(), out.data(), out.size() * sizeof(double));
  std::sort(bits.begin(), bits.end());
  bits.erase(std::unique(bits.begin(), bits.end()), bits.end());
  out.resize(bits.size());
  std::memcpy(out.data(), bits.data(), bits.size() * sizeof(double));
  return out;
}

std::string describe(const std::vector<mismatch>& m, int in_digits, int out_digits) {
  std::ostringstream s;
  char line[128];
  for (const auto& x : m) {
    std::snprintf(line, sizeof line, "  input 0x%0*" PRIX64 "  oracle 0x%0*X  fpscope 0x%0*X\n", in_digits,
                  x.input, out_digits, unsigned(x.oracle), out_digits, unsigned(x.fpscope));
    s << line;
  }
  return s.str();
}

void print(const std::string& name, const result& r) {
  std::printf("%s: %" PRIu64 " inputs (%" PRIu64 " NaN), %" PRIu64 " mismatches (%" PRIu64
              " on NaN inputs); scalar: %" PRIu64 " checked, %" PRIu64 " mismatches; hardware path: %" PRIu64
              " checked, %" PRIu64 " mismatches; %.2f s, %.3f G inputs/s\n",
              name.c_str(), r.compared, r.nan_inputs, r.mismatches, r.nan_mismatches, r.scalar_checked,
              r.scalar_mismatches, r.hardware_checked, r.hardware_mismatches, r.seconds,
              r.seconds > 0 ? double(r.compared) / r.seconds * 1e-9 : 0.0);
  std::fflush(stdout);
}

void check(const std::string& name, const result& r, std::uint64_t expected, int in_digits) {
  print(name, r);
  INFO(name << ": first bulk mismatches (of " << r.mismatches << ", " << r.nan_mismatches
            << " on NaN inputs):\n"
            << describe(r.first, in_digits, 2) << "first scalar mismatches (of " << r.scalar_mismatches
            << "):\n"
            << describe(r.first_scalar, in_digits, 2));
  CHECK(r.compared == expected);
  CHECK(r.scalar_checked > 0);
  CHECK(r.mismatches == 0);
  CHECK(r.scalar_mismatches == 0);
  CHECK(r.hardware_mismatches == 0);
}

// CPUID bits and OS-enabled register state (XCR0), read directly: what
// __builtin_cpu_supports("f16c") tells under GCC, and clang 14 lacks that feature name.
static unsigned xcr0() {
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return lo;
}

// F16C and AVX in CPUID.1:ECX, XMM/YMM state enabled.
bool have_f16c() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE) || !(c & bit_AVX) || !(c & bit_F16C)) return false;
  return (xcr0() & 0x6) == 0x6;
}

// AVX512F + AVX512_BF16 in CPUID and ZMM/opmask state enabled by the OS (XCR0).
bool have_avx512bf16() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE)) return false;
  if ((xcr0() & 0xE6) != 0xE6) return false;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & (1u << 16)) || a < 1) return false;
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
  return (a & (1u << 5)) != 0;
}

}  // namespace oracle
