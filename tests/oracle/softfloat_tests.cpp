// fp16 arithmetic and IEEE flags against Berkeley SoftFloat 3e (kernels_softfloat.cpp): add,
// sub, mul, div, sqrt and fma (the one operation no hardware oracle here has for fp16) in the
// six rounding modes the two share (rne rtz rdn rup rna rto), results AND flags through the
// scalar API, results through the bulk API (arith_bulk.hpp) as well.
// Cases: seeded random codes of every class; every special code against a stride of all codes
// on either side; for fma also midpoint products (1.5 * b with b's fraction odd is half-way
// between two fp16 values) with tiny addends that decide them, products at the overflow
// threshold, and the invalid cases.
// The one expected difference (../shared/oracles.md): fma(0, inf, NaN) and fma(inf, 0, NaN).
// fpscope's ieee profile follows x86 FMA there (the NaN addend quieted; invalid only for a
// signalling one); SoftFloat raises invalid and returns its default NaN. Those are counted
// apart and must be exactly that.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "fpscope/arith.hpp"
#include "fpscope/arith_bulk.hpp"
#include "kernels_softfloat.hpp"
#include "oracle.hpp"

namespace {

namespace sf = oracle::softfloat;
using fpscope::rounding;

struct mode_pair {
  rounding r;
  int sf_mode;
};
constexpr mode_pair modes[] = {{rounding::rne, sf::near_even}, {rounding::rtz, sf::min_mag},
                               {rounding::rdn, sf::min},       {rounding::rup, sf::max},
                               {rounding::rna, sf::near_max_mag}, {rounding::rto, sf::odd}};

constexpr std::uint32_t qnan = 0x7E00, snan = 0x7D00, inf = 0x7C00;

struct triples {
  std::vector<std::uint16_t> a, b, c;
  void push(std::uint32_t x, std::uint32_t y, std::uint32_t z) {
    a.push_back(std::uint16_t(x));
    b.push_back(std::uint16_t(y));
    c.push_back(std::uint16_t(z));
  }
  std::size_t size() const { return a.size(); }
};

triples make_cases(sf::sop o, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const auto code = [&] { return std::uint32_t(rng() & 0xFFFF); };
  triples t;
  for (int i = 0; i < 2000000; ++i) t.push(code(), code(), code());
  // Specials (both signs) against every 5th code, on either side.
  const std::uint32_t specials[] = {0, 1, 0x3FF, 0x400, 0x3C00, 0x7BFF, inf, 0x7C01, snan, qnan, 0x7FFF};
  for (const std::uint32_t s0 : specials)
    for (const std::uint32_t s : {s0, s0 | 0x8000u})
      for (std::uint32_t x = 0; x < 0x10000; x += 5) {
        t.push(s, x, code());
        t.push(x, s, code());
        if (o == sf::sop::fma) t.push(code(), x, s);
      }
  if (o == sf::sop::fma) {
    for (int i = 0; i < 1000000; ++i) {
      // 1.5 * 2^k times a b with an odd fraction: a product exactly half-way between two fp16
      // values (when normal); the addend, zero or tiny of either sign, decides the rounding.
      const std::uint32_t ea = 1 + std::uint32_t(rng() % 30), eb = 1 + std::uint32_t(rng() % 30);
      const std::uint32_t a = (rng() & 0x8000) | ea << 10 | 0x200;
      const std::uint32_t b = (rng() & 0x8000) | eb << 10 | (std::uint32_t(rng() & 0x3FF) | 1);
      const std::uint32_t tiny[] = {0, 1, 2, 0x3FF, std::uint32_t(rng() & 0x1FFF)};
      t.push(a, b, tiny[rng() % 5] | (rng() & 0x8000));
    }
    // Products around the overflow threshold (65520) with addends either side of it.
    for (std::uint32_t a = 0x5B00; a < 0x5D00; a += 3)
      for (std::uint32_t b = 0x5B00; b < 0x5D00; b += 7) t.push(a, b, code() & 0xBFFF);
    // The invalid cases, and the x86-vs-SoftFloat one.
    for (const std::uint32_t z : {0u, 0x3C00u, inf, qnan, snan, 0xFE00u})
      for (const std::uint32_t s : {0u, 0x8000u}) {
        t.push(0 | s, inf, z);
        t.push(inf | s, 0, z);
      }
  }
  return t;
}

fpscope::op to_op(sf::sop o) {
  switch (o) {
    case sf::sop::add: return fpscope::op::add;
    case sf::sop::sub: return fpscope::op::sub;
    case sf::sop::mul: return fpscope::op::mul;
    case sf::sop::div: return fpscope::op::div;
    case sf::sop::sqrt: return fpscope::op::sqrt;
    case sf::sop::fma: return fpscope::op::fma;
  }
  return fpscope::op::add;
}

// fma(0, inf, NaN) in either order of the product: the documented x86-vs-SoftFloat choice (x86
// returns the NaN addend quieted, raising invalid only when it signals).
bool x86_nan_rule(sf::sop o, std::uint16_t a, std::uint16_t b, std::uint16_t c) {
  const auto mag = [](std::uint16_t v) { return v & 0x7FFFu; };
  const bool zero_inf = (mag(a) == 0 && mag(b) == inf) || (mag(a) == inf && mag(b) == 0);
  return o == sf::sop::fma && zero_inf && mag(c) > inf;
}

void run(sf::sop o, const char* name) {
  if (!sf::built()) {
    oracle::skip("Berkeley SoftFloat not found at configure time (tools/setup.sh fetches it into "
                 ".deps/softfloat; FPSCOPE_SOFTFLOAT_DIR points elsewhere)");
    return;
  }
  const auto f = fpscope::builtin(fpscope::format_id::fp16);
  const triples t = make_cases(o, 0x5F00 + std::uint64_t(o));
  const std::size_t n = t.size();
  std::vector<std::uint16_t> want(n), bulk(n);
  std::vector<std::uint8_t> want_fl(n);
  std::uint64_t compared = 0, bad = 0, bad_bulk = 0, x86_rule = 0, inexact = 0, underflow = 0, overflow = 0,
                invalid = 0;
  std::string first;
  const auto t0 = std::chrono::steady_clock::now();
  for (const mode_pair m : modes) {
    fpscope::policy p = fpscope::profile_policy(fpscope::profile::ieee, f);
    p.round = m.r;
    sf::f16(o, m.sf_mode, t.a.data(), t.b.data(), t.c.data(), want.data(), want_fl.data(), n);
    fpscope::apply<std::uint16_t>(to_op(o), t.a, t.b, t.c, bulk, f, p);
    for (std::size_t i = 0; i < n; ++i) {
      unsigned fl = 0;
      const auto got = std::uint16_t(fpscope::apply(to_op(o), t.a[i], t.b[i], t.c[i], f, p, 0, &fl));
      ++compared;
      inexact += (want_fl[i] & fpscope::flag_inexact) != 0;
      underflow += (want_fl[i] & fpscope::flag_underflow) != 0;
      overflow += (want_fl[i] & fpscope::flag_overflow) != 0;
      invalid += (want_fl[i] & fpscope::flag_invalid) != 0;
      if (x86_nan_rule(o, t.a[i], t.b[i], t.c[i])) {
        // fpscope: c quieted, invalid only for a signalling c; SoftFloat: invalid, default NaN.
        ++x86_rule;
        const unsigned want_x86 = (t.c[i] & 0x7FFFu) < qnan ? unsigned(fpscope::flag_invalid) : 0u;
        if (got != (t.c[i] | 0x0200u) || fl != want_x86 || bulk[i] != got) ++bad;
        continue;
      }
      const bool differ = got != want[i] || fl != want_fl[i];
      bad += differ;
      bad_bulk += bulk[i] != want[i];
      if ((differ || bulk[i] != want[i]) && first.size() < 1500) {
        char line[200];
        std::snprintf(line, sizeof line, "  %s %s(%04x, %04x, %04x): softfloat %04x flags %02x, fpscope %04x flags %02x, bulk %04x\n",
                      fpscope::name(m.r).data(), name, t.a[i], t.b[i], t.c[i], want[i], want_fl[i], got, fl, bulk[i]);
        first += line;
      }
    }
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("oracle.softfloat.fp16.%s: %llu cases (%zu x 6 modes), %llu mismatches (results or flags), %llu bulk "
              "mismatches; flags seen: inexact %llu, underflow %llu, overflow %llu, invalid %llu; x86 NaN rule cases "
              "%llu; %.1f s\n",
              name, (unsigned long long)compared, n, (unsigned long long)bad, (unsigned long long)bad_bulk,
              (unsigned long long)inexact, (unsigned long long)underflow, (unsigned long long)overflow,
              (unsigned long long)invalid, (unsigned long long)x86_rule, s);
  INFO(first);
  CHECK(bad == 0);
  CHECK(bad_bulk == 0);
  // The comparison saw every flag it claims to check.
  CHECK(inexact > 1000);
  CHECK(invalid > 100);
  if (o != sf::sop::sqrt) CHECK(overflow > 100);
  if (o == sf::sop::mul || o == sf::sop::div || o == sf::sop::fma) CHECK(underflow > 100);
  if (o == sf::sop::fma) CHECK(x86_rule > 0);
}

}  // namespace

TEST_CASE("oracle.softfloat.fp16.add") { run(sf::sop::add, "add"); }
TEST_CASE("oracle.softfloat.fp16.sub") { run(sf::sop::sub, "sub"); }
TEST_CASE("oracle.softfloat.fp16.mul") { run(sf::sop::mul, "mul"); }
TEST_CASE("oracle.softfloat.fp16.div") { run(sf::sop::div, "div"); }
TEST_CASE("oracle.softfloat.fp16.sqrt") { run(sf::sop::sqrt, "sqrt"); }
TEST_CASE("oracle.softfloat.fp16.fma") { run(sf::sop::fma, "fma"); }
