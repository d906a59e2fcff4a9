// 1. Decoding: every code of every format, scalar and bulk (float and double), against the
// reference's field-by-field valuation; class, NaN-ness, the sign of zeros, NaN payloads; the
// format's figures (facts_of) found from them.
#include <cmath>
#include <numeric>
#include <optional>
#include <set>
#include <string>

#include "common.hpp"
#include "ref_exact.hpp"

using namespace unit;

namespace {

fpscope::value_class to_fpscope(ref::cls c) {
  switch (c) {
    case ref::cls::zero: return fpscope::value_class::zero;
    case ref::cls::subnormal: return fpscope::value_class::subnormal;
    case ref::cls::normal: return fpscope::value_class::normal;
    case ref::cls::infinite: return fpscope::value_class::infinite;
    case ref::cls::nan: return fpscope::value_class::nan;
  }
  return fpscope::value_class::nan;
}

// Whether `got` is the value the reference gives the code. `want` is the rational value as a
// double, which to_double_exact proves exact, so comparing doubles is comparing values.
bool same_value(double got, const ref::code_info& ci, double want) {
  switch (ci.c) {
    case ref::cls::nan: return std::isnan(got);
    case ref::cls::infinite: return std::isinf(got) && std::signbit(got) == ci.neg;
    case ref::cls::zero: return got == 0 && std::signbit(got) == ci.neg;
    default: return got == want;
  }
}

}  // namespace

TEMPLATE_TEST_CASE("decode: every code", "[decode]", FPSCOPE_UNIT_FORMATS) {
  const fpscope::format f = fmt_of<TestType>;
  using W = storage_t<TestType>;
  const std::uint32_t n = std::uint32_t{1} << f.bits;
  std::vector<W> codes(n);
  std::iota(codes.begin(), codes.end(), W{0});
  std::vector<float> bf(n);
  std::vector<double> bd(n);
  fpscope::decode(std::span<const W>(codes), std::span<float>(bf), f);
  fpscope::decode(std::span<const W>(codes), std::span<double>(bd), f);

  mismatches mm;
  std::size_t nans = 0, zeros = 0, infs = 0;
  for (std::uint32_t c = 0; c < n; ++c) {
    const ref::code_info ci = ref::decode_fields(c, f);
    const double s = fpscope::decode(c, f);
    const auto cls = fpscope::classify(c, f);
    ++mm.checked;
    nans += ci.c == ref::cls::nan;
    zeros += ci.c == ref::cls::zero;
    infs += ci.c == ref::cls::infinite;
    const bool finite = ci.c == ref::cls::normal || ci.c == ref::cls::subnormal;
    const double want = finite ? ref::to_double_exact(ci.value) : 0.0;
    if (!same_value(s, ci, want) || !same_value(bd[c], ci, want) || !same_value(double(bf[c]), ci, want) ||
        std::signbit(bf[c]) != std::signbit(s) || cls != to_fpscope(ci.c)) {
      mm.add(std::string(f.name) + " code " + ref::hex(c) + ": decode " + ref::show(s) + ", bulk " +
             ref::show(bd[c]) + " / " + ref::show(bf[c]) + ", class " + std::to_string(int(cls)) +
             ", reference class " + std::to_string(int(ci.c)) + " value " + ci.value.str());
      continue;
    }
    // The format's own recognition of the special codes (format.hpp), which every decoder
    // uses, ignores the bits above the format's width.
    const std::uint32_t high = ~f.mask();
    // IEEE 754-2008 6.2.1: the quiet bit is the first bit of the trailing significand field.
    const bool snan = ci.c == ref::cls::nan && f.specials == fpscope::special::ieee && !((c >> (f.man_bits - 1)) & 1u);
    for (const std::uint32_t k : {c, c | high}) {
      if (f.is_nan(k) != (ci.c == ref::cls::nan) || f.is_inf(k) != (ci.c == ref::cls::infinite) ||
          f.is_nonfinite(k) != (f.is_nan(k) || f.is_inf(k)) || f.is_subnormal(k) != (ci.c == ref::cls::subnormal) ||
          f.is_snan(k) != snan ||
          bits_of(fpscope::decode(k, f)) != bits_of(s))
        mm.add(std::string(f.name) + " code " + ref::hex(k) + ": is_nan " + std::to_string(f.is_nan(k)) +
               " is_inf " + std::to_string(f.is_inf(k)) + " is_subnormal " + std::to_string(f.is_subnormal(k)) +
               " is_snan " + std::to_string(f.is_snan(k)) + ", reference class " + std::to_string(int(ci.c)));
    }
    // NaN codes of IEEE-style formats decode to a quiet NaN carrying sign and payload
    // (the fraction field at the top of binary64's); the others to some NaN.
    if (ci.c == ref::cls::nan && f.specials == fpscope::special::ieee) {
      const std::uint64_t frac = c & ((1u << f.man_bits) - 1);
      const std::uint64_t want_nan = (ci.neg ? 1ull << 63 : 0) | 0x7FF8000000000000ull | (frac << (52 - f.man_bits));
      if (bits_of(s) != want_nan || bits_of(bd[c]) != want_nan)
        mm.add(std::string(f.name) + " NaN code " + ref::hex(c) + " decodes to " + ref::show(s) +
               ", expected " + ref::hex(want_nan));
    }
  }
  mm.report(std::string(f.name) + " decode");

  // Counts from the format definitions (not from either implementation).
  const std::uint32_t mag = f.is_signed() ? n / 2 : n;
  const std::uint32_t man = 1u << f.man_bits;
  switch (f.specials) {
    case fpscope::special::ieee:
      CHECK(infs == 2);
      CHECK(nans == 2 * (man - 1));
      CHECK(zeros == 2);
      break;
    case fpscope::special::fn:
      CHECK(nans == 2);
      CHECK(zeros == 2);
      break;
    case fpscope::special::fnuz:
      CHECK(nans == 1);
      CHECK(zeros == 1);
      break;
    case fpscope::special::finite:
      CHECK(nans == 0);
      CHECK(zeros == 2);
      break;
    case fpscope::special::e8m0:
      CHECK(nans == 1);
      CHECK(zeros == 0);
      break;
  }
  CHECK(infs == (f.specials == fpscope::special::ieee ? 2u : 0u));
  // The reference's table of finite non-negative values has the size the definitions give.
  std::uint32_t finite = 0;
  switch (f.specials) {
    case fpscope::special::ieee: finite = mag - man; break;  // less inf and the NaNs
    case fpscope::special::fn: finite = mag - 1; break;
    case fpscope::special::fnuz:
    case fpscope::special::finite: finite = mag; break;
    case fpscope::special::e8m0: finite = 255; break;
  }
  CHECK(ref::get(TestType::id).n() == finite);
}

TEST_CASE("decode: hand-checked values", "[decode]") {
  using fpscope::builtin;
  using fpscope::format_id;
  // From the formats' definitions, by hand.
  CHECK(fpscope::decode(0x3C00, builtin(format_id::fp16)) == 1.0);
  CHECK(fpscope::decode(0x7BFF, builtin(format_id::fp16)) == 65504.0);
  CHECK(fpscope::decode(0x0001, builtin(format_id::fp16)) == 0x1p-24);
  CHECK(fpscope::decode(0x7F7F, builtin(format_id::bf16)) == 0x1.FEp127);
  CHECK(fpscope::decode(0x7E, builtin(format_id::e4m3)) == 448.0);
  CHECK(fpscope::decode(0xFE, builtin(format_id::e4m3)) == -448.0);
  CHECK(fpscope::decode(0x01, builtin(format_id::e4m3)) == 0x1p-9);
  CHECK(fpscope::decode(0x7B, builtin(format_id::e5m2)) == 57344.0);
  CHECK(fpscope::decode(0x7F, builtin(format_id::e4m3fnuz)) == 240.0);
  CHECK(fpscope::decode(0x7F, builtin(format_id::e5m2fnuz)) == 57344.0);
  CHECK(fpscope::decode(0x1F, builtin(format_id::e2m3)) == 7.5);
  CHECK(fpscope::decode(0x1F, builtin(format_id::e3m2)) == 28.0);
  CHECK(fpscope::decode(0x7, builtin(format_id::e2m1)) == 6.0);
  CHECK(fpscope::decode(0x1, builtin(format_id::e2m1)) == 0.5);
  CHECK(fpscope::decode(0x00, builtin(format_id::e8m0)) == 0x1p-127);
  CHECK(fpscope::decode(0xFE, builtin(format_id::e8m0)) == 0x1p127);
  CHECK(fpscope::decode(0x7F, builtin(format_id::e8m0)) == 1.0);
  CHECK(std::isnan(fpscope::decode(0xFF, builtin(format_id::e8m0))));
  CHECK(std::isnan(fpscope::decode(0x80, builtin(format_id::e4m3fnuz))));
  CHECK(std::isnan(fpscope::decode(0x7F, builtin(format_id::e4m3))));
  CHECK(std::isinf(fpscope::decode(0x3FC00, builtin(format_id::tf32))));
  CHECK(fpscope::decode(0x40001, builtin(format_id::tf32)) == -0x1p-136);
  CHECK(fpscope::decode(0x1FC00, builtin(format_id::tf32)) == 1.0);
}

TEST_CASE("reference: exact values round-trip through to_double_exact", "[decode][reference]") {
  // The reference's own conversions, checked on random normal doubles and hand-picked ones.
  std::mt19937_64 rng(11);
  std::size_t bad = 0;
  for (int i = 0; i < 20000; ++i) {
    const double x = std::ldexp(1.0 + double(rng() >> 12) * 0x1p-52, int(rng() % 1800) - 900) * ((rng() & 1) ? -1 : 1);
    bad += ref::to_double_exact(ref::exact(x)) != x;
  }
  CHECK(bad == 0);
  CHECK(ref::exact(0.75) == ref::rational(3, 4));
  CHECK(ref::exact(-0x1p-149) == -ref::pow2(-149));
  CHECK(ref::to_double_exact(ref::rational(5, 8)) == 0.625);
  CHECK_THROWS(ref::to_double_exact(ref::rational(1, 3)));
  CHECK_THROWS(ref::to_double_exact(ref::pow2(60) + 1));
}

TEMPLATE_TEST_CASE("format facts: found from the codes, as the definitions say", "[decode]", FPSCOPE_UNIT_FORMATS) {
  const fpscope::format f = fmt_of<TestType>;
  const ref::table& t = ref::get(TestType::id);
  const fpscope::format_facts r = fpscope::facts_of(f);
  // Against the reference's table of values (built from the definitions, Boost arithmetic).
  const double smallest = t.val[0] > 0 ? t.val[0] : t.val[1];
  CHECK(r.name == f.name);
  CHECK(r.max_finite == t.max());
  CHECK(r.max_finite_bits == t.max_code());
  CHECK(r.min_normal == t.min_normal);
  CHECK(r.emin == t.emin);
  CHECK(r.has_subnormals == t.has_subnormals);
  CHECK(r.min_subnormal == (t.has_subnormals ? std::optional<double>(smallest) : std::nullopt));
  CHECK(r.has_negative_zero == t.has_neg_zero);
  CHECK(r.binades == std::log2(t.max() / smallest));
  // Against the format's own definition.
  CHECK(r.has_inf == f.has_inf());
  CHECK(r.has_nan == f.has_nan());
  CHECK(r.is_signed == f.is_signed());
  CHECK(r.emax == f.emax());
  CHECK(r.max_finite_bits == f.max_finite_bits());
  CHECK(r.storage_bytes == f.storage_bytes());
  // Every code is counted once: finite, NaN, or one of the two infinities.
  CHECK(r.finite_codes + r.nan_codes + (r.has_inf ? 2u : 0u) == std::uint64_t{f.mask()} + 1);
  CHECK(r.finite_codes == (f.is_signed() ? 2 * t.n() - (t.has_neg_zero ? 0 : 1) : t.n()));
  // The key names: one per fact, none repeated.
  std::set<std::string> keys;
  int visited = 0;
  fpscope::for_each_fact(r, [&](const char* key, const auto&) {
    keys.insert(key);
    ++visited;
  });
  CHECK(visited == 23);
  CHECK(keys.size() == std::size_t(visited));
}
