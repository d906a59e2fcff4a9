#include "fpscope/exact.hpp"

#include <algorithm>
#include <bit>
#include <boost/multiprecision/cpp_int.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace fpscope {
namespace {

using boost::multiprecision::cpp_int;

// A finite double as (-1)^neg * m * 2^e with m odd, or m == 0.
struct binary_fraction {
  bool neg = false;
  std::uint64_t m = 0;
  int e = 0;
};

binary_fraction split(double x) {
  std::uint64_t u;
  std::memcpy(&u, &x, sizeof u);
  binary_fraction f;
  f.neg = (u >> 63) != 0;
  const int ef = int((u >> 52) & 0x7FF);
  const std::uint64_t frac = u & ((std::uint64_t{1} << 52) - 1);
  f.m = ef ? frac | (std::uint64_t{1} << 52) : frac;
  f.e = (ef ? ef : 1) - 1075;
  if (f.m == 0) {
    f.e = 0;
    return f;
  }
  const int tz = std::countr_zero(f.m);
  f.m >>= tz;
  f.e += tz;
  return f;
}

cpp_int signed_value(const binary_fraction& f) {
  cpp_int v = f.m;
  return f.neg ? cpp_int(-v) : v;
}

cpp_int pow10(unsigned k) { return boost::multiprecision::pow(cpp_int(10), k); }
cpp_int pow5(unsigned k) { return boost::multiprecision::pow(cpp_int(5), k); }

// Decimal expansion of v * 2^e (exact).
std::string decimal(cpp_int v, int e, bool negative_zero = false) {
  if (v == 0) return negative_zero ? "-0" : "0";
  const bool neg = v < 0;
  if (neg) v = -v;
  std::string s;
  if (e >= 0) {
    s = cpp_int(v << e).str();
  } else {
    // v / 2^k = v * 5^k / 10^k.
    const unsigned k = unsigned(-e);
    std::string digits = cpp_int(v * pow5(k)).str();
    if (digits.size() <= k) digits.insert(0, k - digits.size() + 1, '0');
    s = digits.substr(0, digits.size() - k) + "." + digits.substr(digits.size() - k);
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  return neg ? "-" + s : s;
}

std::string special(double x) {
  if (std::isnan(x)) return "nan";
  return x < 0 ? "-inf" : "inf";
}

// A parsed literal: (-1)^neg * n * base^exp, base 10 or 2.
struct literal {
  bool neg = false;
  cpp_int n;
  long exp = 0;
  int base = 10;
};

bool parse_literal(std::string_view s, literal& out) {
  std::size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) out.neg = s[i++] == '-';
  const bool hex = s.size() >= i + 2 && s[i] == '0' && (s[i + 1] == 'x' || s[i + 1] == 'X');
  if (hex) i += 2;
  out.base = hex ? 2 : 10;
  const unsigned radix = hex ? 16 : 10;
  const auto digit = [&](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (hex && c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (hex && c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  bool any = false, point = false;
  long frac_digits = 0;
  for (; i < s.size(); ++i) {
    if (s[i] == '.' && !point) {
      point = true;
      continue;
    }
    const int d = digit(s[i]);
    if (d < 0) break;
    any = true;
    out.n = out.n * radix + d;
    if (point) ++frac_digits;
  }
  if (!any) return false;
  long e = 0;
  if (i < s.size() && (hex ? (s[i] == 'p' || s[i] == 'P') : (s[i] == 'e' || s[i] == 'E'))) {
    ++i;
    bool eneg = false;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) eneg = s[i++] == '-';
    if (i >= s.size()) return false;
    for (; i < s.size(); ++i) {
      if (s[i] < '0' || s[i] > '9') return false;
      if (e < 100000000) e = e * 10 + (s[i] - '0');
    }
    if (eneg) e = -e;
  }
  if (i != s.size()) return false;
  out.exp = hex ? e - 4 * frac_digits : e - frac_digits;
  return true;
}

}  // namespace

std::string exact_decimal(double x) {
  if (!std::isfinite(x)) return special(x);
  const binary_fraction f = split(x);
  return decimal(signed_value(f), f.e, f.neg && f.m == 0);
}

std::string exact_difference(double a, double b) {
  if (!std::isfinite(a) || !std::isfinite(b)) return exact_decimal(a - b);
  const binary_fraction fa = split(a), fb = split(b);
  const int e = std::min(fa.e, fb.e);
  const cpp_int d = (signed_value(fa) << (fa.e - e)) - (signed_value(fb) << (fb.e - e));
  return decimal(d, e);
}

std::optional<std::string> relative_error(double approx, double ref, int digits) {
  if (!std::isfinite(approx) || !std::isfinite(ref)) return std::nullopt;
  if (approx == ref) return "0";
  if (ref == 0) return std::nullopt;
  if (digits < 1) digits = 1;
  const binary_fraction fa = split(approx), fb = split(ref);
  const int e = std::min(fa.e, fb.e);
  // Aligned to the same power of two, the ratio is an integer ratio: d / b.
  cpp_int d = (signed_value(fa) << (fa.e - e)) - (signed_value(fb) << (fb.e - e));
  cpp_int b = signed_value(fb) << (fb.e - e);
  const bool neg = (d < 0) != (b < 0);
  if (d < 0) d = -d;
  if (b < 0) b = -b;
  // k such that 10^(digits-1) <= d * 10^k / b < 10^digits, estimated from bit lengths.
  const long bits = long(boost::multiprecision::msb(d)) - long(boost::multiprecision::msb(b));
  long k = long(digits) - 1 - long(std::floor(double(bits) * 0.30102999566398120));
  const cpp_int lo = pow10(unsigned(digits - 1)), hi = pow10(unsigned(digits));
  cpp_int q, r, num, den;
  for (int tries = 0; tries < 8; ++tries) {
    num = k >= 0 ? cpp_int(d * pow10(unsigned(k))) : d;
    den = k >= 0 ? b : cpp_int(b * pow10(unsigned(-k)));
    boost::multiprecision::divide_qr(num, den, q, r);
    if (q < lo) ++k;
    else if (q >= hi) --k;
    else break;
  }
  // Round half to even on the remainder.
  const cpp_int twice = r * 2;
  if (twice > den || (twice == den && (q & 1) != 0)) ++q;
  if (q == hi) {
    q /= 10;
    --k;
  }
  std::string s = q.str();
  const long exp10 = long(digits) - 1 - k;
  std::string out = neg ? "-" : "";
  out += s[0];
  std::string rest = s.substr(1);
  while (!rest.empty() && rest.back() == '0') rest.pop_back();
  if (!rest.empty()) out += "." + rest;
  if (exp10 != 0) out += "e" + std::to_string(exp10);
  return out;
}

bool literal_is_exact(std::string_view text, double x) {
  std::string lower(text);
  for (auto& c : lower) c = char(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  std::string_view t = lower;
  const bool neg = !t.empty() && t[0] == '-';
  if (!t.empty() && (t[0] == '-' || t[0] == '+')) t.remove_prefix(1);
  if (t == "inf" || t == "infinity") return std::isinf(x) && (x < 0) == neg;
  if (t.substr(0, 3) == "nan") return std::isnan(x);
  literal lit;
  if (!parse_literal(text, lit) || !std::isfinite(x)) return false;
  const binary_fraction f = split(x);
  if (lit.n == 0 || f.m == 0) return lit.n == 0 && f.m == 0 && lit.neg == f.neg;
  if (lit.neg != f.neg) return false;
  // Beyond these exponents no double (or literal of this length) can match; keep cpp_int small.
  if (lit.exp > 100000 || lit.exp < -100000) return false;
  // Compare lit.n * base^exp with m * 2^e as integers.
  cpp_int lhs = lit.n, rhs = f.m;
  if (lit.base == 2) {
    const long e = lit.exp - f.e;
    if (e >= 0) lhs <<= unsigned(e);
    else rhs <<= unsigned(-e);
  } else {
    if (lit.exp >= 0) lhs *= pow10(unsigned(lit.exp));
    else rhs *= pow10(unsigned(-lit.exp));
    if (f.e >= 0) rhs <<= unsigned(f.e);
    else lhs <<= unsigned(-f.e);
  }
  return lhs == rhs;
}

bool product_is_exact(double a, double b, double p) {
  if (!std::isfinite(a) || !std::isfinite(b)) return true;  // inf and NaN products are exact
  if (!std::isfinite(p)) return false;                       // overflowed
  const binary_fraction fa = split(a), fb = split(b), fp = split(p);
  if (fa.m == 0 || fb.m == 0) return fp.m == 0;
  if (fp.m == 0) return false;
  // Both sides have odd significands: equal iff the significands and exponents are.
  return (fa.neg != fb.neg) == fp.neg && cpp_int(fa.m) * fb.m == fp.m && fa.e + fb.e == fp.e;
}

}  // namespace fpscope
