// Shared helpers of the unit tests: the format of a tag, its storage word, seeded randomness,
// the boundary inputs every format is checked on, and a mismatch collector that reports the
// first few failures in full instead of one Catch assertion per element (millions of them).
#pragma once

#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "formats.hpp"
#include "fpscope/convert.hpp"
#include "reference.hpp"

namespace unit {

template <class Tag>
inline constexpr fpscope::format fmt_of = fpscope::builtin(Tag::id);

/// The unsigned word one code of the format is stored in by the bulk API.
template <class Tag>
using storage_t = std::conditional_t<
    fmt_of<Tag>.storage_bytes() == 1, std::uint8_t,
    std::conditional_t<fmt_of<Tag>.storage_bytes() == 2, std::uint16_t, std::uint32_t>>;

/// A generator seeded by a fixed constant, the test's own salt and the format: reproducible.
inline std::mt19937_64 rng_for(std::uint64_t salt, fpscope::format_id id) {
  return std::mt19937_64(0x5EED'F05C'09E0ull ^ (salt * 0x100000001B3ull) ^ static_cast<std::uint64_t>(id));
}

float f32_from_bits(std::uint32_t b);
double f64_from_bits(std::uint64_t b);
std::uint32_t bits_of(float x);
std::uint64_t bits_of(double x);

/// Inputs of both widths. `finite` holds the ordinary values, `special` the ones every policy
/// combination is tried on (zeros, infinities, NaNs, input subnormals, the range's ends).
struct input_set {
  std::vector<double> d;
  std::vector<float> f;
};

/// For every pair of adjacent representable magnitudes: both values, their midpoint, and
/// `steps` nextafter steps either side of each, in float and in double, both signs. `stride`
/// > 1 keeps every stride-th pair (plus all pairs near zero and near max).
input_set boundary_inputs(const ref::table& t, int steps, std::size_t stride = 1);

/// Zeros, infinities, quiet and signalling NaNs with payloads, input subnormals, min
/// subnormal / 2 and its neighbours, max, max + half ulp, the next binade and beyond.
input_set special_inputs(const ref::table& t);

/// Random bit patterns, mostly with exponents in and around the format's range.
input_set random_inputs(const ref::table& t, std::mt19937_64& rng, std::size_t n);

/// Every combination of the policy switches: 6 modes x 2 overflow x saturate_inf x ftz x daz
/// x 3 NaN styles x 2 nan_to_finite = 576.
std::vector<fpscope::policy> all_policies();

/// Collects mismatches; keeps the first `keep` descriptions.
struct mismatches {
  std::size_t count = 0, checked = 0;
  std::vector<std::string> first;
  std::size_t keep = 12;
  void add(std::string s) {
    if (first.size() < keep) first.push_back(std::move(s));
    ++count;
  }
  /// One Catch assertion for the lot, with the first mismatches as context. A collector that
  /// checked nothing fails: its loop ran over an empty set and proves nothing.
  void report(const std::string& what) const {
    std::ostringstream os;
    os << what << ": " << count << " mismatches in " << checked << " checks";
    for (const auto& s : first) os << "\n  " << s;
    INFO(os.str());
    CHECK(checked > 0);
    CHECK(count == 0);
  }
};

std::string flags_str(unsigned fl);

/// The reference lookup of one input, kept so that many policies share one binary search.
template <class T>
struct ref_input {
  T x;
  ref::input in;
  ref::located l, l_daz;
};
template <class T>
ref_input<T> prepare(const ref::table& t, T x) {
  ref_input<T> r{x, ref::describe(x), {}, {}};
  r.l = ref::locate(t, r.in, false);
  r.l_daz = r.in.subnormal ? ref::locate(t, r.in, true) : r.l;
  return r;
}

/// fpscope's encode (the flag-reporting overload and the plain one) against the reference.
template <class T>
void check_encode(const ref::table& t, const ref_input<T>& ri, const fpscope::policy& p,
                  mismatches& mm, std::uint64_t index = 0) {
  const ref::result want = ref::finish(t, p.daz ? ri.l_daz : ri.l, ri.in, p);
  unsigned fl = 0;
  const std::uint32_t got = fpscope::encode(ri.x, t.f, p, index, fl);
  const std::uint32_t got_plain = fpscope::encode(ri.x, t.f, p, index);
  ++mm.checked;
  if (got != want.code || fl != want.flags || got_plain != want.code) {
    std::ostringstream os;
    os << ref::describe(t.f, p) << ": " << ref::show(ri.x) << " -> " << ref::hex(got) << " "
       << flags_str(fl) << " (plain " << ref::hex(got_plain) << "), reference "
       << ref::hex(want.code) << " " << flags_str(want.flags);
    mm.add(os.str());
  }
}

}  // namespace unit
