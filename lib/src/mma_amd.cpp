// AMD CDNA1 and CDNA2 v_mfma (and CDNA3's f32), bit for bit as MMA-Sim 2.1.1 models them
// (microsoft/MMA-Sim, mmasim/amd/sim.py:10-32 picks the arithmetic per architecture and type):
//  - f32 (all three): MMA_FMA, arithmetic/fma.py:66-71: c = fma(a_t, b_t, c) in binary32 for each t
//    of K in order (fma_cpu.cpp: std::fma, one rounding to nearest-even, gradual underflow);
//  - CDNA1 f16/bf16: MMA_E_FDPA, arithmetic/fdpa.py:444-515, L_max 4 (f16) or 2 (bf16)
//    (amd/sim.py:19-21): each step's L products and C summed exactly, rounded once to
//    nearest-even binary32 (exact_sum + normalize_parts_to_fp32, fdpa.py:454-494);
//  - CDNA2 f16/bf16: MMA_FTZ_MUL_ADD(P), arithmetic/ftz_mul_add.py:27-42, P = 2 for bf16 without
//    _1k, else 4 (amd/sim.py:22-27): binary32 products, then pairwise binary32 adds, every
//    subnormal flushed (inputs and C to +0, products and sums to a zero of their sign).
// The arithmetic is fpscope's: each binary32 multiply, add and FMA is the format engine's exact
// operation rounded to odd in binary64 (detail::exact_odd, as apply() does) and then rounded once
// to binary32 by round_pack, its policy resolved once here; E_FDPA's is an exact fixed-point sum.
// None of it reads the host's floating-point modes (a process with flush-to-zero set, e.g. by
// torch.set_flush_denormal, gets the same bits). That scalar step is the reference and the
// portable path; gemm_fast() below runs the same operations as AVX-512 vector kernels on native
// IEEE arithmetic, outputs in the lanes, with MXCSR set by the kernels themselves.
#include "mma_amd.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "fpscope/accumulate.hpp"
#include "fpscope/arith.hpp"
#include "fpscope/convert.hpp"

namespace fpscope::mma::amd {
namespace {

using detail::from_bits;
using detail::to_bits;

constexpr std::uint32_t canonical_nan = 0x7FFFFFFFu;

// round_pack's constants for binary32 nearest-even, with gradual underflow or (ftz) a subnormal
// result flushed to the zero of its sign after rounding.
const detail::packer<std::uint64_t>& fp32_packer(bool ftz) {
  static const auto make = [](bool f) {
    policy p;
    p.ftz = f;
    return detail::prepare<std::uint64_t>(fp32_format, p, rounding::rne);
  };
  static const detail::packer<std::uint64_t> gradual = make(false), flushed = make(true);
  return ftz ? flushed : gradual;
}

// An exact result rounded to odd in binary64 (53 >= 24 + 2 bits), rounded once to binary32.
inline std::uint32_t round_fp32(double odd, bool ftz) {
  return detail::round_pack<double>(to_bits(odd), fp32_format, rounding::rne, fp32_packer(ftz));
}

// Binary32 x op y (op::add, op::mul) or fma(x, y, z), nearest-even; ftz as above.
inline std::uint32_t fp32_op(op o, float x, float y, float z, bool ftz) {
  unsigned fl = 0;
  return round_fp32(detail::exact_odd(o, double(x), double(y), double(z), rounding::rne, fl), ftz);
}

inline bool is_nan(std::uint32_t x) { return (x & 0x7FFFFFFFu) > 0x7F800000u; }
inline std::uint32_t canonical(std::uint32_t x) { return is_nan(x) ? canonical_nan : x; }

// An exact sum of binary32 products and binary32 values, as a two's-complement fixed-point
// integer in units of 2^-base over `limbs` 64-bit limbs. Every binary32 is sig * 2^(E - 23)
// (sig < 2^24, E >= -126), so a product's last bit is at 2^-298 or above and its value below
// 2^256 (bf16: the inputs below 2^128); five terms stay below 2^259, and the sign bit at
// 2^(64 * limbs - base - 1) = 2^339 is never reached.
struct exact_sum {
  static constexpr int base = 300, limbs = 10;
  std::uint64_t w[limbs] = {};

  // + or - mag * 2^e, mag < 2^48, e >= -base.
  void add(std::uint64_t mag, int e, bool neg) {
    if (mag == 0) return;
    const int pos = e + base, li = pos >> 6, sh = pos & 63;
    const std::uint64_t part[2] = {mag << sh, sh ? mag >> (64 - sh) : 0};  // below 2^111: two limbs
    unsigned carry = 0;
    for (int x = li; x < limbs; ++x) {
      const std::uint64_t t = x - li < 2 ? part[x - li] : 0;
      if (!neg) {
        const std::uint64_t s = w[x] + t, s2 = s + carry;
        carry = unsigned(s < t) + unsigned(s2 < s);
        w[x] = s2;
      } else {  // borrow
        const std::uint64_t d = w[x] - t, d2 = d - carry;
        carry = unsigned(w[x] < t) + unsigned(d < std::uint64_t(carry));
        w[x] = d2;
      }
      if (!carry && x - li >= 1) break;
    }
  }
  // One binary32 value (finite).
  void add_float(float x) {
    const std::uint32_t b = to_bits(x);
    const int ef = int((b >> 23) & 0xFF);
    add((b & 0x7FFFFFu) | (ef ? 0x800000u : 0u), (ef ? ef : 1) - 127 - 23, b >> 31);
  }
  // The exact product of two binary32 values (finite).
  void add_product(float x, float y) {
    const std::uint32_t bx = to_bits(x), by = to_bits(y);
    const int ex = int((bx >> 23) & 0xFF), ey = int((by >> 23) & 0xFF);
    const std::uint64_t sx = (bx & 0x7FFFFFu) | (ex ? 0x800000u : 0u), sy = (by & 0x7FFFFFu) | (ey ? 0x800000u : 0u);
    add(sx * sy, (ex ? ex : 1) + (ey ? ey : 1) - 2 * (127 + 23), ((bx ^ by) >> 31) != 0);
  }
  // The sum rounded once to nearest-even binary32 (gradual underflow, 2^128 and up after
  // rounding inf), as binary32 bits; +0 for an exact zero. The top 53 bits are rounded to odd
  // (the sticky bit or-ed into the last), exact in a double far inside its normal range; the
  // format engine's round_pack then rounds that double once: exact, as 53 >= 24 + 2.
  std::uint32_t to_fp32() const {
    std::uint64_t a[limbs];
    const bool neg = (w[limbs - 1] >> 63) != 0;
    unsigned carry = 1;
    for (int x = 0; x < limbs; ++x) {  // |sum|: two's complement negation where negative
      const std::uint64_t v = neg ? ~w[x] : w[x];
      a[x] = v + (neg ? carry : 0);
      carry = neg && carry && a[x] == 0;
    }
    int top = limbs - 1;
    while (top >= 0 && a[top] == 0) --top;
    if (top < 0) return 0;  // an exact zero sum is +0 (MMA-Sim: measured, whatever the zeros' signs)
    const int msb = top * 64 + 63 - __builtin_clzll(a[top]);  // the leading bit's position
    const int lo = msb - 52;                                  // the kept 53 bits: lo .. msb
    // bits lo .. lo + 63 (those below bit 0 zero); the 53 wanted are its low ones
    const int li = lo >= 0 ? lo >> 6 : 0, sh = lo >= 0 ? lo & 63 : 0;
    std::uint64_t kept = lo >= 0 ? a[li] >> sh : a[0] << -lo;
    if (lo >= 0 && sh && li + 1 < limbs) kept |= a[li + 1] << (64 - sh);
    kept &= (std::uint64_t{1} << 53) - 1;
    bool sticky = lo > 0 && (a[li] & ((std::uint64_t{1} << sh) - 1)) != 0;
    for (int x = 0; x < li && !sticky; ++x) sticky = a[x] != 0;
    kept |= std::uint64_t(sticky);
    const double v = std::ldexp(double(kept), lo - base);
    return round_fp32(neg ? -v : v, false);
  }
};

// The step of MMA_E_FDPA (fdpa.py:497-503), L products and C.
std::uint32_t e_fdpa(int L, const float* a, const float* b, std::uint32_t c) {
  const float cv = from_bits<float>(c);
  // fdpa.py:500,503: a sum with an inf or NaN (in float64: the products are exact there) gives
  // that sum: NaN for a NaN, inf * 0 or infinities of both signs, else the infinity.
  bool nan = std::isnan(cv), pinf = cv == INFINITY, ninf = cv == -INFINITY;
  for (int t = 0; t < L; ++t) {
    if (std::isnan(a[t]) || std::isnan(b[t])) nan = true;
    else if (std::isinf(a[t]) || std::isinf(b[t])) {
      if (a[t] == 0 || b[t] == 0) nan = true;
      else (std::signbit(a[t]) != std::signbit(b[t]) ? ninf : pinf) = true;
    }
  }
  if (nan || (pinf && ninf)) return canonical_nan;
  if (pinf || ninf) return pinf ? 0x7F800000u : 0xFF800000u;
  // fdpa.py:500,503 also take that float64 sum (summands.sum: the products, then C) when it is
  // finite but its float32 cast is inf: beyond 2^128 - 2^103, the float32 overflow threshold.
  // (Its float64 roundings can put it there when the exact sum is just below: MMA-Sim's value.)
  double naive = 0;
  for (int t = 0; t < L; ++t) naive += double(a[t]) * double(b[t]);  // each product exact in a double
  naive += double(cv);
  if (std::fabs(naive) >= 0x1.ffffffp127) return naive > 0 ? 0x7F800000u : 0xFF800000u;
  // fdpa.py:501-502: the exact sum rounded once to nearest-even binary32 (normalize_parts_to_fp32
  // rounds the leading part, its tie broken by the sign of the rest).
  exact_sum s;
  for (int t = 0; t < L; ++t) s.add_product(a[t], b[t]);
  s.add_float(cv);
  return s.to_fp32();
}

// ftz_mul_add.py:7-10 flush_subnormal: |x| below 2^emin becomes +0 (keep_sign=False: zeros too).
inline float flush_to_plus_zero(float x, int emin) {
  return std::fabs(x) < from_bits<float>(std::uint32_t(emin + 127) << 23) ? 0.0f : x;  // 2^emin, normal
}

// The step of MMA_FTZ_MUL_ADD (ftz_mul_add.py:33-42), P = L products.
std::uint32_t ftz_mul_add(const instruction& inst, const float* a, const float* b, std::uint32_t c, bool starts) {
  // ftz_add / ftz_mul's result flush (keep_sign=True): a result below 2^-126 after the binary32
  // rounding becomes the zero of its sign, which is the format engine's ftz policy.
  const auto add = [](std::uint32_t x, std::uint32_t y) {
    return fp32_op(op::add, from_bits<float>(x), from_bits<float>(y), 0, true);
  };
  std::uint32_t p[4];
  for (int t = 0; t < inst.L; ++t)  // ftz_mul.py:13-19: inputs flushed to +0, the product in binary32
    p[t] = fp32_op(op::mul, flush_to_plus_zero(a[t], inst.a.emin()), flush_to_plus_zero(b[t], inst.b.emin()), 0, true);
  // ftz_mul_add.py:35: C is flushed (to +0, a zero of either sign too) once per instruction
  // call, before its first pair; later steps' C is a flushed sum already (a -0 stays -0 there).
  if (starts) c = to_bits(flush_to_plus_zero(from_bits<float>(c), -126));
  std::uint32_t s = add(p[0], p[1]);
  if (inst.L == 4) s = add(s, add(p[2], p[3]));  // ftz_mul_add.py:38-40
  return canonical(add(c, s));
}

#if defined(__x86_64__)
// ---- The vector kernels (x86-64 with AVX-512F, dispatched at run time; else mma.cpp's scalar
// loop over step() above runs). Native binary32 / binary64 arithmetic is IEEE nearest-even when
// MXCSR says so: each tile sets MXCSR itself (mxcsr_mode) and restores the caller's, so the host's
// modes (torch.set_flush_denormal, a -ffast-math library's FTZ/DAZ) never reach the bits. This
// file is compiled with -ffp-contract=off: GCC's _mm512_mul_ps / _mm512_add_ps are plain vector
// operators that it would otherwise fuse into an FMA.

// MXCSR for the kernels: all exceptions masked, nearest-even, DAZ off, FTZ as asked (CDNA2).
// Per thread (MXCSR is a thread's register): constructed inside the OpenMP region.
class mxcsr_mode {
 public:
  explicit mxcsr_mode(bool ftz) : saved_(_mm_getcsr()) { _mm_setcsr(0x1F80u | (ftz ? 0x8000u : 0u)); }
  ~mxcsr_mode() { _mm_setcsr(saved_); }
  mxcsr_mode(const mxcsr_mode&) = delete;
  mxcsr_mode& operator=(const mxcsr_mode&) = delete;
  static void ftz(bool on) { _mm_setcsr(0x1F80u | (on ? 0x8000u : 0u)); }

 private:
  unsigned saved_;
};

constexpr std::size_t R = 8;   // rows of a tile (A broadcasts): 16 accumulators for the FMA chain
constexpr std::size_t W = 32;  // columns of a tile: two 16-float (or four 8-double) vectors

// What every kernel reads: A (mp x kpad, rows and K zero-padded), B (kpad x np, np a multiple of
// W) in strips of W columns, each strip's kpad x W contiguous (B's rows 4 KiB apart would all
// fall in one L1 set), as floats; for E_FDPA also as doubles. CDNA2's inputs are flushed here.
struct packed {
  std::size_t kpad, np, ik, L, group;
  bool promote;
  const float *A, *B;
  const double *Ad, *Bd;
};

// Where B's element (t, j0) is, j0 a strip's first column.
inline std::size_t at(const packed& p, std::size_t j0, std::size_t t) { return j0 * p.kpad + t * W; }

// MMA_FTZ_MUL_ADD's steps g0 .. g1 of a tile (L = 2 or 4 products a step), MXCSR's FTZ set.
// Products and sums under FTZ: a result below 2^-126 after nearest-even rounding is the zero of
// its sign, ftz_mul/ftz_add's keep_sign=True flush. x86 decides "tiny" after rounding with an
// unbounded exponent, the model after rounding to binary32's subnormal grid: they differ only for
// an exact result within 2^-150 of 2^-126, which needs 25 significant bits below 2^-126: the
// products of fp16 / bf16 values (22 / 16 bits, inputs normal after the flush) and sums of
// binary32 values (exact there, multiples of 2^-149) never are. DAZ stays off: no operand is
// subnormal by then.
template <int L>
__attribute__((target("avx512f"), always_inline)) inline void ftz_steps(const packed& p, const float* A, std::size_t j0,
                                                                        std::size_t g0, std::size_t g1,
                                                                        __m512 (&acc)[R][2]) {
  const __m512 zero = _mm512_setzero_ps();
  const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);  // integer and: AVX-512F (vandps is DQ)
  const __m512 tiny = _mm512_set1_ps(0x1p-126f);
  for (std::size_t k0 = g0, next = g0; k0 < g1; k0 += L) {
    if (k0 == next) {  // ftz_mul_add.py:35: C flushed to +0 (also -0) at each instruction's start
      next += p.ik;
      for (std::size_t r = 0; r < R; ++r)
        for (int h = 0; h < 2; ++h)
          acc[r][h] = _mm512_mask_mov_ps(acc[r][h], _mm512_cmp_ps_mask(_mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(acc[r][h]), abs_mask)), tiny, _CMP_LT_OQ),
                                         zero);
    }
    __m512 b[2][L];
    for (int h = 0; h < 2; ++h)
      for (int t = 0; t < L; ++t) b[h][t] = _mm512_loadu_ps(p.B + at(p, j0, k0 + std::size_t(t)) + 16 * std::size_t(h));
    for (std::size_t r = 0; r < R; ++r) {
      __m512 a[L];
      for (int t = 0; t < L; ++t) a[t] = _mm512_set1_ps(A[r * p.kpad + k0 + std::size_t(t)]);
      for (int h = 0; h < 2; ++h) {
        __m512 s = _mm512_add_ps(_mm512_mul_ps(a[0], b[h][0]), _mm512_mul_ps(a[1], b[h][1]));
        if constexpr (L == 4)  // ftz_mul_add.py:38-40: (p0 + p1) + (p2 + p3)
          s = _mm512_add_ps(s, _mm512_add_ps(_mm512_mul_ps(a[2], b[h][2]), _mm512_mul_ps(a[3], b[h][3])));
        acc[r][h] = _mm512_add_ps(acc[r][h], s);  // ftz_mul_add.py:41: C + the step's sum
      }
    }
  }
}

// MMA_FMA (fma.py:69-70) or MMA_FTZ_MUL_ADD (ftz_mul_add.py:33-42) on one tile: tot holds
// R x W binary32 totals (C in, D out). Each output's accumulator runs its operations in K order,
// as step() does; the vector lanes are independent outputs (columns), so the bits are step()'s.
template <bool Ftz>
__attribute__((target("avx512f"))) void tile_f32(const packed& p, const float* A, std::size_t j0, float* tot) {
  const __m512 zero = _mm512_setzero_ps();
  __m512 total[R][2], acc[R][2];
  for (std::size_t r = 0; r < R; ++r)
    for (int h = 0; h < 2; ++h) total[r][h] = _mm512_loadu_ps(tot + r * W + 16 * h);
  for (std::size_t g0 = 0; g0 < p.kpad; g0 += p.group) {
    const std::size_t g1 = std::min(p.kpad, g0 + p.group);
    for (std::size_t r = 0; r < R; ++r)
      for (int h = 0; h < 2; ++h) acc[r][h] = p.promote ? zero : total[r][h];
    if constexpr (!Ftz) {
      for (std::size_t t = g0; t < g1; ++t) {  // one binary32 FMA per product, K order
        const float* b = p.B + at(p, j0, t);
        const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
        for (std::size_t r = 0; r < R; ++r) {
          const __m512 a = _mm512_set1_ps(A[r * p.kpad + t]);
          acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
          acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
        }
      }
    } else {
      mxcsr_mode::ftz(true);
      if (p.L == 4) ftz_steps<4>(p, A, j0, g0, g1, acc);
      else ftz_steps<2>(p, A, j0, g0, g1, acc);
      mxcsr_mode::ftz(false);  // the promotion below is a CUDA-core add: gradual underflow
    }
    for (std::size_t r = 0; r < R; ++r)
      for (int h = 0; h < 2; ++h) total[r][h] = p.promote ? _mm512_add_ps(total[r][h], acc[r][h]) : acc[r][h];
  }
  for (std::size_t r = 0; r < R; ++r)
    for (int h = 0; h < 2; ++h) _mm512_storeu_ps(tot + r * W + 16 * h, total[r][h]);
}

// Conversions binary32 <-> binary64 (nearest-even), the zero-masked forms: the plain ones take
// GCC's _mm512_undefined_* self-initialised operand, which -Wmaybe-uninitialized reports.
__attribute__((target("avx512f"), always_inline)) inline __m512d to_double(__m256 x) {
  return _mm512_maskz_cvtps_pd(0xFF, x);
}
__attribute__((target("avx512f"), always_inline)) inline __m256 to_float(__m512d x) {
  return _mm512_maskz_cvtpd_ps(0xFF, x);
}

// |x|
__attribute__((target("avx512f"), always_inline)) inline __m512d vabs(__m512d x) {
  return _mm512_castsi512_pd(_mm512_and_si512(_mm512_castpd_si512(x), _mm512_set1_epi64(0x7FFFFFFFFFFFFFFFll)));
}

// TwoSum (Knuth): s + e == a + b exactly, s = fl(a + b).
__attribute__((target("avx512f"), always_inline)) inline __m512d two_sum(__m512d a, __m512d b, __m512d& e) {
  const __m512d s = _mm512_add_pd(a, b), bb = _mm512_sub_pd(s, a);
  e = _mm512_add_pd(_mm512_sub_pd(a, _mm512_sub_pd(s, bb)), _mm512_sub_pd(b, bb));
  return s;
}

// MMA_E_FDPA (fdpa.py:497-503) on one tile, eight outputs a vector. The L products are exact
// in binary64 (fp16: 22 bits, bf16: 16); a TwoSum chain in the model's own order (products in K
// order, then C: its float64 `summands.sum`) gives s = that float64 sum and the exact errors
// e_1..e_L, so the exact sum is x = s + sum(e). h = fl(s + fl(sum e)) is within a bound B of x
// (fl(sum e) errs by at most 3u sum|e|); when h - B' and h + B' (B' >= B plus h's own rounding)
// round to the same binary32 value, so does x (rounding is monotone): that is the result; when
// every error is zero, x is h itself, rounded by the conversion (ties to even included). Every
// other lane -- a special or a float64 sum past binary32's overflow threshold (the model's quirk:
// inf), a result within B of a binary32 rounding boundary or zero -- takes the scalar e_fdpa()
// above with its exact fixed-point sum. Random inputs almost never do.
template <std::size_t L>
__attribute__((target("avx512f"))) void tile_fdpa(const packed& p, std::size_t i0, std::size_t j0, float* tot) {
  const __m512d thr = _mm512_set1_pd(0x1.ffffffp127), inf = _mm512_set1_pd(INFINITY), zero = _mm512_setzero_pd();
  const __m512d u3 = _mm512_set1_pd(0x1p-49), u51 = _mm512_set1_pd(0x1p-51), two = _mm512_set1_pd(2.0);
  const __m512d tiny150 = _mm512_set1_pd(0x1p-150);
  constexpr int V = int(W / 8);
  __m256 total[R][V], acc[R][V];
  for (std::size_t r = 0; r < R; ++r)
    for (int h = 0; h < V; ++h) total[r][h] = _mm256_loadu_ps(tot + r * W + 8 * h);
  for (std::size_t g0 = 0; g0 < p.kpad; g0 += p.group) {
    const std::size_t g1 = std::min(p.kpad, g0 + p.group);
    for (std::size_t r = 0; r < R; ++r)
      for (int h = 0; h < V; ++h) acc[r][h] = p.promote ? _mm256_setzero_ps() : total[r][h];
    for (std::size_t k0 = g0; k0 < g1; k0 += L)
      for (int h = 0; h < V; ++h) {
        __m512d b[4] = {zero, zero, zero, zero};
        for (std::size_t t = 0; t < L; ++t) b[t] = _mm512_loadu_pd(p.Bd + at(p, j0, k0 + t) + 8 * std::size_t(h));
        for (std::size_t r = 0; r < R; ++r) {
          const double* a = p.Ad + (i0 + r) * p.kpad + k0;
          // The chain, in the model's order; its errors e[0..L-1] (e[L-1]: C's).
          __m512d s = _mm512_mul_pd(_mm512_set1_pd(a[0]), b[0]), e[L];
          for (std::size_t t = 1; t < L; ++t) s = two_sum(s, _mm512_mul_pd(_mm512_set1_pd(a[t]), b[t]), e[t - 1]);
          s = two_sum(s, to_double(acc[r][h]), e[L - 1]);
          const __mmask8 in_range = _mm512_cmp_pd_mask(vabs(s), thr, _CMP_LT_OQ);  // false for NaN
          __m512i bits = _mm512_castpd_si512(e[0]);
          for (std::size_t t = 1; t < L; ++t) bits = _mm512_or_si512(bits, _mm512_castpd_si512(e[t]));
          // The common case: every error +0 in every lane, x == s exactly, rounded by the conversion
          // (ties to even included); a result that rounds to zero (|s| <= 2^-150) or is past the
          // overflow rule goes the long way.
          if (_mm512_test_epi64_mask(bits, bits) == 0 &&
              (in_range & _mm512_cmp_pd_mask(vabs(s), tiny150, _CMP_GT_OQ)) == 0xFF) {
            acc[r][h] = to_float(s);
            continue;
          }
          __m512d E = zero, absE = zero;
          for (std::size_t t = 0; t < L; ++t) {
            E = _mm512_add_pd(E, e[t]);
            absE = _mm512_add_pd(absE, vabs(e[t]));
          }
          __m512d l;
          const __m512d hsum = two_sum(s, E, l);
          const __m512d B = _mm512_add_pd(_mm512_mul_pd(two, _mm512_add_pd(vabs(l), _mm512_mul_pd(u3, absE))),
                                          _mm512_mul_pd(u51, vabs(hsum)));
          const __m256 f = to_float(hsum);
          const __m512d fd = to_double(f), lo = to_double(to_float(_mm512_sub_pd(hsum, B))),
                        hi = to_double(to_float(_mm512_add_pd(hsum, B)));
          // exact: no rounding error anywhere (fp16's sums often are), x == h, and f is x rounded
          // even where x is a binary32 tie, which the bracket cannot tell.
          const __mmask8 exact = _mm512_cmp_pd_mask(_mm512_add_pd(vabs(l), absE), zero, _CMP_EQ_OQ);
          const __mmask8 ok = in_range & (exact | _mm512_cmp_pd_mask(lo, hi, _CMP_EQ_OQ)) &
                              _mm512_cmp_pd_mask(fd, zero, _CMP_NEQ_OQ) & _mm512_cmp_pd_mask(vabs(fd), inf, _CMP_LT_OQ);
          if (ok == 0xFF) {
            acc[r][h] = f;
            continue;
          }
          alignas(32) float out[8], cin[8];
          _mm256_store_ps(out, f);
          _mm256_store_ps(cin, acc[r][h]);
          for (int x = 0; x < 8; ++x) {
            if (ok >> x & 1) continue;
            float av[4] = {}, bv[4] = {};
            for (std::size_t t = 0; t < L; ++t) {
              av[t] = p.A[(i0 + r) * p.kpad + k0 + t];
              bv[t] = p.B[at(p, j0, k0 + t) + 8 * std::size_t(h) + std::size_t(x)];
            }
            out[x] = from_bits<float>(e_fdpa(int(L), av, bv, to_bits(cin[x])));
          }
          acc[r][h] = _mm256_load_ps(out);
        }
      }
    for (std::size_t r = 0; r < R; ++r)
      for (int h = 0; h < V; ++h) total[r][h] = p.promote ? _mm256_add_ps(total[r][h], acc[r][h]) : acc[r][h];
  }
  for (std::size_t r = 0; r < R; ++r)
    for (int h = 0; h < V; ++h) _mm256_storeu_ps(tot + r * W + 8 * h, total[r][h]);
}
#endif

}  // namespace

bool gemm_fast(const instruction& inst, std::size_t m, std::size_t n, std::size_t k, const float* A, const float* B,
               const float* C, float* D, const gemm_options& o) {
#if defined(__x86_64__)
  static const bool avx512 = __builtin_cpu_supports("avx512f") && !std::getenv("FPSCOPE_MMA_SCALAR");
  if (!avx512 || inst.arith == arithmetic::fdpa) return false;
  const bool ftz = inst.arith == arithmetic::ftz_mul_add, fdpa = inst.arith == arithmetic::e_fdpa;
  // The operands must be values of the input type; where one is not, mma.cpp's check (called after
  // a false here) names it. Here the format engine's bulk round trip, in cache-sized chunks.
  const auto exact = [&](const float* x, std::size_t count, const format& f) {
    if (f.bits == 32) return true;
    constexpr std::size_t chunk = 8192;
    std::uint16_t codes[chunk];
    float back[chunk];
    bulk_options bo;
    bo.threads = 1;
    for (std::size_t at = 0; at < count; at += chunk) {
      const std::size_t c = std::min(chunk, count - at);
      encode(std::span<const float>(x + at, c), std::span<std::uint16_t>(codes, c), f, policy{}, bo);
      decode(std::span<const std::uint16_t>(codes, c), std::span<float>(back, c), f);
      for (std::size_t i = 0; i < c; ++i)
        if (!(back[i] == x[at + i] || (std::isnan(back[i]) && std::isnan(x[at + i])))) return false;
    }
    return true;
  };
  if (inst.a.bits > 16 && inst.a.bits != 32) return false;  // (AMD's types here: fp16, bf16, fp32)
  if (!exact(A, m * k, inst.a) || !exact(B, k * n, inst.b)) return false;
  packed p{};
  p.ik = std::size_t(inst.k);
  p.L = std::size_t(inst.L);
  p.kpad = (k + p.ik - 1) / p.ik * p.ik;
  p.np = (n + W - 1) / W * W;
  p.promote = o.promote != 0;
  p.group = o.promote ? o.promote : p.kpad;
  const std::size_t mp = (m + R - 1) / R * R;
  // ftz_mul.py:13-19: CDNA2's inputs flushed to +0 (a -0 too) below their format's 2^emin.
  const auto input = [&](float x, const format& f) { return ftz ? flush_to_plus_zero(x, f.emin()) : x; };
  std::vector<float> Ap(mp * p.kpad, 0.0f), Bp(p.kpad * p.np, 0.0f);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t t = 0; t < k; ++t) Ap[i * p.kpad + t] = input(A[i * k + t], inst.a);
  for (std::size_t t = 0; t < k; ++t)
    for (std::size_t j = 0; j < n; ++j) Bp[at(p, j / W * W, t) + j % W] = input(B[t * n + j], inst.b);
  std::vector<double> Ad, Bd;
  if (fdpa) {
    Ad.assign(Ap.begin(), Ap.end());
    Bd.assign(Bp.begin(), Bp.end());
  }
  p.A = Ap.data();
  p.B = Bp.data();
  p.Ad = Ad.data();
  p.Bd = Bd.data();
  const std::size_t row_tiles = mp / R, col_tiles = p.np / W;
  const int threads = o.threads > 0 ? o.threads : omp_get_max_threads();
#pragma omp parallel num_threads(threads)
  {
    const mxcsr_mode mode(false);
#pragma omp for schedule(dynamic, 1)
    for (std::size_t t = 0; t < row_tiles * col_tiles; ++t) {
      // Column strips outermost: a strip of B (kpad x W) stays in L2 while the row tiles pass.
      const std::size_t i0 = t % row_tiles * R, j0 = t / row_tiles * W;
      float tot[R * W] = {};
      for (std::size_t r = 0; r < R && i0 + r < m; ++r)
        for (std::size_t j = 0; j < W && j0 + j < n; ++j) tot[r * W + j] = C ? C[(i0 + r) * n + j0 + j] : 0.0f;
      if (fdpa && p.L == 4) tile_fdpa<4>(p, i0, j0, tot);
      else if (fdpa) tile_fdpa<2>(p, i0, j0, tot);
      else if (ftz) tile_f32<true>(p, p.A + i0 * p.kpad, j0, tot);
      else tile_f32<false>(p, p.A + i0 * p.kpad, j0, tot);
      for (std::size_t r = 0; r < R && i0 + r < m; ++r)
        for (std::size_t j = 0; j < W && j0 + j < n; ++j) {
          const float v = tot[r * W + j];
          D[(i0 + r) * n + j0 + j] = std::isnan(v) ? from_bits<float>(canonical_nan) : v;
        }
    }
  }
  return true;
#else
  (void)inst, (void)m, (void)n, (void)k, (void)A, (void)B, (void)C, (void)D, (void)o;
  return false;
#endif
}

std::uint32_t step(const instruction& inst, const float* a, const float* b, std::uint32_t c, bool starts) {
  switch (inst.arith) {
    case arithmetic::fma:  // fma.py:69-70, one product a step (L = 1)
      return canonical(fp32_op(op::fma, a[0], b[0], from_bits<float>(c), false));
    case arithmetic::e_fdpa:
      return e_fdpa(inst.L, a, b, c);
    case arithmetic::ftz_mul_add:
      return ftz_mul_add(inst, a, b, c, starts);
    case arithmetic::fdpa:
      break;
  }
  return canonical_nan;  // not reached: mma.cpp calls this for the three arithmetics above
}

}  // namespace fpscope::mma::amd
