// THE one place where a binary32/binary64 input becomes the bits of a target format.
//
// Every conversion, scalar or bulk, host or device, ends here, with one exception: the bulk
// float32 nearest-even loops of lib/src/convert.cpp use a shorter form of the same arithmetic
// for the IEEE/"fn" formats (rne_fast), proven equal by the exhaustive oracle sweeps and the
// bulk == scalar unit tests. The policy itself is resolved only here (prepare). The input is taken apart on
// its bit pattern into an integer significand m and the number d of low bits the target's
// quantum drops; the significand is rounded once on those bits, and the packed result is
// built by *adding* the rounded significand to the exponent code, so a carry out of the
// significand moves into the exponent (subnormal -> normal, max -> overflow) by itself.
// All policy (overflow, NaN, inf, zero sign) is decided after rounding, by format style.
//
// The body is written as selects rather than early returns so that the bulk loops, which
// instantiate it with a constant format and rounding mode, vectorise and run at the same
// speed whatever the input range. C++17, __host__ __device__, no globals.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>
#if __cplusplus >= 202002L
#include <bit>
#endif

#include "fpscope/detail/config.hpp"
#include "fpscope/format.hpp"
#include "fpscope/policy.hpp"

namespace fpscope {

/// IEEE exception flags, as bits of the mask the flag-reporting API fills.
enum flag : unsigned {
  flag_inexact = 0x01,
  flag_underflow = 0x02,  ///< tiny after rounding and inexact
  flag_overflow = 0x04,
  flag_infinite = 0x08,  ///< exact infinite result from finite operands (division by zero)
  flag_invalid = 0x10,
};

/// The 32 random bits stochastic rounding uses for element `index` under `seed`:
/// the top half of splitmix64's output mixer applied to seed + (index + 1) * 0x9E3779B97F4A7C15.
/// A dropped fraction f (in units of the result's last place, kept to 32 bits) rounds away
/// from zero when f + bits / 2^32 >= 1, so with probability f.
FPSCOPE_HD constexpr std::uint32_t sr_bits(std::uint64_t seed, std::uint64_t index) {
  std::uint64_t z = seed + (index + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<std::uint32_t>(z >> 32);
}

namespace detail {

template <class T>
struct binary;
template <>
struct binary<float> {
  using bits = std::uint32_t;
  static constexpr int width = 32, man = 23, bias = 127;
  static constexpr bits exp_mask = 0x7F800000u;  ///< the exponent field: also +inf
};
template <>
struct binary<double> {
  using bits = std::uint64_t;
  static constexpr int width = 64, man = 52, bias = 1023;
  static constexpr bits exp_mask = 0x7FF0000000000000ull;  ///< the exponent field: also +inf
};

// std::bit_cast where the language has it, so that what is built on these (round_odd.hpp) is
// constexpr on the host; memcpy for the C++17 CUDA target.
template <class T>
FPSCOPE_HD FPSCOPE_INLINE constexpr typename binary<T>::bits to_bits(T x) {
#if defined(__cpp_lib_bit_cast) && !defined(__CUDACC__)
  return std::bit_cast<typename binary<T>::bits>(x);
#else
  typename binary<T>::bits u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}
template <class T>
FPSCOPE_HD inline constexpr T from_bits(typename binary<T>::bits u) {
#if defined(__cpp_lib_bit_cast) && !defined(__CUDACC__)
  return std::bit_cast<T>(u);
#else
  T x;
  std::memcpy(&x, &u, sizeof u);
  return x;
#endif
}

/// The NaN code a NaN input of sign `sign` (moved to its place) becomes, before any payload
/// bits (see packer::nan_payload).
FPSCOPE_HD constexpr std::uint32_t nan_code(const format& f, const policy& p, std::uint32_t sign) {
  const std::uint32_t all_ones = f.mask() & ~f.sign_mask();
  const bool canonical = p.nan == nan_style::canonical;
  switch (f.specials) {
    case special::ieee:
      return canonical ? all_ones : sign | f.inf_bits() | (std::uint32_t{1} << (f.man_bits - 1));
    case special::fn: return canonical ? all_ones : all_ones | sign;
    case special::fnuz: return f.sign_mask();
    case special::e8m0: return f.mask();
    case special::finite:
      return p.nan_finite == nan_to_finite::max ? f.max_finite_bits() : sign ^ f.sign_mask();
  }
  return all_ones;
}

/// What overflow to "infinity" produces: inf, else the sign-kept NaN, else max finite.
FPSCOPE_HD FPSCOPE_INLINE constexpr std::uint32_t infinity_code(const format& f, std::uint32_t sign) {
  switch (f.specials) {
    case special::ieee: return sign | f.inf_bits();
    case special::fn: return sign | (f.mask() & ~f.sign_mask());
    case special::fnuz: return f.sign_mask();
    case special::e8m0: return f.mask();
    case special::finite: return sign | f.max_finite_bits();
  }
  return 0;
}

/// m / 2^d rounded to an integer by `rm` (d >= 1). Each mode is one add-and-shift: the bias
/// added below the rounding point carries into the kept bits exactly when the mode rounds
/// away from zero. Integer arithmetic only (no bool lanes), so bulk loops vectorise.
/// `neg_m` is all ones for a negative input, else 0. `rnd` is the stochastic-rounding draw: the top min(d, 32) dropped bits plus as many
/// random bits carry with probability equal to the dropped fraction.
template <class U>
FPSCOPE_HD FPSCOPE_INLINE U round_significand(U m, int d, rounding rm, U neg_m, std::uint32_t rnd) {
  constexpr U one = 1;
  const U low = (one << d) - 1;
  const U half = one << (d - 1);
  U bias = 0;
  switch (rm) {
    case rounding::rne: bias = half - 1 + ((m >> d) & one); break;
    case rounding::rna: bias = half; break;
    case rounding::rtz: break;
    case rounding::rup: bias = low & ~neg_m; break;
    case rounding::rdn: bias = low & neg_m; break;
    case rounding::rto: return (m >> d) | (((m & low) + low) >> d);  // sticky into the last bit
    case rounding::sr: {
      const int k = d < 32 ? d : 32;
      bias = static_cast<U>(static_cast<U>(rnd >> (32 - k)) << (d - k));
      break;
    }
  }
  return (m + bias) >> d;
}

/// A policy resolved, for one format and rounding mode, into the constants round_pack needs:
/// every policy decision is made here, once, so that the per-element code is selects of
/// constants. Two-element arrays are indexed by the input's sign (0 positive, 1 negative).
template <class U>
struct packer {
  U max_code;     ///< magnitude bits of the largest finite value
  U ovf[2];       ///< code of a finite result beyond max_code (inf, NaN or max finite)
  U inf[2];       ///< code of an infinite input
  U nan[2];       ///< code of a NaN input, before payload bits
  U nan_payload;  ///< mask on the input fraction's top bits carried into a NaN (x86 style)
  U daz;          ///< all ones: subnormal inputs read as signed zero
  U ftz;          ///< all ones: subnormal results flush to signed zero
  std::uint64_t seed;
};

/// Resolves `p` for format `f` and rounding mode `rm` (which may differ from p.round).
template <class U>
FPSCOPE_HD constexpr packer<U> prepare(const format& f, const policy& p, rounding rm) {
  packer<U> k{};
  const bool saturate = p.on_overflow == overflow::saturate;
  k.max_code = f.max_finite_bits();
  for (int s = 0; s < 2; ++s) {
    const std::uint32_t sign = s ? f.sign_mask() : 0u;
    // IEEE: rounding toward zero never overflows to inf, nor do the directed modes on their
    // far side; round-to-odd behaves as toward zero here.
    const bool to_max = saturate || rm == rounding::rtz || rm == rounding::rto ||
                        (rm == rounding::rup && s) || (rm == rounding::rdn && !s);
    k.ovf[s] = to_max ? (sign | f.max_finite_bits()) : infinity_code(f, sign);
    k.nan[s] = nan_code(f, p, sign);
    // Without inf, inf input becomes what overflow to "infinity" gives: an OCP "fn" format its
    // NaN S.1111.111 with the sign kept whatever the NaN style (CUDA __NV_NOSAT: 0x7F | sign),
    // fnuz and e8m0 their NaN, fp6/fp4 max finite.
    k.inf[s] = saturate && p.saturate_inf ? (sign | f.max_finite_bits()) : infinity_code(f, sign);
  }
  k.nan_payload = f.specials == special::ieee && p.nan == nan_style::payload
                      ? (std::uint32_t{1} << f.man_bits) - 1 : 0u;
  k.daz = p.daz ? ~U{0} : U{0};
  k.ftz = p.ftz && f.subnormals ? ~U{0} : U{0};
  k.seed = p.seed;
  return k;
}

/// Round and pack one binary32/binary64 bit pattern `x` into format `f` with rounding `rm`,
/// under the resolved policy `k`. `index` keys stochastic rounding; with Flags, IEEE flags
/// are or-ed into *flags.
template <class In, bool Flags = false>
FPSCOPE_HD FPSCOPE_INLINE std::uint32_t round_pack(typename binary<In>::bits x, const format& f, rounding rm,
                                                   const packer<typename binary<In>::bits>& k,
                                                   std::uint64_t index = 0, unsigned* flags = nullptr) {
  using B = binary<In>;
  using U = typename B::bits;
  using S = typename std::make_signed<U>::type;
  constexpr U one = 1;
  constexpr U sign_in = one << (B::width - 1);
  constexpr U inf_in = B::exp_mask;
  constexpr U man_mask = (one << B::man) - 1;

  // Per-lane conditions are masks (all ones / zero) of the lane's width: the vectoriser
  // blends masks, not bools of another width.
  const auto sel = [](U mask, U yes, U no) { return (yes & mask) | (no & ~mask); };
  const auto mask_of = [](bool c) { return U{0} - U(c); };
  const U neg_m = U{0} - (x >> (B::width - 1));
  const U sign = (x >> (B::width - f.bits)) & f.sign_mask();  // the sign, moved to its place
  U a = x & ~sign_in;
  a &= ~(k.daz & mask_of(a <= man_mask));
  const U nan_m = mask_of(a > inf_in);
  const U inf_m = mask_of(a == inf_in);

  // Finite path: |x| = m * 2^(ef1 - bias_in - man_in), m with its hidden bit. The target's
  // quantum is 2^(max(e, emin) - man): below the format's normal range (biased input exponent
  // ef1 < emin_in) `extra` more bits drop. Input subnormals have ef1 = 1 <= emin_in for every
  // built-in format but e8m0, whose smallest value 2^-127 is itself a float32 subnormal.
  const U ef = a >> B::man;
  U ef1 = ef > 0 ? ef : one;
  U m = a - ((ef1 - 1) << B::man);
  const S emin_in = S(f.emin() + B::bias);
  // e8m0 reaches below float32's normal range without subnormals of its own: there an input
  // subnormal is normalised, so that ef1 is its true biased exponent (<= 0, wrapping) and m
  // has its hidden bit. Converting the integer m to In is exact and finds its leading bit.
  if (!f.subnormals && emin_in < 1) {
    const U sub = mask_of(ef == 0 && m != 0);
    const U lead = (to_bits(static_cast<In>(static_cast<S>(m))) >> B::man) - U(B::bias);
    const U shift = (U(B::man) - lead) & sub;
    m <<= shift;
    ef1 -= shift;
  }
  const S below = emin_in - S(ef1);
  const U extra = below > 0 ? U(below) : U{0};
  const U d_full = U(B::man - f.man_bits) + extra;
  const U d = d_full < U(B::man + 2) ? d_full : U(B::man + 2);  // beyond that every bit is below half a quantum
  const std::uint32_t rnd = rm == rounding::sr ? sr_bits(k.seed, index) : 0u;
  U r = round_significand(m, int(d), rm, neg_m, rnd);
  if (rm == rounding::sr) {
    // Stochastic rounding still needs the fraction where all of m drops (d clamped): carry
    // when floor(m * 2^(32 - d_full)) + rnd >= 2^32. That floor fits in 32 bits here.
    const U up = d_full < U(32) ? U(32) - d_full : U{0};
    const U dn = d_full > U(32) ? (d_full - 32 < U(B::width - 1) ? d_full - 32 : U(B::width - 1)) : U{0};
    r = sel(mask_of(d_full > d), U(((m << up) >> dn) > U(~rnd)), r);
  }
  // Packing by addition: the exponent code below the hidden bit, plus the rounded significand,
  // so a carry out of the significand moves into the exponent (subnormal -> normal, max ->
  // overflow) by itself. Unsigned wrap-around makes e8m0's code -1 + 1 come out as 0.
  const U e_eff = ef1 + extra;
  U mag = ((e_eff - U(B::bias) + U(f.bias) - one) << f.man_bits) + r;
  if (!f.subnormals) mag &= ~mask_of(below > 0);  // e8m0: its smallest value stands for all below
  const U flush_m = k.ftz & mask_of(mag - 1 < (one << f.man_bits) - 1);
  mag &= ~flush_m;

  const U ovf_m = mask_of(mag > k.max_code);
  U finite = sel(ovf_m, sel(neg_m, k.ovf[1], k.ovf[0]), sign | mag);
  if (f.specials == special::fnuz) finite &= ~mask_of(mag == 0);  // no negative zero
  const U nan = sel(neg_m, k.nan[1], k.nan[0]) | ((a >> (B::man - f.man_bits)) & k.nan_payload);
  U out = sel(nan_m, nan, sel(inf_m, sel(neg_m, k.inf[1], k.inf[0]), finite));
  // e8m0 is unsigned with no zero: negatives and zero are NaN.
  if (f.specials == special::e8m0) out = sel((neg_m | mask_of(a == 0)) & ~nan_m, f.mask(), out);

  if constexpr (Flags) {
    const bool neg = neg_m != 0, ovf = ovf_m != 0;
    unsigned fl = 0;
    if (nan_m) {
      const bool signalling = (a & (one << (B::man - 1))) == 0;
      if (signalling || !f.has_nan()) fl |= flag_invalid;
    } else if (inf_m) {
      if (!f.has_inf()) fl |= flag_invalid;
    } else if (f.specials == special::e8m0 && (neg || a == 0)) {
      fl |= flag_invalid;
    } else {
      const U rem = m & ((one << d) - 1);
      const bool inexact = rem != 0 || ovf || flush_m != 0;
      if (inexact) fl |= flag_inexact;
      if (ovf) fl |= flag_overflow;
      // Tiny after rounding: below 2^emin once rounded to p bits with an unbounded exponent.
      // An input subnormal lies as many binades lower as m has leading zeros (none if
      // normalised above): bf16 and tf32 share float32's emin, so some round up to 2^emin.
      U mt = m;
      S bt = below;
      if (a != 0) {
        while ((mt >> B::man) == 0) {
          mt <<= 1;
          ++bt;
        }
      }
      bool tiny = a != 0 && bt > 1;
      if (a != 0 && bt == 1) {
        const U rn = round_significand(mt, B::man - f.man_bits, rm, neg_m, rnd);
        tiny = (rn >> (f.man_bits + 1)) == 0;  // did not carry up to 2^emin
      }
      if (tiny && inexact) fl |= flag_underflow;
    }
    *flags |= fl;
  }
  return static_cast<std::uint32_t>(out);
}

/// round_pack with the policy resolved on the spot (the scalar API).
template <class In, bool Flags = false>
FPSCOPE_HD inline std::uint32_t round_pack(typename binary<In>::bits x, const format& f, const policy& p,
                                           std::uint64_t index = 0, unsigned* flags = nullptr) {
  return round_pack<In, Flags>(x, f, p.round, prepare<typename binary<In>::bits>(f, p, p.round), index, flags);
}

/// Exact value of a code as double (every built-in format fits), NaN quiet with its payload.
FPSCOPE_HD inline double decode_bits(std::uint32_t bits, const format& f) {
  bits &= f.mask();
  const std::uint32_t mag = bits & ~f.sign_mask();
  const std::uint64_t sign = (bits & f.sign_mask()) ? std::uint64_t{1} << 63 : 0;
  const std::uint32_t frac = mag & ((1u << f.man_bits) - 1);
  if (f.is_nonfinite(bits)) {
    if (f.is_inf(bits)) return from_bits<double>(sign | 0x7FF0000000000000ull);
    // A NaN keeps its sign bit, unless that bit is the NaN itself (fnuz), and only IEEE formats
    // give the fraction a meaning (the payload).
    const std::uint64_t payload = f.specials == special::ieee ? std::uint64_t(frac) << (52 - f.man_bits) : 0;
    return from_bits<double>((mag ? sign : 0) | 0x7FF8000000000000ull | payload);
  }
  // Exponent code 0 holds the subnormals, in code 1's binade; without subnormals (e8m0) it is a
  // binade like the others.
  const std::uint32_t e = mag >> f.man_bits;
  const bool sub = f.subnormals && e == 0;
  const std::uint64_t sig = sub ? frac : frac | (1u << f.man_bits);
  const int scale = (sub ? 1 : int(e)) - f.bias - f.man_bits;
  const double v = double(sig) * from_bits<double>(std::uint64_t(scale + 1023) << 52);
  return sign ? -v : v;
}

}  // namespace detail
}  // namespace fpscope
