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
// torch.set_flush_denormal, gets the same bits).
#include "mma_amd.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>

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

}  // namespace

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
