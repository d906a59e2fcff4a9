// The independent reference: see reference.hpp and ref_exact.hpp.
#include "reference.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>

#include "ref_exact.hpp"

namespace ref {

using boost::multiprecision::cpp_int;
using fpscope::format;
using fpscope::rounding;
using fpscope::special;

rational pow2(int e) {
  if (e >= 0) return rational(cpp_int(1) << e);
  return rational(cpp_int(1), cpp_int(1) << -e);
}

// frexp splits d into a 53-bit integer significand and a power of two, both exact.
rational exact(double d) {
  if (d == 0) return rational(0);
  int e = 0;
  const double m = std::frexp(d, &e);  // d = m * 2^e, 0.5 <= |m| < 1
  const auto mi = static_cast<long long>(std::ldexp(m, 53));
  return rational(cpp_int(mi)) * pow2(e - 53);
}

double to_double_exact(const rational& r) {
  const cpp_int num = boost::multiprecision::numerator(r);
  const cpp_int den = boost::multiprecision::denominator(r);
  if (num == 0) return 0.0;
  // A dyadic rational has a power-of-two denominator.
  if (boost::multiprecision::msb(den) != boost::multiprecision::lsb(den))
    throw std::logic_error("reference value is not dyadic");
  // r = odd * 2^e exactly; it is a double when odd has at most 53 bits and 2^e keeps the
  // product in the normal range (then the conversion and ldexp below are exact).
  const cpp_int anum = num < 0 ? cpp_int(-num) : num;
  const auto tz = boost::multiprecision::lsb(anum);
  const cpp_int odd = anum >> tz;
  if (boost::multiprecision::msb(odd) >= 53) throw std::logic_error("reference value needs more than 53 bits");
  const int e = static_cast<int>(tz) - static_cast<int>(boost::multiprecision::msb(den));
  if (e < -1022 || e > 1023 - 53) throw std::logic_error("reference value out of the normal double range");
  const double d = std::ldexp(static_cast<double>(odd.convert_to<long long>()), e);
  return num < 0 ? -d : d;
}

code_info decode_fields(std::uint32_t code, const format& f) {
  if (f.bits < 32 && (code >> f.bits) != 0) throw std::logic_error("code wider than the format");
  const int p = f.man_bits, w = f.exp_bits;
  const std::uint32_t m_ones = (std::uint32_t{1} << p) - 1, e_ones = (std::uint32_t{1} << w) - 1;
  const std::uint32_t M = code & m_ones;
  const std::uint32_t E = (code >> p) & e_ones;
  const bool s = f.specials != special::e8m0 && ((code >> (f.bits - 1)) & 1u);
  code_info r{cls::normal, s, rational(0)};
  switch (f.specials) {
    case special::e8m0:  // OCP MX: 2^(E-127), 0xFF NaN
      if (code == 0xFF) return {cls::nan, false, rational(0)};
      return {cls::normal, false, pow2(int(E) - f.bias)};
    case special::ieee:
      if (E == e_ones) return {M == 0 ? cls::infinite : cls::nan, s, rational(0)};
      break;
    case special::fn:  // OCP E4M3: only S.1111.111 is NaN, no inf
      if (E == e_ones && M == m_ones) return {cls::nan, s, rational(0)};
      break;
    case special::fnuz:  // the negative-zero code is the one NaN
      if (s && E == 0 && M == 0) return {cls::nan, s, rational(0)};
      break;
    case special::finite: break;
  }
  // 2^(1-bias) * M/2^p and 2^(E-bias) * (1 + M/2^p), each written as one integer times a power
  // of two so that the rational is built (and normalised) once.
  const auto dyadic = [](cpp_int n, int e) {
    return e >= 0 ? rational(n << e) : rational(n, cpp_int(1) << -e);
  };
  if (E == 0) {
    if (M == 0) return {cls::zero, s, rational(0)};
    r.c = cls::subnormal;
    r.value = dyadic(cpp_int(M), 1 - f.bias - p);
  } else {
    r.value = dyadic((cpp_int(1) << p) + M, int(E) - f.bias - p);
  }
  if (s) r.value = -r.value;
  return r;
}

namespace {

table build(fpscope::format_id id) {
  table t;
  t.f = fpscope::builtin(id);
  const format& f = t.f;
  t.sign_bit = f.specials == special::e8m0 ? 0u : std::uint32_t{1} << (f.bits - 1);
  t.all_ones = ((std::uint32_t{1} << (f.bits - 1)) - 1) | (t.sign_bit ? 0u : std::uint32_t{1} << (f.bits - 1));
  t.inf_code = ((std::uint32_t{1} << f.exp_bits) - 1) << f.man_bits;
  t.has_zero = t.has_neg_zero = t.has_subnormals = false;

  struct entry {
    rational r;
    double d;
    std::uint32_t code;
  };
  std::vector<entry> es;
  const std::uint32_t codes = t.sign_bit ? t.sign_bit : (std::uint32_t{1} << f.bits);
  rational min_normal(-1);
  for (std::uint32_t c = 0; c < codes; ++c) {
    code_info ci = decode_fields(c, f);
    if (ci.c == cls::nan || ci.c == cls::infinite) continue;
    if (ci.c == cls::zero) t.has_zero = true;
    if (ci.c == cls::subnormal) t.has_subnormals = true;
    if (ci.c == cls::normal && (min_normal < 0 || ci.value < min_normal)) min_normal = ci.value;
    const double d = to_double_exact(ci.value);
    es.push_back({std::move(ci.value), d, c});
  }
  if (t.sign_bit) t.has_neg_zero = decode_fields(t.sign_bit, f).c == cls::zero;
  // Sorted by value (doubles that were just checked to be exact, so the order is exact).
  std::sort(es.begin(), es.end(), [](const entry& a, const entry& b) { return a.d < b.d; });
  for (std::size_t i = 0; i + 1 < es.size(); ++i)
    if (!(es[i].r < es[i + 1].r)) throw std::logic_error("duplicate or unordered values");
  for (const auto& e : es) {
    t.val.push_back(e.d);
    t.code.push_back(e.code);
  }
  // The value after max with an unbounded exponent: max + one unit in max's last place.
  const std::uint32_t maxc = es.back().code;
  const int emax_field = int((maxc >> f.man_bits) & ((1u << f.exp_bits) - 1));
  const rational next = es.back().r + pow2(emax_field - f.bias - f.man_bits);
  t.next = to_double_exact(next);
  for (std::size_t i = 0; i + 1 < es.size(); ++i)
    t.mid.push_back(to_double_exact((es[i].r + es[i + 1].r) / 2));
  t.mid.push_back(to_double_exact((es.back().r + next) / 2));
  t.min_normal = to_double_exact(min_normal);
  t.emin = std::ilogb(t.min_normal);
  if (std::ldexp(1.0, t.emin) != t.min_normal) throw std::logic_error("min normal not a power of two");
  return t;
}

}  // namespace

const table& get(fpscope::format_id id) {
  static std::array<std::unique_ptr<table>, fpscope::builtin_count> tables;
  static std::array<std::once_flag, fpscope::builtin_count> once;
  const auto i = static_cast<std::size_t>(id);
  std::call_once(once[i], [&] { tables[i] = std::make_unique<table>(build(id)); });
  return *tables[i];
}

input describe(float x) {
  input in;
  std::uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  in.is_float = true;
  in.man = 23;
  in.neg = std::signbit(x);
  in.nan = std::isnan(x);
  in.inf = std::isinf(x);
  in.subnormal = std::fpclassify(x) == FP_SUBNORMAL;
  in.payload = b & 0x7FFFFFu;
  in.signalling = in.nan && !(in.payload & 0x400000u);
  in.value = std::isfinite(x) ? double(x) : 0.0;
  return in;
}

input describe(double x) {
  input in;
  std::uint64_t b;
  std::memcpy(&b, &x, sizeof b);
  in.man = 52;
  in.neg = std::signbit(x);
  in.nan = std::isnan(x);
  in.inf = std::isinf(x);
  in.subnormal = std::fpclassify(x) == FP_SUBNORMAL;
  in.payload = b & 0xFFFFFFFFFFFFFull;
  in.signalling = in.nan && !(in.payload & 0x8000000000000ull);
  in.value = std::isfinite(x) ? x : 0.0;
  return in;
}

located locate(const table& t, const input& in, bool daz) {
  located l{};
  l.neg = in.neg;
  if (in.nan) {
    l.kind = located::nan;
    return l;
  }
  // e8m0 is unsigned and has no zero: every negative input (even -0, -inf) is invalid.
  if (t.f.specials == special::e8m0 && in.neg) {
    l.kind = located::e8m0_invalid;
    return l;
  }
  if (in.inf) {
    l.kind = located::inf;
    return l;
  }
  l.a = std::fabs(in.value);
  if (daz && in.subnormal) l.a = 0;  // DAZ: the input reads as (signed) zero
  if (l.a == 0) {
    l.kind = t.f.specials == special::e8m0 ? located::e8m0_invalid : located::zero;
    return l;
  }
  if (l.a >= t.next) {
    l.kind = located::beyond;  // rounds (with unbounded exponent) to next or more: overflow in every mode
    return l;
  }
  if (l.a < t.val[0]) {
    l.kind = located::below;  // e8m0 only: below its smallest value, which stands for all below
    return l;
  }
  l.kind = located::finite;
  l.lo = std::size_t(std::upper_bound(t.val.begin(), t.val.end(), l.a) - t.val.begin()) - 1;
  l.exact = t.val[l.lo] == l.a;
  l.vs_mid = l.a < t.mid[l.lo] ? -1 : l.a > t.mid[l.lo] ? 1 : 0;
  return l;
}

std::size_t pick(const table& t, const located& l, rounding r) {
  if (l.kind == located::below) return 0;
  if (l.kind == located::beyond) return t.n();
  if (l.exact) return l.lo;
  const std::size_t lo = l.lo, hi = l.lo + 1;  // hi == n(): the value past max
  const auto code_at = [&](std::size_t i) { return i < t.n() ? t.code[i] : t.max_code() + 1; };
  switch (r) {
    case rounding::rtz: return lo;
    case rounding::rup: return l.neg ? lo : hi;
    case rounding::rdn: return l.neg ? hi : lo;
    // "Even" and "odd" are the last bit of the significand. Where there are fraction bits that
    // is the code's last bit (adjacent values have adjacent codes). E8M0 has a 1-bit
    // significand, its implicit 1, so both neighbours are odd: its ties go up (as ml_dtypes'
    // RoundBitsToNearestEven on the implicit bit does) and round-to-odd (truncate, then set
    // the already set last bit) truncates.
    case rounding::rne:
      if (l.vs_mid != 0) return l.vs_mid < 0 ? lo : hi;
      if (t.f.man_bits == 0) return hi;
      return (code_at(lo) & 1u) == 0 ? lo : hi;  // tie: the even code
    case rounding::rna: return l.vs_mid < 0 ? lo : hi;
    case rounding::rto:  // inexact: the odd one
      if (t.f.man_bits == 0) return lo;
      return (code_at(lo) & 1u) ? lo : hi;
    case rounding::sr: break;
  }
  throw std::logic_error("reference: no deterministic rounding for sr");
}

bool tiny_after_rounding(const table& t, double a, rounding r, bool neg) {
  if (a >= t.min_normal) return false;
  const int p = t.f.man_bits;
  if (a < std::ldexp(1.0, t.emin - 1)) return true;  // rounds to at most 2^(emin-1)
  // In the binade [2^(emin-1), 2^emin) an unbounded format has the grid k * 2^(emin-1-p),
  // k in [2^p, 2^(p+1)]; k's parity is the parity of the (extended) code.
  const double q = std::ldexp(a, p + 1 - t.emin);
  const double k = std::floor(q), frac = q - k;
  const bool k_odd = std::fmod(k, 2.0) != 0;
  double kr = k;
  if (frac != 0) {
    switch (r) {
      case rounding::rtz: break;
      case rounding::rup: kr = neg ? k : k + 1; break;
      case rounding::rdn: kr = neg ? k + 1 : k; break;
      case rounding::rne: kr = frac < 0.5 ? k : frac > 0.5 ? k + 1 : (k_odd ? k + 1 : k); break;
      case rounding::rna: kr = frac < 0.5 ? k : k + 1; break;
      case rounding::rto: kr = k_odd ? k : k + 1; break;
      case rounding::sr: throw std::logic_error("reference: no deterministic rounding for sr");
    }
  }
  return kr < std::ldexp(1.0, p + 1);
}

std::uint32_t nan_code(const table& t, const fpscope::policy& p, bool neg, std::uint64_t payload, int in_man) {
  const std::uint32_t sign = neg ? t.sign_bit : 0u;
  switch (t.f.specials) {
    case special::ieee: {
      // F16C/SoftFloat: sign | inf | quiet bit | top payload bits; torch: payload dropped;
      // CUDA: positive all-ones.
      const std::uint32_t quiet = t.inf_code | (std::uint32_t{1} << (t.f.man_bits - 1));
      switch (p.nan) {
        case fpscope::nan_style::canonical: return t.all_ones;
        case fpscope::nan_style::quiet: return sign | quiet;
        case fpscope::nan_style::payload:
          return sign | quiet | static_cast<std::uint32_t>(payload >> (in_man - t.f.man_bits));
      }
      break;
    }
    case special::fn: return p.nan == fpscope::nan_style::canonical ? t.all_ones : (sign | t.all_ones);
    case special::fnuz: return t.sign_bit;  // 0x80
    case special::e8m0: return 0xFFu;
    case special::finite:
      return p.nan_finite == fpscope::nan_to_finite::max ? t.max_code() : (neg ? 0u : t.sign_bit);
  }
  throw std::logic_error("reference: unknown style");
}

namespace {

// What "overflow to infinity" gives: inf, else the (signed) NaN, else max finite.
std::uint32_t infinity_like(const table& t, std::uint32_t sign) {
  switch (t.f.specials) {
    case special::ieee: return sign | t.inf_code;
    case special::fn: return sign | t.all_ones;  // S.1111.111 (CUDA nosat, ml_dtypes)
    case special::fnuz: return t.sign_bit;
    case special::e8m0: return 0xFFu;
    case special::finite: return sign | t.max_code();
  }
  return 0;
}

}  // namespace

result finish(const table& t, const located& l, const input& in, const fpscope::policy& p) {
  using namespace fpscope;
  const std::uint32_t sign = l.neg ? t.sign_bit : 0u;
  const bool saturate = p.on_overflow == overflow::saturate;
  switch (l.kind) {
    case located::nan:
      return {nan_code(t, p, in.neg, in.payload, in.man),
              (in.signalling || t.f.specials == special::finite) ? unsigned(flag_invalid) : 0u};
    case located::e8m0_invalid: return {0xFFu, flag_invalid};
    case located::inf:
      return {saturate && p.saturate_inf ? (sign | t.max_code()) : infinity_like(t, sign),
              t.f.specials == special::ieee ? 0u : unsigned(flag_invalid)};
    case located::zero: return {t.has_neg_zero ? sign : 0u, 0u};
    default: break;
  }
  const std::size_t idx = pick(t, l, p.round);
  const bool ovf = idx >= t.n();
  std::uint32_t code;
  double out = 0;
  if (ovf) {
    const rounding r = p.round;
    const bool to_max = saturate || r == rounding::rtz || r == rounding::rto ||
                        (r == rounding::rup && l.neg) || (r == rounding::rdn && !l.neg);
    code = to_max ? (sign | t.max_code()) : infinity_like(t, sign);
  } else {
    std::uint32_t mag = t.code[idx];
    out = t.val[idx];
    if (p.ftz && out > 0 && out < t.min_normal) {  // a subnormal result flushes to zero
      mag = 0;
      out = 0;
    }
    code = (mag == 0 && !t.has_neg_zero) ? 0u : (sign | mag);
  }
  unsigned flags = 0;
  const bool inexact = ovf || out != l.a;
  if (inexact) flags |= flag_inexact;
  if (ovf) flags |= flag_overflow;
  if (inexact && tiny_after_rounding(t, l.a, p.round, l.neg)) flags |= flag_underflow;
  return {code, flags};
}

std::vector<fpscope::policy> mode_overflow_policies(fpscope::policy base) {
  std::vector<fpscope::policy> ps;
  for (auto r : deterministic_modes)
    for (auto o : {fpscope::overflow::infinity, fpscope::overflow::saturate}) {
      fpscope::policy p = base;
      p.round = r;
      p.on_overflow = o;
      ps.push_back(p);
    }
  return ps;
}

std::string hex(std::uint64_t v) {
  char b[32];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

std::string show(float x) {
  std::uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  char s[80];
  std::snprintf(s, sizeof s, "float %a [0x%08x]", double(x), b);
  return s;
}

std::string show(double x) {
  std::uint64_t b;
  std::memcpy(&b, &x, sizeof b);
  char s[80];
  std::snprintf(s, sizeof s, "double %a [0x%016llx]", x, static_cast<unsigned long long>(b));
  return s;
}

std::string describe(const format& f, const fpscope::policy& p) {
  std::string s = std::string(f.name) + " " + std::string(fpscope::name(p.round)) + " " +
                  std::string(fpscope::name(p.on_overflow));
  if (!p.saturate_inf) s += " !saturate_inf";
  if (p.ftz) s += " ftz";
  if (p.daz) s += " daz";
  if (p.nan != fpscope::nan_style::payload)
    s += p.nan == fpscope::nan_style::quiet ? " nan=quiet" : " nan=canonical";
  if (p.nan_finite != fpscope::nan_to_finite::max) s += " nan_finite=flipped_zero";
  return s;
}

}  // namespace ref

// ---------------------------------------------------------------------------------------------
// Arithmetic (see ref_exact.hpp).

namespace ref {

using fpscope::op;
using fpscope::policy;

namespace {

int sgn(const rational& r) { return r.sign(); }

// The codes of a format up to 16 bits, decoded once (by decode_fields); wider ones on demand.
const std::vector<code_info>* decoded(const table& t) {
  static std::array<std::unique_ptr<std::vector<code_info>>, fpscope::builtin_count> cache;
  static std::array<std::once_flag, fpscope::builtin_count> once;
  if (t.f.bits > 16) return nullptr;
  for (int i = 0; i < fpscope::builtin_count; ++i) {
    const auto id = static_cast<fpscope::format_id>(i);
    if (std::strcmp(fpscope::builtin(id).name, t.f.name) != 0) continue;
    std::call_once(once[std::size_t(i)], [&] {
      auto v = std::make_unique<std::vector<code_info>>();
      v->reserve(std::size_t{1} << t.f.bits);
      for (std::uint32_t c = 0; c < (std::uint32_t{1} << t.f.bits); ++c) v->push_back(decode_fields(c, t.f));
      cache[std::size_t(i)] = std::move(v);
    });
    return cache[std::size_t(i)].get();
  }
  return nullptr;
}

code_info info(const table& t, std::uint32_t code) {
  if (const auto* d = decoded(t)) return (*d)[code];
  return decode_fields(code, t.f);
}

// A positive rational as a double, to about 60 bits before the final rounding (a hint only).
double approx_of(const rational& v) {
  using boost::multiprecision::msb;
  if (v.sign() == 0) return 0;
  const cpp_int n = boost::multiprecision::numerator(v), d = boost::multiprecision::denominator(v);
  const long sn = std::max(0L, long(msb(n)) - 62), sd = std::max(0L, long(msb(d)) - 62);
  const double dn = double((n >> sn).convert_to<unsigned long long>());
  const double dd = double((d >> sd).convert_to<unsigned long long>());
  return std::ldexp(dn / dd, int(sn - sd));
}

// An operand: class, sign, exact value (DAZ applied).
struct operand {
  cls c;
  bool neg;
  rational v;  // signed; zero for zeros, inf and NaN
};

operand read(const table& t, std::uint32_t code, bool daz) {
  code_info ci = info(t, code);
  if (daz && ci.c == cls::subnormal) return {cls::zero, ci.neg, rational(0)};
  return {ci.c, ci.neg, std::move(ci.value)};
}

exact_result finite_result(const rational& v, bool root = false) {
  exact_result r;
  r.kind = exact_result::finite;
  r.neg = sgn(v) < 0;
  r.m.set(r.neg ? rational(-v) : v, root);
  return r;
}

exact_result special_result(exact_result::kind_t k, bool neg) {
  exact_result r;
  r.kind = k;
  r.neg = neg;
  return r;
}

// x + y for operands that are not NaN (IEEE 754 6.1, 6.3, 7.2).
exact_result sum(const operand& x, const operand& y) {
  const bool xi = x.c == cls::infinite, yi = y.c == cls::infinite;
  if (xi && yi && x.neg != y.neg) return special_result(exact_result::invalid, true);
  if (xi || yi) return special_result(exact_result::inf, xi ? x.neg : y.neg);
  if (x.c == cls::zero && y.c == cls::zero && x.neg == y.neg) return special_result(exact_result::zero, x.neg);
  const rational s = x.v + y.v;
  if (sgn(s) == 0) {
    exact_result r = special_result(exact_result::zero, false);
    r.sum_zero = true;
    return r;
  }
  return finite_result(s);
}

}  // namespace

int magnitude::cmp(const rational& q) const { return root ? v.compare(q * q) : v.compare(q); }

void magnitude::set(rational value, bool is_root) {
  v = std::move(value);
  root = is_root;
  num = boost::multiprecision::numerator(v);
  den = boost::multiprecision::denominator(v);
}

int magnitude::cmp(double q) const {
  // q = M * 2^E exactly (M a 53-bit integer, trailing zeros stripped); |x| vs q is num vs
  // den * q (den > 0), and for a root num vs den * q^2, scaled to integers.
  if (q == 0) return v.sign();
  int e = 0;
  const double fr = std::frexp(q, &e);
  auto M = static_cast<std::uint64_t>(std::ldexp(fr, 53));
  int E = e - 53;
  const int tz = __builtin_ctzll(M);
  M >>= tz;
  E += tz;
  cpp_int rhs = den * cpp_int(M);
  if (root) {
    rhs *= M;
    E *= 2;
  }
  if (E >= 0) {
    rhs <<= E;
    return num.compare(rhs);
  }
  const cpp_int lhs = num << -E;
  return lhs.compare(rhs);
}

double magnitude::approx() const {
  const double a = approx_of(v);
  return root ? std::sqrt(a) : a;
}

bool is_nan(const table& t, std::uint32_t code) { return info(t, code).c == cls::nan; }

bool is_snan(const table& t, std::uint32_t code) {
  // IEEE 754-2008 6.2.1: the quiet bit is the first bit of the trailing significand field.
  return t.f.specials == special::ieee && is_nan(t, code) && !((code >> (t.f.man_bits - 1)) & 1u);
}

exact_result exact_op(const table& t, op o, std::uint32_t a, std::uint32_t b, std::uint32_t c, bool daz) {
  const int arity = o == op::sqrt ? 1 : o == op::fma ? 3 : 2;
  const std::uint32_t codes[3] = {a, b, c};
  operand v[3];
  unsigned flags = 0;
  for (int i = 0; i < arity; ++i) {
    v[i] = read(t, codes[i], daz);
    if (is_snan(t, codes[i])) flags |= fpscope::flag_invalid;
  }
  // A NaN operand: the first one, quieted (invalid only for a signalling one, above).
  for (int i = 0; i < arity; ++i)
    if (v[i].c == cls::nan) {
      exact_result r = special_result(exact_result::nan, false);
      r.nan_from = codes[i];
      r.flags = flags;
      return r;
    }
  exact_result r;
  switch (o) {
    case op::add: r = sum(v[0], v[1]); break;
    case op::sub: {
      operand y = v[1];
      y.neg = !y.neg;
      y.v = -y.v;
      r = sum(v[0], y);
      break;
    }
    case op::mul: {
      const bool neg = v[0].neg != v[1].neg;
      const bool inf0 = v[0].c == cls::infinite, inf1 = v[1].c == cls::infinite;
      const bool zero0 = v[0].c == cls::zero, zero1 = v[1].c == cls::zero;
      if ((inf0 && zero1) || (zero0 && inf1)) r = special_result(exact_result::invalid, true);
      else if (inf0 || inf1) r = special_result(exact_result::inf, neg);
      else if (zero0 || zero1) r = special_result(exact_result::zero, neg);
      else r = finite_result(v[0].v * v[1].v);
      break;
    }
    case op::div: {
      const bool neg = v[0].neg != v[1].neg;
      const bool inf0 = v[0].c == cls::infinite, inf1 = v[1].c == cls::infinite;
      const bool zero0 = v[0].c == cls::zero, zero1 = v[1].c == cls::zero;
      if ((zero0 && zero1) || (inf0 && inf1)) r = special_result(exact_result::invalid, true);
      else if (inf0) r = special_result(exact_result::inf, neg);
      else if (inf1) r = special_result(exact_result::zero, neg);
      else if (zero1) {  // finite nonzero / 0: divideByZero (7.3)
        r = special_result(exact_result::inf, neg);
        r.flags |= fpscope::flag_infinite;
      } else if (zero0) r = special_result(exact_result::zero, neg);
      else r = finite_result(v[0].v / v[1].v);
      break;
    }
    case op::sqrt:
      if (v[0].c == cls::zero) r = special_result(exact_result::zero, v[0].neg);  // sqrt(-0) = -0
      else if (v[0].neg) r = special_result(exact_result::invalid, true);
      else if (v[0].c == cls::infinite) r = special_result(exact_result::inf, false);
      else r = finite_result(v[0].v, true);
      break;
    case op::fma: {
      const bool inf0 = v[0].c == cls::infinite, inf1 = v[1].c == cls::infinite;
      const bool zero0 = v[0].c == cls::zero, zero1 = v[1].c == cls::zero;
      if ((inf0 && zero1) || (zero0 && inf1)) {
        r = special_result(exact_result::invalid, true);
        break;
      }
      // The exact product as an operand, then the exact sum with c.
      operand prod{cls::normal, v[0].neg != v[1].neg, rational(0)};
      if (inf0 || inf1) prod.c = cls::infinite;
      else if (zero0 || zero1) prod.c = cls::zero;
      else prod.v = v[0].v * v[1].v;
      r = sum(prod, v[2]);
      break;
    }
    case op::min:
    case op::max: throw std::logic_error("reference: min/max are not rounded (see min_max)");
  }
  r.flags |= flags;
  if (r.kind == exact_result::invalid) r.flags |= fpscope::flag_invalid;
  return r;
}

exact_located locate(const table& t, exact_result x) {
  exact_located r{std::move(x), {}};
  if (r.x.kind != exact_result::finite) return r;
  located& l = r.l;
  l.neg = r.x.neg;
  const magnitude& m = r.x.m;
  if (m.cmp(t.next) >= 0) {
    l.kind = located::beyond;  // rounds (unbounded exponent) to next or more in every mode
    return r;
  }
  if (m.cmp(t.val[0]) < 0) {
    l.kind = located::below;  // e8m0 only: below its smallest value
    return r;
  }
  l.kind = located::finite;
  // Start from the double estimate, then settle lo by exact comparisons: val[lo] <= |x| < val[lo+1].
  const double h = m.approx();
  std::size_t lo = std::size_t(std::upper_bound(t.val.begin(), t.val.end(), h) - t.val.begin());
  lo = lo == 0 ? 0 : std::min(lo - 1, t.n() - 1);
  while (lo > 0 && m.cmp(t.val[lo]) < 0) --lo;
  while (lo + 1 < t.n() && m.cmp(t.val[lo + 1]) >= 0) ++lo;
  l.lo = lo;
  l.exact = m.cmp(t.val[lo]) == 0;
  l.vs_mid = m.cmp(t.mid[lo]);
  l.a = h;  // for messages only
  return r;
}

bool tiny_after_rounding(const table& t, const magnitude& m, rounding r, bool neg) {
  if (m.cmp(t.min_normal) >= 0) return false;
  if (m.cmp(pow2(t.emin - 1)) < 0) return true;  // rounds to at most 2^(emin-1)
  // In [2^(emin-1), 2^emin) an unbounded format has the grid k * g, g = 2^(emin-1-p),
  // k in [2^p, 2^(p+1)]; the parity of k is the parity of the (extended) code.
  const int p = t.f.man_bits;
  const rational g = pow2(t.emin - 1 - p);
  long k_lo = 1L << p, k_hi = 1L << (p + 1);  // k_lo * g <= |x| < k_hi * g
  while (k_hi - k_lo > 1) {
    const long k = (k_lo + k_hi) / 2;
    (m.cmp(rational(k) * g) >= 0 ? k_lo : k_hi) = k;
  }
  const long k = k_lo;
  long kr = k;
  if (m.cmp(rational(k) * g) != 0) {
    const int vs_mid = m.cmp((rational(2 * k + 1) / 2) * g);
    const bool k_odd = (k & 1) != 0;
    switch (r) {
      case rounding::rtz: break;
      case rounding::rup: kr = neg ? k : k + 1; break;
      case rounding::rdn: kr = neg ? k + 1 : k; break;
      case rounding::rne: kr = vs_mid < 0 ? k : vs_mid > 0 ? k + 1 : (k_odd ? k + 1 : k); break;
      case rounding::rna: kr = vs_mid < 0 ? k : k + 1; break;
      case rounding::rto: kr = k_odd ? k : k + 1; break;
      case rounding::sr: throw std::logic_error("reference: no deterministic rounding for sr");
    }
  }
  return kr < (1L << (p + 1));
}

std::uint64_t fraction32(const magnitude& m, const rational& lo, const rational& hi) {
  if (!m.root) {  // floor((|x| - lo) / (hi - lo) * 2^32), in integers
    const rational f = (m.v - lo) / (hi - lo) * rational(cpp_int(1) << 32);
    const cpp_int q = boost::multiprecision::numerator(f) / boost::multiprecision::denominator(f);
    return q.convert_to<std::uint64_t>();
  }
  // A root: the largest f in [0, 2^32) with lo + f * (hi - lo) / 2^32 <= |x|, by bisection.
  const rational step = (hi - lo) / rational(cpp_int(1) << 32);
  std::uint64_t f_lo = 0, f_hi = 1ull << 32;
  while (f_hi - f_lo > 1) {
    const std::uint64_t f = (f_lo + f_hi) / 2;
    (m.cmp(lo + rational(cpp_int(f)) * step) >= 0 ? f_lo : f_hi) = f;
  }
  return f_lo;
}

namespace {

std::uint32_t infinity_like_code(const table& t, bool neg) {
  const std::uint32_t sign = neg ? t.sign_bit : 0u;
  switch (t.f.specials) {
    case special::ieee: return sign | t.inf_code;
    case special::fn: return sign | t.all_ones;
    case special::fnuz: return t.sign_bit;
    case special::e8m0: return 0xFFu;
    case special::finite: return sign | t.max_code();
  }
  return 0;
}

std::uint32_t quieted(const table& t, const policy& p, std::uint32_t nan_code_in) {
  const bool neg = t.sign_bit && (nan_code_in & t.sign_bit);
  const std::uint64_t payload = nan_code_in & ((std::uint32_t{1} << t.f.man_bits) - 1);
  return nan_code(t, p, neg, payload, t.f.man_bits);
}

}  // namespace

result finish(const table& t, const exact_located& xl, const policy& p) {
  using fpscope::flag_inexact;
  using fpscope::flag_invalid;
  using fpscope::flag_overflow;
  using fpscope::flag_underflow;
  const exact_result& x = xl.x;
  const bool e8m0 = t.f.specials == special::e8m0;
  const bool saturate = p.on_overflow == fpscope::overflow::saturate;
  switch (x.kind) {
    case exact_result::nan: return {quieted(t, p, x.nan_from), x.flags};
    case exact_result::invalid:
      // The default NaN: negative and quiet (x86); in formats without NaN what that NaN becomes.
      return {nan_code(t, p, true, 0, t.f.man_bits), x.flags | flag_invalid};
    case exact_result::inf: {
      // An exact infinity: where the format has none, what an infinite input becomes (invalid).
      if (e8m0 && x.neg) return {0xFFu, x.flags | flag_invalid};
      const std::uint32_t sign = x.neg ? t.sign_bit : 0u;
      const std::uint32_t code = saturate && p.saturate_inf ? (sign | t.max_code()) : infinity_like_code(t, x.neg);
      return {code, x.flags | (t.f.specials == special::ieee ? 0u : unsigned(flag_invalid))};
    }
    case exact_result::zero: {
      if (e8m0) return {0xFFu, x.flags | flag_invalid};  // no zero
      const bool neg = x.sum_zero ? p.round == rounding::rdn : x.neg;
      return {neg && t.has_neg_zero ? t.sign_bit : 0u, x.flags};
    }
    case exact_result::finite: break;
  }
  if (e8m0 && x.neg) return {0xFFu, x.flags | flag_invalid};  // unsigned
  const located& l = xl.l;
  const std::uint32_t sign = l.neg ? t.sign_bit : 0u;
  const std::size_t idx = pick(t, l, p.round);
  const bool ovf = idx >= t.n();
  std::uint32_t code;
  bool flushed = false;
  if (ovf) {
    const rounding r = p.round;
    const bool to_max = saturate || r == rounding::rtz || r == rounding::rto || (r == rounding::rup && l.neg) ||
                        (r == rounding::rdn && !l.neg);
    code = to_max ? (sign | t.max_code()) : infinity_like_code(t, l.neg);
  } else {
    std::uint32_t mag = t.code[idx];
    if (p.ftz && t.val[idx] > 0 && t.val[idx] < t.min_normal) {  // a subnormal result flushes
      mag = 0;
      flushed = true;
    }
    code = (mag == 0 && !t.has_neg_zero) ? 0u : (sign | mag);
  }
  unsigned flags = x.flags;
  const bool inexact = ovf || flushed || !(l.kind == located::finite && l.exact);
  if (inexact) flags |= flag_inexact;
  if (ovf) flags |= flag_overflow;
  // Only values below the smallest normal (a value of the table: val[lo] <= |x|) can be tiny.
  const bool below_normal = l.kind == located::below || (l.kind == located::finite && t.val[l.lo] < t.min_normal);
  if (inexact && below_normal && tiny_after_rounding(t, x.m, p.round, l.neg)) flags |= flag_underflow;
  return {code, flags};
}

result min_max(const table& t, bool is_max, std::uint32_t a, std::uint32_t b, const policy& p) {
  const operand x = read(t, a, p.daz), y = read(t, b, p.daz);
  const bool xn = x.c == cls::nan, yn = y.c == cls::nan;
  const bool signalling = is_snan(t, a) || is_snan(t, b);
  if ((xn && yn) || signalling)
    return {quieted(t, p, xn ? a : b), signalling ? unsigned(fpscope::flag_invalid) : 0u};
  // The operand chosen, as a code; DAZ gives a subnormal one as the zero of its sign.
  const auto out = [&](std::uint32_t code, const operand& o) -> result {
    if (p.daz && info(t, code).c == cls::subnormal) return {o.neg && t.has_neg_zero ? t.sign_bit : 0u, 0u};
    return {code, 0u};
  };
  if (xn) return out(b, y);
  if (yn) return out(a, x);
  // Total order of the values with -0 below +0 (x.v, y.v are signed; zeros compare by sign).
  const auto below = [](const operand& u, const operand& w) {
    const int c = u.v.compare(w.v);
    if (c != 0) return c < 0;
    return u.c == cls::zero && w.c == cls::zero && u.neg && !w.neg;
  };
  const auto key = [](const operand& o) { return o.c == cls::infinite ? (o.neg ? -1 : 1) : 0; };
  bool x_lt_y, y_lt_x;
  if (key(x) != key(y)) {
    x_lt_y = key(x) < key(y);
    y_lt_x = !x_lt_y;
  } else if (key(x) != 0) {
    x_lt_y = y_lt_x = false;  // equal infinities
  } else {
    x_lt_y = below(x, y);
    y_lt_x = below(y, x);
  }
  if (is_max ? y_lt_x : x_lt_y) return out(a, x);
  if (is_max ? x_lt_y : y_lt_x) return out(b, y);
  return out(a, x);  // equal (same sign): the same value
}

result compare(const table& t, std::uint32_t a, std::uint32_t b, const policy& p) {
  const operand x = read(t, a, p.daz), y = read(t, b, p.daz);
  const unsigned fl = (is_snan(t, a) || is_snan(t, b)) ? unsigned(fpscope::flag_invalid) : 0u;
  if (x.c == cls::nan || y.c == cls::nan) return {2u, fl};
  const auto key = [](const operand& o) { return o.c == cls::infinite ? (o.neg ? -1 : 1) : 0; };
  int c = key(x) != key(y) ? (key(x) < key(y) ? -1 : 1) : key(x) != 0 ? 0 : x.v.compare(y.v);
  c = c < 0 ? -1 : c > 0 ? 1 : 0;
  return {static_cast<std::uint32_t>(c), fl};
}

std::optional<std::uint32_t> code_of(const table& t, double v) {
  if (!std::isfinite(v)) return std::nullopt;
  const double a = std::fabs(v);
  const auto it = std::lower_bound(t.val.begin(), t.val.end(), a);
  if (it == t.val.end() || *it != a) return std::nullopt;
  const std::uint32_t mag = t.code[std::size_t(it - t.val.begin())];
  if (!std::signbit(v)) return mag;
  if (!t.sign_bit) return std::nullopt;
  if (mag == 0 && !t.has_neg_zero) return std::nullopt;
  return t.sign_bit | mag;
}

}  // namespace ref
