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
FPSCOPE_HD inline typename binary<T>::bits to_bits(T x) {
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
template <class U, int InMan>
FPSCOPE_HD constexpr std::uint32_t nan_code(const format& f, const policy& p, bool neg, U payload) {
  const std::uint32_t sign = neg ? f.sign_mask() : 0u;
  const std::uint32_t all_ones = f.mask() & ~f.sign_mask();
  switch (f.specials) {
    case special::ieee: {
      const std::uint32_t quiet = f.inf_bits() | (std::uint32_t{1} << (f.man_bits - 1));
      if (p.nan == nan_style::canonical) return all_ones;
      if (p.nan == nan_style::quiet) return sign | quiet;
      return sign | quiet | static_cast<std::uint32_t>(payload >> (InMan - f.man_bits));
    }
    case special::fn: return p.nan == nan_style::canonical ? all_ones : sign | all_ones;
    case special::fnuz: return f.sign_mask();
    case special::e8m0: return f.mask();
    case special::finite:
      return p.nan_finite == nan_to_finite::max ? f.max_finite_bits() : (neg ? 0u : f.sign_mask());
  }
  return all_ones;
}

/// What overflow to "infinity" produces: inf, else the sign-kept NaN, else max finite.
FPSCOPE_HD constexpr std::uint32_t infinity_code(const format& f, bool neg) {
  const std::uint32_t sign = neg ? f.sign_mask() : 0u;
  switch (f.specials) {
    case special::ieee: return sign | f.inf_bits();
    case special::fn: return sign | (f.mask() & ~f.sign_mask());
    case special::fnuz: return f.sign_mask();
    case special::e8m0: return f.mask();
    case special::finite: return sign | f.max_finite_bits();
  }
  return 0;
}

/// Round and pack one binary32/binary64 bit pattern `x` into format `f` with rounding `rm`.
/// `index` keys stochastic rounding; with Flags, IEEE flags are or-ed into *flags.
template <class In, bool Flags = false>
FPSCOPE_HD inline std::uint32_t round_pack(typename binary<In>::bits x, const format& f, rounding rm,
                                           const policy& p, std::uint64_t index = 0,
                                           unsigned* flags = nullptr) {
  using B = binary<In>;
  using U = typename B::bits;
  constexpr U one = 1;
  constexpr U sign_in = one << (B::width - 1);
  constexpr U inf_in = ((one << (B::width - 1 - B::man)) - 1) << B::man;
  constexpr U man_mask = (one << B::man) - 1;

  const bool neg = (x & sign_in) != 0;
  U a = x & ~sign_in;
  if (p.daz && a <= man_mask) a = 0;
  const bool is_nan = a > inf_in;
  const bool is_inf = a == inf_in;

  // Finite path: value = m * 2^(e_unb - man); the target quantum is 2^(max(e, emin) - p).
  // Input subnormals take e_unb = emin_in <= emin of every format, so e_eff = emin for them.
  const U ef = a >> B::man;
  const int e_unb = int(ef > 0 ? ef : one) - B::bias;
  const int emin = f.emin();
  const int e_eff = e_unb > emin ? e_unb : emin;
  int d = B::man - f.man_bits + (e_eff - e_unb);
  d = d < B::man + 2 ? d : B::man + 2;  // beyond that every bit is below half a quantum
  const U m = (a & man_mask) | (ef != 0 ? one << B::man : U{0});
  U q = m >> d;
  const U rem = m & ((one << d) - 1);
  const U half = one << (d - 1);
  U inc = 0;
  switch (rm) {
    case rounding::rne: inc = (rem > half) | ((rem == half) & (q & 1)); break;
    case rounding::rna: inc = rem >= half; break;
    case rounding::rtz: break;
    case rounding::rup: inc = (rem != 0) & !neg; break;
    case rounding::rdn: inc = (rem != 0) & neg; break;
    case rounding::rto: q |= (rem != 0); break;
    case rounding::sr: {
      const int k = d < 32 ? d : 32;
      const std::uint64_t top = static_cast<std::uint64_t>(rem >> (d - k));
      const std::uint64_t rnd = sr_bits(p.seed, index) >> (32 - k);
      inc = static_cast<U>((top + rnd) >> k);
      break;
    }
  }
  // Packing by addition: the exponent code below the hidden bit, plus the rounded significand.
  U mag = (static_cast<U>(e_eff + f.bias - 1) << f.man_bits) + q + inc;
  if (!f.subnormals && e_unb < emin) mag = 0;  // e8m0: its smallest value stands for all below
  const bool flushed = p.ftz && f.subnormals && mag != 0 && mag < (one << f.man_bits);
  if (flushed) mag = 0;

  const U maxb = f.max_finite_bits();
  const bool ovf = mag > maxb;
  const bool to_max = p.on_overflow == overflow::saturate || rm == rounding::rtz ||
                      rm == rounding::rto || (rm == rounding::rup && neg) ||
                      (rm == rounding::rdn && !neg);
  const std::uint32_t sign = neg ? f.sign_mask() : 0u;
  std::uint32_t finite = ovf ? (to_max ? sign | static_cast<std::uint32_t>(maxb) : infinity_code(f, neg))
                             : sign | static_cast<std::uint32_t>(mag);
  if (f.specials == special::fnuz && mag == 0) finite = 0;  // no negative zero

  const bool sat_inf = p.on_overflow == overflow::saturate && p.saturate_inf;
  const std::uint32_t inf_out =
      sat_inf ? sign | static_cast<std::uint32_t>(maxb)
              : (f.specials == special::fn ? nan_code<U, B::man>(f, p, neg, 0) : infinity_code(f, neg));
  std::uint32_t out = is_nan ? nan_code<U, B::man>(f, p, neg, a & man_mask) : is_inf ? inf_out : finite;
  // e8m0 is unsigned with no zero: negatives and zero are NaN.
  if (f.specials == special::e8m0 && (neg || a == 0) && !is_nan) out = f.mask();

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
        const int dn = B::man - f.man_bits;
        const U qn = m >> dn, rn = m & ((one << dn) - 1), hn = one << (dn - 1);
        U up = 0;
        switch (rm) {
          case rounding::rne: up = (rn > hn) | ((rn == hn) & (qn & 1)); break;
          case rounding::rna: up = rn >= hn; break;
          case rounding::rup: up = (rn != 0) & !neg; break;
          case rounding::rdn: up = (rn != 0) & neg; break;
          case rounding::sr: up = inc; break;  // same draw
          default: break;
        }
        tiny = ((qn + up) >> (f.man_bits + 1)) == 0;
      }
      if (tiny && inexact) fl |= flag_underflow;
    }
    *flags |= fl;
  }
  return out;
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
