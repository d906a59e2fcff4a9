#include "fpscope/accumulate.hpp"

#include <boost/multiprecision/cpp_int.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "fpscope/arith.hpp"
#include "fpscope/convert.hpp"

namespace fpscope {
namespace {

using boost::multiprecision::cpp_int;

// One accumulation step, acc <- round(acc + p) in `f`, through arith's exact sum (one rounding).
double add_in(double acc, double p, const format& f, rounding rm) {
  unsigned fl = 0;
  const double odd = detail::exact_odd(op::add, acc, p, 0, rm, fl);
  policy pol;
  pol.round = rm;
  return decode(detail::round_pack<double>(detail::to_bits(odd), f, pol), f);
}

// An exact sum of finite doubles as an integer count of 2^-base: every finite double is
// m * 2^(e - 53) with |m| < 2^53 and e >= -1073, so m << (e - 53 + base) is an integer.
struct exact_sum {
  static constexpr int base = 1200;
  cpp_int v = 0;
  void add(double x) {
    if (x == 0) return;
    int e = 0;
    const double m = std::frexp(x, &e);  // x = m * 2^e, 0.5 <= |m| < 1
    v += cpp_int(static_cast<long long>(std::ldexp(m, 53))) << (e - 53 + base);
  }
  // v * 2^-base rounded to nearest double: truncated to 63 bits with the dropped bits or-ed
  // into the last one (round to odd, 63 >= 53 + 2), then one nearest-even conversion.
  static double to_double(const cpp_int& x) {
    if (x == 0) return 0.0;
    const bool neg = x < 0;
    const cpp_int a = neg ? cpp_int(-x) : x;
    const auto top = static_cast<int>(boost::multiprecision::msb(a));
    const int drop = top > 62 ? top - 62 : 0;
    const bool sticky = drop > 0 && static_cast<int>(boost::multiprecision::lsb(a)) < drop;
    const auto kept = static_cast<std::uint64_t>(a >> drop) | (sticky ? 1u : 0u);
    const double d = std::ldexp(static_cast<double>(kept), drop - base);  // exact: far above 2^-1022
    return neg ? -d : d;
  }
};

}  // namespace

accumulator parse_accumulator(std::string_view spec, std::size_t block) {
  accumulator a;
  a.block = block;
  if (spec == "fp32") {
    a.acc = fp32_format;
  } else if (spec.substr(0, 5) == "bits:") {
    const std::string n(spec.substr(5));
    char* end = nullptr;
    const long bits = std::strtol(n.c_str(), &end, 10);
    if (n.empty() || *end || bits < 2 || bits > 24)
      throw std::invalid_argument(std::string("accumulator bits:N needs N in 2..24, not '").append(n).append("'"));
    a.acc = limited_accumulator(int(bits));
    a.round = rounding::rtz;
  } else if (auto id = find_format(spec); id && (*id == format_id::fp16 || *id == format_id::bf16 ||
                                                 *id == format_id::tf32)) {
    a.acc = builtin(*id);
  } else {
    throw std::invalid_argument(std::string("unknown accumulator '").append(spec).append(
        "' (known: fp32, fp16, bf16, tf32, bits:N)"));
  }
  return a;
}

std::string describe(const accumulator& a) {
  // (append, not operator+: GCC 12 warns falsely, -Wrestrict, on string concatenations here)
  std::string s;
  if (std::string_view(a.acc.name) == "acc") {
    s.append(std::to_string(a.acc.man_bits + 1)).append("-bit");
  } else {
    s.append(a.acc.name);
  }
  s.append(" ").append(name(a.round));
  if (a.block) s.append(", promoted to fp32 every ").append(std::to_string(a.block));
  return s;
}

dot_result dot(std::span<const double> a, std::span<const double> b, const accumulator& acc) {
  if (a.size() != b.size())
    throw std::invalid_argument(std::string("dot: vectors of ").append(std::to_string(a.size()))
                                    .append(" and ").append(std::to_string(b.size())).append(" elements"));
  double partial = 0, total = 0;
  exact_sum ex;
  bool finite = true;
  std::size_t in_block = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double p = a[i] * b[i];  // exact: at most 2 x 26 significand bits, no overflow in range
    finite = finite && std::isfinite(p);
    if (finite) ex.add(p);
    partial = add_in(partial, p, acc.acc, acc.round);
    if (acc.block && ++in_block == acc.block) {
      total = add_in(total, partial, fp32_format, rounding::rne);
      partial = 0;
      in_block = 0;
    }
  }
  dot_result r;
  r.value = acc.block ? add_in(total, partial, fp32_format, rounding::rne) : partial;
  if (!finite || !std::isfinite(r.value)) {
    constexpr double nan = std::numeric_limits<double>::quiet_NaN();
    r.exact = finite ? exact_sum::to_double(ex.v) : nan;
    // Finite inputs whose sum overflowed the accumulator to +-inf: the exact value exists and
    // the error is infinite. Inf or NaN inputs (no exact value) or a NaN result: no error (NaN).
    const double e = finite && std::isinf(r.value) ? r.value : nan;
    r.abs_error = r.rel_error = r.ulp_error = e;
    return r;
  }
  r.exact = exact_sum::to_double(ex.v);
  r.exact_zero = ex.v == 0;
  exact_sum diff;
  diff.v = -ex.v;
  diff.add(r.value);
  r.abs_error = exact_sum::to_double(diff.v);
  r.rel_error = r.exact_zero ? (r.abs_error == 0 ? 0.0 : std::numeric_limits<double>::infinity())
                             : r.abs_error / std::fabs(r.exact);
  const format& f = acc.acc;
  const int e = r.exact_zero ? f.emin() : std::max(std::ilogb(r.exact), f.emin());
  r.ulp_error = std::ldexp(r.abs_error, f.man_bits - e);
  return r;
}

}  // namespace fpscope
