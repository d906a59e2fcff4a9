#include "text.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace fpscope::cli {
namespace {

// frexp gives exactly 0.5 for powers of two, subnormals included; 0, inf and NaN never do.
template <class F>
bool is_pow2(F v, int& k) {
  int e = 0;
  if (std::frexp(v, &e) != F(0.5)) return false;
  k = e - 1;
  return true;
}

}  // namespace

std::string grouped(std::uint64_t n) {
  const std::string digits = fmt::format("{}", n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string grouped_signed(std::int64_t n, std::string_view minus) {
  // -(n + 1) + 1: the magnitude of INT64_MIN too, without overflowing.
  if (n < 0) return std::string(minus) + grouped(std::uint64_t(-(n + 1)) + 1);
  return grouped(std::uint64_t(n));
}

std::string percent(std::uint64_t n, std::uint64_t of) {
  if (of == 0) return "-";
  if (n == 0) return "0";
  if (n == of) return "100%";
  const double p = 100.0 * double(n) / double(of);
  if (p >= 99.95) return fmt::format("{:.3g}%", std::min(p, 99.999));
  if (p >= 10) return fmt::format("{:.1f}%", p);
  if (p >= 1) return fmt::format("{:.2f}%", p);
  return fmt::format("{:.2g}%", p);
}

std::string percent_fixed(std::uint64_t n, std::uint64_t of, int decimals) {
  if (of == 0) return "-";
  if (n == 0) return "0";
  const double p = 100.0 * double(n) / double(of);
  return p >= 1 ? fmt::format("{:.{}f}%", p, decimals) : fmt::format("{:.{}g}%", p, decimals);
}

std::string fraction_percent(double fraction, int significant) {
  if (fraction == 0) return "0";
  return fmt::format("{:.{}g}%", 100 * fraction, significant);
}

std::string pow2_label(int k) { return fmt::format("2^{}", k); }

std::string scale_label(float s) {
  int k = 0;
  return is_pow2(s, k) ? pow2_label(k) : fmt::format("{}", s);
}

std::string scale_label(double s, int significant) {
  int k = 0;
  return is_pow2(s, k) ? pow2_label(k) : fmt::format("{:.{}g}", s, significant);
}

std::string scientific(double v) { return std::isnan(v) ? "-" : v == 0 ? "0" : fmt::format("{:.2e}", v); }

std::string decibels(double v) { return std::isnan(v) ? "-" : std::isinf(v) ? "exact" : fmt::format("{:.1f}", v); }

std::string axis_number(double v, double top) {
  if (v == 0 || top < 1e4) return fmt::format("{:g}", v);
  if (top < 1e6) return fmt::format("{:g}k", v / 1e3);
  if (top < 1e9) return fmt::format("{:g}M", v / 1e6);
  return fmt::format("{:g}G", v / 1e9);
}

std::string printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  const auto byte = [](std::string_view t, std::size_t i) { return static_cast<unsigned char>(t[i]); };
  for (std::size_t i = 0; i < s.size();) {
    const unsigned char c = byte(s, i);
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7f) out += fmt::format("\\x{:02x}", c);
      else out += char(c);
      ++i;
      continue;
    }
    // One UTF-8 sequence (RFC 3629): its length from the lead byte, continuation bytes 10xxxxxx,
    // no overlong form, no surrogate, nothing above U+10FFFF.
    const std::size_t len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    bool valid = len != 0 && i + len <= s.size();
    char32_t cp = len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
    for (std::size_t k = 1; valid && k < len; ++k) {
      valid = (byte(s, i + k) & 0xc0) == 0x80;
      cp = (cp << 6) | (byte(s, i + k) & 0x3f);
    }
    valid = valid && !(len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) &&
            !(len == 4 && (cp < 0x10000 || cp > 0x10ffff));
    if (!valid) {
      out += fmt::format("\\x{:02x}", c);
      ++i;
    } else if (cp <= 0x9f) {  // a C1 control (two bytes, C2 80..C2 9F)
      out += fmt::format("\\u{:04x}", std::uint32_t(cp));
      i += len;
    } else {
      out.append(s.substr(i, len));
      i += len;
    }
  }
  return out;
}

std::string csv_field(std::string_view s) {
  if (s.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(s);
  std::string q = "\"";
  for (const char c : s) q += c == '"' ? std::string_view("\"\"") : std::string_view(&c, 1);
  return q + "\"";
}

}  // namespace fpscope::cli
