// THE one place where a binary32/binary64 input becomes the bits of a target format.
//
// Every conversion, scalar or bulk, host or device, ends here. The input is taken apart on
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
};
template <>
struct binary<double> {
  using bits = std::uint64_t;
  static constexpr int width = 64, man = 52, bias = 1023;
};

template <class T>
FPSCOPE_HD FPSCOPE_INLINE typename binary<T>::bits to_bits(T x) {
  typename binary<T>::bits u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}
template <class T>
FPSCOPE_HD inline T from_bits(typename binary<T>::bits u) {
  T x;
  std::memcpy(&x, &u, sizeof u);
  return x;
}

/// The NaN code a NaN input becomes. `payload` is the input's fraction field.
/// Written as selects, not a switch on the policy, so the bulk loops stay branch-free.
template <class U, int InMan>
FPSCOPE_HD FPSCOPE_INLINE constexpr std::uint32_t nan_code(const format& f, const policy& p,
                                                          std::uint32_t sign, U payload) {
  const std::uint32_t all_ones = f.mask() & ~f.sign_mask();
  const std::uint32_t canonical = p.nan == nan_style::canonical ? ~0u : 0u;
  const std::uint32_t keep_payload = p.nan == nan_style::payload ? ~0u : 0u;
  switch (f.specials) {
    case special::ieee: {
      const std::uint32_t quiet = f.inf_bits() | (std::uint32_t{1} << (f.man_bits - 1));
      const std::uint32_t kept = static_cast<std::uint32_t>(payload >> (InMan - f.man_bits)) & keep_payload;
      return (all_ones & canonical) | ((sign | quiet | kept) & ~canonical);
    }
    case special::fn: return all_ones | (sign & ~canonical);
    case special::fnuz: return f.sign_mask();
    case special::e8m0: return f.mask();
    case special::finite: {
      const std::uint32_t to_max = p.nan_finite == nan_to_finite::max ? ~0u : 0u;
      return (f.max_finite_bits() & to_max) | ((sign ^ f.sign_mask()) & ~to_max);
    }
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

/// Round and pack one binary32/binary64 bit pattern `x` into format `f` with rounding `rm`.
/// `index` keys stochastic rounding; with Flags, IEEE flags are or-ed into *flags.
template <class In, bool Flags = false>
FPSCOPE_HD FPSCOPE_INLINE std::uint32_t round_pack(typename binary<In>::bits x, const format& f, rounding rm,
                                           const policy& p, std::uint64_t index = 0,
                                           unsigned* flags = nullptr) {
  using B = binary<In>;
  using U = typename B::bits;
  constexpr U one = 1;
  constexpr U sign_in = one << (B::width - 1);
  constexpr U inf_in = ((one << (B::width - 1 - B::man)) - 1) << B::man;
  constexpr U man_mask = (one << B::man) - 1;

  // Per-lane conditions are masks (all ones / zero) of the lane's width, and policy switches
  // are turned into such masks once: the vectoriser blends masks but not mixed-width bools.
  const auto sel = [](U mask, U yes, U no) { return (yes & mask) | (no & ~mask); };
  const auto mask_if = [](bool c) { return c ? ~U{0} : U{0}; };
  const U neg_m = U{0} - (x >> (B::width - 1));
  const U sign = (x >> (B::width - f.bits)) & f.sign_mask();  // the sign, moved to its place
  U a = x & ~sign_in;
  a &= ~(mask_if(p.daz) & (U{0} - U(a <= man_mask)));
  const U nan_m = U{0} - U(a > inf_in);
  const U inf_m = U{0} - U(a == inf_in);

  // Finite path: value = m * 2^(e_unb - man); the target quantum is 2^(max(e, emin) - p).
  // Input subnormals take e_unb = emin_in <= emin of every format, so e_eff = emin for them.
  const U ef = a >> B::man;
  const U ef1 = ef > 0 ? ef : one;
  const int e_unb = int(ef1) - B::bias;
  const int emin = f.emin();
  const int e_eff = e_unb > emin ? e_unb : emin;
  int d = B::man - f.man_bits + (e_eff - e_unb);
  d = d < B::man + 2 ? d : B::man + 2;  // beyond that every bit is below half a quantum
  const U m = a - ((ef1 - 1) << B::man);  // the significand, hidden bit included
  const std::uint32_t rnd = rm == rounding::sr ? sr_bits(p.seed, index) : 0u;
  const U rem = m & ((one << d) - 1);
  const U r = round_significand(m, d, rm, neg_m, rnd);
  // Packing by addition: the exponent code below the hidden bit, plus the rounded significand.
  U mag = (static_cast<U>(e_eff + f.bias - 1) << f.man_bits) + r;
  if (!f.subnormals && e_unb < emin) mag = 0;  // e8m0: its smallest value stands for all below
  const U flush_m = mask_if(p.ftz && f.subnormals) & (U{0} - U(mag - 1 < (one << f.man_bits) - 1));
  mag &= ~flush_m;

  const U maxb = f.max_finite_bits();
  const U ovf_m = U{0} - U(mag > maxb);
  // IEEE: rounding toward zero never overflows to inf, nor do the directed modes on their far side.
  U to_max_m = mask_if(p.on_overflow == overflow::saturate || rm == rounding::rtz || rm == rounding::rto);
  if (rm == rounding::rup) to_max_m |= neg_m;
  if (rm == rounding::rdn) to_max_m |= ~neg_m;
  const U overflowed = sel(to_max_m, sign | maxb, infinity_code(f, std::uint32_t(sign)));
  U finite = sel(ovf_m, overflowed, sign | mag);
  if (f.specials == special::fnuz) finite &= ~(U{0} - U(mag == 0));  // no negative zero

  const bool sat_inf = p.on_overflow == overflow::saturate && p.saturate_inf;
  const U inf_out = sel(mask_if(sat_inf), sign | maxb,
                        f.specials == special::fn ? U(nan_code<U, B::man>(f, p, std::uint32_t(sign), 0))
                                                  : U(infinity_code(f, std::uint32_t(sign))));
  U out = sel(nan_m, nan_code<U, B::man>(f, p, std::uint32_t(sign), a & man_mask), sel(inf_m, inf_out, finite));
  // e8m0 is unsigned with no zero: negatives and zero are NaN.
  if (f.specials == special::e8m0) out = sel((neg_m | (U{0} - U(a == 0))) & ~nan_m, f.mask(), out);
  const bool neg = neg_m != 0, is_nan = nan_m != 0, is_inf = inf_m != 0, ovf = ovf_m != 0,
             flushed = flush_m != 0;

  if constexpr (Flags) {
    unsigned fl = 0;
    if (is_nan) {
      const bool signalling = (a & (one << (B::man - 1))) == 0;
      if (signalling || !f.has_nan()) fl |= flag_invalid;
    } else if (is_inf) {
      if (!f.has_inf()) fl |= flag_invalid;
    } else if (f.specials == special::e8m0 && (neg || a == 0)) {
      fl |= flag_invalid;
    } else {
      const bool inexact = rem != 0 || ovf || flushed;
      if (inexact) fl |= flag_inexact;
      if (ovf) fl |= flag_overflow;
      // Tiny after rounding: below 2^emin once rounded to p bits with an unbounded exponent.
      bool tiny = a != 0 && (ef == 0 || e_unb < emin - 1);
      if (e_unb == emin - 1 && ef != 0) {
        const U rn = round_significand(m, B::man - f.man_bits, rm, neg_m, rnd);
        tiny = (rn >> (f.man_bits + 1)) == 0;  // did not carry up to 2^emin
      }
      if (tiny && inexact) fl |= flag_underflow;
    }
    *flags |= fl;
  }
  return static_cast<std::uint32_t>(out);
}

/// Exact value of a code as double (every built-in format fits), NaN quiet with its payload.
FPSCOPE_HD inline double decode_bits(std::uint32_t bits, const format& f) {
  const std::uint32_t mag = bits & f.mask() & ~f.sign_mask();
  const bool neg = (bits & f.sign_mask()) != 0;
  const std::uint64_t sign = neg ? std::uint64_t{1} << 63 : 0;
  constexpr std::uint64_t qnan = 0x7FF8000000000000ull;
  switch (f.specials) {
    case special::ieee:
      if (mag >= f.inf_bits()) {
        const std::uint64_t payload = std::uint64_t(mag & ((1u << f.man_bits) - 1)) << (52 - f.man_bits);
        return from_bits<double>(sign | (payload ? qnan | payload : 0x7FF0000000000000ull));
      }
      break;
    case special::fn:
      if (mag == (f.mask() & ~f.sign_mask())) return from_bits<double>(sign | qnan);
      break;
    case special::fnuz:
      if (bits == f.sign_mask()) return from_bits<double>(qnan);
      break;
    case special::e8m0:
      if (bits == f.mask()) return from_bits<double>(qnan);
      return from_bits<double>(std::uint64_t(int(bits) - f.bias + 1023) << 52);
    case special::finite: break;
  }
  const std::uint32_t e = mag >> f.man_bits;
  const std::uint32_t frac = mag & ((1u << f.man_bits) - 1);
  const std::uint64_t sig = e ? frac | (1u << f.man_bits) : frac;
  const int scale = (e ? int(e) : 1) - f.bias - f.man_bits;
  const double v = double(sig) * from_bits<double>(std::uint64_t(scale + 1023) << 52);
  return neg ? -v : v;
}

}  // namespace detail
}  // namespace fpscope
