// Exact arithmetic side of the independent reference: codes taken apart by their fields and
// valued as Boost rationals, written from IEEE 754 / OCP definitions (never from fpscope's
// decode). Kept out of reference.hpp so that only the files that need Boost include it.
#pragma once

#include <boost/multiprecision/cpp_int.hpp>
#include <cstdint>

#include "fpscope/format.hpp"

namespace ref {

using rational = boost::multiprecision::cpp_rational;

enum class cls { zero, subnormal, normal, infinite, nan };

/// One code of a format, taken apart per the standard's definition.
struct code_info {
  cls c;
  bool neg;        ///< sign bit (false for e8m0, which has none)
  rational value;  ///< exact signed value of finite codes; 0 for inf and NaN
};

/// 2^e exactly.
rational pow2(int e);

/// The exact value of a finite double (every finite double is a dyadic rational).
rational exact(double d);

/// `r` as a double; throws std::logic_error unless r is exactly representable.
double to_double_exact(const rational& r);

/// Sign, exponent field E and fraction field M of `code`, valued as
///   normal:    (-1)^s * 2^(E-bias) * (1 + M/2^p)
///   subnormal: (-1)^s * 2^(1-bias) * M/2^p          (E == 0)
///   e8m0:      2^(E-127), 0xFF NaN, no sign, no zero
/// with inf/NaN per style: ieee E all ones; fn only S.1111.111 NaN; fnuz only 0x80 NaN;
/// finite none.
code_info decode_fields(std::uint32_t code, const fpscope::format& f);

}  // namespace ref
