// Numbers as the fpscope commands print them, one formatter per kind, so that a table, a caption
// and a figure say the same number the same way. Formatting only: no colour, no alignment.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace fpscope::cli {

/// The typographic minus sign (U+2212), for figures: "−3" reads better than "-3" in a label.
inline constexpr std::string_view unicode_minus = "\u2212";

/// Thousands separated by commas: "1,234,567".
std::string grouped(std::uint64_t n);
/// The same for signed numbers, `minus` in front of negative ones: "-1,234" (or "−1,234").
std::string grouped_signed(std::int64_t n, std::string_view minus = "-");

/// n of `of` as a percentage, for tables: "-" when `of` is 0, "0" when n is, "100%" when n == of;
/// else about three significant figures: "0.012%", "1.23%", "12.3%", "99.9%" (from 99.95% up,
/// "{:.3g}" of at most 99.999, which may read "100%").
std::string percent(std::uint64_t n, std::uint64_t of);
/// n of `of` as a percentage with `decimals` fixed decimals from 1% up ("10.96%", "100.00%") and
/// `decimals` significant figures below ("0.23%", "0.0012%"), so that a column lines up.
/// "-" when `of` is 0, "0" when n is.
std::string percent_fixed(std::uint64_t n, std::uint64_t of, int decimals);
/// A fraction (1 is all) as a percentage of `significant` significant figures: "40%", "0.125%";
/// "0" for 0.
std::string fraction_percent(double fraction, int significant);

/// "2^k" (k may be negative: "2^-3").
std::string pow2_label(int k);
/// A scale: "2^10" when it is a power of two, else the shortest decimal that reads back as the
/// same float ("0.1", "3").
std::string scale_label(float s);
/// A scale: "2^10" when it is a power of two, else `significant` significant figures ("{:.Ng}").
std::string scale_label(double s, int significant);
/// (A double without a precision would be narrowed to float: say which one is meant.)
std::string scale_label(double s) = delete;

/// Three significant figures in scientific notation, "-" for NaN, "0" for 0: "1.29e-03".
std::string scientific(double v);
/// Decibels with one decimal, "-" for NaN, "exact" for +inf (no noise at all): "73.7".
std::string decibels(double v);

/// An axis tick label: plain ("2500") while the axis tops out below 10^4, else in thousands,
/// millions or billions of the unit the top needs ("25k", "1.5M", "2G"); "0" stays "0".
std::string axis_number(double v, double top);

/// Text from a file (a tensor name, a trace's @model, a path) made safe to print: a terminal
/// must show it, never obey it. Bytes that are not valid UTF-8, the C0 controls (tab and line
/// breaks included), DEL and the C1 controls U+0080..U+009F become \xNN (C1: \u0080..\u009f), so
/// ESC [ ... and OSC sequences print as text; valid UTF-8 otherwise passes as it is. Every
/// human-readable output (text, CSV, figure titles, error messages) goes through it; JSON has
/// its own escaping (fpscope::json_text).
std::string printable(std::string_view s);

/// A CSV field per RFC 4180: as it is, or in double quotes (a quote inside doubled) when it holds
/// a comma, a quote or a line break.
std::string csv_field(std::string_view s);

}  // namespace fpscope::cli
