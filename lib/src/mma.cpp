// The tensor-core step of MMA-Sim's NVIDIA models (mmasim/arithmetic/fdpa.py:75-154, t_fdpa and
// MMA_T_FDPA), on integer significands, and the GEMM built from it.
//
// One step of L products a_i * b_i and the accumulator c (fdpa.py:85-102):
//  - every operand is split as s * 2^e with e >= its format's smallest normal exponent
//    (fdpa.py:27-44 frexp_and_normalize; subnormals keep that exponent, s < 1); a product's
//    exponent is e_a + e_b with its significand s_a * s_b in [1, 4) unnormalised;
//  - a zero term (zero product or zero c) takes the exponent e_zero (fdpa.py:100);
//  - e_max is the largest exponent among the L + 1 terms; each term is truncated toward zero to
//    F fraction bits of 2^e_max (fdpa.py:75-82 truncated_fused_sum), and the truncated terms are
//    summed exactly;
//  - the sum is rounded once to the output (fdpa.py:47-72): toward zero to binary32 or to 13
//    fraction bits, or nearest-even to binary16; a NaN becomes the canonical 0x7FFFFFFF / 0x7FFF
//    and a zero result is +0 (fdpa.py:102, "+ 0.0").
// Here a significand is the integer M = s * 2^p (p the format's fraction bits), so a product is
// M_a * M_b with p_a + p_b fraction bits and its truncation is a shift: (M_a M_b) << (F - p_a -
// p_b) >> (e_max - e). F <= 25 and M_a M_b < 2^(p_a + p_b + 2) keep every term below 2^27.
//
// Specials need no arithmetic: a step with an inf or NaN among its inputs has a non-finite
// result (NaN for NaN, inf * 0, or infinities of both signs; else the infinity), as the
// double arithmetic of the model gives. Finite sums beyond binary32 (|sum| >= 2^128) become inf
// also under truncation, as the model's final float64 -> float32 cast does.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>
#if defined(__AVX512F__) && defined(__AVX512DQ__)
// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized / -Wuninitialized inside themselves (see
// histogram.cpp): silenced for the header only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#define FPSCOPE_MMA_AVX512 1
#endif

#include "fpscope/accumulate.hpp"
#include "fpscope/convert.hpp"
#include "fpscope/mma.hpp"
#include "fpscope/options.hpp"
#include "mma_amd.hpp"

namespace fpscope::mma {
namespace {

using detail::from_bits;
using detail::to_bits;

constexpr std::uint32_t canonical_nan = 0x7FFFFFFFu;  // fdpa.py:70 (0x7FFF for binary16: fdpa.py:66)

// DeepSeek-V3's promotion step: a group's result added into the binary32 total by a CUDA-core
// add (nearest-even; a NaN is canonical there). Bits in, bits out.
inline std::uint32_t promoted(std::uint32_t total, std::uint32_t group) {
  const float s = from_bits<float>(total) + from_bits<float>(group);
  return std::isnan(s) ? canonical_nan : to_bits(s);
}

// The promotion with the 1x128 recipe's scales, DeepGEMM's "Promote with scales"
// (deep_gemm/include/deep_gemm/fp8_gemm.cuh, fp8_gemm_kernel; commit 07ef809d):
// `final_accum += (scale_a * scale_b) * accum`, the scales' product a float32 multiply and the
// multiply-add contracted by nvcc into one FMA (its default -fmad=true). Bits in, bits out.
inline std::uint32_t scaled(std::uint32_t total, float s, std::uint32_t group) {
  const float r = std::fma(s, from_bits<float>(group), from_bits<float>(total));
  return std::isnan(r) ? canonical_nan : to_bits(r);
}

// Splits the float32 `bits` of a value of a format with p fraction bits and smallest normal
// exponent emin into the integer significand M (p fraction bits) and exponent e >= emin.
// The value must be finite and exact in the format (checked before).
inline void split(std::uint32_t bits, int p, int emin, std::uint32_t& M, std::int32_t& e) {
  // Branch-free (min/max), so that the loops splitting a tile row's accumulators vectorise.
  const std::int32_t ef = std::int32_t((bits >> 23) & 0xFFu);
  const std::uint32_t sig = (bits & 0x7FFFFFu) | (std::uint32_t(ef != 0) << 23);
  const std::int32_t E = std::max(ef, 1) - 127;  // a float32 subnormal is in 2^-126's binade
  const std::int32_t sh = std::min(23 - p + std::max(emin - E, 0), 31);
  M = sig >> sh;
  e = std::max(E, std::int32_t(emin));
}

// 2^x as a double, x well inside the normal range.
inline double pow2(int x) { return from_bits<double>(std::uint64_t(x + 1023) << 52); }

struct model {
  int pa, pb, emin_a, emin_b;
  int pc, emin_c;  // the given C
  int pd, emin_d;  // D, the C of every later step
  int F, L, e_zero;
  result_rounding rho;
  format out;
  rounding rm;
  detail::packer<std::uint64_t> pk;

  explicit model(const instruction& in)
      : pa(in.a.man_bits), pb(in.b.man_bits), emin_a(in.a.emin()), emin_b(in.b.emin()),
        pc(in.c.man_bits), emin_c(in.c.emin()), pd(in.d.man_bits), emin_d(in.d.emin()),
        F(in.F), L(in.L), e_zero(in.e_zero), rho(in.rho),
        out(rho == result_rounding::rne_fp16   ? builtin(format_id::fp16)
            : rho == result_rounding::rz_e8m13 ? limited_accumulator(14)
                                               : fp32_format),
        rm(rho == result_rounding::rne_fp16 || rho == result_rounding::rne_fp32 ? rounding::rne : rounding::rtz),
        pk(detail::prepare<std::uint64_t>(out, policy{}, rm)) {}
};

// The output rounding as compile-time constants, so that finish() below inlines round_pack with
// a constant format and mode and its loop over a tile row vectorises (round_pack's selects).
template <result_rounding R>
struct output {
  static constexpr format fmt = R == result_rounding::rne_fp16   ? builtin(format_id::fp16)
                                : R == result_rounding::rz_e8m13 ? limited_accumulator(14)
                                                                 : fp32_format;
  static constexpr rounding rm =
      R == result_rounding::rne_fp16 || R == result_rounding::rne_fp32 ? rounding::rne : rounding::rtz;
};

// binary16 code -> binary32 bits of the same value, from the format engine's decode, once.
const std::uint32_t* fp16_to_fp32_bits() {
  static const std::vector<std::uint32_t> table = [] {
    std::vector<std::uint32_t> t(1u << 16);
    for (std::uint32_t c = 0; c < t.size(); ++c) t[c] = to_bits(float(decode(c, builtin(format_id::fp16))));
    return t;
  }();
  return table.data();
}

// Each step's output from its exact truncated sum acc * 2^(emax - F) (fdpa.py:47-72), as the
// float32 bits of the output-type value, for nb results. |acc| < 2^40: exact in a double.
template <result_rounding R>
void finish(const model& md, const std::int64_t* acc, const std::int32_t* emax, std::uint32_t* out, std::size_t nb) {
  using O = output<R>;
  constexpr std::uint64_t sign_mask = O::fmt.sign_mask();
  const std::uint32_t* f16 = R == result_rounding::rne_fp16 ? fp16_to_fp32_bits() : nullptr;
  for (std::size_t j = 0; j < nb; ++j) {
    const double v = double(acc[j]) * pow2(emax[j] - md.F);
    std::uint64_t code = detail::round_pack<double>(to_bits(v), O::fmt, O::rm, md.pk);
    // Toward zero, the model's final float64 -> float32 cast still overflows: 2^128 and up is inf.
    if constexpr (R != result_rounding::rne_fp16)
      code = std::fabs(v) >= 0x1p128 ? (code & sign_mask) | O::fmt.inf_bits() : code;
    // A zero result is +0 (fdpa.py:102); CDNA3's model has no such step (fdpa.py:352): a sum that
    // rounds to zero keeps its sign there (an exact zero sum is +0 either way).
    if constexpr (R != result_rounding::rne_fp32) code = (code & ~sign_mask) == 0 ? 0 : code;
    if constexpr (R == result_rounding::rz_fp32 || R == result_rounding::rne_fp32) out[j] = std::uint32_t(code);
    if constexpr (R == result_rounding::rz_e8m13) out[j] = std::uint32_t(code) << 10;  // e8m13 -> binary32
    if constexpr (R == result_rounding::rne_fp16) out[j] = f16[code];
  }
}

// A step's exact sum acc * 2^base (base = emax - F) against the quantum of an output format with
// p fraction bits and smallest quantum 2^qmin: its magnitude and sign, the exponent E of its
// leading bit (any for a zero sum), the quantum's exponent q at E, and drop = q - base, the bits
// below it.
struct at_quantum {
  std::uint64_t mag;
  std::uint32_t sign;
  std::int32_t E, q, drop;
  at_quantum(std::int64_t acc, std::int32_t base, int p, int qmin)
      : mag(std::uint64_t(acc < 0 ? -acc : acc)), sign(acc < 0 ? 0x80000000u : 0u),
        E(base + 63 - std::int32_t(__builtin_clzll(mag | 1))), q(std::max(E - p, qmin)), drop(q - base) {}
};

// finish<rz_fp32> (P = 23) and finish<rz_e8m13> (P = 13) on integers, for the main kernel
// (|acc| < 2^40): the same bits without the double and round_pack. The sum acc * 2^base, its
// leading bit at 2^E, is truncated toward zero to the quantum of P fraction bits at E in
// binary32's exponent range (2^(E - P), at least 2^(-126 - P)); E >= 128 is inf (the model's
// final cast); a zero result is +0. Out: binary32 bits (e8m13's are binary32's low bits cleared).
// Also the results split as split() would split those bits (M with 23 fraction bits, e >= -126),
// for the next step; where a result is inf, its M and e are not used.
template <int P>
void finish_rz(const model& md, const std::int64_t* acc, const std::int32_t* emax, std::uint32_t* out,
               std::size_t nb, std::uint32_t* M, std::int32_t* e) {
#pragma omp simd
  for (std::size_t j = 0; j < nb; ++j) {
    const at_quantum s(acc[j], emax[j] - md.F, P, -126 - P);
    const auto [mag, sign, E, q, drop] = s;  // drop >= -P: the left shift keeps mag below 2^(P + 1)
    const std::uint64_t t = drop >= 0 ? (drop < 64 ? mag >> drop : 0) : mag << -drop;
    const std::uint32_t t23 = std::uint32_t(t) << (23 - P);  // as 23 fraction bits
    const std::uint32_t normal = std::uint32_t(E >= -126 && t != 0);  // t23 then has its leading bit at 2^23
    std::uint32_t bits = normal ? (std::uint32_t(E + 127) << 23) | (t23 & 0x7FFFFFu) : t23;
    bits = E >= 128 && mag != 0 ? 0x7F800000u : bits;
    out[j] = bits ? (bits | sign) : 0u;
    M[j] = t23;
    e[j] = q + P;
  }
}

// finish<rne_fp16> on integers, for the main kernel (|acc| < 2^40): the sum acc * 2^base, its
// leading bit at 2^E, rounded to nearest-even at the binary16 quantum at E (2^(E - 10), at least
// 2^-24); 2^16 and up after rounding is inf (65520 rounds there); a zero result is +0. Out: the
// float32 bits of the binary16 value, as the table lookup of finish() gives them.
// Also, as finish_rz, the results split for the next step (M with 10 fraction bits, e >= -14).
void finish_rne_fp16(const model& md, const std::int64_t* acc, const std::int32_t* emax, std::uint32_t* out,
                     std::size_t nb, std::uint32_t* M, std::int32_t* e) {
#pragma omp simd
  for (std::size_t j = 0; j < nb; ++j) {
    const at_quantum s(acc[j], emax[j] - md.F, 10, -24);
    const auto [mag, sign, E, q, drop] = s;  // drop >= -10
    std::uint64_t t;
    if (drop <= 0) {
      t = mag << -drop;  // exact: below 2^11
    } else if (drop < 64) {
      const std::uint64_t kept = mag >> drop, rem = mag & ((std::uint64_t{1} << drop) - 1);
      const std::uint64_t half = std::uint64_t{1} << (drop - 1);
      t = kept + std::uint64_t(rem > half || (rem == half && (kept & 1)));
    } else {
      t = 0;  // far below half the smallest subnormal
    }
    // t * 2^q, t < 2^12 (a carry may reach 2^11): as binary32 bits, normal there.
    const std::int32_t msb = 63 - std::int32_t(__builtin_clzll(t | 1));
    const std::int32_t Et = q + msb;
    std::uint32_t bits = t ? (std::uint32_t(Et + 127) << 23) | ((std::uint32_t(t) << (23 - msb)) & 0x7FFFFFu) : 0u;
    bits = t && Et >= 16 ? 0x7F800000u : bits;
    out[j] = bits ? (bits | sign) : 0u;
    const bool carried = t >> 11 != 0;  // rounded up to 2^11: one binade up
    M[j] = std::uint32_t(carried ? t >> 1 : t);
    e[j] = q + (carried ? 11 : 10);
  }
}

// Whether `v` is exactly a value of `f` (NaN: whether f has NaN), by the format engine: encoded
// and decoded back. binary32 (an f32 C) holds every float.
bool exactly_in(float v, const format& f) {
  if (f.bits == 32) return true;
  const double back = decode(encode(v, f, policy{}), f);
  return std::isnan(v) ? std::isnan(back) : back == double(v);
}

// exactly_in's common case without the format engine's scalar encode and decode (which took ~0.04 s
// per million elements): a finite float32 no larger than f's largest value, none of whose
// significand bits lie below f's quantum at its exponent (split()'s shift). Every other value
// (specials, out of range, formats without a sign or subnormals) goes to exactly_in.
struct input_check {
  const format& f;
  bool quick;
  std::uint32_t max_mag;  // the float32 magnitude bits of f's largest finite value
  explicit input_check(const format& fmt)
      : f(fmt), quick(fmt.bits < 32 && fmt.is_signed() && fmt.subnormals),
        max_mag(quick ? to_bits(float(decode(fmt.max_finite_bits(), fmt))) : 0u) {}
  bool operator()(float v) const {
    if (f.bits == 32) return true;
    const std::uint32_t bits = to_bits(v);
    if (quick && (bits & 0x7FFFFFFFu) <= max_mag) {
      const std::int32_t ef = std::int32_t((bits >> 23) & 0xFFu);
      const std::uint32_t sig = (bits & 0x7FFFFFu) | (std::uint32_t(ef != 0) << 23);
      const std::int32_t sh = 23 - f.man_bits + std::max(f.emin() - (std::max(ef, 1) - 127), 0);
      if ((sh >= 32 ? sig : sig & ((std::uint32_t{1} << sh) - 1)) == 0) return true;
    }
    return exactly_in(v, f);
  }
};

// The exponent a zero (or special, or padding) operand carries in the split matrices: far below
// any real one, so that a product with a zero factor has an exponent sum below zero_e / 2.
constexpr std::int32_t zero_e = -(1 << 20);

// A and B split once: significand magnitude, exponent, sign; non-finite values enter as zeros
// and are handled by the special path.
struct split_matrix {
  std::vector<std::uint32_t> M;
  std::vector<std::int32_t> e;
  std::vector<std::uint32_t> s;
};

// Checks that every element is exactly a value of `f` (one line naming the first that is not)
// and splits it. rows x cols of `x` (row stride cols) into rows_pad x cols_pad, zero padded.
inline void check_element(const input_check& in_f, float v, const char* what, std::size_t r, std::size_t c) {
  if (!in_f(v))
    throw std::invalid_argument(std::string(what) + "[" + std::to_string(r) + "," + std::to_string(c) + "] = " +
                                number_text(v) + " is not exactly a " + in_f.f.name + " value (the instruction's " +
                                what + " type)");
}

// Every element of x (rows x cols, row-major) checked as a value of f (check_element), then
// visit(r, c, v) called on it.
template <class Visit>
void for_each_checked(const float* x, std::size_t rows, std::size_t cols, const format& f, const char* what,
                      const Visit& visit) {
  const input_check in_f(f);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c) {
      const float v = x[r * cols + c];
      check_element(in_f, v, what, r, c);
      visit(r, c, v);
    }
}

void split_checked(const float* x, std::size_t rows, std::size_t cols, std::size_t rows_pad, std::size_t cols_pad,
                   const format& f, const char* what, split_matrix& out, std::vector<std::uint8_t>& nonfinite) {
  out.M.assign(rows_pad * cols_pad, 0);
  out.e.assign(rows_pad * cols_pad, 0);
  out.s.assign(rows_pad * cols_pad, 0);
  nonfinite.assign(rows_pad * cols_pad, 0);
  for_each_checked(x, rows, cols, f, what, [&](std::size_t r, std::size_t c, float v) {
    const std::size_t at = r * cols_pad + c;
    const std::uint32_t bits = to_bits(v);
    out.s[at] = bits >> 31;
    if (!std::isfinite(v)) nonfinite[at] = 1;
    else split(bits, f.man_bits, f.emin(), out.M[at], out.e[at]);
  });
  for (std::size_t at = 0; at < out.M.size(); ++at)
    if (out.M[at] == 0) out.e[at] = zero_e;  // zeros, padding and specials
}

// Block scaling (MMA-Sim fdpa.py:157-179 st_fdpa): a product a * b * 2^sa * 2^sb is the product of
// the elements with the scales' exponents added, so the scales go into the split exponents of
// the nonzero elements (a zero keeps its sentinel: a zero product still takes e_zero).
void apply_scales(const instruction& inst, std::size_t m, std::size_t n, std::size_t k, std::size_t kpad,
                  const gemm_options& o, split_matrix& sa, split_matrix& sb) {
  if (!o.a_scale || !o.b_scale)
    throw std::invalid_argument(inst.name + " is block-scaled: it needs the scales of A and of B (UE8M0 codes)");
  const std::size_t blk = std::size_t(inst.block), nblk = (k + blk - 1) / blk;
  const auto exponent = [](std::uint8_t code, const char* what, std::size_t r, std::size_t c) {
    if (code == 0xFF)
      throw std::invalid_argument(std::string(what) + " scale [" + std::to_string(r) + "," + std::to_string(c) +
                                  "] is the UE8M0 NaN (0xff): NaN scales are not modelled");
    return std::int32_t(code) - 127;
  };
  // Every scale is checked, also those of all-zero blocks (a NaN scale would make them NaN).
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t b = 0; b < nblk; ++b) exponent(o.a_scale[i * nblk + b], "A", i, b);
  for (std::size_t b = 0; b < nblk; ++b)
    for (std::size_t j = 0; j < n; ++j) exponent(o.b_scale[b * n + j], "B", b, j);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t kk = 0; kk < k; ++kk) {
      const std::size_t at = i * kpad + kk;
      if (sa.M[at]) sa.e[at] += exponent(o.a_scale[i * nblk + kk / blk], "A", i, kk / blk);
    }
  for (std::size_t kk = 0; kk < k; ++kk)
    for (std::size_t j = 0; j < n; ++j) {
      const std::size_t at = kk * n + j;
      if (sb.M[at]) sb.e[at] += exponent(o.b_scale[(kk / blk) * n + j], "B", kk / blk, j);
    }
}

// The non-finite result of a step with a special input, or 0 when it has none: NaN for a NaN,
// inf * 0 or infinities of both signs, else the infinity (fdpa.py's double arithmetic).
std::uint32_t special_step(const float* arow, const float* B, std::size_t n, std::size_t j, std::size_t k0,
                           std::size_t kend, std::uint32_t c) {
  bool nan = false, pinf = false, ninf = false;
  const float cv = from_bits<float>(c);
  if (std::isnan(cv)) nan = true;
  else if (std::isinf(cv)) (cv > 0 ? pinf : ninf) = true;
  for (std::size_t k = k0; k < kend; ++k) {
    const float a = arow[k], b = B[k * n + j];
    if (std::isnan(a) || std::isnan(b)) nan = true;
    else if (std::isinf(a) || std::isinf(b)) {
      if (a == 0 || b == 0) nan = true;
      else ((a < 0) != (b < 0) ? ninf : pinf) = true;
    }
  }
  if (nan || (pinf && ninf)) return canonical_nan;
  if (pinf) return 0x7F800000u;
  if (ninf) return 0xFF800000u;
  return 0;
}

// The 1x128 recipe's preconditions (gemm_options::a_scale_1x128): an instruction without scales
// of its own, promotion every 128 at most implied, both scale arrays, finite scales.
void check_fine_scales(const instruction& inst, std::size_t m, std::size_t n, std::size_t k, const gemm_options& o) {
  if (!o.a_scale_1x128 || !o.b_scale_128x128)
    throw std::invalid_argument("1x128 scaling needs both A's (m x k/128) and B's (k/128 x n/128) scales");
  const bool amd = inst.fam == family::mfma;
  if (inst.block || inst.group || amd || o.a_scale || o.b_scale)
    throw std::invalid_argument(inst.name + " (" + inst.arch + "): 1x128 scaling is for instructions without " +
                                (amd ? "AMD's own accumulation" : "block scales of their own"));
  if (fine_block % std::size_t(inst.k))
    throw std::invalid_argument("1x128 scaling: " + inst.name + "'s k (" + std::to_string(inst.k) + ") does not divide 128");
  if (o.promote && o.promote != fine_block)
    throw option_error("--promote: 1x128 scaling promotes every 128 (its K-block), not every " +
                       std::to_string(o.promote));
  const std::size_t kb = (k + fine_block - 1) / fine_block, nb = (n + fine_block - 1) / fine_block;
  const auto check = [](const float* s, std::size_t rows, std::size_t cols, const char* what) {
    for (std::size_t x = 0; x < rows * cols; ++x)
      if (!std::isfinite(s[x]))
        throw std::invalid_argument(std::string(what) + " scale [" + std::to_string(x / cols) + "," +
                                    std::to_string(x % cols) + "] = " + number_text(s[x]) + " is not finite");
  };
  check(o.a_scale_1x128, m, kb, "A");
  check(o.b_scale_128x128, kb, nb, "B");
}

// An output tile: MB rows x NB columns, its accumulators in L1.
constexpr std::size_t NB = 64, MB = 8;

struct packed_operands;

struct gemm_job {
  const model& md;
  std::size_t m, n, k, kpad;
  const float *A, *B;
  const split_matrix &sa, &sb;
  const std::vector<std::uint8_t>& row_special;  // per (i, step)
  const std::vector<std::uint8_t>& col_special;  // per (step, j)
  const packed_operands* packed = nullptr;       // the floating-point kernel's operands, when it runs
};

// Steps k0 .. k1 (a multiple of L apart) of rows i0 .. i0 + mb, columns j0 .. j0 + nb, on the
// running accumulators cs (float32 bits, row r at cs + r * NB); `first` when they hold the given
// C (its own type).
template <result_rounding R>
void run_steps(const gemm_job& g, std::size_t i0, std::size_t mb, std::size_t j0, std::size_t nb, std::size_t k0,
               std::size_t k1, std::uint32_t* cs, bool first) {
  const model& md = g.md;
  const int L0 = md.F - md.pa - md.pb;  // >= 3 for every modelled instruction
  const std::size_t sub = std::size_t(1) << (29 - md.F);  // sub * 2^(F + 2) <= 2^31
  std::int32_t emax[NB];
  std::uint32_t seen_zero[NB];
  std::int64_t acc[NB];
  // The accumulators split into significand and exponent: by split() from their bits at the first
  // step; after it, as finish_rz / finish_rne_fp16 left them (the same numbers; where a result
  // is special, its own path below decides, whatever they hold).
  std::uint32_t sM[MB * NB];
  std::int32_t sE[MB * NB];
  const std::size_t steps = g.kpad / std::size_t(md.L);
  for (std::size_t k = k0; k < k1; k += std::size_t(md.L), first = false)
  // Rows inside the step: B's L x nb slab is read from L1 by every row of the tile.
  for (std::size_t r = 0; r < mb; ++r) {
    const std::size_t i = i0 + r;
    std::uint32_t* c = cs + r * NB;
    std::uint32_t* cM = sM + r * NB;
    std::int32_t* ce = sE + r * NB;
    const int pc = first ? md.pc : md.pd, emin_c = first ? md.emin_c : md.emin_d;
    const int Lc = md.F - pc;  // C's shift: left when F > pc, else right
    if (k == k0) {
      // Branch-free, but GCC's cost model keeps this loop scalar without being told.
#pragma omp simd
      for (std::size_t j = 0; j < nb; ++j) split(c[j] & 0x7FFFFFFFu, pc, emin_c, cM[j], ce[j]);
    }
    for (std::size_t j = 0; j < nb; ++j) emax[j] = cM[j] ? ce[j] : md.e_zero;
    std::fill(seen_zero, seen_zero + nb, 0u);
    const std::size_t kend = k + std::size_t(md.L);
    for (std::size_t kk = k; kk < kend; ++kk) {
      const std::int32_t ae = g.sa.e[i * g.kpad + kk];
      const std::int32_t* be = &g.sb.e[kk * g.n + j0];
      // A zero operand carries the exponent zero_e, so a zero product's sum of exponents is
      // below zero_e / 2 and never the maximum; seen_zero notes it, for the e_zero rule.
      for (std::size_t j = 0; j < nb; ++j) {
        const std::int32_t e = ae + be[j];
        emax[j] = std::max(emax[j], e);
        seen_zero[j] |= std::uint32_t(e < zero_e / 2);
      }
    }
    for (std::size_t j = 0; j < nb; ++j) emax[j] = std::max(emax[j], seen_zero[j] ? md.e_zero : emax[j]);
    for (std::size_t j = 0; j < nb; ++j) {
      const std::int32_t d = emax[j] - ce[j];  // >= 0 where cM != 0
      const std::uint64_t mag = std::uint64_t(cM[j]) << (Lc > 0 ? Lc : 0);
      const int sh = std::min<std::int32_t>(std::max<std::int32_t>(d, 0) + (Lc < 0 ? -Lc : 0), 63);
      const std::int64_t t = std::int64_t(mag >> sh);
      acc[j] = (c[j] >> 31) ? -t : t;
    }
    // Each truncated product is below 2^(F + 2), so `sub` of them sum in 32 bits (twice as many
    // lanes as 64): the products go in runs of sub, each run's sum then widened.
    for (std::size_t k2 = k; k2 < kend; k2 += sub) {
      std::int32_t part[NB];
      std::fill(part, part + nb, 0);
      for (std::size_t kk = k2; kk < std::min(kend, k2 + sub); ++kk) {
        const std::uint32_t am = g.sa.M[i * g.kpad + kk];
        const std::int32_t ae = g.sa.e[i * g.kpad + kk];
        const std::uint32_t as = g.sa.s[i * g.kpad + kk];
        const std::uint32_t* bm = &g.sb.M[kk * g.n + j0];
        const std::int32_t* be = &g.sb.e[kk * g.n + j0];
        const std::uint32_t* bs = &g.sb.s[kk * g.n + j0];
        for (std::size_t j = 0; j < nb; ++j) {
          const std::uint32_t p = (am * bm[j]) << L0;
          const std::int32_t d = emax[j] - (ae + be[j]);
          const std::uint32_t sh = std::uint32_t(std::min<std::int32_t>(std::max<std::int32_t>(d, 0), 31));
          const std::int32_t t = std::int32_t(p >> sh);
          part[j] += (as ^ bs[j]) ? -t : t;
        }
      }
      for (std::size_t j = 0; j < nb; ++j) acc[j] += part[j];
    }
    const std::size_t step = k / std::size_t(md.L);
    const bool row_sp = g.row_special[i * steps + step] != 0;
    std::uint32_t next[NB];
    if constexpr (R == result_rounding::rz_fp32) finish_rz<23>(md, acc, emax, next, nb, cM, ce);
    else if constexpr (R == result_rounding::rz_e8m13) finish_rz<13>(md, acc, emax, next, nb, cM, ce);
    else if constexpr (R == result_rounding::rne_fp16) finish_rne_fp16(md, acc, emax, next, nb, cM, ce);
    else finish<R>(md, acc, emax, next, nb);
    // Specials are rare: one vectorised test over the row decides whether any result needs the
    // scalar check below.
    std::uint32_t any = row_sp ? 1u : 0u;
    const std::uint8_t* csp = &g.col_special[step * g.n + j0];
    for (std::size_t j = 0; j < nb; ++j) any |= std::uint32_t((c[j] & 0x7F800000u) == 0x7F800000u) | csp[j];
    if (!any) {
      std::memcpy(c, next, nb * sizeof(std::uint32_t));
      continue;
    }
    for (std::size_t j = 0; j < nb; ++j) {
      const std::uint32_t old = c[j];
      const bool c_nonfinite = (old & 0x7F800000u) == 0x7F800000u;
      c[j] = next[j];
      if (c_nonfinite || row_sp || g.col_special[step * g.n + j0 + j]) {
        // Padding beyond K holds zeros: only real elements can be special.
        const std::uint32_t sp =
            special_step(g.A + i * g.k, g.B, g.n, j0 + j, std::min(k, g.k), std::min(kend, g.k), old);
        if (sp) c[j] = sp;
      }
    }
  }
}

#if defined(FPSCOPE_MMA_AVX512)
// The same step in float32 lanes, AVX-512 (F and DQ), where every operation is exact: the NVIDIA
// models with unscaled inputs (fp16, bf16, tf32, FP8, FP6, FP4 elements; the block-scaled and
// CDNA3 instructions keep the integer kernels). Why it is the model's arithmetic:
//  - a product a * b of two inputs is exact and normal in float32: at most 2 x 11 significant
//    bits; for fp16 and FP8/6/4 between 2^-126 and 2^128 by their formats, for bf16 and tf32 by
//    their data when every value lies in [2^-63, 2^64) (in_half_range), else (NS) as the product
//    of the normalised significands a / 2^e_a and b / 2^e_b, whose exponents go into the scale;
//  - the term's exponent is e_a + e_b of the split operands (split(): e >= the format's emin),
//    not the product's own (s_a * s_b may reach [2, 4)), so A's and B's exponents are kept beside
//    their values, and e_max is their sum's maximum as in the integer kernel (e_zero rule included);
//  - truncating a term t to F fraction bits of 2^e_max is trunc(t * 2^(F - e_max)): vscalefps
//    (exact wherever the result reaches 1; below, the result stays below 1 and truncates to 0
//    whatever its rounding) and vcvttps2dq, which truncates toward zero: the sign-magnitude
//    truncation of fdpa.py:75-82;
//  - the L + 1 truncated terms, each below 2^(F + 2), sum exactly in integer lanes (below);
//  - the exact sum's RZ-FP32 and RZ-E8M13 are integer-to-float conversions and a vscalefps with
//    embedded round-toward-zero (below); RNE-FP16 (rounded()) adds and subtracts 1.5 * 2^(q + 52)
//    (q the binary16 quantum's exponent at the sum) in double nearest-even;
//  - a zero result is +0: x + 0 in nearest-even turns -0 into +0 (fdpa.py:102's "+ 0.0").
// Specials: the same row/column flags and non-finite accumulator test as the integer kernel,
// per step and 16 columns; where one is set, special_step() decides those results (fix_specials).
// The accumulators stay in registers (float32 / binary16 values) over all steps.
constexpr std::size_t CW = 16;  // columns per packed chunk: one vector of 16 floats

struct packed_operands {
  std::vector<float> fav, fae;  // m x kpad: A's values (0 for zeros, padding, specials), exponents
  std::vector<float> fbv, fbe;  // chunk by chunk of CW columns, kpad x CW: the same for B
  std::vector<std::uint8_t> chunk_special;  // per (step, chunk): a special B element there
};

// split_checked for this kernel: each element checked as there, its value (0 for zeros and
// non-finite values; normalise: divided by 2^e) and split exponent e (zero_e for those) stored at at(r, c) of val
// and ex (which hold 0 and zero_e before), non-finite ones noted as there. Neither split_matrix
// is built: the kernel needs only these (half the memory to fault in).
template <class At>
void pack_checked(const float* x, std::size_t rows, std::size_t cols, std::size_t rows_pad, std::size_t cols_pad,
                  const format& f, const char* what, const At& at, std::vector<float>& val, std::vector<float>& ex,
                  std::vector<std::uint8_t>& nonfinite, bool normalise) {
  nonfinite.assign(rows_pad * cols_pad, 0);
  for_each_checked(x, rows, cols, f, what, [&](std::size_t r, std::size_t c, float v) {
    if (!std::isfinite(v)) {
      nonfinite[r * cols_pad + c] = 1;
      return;
    }
    std::uint32_t M;
    std::int32_t e;
    split(to_bits(v), f.man_bits, f.emin(), M, e);
    if (M) val[at(r, c)] = normalise ? std::ldexp(v, -e) : v, ex[at(r, c)] = float(e);
  });
}

// Whether every finite nonzero value of x[0 .. count) lies in [2^-63, 2^64), so that the product
// of two such values is a normal float32 number (and exact there, at most 2 x 11 significant bits):
// bf16 and tf32, whose formats reach 2^-133 and 2^128, admitted to the float32 lanes by their data.
bool in_half_range(const float* x, std::size_t count) {
  std::uint32_t out = 0;
  for (std::size_t t = 0; t < count; ++t) {
    const std::uint32_t bits = to_bits(x[t]), e = (bits >> 23) & 0xFFu;
    out |= std::uint32_t((bits & 0x7FFFFFFFu) != 0 && e != 0xFFu && (e < 127 - 63 || e > 127 + 63));
  }
  return out == 0;
}

// A (m x kpad, row-major) and B (in chunks of CW columns, each kpad x CW, so that a chunk's K loop
// reads contiguous memory), checked, into P (normalise: the values as x / 2^e_x, for the NS
// variant); nfa and nfb as split_checked's.
void pack_checked(const float* A, const float* B, std::size_t m, std::size_t n, std::size_t k, std::size_t kpad,
                  const instruction& inst, packed_operands& P, std::vector<std::uint8_t>& nfa,
                  std::vector<std::uint8_t>& nfb, bool normalise) {
  const std::size_t chunks = (n + CW - 1) / CW;
  P.fav.assign(m * kpad, 0.0f);
  P.fae.assign(m * kpad, float(zero_e));
  pack_checked(A, m, k, m, kpad, inst.a, "A", [kpad](std::size_t r, std::size_t c) { return r * kpad + c; }, P.fav,
               P.fae, nfa, normalise);
  P.fbv.assign(chunks * kpad * CW, 0.0f);
  P.fbe.assign(chunks * kpad * CW, float(zero_e));
  pack_checked(B, k, n, kpad, n, inst.b, "B",
               [kpad](std::size_t r, std::size_t c) { return ((c / CW) * kpad + r) * CW + c % CW; }, P.fbv, P.fbe,
               nfb, normalise);
}

// Per (step, chunk): whether a B element of that chunk is special there (col_special's OR).
void chunk_flags(std::size_t n, std::size_t steps, const std::vector<std::uint8_t>& col_special, packed_operands& P) {
  const std::size_t chunks = (n + CW - 1) / CW;
  P.chunk_special.assign(steps * chunks, 0);
  for (std::size_t s = 0; s < steps; ++s)
    for (std::size_t j = 0; j < n; ++j) P.chunk_special[s * chunks + j / CW] |= col_special[s * n + j];
}

// The results of the step at k of row i, columns jc .. jc + ncols, that a special input decides
// (the integer kernel's test: a non-finite accumulator `old`, a special in the row's or the
// column's elements of the step): special_step() gives them, over `now`.
void fix_specials(const gemm_job& g, std::size_t i, bool row_sp, std::size_t k, std::size_t jc, std::size_t ncols,
                  const float* old, float* now) {
  const std::size_t kend = k + std::size_t(g.md.L), step = k / std::size_t(g.md.L);
  for (std::size_t j = 0; j < ncols; ++j) {
    if (!(row_sp || !std::isfinite(old[j]) || g.col_special[step * g.n + jc + j])) continue;
    const std::uint32_t sp =
        special_step(g.A + i * g.k, g.B, g.n, jc + j, std::min(k, g.k), std::min(kend, g.k), to_bits(old[j]));
    if (sp) now[j] = from_bits<float>(sp);
  }
}

// A step's exact sum v (a double) rounded to the output: the value, as a double, that the model's
// ldexp_and_normalize gives (fdpa.py:47-72), +0 for a zero result.
template <result_rounding R>
inline __m512d rounded(__m512d v) {
  const __m512d zero = _mm512_setzero_pd(), inf = _mm512_set1_pd(INFINITY);
  if constexpr (R == result_rounding::rne_fp16) {
    const __m512d q = _mm512_max_pd(_mm512_sub_pd(_mm512_getexp_pd(v), _mm512_set1_pd(10)), _mm512_set1_pd(-24));
    const __m512d magic = _mm512_scalef_pd(_mm512_set1_pd(1.5), _mm512_add_pd(q, _mm512_set1_pd(52)));
    __m512d t = _mm512_sub_round_pd(_mm512_add_round_pd(v, magic, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
                                    magic, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    t = _mm512_mask_mul_pd(t, _mm512_cmp_pd_mask(_mm512_abs_pd(t), _mm512_set1_pd(65536.0), _CMP_GE_OQ), t, inf);
    return _mm512_add_pd(t, zero);
  } else {
    const __m512d w = _mm512_mask_mul_pd(v, _mm512_cmp_pd_mask(_mm512_abs_pd(v), _mm512_set1_pd(0x1p128), _CMP_GE_OQ), v, inf);
    __m256 f = _mm512_cvt_roundpd_ps(w, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    if constexpr (R == result_rounding::rz_e8m13) f = _mm256_and_ps(f, _mm256_castsi256_ps(_mm256_set1_epi32(~0x3FF)));
    return _mm512_add_pd(_mm512_cvtps_pd(f), zero);
  }
}

// RR rows (i, i + 1, ...) x the CW columns of chunk `ch` (the first `ncols` real, from column
// jc), steps k0 .. k1 on the accumulators cs (float32 bits, row r at cs + r * NB). ZT: the zero
// products need their test; without it (e_zero at or below every nonzero product's exponent,
// e_zero <= emin_a + emin_b: fp16 and FP8/6/4 inputs), e_zero only matters when a step's products
// are all zero, and then it is the maximum's floor: e_max = max(e_C, e_zero, products).
// The scale is vscalefps's 2^(F - e_max) (no float32 power of two holds it for a small e_max), a
// term truncated by vcvttps2dq (below 2^(F + 2) <= 2^31, F <= 29). The terms sum in 32-bit lanes:
// all of them with C's where that cannot reach 2^31 (N: (2L + 1) 2^(F + 1) < 2^31), else in runs
// of at most 2^(29 - F) products, each run's sum widened into 64-bit lanes. Toward zero, the
// exact sum S * 2^(e_max - F) is rounded by vcvtdq2ps / vcvtqq2ps (S to 24 significant bits) and
// then vscalefps (to binary32's range: the subnormal quantum, 2^(e_max - F) applied), both with
// embedded round-toward-zero: truncations nest, so that is S * 2^(e_max - F) truncated once; a
// sum at or above 2^128 is made inf (vscalefps gives the largest finite value there). RNE-FP16
// goes through rounded() in two halves of 8 doubles.
// NS (normalised significands, bf16/tf32 data outside [2^-63, 2^64)): A and B hold x / 2^e_x (in
// [1, 2), or below 1 for a subnormal, at least 2^-7 for bf16 and 2^-10 for tf32), so that a
// product a' b' is exact and normal in float32 for any bf16/tf32 values; its term is then
// a' b' scaled by 2^(e_a + e_b + F - e_max) instead of 2^(F - e_max): two more adds a vector.
template <result_rounding R, bool ZT, bool N, bool NS, int RR>
void fast_rows16(const gemm_job& g, std::size_t i, std::size_t ch, std::size_t jc, std::size_t ncols,
                 std::size_t k0, std::size_t k1, std::uint32_t* cs, bool first) {
  const model& md = g.md;
  const packed_operands& P = *g.packed;
  const std::size_t kpad = g.kpad, L = std::size_t(md.L), steps = kpad / L, chunks = (g.n + CW - 1) / CW;
  const std::size_t run = N ? L : std::min(L, std::size_t(1) << (29 - md.F));
  const __m512 zero = _mm512_setzero_ps(), ezero = _mm512_set1_ps(float(md.e_zero)), Fv = _mm512_set1_ps(float(md.F));
  const __m512 zthr = _mm512_set1_ps(float(zero_e / 2)), inf = _mm512_set1_ps(INFINITY);
  const float* bv = P.fbv.data() + ch * kpad * CW;
  const float* be = P.fbe.data() + ch * kpad * CW;
  const float *av[RR], *ae[RR];
  __m512 c[RR];
  for (int r = 0; r < RR; ++r) {
    av[r] = P.fav.data() + (i + std::size_t(r)) * kpad;
    ae[r] = P.fae.data() + (i + std::size_t(r)) * kpad;
    c[r] = _mm512_loadu_ps(reinterpret_cast<const float*>(cs + std::size_t(r) * NB));
  }
  const auto lo256 = [](__m512i x) { return _mm512_castsi512_si256(x); };
  const auto hi256 = [](__m512i x) { return _mm512_extracti64x4_epi64(x, 1); };
  for (std::size_t k = k0; k < k1; k += L, first = false) {
    const __m512 emin = _mm512_set1_ps(float(first ? md.emin_c : md.emin_d));
    __m512 emax[RR], s[RR];
    __mmask16 zero_seen[RR];
    __m512i acc[RR], wide_lo[RR], wide_hi[RR];
    for (int r = 0; r < RR; ++r) {  // C's exponent (a zero C: e_zero)
      const __m512 e = _mm512_max_ps(_mm512_getexp_ps(c[r]), emin);
      emax[r] = _mm512_mask_mov_ps(e, _mm512_cmp_ps_mask(c[r], zero, _CMP_EQ_OQ), ezero);
      if constexpr (!ZT) emax[r] = _mm512_max_ps(emax[r], ezero);
      zero_seen[r] = 0;
    }
    const std::size_t kend = k + L;
    for (std::size_t kk = k; kk < kend; ++kk) {
      const __m512 b = _mm512_loadu_ps(be + kk * CW);
      for (int r = 0; r < RR; ++r) {
        const __m512 e = _mm512_add_ps(_mm512_set1_ps(ae[r][kk]), b);
        emax[r] = _mm512_max_ps(emax[r], e);
        if constexpr (ZT) zero_seen[r] |= _mm512_cmp_ps_mask(e, zthr, _CMP_LT_OQ);
      }
    }
    for (int r = 0; r < RR; ++r) {
      emax[r] = _mm512_mask_max_ps(emax[r], zero_seen[r], emax[r], ezero);
      s[r] = _mm512_sub_ps(Fv, emax[r]);
      const __m512i t = _mm512_cvttps_epi32(_mm512_scalef_ps(c[r], s[r]));  // C's term
      if constexpr (N) {
        acc[r] = t;
      } else {
        wide_lo[r] = _mm512_cvtepi32_epi64(lo256(t));
        wide_hi[r] = _mm512_cvtepi32_epi64(hi256(t));
      }
    }
    for (std::size_t k2 = k; k2 < kend; k2 += run) {
      if constexpr (!N)
        for (int r = 0; r < RR; ++r) acc[r] = _mm512_setzero_si512();
      for (std::size_t kk = k2; kk < k2 + run; ++kk) {
        const __m512 b = _mm512_loadu_ps(bv + kk * CW);
        [[maybe_unused]] __m512 eb;
        if constexpr (NS) eb = _mm512_loadu_ps(be + kk * CW);
        for (int r = 0; r < RR; ++r) {
          const __m512 p = _mm512_mul_ps(_mm512_set1_ps(av[r][kk]), b);
          __m512 y = s[r];
          if constexpr (NS) y = _mm512_add_ps(_mm512_add_ps(eb, _mm512_set1_ps(ae[r][kk])), y);
          acc[r] = _mm512_add_epi32(acc[r], _mm512_cvttps_epi32(_mm512_scalef_ps(p, y)));
        }
      }
      if constexpr (!N)
        for (int r = 0; r < RR; ++r) {
          wide_lo[r] = _mm512_add_epi64(wide_lo[r], _mm512_cvtepi32_epi64(lo256(acc[r])));
          wide_hi[r] = _mm512_add_epi64(wide_hi[r], _mm512_cvtepi32_epi64(hi256(acc[r])));
        }
    }
    const std::size_t step = k / L;
    for (int r = 0; r < RR; ++r) {
      const __m512 base = _mm512_sub_ps(emax[r], Fv);
      __m512 next;
      if constexpr (R == result_rounding::rne_fp16) {
        const __m512d slo = N ? _mm512_cvtepi32_pd(lo256(acc[r])) : _mm512_cvtepi64_pd(wide_lo[r]);
        const __m512d shi = N ? _mm512_cvtepi32_pd(hi256(acc[r])) : _mm512_cvtepi64_pd(wide_hi[r]);
        const __m512d lo = rounded<R>(_mm512_scalef_pd(slo, _mm512_cvtps_pd(_mm512_castps512_ps256(base))));
        const __m512d hi = rounded<R>(_mm512_scalef_pd(
            shi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(base), 1)))));
        next = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo))),
                                                   _mm256_castps_pd(_mm512_cvtpd_ps(hi)), 1));
      } else {
        __m512 x;  // S truncated to 24 significant bits
        if constexpr (N) {
          x = _mm512_cvt_roundepi32_ps(acc[r], _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        } else {
          const __m256 xl = _mm512_cvt_roundepi64_ps(wide_lo[r], _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
          const __m256 xh = _mm512_cvt_roundepi64_ps(wide_hi[r], _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
          x = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(xl)), _mm256_castps_pd(xh), 1));
        }
        next = _mm512_scalef_round_ps(x, base, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        const __mmask16 ovf =
            _mm512_cmp_ps_mask(_mm512_add_ps(_mm512_getexp_ps(x), base), _mm512_set1_ps(128.0f), _CMP_GE_OQ);
        next = _mm512_mask_mul_ps(next, ovf, next, inf);
        if constexpr (R == result_rounding::rz_e8m13)
          next = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(next), _mm512_set1_epi32(~0x3FF)));
        next = _mm512_add_ps(next, zero);  // -0 to +0
      }
      // 0x99: NaN (quiet, signalling) or an infinity
      const bool row_sp = g.row_special[(i + std::size_t(r)) * steps + step] != 0;
      if (row_sp || P.chunk_special[step * chunks + ch] || _mm512_fpclass_ps_mask(c[r], 0x99)) {
        alignas(64) float old[CW], now[CW];
        _mm512_store_ps(old, c[r]);
        _mm512_store_ps(now, next);
        fix_specials(g, i + std::size_t(r), row_sp, k, jc, ncols, old, now);
        next = _mm512_load_ps(now);
      }
      c[r] = next;
    }
  }
  for (int r = 0; r < RR; ++r) _mm512_storeu_ps(reinterpret_cast<float*>(cs + std::size_t(r) * NB), c[r]);
}

// Four rows at a time: four independent chains of steps (each step's C the previous one's
// result) and B's loads shared by four.
template <result_rounding R, bool ZT, bool N, bool NS>
void run_steps_fast16(const gemm_job& g, std::size_t i0, std::size_t mb, std::size_t j0, std::size_t nb,
                      std::size_t k0, std::size_t k1, std::uint32_t* cs, bool first) {
  for (std::size_t jc = 0; jc < nb; jc += CW) {
    const std::size_t ch = (j0 + jc) / CW, ncols = std::min(CW, nb - jc);
    std::size_t r = 0;
    for (; r + 4 <= mb; r += 4)
      fast_rows16<R, ZT, N, NS, 4>(g, i0 + r, ch, j0 + jc, ncols, k0, k1, cs + r * NB + jc, first);
    for (; r + 2 <= mb; r += 2)
      fast_rows16<R, ZT, N, NS, 2>(g, i0 + r, ch, j0 + jc, ncols, k0, k1, cs + r * NB + jc, first);
    if (r < mb) fast_rows16<R, ZT, N, NS, 1>(g, i0 + r, ch, j0 + jc, ncols, k0, k1, cs + r * NB + jc, first);
  }
}

// run_steps_fast16 for the instruction: its rounding, whether zero products need their test,
// whether its sums stay in 32-bit lanes.
using steps_fn_t = void (*)(const gemm_job&, std::size_t, std::size_t, std::size_t, std::size_t, std::size_t,
                            std::size_t, std::uint32_t*, bool);
template <bool ZT, bool N>
steps_fn_t fast16_for(result_rounding rho) {
  return rho == result_rounding::rz_fp32    ? &run_steps_fast16<result_rounding::rz_fp32, ZT, N, false>
         : rho == result_rounding::rz_e8m13 ? &run_steps_fast16<result_rounding::rz_e8m13, ZT, N, false>
                                            : &run_steps_fast16<result_rounding::rne_fp16, ZT, N, false>;
}
// ns: normalised significands (bf16/tf32 RZ-FP32 instructions only: every one of them).
steps_fn_t fast16_for(const model& md, bool ns) {
  const bool zt = md.e_zero > md.emin_a + md.emin_b;
  const bool narrow = (2 * std::int64_t(md.L) + 1) << (md.F + 1) < std::int64_t{1} << 31;
  if (ns)
    return zt ? (narrow ? &run_steps_fast16<result_rounding::rz_fp32, true, true, true>
                        : &run_steps_fast16<result_rounding::rz_fp32, true, false, true>)
              : (narrow ? &run_steps_fast16<result_rounding::rz_fp32, false, true, true>
                        : &run_steps_fast16<result_rounding::rz_fp32, false, false, true>);
  return zt ? (narrow ? fast16_for<true, true>(md.rho) : fast16_for<true, false>(md.rho))
            : (narrow ? fast16_for<false, true>(md.rho) : fast16_for<false, false>(md.rho));
}
#endif

// One scale code as an integer significand (fs fraction bits) and exponent (MMA-Sim
// frexp_and_normalize of the UE8M0 / UE4M3 value; UE4M3 is e4m3 with its sign bit cleared,
// helper.py:263-266). NaN codes are refused.
struct scale_value {
  std::uint32_t M;
  std::int32_t e;
};
scale_value split_scale(std::uint8_t code, const format& f, const char* what, std::size_t r, std::size_t c) {
  if (f.man_bits == 0) {  // ue8m0
    if (code == 0xFF)
      throw std::invalid_argument(std::string(what) + " scale [" + std::to_string(r) + "," + std::to_string(c) +
                                  "] is the UE8M0 NaN (0xff): NaN scales are not modelled");
    return {1u, std::int32_t(code) - 127};
  }
  code &= 0x7F;
  if (code == 0x7F)
    throw std::invalid_argument(std::string(what) + " scale [" + std::to_string(r) + "," + std::to_string(c) +
                                "] is the UE4M3 NaN (0x7f): NaN scales are not modelled");
  scale_value v{};
  split(to_bits(float(decode(code, f))), f.man_bits, f.emin(), v.M, v.e);
  return v;
}

// The K loop of the scalar GEMMs (block-scaled FP4 and CDNA3), per result: C in, then one
// instruction step of `depth` products at a time, `step(i, j, k0, c)` giving the accumulator
// after the step at k0 from the one before; with promotion (DeepSeek-V3's), each group of
// o.promote products from a zero accumulator, added into the binary32 total (promoted()), as the
// vector kernel's loop in gemm() does. OpenMP over rows.
template <class Step>
void scalar_k_loop(std::size_t m, std::size_t n, std::size_t kpad, std::size_t depth, const float* C, float* D,
                   const gemm_options& o, const Step& step) {
  const std::size_t group = o.promote ? o.promote : kpad;
  const int threads = o.threads > 0 ? o.threads : omp_get_max_threads();
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      std::uint32_t total = C ? to_bits(C[i * n + j]) : 0u;
      for (std::size_t g0 = 0; g0 < kpad; g0 += group) {
        std::uint32_t c = o.promote ? 0u : total;
        for (std::size_t k0 = g0; k0 < std::min(kpad, g0 + group); k0 += depth) c = step(i, j, k0, c);
        total = o.promote ? promoted(total, c) : c;
      }
      std::memcpy(&D[i * n + j], &total, 4);
    }
}

#if defined(FPSCOPE_MMA_AVX512)
// The tasks of the vector kernels of MXFP4/NVFP4 and CDNA3 (below): RB rows x one chunk of CW
// columns each, OpenMP-parallel; run(i0, mb, ch, ncols, k0, k1, cs) runs the steps k0 .. k1 of
// those rows on the accumulators cs (float32, row r at cs + r * CW). C in, D out, with
// DeepSeek-V3's promotion as scalar_k_loop has it.
template <std::size_t RB, class Run>
void chunk_tasks(std::size_t m, std::size_t n, std::size_t kpad, const float* C, float* D, const gemm_options& o,
                 const Run& run) {
  const std::size_t chunks = (n + CW - 1) / CW, row_blocks = (m + RB - 1) / RB;
  const std::size_t group = o.promote ? o.promote : kpad;
  const int threads = o.threads > 0 ? o.threads : omp_get_max_threads();
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (std::size_t t = 0; t < row_blocks * chunks; ++t) {
    const std::size_t ch = t / row_blocks, i0 = (t % row_blocks) * RB, mb = std::min(RB, m - i0);
    const std::size_t ncols = std::min(CW, n - ch * CW);
    alignas(64) float total[RB * CW] = {}, c[RB * CW];
    for (std::size_t r = 0; r < mb; ++r)
      for (std::size_t j = 0; j < ncols; ++j) total[r * CW + j] = C ? C[(i0 + r) * n + ch * CW + j] : 0.0f;
    if (!o.promote) {
      run(i0, mb, ch, ncols, 0, kpad, total);
    } else {
      for (std::size_t k0 = 0; k0 < kpad; k0 += group) {
        std::fill(c, c + RB * CW, 0.0f);
        run(i0, mb, ch, ncols, k0, std::min(kpad, k0 + group), c);
        for (std::size_t x = 0; x < RB * CW; ++x)
          total[x] = from_bits<float>(promoted(to_bits(total[x]), to_bits(c[x])));
      }
    }
    for (std::size_t r = 0; r < mb; ++r) std::memcpy(&D[(i0 + r) * n + ch * CW], &total[r * CW], ncols * 4);
  }
}

// gst_fdpa (below, gemm_grouped) in vector lanes, AVX-512 (F and DQ). Why it is the model's
// arithmetic:
//  - an e2m1 product is a multiple of 1/4 of magnitude at most 36, so a group's 16 products
//    and every partial sum of them (at most 576, 12 significant bits) are exact in float32,
//    whatever the order: the group sums are a plain float32 GEMM over the group (vfmadd231ps,
//    16 columns a vector, eight rows sharing B's loads);
//  - a group's term is S * M_x * M_y * 2^(e_x + e_y - 2 fs) (M the scales' significands, fs
//    fraction bits each): S * M_x * M_y has at most 12 + 8 significant bits, exact in float32,
//    and the exponent e_g = e_x + e_y (UE8M0 pairs reach 2^+-254) stays beside it as a float,
//    as the normalised-significand variant of the main kernel does; e_zero where the group's
//    products are all zero (A's and B's nonzero-element bitmasks of the group share no bit) or
//    a scale is zero (UE4M3 0x00);
//  - truncating a term to F = 35 fraction bits of 2^e_max is trunc(t * 2^(e_g - 2 fs + F - e_max)):
//    vscalefps (exact where the result reaches 1; below 1 it truncates to 0 whatever its
//    rounding) and vcvttps2qq, toward zero, into 64-bit lanes (terms reach 2^47); C's term the
//    same with 2^(F - e_max);
//  - the exact 64-bit sum's RZ-FP32 is vcvtqq2ps and vscalefps with embedded round-toward-zero
//    (truncations nest: the main kernel's argument), 2^128 and up made inf, -0 made +0;
//  - an inf or NaN accumulator is kept (NaN canonical), as the scalar step does; e2m1 has no
//    specials and NaN scales are refused.
struct fp4_operands {
  std::size_t groups;                  // kpad / 16: the groups along K
  std::vector<float> av;               // m x kpad: A's values (0 for padding)
  std::vector<std::uint32_t> am;       // m x groups: bit t set where the group's element t is nonzero
  std::vector<float> ae, as;           // m x groups: the exponent and significand of the group's A scale
  std::vector<float> bv;               // per chunk of CW columns, kpad x CW: B's values
  std::vector<std::uint32_t> bm;       // per chunk, groups x CW: as am, down B's columns
  std::vector<float> be, bs;           // per chunk, groups x CW: B's scales, as ae and as
};

constexpr std::size_t FP4_G = 16;  // products a group (instruction::group of every mxf4 instruction)

// RR rows from i x chunk ch, steps k0 .. k1 (of ik products) on the accumulators cs (float32,
// row r at cs + r * CW).
template <int RR>
void fp4_rows(const model& md, const fp4_operands& P, std::size_t kpad, std::size_t ik, int fs, std::size_t i,
              std::size_t ch, std::size_t k0, std::size_t k1, float* cs) {
  const __m512 zero = _mm512_setzero_ps(), ezero = _mm512_set1_ps(float(md.e_zero)), Fv = _mm512_set1_ps(float(md.F));
  const __m512 emin = _mm512_set1_ps(-126.0f), Ft = _mm512_set1_ps(float(md.F - 2 * fs));
  const __m512 inf = _mm512_set1_ps(INFINITY), nan = _mm512_set1_ps(from_bits<float>(canonical_nan));
  const std::size_t gq = P.groups, gs = ik / FP4_G;
  const float* bv = P.bv.data() + ch * kpad * CW;
  const float* bsc = P.bs.data() + ch * gq * CW;
  const float* bex = P.be.data() + ch * gq * CW;
  const std::uint32_t* bmk = P.bm.data() + ch * gq * CW;
  const float* av[RR];
  __m512 c[RR];
  for (int r = 0; r < RR; ++r) {
    av[r] = P.av.data() + (i + std::size_t(r)) * kpad;
    c[r] = _mm512_loadu_ps(cs + std::size_t(r) * CW);
  }
  const auto lo256 = [](__m512 x) { return _mm512_castps512_ps256(x); };
  const auto hi256 = [](__m512 x) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)); };
  // A group's exponent e_g and scale significand product, e_zero rule applied.
  const auto group_scale = [&](int r, std::size_t qg, __m512& sc) {
    const std::size_t at = (i + std::size_t(r)) * gq + qg;
    sc = _mm512_mul_ps(_mm512_set1_ps(P.as[at]), _mm512_loadu_ps(bsc + qg * CW));
    const __m512 eg = _mm512_add_ps(_mm512_set1_ps(P.ae[at]), _mm512_loadu_ps(bex + qg * CW));
    const __mmask16 none = _mm512_testn_epi32_mask(
        _mm512_set1_epi32(int(P.am[at])), _mm512_loadu_si512(reinterpret_cast<const void*>(bmk + qg * CW)));
    return _mm512_mask_mov_ps(eg, none | _mm512_cmp_ps_mask(sc, zero, _CMP_EQ_OQ), ezero);
  };
  for (std::size_t k = k0; k < k1; k += ik) {
    const std::size_t q0 = k / FP4_G;
    __m512 emax[RR];
    __m512i lo[RR], hi[RR];
    for (int r = 0; r < RR; ++r) {  // C's exponent (split(): at least -126; a zero C: e_zero)
      const __m512 e = _mm512_max_ps(_mm512_getexp_ps(c[r]), emin);
      emax[r] = _mm512_mask_mov_ps(e, _mm512_cmp_ps_mask(c[r], zero, _CMP_EQ_OQ), ezero);
      for (std::size_t q = 0; q < gs; ++q) {
        __m512 sc;
        emax[r] = _mm512_max_ps(emax[r], group_scale(r, q0 + q, sc));
      }
      const __m512 t = _mm512_scalef_ps(c[r], _mm512_sub_ps(Fv, emax[r]));  // C's term
      lo[r] = _mm512_cvttps_epi64(lo256(t));
      hi[r] = _mm512_cvttps_epi64(hi256(t));
    }
    for (std::size_t q = 0; q < gs; ++q) {
      __m512 g[RR];
      for (int r = 0; r < RR; ++r) g[r] = zero;
      const std::size_t kq = k + q * FP4_G;
      for (std::size_t kk = kq; kk < kq + FP4_G; ++kk) {
        const __m512 b = _mm512_loadu_ps(bv + kk * CW);
        for (int r = 0; r < RR; ++r) g[r] = _mm512_fmadd_ps(_mm512_set1_ps(av[r][kk]), b, g[r]);
      }
      for (int r = 0; r < RR; ++r) {
        __m512 sc;
        const __m512 eg = group_scale(r, q0 + q, sc);
        const __m512 t = _mm512_scalef_ps(_mm512_mul_ps(g[r], sc), _mm512_add_ps(_mm512_sub_ps(eg, emax[r]), Ft));
        lo[r] = _mm512_add_epi64(lo[r], _mm512_cvttps_epi64(lo256(t)));
        hi[r] = _mm512_add_epi64(hi[r], _mm512_cvttps_epi64(hi256(t)));
      }
    }
    for (int r = 0; r < RR; ++r) {
      const __m256 xl = _mm512_cvt_roundepi64_ps(lo[r], _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
      const __m256 xh = _mm512_cvt_roundepi64_ps(hi[r], _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
      const __m512 x =
          _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(xl)), _mm256_castps_pd(xh), 1));
      const __m512 base = _mm512_sub_ps(emax[r], Fv);
      __m512 next = _mm512_scalef_round_ps(x, base, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
      const __mmask16 ovf =
          _mm512_cmp_ps_mask(_mm512_add_ps(_mm512_getexp_ps(x), base), _mm512_set1_ps(128.0f), _CMP_GE_OQ);
      next = _mm512_add_ps(_mm512_mask_mul_ps(next, ovf, next, inf), zero);  // -0 to +0
      // 0x99: NaN (quiet, signalling) or an infinity: kept, a NaN canonical
      const __m512 kept = _mm512_mask_mov_ps(c[r], _mm512_fpclass_ps_mask(c[r], 0x81), nan);
      c[r] = _mm512_mask_mov_ps(next, _mm512_fpclass_ps_mask(c[r], 0x99), kept);
    }
  }
  for (int r = 0; r < RR; ++r) _mm512_storeu_ps(cs + std::size_t(r) * CW, c[r]);
}

// gemm_grouped on fp4_rows: A and B checked and packed, the scales split per group, then
// chunk_tasks of eight rows.
void gemm_grouped_fast(const instruction& inst, const model& md, std::size_t m, std::size_t n, std::size_t k,
                       const float* A, const float* B, const float* C, float* D, const gemm_options& o,
                       const std::vector<scale_value>& sa, const std::vector<scale_value>& sb) {
  const std::size_t ik = std::size_t(inst.k), kpad = (k + ik - 1) / ik * ik;
  const std::size_t blk = std::size_t(inst.block), nblk = (k + blk - 1) / blk, gq = kpad / FP4_G;
  const std::size_t chunks = (n + CW - 1) / CW;
  fp4_operands P;
  P.groups = gq;
  P.av.assign(m * kpad, 0.0f);
  P.am.assign(m * gq, 0u);
  P.bv.assign(chunks * kpad * CW, 0.0f);
  P.bm.assign(chunks * gq * CW, 0u);
  // e2m1 is finite: check_element refuses every special
  for_each_checked(A, m, k, inst.a, "A", [&](std::size_t r, std::size_t c, float v) {
    P.av[r * kpad + c] = v;
    P.am[r * gq + c / FP4_G] |= std::uint32_t(v != 0) << (c % FP4_G);
  });
  for_each_checked(B, k, n, inst.b, "B", [&](std::size_t r, std::size_t c, float v) {
    P.bv[((c / CW) * kpad + r) * CW + c % CW] = v;
    P.bm[((c / CW) * gq + r / FP4_G) * CW + c % CW] |= std::uint32_t(v != 0) << (r % FP4_G);
  });
  // The scales per group (padding groups take the last block's, as the scalar step: all-zero there)
  P.ae.resize(m * gq), P.as.resize(m * gq), P.be.assign(chunks * gq * CW, 0.0f), P.bs.assign(chunks * gq * CW, 0.0f);
  for (std::size_t q = 0; q < gq; ++q) {
    const std::size_t b = std::min(q * FP4_G / blk, nblk - 1);
    for (std::size_t i = 0; i < m; ++i) {
      P.ae[i * gq + q] = float(sa[i * nblk + b].e);
      P.as[i * gq + q] = float(sa[i * nblk + b].M);
    }
    for (std::size_t j = 0; j < n; ++j) {
      P.be[((j / CW) * gq + q) * CW + j % CW] = float(sb[b * n + j].e);
      P.bs[((j / CW) * gq + q) * CW + j % CW] = float(sb[b * n + j].M);
    }
  }
  const int fs = inst.scale.man_bits;
  chunk_tasks<8>(m, n, kpad, C, D, o,
                 [&](std::size_t i0, std::size_t mb, std::size_t ch, std::size_t, std::size_t k0, std::size_t k1, float* cs) {
    std::size_t r = 0;
    for (; r + 8 <= mb; r += 8) fp4_rows<8>(md, P, kpad, ik, fs, i0 + r, ch, k0, k1, cs + r * CW);
    for (; r + 4 <= mb; r += 4) fp4_rows<4>(md, P, kpad, ik, fs, i0 + r, ch, k0, k1, cs + r * CW);
    for (; r + 2 <= mb; r += 2) fp4_rows<2>(md, P, kpad, ik, fs, i0 + r, ch, k0, k1, cs + r * CW);
    if (r < mb) fp4_rows<1>(md, P, kpad, ik, fs, i0 + r, ch, k0, k1, cs + r * CW);
  });
}
#endif

// MXFP4 / NVFP4 (MMA-Sim fdpa.py:248-276 gst_fdpa): per step of 64 products, each group of 16
// products summed exactly (FP4 products are multiples of 1/4 below 36: exact in binary32, as
// in the model), the group sum times its block's two scales one term with the scales' exponents,
// e_zero where the group's products are all zero or a scale is zero; then the truncated fused sum
// with F = 35. With AVX-512 it runs in vector lanes (gemm_grouped_fast, above); this scalar step
// is the fallback of builds without it.
void gemm_grouped(const instruction& inst, const model& md, std::size_t m, std::size_t n, std::size_t k,
                  const float* A, const float* B, const float* C, float* D, const gemm_options& o) {
  if (!o.a_scale || !o.b_scale)
    throw std::invalid_argument(inst.name + " is block-scaled: it needs the scales of A and of B");
  const std::size_t ik = std::size_t(inst.k), kpad = (k + ik - 1) / ik * ik;
  const std::size_t blk = std::size_t(inst.block), nblk = (k + blk - 1) / blk, G = std::size_t(inst.group);
  std::vector<scale_value> as(m * nblk), bs(nblk * n);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t b = 0; b < nblk; ++b) as[i * nblk + b] = split_scale(o.a_scale[i * nblk + b], inst.scale, "A", i, b);
  for (std::size_t b = 0; b < nblk; ++b)
    for (std::size_t j = 0; j < n; ++j) bs[b * n + j] = split_scale(o.b_scale[b * n + j], inst.scale, "B", b, j);
#if defined(FPSCOPE_MMA_AVX512)
  if (inst.group == int(FP4_G) && ik % FP4_G == 0)  // every mxf4 instruction: groups of 16, k = 64
    return gemm_grouped_fast(inst, md, m, n, k, A, B, C, D, o, as, bs);  // the same step in vector lanes
#endif
  split_matrix sa, sb;
  std::vector<std::uint8_t> nfa, nfb;
  split_checked(A, m, k, m, kpad, inst.a, "A", sa, nfa);  // e2m1: finite, no specials
  split_checked(B, k, n, kpad, n, inst.b, "B", sb, nfb);
  // FP4 values in units of 2^-(p) (p = 1): M << (e - emin), an integer up to 12.
  const auto units = [&](const split_matrix& x, std::size_t at) -> std::int32_t {
    const std::int32_t v = x.M[at] ? std::int32_t(x.M[at] << (x.e[at] - inst.a.emin())) : 0;
    return x.s[at] ? -v : v;
  };
  const int fa = inst.a.man_bits, fs = inst.scale.man_bits;
  scalar_k_loop(m, n, kpad, ik, C, D, o,
                [&](std::size_t i, std::size_t j, std::size_t k0, std::uint32_t c) -> std::uint32_t {
    if ((c & 0x7F800000u) == 0x7F800000u)  // inf or NaN accumulator: kept (NaN canonical)
      return (c & 0x7FFFFFu) ? canonical_nan : c;
    std::uint32_t cM;
    std::int32_t ce;
    split(c & 0x7FFFFFFFu, 23, -126, cM, ce);
    std::int32_t emax = cM ? ce : md.e_zero;
    std::int64_t sum[8];
    std::int32_t eg[8];
    std::uint64_t sc[8];
    const std::size_t groups = ik / G;
    for (std::size_t q = 0; q < groups; ++q) {
      std::int64_t S = 0;
      bool all_zero = true;
      for (std::size_t t = k0 + q * G; t < k0 + (q + 1) * G; ++t) {
        const std::int32_t p = units(sa, i * kpad + t) * units(sb, t * n + j);
        S += p;
        all_zero = all_zero && p == 0;
      }
      const std::size_t b = std::min((k0 + q * G) / blk, nblk - 1);
      const scale_value x = as[i * nblk + b], y = bs[b * n + j];
      sum[q] = S;
      sc[q] = std::uint64_t(x.M) * y.M;
      eg[q] = all_zero || sc[q] == 0 ? md.e_zero : x.e + y.e;
      emax = std::max(emax, eg[q]);
    }
    // C: M_c * 2^(ce - 23); a group: S * Mx * My * 2^(eg - 2 fa - 2 fs) (S in units 2^-2fa)
    const auto shifted = [](std::uint64_t mag, int sh) {
      return sh >= 0 ? mag << sh : (-sh < 64 ? mag >> -sh : 0);
    };
    std::int64_t acc = std::int64_t(shifted(cM, ce - emax + md.F - 23));
    if (c >> 31) acc = -acc;
    for (std::size_t q = 0; q < groups; ++q) {
      const std::uint64_t mag = std::uint64_t(sum[q] < 0 ? -sum[q] : sum[q]) * sc[q];
      const auto t = std::int64_t(shifted(mag, eg[q] - emax + md.F - 2 * fa - 2 * fs));
      acc += sum[q] < 0 ? -t : t;
    }
    finish<result_rounding::rz_fp32>(md, &acc, &emax, &c, 1);
    return c;
  });
}

#if defined(FPSCOPE_MMA_AVX512)
// tr_fdpa / gtr_fdpa (below, gemm_tr) in vector lanes, AVX-512 (F and DQ), for inputs whose
// products are exact and normal in float32 and below 2^128 (fp16, fp8/bf8: gemm_tr decides). Why
// it is the model's arithmetic:
//  - a product a * b is exact in float32; its alignment exponent is e_a + e_b of the split
//    operands (zeros carry zero_e: they take no part), and truncating it to F fraction bits of
//    2^e_p is trunc(a b 2^(F - e_p)) (vscalefps, exact where the result reaches 1, and
//    vcvttps2dq, toward zero: the sign-magnitude truncation); L <= 16 terms below 2^(F + 2),
//    F = 24, sum exactly in 32-bit lanes (gtr: the even and the odd products apart, each at its
//    own largest exponent);
//  - the rest runs in double lanes, where every value is exact (at most 2^38 at a quantum of at
//    least 2^-158): the halves floored into units of 2^(e_p - F), C and S floored to F and
//    F2 + 1 bits of 2^e_max (vrndscalepd toward -inf after vscalefpd), added, the sum floored
//    to F2 + 1 significant bits at binary32's subnormal quantum, then vcvtpd2ps: nearest-even to
//    binary32 (overflow to inf, a sum that rounds to zero keeping its sign, as finish() does);
//  - a step with an inf or NaN input or accumulator is the scalar step's (`step`), as is gtr's
//    rule for such a C.
struct tr_operands {
  std::vector<float> av, ae;  // m x kpad: A's values (0 for zeros, padding, specials), split exponents (zero_e)
  std::vector<float> bv, be;  // per chunk of CW columns, kpad x CW: the same for B
  std::vector<std::uint8_t> row_sp, chunk_sp;  // per (row, step), (step, chunk): a special input there
};

// RR rows from i x chunk ch (ncols real columns from jc), steps k0 .. k1 on the accumulators cs
// (float32, row r at cs + r * CW).
template <bool SPLIT, int RR, class Step>
void tr_rows(const instruction& inst, const model& md, const tr_operands& P, std::size_t kpad, std::size_t n,
             std::size_t i, std::size_t ch, std::size_t jc, std::size_t ncols, std::size_t k0, std::size_t k1, float* cs,
             const Step& step) {
  const std::size_t L = std::size_t(md.L), steps = kpad / L, chunks = (n + CW - 1) / CW;
  const __m512 Fv = _mm512_set1_ps(float(md.F));
  const __m512 lowest = _mm512_set1_ps(2.0f * float(zero_e));
  const __m512d F2p = _mm512_set1_pd(inst.F2 + 1), Fd = _mm512_set1_pd(md.F), F2d = _mm512_set1_pd(inst.F2);
  const __m512d qmin = _mm512_set1_pd(-126 - inst.F2), emin = _mm512_set1_pd(-126), zd = _mm512_setzero_pd();
  const __m512d none = _mm512_set1_pd(zero_e / 2), drop = _mm512_set1_pd(-md.F - 1);
  constexpr int down = _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC;
  const float* bv = P.bv.data() + ch * kpad * CW;
  const float* be = P.be.data() + ch * kpad * CW;
  const float *av[RR], *ae[RR];
  __m512 c[RR];
  for (int r = 0; r < RR; ++r) {
    av[r] = P.av.data() + (i + std::size_t(r)) * kpad;
    ae[r] = P.ae.data() + (i + std::size_t(r)) * kpad;
    c[r] = _mm512_loadu_ps(cs + std::size_t(r) * CW);
  }
  for (std::size_t k = k0; k < k1; k += L) {
    __m512 eh[RR][2];  // the largest exponent of the even and the odd products (tr: [0] of all)
    __m512i sh[RR][2];
    for (int r = 0; r < RR; ++r) eh[r][0] = eh[r][1] = lowest;
    for (std::size_t kk = k; kk < k + L; ++kk) {
      const __m512 b = _mm512_loadu_ps(be + kk * CW);
      const int h = SPLIT ? int(kk & 1) : 0;
      for (int r = 0; r < RR; ++r) eh[r][h] = _mm512_max_ps(eh[r][h], _mm512_add_ps(_mm512_set1_ps(ae[r][kk]), b));
    }
    __m512 s[RR][2];
    for (int r = 0; r < RR; ++r)
      for (int h = 0; h < (SPLIT ? 2 : 1); ++h) {
        s[r][h] = _mm512_sub_ps(Fv, eh[r][h]);
        sh[r][h] = _mm512_setzero_si512();
      }
    for (std::size_t kk = k; kk < k + L; ++kk) {
      const __m512 b = _mm512_loadu_ps(bv + kk * CW);
      const int h = SPLIT ? int(kk & 1) : 0;
      for (int r = 0; r < RR; ++r) {
        const __m512 p = _mm512_mul_ps(_mm512_set1_ps(av[r][kk]), b);
        sh[r][h] = _mm512_add_epi32(sh[r][h], _mm512_cvttps_epi32(_mm512_scalef_ps(p, s[r][h])));
      }
    }
    const std::size_t st = k / L;
    for (int r = 0; r < RR; ++r) {
      alignas(64) float out[CW];
      for (int half = 0; half < 2; ++half) {
        const auto lo = [half](__m512 x) {
          return _mm512_cvtps_pd(half ? _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1))
                                      : _mm512_castps512_ps256(x));
        };
        const auto loi = [half](__m512i x) {
          return _mm512_cvtepi32_pd(half ? _mm512_extracti64x4_epi64(x, 1) : _mm512_castsi512_si256(x));
        };
        __m512d ep, S;
        if constexpr (SPLIT) {
          const __m512d e0 = lo(eh[r][0]), e1 = lo(eh[r][1]);
          ep = _mm512_max_pd(e0, e1);
          S = _mm512_add_pd(_mm512_roundscale_pd(_mm512_scalef_pd(loi(sh[r][0]), _mm512_sub_pd(e0, ep)), down),
                            _mm512_roundscale_pd(_mm512_scalef_pd(loi(sh[r][1]), _mm512_sub_pd(e1, ep)), down));
        } else {
          ep = lo(eh[r][0]);
          S = loi(sh[r][0]);
        }
        const __m512d cd = lo(c[r]);
        const __m512d ce = _mm512_max_pd(_mm512_getexp_pd(cd), emin);  // a zero C: -126
        const __mmask8 prods = _mm512_cmp_pd_mask(ep, none, _CMP_GE_OQ);
        const __m512d emax = _mm512_mask_max_pd(ce, prods, ce, ep);
        __m512d V = _mm512_scalef_pd(_mm512_roundscale_pd(_mm512_scalef_pd(cd, _mm512_sub_pd(Fd, emax)), down),
                                     _mm512_sub_pd(F2p, Fd));
        if constexpr (SPLIT)  // fdpa.py:410: a C more than F + 1 binades below e_max is dropped
          V = _mm512_mask_mov_pd(V, _mm512_cmp_pd_mask(ce, _mm512_add_pd(emax, drop), _CMP_LT_OQ), zd);
        const __m512d Sp = _mm512_roundscale_pd(
            _mm512_scalef_pd(S, _mm512_add_pd(_mm512_sub_pd(ep, emax), _mm512_sub_pd(F2p, Fd))), down);
        V = _mm512_mask_add_pd(V, prods, V, Sp);
        const __m512d x = _mm512_scalef_pd(V, _mm512_sub_pd(emax, F2p));
        const __m512d q = _mm512_max_pd(_mm512_sub_pd(_mm512_getexp_pd(x), F2d), qmin);  // getexp(0): -inf
        const __m512d xf =
            _mm512_scalef_pd(_mm512_roundscale_pd(_mm512_scalef_pd(x, _mm512_sub_pd(zd, q)), down), q);
        _mm256_store_ps(out + 8 * half, _mm512_cvtpd_ps(xf));
      }
      const bool row_sp = P.row_sp[(i + std::size_t(r)) * steps + st] != 0;
      // 0x99: NaN (quiet, signalling) or an infinity
      if (row_sp || P.chunk_sp[st * chunks + ch] || _mm512_fpclass_ps_mask(c[r], 0x99)) {
        alignas(64) float old[CW];
        _mm512_store_ps(old, c[r]);
        for (std::size_t j = 0; j < ncols; ++j) out[j] = from_bits<float>(step(i + std::size_t(r), jc + j, k, to_bits(old[j])));
      }
      c[r] = _mm512_load_ps(out);
    }
  }
  for (int r = 0; r < RR; ++r) _mm512_storeu_ps(cs + std::size_t(r) * CW, c[r]);
}

// gemm_tr on tr_rows: the split operands packed, then chunk_tasks of four rows. Lanes with a
// special input take `step`, the scalar step.
template <class Step>
void gemm_tr_fast(const instruction& inst, const model& md, std::size_t m, std::size_t n, std::size_t k,
                  std::size_t kpad, const float* A, const float* B, const float* C, float* D, const gemm_options& o,
                  const split_matrix& sa, const split_matrix& sb, const std::vector<std::uint8_t>& nfa,
                  const std::vector<std::uint8_t>& nfb, const Step& step) {
  const std::size_t L = std::size_t(md.L), steps = kpad / L, chunks = (n + CW - 1) / CW;
  tr_operands P;
  P.av.assign(m * kpad, 0.0f);
  P.ae.assign(m * kpad, float(zero_e));
  P.bv.assign(chunks * kpad * CW, 0.0f);
  P.be.assign(chunks * kpad * CW, float(zero_e));
  P.row_sp.assign(m * steps, 0);
  P.chunk_sp.assign(steps * chunks, 0);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t t = 0; t < k; ++t) {
      const std::size_t at = i * kpad + t;
      if (sa.M[at]) P.av[at] = A[i * k + t], P.ae[at] = float(sa.e[at]);
      P.row_sp[i * steps + t / L] |= nfa[at];
    }
  for (std::size_t t = 0; t < k; ++t)
    for (std::size_t j = 0; j < n; ++j) {
      const std::size_t at = t * n + j, to = ((j / CW) * kpad + t) * CW + j % CW;
      if (sb.M[at]) P.bv[to] = B[at], P.be[to] = float(sb.e[at]);
      P.chunk_sp[(t / L) * chunks + j / CW] |= nfb[at];
    }
  chunk_tasks<4>(m, n, kpad, C, D, o,
                 [&](std::size_t i0, std::size_t mb, std::size_t ch, std::size_t ncols, std::size_t k0, std::size_t k1,
                     float* cs) {
    const auto rows = [&]<int RR>(std::size_t r) {
      if (inst.split_even_odd)
        tr_rows<true, RR>(inst, md, P, kpad, n, i0 + r, ch, ch * CW, ncols, k0, k1, cs + r * CW, step);
      else
        tr_rows<false, RR>(inst, md, P, kpad, n, i0 + r, ch, ch * CW, ncols, k0, k1, cs + r * CW, step);
    };
    std::size_t r = 0;
    for (; r + 4 <= mb; r += 4) rows.template operator()<4>(r);
    for (; r < mb; ++r) rows.template operator()<1>(r);
  });
}
#endif

// AMD CDNA3 (MMA-Sim fdpa.py:335-352 tr_fdpa), per step of L products and C:
//  - a product of value 2^128 or more is an infinity (fdpa.py:341-342); zero products take no
//    part (exponent -999, fdpa.py:343);
//  - the products alone: aligned to their largest exponent e_p, truncated toward zero to F = 24
//    fraction bits, summed exactly (S, units 2^(e_p - 24));
//  - e_max = max(e_p, e_c) (a zero C has e_c = -126); S and C are floored (toward -inf) to
//    F2 + 1 = 32 and F = 24 fraction bits of 2^e_max, added, the sum floored to F2 + 1 = 32
//    significant bits (2^-157 below binary32's normal range) and rounded nearest-even to binary32.
// The scalar step below; with AVX-512, fp16 and fp8/bf8 inputs run in vector lanes (gemm_tr_fast,
// above), the lanes with a special input through this step.
void gemm_tr(const instruction& inst, const model& md, std::size_t m, std::size_t n, std::size_t k, const float* A,
             const float* B, const float* C, float* D, const gemm_options& o) {
  const std::size_t ik = std::size_t(inst.k), kpad = (k + ik - 1) / ik * ik, L = std::size_t(inst.L);
  split_matrix sa, sb;
  std::vector<std::uint8_t> nfa, nfb;
  split_checked(A, m, k, m, kpad, inst.a, "A", sa, nfa);
  split_checked(B, k, n, kpad, n, inst.b, "B", sb, nfb);
  const int fp = inst.a.man_bits + inst.b.man_bits;
  const auto floor_shift = [](std::int64_t v, int sh) {  // v * 2^sh, floored (arithmetic shift)
    return sh >= 0 ? v * (std::int64_t{1} << sh) : (-sh < 63 ? v >> -sh : (v < 0 ? -1 : 0));
  };
  const auto step = [&](std::size_t i, std::size_t j, std::size_t k0, std::uint32_t c) -> std::uint32_t {
    // Specials first: NaN, inf, inf * 0, and products of 2^128 and up (infinities here).
    bool nan = false, pinf = false, ninf = false, nan_p = false, pinf_p = false, ninf_p = false;
    const float cv = from_bits<float>(c);
    if (std::isnan(cv)) nan = true;
    else if (std::isinf(cv)) (cv > 0 ? pinf : ninf) = true;
    std::int32_t e_p = std::numeric_limits<std::int32_t>::min();
    for (std::size_t t = k0; t < k0 + L; ++t) {
      const std::size_t ia = i * kpad + t, ib = t * n + j;
      const bool neg = (sa.s[ia] ^ sb.s[ib]) != 0;
      if (nfa[ia] || nfb[ib]) {
        const float x = A[i * k + t], y = B[t * n + j];
        if (std::isnan(x) || std::isnan(y) || x == 0 || y == 0) {
          nan = true;
          nan_p = true;
        }
        else {
          (neg ? ninf : pinf) = true;
          (neg ? ninf_p : pinf_p) = true;
        }
        continue;
      }
      const std::uint64_t p = std::uint64_t(sa.M[ia]) * sb.M[ib];
      if (!p) continue;
      const std::int32_t e = sa.e[ia] + sb.e[ib];
      if (e + (63 - __builtin_clzll(p)) - fp >= 128) {  // value p * 2^(e - fp) >= 2^128
        (neg ? ninf : pinf) = true;
        (neg ? ninf_p : pinf_p) = true;
        continue;
      }
      e_p = std::max(e_p, e);
    }
    // gtr_fdpa drops a C more than F + 1 binades below the products (fdpa.py:410); an inf
    // or NaN C has the exponent -1 there (torch.frexp's 0, normalised), so it is dropped,
    // the result finite, when the products reach 2^25: MMA-Sim's behaviour, followed here.
    const bool c_special = (c & 0x7F800000u) == 0x7F800000u;
    const bool products_special = nan_p || pinf_p || ninf_p;
    if (inst.split_even_odd && c_special && !products_special &&
        e_p != std::numeric_limits<std::int32_t>::min() && e_p > md.F) {
      c = 0;
      nan = pinf = ninf = false;
    }
    if (nan || (pinf && ninf)) return canonical_nan;
    if (pinf || ninf) return pinf ? 0x7F800000u : 0xFF800000u;
    const bool no_products = e_p == std::numeric_limits<std::int32_t>::min();
    // The truncated fused sum of the products t0, t0 + stride, ... (units 2^(e - F), e their
    // largest exponent; none: e stays at the minimum).
    const auto fused = [&](std::size_t t0, std::size_t stride, std::int32_t& e) {
      e = std::numeric_limits<std::int32_t>::min();
      for (std::size_t t = t0; t < k0 + L; t += stride) {
        const std::size_t ia = i * kpad + t, ib = t * n + j;
        if (sa.M[ia] != 0 && sb.M[ib] != 0) e = std::max(e, sa.e[ia] + sb.e[ib]);
      }
      std::int64_t sum = 0;
      for (std::size_t t = t0; t < k0 + L && e != std::numeric_limits<std::int32_t>::min(); t += stride) {
        const std::size_t ia = i * kpad + t, ib = t * n + j;
        const std::uint64_t p = std::uint64_t(sa.M[ia]) * sb.M[ib];
        if (!p) continue;
        const int sh = sa.e[ia] + sb.e[ib] - e + md.F - fp;  // trunc(p * 2^sh), magnitude
        const auto mag = std::int64_t(sh >= 0 ? p << sh : (-sh < 64 ? p >> -sh : 0));
        sum += (sa.s[ia] ^ sb.s[ib]) ? -mag : mag;
      }
      return sum;
    };
    std::int64_t S = 0;
    if (!no_products && !inst.split_even_odd) {
      std::int32_t e_all;
      S = fused(k0, 1, e_all);
    } else if (!no_products) {  // fdpa.py:399-404: even and odd halves, floored into one at e_p
      std::int32_t e_even, e_odd;
      const std::int64_t s_even = fused(k0, 2, e_even), s_odd = fused(k0 + 1, 2, e_odd);
      if (e_even != std::numeric_limits<std::int32_t>::min()) S += floor_shift(s_even, e_even - e_p);
      if (e_odd != std::numeric_limits<std::int32_t>::min()) S += floor_shift(s_odd, e_odd - e_p);
    }
    std::uint32_t cM;
    std::int32_t ce;
    split(c & 0x7FFFFFFFu, 23, -126, cM, ce);
    const std::int64_t cs = (c >> 31) ? -std::int64_t(cM) : std::int64_t(cM);
    const std::int32_t e_max = no_products ? ce : std::max(e_p, ce);
    // V in units 2^(e_max - F2 - 1): C (units 2^(ce - 23)) floored to F bits of 2^e_max, S
    // (units 2^(e_p - F)) floored to F2 + 1 bits.
    const int F2p = inst.F2 + 1;
    std::int64_t V = floor_shift(cs, ce - e_max + md.F - 23) * (std::int64_t{1} << (F2p - md.F));
    if (inst.split_even_odd && ce < e_max - md.F - 1) V = 0;  // fdpa.py:410: C far below is dropped
    if (!no_products) V += floor_shift(S, e_p - e_max + F2p - md.F);
    // the sum floored to F2 + 1 significant bits (quantum at least 2^(-126 - F2))
    const int base = e_max - F2p;  // the value is V * 2^base
    if (V != 0) {
      const std::uint64_t mag = std::uint64_t(V < 0 ? -V : V);
      const int msb = 63 - __builtin_clzll(mag);
      const int drop = std::max(msb - inst.F2, -126 - inst.F2 - base);
      if (drop > 0) V = floor_shift(V, -drop) * (std::int64_t{1} << drop);
    }
    std::int32_t emax_f = base + md.F;  // finish() takes acc * 2^(emax - F)
    finish<result_rounding::rne_fp32>(md, &V, &emax_f, &c, 1);
    return c;
  };
#if defined(FPSCOPE_MMA_AVX512)
  // The vector lanes (above tr_operands) where every product is exact and normal in float32
  // (and so below 2^128): fp16 and fp8/bf8 inputs by their formats; bf16 and xf32 by their data,
  // every value in [2^-63, 2^64) (in_half_range; at most 2 x 11 significant bits a product).
  const bool by_format = inst.a.emax() + inst.b.emax() + 2 <= 127 && md.emin_a - md.pa + md.emin_b - md.pb >= -126;
  if (md.F <= 28 && md.L <= 16 && md.pa + md.pb + 2 <= 24 &&
      (by_format || (in_half_range(A, m * k) && in_half_range(B, k * n))))
    return gemm_tr_fast(inst, md, m, n, k, kpad, A, B, C, D, o, sa, sb, nfa, nfb, step);
#endif
  scalar_k_loop(m, n, kpad, L, C, D, o, step);
}

}  // namespace

void gemm(const instruction& inst, std::size_t m, std::size_t n, std::size_t k, const float* A, const float* B,
          const float* C, float* D, const gemm_options& o) {
  const model md(inst);
  const std::size_t ik = std::size_t(inst.k);
  const std::size_t kpad = (k + ik - 1) / ik * ik;
  if (o.promote && o.promote % ik)
    throw option_error("--promote: " + std::to_string(o.promote) + " is not a multiple of the instruction's k (" +
                       std::to_string(ik) + ")");
  std::uint64_t mn = 0, mk = 0, kn = 0;
  if (__builtin_mul_overflow(std::uint64_t(m), std::uint64_t(n), &mn) ||
      __builtin_mul_overflow(std::uint64_t(m), std::uint64_t(kpad), &mk) ||
      __builtin_mul_overflow(std::uint64_t(kpad), std::uint64_t(n), &kn) || mn > max_gemm_elements ||
      mk > max_gemm_elements || kn > max_gemm_elements)
    throw std::invalid_argument("gemm: " + std::to_string(m) + " x " + std::to_string(n) + " x " + std::to_string(k) +
                                " is beyond the limit of 2^30 elements per matrix");
  if (k == 0) throw std::invalid_argument("gemm: k is 0 (an empty product)");
  const bool fine = o.a_scale_1x128 || o.b_scale_128x128;
  if (fine) check_fine_scales(inst, m, n, k, o);
  if (m == 0 || n == 0) return;
  if (inst.arith != arithmetic::fdpa) {  // CDNA1, CDNA2 (mma_amd.cpp): one step of inst.L products at a time
    if (o.a_scale || o.b_scale) throw std::invalid_argument(inst.name + " is not block-scaled: it takes no scales");
    if (amd::gemm_fast(inst, m, n, k, A, B, C, D, o)) return;  // the vector kernels (mma_amd.cpp)
    split_matrix sa, sb;  // the operands checked (f32 C: any float)
    std::vector<std::uint8_t> nfa, nfb;
    split_checked(A, m, k, m, k, inst.a, "A", sa, nfa);
    split_checked(B, k, n, k, n, inst.b, "B", sb, nfb);
    const std::size_t L = std::size_t(inst.L);
    return scalar_k_loop(m, n, kpad, L, C, D, o, [&](std::size_t i, std::size_t j, std::size_t k0, std::uint32_t c) {
      float a[4] = {}, b[4] = {};  // K padded with zeros
      for (std::size_t t = 0; t < L && k0 + t < k; ++t) {
        a[t] = A[i * k + k0 + t];
        b[t] = B[(k0 + t) * n + j];
      }
      return amd::step(inst, a, b, c, k0 % ik == 0);
    });
  }
  if (inst.F2) {
    if (o.a_scale || o.b_scale) throw std::invalid_argument(inst.name + " is not block-scaled: it takes no scales");
    return gemm_tr(inst, md, m, n, k, A, B, C, D, o);
  }
  if (inst.group) {
    if (C)
      for (std::size_t x = 0; x < m * n; ++x)
        if (!exactly_in(C[x], inst.c)) throw std::invalid_argument("C: not float32 values");
    return gemm_grouped(inst, md, m, n, k, A, B, C, D, o);
  }
  split_matrix sa, sb;
  std::vector<std::uint8_t> nfa, nfb;
#if defined(FPSCOPE_MMA_AVX512)
  // The floating-point kernel (above packed_operands) where its arithmetic is exact: unscaled
  // inputs of at most 11 significant bits, F <= 29 (every such NVIDIA instruction); their
  // products exact and normal in float32 by the formats (fp16, FP8/6/4), or, for bf16 and tf32,
  // by the data (every value in [2^-63, 2^64)).
  const bool lanes16 = !inst.block && md.F <= 29 && md.pa + md.pb + 2 <= 24 &&
                       (md.rho == result_rounding::rz_fp32 || md.rho == result_rounding::rz_e8m13 ||
                        md.rho == result_rounding::rne_fp16);
  const bool fast16 = lanes16 &&
                      ((inst.a.emax() + inst.b.emax() + 2 <= 127 && md.emin_a - md.pa + md.emin_b - md.pb >= -126) ||
                       (in_half_range(A, m * k) && in_half_range(B, k * n)));
  // Else, RZ-FP32 (every bf16/tf32 instruction): normalised significands in the float32 lanes.
  const bool ns = lanes16 && !fast16 && md.rho == result_rounding::rz_fp32;
  packed_operands packed;
  if (fast16 || ns) {
    pack_checked(A, B, m, n, k, kpad, inst, packed, nfa, nfb, ns);
  } else
#endif
  {
    split_checked(A, m, k, m, kpad, inst.a, "A", sa, nfa);
    split_checked(B, k, n, kpad, n, inst.b, "B", sb, nfb);
  }
  if (inst.block) apply_scales(inst, m, n, k, kpad, o, sa, sb);
  else if (o.a_scale || o.b_scale)
    throw std::invalid_argument(inst.name + " is not block-scaled: it takes no scales");
  if (C) {
    const input_check in_c(inst.c);
    for (std::size_t x = 0; x < m * n; ++x) {
      if (!in_c(C[x]))
        throw std::invalid_argument("C[" + std::to_string(x / n) + "," + std::to_string(x % n) + "] = " +
                                    number_text(C[x]) + " is not exactly a " + inst.c.name +
                                    " value (the instruction's C type)");
    }
  }
  const std::size_t L = std::size_t(inst.L), steps = kpad / L;
  std::vector<std::uint8_t> row_special(m * steps, 0), col_special(steps * n, 0);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t kk = 0; kk < k; ++kk)
      if (nfa[i * kpad + kk]) row_special[i * steps + kk / L] = 1;
  for (std::size_t kk = 0; kk < k; ++kk)
    for (std::size_t j = 0; j < n; ++j)
      if (nfb[kk * n + j]) col_special[(kk / L) * n + j] = 1;
  gemm_job g{md, m, n, k, kpad, A, B, sa, sb, row_special, col_special};
  const std::size_t group = fine ? fine_block : o.promote ? o.promote : kpad;
  // 1x128: A's scales per row and K-block, B's per K-block and 128 columns.
  const std::size_t fkb = (k + fine_block - 1) / fine_block, fnb = (n + fine_block - 1) / fine_block;
  auto steps_fn = md.rho == result_rounding::rz_fp32    ? &run_steps<result_rounding::rz_fp32>
                  : md.rho == result_rounding::rz_e8m13 ? &run_steps<result_rounding::rz_e8m13>
                                                        : &run_steps<result_rounding::rne_fp16>;
#if defined(FPSCOPE_MMA_AVX512)
  if (fast16 || ns) {
    chunk_flags(n, steps, col_special, packed);
    g.packed = &packed;
    steps_fn = fast16_for(md, ns);
  }
#endif
  const int threads = o.threads > 0 ? o.threads : omp_get_max_threads();
  const std::size_t blocks = (n + NB - 1) / NB, row_blocks = (m + MB - 1) / MB;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (std::size_t t = 0; t < row_blocks * blocks; ++t) {
    const std::size_t i0 = t / blocks * MB, mb = std::min(MB, m - i0);
    const std::size_t j0 = (t % blocks) * NB, nb = std::min(NB, n - j0);
    std::uint32_t c[MB * NB] = {}, total[MB * NB] = {};
    for (std::size_t r = 0; r < mb; ++r)
      for (std::size_t j = 0; j < nb; ++j) total[r * NB + j] = C ? to_bits(C[(i0 + r) * n + j0 + j]) : 0u;
    if (!o.promote && !fine) {
      steps_fn(g, i0, mb, j0, nb, 0, kpad, total, true);
    } else {
      // DeepSeek-V3's promotion: each group of `promote` from a zero accumulator, then added
      // into the binary32 total (promoted()); with 1x128 scales, times its scales (scaled()).
      for (std::size_t k0 = 0; k0 < kpad; k0 += group) {
        std::fill(c, c + MB * NB, 0u);
        steps_fn(g, i0, mb, j0, nb, k0, std::min(kpad, k0 + group), c, false);
        if (!fine) {
          for (std::size_t x = 0; x < MB * NB; ++x) total[x] = promoted(total[x], c[x]);
          continue;
        }
        const std::size_t kb = k0 / fine_block;
        for (std::size_t r = 0; r < mb; ++r)
          for (std::size_t j = 0; j < nb; ++j) {
            const float fsa = o.a_scale_1x128[(i0 + r) * fkb + kb], fsb = o.b_scale_128x128[kb * fnb + (j0 + j) / fine_block];
            total[r * NB + j] = scaled(total[r * NB + j], fsa * fsb, c[r * NB + j]);
          }
      }
    }
    for (std::size_t r = 0; r < mb; ++r)
      std::memcpy(&D[(i0 + r) * n + j0], &total[r * NB], nb * 4);
  }
}

dot_result measure(const instruction& inst, double value, double exact) {
  dot_result r;
  r.value = value;
  r.exact = exact;
  if (std::isnan(value) || std::isnan(exact)) {
    r.abs_error = r.rel_error = r.ulp_error = NAN;
    return r;
  }
  r.exact_zero = exact == 0;
  r.abs_error = value - exact;
  r.rel_error = r.exact_zero ? (r.abs_error == 0 ? 0.0 : INFINITY) : r.abs_error / std::fabs(exact);
  const int e = r.exact_zero ? inst.d.emin() : std::max(std::ilogb(exact), inst.d.emin());
  r.ulp_error = std::ldexp(r.abs_error, inst.d.man_bits - e);
  return r;
}

error_summary errors(const instruction& inst, std::size_t m, std::size_t n, std::size_t k, const float* A,
                     const float* B, const float* C, const float* D, const gemm_options& o, std::uint64_t limit) {
  error_summary r;
  const std::uint64_t total = std::uint64_t(m) * n;
  const std::uint64_t count = std::min<std::uint64_t>(total, limit);
  // The exact value through dot()'s exact sum, C entering as one more product, C * 1. With 1x128
  // scales, a * sa * b * sb has up to 2 (11 + 24) significant bits, beyond a double: each scale is
  // split into two halves of at most 12 bits (hi + lo, exactly), and the element's product enters
  // as the four products (a * sa_x) * (b * sb_y), each exact in a double (at most 2 x 23 bits).
  const bool fine = o.a_scale_1x128 && o.b_scale_128x128;
  const std::size_t terms = fine ? 4 : 1;
  const std::size_t fkb = (k + fine_block - 1) / fine_block, fnb = (n + fine_block - 1) / fine_block;
  const auto halves = [](float s) {  // s = hi + lo, each at most 12 significant bits
    if (s == 0) return std::pair{0.0, 0.0};
    const int e = std::ilogb(double(s));
    const double hi = std::ldexp(std::trunc(std::ldexp(double(s), 11 - e)), e - 11);
    return std::pair{hi, double(s) - hi};
  };
  std::vector<double> a(k * terms + 1), b(k * terms + 1);
  const accumulator acc{inst.d, rounding::rne, 0};
  double sum_rel = 0;
  std::uint64_t n_rel = 0;
  for (std::uint64_t s = 0; s < count; ++s) {
    const std::uint64_t at = count == total ? s : s * total / count;
    const std::size_t i = at / n, j = at % n;
    const std::size_t blk = std::size_t(inst.block), nblk = blk ? (k + blk - 1) / blk : 0;
    for (std::size_t t = 0; t < k; ++t) {
      a[t] = A[i * k + t];
      b[t] = B[t * n + j];
      if (blk && o.a_scale && o.b_scale) {  // exact: a scale times a few bits, in range
        const std::uint32_t mask = inst.scale.man_bits ? 0x7Fu : 0xFFu;  // UE4M3: the sign bit is ignored
        a[t] *= decode(o.a_scale[i * nblk + t / blk] & mask, inst.scale);
        b[t] *= decode(o.b_scale[(t / blk) * n + j] & mask, inst.scale);
      }
    }
    if (fine)  // from the last element down: a[t], b[t] are read before their slots are overwritten
      for (std::size_t t = k; t-- > 0;) {
        const auto [ah, al] = halves(o.a_scale_1x128[i * fkb + t / fine_block]);
        const auto [bh, bl] = halves(o.b_scale_128x128[(t / fine_block) * fnb + j / fine_block]);
        const double x = a[t], y = b[t];
        a[4 * t] = x * ah, b[4 * t] = y * bh;
        a[4 * t + 1] = x * ah, b[4 * t + 1] = y * bl;
        a[4 * t + 2] = x * al, b[4 * t + 2] = y * bh;
        a[4 * t + 3] = x * al, b[4 * t + 3] = y * bl;
      }
    a[k * terms] = C ? C[at] : 0.0;
    b[k * terms] = 1.0;
    const dot_result e = measure(inst, D[at], dot(a, b, acc).exact);
    ++r.checked;
    if (std::isnan(e.rel_error)) {
      ++r.undefined;
      continue;
    }
    if (e.abs_error != 0) ++r.differ;
    const double rel = std::fabs(e.rel_error);
    r.max_abs_rel = std::max(r.max_abs_rel, rel);
    r.max_abs_ulp = std::max(r.max_abs_ulp, std::fabs(e.ulp_error));
    if (!e.exact_zero && std::isfinite(rel)) {
      sum_rel += rel;
      ++n_rel;
    }
  }
  r.mean_abs_rel = n_rel ? sum_rel / double(n_rel) : 0.0;
  return r;
}

std::vector<k_point> k_sweep(const instruction& inst, std::size_t m, std::size_t n, std::size_t k, const float* A,
                             const float* B, const float* C, const std::vector<std::size_t>& ks,
                             const gemm_options& o, std::uint64_t limit) {
  std::vector<k_point> out;
  std::vector<float> a, d(m * n);
  std::vector<std::uint8_t> sa;
  std::vector<float> fa;
  const std::size_t blk = std::size_t(inst.block), nblk = blk ? (k + blk - 1) / blk : 0;
  for (const std::size_t K : ks) {
    if (K == 0 || K > k)
      throw std::invalid_argument("k_sweep: K = " + std::to_string(K) + " is not in 1.." + std::to_string(k));
    // A's first K columns, contiguous; B's first K rows already are.
    a.resize(m * K);
    for (std::size_t i = 0; i < m; ++i) std::copy(A + i * k, A + i * k + K, a.begin() + std::ptrdiff_t(i * K));
    gemm_options go = o;
    if (blk && o.a_scale) {  // A's scales of the first blocks, row by row; B's are its first rows
      const std::size_t nb = (K + blk - 1) / blk;
      sa.resize(m * nb);
      for (std::size_t i = 0; i < m; ++i)
        std::copy(o.a_scale + i * nblk, o.a_scale + i * nblk + nb, sa.begin() + std::ptrdiff_t(i * nb));
      go.a_scale = sa.data();
    }
    if (o.a_scale_1x128) {  // the same for the 1x128 recipe's A scales
      const std::size_t full = (k + fine_block - 1) / fine_block, nb = (K + fine_block - 1) / fine_block;
      fa.resize(m * nb);
      for (std::size_t i = 0; i < m; ++i)
        std::copy(o.a_scale_1x128 + i * full, o.a_scale_1x128 + i * full + nb, fa.begin() + std::ptrdiff_t(i * nb));
      go.a_scale_1x128 = fa.data();
    }
    gemm(inst, m, n, K, a.data(), B, C, d.data(), go);
    out.push_back({K, errors(inst, m, n, K, a.data(), B, C, d.data(), go, limit)});
  }
  return out;
}

void run(const instruction& inst, const float* A, const float* B, const float* C, float* D) {
  gemm(inst, std::size_t(inst.m), std::size_t(inst.n), std::size_t(inst.k), A, B, C, D, {0, 1});
}

}  // namespace fpscope::mma
