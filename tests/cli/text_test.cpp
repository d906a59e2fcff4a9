// The CLI's number formatting (tools/fpscope/text.hpp): the strings the tables, captions and
// figures print, which the CLI tests and users' scripts read.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "text.hpp"

using namespace fpscope::cli;

TEST_CASE("thousands separators", "[text]") {
  CHECK(grouped(0) == "0");
  CHECK(grouped(999) == "999");
  CHECK(grouped(1000) == "1,000");
  CHECK(grouped(1048576) == "1,048,576");
  CHECK(grouped(UINT64_MAX) == "18,446,744,073,709,551,615");
  CHECK(grouped_signed(-1234) == "-1,234");
  CHECK(grouped_signed(-5, unicode_minus) == "\u22125");
  CHECK(grouped_signed(INT64_MIN) == "-9,223,372,036,854,775,808");
  CHECK(grouped_signed(123456) == "123,456");
}

TEST_CASE("percentages", "[text]") {
  CHECK(percent(1, 0) == "-");
  CHECK(percent(0, 7) == "0");
  CHECK(percent(7, 7) == "100%");
  CHECK(percent(99999, 100000) == "100%");  // {:.3g} of 99.999: documented
  CHECK(percent(9996, 10000) == "100%");
  CHECK(percent(999, 1000) == "99.9%");
  CHECK(percent(123, 1000) == "12.3%");
  CHECK(percent(123, 10000) == "1.23%");
  CHECK(percent(12, 100000) == "0.012%");
  CHECK(percent_fixed(1, 0, 2) == "-");
  CHECK(percent_fixed(0, 3, 2) == "0");
  CHECK(percent_fixed(3, 3, 2) == "100.00%");
  CHECK(percent_fixed(1096, 10000, 2) == "10.96%");
  CHECK(percent_fixed(23, 10000, 2) == "0.23%");
  CHECK(percent_fixed(12, 1000000, 2) == "0.0012%");
  CHECK(fraction_percent(0, 3) == "0");
  CHECK(fraction_percent(0.4, 3) == "40%");
  CHECK(fraction_percent(0.00125, 3) == "0.125%");
}

TEST_CASE("scales and powers of two", "[text]") {
  CHECK(pow2_label(-3) == "2^-3");
  CHECK(scale_label(1024.0f) == "2^10");
  CHECK(scale_label(1.0f) == "2^0");
  CHECK(scale_label(std::numeric_limits<float>::denorm_min()) == "2^-149");
  CHECK(scale_label(0.1f) == "0.1");  // the float's shortest decimal, not 0.10000000149...
  CHECK(scale_label(3.0f) == "3");
  CHECK(scale_label(0.0f) == "0");
  CHECK(scale_label(-4.0f) == "-4");
  CHECK(scale_label(65536.0, 4) == "2^16");
  CHECK(scale_label(std::ldexp(1.0, -1074), 4) == "2^-1074");
  CHECK(scale_label(3.14159, 4) == "3.142");
  CHECK(scale_label(65504.0, 6) == "65504");
  CHECK(scale_label(std::numeric_limits<double>::infinity(), 4) == "inf");
}

TEST_CASE("errors and axis numbers", "[text]") {
  CHECK(scientific(std::nan("")) == "-");
  CHECK(scientific(0) == "0");
  CHECK(scientific(0.00129) == "1.29e-03");
  CHECK(decibels(std::nan("")) == "-");
  CHECK(decibels(std::numeric_limits<double>::infinity()) == "exact");
  CHECK(decibels(73.66) == "73.7");
  CHECK(axis_number(0, 1e7) == "0");
  CHECK(axis_number(2500, 5000) == "2500");
  CHECK(axis_number(25000, 50000) == "25k");
  CHECK(axis_number(1.5e6, 2e6) == "1.5M");
  CHECK(axis_number(2e9, 3e9) == "2G");
}

TEST_CASE("file text is printed escaped, never obeyed", "[text]") {
  using namespace std::string_literals;
  CHECK(printable("layer.0/weight") == "layer.0/weight");
  CHECK(printable("\x1b]0;title\x07\x1b[31m") == "\\x1b]0;title\\x07\\x1b[31m");  // OSC, CSI
  CHECK(printable("a\tb\nc\rd\x7f") == "a\\x09b\\x0ac\\x0dd\\x7f");
  CHECK(printable("\0x"s) == "\\x00x");
  CHECK(printable("\xc2\x9b" "2J") == "\\u009b2J");              // C1 CSI, as UTF-8
  CHECK(printable("\xc2\xa0\u2212\U0001F600") == "\xc2\xa0\u2212\U0001F600");  // valid UTF-8 stays
  CHECK(printable("\xff\xfe") == "\\xff\\xfe");                   // never UTF-8
  CHECK(printable("\xc0\xaf") == "\\xc0\\xaf");                   // overlong '/'
  CHECK(printable("\xe0\x80\xaf") == "\\xe0\\x80\\xaf");          // overlong, 3 bytes
  CHECK(printable("\xed\xa0\x80") == "\\xed\\xa0\\x80");          // a UTF-16 surrogate
  CHECK(printable("\xf4\x90\x80\x80") == "\\xf4\\x90\\x80\\x80");  // above U+10FFFF
  CHECK(printable("\xe2\x88") == "\\xe2\\x88");                   // cut short
  CHECK(printable("\xe2" "a") == "\\xe2" "a");
}

TEST_CASE("CSV fields per RFC 4180", "[text]") {
  CHECK(csv_field("w") == "w");
  CHECK(csv_field("a,b") == "\"a,b\"");
  CHECK(csv_field("say \"hi\"") == "\"say \"\"hi\"\"\"");
  CHECK(csv_field("two\nlines") == "\"two\nlines\"");
  CHECK(csv_field(printable("two\nlines")) == "two\\x0alines");
}
