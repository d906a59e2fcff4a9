// Exact decimal arithmetic on binary64 values, for showing what a conversion really did.
// A finite double is m * 2^e, whose decimal expansion terminates; differences of doubles are
// again binary fractions, so every string here is exact except where a digit count is given.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace fpscope {

/// The exact decimal expansion of `x`, without exponent: "0.1000000000000000055511151231257827021181583404541015625",
/// "464", "-0", "0.000000059604644775390625"; "inf", "-inf" and "nan" for the specials.
std::string exact_decimal(double x);

/// The exact decimal expansion of a - b, both finite (else "nan" / "inf" / "-inf" as a - b gives).
std::string exact_difference(double a, double b);

/// (approx - ref) / ref correctly rounded (ties to even) to `digits` significant decimal digits,
/// in scientific notation ("-6.5892560319901843e-3", "0" when equal). nullopt when undefined:
/// ref is zero (and approx is not), or either value is inf or NaN.
std::optional<std::string> relative_error(double approx, double ref, int digits = 17);

/// Whether the literal `text` denotes exactly the value `x`: a decimal ("0.1", "-1.5e-3") or a
/// C hex float ("0x1.8p-3"), optionally signed; "inf"/"infinity"/"nan" match the specials. A
/// literal that is neither (malformed) yields false. Tells whether strtod had to round.
bool literal_is_exact(std::string_view text, double x);

/// Whether a * b equals p exactly (all finite): whether a scaled product was rounded.
bool product_is_exact(double a, double b, double p);

}  // namespace fpscope
