// 9. Bulk arithmetic (fpscope/arith_bulk.hpp). Its results are proven against the exact
// reference in test_arith.cpp (every case there also goes through the bulk API) and against
// x86 and CUDA in tests/oracle; this file checks the machinery around them: block edges (2048),
// the OpenMP threshold, threads, the scalar redo of inf/NaN elements mixed into vectorised
// blocks, stochastic rounding's first_index, which paths are vectorised, and bad arguments.
#include <algorithm>

#include "common.hpp"
#include "fpscope/arith_bulk.hpp"

using namespace unit;
using fpscope::op;
using fpscope::rounding;

namespace {

constexpr op all_ops[] = {op::add, op::sub, op::mul, op::div, op::sqrt, op::fma, op::min, op::max};

std::string op_str(op o) {
  static const char* const names[] = {"add", "sub", "mul", "div", "sqrt", "fma", "min", "max"};
  return names[int(o)];
}

// Random codes, mostly finite values within a few binades of 1 (so that vectorised blocks
// stay vectorised), with 1% anything (NaN, inf, subnormal, huge) sprinkled in.
template <class W>
std::vector<W> codes(const ref::table& t, std::mt19937_64& rng, std::size_t n) {
  const std::uint32_t mask = t.f.bits == 32 ? ~0u : (std::uint32_t{1} << t.f.bits) - 1;
  const std::size_t mid = std::size_t(std::lower_bound(t.val.begin(), t.val.end(), 1.0) - t.val.begin());
  const std::size_t span = std::min<std::size_t>(mid, std::size_t(4) << t.f.man_bits);
  std::vector<W> v(n);
  for (auto& c : v) {
    if (rng() % 100 == 0) {
      c = W(std::uint32_t(rng()) & mask);
    } else {
      const std::size_t i = std::min(t.n() - 1, mid - span / 2 + std::size_t(rng() % (span + 1)));
      c = W(t.code[i] | ((rng() & 1) && t.has_neg_zero ? t.sign_bit : 0u));
    }
  }
  return v;
}

}  // namespace

TEMPLATE_TEST_CASE("bulk arith equals scalar apply at block edges, thresholds and threads", "[bulk][arith]",
                   FPSCOPE_UNIT_FORMATS) {
  const ref::table& t = ref::get(TestType::id);
  using W = storage_t<TestType>;
  auto rng = rng_for(91, TestType::id);
  const std::size_t n_max = fpscope::arith_parallel_threshold + 2049;
  const std::vector<W> a = codes<W>(t, rng, n_max), b = codes<W>(t, rng, n_max), c = codes<W>(t, rng, n_max);
  std::vector<fpscope::policy> policies;
  for (const auto pr : {fpscope::profile::ieee, fpscope::profile::cuda, fpscope::profile::ml_dtypes})
    policies.push_back(fpscope::profile_policy(pr, t.f));
  fpscope::policy odd;
  odd.daz = odd.ftz = true;
  odd.on_overflow = fpscope::overflow::saturate;
  odd.saturate_inf = false;
  policies.push_back(odd);
  const rounding modes[] = {rounding::rne, rounding::rtz, rounding::rup, rounding::rdn, rounding::rna, rounding::rto,
                            rounding::sr};
  const std::size_t sizes[] = {0, 1, 15, 2047, 2048, 2049, 3 * 2048 + 7};
  mismatches mm;
  std::vector<W> want(n_max), out;
  std::size_t combo = 0, vectorised = 0;
  for (const op o : all_ops) {
    for (std::size_t k = 0; k < 3; ++k, ++combo) {  // three (policy, mode) pairs per operation
      fpscope::policy p = policies[combo % policies.size()];
      p.round = modes[(combo * 3 + k) % 7];
      p.seed = 99;
      fpscope::bulk_options opt;
      opt.first_index = p.round == rounding::sr ? 777 : 0;
      vectorised += fpscope::apply_is_vectorised(o, t.f, p);
      for (std::size_t i = 0; i < n_max; ++i)
        want[i] = W(fpscope::apply(o, a[i], b[i], c[i], t.f, p, opt.first_index + i));
      const auto run = [&](std::size_t n, int threads) {
        opt.threads = threads;
        out.assign(n, W(0x5A));
        fpscope::apply<W>(o, {a.data(), n}, {b.data(), n}, {c.data(), n}, out, t.f, p, opt);
        ++mm.checked;
        const auto bad = std::mismatch(out.begin(), out.end(), want.begin());
        if (bad.first == out.end()) return;
        const std::size_t i = std::size_t(bad.first - out.begin());
        mm.add(ref::describe(t.f, p) + " " + op_str(o) + " n=" + std::to_string(n) + " threads=" +
               std::to_string(threads) + ": element " + std::to_string(i) + " (" + ref::hex(a[i]) + ", " +
               ref::hex(b[i]) + ", " + ref::hex(c[i]) + ") bulk " + ref::hex(*bad.first) + ", scalar " +
               ref::hex(want[i]));
      };
      for (const std::size_t n : sizes) run(n, 1);
      // Around the OpenMP threshold: serial, two threads, and the default.
      run(fpscope::arith_parallel_threshold - 1, 0);
      run(n_max, 2);
      run(n_max, 0);
    }
  }
  mm.report(std::string(t.f.name) + " bulk arith vs scalar");
  // Every format but e8m0 takes the vectorised path in most of these combinations.
  if (t.f.specials != fpscope::special::e8m0) CHECK(vectorised >= 12);
}

TEMPLATE_TEST_CASE("bulk arith: fma of every operand triple, nearest-even", "[bulk][arith]", e4m3, e5m2, e4m3fnuz,
                   e5m2fnuz, e2m3, e3m2, e2m1) {
  // Every (a, b, c) of the small formats: the bulk fma (for e4m3, e4m3fnuz and fp6/fp4 a plain
  // binary32 fma rounded twice, which arith.cpp argues is innocuous for them) against the
  // scalar apply (binary64 round-to-odd, proven against the exact reference in test_arith).
  const ref::table& t = ref::get(TestType::id);
  using W = storage_t<TestType>;
  const std::uint32_t n = std::uint32_t{1} << t.f.bits;
  std::vector<W> a(std::size_t(n) * n), b(a.size()), c(a.size()), out(a.size());
  mismatches mm;
  for (const auto pr : {fpscope::profile::ieee, fpscope::profile::cuda}) {
    const fpscope::policy p = fpscope::profile_policy(pr, t.f);  // nearest-even
    CHECK(fpscope::apply_is_vectorised(op::fma, t.f, p));
    for (std::uint32_t z = 0; z < n; ++z) {
      for (std::uint32_t i = 0; i < n * n; ++i) {
        a[i] = W(i / n);
        b[i] = W(i % n);
        c[i] = W(z);
      }
      const std::size_t m = std::size_t(n) * n;
      fpscope::apply<W>(op::fma, {a.data(), m}, {b.data(), m}, {c.data(), m}, {out.data(), m}, t.f, p);
      for (std::size_t i = 0; i < m; ++i) {
        ++mm.checked;
        const auto want = W(fpscope::apply(op::fma, a[i], b[i], c[i], t.f, p));
        if (out[i] != want)
          mm.add(ref::describe(t.f, p) + ": fma(" + ref::hex(a[i]) + ", " + ref::hex(b[i]) + ", " + ref::hex(c[i]) +
                 ") bulk " + ref::hex(out[i]) + ", scalar " + ref::hex(want));
      }
    }
  }
  mm.report(std::string(t.f.name) + " fma of every triple");
}

TEMPLATE_TEST_CASE("bulk arith: sr first_index offsets", "[bulk][arith][sr]", fp16, e4m3) {
  // A slice with first_index = its offset gives the bits of the whole array at those places.
  const ref::table& t = ref::get(TestType::id);
  using W = storage_t<TestType>;
  auto rng = rng_for(92, TestType::id);
  const std::size_t n = 5000;
  const auto a = codes<W>(t, rng, n), b = codes<W>(t, rng, n);
  fpscope::policy p;
  p.round = rounding::sr;
  p.seed = 3;
  std::vector<W> whole(n), part(n);
  fpscope::apply<W>(op::mul, a, b, {}, whole, t.f, p);
  const std::size_t cut = 1234;
  fpscope::bulk_options o;
  fpscope::apply<W>(op::mul, {a.data(), cut}, {b.data(), cut}, {}, {part.data(), cut}, t.f, p, o);
  o.first_index = cut;
  fpscope::apply<W>(op::mul, {a.data() + cut, n - cut}, {b.data() + cut, n - cut}, {}, {part.data() + cut, n - cut},
                    t.f, p, o);
  CHECK(part == whole);
  // And the seed matters: another seed changes some results.
  p.seed = 4;
  fpscope::apply<W>(op::mul, a, b, {}, part, t.f, p);
  CHECK(part != whole);
}

TEST_CASE("bulk arith: which paths are vectorised", "[bulk][arith]") {
  using fpscope::format_id;
  // Every deterministic mode of + - * / sqrt fma in every built-in format but e8m0; not sr,
  // min, max or e8m0 (arith.cpp explains why).
  for (int i = 0; i < fpscope::builtin_count; ++i) {
    const auto f = fpscope::builtin(format_id(i));
    for (const op o : all_ops)
      for (int r = 0; r < 7; ++r) {
        fpscope::policy p;
        p.round = rounding(r);
        const bool expected = f.specials != fpscope::special::e8m0 && o != op::min && o != op::max &&
                              p.round != rounding::sr;
        INFO(f.name << " " << op_str(o) << " " << fpscope::name(p.round));
        CHECK(fpscope::apply_is_vectorised(o, f, p) == expected);
      }
  }
}

TEST_CASE("bulk arith: bad arguments throw, empty spans do nothing", "[bulk][arith]") {
  const auto f16 = fpscope::builtin(fpscope::format_id::fp16);
  std::vector<std::uint16_t> a(8), b(8), c(8), out(8), short_out(7);
  const auto throws = [](auto&& fn, const char* needle) {
    try {
      fn();
    } catch (const std::invalid_argument& e) {
      INFO(e.what());
      CHECK(std::string(e.what()).find(needle) != std::string::npos);
      return;
    }
    FAIL("no std::invalid_argument");
  };
  throws([&] { fpscope::apply<std::uint16_t>(op::add, a, b, {}, short_out, f16); }, "operand a has 8");
  throws([&] { fpscope::apply<std::uint16_t>(op::add, a, {b.data(), 3}, {}, out, f16); }, "operand b has 3");
  throws([&] { fpscope::apply<std::uint16_t>(op::fma, a, b, {}, out, f16); }, "operand c has 0");
  std::vector<std::uint8_t> a8(8), out8(8);
  throws([&] { fpscope::apply<std::uint8_t>(op::sqrt, a8, {}, {}, out8, f16); }, "2-byte words");
  fpscope::bulk_options scaled;
  scaled.scale = 2;
  throws([&] { fpscope::apply<std::uint16_t>(op::add, a, b, {}, out, f16, {}, scaled); }, "scale");
  // sqrt ignores b and c; add ignores c.
  CHECK_NOTHROW(fpscope::apply<std::uint16_t>(op::sqrt, a, {}, {}, out, f16));
  CHECK_NOTHROW(fpscope::apply<std::uint16_t>(op::add, a, b, {}, out, f16));
  CHECK_NOTHROW(fpscope::apply<std::uint16_t>(op::add, {}, {}, {}, {}, f16));
}
