// 5. Bulk == scalar: the std::span encode (specialised and vectorised per built-in format and
// mode, with and without scale, serial and OpenMP) gives the scalar encode's bits for every
// mode including sr, scale 1 and not, threads 1 and 2 (and the default), sizes around the
// block (4096) and the parallel threshold (2^16), and a first_index offset for sr.
#include <algorithm>
#include <cmath>
#include <limits>

#include "common.hpp"

using namespace unit;

namespace {

constexpr fpscope::rounding all_modes[] = {fpscope::rounding::rne, fpscope::rounding::rtz, fpscope::rounding::rup,
                                           fpscope::rounding::rdn, fpscope::rounding::rna, fpscope::rounding::rto,
                                           fpscope::rounding::sr};

// A pool of inputs: boundary values, specials and random ones, shuffled so that every block
// sees all kinds.
template <class T>
std::vector<T> pool(const ref::table& t, std::mt19937_64& rng, std::size_t n) {
  const input_set b = boundary_inputs(t, 1, t.n() > 4096 ? t.n() / 2048 : 1);
  const input_set s = special_inputs(t);
  const input_set r = random_inputs(t, rng, n);
  std::vector<T> v;
  if constexpr (std::is_same_v<T, float>) {
    v = r.f;
    v.insert(v.end(), b.f.begin(), b.f.end());
    v.insert(v.end(), s.f.begin(), s.f.end());
  } else {
    v = r.d;
    v.insert(v.end(), b.d.begin(), b.d.end());
    v.insert(v.end(), s.d.begin(), s.d.end());
  }
  std::shuffle(v.begin(), v.end(), rng);
  while (v.size() < n) v.insert(v.end(), v.begin(), v.begin() + std::min(v.size(), n - v.size()));
  v.resize(n);
  return v;
}

template <class W, class T>
void check_bulk(const ref::table& t, const std::vector<T>& data, mismatches& mm) {
  const std::size_t serial_sizes[] = {0, 1, 7, 4095, 4096, 4097, 3 * 4096 + 5, 65535, 65536, 65537, 70000};
  // OpenMP runs are few (a parallel region costs much on a busy 2-core machine) but cover
  // both sides of the threshold and of a block edge, with 2 threads and the default.
  const std::size_t parallel_sizes[] = {65535, 65536, 65537, 70000};
  std::vector<fpscope::policy> policies;
  {
    fpscope::policy p;
    policies.push_back(p);
    p.on_overflow = fpscope::overflow::saturate;
    p.ftz = p.daz = true;
    p.nan = fpscope::nan_style::canonical;
    p.nan_finite = fpscope::nan_to_finite::flipped_zero;
    p.seed = 0xC0FFEE;
    policies.push_back(p);
    p = {};
    p.ftz = true;
    p.nan = fpscope::nan_style::quiet;
    p.saturate_inf = false;
    p.on_overflow = fpscope::overflow::saturate;
    p.seed = 42;
    policies.push_back(p);
  }
  const std::size_t n_max = data.size();
  std::vector<W> out, want(n_max);
  std::size_t combo = 0;
  for (const fpscope::rounding r : all_modes) {
    for (const double scale : {1.0, 1.375, 0x1p-3}) {
      fpscope::policy p = policies[combo % policies.size()];
      p.round = r;
      fpscope::bulk_options o;
      o.scale = scale;
      o.first_index = r == fpscope::rounding::sr ? 1000003 * (combo + 1) : 0;
      // The scalar results, element by element: fl32(x * scale) for float inputs (the scales
      // are exact floats, so that is the float product), x * scale for double ones.
      for (std::size_t i = 0; i < n_max; ++i) {
        const T x = scale == 1.0 ? data[i] : T(data[i] * T(scale));
        want[i] = static_cast<W>(fpscope::encode(x, t.f, p, o.first_index + i));
      }
      const auto run = [&](std::size_t n, int threads) {
        o.threads = threads;
        out.assign(n, W{0x5A});
        fpscope::encode(std::span<const T>(data.data(), n), std::span<W>(out), t.f, p, o);
        ++mm.checked;
        const auto bad = std::mismatch(out.begin(), out.end(), want.begin());
        if (bad.first == out.end()) return;
        const std::size_t i = std::size_t(bad.first - out.begin());
        std::size_t differ = 0;
        for (std::size_t k = 0; k < n; ++k) differ += out[k] != want[k];
        mm.add(ref::describe(t.f, p) + " n=" + std::to_string(n) + " scale=" + std::to_string(scale) +
               " threads=" + std::to_string(threads) + " first_index=" + std::to_string(o.first_index) +
               ": element " + std::to_string(i) + " " + ref::show(data[i]) + " bulk " + ref::hex(*bad.first) +
               ", scalar " + ref::hex(want[i]) + " (" + std::to_string(differ) + " elements differ)");
      };
      for (const std::size_t n : serial_sizes) run(n, 1);
      if (scale != 0x1p-3) run(parallel_sizes[combo % 4], (combo / 4) % 2 ? 2 : 0);
      ++combo;
    }
  }
}

}  // namespace

TEMPLATE_TEST_CASE("bulk encode equals scalar encode", "[bulk]", FPSCOPE_UNIT_FORMATS) {
  const ref::table& t = ref::get(TestType::id);
  using W = storage_t<TestType>;
  auto rng = rng_for(5, TestType::id);
  mismatches mm;
  check_bulk<W>(t, pool<float>(t, rng, 70000), mm);
  check_bulk<W>(t, pool<double>(t, rng, 70000), mm);
  mm.report(std::string(t.f.name) + " bulk vs scalar");
}

TEMPLATE_TEST_CASE("bulk encode: sr first_index offsets", "[bulk][sr]", FPSCOPE_UNIT_FORMATS) {
  // Converting a slice with first_index = its offset gives the same bits as converting the
  // whole array: the index of an element is its position, whoever converts it.
  const ref::table& t = ref::get(TestType::id);
  using W = storage_t<TestType>;
  auto rng = rng_for(6, TestType::id);
  const std::vector<float> data = pool<float>(t, rng, 20000);
  fpscope::policy p;
  p.round = fpscope::rounding::sr;
  p.seed = 7;
  std::vector<W> whole(data.size()), part(data.size());
  fpscope::encode(std::span<const float>(data), std::span<W>(whole), t.f, p);
  for (std::size_t cut : {std::size_t{1}, std::size_t{4095}, std::size_t{4096}, std::size_t{12345}}) {
    fpscope::bulk_options o;
    fpscope::encode(std::span<const float>(data.data(), cut), std::span<W>(part.data(), cut), t.f, p, o);
    o.first_index = cut;
    fpscope::encode(std::span<const float>(data.data() + cut, data.size() - cut),
                    std::span<W>(part.data() + cut, data.size() - cut), t.f, p, o);
    std::size_t differ = 0;
    for (std::size_t i = 0; i < data.size(); ++i) differ += part[i] != whole[i];
    INFO("cut " << cut);
    CHECK(differ == 0);
  }
}

TEST_CASE("bulk: size and width errors", "[bulk]") {
  const auto fp16 = fpscope::builtin(fpscope::format_id::fp16);
  std::vector<float> in(10);
  std::vector<std::uint16_t> out16(9);
  std::vector<std::uint8_t> out8(10);
  CHECK_THROWS_AS(fpscope::encode(std::span<const float>(in), std::span<std::uint16_t>(out16), fp16),
                  std::invalid_argument);
  CHECK_THROWS_AS(fpscope::encode(std::span<const float>(in), std::span<std::uint8_t>(out8), fp16),
                  std::invalid_argument);
}
