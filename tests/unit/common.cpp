#include "common.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace unit {

float f32_from_bits(std::uint32_t b) {
  float x;
  std::memcpy(&x, &b, sizeof x);
  return x;
}
double f64_from_bits(std::uint64_t b) {
  double x;
  std::memcpy(&x, &b, sizeof x);
  return x;
}
std::uint32_t bits_of(float x) {
  std::uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}
std::uint64_t bits_of(double x) {
  std::uint64_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

std::string flags_str(unsigned fl) {
  std::string s = "{";
  if (fl & fpscope::flag_inexact) s += "x";
  if (fl & fpscope::flag_underflow) s += "u";
  if (fl & fpscope::flag_overflow) s += "o";
  if (fl & fpscope::flag_infinite) s += "z";
  if (fl & fpscope::flag_invalid) s += "i";
  return s + "}";
}

namespace {

constexpr double dinf = std::numeric_limits<double>::infinity();
constexpr float finf = std::numeric_limits<float>::infinity();

// p and `steps` nextafter steps either side, as doubles, and (where p is a float, or rounds to
// one) the same in float. Both signs.
void around(double p, int steps, input_set& s) {
  if (!std::isfinite(p)) return;
  double lo = p, hi = p;
  s.d.push_back(p);
  for (int k = 0; k < steps; ++k) {
    lo = std::nextafter(lo, -dinf);
    hi = std::nextafter(hi, dinf);
    s.d.push_back(lo);
    s.d.push_back(hi);
  }
  const float pf = static_cast<float>(p);  // p itself where exact, else its float neighbour
  if (std::isfinite(pf)) {
    float flo = pf, fhi = pf;
    s.f.push_back(pf);
    for (int k = 0; k < steps; ++k) {
      flo = std::nextafter(flo, -finf);
      fhi = std::nextafter(fhi, finf);
      s.f.push_back(flo);
      s.f.push_back(fhi);
    }
  }
}

template <class V>
void add_negatives(V& v) {
  const std::size_t n = v.size();
  for (std::size_t i = 0; i < n; ++i) v.push_back(-v[i]);
}

}  // namespace

input_set boundary_inputs(const ref::table& t, int steps, std::size_t stride) {
  input_set s;
  const std::size_t n = t.n();
  for (std::size_t i = 0; i < n; ++i) {
    const bool edge = i < 64 || i + 64 >= n;
    if (!edge && stride > 1 && i % stride != 0) continue;
    around(t.val[i], steps, s);
    around(t.mid[i], steps, s);  // the last one is the midpoint of max and the next value
  }
  around(t.next, steps, s);
  add_negatives(s.d);
  add_negatives(s.f);
  return s;
}

input_set special_inputs(const ref::table& t) {
  input_set s;
  // Zeros, infinities, NaNs (quiet, signalling, payloads in high and low bits).
  for (std::uint32_t b : {0x00000000u, 0x7F800000u, 0x7FC00000u, 0x7FC00001u, 0x7FA00000u, 0x7F800001u,
                          0x7FFFFFFFu, 0x7F802000u, 0x7FBFFFFFu, 0x7FD55555u, 0x7F804000u})
    s.f.push_back(f32_from_bits(b));
  for (std::uint64_t b : {0x0ull, 0x7FF0000000000000ull, 0x7FF8000000000000ull, 0x7FF8000000000001ull,
                          0x7FF4000000000000ull, 0x7FF0000000000001ull, 0x7FFFFFFFFFFFFFFFull,
                          0x7FF0040000000000ull, 0x7FF7FFFFFFFFFFFFull, 0x7FFAAAAAAAAAAAAAull,
                          0x7FF0000000002000ull, 0x7FF0000020000000ull})
    s.d.push_back(f64_from_bits(b));
  // Input subnormals: float ones (also as doubles), double ones.
  for (std::uint32_t b : {0x00000001u, 0x00000002u, 0x00000003u, 0x007FFFFFu, 0x00400000u, 0x00400001u,
                          0x003FFFFFu, 0x00500000u, 0x00600000u, 0x00700000u, 0x00200000u, 0x00100000u,
                          0x00123456u, 0x00000400u, 0x00080000u}) {
    s.f.push_back(f32_from_bits(b));
    s.d.push_back(double(f32_from_bits(b)));
  }
  for (std::uint64_t b : {0x1ull, 0x000FFFFFFFFFFFFFull, 0x0008000000000000ull, 0x0000000100000000ull})
    s.d.push_back(f64_from_bits(b));
  // Ends of the range: min subnormal / 2 and friends, the smallest values, max, max + half
  // ulp, the next value, the next binade, and far beyond.
  const double minv = t.val[0] > 0 ? t.val[0] : t.val[1];
  for (double p : {minv / 2, minv / 4, minv / 8, minv * 0.75, minv * 1.5, minv, t.min_normal,
                   t.min_normal / 2, t.min_normal * 0.75, t.max(), t.mid.back(), t.next,
                   2 * t.next, 4 * t.next, 1e30, 1e300, double(std::numeric_limits<float>::max()),
                   std::numeric_limits<double>::max(), std::numeric_limits<double>::min(),
                   double(std::numeric_limits<float>::min())})
    around(p, 2, s);
  add_negatives(s.d);
  add_negatives(s.f);
  return s;
}

input_set random_inputs(const ref::table& t, std::mt19937_64& rng, std::size_t n) {
  input_set s;
  // Exponents from below the smallest value (everything there rounds to zero or min) to beyond
  // max; 1 in 16 patterns is fully random (NaNs, huge, subnormal inputs).
  const int lo_e = std::ilogb(t.val[0] > 0 ? t.val[0] : t.val[1]) - 4;
  const int hi_e = std::ilogb(t.next) + 2;
  std::uniform_int_distribution<int> ed(lo_e, hi_e);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t r = rng();
    if ((r & 15) == 0) {
      s.d.push_back(f64_from_bits(rng()));
      s.f.push_back(f32_from_bits(static_cast<std::uint32_t>(rng())));
      continue;
    }
    const int e = ed(rng);
    const std::uint64_t sign = (r >> 4) & 1;
    // double: exponent e, random 52-bit fraction (ldexp of a [1,2) value keeps it exact or
    // rounds into the double subnormals, both fine as inputs).
    const double fr = 1.0 + double(rng() >> 12) * 0x1p-52;
    const double dv = std::ldexp(fr, e);
    s.d.push_back(sign ? -dv : dv);
    const float fv = static_cast<float>(std::ldexp(1.0 + double(rng() >> 41) * 0x1p-23, e));
    s.f.push_back(sign ? -fv : fv);
  }
  return s;
}

std::vector<fpscope::policy> all_policies() {
  std::vector<fpscope::policy> ps;
  for (const fpscope::policy& base : ref::mode_overflow_policies())
    for (bool sat_inf : {true, false})
      for (bool ftz : {false, true})
        for (bool daz : {false, true})
          for (auto ns : {fpscope::nan_style::payload, fpscope::nan_style::quiet, fpscope::nan_style::canonical})
            for (auto nf : {fpscope::nan_to_finite::max, fpscope::nan_to_finite::flipped_zero}) {
              fpscope::policy p = base;
              p.saturate_inf = sat_inf;
              p.ftz = ftz;
              p.daz = daz;
              p.nan = ns;
              p.nan_finite = nf;
              ps.push_back(p);
            }
  return ps;
}

}  // namespace unit
