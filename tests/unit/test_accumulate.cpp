// Accumulation models (fpscope::dot) on cases whose answer is known in closed form: a running
// sum of equal values stalls once the accumulator's last place exceeds twice the addend, and
// promotion into a binary32 total every K products removes the stall.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "fpscope/accumulate.hpp"

using fpscope::dot;
using fpscope::parse_accumulator;

namespace {
// Summing n ones (1 x 1 products) with a p-bit nearest-even accumulator: below 2^p every sum is
// exact; at 2^p, 2^p + 1 is a tie between 2^p and 2^p + 2 and goes to the even significand,
// 2^p, where the sum stays. Truncation stalls at the same place.
double stall(std::size_t n, int p) { return std::min(double(n), std::ldexp(1.0, p)); }
}  // namespace

TEST_CASE("accumulate: a sum of ones stalls at 2^p", "[accumulate]") {
  const std::vector<double> ones(5000, 1.0);
  struct acc_case {
    const char* spec;
    int p;
  };
  for (const auto& c : {acc_case{"fp16", 11}, acc_case{"bf16", 8}, acc_case{"tf32", 11}, acc_case{"bits:4", 4},
                        acc_case{"bits:9", 9}, acc_case{"bits:12", 12}}) {
    for (std::size_t n : {std::size_t{100}, std::size_t{256}, std::size_t{257}, std::size_t{2049}, std::size_t{5000}}) {
      INFO(c.spec << " n=" << n);
      const auto r = dot(std::span(ones).first(n), std::span(ones).first(n), parse_accumulator(c.spec));
      CHECK(r.value == stall(n, c.p));
      CHECK(r.exact == double(n));
      CHECK(r.abs_error == stall(n, c.p) - double(n));
      CHECK(r.rel_error == (stall(n, c.p) - double(n)) / double(n));
      // In units of the accumulator's last place at |exact| = n: 2^(floor(log2 n) - (p - 1)).
      const double ulp = std::ldexp(1.0, std::ilogb(double(n)) - (c.p - 1));
      CHECK(r.ulp_error == (stall(n, c.p) - double(n)) / std::max(ulp, 0x1p-126));
    }
  }
}

TEST_CASE("accumulate: promotion every K products removes the stall", "[accumulate]") {
  const std::vector<double> ones(4096, 1.0);
  for (std::size_t k : {std::size_t{1}, std::size_t{128}, std::size_t{1000}, std::size_t{2048}}) {
    INFO("block " << k);
    const auto r = dot(ones, ones, parse_accumulator("fp16", k));
    CHECK(r.value == 4096.0);  // every partial sum (at most 2048) is exact in fp16
    CHECK(r.abs_error == 0.0);
  }
  // With blocks of 4096 nothing is promoted before the end: the stall stays.
  CHECK(dot(ones, ones, parse_accumulator("fp16", 4096)).value == 2048.0);
}

TEST_CASE("accumulate: cancellation, exact error and directed rounding", "[accumulate]") {
  // fp32: 2^30 + 1 rounds back to 2^30 (1 is below half an ulp, 64), then - 2^30 gives 0; exact 1.
  const std::vector<double> a{0x1p30, 1.0, -0x1p30}, one{1.0, 1.0, 1.0};
  const auto r = dot(a, one, parse_accumulator("fp32"));
  CHECK(r.value == 0.0);
  CHECK(r.exact == 1.0);
  CHECK(r.abs_error == -1.0);
  CHECK(r.rel_error == -1.0);
  // Truncation: 1 + 2^-24 + 2^-24 in binary32 toward zero stays 1 (each step drops 2^-24);
  // nearest-even also stays 1 (a tie each time, to even); rounding up gives 1 + 2^-22 (two
  // steps of one ulp, 2^-23 each).
  const std::vector<double> b{1.0, 0x1p-24, 0x1p-24};
  auto acc = parse_accumulator("fp32");
  acc.round = fpscope::rounding::rtz;
  CHECK(dot(b, one, acc).value == 1.0);
  acc.round = fpscope::rounding::rne;
  CHECK(dot(b, one, acc).value == 1.0);
  acc.round = fpscope::rounding::rup;
  CHECK(dot(b, one, acc).value == 1.0 + 0x1p-22);
  CHECK(dot(b, one, acc).exact == 1.0 + 0x1p-23);
}

TEST_CASE("accumulate: bad accumulators and sizes are rejected", "[accumulate]") {
  CHECK_THROWS_AS(parse_accumulator("fp64"), std::invalid_argument);
  CHECK_THROWS_AS(parse_accumulator("bits:1"), std::invalid_argument);
  CHECK_THROWS_AS(parse_accumulator("bits:25"), std::invalid_argument);
  CHECK_THROWS_AS(parse_accumulator("bits:x"), std::invalid_argument);
  const std::vector<double> a{1.0, 2.0}, b{1.0};
  CHECK_THROWS_AS(dot(a, b, parse_accumulator("fp32")), std::invalid_argument);
}
