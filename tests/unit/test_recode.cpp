// 4. recode F -> F': every code of every source format (tf32 sampled) into each target format
// equals the reference applied to the source code's value (from the reference's own decoding;
// NaN codes as the quiet NaN carrying sign and payload that decode documents).
#include <array>

#include "common.hpp"
#include "ref_exact.hpp"

using namespace unit;

namespace {

// The float64 a source code stands for, built from the reference's fields alone.
double source_value(std::uint32_t c, const fpscope::format& from) {
  const ref::code_info ci = ref::decode_fields(c, from);
  switch (ci.c) {
    case ref::cls::nan: {
      const std::uint64_t frac =
          from.specials == fpscope::special::ieee ? std::uint64_t(c & ((1u << from.man_bits) - 1)) : 0;
      const bool neg = from.specials == fpscope::special::ieee || from.specials == fpscope::special::fn ? ci.neg : false;
      return f64_from_bits((neg ? 1ull << 63 : 0) | 0x7FF8000000000000ull | (frac << (52 - from.man_bits)));
    }
    case ref::cls::infinite: return ci.neg ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
    case ref::cls::zero: return ci.neg ? -0.0 : 0.0;
    default: return ref::to_double_exact(ci.value);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("recode: every source format into this one", "[recode]", FPSCOPE_UNIT_FORMATS) {
  const ref::table& t = ref::get(TestType::id);
  const auto policies = ref::mode_overflow_policies();
  mismatches mm;
  for (int s = 0; s < fpscope::builtin_count; ++s) {
    const fpscope::format from = fpscope::builtin(static_cast<fpscope::format_id>(s));
    const std::uint32_t n = std::uint32_t{1} << from.bits;
    const std::uint32_t step = n > (1u << 16) ? 7 : 1;  // tf32: every 7th code (all residues of the fields)
    for (std::uint32_t c = 0; c < n; c += step) {
      const double v = source_value(c, from);
      const auto ri = prepare(t, v);
      for (std::size_t k = 0; k < policies.size(); ++k) {
        fpscope::policy p = policies[k];
        p.nan = static_cast<fpscope::nan_style>((c + k) % 3);
        const ref::result want = ref::finish(t, ri.l, ri.in, p);
        const std::uint32_t got = fpscope::recode(c, from, t.f, p);
        ++mm.checked;
        if (got != want.code)
          mm.add(std::string(from.name) + " " + ref::hex(c) + " (" + ref::show(v) + ") -> " + ref::describe(t.f, p) +
                 ": " + ref::hex(got) + ", reference " + ref::hex(want.code));
      }
    }
  }
  mm.report(std::string("recode into ") + t.f.name);
}

TEST_CASE("recode: round trips and hand-checked cases", "[recode]") {
  using fpscope::builtin;
  using fpscope::format_id;
  // Every code of a format recodes into itself unchanged (canonical NaN aside), and into a
  // wider format of the same family and back.
  for (int s = 0; s < fpscope::builtin_count; ++s) {
    const auto f = builtin(static_cast<format_id>(s));
    std::size_t bad = 0;
    for (std::uint32_t c = 0; c < (1u << f.bits); c += f.bits > 16 ? 3 : 1) {
      const auto ci = ref::decode_fields(c, f);
      if (ci.c == ref::cls::nan && f.specials != fpscope::special::ieee) continue;
      if (f.specials == fpscope::special::ieee && ci.c == ref::cls::nan && !(c >> (f.man_bits - 1) & 1)) continue;  // sNaN gets quieted
      bad += fpscope::recode(c, f, f) != c;
    }
    INFO(f.name);
    CHECK(bad == 0);
  }
  // e5m2 -> fp16 is exact (same exponent range, more fraction bits): code << 8.
  for (std::uint32_t c = 0; c < 256; ++c) {
    const auto ci = ref::decode_fields(c, builtin(format_id::e5m2));
    if (ci.c == ref::cls::nan) continue;
    CHECK(fpscope::recode(c, builtin(format_id::e5m2), builtin(format_id::fp16)) == c << 8);
  }
  // fp16 -> e4m3: 0x5F40 (464) ties to 448.
  CHECK(fpscope::recode(0x5F40, builtin(format_id::fp16), builtin(format_id::e4m3)) == 0x7E);
  // bf16 -> fp16: 1e5 (0x47C3) overflows.
  CHECK(fpscope::recode(0x47C3, builtin(format_id::bf16), builtin(format_id::fp16)) == 0x7C00);
}
