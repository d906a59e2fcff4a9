// 8. Arithmetic (fpscope/arith.hpp) against the reference's exact arithmetic: operands valued
// as Boost rationals by the reference decoder, the exact sum, difference, product, quotient or
// fma computed in rationals (sqrt by comparing squares), and the result rounded by locating it
// among the format's values with exact comparisons (ref_exact.hpp). Results AND flags.
//   - 8-bit, fp6, fp4 and e8m0: every operand pair, add sub mul div, six modes x two overflow
//     policies (plus two rotating ftz / daz / NaN-style policies); sqrt of every code in every
//     format but tf32 (sampled); fma on random and constructed triples.
//   - fp16, bf16, tf32: operands constructed to land on, just above and just below midpoints
//     (sums at half a gap, significand products that tie, quotients by 1 -+ an ulp), at the
//     overflow threshold and the subnormal / normal edge, and large seeded random sets.
//   - Special operands (zeros, infinities, NaNs with payloads, subnormals) under 144 policies.
//   - Exact zero sums and the signs of zero results, with literal expectations.
//   - minNum / maxNum / compare; stochastic rounding; hand-checked cases.
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <map>
#include <tuple>
#include <optional>

#include "common.hpp"
#include "fpscope/arith.hpp"
#include "fpscope/arith_bulk.hpp"
#include "ref_exact.hpp"

using namespace unit;
using fpscope::op;
using fpscope::policy;
using fpscope::rounding;

namespace {

const char* op_name(op o) {
  switch (o) {
    case op::add: return "add";
    case op::sub: return "sub";
    case op::mul: return "mul";
    case op::div: return "div";
    case op::sqrt: return "sqrt";
    case op::fma: return "fma";
    case op::min: return "min";
    case op::max: return "max";
  }
  return "?";
}

int arity(op o) { return o == op::sqrt ? 1 : o == op::fma ? 3 : 2; }

using triple = std::array<std::uint32_t, 3>;

std::string show_case(op o, const triple& c) {
  std::string s = std::string(op_name(o)) + "(" + ref::hex(c[0]);
  for (int i = 1; i < arity(o); ++i) s += ", " + ref::hex(c[std::size_t(i)]);
  return s + ")";
}

// One case through the bulk API (a span of one element).
std::uint32_t bulk_one(op o, std::uint32_t a, std::uint32_t b, std::uint32_t c, const fpscope::format& f,
                       const policy& p, std::uint64_t index = 0) {
  const auto one = [&](auto w) {
    using W = decltype(w);
    const W x[1] = {W(a)}, y[1] = {W(b)}, z[1] = {W(c)};
    W r[1] = {W(0)};
    fpscope::bulk_options opt;
    opt.first_index = index;
    fpscope::apply<W>(o, std::span<const W>(x), std::span<const W>(y), std::span<const W>(z), std::span<W>(r), f, p,
                      opt);
    return std::uint32_t(r[0]);
  };
  switch (f.storage_bytes()) {
    case 1: return one(std::uint8_t{});
    case 2: return one(std::uint16_t{});
    default: return one(std::uint32_t{});
  }
}

// One extra policy with the switches that matter for special and tiny values, rotating with k.
policy rotating_policy(std::size_t k) {
  policy p;
  p.round = ref::deterministic_modes[k % 6];
  p.on_overflow = (k / 6) % 2 ? fpscope::overflow::saturate : fpscope::overflow::infinity;
  p.ftz = (k / 2) % 2;
  p.daz = (k / 4) % 2;
  p.nan = static_cast<fpscope::nan_style>((k / 3) % 3);
  p.nan_finite = static_cast<fpscope::nan_to_finite>((k / 5) % 2);
  p.saturate_inf = (k / 7) % 2 == 0;
  return p;
}

// Runs cases through fpscope::apply and the reference under a list of policies; the reference
// locates each exact result once (twice with DAZ) and rounds it per policy.
struct checker {
  const ref::table& t;
  mismatches mm;
  std::size_t ties = 0, near_ties = 0, inexact = 0, finite = 0;
  bool stats = false;

  explicit checker(const ref::table& tt, bool with_stats = false) : t(tt), stats(with_stats) {}

  void tally(const ref::exact_located& xl) {
    if (xl.x.kind != ref::exact_result::finite || xl.l.kind != ref::located::finite) return;
    ++finite;
    if (xl.l.exact) return;
    ++inexact;
    if (xl.l.vs_mid == 0) {
      ++ties;
      return;
    }
    // Within 2^-p of a gap from the midpoint (only rational results: sqrt is never close).
    if (xl.x.m.root) return;
    const std::size_t lo = xl.l.lo;
    const double hi = lo + 1 < t.n() ? t.val[lo + 1] : t.next;
    const ref::rational d = xl.x.m.v - ref::exact(t.mid[lo]);
    const ref::rational lim = (ref::exact(hi) - ref::exact(t.val[lo])) * ref::pow2(-t.f.man_bits);
    if ((d.sign() < 0 ? ref::rational(-d) : d) <= lim) ++near_ties;
  }

  void run(op o, const triple& c, const std::vector<policy>& ps, std::uint64_t index = 0) {
    const ref::exact_located xl = ref::locate(t, ref::exact_op(t, o, c[0], c[1], c[2], false));
    std::optional<ref::exact_located> xl_daz;
    if (stats) tally(xl);
    for (const policy& p : ps) {
      if (p.daz && !xl_daz) xl_daz = ref::locate(t, ref::exact_op(t, o, c[0], c[1], c[2], true));
      const ref::result want = ref::finish(t, p.daz ? *xl_daz : xl, p);
      unsigned fl = 0;
      const std::uint32_t got = fpscope::apply(o, c[0], c[1], c[2], t.f, p, index, &fl);
      bulk[bulk_key(o, p)].cases.push_back({c[0], c[1], c[2], want.code, index});
      ++mm.checked;
      if (got != want.code || fl != want.flags)
        mm.add(ref::describe(t.f, p) + ": " + show_case(o, c) + " -> " + ref::hex(got) + " " + flags_str(fl) +
               ", reference " + ref::hex(want.code) + " " + flags_str(want.flags) + " (exact ~" +
               std::to_string((xl.x.neg ? -1 : 1) * xl.x.m.approx()) + ")");
    }
  }

  // The same cases through the bulk API (arith_bulk.hpp), grouped by operation and policy and
  // compared with the same reference results by report().
  struct pending {
    std::uint32_t a, b, c, want;
    std::uint64_t index;
  };
  struct group {
    op o{};
    policy p;
    std::vector<pending> cases;
  };
  using key = std::tuple<int, int, int, bool, bool, bool, int, int, std::uint64_t>;
  std::map<key, group> bulk;

  key bulk_key(op o, const policy& p) {
    const key k{int(o), int(p.round), int(p.on_overflow), p.saturate_inf, p.daz, p.ftz, int(p.nan),
                int(p.nan_finite), p.seed};
    group& g = bulk[k];
    g.o = o;
    g.p = p;
    return k;
  }

  template <class W>
  void check_bulk(const group& g) {
    const std::size_t n = g.cases.size();
    std::vector<W> a(n), b(n), c(n), out(n);
    for (std::size_t i = 0; i < n; ++i) {
      a[i] = W(g.cases[i].a);
      b[i] = W(g.cases[i].b);
      c[i] = W(g.cases[i].c);
    }
    if (g.p.round == rounding::sr) {  // each case has its own index: one element at a time
      for (std::size_t i = 0; i < n; ++i) {
        fpscope::bulk_options opt;
        opt.first_index = g.cases[i].index;
        fpscope::apply<W>(g.o, {&a[i], 1}, {&b[i], 1}, {&c[i], 1}, {&out[i], 1}, t.f, g.p, opt);
      }
    } else {
      fpscope::apply<W>(g.o, a, b, c, out, t.f, g.p);  // OpenMP from arith_parallel_threshold
    }
    for (std::size_t i = 0; i < n; ++i) {
      ++mm.checked;
      if (out[i] != W(g.cases[i].want))
        mm.add("bulk " + ref::describe(t.f, g.p) + ": " + show_case(g.o, {g.cases[i].a, g.cases[i].b, g.cases[i].c}) +
               " -> " + ref::hex(out[i]) + ", reference " + ref::hex(g.cases[i].want) +
               (fpscope::apply_is_vectorised(g.o, t.f, g.p) ? " (vectorised path)" : " (scalar path)"));
    }
  }

  /// Checks the bulk API on every case run so far, then reports (one Catch assertion).
  void report(const std::string& what) {
    for (const auto& [k, g] : bulk) {
      switch (t.f.storage_bytes()) {
        case 1: check_bulk<std::uint8_t>(g); break;
        case 2: check_bulk<std::uint16_t>(g); break;
        default: check_bulk<std::uint32_t>(g); break;
      }
    }
    bulk.clear();
    mm.report(what + " (scalar and bulk)");
  }

  // Every case under the 12 mode x overflow policies plus one rotating policy.
  void run_all(op o, const std::vector<triple>& cases) {
    const auto base = ref::mode_overflow_policies();
    std::vector<policy> ps = base;
    ps.push_back({});
    for (std::size_t i = 0; i < cases.size(); ++i) {
      ps.back() = rotating_policy(i);
      run(o, cases[i], ps);
    }
  }
};

// ---- operand construction -----------------------------------------------------------------

// Codes of finite values, skipping the ones the format lacks.
struct builder {
  const ref::table& t;
  std::vector<triple> out;
  bool push(double a, double b = 0, double c = 0) {
    const auto ca = ref::code_of(t, a), cb = ref::code_of(t, b), cc = ref::code_of(t, c);
    if (!ca || !cb || !cc) return false;
    out.push_back({*ca, *cb, *cc});
    return true;
  }
};

std::size_t index_of(const ref::table& t, double v) {  // first value >= v (n() if none)
  return std::size_t(std::lower_bound(t.val.begin(), t.val.end(), v) - t.val.begin());
}

double gap_up(const ref::table& t, std::size_t i) { return (i + 1 < t.n() ? t.val[i + 1] : t.next) - t.val[i]; }

// Indices worth building around: the ends, the subnormal / normal edge, 1, every binade's
// first value (every k-th binade where there are many), and a random sample.
std::vector<std::size_t> interesting(const ref::table& t, std::mt19937_64& rng, std::size_t n_random) {
  std::vector<std::size_t> v;
  const auto around = [&](std::size_t c, std::size_t r) {
    for (std::size_t i = c >= r ? c - r : 0; i <= c + r && i < t.n(); ++i) v.push_back(i);
  };
  around(0, 24);
  around(t.n() - 1, 24);
  around(index_of(t, t.min_normal), 12);
  around(index_of(t, 1.0), 6);
  std::vector<std::size_t> binades;
  for (std::size_t i = 1; i < t.n(); ++i)
    if (std::ldexp(1.0, std::ilogb(t.val[i])) == t.val[i]) binades.push_back(i);
  const std::size_t step = binades.size() > 48 ? binades.size() / 48 : 1;
  for (std::size_t k = 0; k < binades.size(); k += step) around(binades[k], 1);
  std::uniform_int_distribution<std::size_t> d(0, t.n() - 1);
  for (std::size_t k = 0; k < n_random; ++k) v.push_back(d(rng));
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

// A random finite value with its leading bit at 2^e (and random fraction), if the format has one
// there; subnormal ranges and e8m0 included.
std::optional<double> value_at(const ref::table& t, int e, std::mt19937_64& rng) {
  const std::size_t lo = index_of(t, std::ldexp(1.0, e)), hi = index_of(t, std::ldexp(1.0, e + 1));
  if (lo >= hi || lo >= t.n()) return std::nullopt;
  return t.val[lo + std::size_t(rng() % (hi - lo))];
}

double random_sign(double v, std::mt19937_64& rng) { return (rng() & 1) ? -v : v; }

// Uniformly random codes (every class: NaN, inf, zero, subnormal).
void random_codes(const ref::table& t, std::mt19937_64& rng, std::size_t n, std::vector<triple>& out) {
  const std::uint32_t mask = t.f.bits == 32 ? ~0u : (std::uint32_t{1} << t.f.bits) - 1;
  for (std::size_t i = 0; i < n; ++i)
    out.push_back({std::uint32_t(rng()) & mask, std::uint32_t(rng()) & mask, std::uint32_t(rng()) & mask});
}

int exp_lo(const ref::table& t) { return std::ilogb(t.val[0] > 0 ? t.val[0] : t.val[1]); }
int exp_hi(const ref::table& t) { return std::ilogb(t.max()); }

// Random operands whose exact result (by op) has its leading bit anywhere from well below the
// smallest value to beyond the largest: e_result uniform, the operands' exponents split from it.
void random_spread(const ref::table& t, op o, std::mt19937_64& rng, std::size_t n, std::vector<triple>& out) {
  builder b{t, {}};
  const int lo = exp_lo(t), hi = exp_hi(t), p = t.f.man_bits;
  std::uniform_int_distribution<int> ed(lo, hi), rd(lo - p - 3, hi + 2);
  for (std::size_t i = 0, tries = 0; b.out.size() < n && tries < 20 * n; ++tries) {
    const int ea = ed(rng), er = rd(rng);
    int eb;
    switch (o) {
      case op::mul: eb = er - ea; break;
      case op::div: eb = ea - er; break;
      default: eb = std::uniform_int_distribution<int>(ea - p - 4, ea + 1)(rng);  // add/sub/fma addend near a
    }
    const auto va = value_at(t, ea, rng), vb = value_at(t, eb, rng);
    if (!va || !vb) continue;
    double vc = 0;
    if (o == op::fma) {
      const auto c = value_at(t, std::uniform_int_distribution<int>(ea + eb - p - 3, ea + eb + 1)(rng), rng);
      if (!c) continue;
      vc = random_sign(*c, rng);
    }
    i += b.push(random_sign(*va, rng), random_sign(*vb, rng), vc);
  }
  out.insert(out.end(), b.out.begin(), b.out.end());
}

// Sums at half a gap (ties), a gap, quarter gaps, and sticky bits far below, with both signs:
// around every interesting value, on both of its sides.
std::vector<triple> sum_boundaries(const ref::table& t, std::mt19937_64& rng) {
  builder b{t, {}};
  const int p = t.f.man_bits;
  for (std::size_t i : interesting(t, rng, t.n() > 4096 ? 96 : 16)) {
    const double a = t.val[i];
    for (double g : {gap_up(t, i), i > 0 ? a - t.val[i - 1] : 0.0}) {
      if (g <= 0) continue;
      for (double h : {g / 2, g, g / 4, 1.5 * g, std::ldexp(g, -3), std::ldexp(g, -p / 2 - 1), std::ldexp(g, -p - 1),
                       std::ldexp(g, -p - 2), std::ldexp(g, -p - 5)}) {
        const std::size_t j = index_of(t, h);
        for (std::size_t jj : {j - 1, j, j + 1}) {
          if (jj >= t.n() || t.val[jj] == 0) continue;  // (j - 1 wraps when j == 0)
          const double bv = t.val[jj];
          for (int s = 0; s < 4; ++s) {
            const double x = (s & 1) ? -a : a, y = (s & 2) ? -bv : bv;
            if (rng() & 1) b.push(x, y);
            else b.push(y, x);
          }
        }
      }
    }
  }
  return b.out;
}

// Integer significands whose product ties, or lies one unit above or below a tie, at p+1 bits,
// or ties with all kept bits set (rounding carries into the next binade).
struct significand_pairs {
  std::vector<std::array<std::uint64_t, 2>> tie, above, below, carry;
};

significand_pairs product_ties(int p, std::mt19937_64& rng, std::size_t keep) {
  significand_pairs sp;
  std::array<std::size_t, 4> seen{};
  const std::uint64_t top = std::uint64_t{1} << (p + 1);
  const auto reservoir = [&](std::vector<std::array<std::uint64_t, 2>>& v, std::size_t& n, std::uint64_t x,
                             std::uint64_t y) {
    ++n;
    if (v.size() < keep) v.push_back({x, y});
    else if (const std::size_t k = rng() % n; k < keep) v[k] = {x, y};
  };
  for (std::uint64_t x = 1; x < top; ++x)
    for (std::uint64_t y = x; y < top; ++y) {
      const std::uint64_t P = x * y;
      const int L = 64 - __builtin_clzll(P);
      const int d = L - (p + 1);
      if (d < 2) continue;
      const std::uint64_t D = P & ((std::uint64_t{1} << d) - 1), half = std::uint64_t{1} << (d - 1);
      if (D == half) {
        reservoir(sp.tie, seen[0], x, y);
        if ((P >> d) == (std::uint64_t{1} << (p + 1)) - 1) reservoir(sp.carry, seen[3], x, y);
      } else if (d < p) {
        continue;  // one unit of P is too large a part of the gap to count as "just off" a tie
      } else if (D == half + 1) {
        reservoir(sp.above, seen[1], x, y);
      } else if (D == half - 1) {
        reservoir(sp.below, seen[2], x, y);
      }
    }
  return sp;
}

// Puts integer significands x, y at exponents so that x*2^ka * y*2^kb has its leading bit at 2^e.
bool place_product(builder& b, std::uint64_t x, std::uint64_t y, int e, std::mt19937_64& rng, bool as_quotient) {
  const ref::table& t = b.t;
  const int Lx = 64 - __builtin_clzll(x), Ly = 64 - __builtin_clzll(x * y);
  const int total = e - (Ly - 1);  // ka + kb
  const int q = exp_lo(t), hi = exp_hi(t) - (Lx - 1);
  for (int tries = 0; tries < 24; ++tries) {
    const int ka = std::uniform_int_distribution<int>(q, std::max(q, hi))(rng);
    const double a = std::ldexp(double(x), ka), bb = std::ldexp(double(y), total - ka);
    const double sa = random_sign(a, rng), sb = random_sign(bb, rng);
    if (as_quotient) {
      // (x*y*2^total) / (y*2^kb) = x*2^ka: an exact quotient
      const double num = std::ldexp(double(x * y), total);
      if (b.push(random_sign(num, rng), sb)) return true;
    } else if (b.push(sa, sb)) {
      return true;
    }
  }
  return false;
}

// Products that tie (and miss by one unit) in the normal range, placed near the subnormal edge,
// in the middle, at and beyond the overflow threshold; exact ties in the subnormal range and at
// its top edge (min normal - half the smallest subnormal).
std::vector<triple> product_boundaries(const ref::table& t, std::mt19937_64& rng) {
  builder b{t, {}};
  const int p = t.f.man_bits, emin = t.emin, emax = exp_hi(t);
  if (p <= 10) {
    const significand_pairs sp = product_ties(p, rng, 300);
    const int places[] = {emin - 1, emin, emin + 1, 0, emax - 1, emax, emax + 1};
    for (const auto* v : {&sp.tie, &sp.above, &sp.below, &sp.carry})
      for (const auto& xy : *v) {
        for (int e : {emin, emax}) place_product(b, xy[0], xy[1], e, rng, false);
        for (int k = 0; k < 2; ++k) place_product(b, xy[0], xy[1], places[rng() % 7], rng, false);
      }
  }
  // Subnormal-range targets N * 2^z: ties M * 2^(qmin-1) (M odd) and near ties, split as
  // f * 2^k times (N/f) * 2^(z-k).
  const int qmin = std::ilogb(t.val[1]);
  const std::uint64_t top = std::uint64_t{1} << (p + 1);
  std::vector<std::pair<std::uint64_t, int>> targets;
  for (std::uint64_t M : {std::uint64_t{1}, std::uint64_t{3}, std::uint64_t{5}, top - 1, top - 3, top + 1, top + 3,
                          top / 2 - 1, top / 2 + 1}) {
    targets.push_back({M, qmin - 1});
    for (int j = 1; j <= 3; ++j) {
      targets.push_back({(M << j) + 1, qmin - 1 - j});
      targets.push_back({(M << j) - 1, qmin - 1 - j});
    }
  }
  for (int k = 0; k < 24; ++k) targets.push_back({(rng() % top) | 1, qmin - 1});
  for (const auto& [N, z] : targets)
    for (std::uint64_t f : {1, 3, 5, 7, 9, 11, 13, 15}) {
      if (N % f) continue;
      for (int tries = 0; tries < 6; ++tries) {
        const int ka = std::uniform_int_distribution<int>(qmin, exp_hi(t) - 4)(rng);
        b.push(random_sign(std::ldexp(double(f), ka), rng), random_sign(std::ldexp(double(N / f), z - ka), rng));
      }
    }
  return b.out;
}

// Quotients: exact ones, ties in the subnormal range, quotients by 1 -+ a few ulps (just off the
// midpoints and values), and near the overflow and underflow thresholds.
std::vector<triple> quotient_boundaries(const ref::table& t, std::mt19937_64& rng) {
  builder b{t, {}};
  const int p = t.f.man_bits, qmin = std::ilogb(t.val[1]), emax = exp_hi(t), emin = t.emin;
  // Exact quotients x*y*2^total / y*2^kb, x and y short.
  for (int k = 0; k < 600; ++k) {
    const std::uint64_t x = 1 + rng() % (std::uint64_t{1} << ((p + 1) / 2 + 1));
    const std::uint64_t y = 1 + rng() % (std::uint64_t{1} << ((p + 1) / 2));
    place_product(b, x, y, std::uniform_int_distribution<int>(qmin, emax)(rng), rng, true);
  }
  // Subnormal ties: (M * 2^(qmin-1) * d) / d.
  const std::uint64_t top = std::uint64_t{1} << (p + 1);
  for (std::uint64_t M : {std::uint64_t{1}, std::uint64_t{3}, top - 1, top - 3, top + 1})
    for (std::uint64_t dsig : {1, 3, 5, 7})
      for (int tries = 0; tries < 6; ++tries) {
        const int kd = std::uniform_int_distribution<int>(0, std::max(0, emax - 4))(rng);
        b.push(random_sign(std::ldexp(double(M * dsig), qmin - 1 + kd), rng),
               random_sign(std::ldexp(double(dsig), kd), rng));
      }
  // Just off midpoints: A/B = M/2^(p+2) + s/(B*2^(p+2)), M odd in [2^(p+1), 2^(p+2)) (a midpoint
  // of the binade [1/2, 1)), s = -+1: B = -s/M modulo 2^(p+2), kept when B and A have p+1 bits.
  // Placed so that the quotient lies in the smallest normal binades, in the middle, at the top.
  {
    const int k = p + 2;
    const std::uint64_t mod = std::uint64_t{1} << k;
    for (int tries = 0, found = 0; tries < 4000 && found < 1200; ++tries) {
      const std::uint64_t M = (mod / 2) | (rng() % (mod / 2)) | 1;
      std::uint64_t inv = M;  // Newton's iteration for 1/M modulo 2^64 (M odd: right to 3 bits)
      for (int i = 0; i < 5; ++i) inv *= 2 - M * inv;
      for (int s : {1, -1}) {
        const std::uint64_t B = (s > 0 ? mod - (inv & (mod - 1)) : inv) & (mod - 1);
        if (B == 0 || B >= mod / 2) continue;
        const std::uint64_t A = (M * B + std::uint64_t(std::int64_t(s))) >> k;
        if (A == 0 || A >= mod / 2) continue;
        for (int e : {emin, emin + 1, 0, emax, std::uniform_int_distribution<int>(emin, emax)(rng)}) {
          for (int attempt = 0; attempt < 12; ++attempt) {
            const int ka = std::uniform_int_distribution<int>(qmin, emax)(rng), kb = ka - (e + 1);
            if (b.push(random_sign(std::ldexp(double(A), ka), rng), random_sign(std::ldexp(double(B), kb), rng))) {
              ++found;
              break;
            }
          }
        }
      }
    }
  }
  // Divisors 1 -+ k ulps, scaled: quotients a few ulp^2 away from values.
  std::vector<double> near_one;
  for (int k = 1; k <= 3; ++k) {
    near_one.push_back(1 - k * std::ldexp(1.0, -p - 1));
    near_one.push_back(1 + k * std::ldexp(1.0, -p));
  }
  for (std::size_t i : interesting(t, rng, t.n() > 4096 ? 64 : 8))
    for (double d : near_one) {
      const int s = std::uniform_int_distribution<int>(-2, 2)(rng);
      b.push(random_sign(t.val[i], rng), random_sign(std::ldexp(d, s), rng));
    }
  // Overflow and underflow thresholds: the top values over divisors just below 1 and below;
  // the smallest normals and subnormals over divisors just above 1 and above.
  for (std::size_t k = 0; k < 6 && k < t.n(); ++k)
    for (double d : near_one)
      for (int s : {0, -1, 1}) {
        b.push(t.val[t.n() - 1 - k], std::ldexp(d, s));
        b.push(-t.val[t.n() - 1 - k], std::ldexp(d, s));
        b.push(t.val[std::min(t.n() - 1, index_of(t, t.min_normal) + k)], std::ldexp(d, s));
        b.push(t.val[std::min(t.n() - 1, 1 + k)], std::ldexp(d, s));
      }
  return b.out;
}

// fma triples: a*b exact, c chosen so that a*b + c lands on a value, a midpoint or just beside
// (c the nearest representable to the needed addend), or cancels a*b.
std::vector<triple> fma_boundaries(const ref::table& t, std::mt19937_64& rng, std::size_t n_products) {
  builder b{t, {}};
  const int lo = exp_lo(t), hi = exp_hi(t), p = t.f.man_bits;
  std::uniform_int_distribution<int> ed(lo, hi), rd(lo - p - 2, hi + 1);
  const policy rne{};
  const auto nearest = [&](double v) -> std::optional<double> {  // the reference's RN into the format
    const ref::result r = ref::encode(t, ref::describe(v), rne);
    if (ref::is_nan(t, r.code)) return std::nullopt;
    const double m = ref::to_double_exact(ref::decode_fields(r.code, t.f).value);
    return m;
  };
  for (std::size_t k = 0, tries = 0; k < n_products && tries < 40 * n_products; ++tries) {
    const int ea = ed(rng), eb = rd(rng) - ea;
    const auto va = value_at(t, ea, rng), vb = value_at(t, eb, rng);
    if (!va || !vb) continue;
    const double x = random_sign(*va, rng), y = random_sign(*vb, rng);
    const double P = x * y;  // exact in binary64 for every built-in format (<= 22-bit significands)
    if (ref::exact(P) != ref::exact(x) * ref::exact(y)) continue;
    ++k;
    const double aP = std::fabs(P), sP = P < 0 ? -1 : 1;
    std::size_t i = std::size_t(std::upper_bound(t.val.begin(), t.val.end(), aP) - t.val.begin());
    i = i == 0 ? 0 : i - 1;
    std::vector<double> targets = {t.val[i], t.mid[i], i + 1 < t.n() ? t.val[i + 1] : t.next};
    if (i > 0) targets.push_back(t.mid[i - 1]);
    for (double target : targets) {
      const double need = sP * (target - aP);  // the addend that lands on target (exact or near)
      if (need == 0) continue;
      if (const auto c = nearest(need)) {
        b.push(x, y, *c);
        const std::size_t j = index_of(t, std::fabs(*c));
        for (std::size_t jj : {j - 1, j + 1})  // c one step either side: just off the target
          if (jj < t.n()) b.push(x, y, std::copysign(t.val[jj], *c));
      }
    }
    if (const auto c = nearest(-P)) b.push(x, y, *c);  // cancellation
    if (rng() & 1) b.push(x, y, random_sign(t.val[1 + rng() % 4], rng));  // tiny addend: sticky
  }
  return b.out;
}

}  // namespace

// ---- every operand pair (8-bit, fp6, fp4, e8m0) -------------------------------------------

TEMPLATE_TEST_CASE("arith: add and sub of every operand pair", "[arith]", e4m3, e5m2, e4m3fnuz, e5m2fnuz, e2m3,
                   e3m2, e2m1, e8m0) {
  const ref::table& t = ref::get(TestType::id);
  const std::uint32_t n = std::uint32_t{1} << t.f.bits;
  std::vector<triple> cases;
  for (std::uint32_t a = 0; a < n; ++a)
    for (std::uint32_t b = 0; b < n; ++b) cases.push_back({a, b, 0});
  for (op o : {op::add, op::sub}) {
    checker ck(t);
    ck.run_all(o, cases);
    ck.report(std::string(t.f.name) + " " + op_name(o) + " of every pair");
  }
}

TEMPLATE_TEST_CASE("arith: mul and div of every operand pair", "[arith]", e4m3, e5m2, e4m3fnuz, e5m2fnuz, e2m3,
                   e3m2, e2m1, e8m0) {
  const ref::table& t = ref::get(TestType::id);
  const std::uint32_t n = std::uint32_t{1} << t.f.bits;
  std::vector<triple> cases;
  for (std::uint32_t a = 0; a < n; ++a)
    for (std::uint32_t b = 0; b < n; ++b) cases.push_back({a, b, 0});
  for (op o : {op::mul, op::div}) {
    checker ck(t);
    ck.run_all(o, cases);
    ck.report(std::string(t.f.name) + " " + op_name(o) + " of every pair");
  }
}

// ---- sqrt ---------------------------------------------------------------------------------

TEMPLATE_TEST_CASE("arith: sqrt of every code", "[arith]", FPSCOPE_UNIT_FORMATS) {
  const ref::table& t = ref::get(TestType::id);
  // tf32's 2^19 codes: every 4th (all of the first and last 2^12, and both signs' specials).
  const std::uint32_t n = std::uint32_t{1} << t.f.bits;
  const std::uint32_t stride = t.f.bits > 16 ? 4 : 1;
  std::vector<triple> cases;
  for (std::uint32_t a = 0; a < n; ++a) {
    const std::uint32_t mag = a & (t.all_ones);
    if (stride > 1 && a % stride && mag > 4096 && mag < t.inf_code - 4096) continue;
    cases.push_back({a, 0, 0});
  }
  checker ck(t);
  ck.run_all(op::sqrt, cases);
  ck.report(std::string(t.f.name) + " sqrt of " + std::to_string(cases.size()) + " codes");
}

// ---- fma ------------------------------------------------------------------------------------

TEMPLATE_TEST_CASE("arith: fma on random and constructed triples", "[arith]", FPSCOPE_UNIT_FORMATS) {
  const ref::table& t = ref::get(TestType::id);
  auto rng = rng_for(81, TestType::id);
  std::vector<triple> cases;
  const bool small = t.f.bits <= 8;
  random_codes(t, rng, small ? 15000 : 8000, cases);
  random_spread(t, op::fma, rng, 15000, cases);
  const auto bnd = fma_boundaries(t, rng, small ? 3000 : 4000);
  cases.insert(cases.end(), bnd.begin(), bnd.end());
  checker ck(t, true);
  ck.run_all(op::fma, cases);
  ck.report(std::string(t.f.name) + " fma of " + std::to_string(cases.size()) + " triples");
  INFO(t.f.name << " fma: " << ck.ties << " ties, " << ck.near_ties << " near ties, " << ck.inexact << " inexact of "
                << ck.finite << " finite");
  if (t.f.specials != fpscope::special::e8m0) {  // e8m0 sums of powers of two rarely round
    CHECK(ck.ties > 50);
    CHECK(ck.near_ties > 50);
  }
}

// ---- fp16, bf16, tf32: boundaries and random ------------------------------------------------

TEMPLATE_TEST_CASE("arith: add and sub at boundaries and random", "[arith]", fp16, bf16, tf32) {
  const ref::table& t = ref::get(TestType::id);
  auto rng = rng_for(82, TestType::id);
  std::vector<triple> cases = sum_boundaries(t, rng);
  const std::size_t constructed = cases.size();
  random_codes(t, rng, 10000, cases);
  random_spread(t, op::add, rng, 25000, cases);
  for (op o : {op::add, op::sub}) {
    checker ck(t, true);
    ck.run_all(o, cases);
    ck.report(std::string(t.f.name) + " " + op_name(o) + ": " + std::to_string(constructed) + " constructed, " +
                 std::to_string(cases.size() - constructed) + " random pairs");
    INFO(op_name(o) << ": " << ck.ties << " ties, " << ck.near_ties << " near ties");
    CHECK(ck.ties > 1000);
    CHECK(ck.near_ties > 1000);
  }
}

TEMPLATE_TEST_CASE("arith: mul at boundaries and random", "[arith]", fp16, bf16, tf32) {
  const ref::table& t = ref::get(TestType::id);
  auto rng = rng_for(83, TestType::id);
  std::vector<triple> cases = product_boundaries(t, rng);
  const std::size_t constructed = cases.size();
  random_codes(t, rng, 10000, cases);
  random_spread(t, op::mul, rng, 25000, cases);
  checker ck(t, true);
  ck.run_all(op::mul, cases);
  ck.report(std::string(t.f.name) + " mul: " + std::to_string(constructed) + " constructed, " +
               std::to_string(cases.size() - constructed) + " random pairs");
  INFO("mul: " << ck.ties << " ties, " << ck.near_ties << " near ties");
  CHECK(ck.ties > 500);
  CHECK(ck.near_ties > 500);
}

TEMPLATE_TEST_CASE("arith: div at boundaries and random", "[arith]", fp16, bf16, tf32) {
  const ref::table& t = ref::get(TestType::id);
  auto rng = rng_for(84, TestType::id);
  std::vector<triple> cases = quotient_boundaries(t, rng);
  const std::size_t constructed = cases.size();
  random_codes(t, rng, 10000, cases);
  random_spread(t, op::div, rng, 25000, cases);
  checker ck(t, true);
  ck.run_all(op::div, cases);
  ck.report(std::string(t.f.name) + " div: " + std::to_string(constructed) + " constructed, " +
               std::to_string(cases.size() - constructed) + " random pairs");
  INFO("div: " << ck.ties << " ties (subnormal only), " << ck.near_ties << " near ties");
  CHECK(ck.ties > 20);
  CHECK(ck.near_ties > 500);
}

// ---- special operands under every policy switch ---------------------------------------------

namespace {

// Zeros, the smallest and largest subnormals, the smallest normal, 1, max and its neighbour,
// infinities and NaNs (quiet, signalling, with payloads), both signs.
std::vector<std::uint32_t> special_codes(const ref::table& t) {
  std::vector<std::uint32_t> v;
  const std::size_t nm = index_of(t, t.min_normal);
  for (std::size_t i : {std::size_t{0}, std::size_t{1}, std::size_t{2}, nm > 0 ? nm - 1 : 0, nm, nm + 1,
                        index_of(t, 1.0), t.n() - 2, t.n() - 1})
    if (i < t.n()) v.push_back(t.code[i]);
  const std::uint32_t p = std::uint32_t(t.f.man_bits);
  switch (t.f.specials) {
    case fpscope::special::ieee: {
      const std::uint32_t quiet = std::uint32_t{1} << (p - 1);
      for (std::uint32_t payload : {0u, quiet, quiet | 1u, 1u, quiet - 1u, quiet | 5u}) v.push_back(t.inf_code | payload);
      break;
    }
    case fpscope::special::fn: v.push_back(t.all_ones); break;
    case fpscope::special::fnuz:
    case fpscope::special::e8m0:
    case fpscope::special::finite: break;
  }
  const std::size_t n = v.size();
  if (t.sign_bit)
    for (std::size_t i = 0; i < n; ++i) v.push_back(v[i] | t.sign_bit);  // fnuz: -0 is the NaN
  if (t.f.specials == fpscope::special::e8m0) v.push_back(0xFF);
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

// 6 modes x 2 overflow x ftz x daz x 3 NaN styles; saturate_inf and nan_to_finite alternate.
std::vector<policy> switch_policies() {
  std::vector<policy> ps;
  std::size_t k = 0;
  for (const policy& base : ref::mode_overflow_policies())
    for (bool ftz : {false, true})
      for (bool daz : {false, true})
        for (auto ns : {fpscope::nan_style::payload, fpscope::nan_style::quiet, fpscope::nan_style::canonical}) {
          policy p = base;
          p.ftz = ftz;
          p.daz = daz;
          p.nan = ns;
          p.saturate_inf = (k % 2) == 0;
          p.nan_finite = static_cast<fpscope::nan_to_finite>((k / 2) % 2);
          ++k;
          ps.push_back(p);
        }
  return ps;
}

}  // namespace

TEMPLATE_TEST_CASE("arith: special operands under 144 policies", "[arith]", FPSCOPE_UNIT_FORMATS) {
  const ref::table& t = ref::get(TestType::id);
  const auto codes = special_codes(t);
  const auto ps = switch_policies();
  REQUIRE(ps.size() == 144);
  checker ck(t);
  for (std::uint32_t a : codes) {
    ck.run(op::sqrt, {a, 0, 0}, ps);
    for (std::uint32_t b : codes)
      for (op o : {op::add, op::sub, op::mul, op::div}) ck.run(o, {a, b, 0}, ps);
  }
  // fma: every triple of a smaller set (every class, both signs).
  std::vector<std::uint32_t> few;
  for (std::size_t i = 0; i < codes.size(); i += 2) few.push_back(codes[i]);
  for (std::uint32_t a : few)
    for (std::uint32_t b : few)
      for (std::uint32_t c : few) ck.run(op::fma, {a, b, c}, ps);
  ck.report(std::string(t.f.name) + " special operands (" + std::to_string(codes.size()) + " codes)");
}

// ---- zeros --------------------------------------------------------------------------------

TEMPLATE_TEST_CASE("arith: exact zero sums and signs of zero results", "[arith]", FPSCOPE_UNIT_FORMATS) {
  // IEEE 754 6.3, with literal expectations: x + (-x) and x - x are +0 in every mode but rdn,
  // which gives -0; zero operands of like sign keep it; products and quotients take the xor of
  // the signs, also when they underflow to zero. Formats without -0 give +0; e8m0 has no zero.
  const ref::table& t = ref::get(TestType::id);
  const auto& f = t.f;
  const std::uint32_t S = t.sign_bit;
  const std::uint32_t neg0 = t.has_neg_zero ? S : 0u;
  mismatches mm;
  policy p;
  // o on (a, b, c) must give `want` with flags `wfl`.
  const auto expect = [&](op o, std::uint32_t a, std::uint32_t b, std::uint32_t c, std::uint32_t want, unsigned wfl) {
    unsigned fl = 0;
    const std::uint32_t got = fpscope::apply(o, a, b, c, f, p, 0, &fl);
    ++mm.checked;
    if (got != want || fl != wfl)
      mm.add(std::string(fpscope::name(p.round)) + " " + show_case(o, {a, b, c}) + " -> " + ref::hex(got) + " " +
             flags_str(fl) + ", expected " + ref::hex(want) + " " + flags_str(wfl));
    const std::uint32_t got_bulk = bulk_one(o, a, b, c, f, p);
    ++mm.checked;
    if (got_bulk != want)
      mm.add("bulk " + std::string(fpscope::name(p.round)) + " " + show_case(o, {a, b, c}) + " -> " +
             ref::hex(got_bulk) + ", expected " + ref::hex(want));
  };
  const std::uint32_t n = std::uint32_t{1} << f.bits;
  const std::uint32_t stride = f.bits > 16 ? 61 : 1;
  std::vector<rounding> modes(std::begin(ref::deterministic_modes), std::end(ref::deterministic_modes));
  modes.push_back(rounding::sr);
  for (rounding r : modes) {
    p.round = r;
    p.seed = 12345;
    const std::uint32_t sum0 = r == rounding::rdn ? neg0 : 0u;
    if (f.specials == fpscope::special::e8m0) {
      // x - x: an exact zero, which e8m0 lacks: NaN and invalid.
      for (std::uint32_t x = 0; x < 0xFF; ++x) expect(op::sub, x, x, 0, 0xFF, fpscope::flag_invalid);
      continue;
    }
    const auto one = ref::code_of(t, 1.0);
    REQUIRE(one);
    for (std::uint32_t x = 0; x < n; x += (x < 4096 ? 1 : stride)) {
      const ref::code_info ci = ref::decode_fields(x, f);
      if (ci.c == ref::cls::nan || ci.c == ref::cls::infinite || ci.c == ref::cls::zero) continue;
      const std::uint32_t nx = x ^ S;  // -x
      expect(op::add, x, nx, 0, sum0, 0);
      expect(op::sub, x, x, 0, sum0, 0);
      expect(op::fma, x, *one, nx, sum0, 0);  // x * 1 - x
      // 0 * x, x * 0 and 0 / x: the xor of the signs.
      for (std::uint32_t z : {0u, neg0}) {
        const std::uint32_t want = ((z != 0) != ci.neg) ? neg0 : 0u;
        expect(op::mul, z, x, 0, want, 0);
        expect(op::mul, x, z, 0, want, 0);
        expect(op::div, z, x, 0, want, 0);
      }
    }
    // Zero operands: like signs keep theirs, unlike signs give the exact-zero-sum sign.
    for (std::uint32_t a : {0u, neg0})
      for (std::uint32_t b : {0u, neg0}) {
        const bool an = a != 0, bn = b != 0;
        expect(op::add, a, b, 0, an == bn ? a : sum0, 0);
        expect(op::sub, a, b, 0, an != bn ? a : sum0, 0);
        expect(op::mul, a, b, 0, an != bn ? neg0 : 0u, 0);
        expect(op::fma, a, b, a, (an != bn) == an ? a : sum0, 0);  // (a*b) + a: a*b's sign vs a's
        expect(op::sqrt, a, 0, 0, a, 0);                          // sqrt(-0) = -0
      }
    // A product of the smallest subnormals underflows to a zero of the product's sign in the
    // modes that do not round it away from zero (where it is below half the smallest subnormal).
    const std::uint32_t tiny = t.code[1];
    if ((r == rounding::rne || r == rounding::rtz || r == rounding::rna) && t.val[1] * t.val[1] < t.val[1] / 2)
      for (std::uint32_t a : {tiny, tiny | S})
        for (std::uint32_t b : {tiny, tiny | S})
          expect(op::mul, a, b, 0, ((a ^ b) & S) ? neg0 : 0u, fpscope::flag_inexact | fpscope::flag_underflow);
    // Finite / inf: a zero of the xor of the signs.
    if (f.has_inf())
      for (std::uint32_t a : {t.code[t.n() - 1], t.code[1], t.code[1] | S})
        for (std::uint32_t inf : {t.inf_code, t.inf_code | S}) expect(op::div, a, inf, 0, ((a ^ inf) & S) ? S : 0u, 0);
  }
  mm.report(std::string(f.name) + " zero results (scalar and bulk)");
}

// ---- min, max, compare ------------------------------------------------------------------------

TEMPLATE_TEST_CASE("arith: minNum and maxNum and compare", "[arith]", FPSCOPE_UNIT_FORMATS) {
  const ref::table& t = ref::get(TestType::id);
  auto rng = rng_for(85, TestType::id);
  std::vector<std::uint32_t> codes;
  if (t.f.bits <= 8) {
    for (std::uint32_t c = 0; c < (std::uint32_t{1} << t.f.bits); ++c) codes.push_back(c);
  } else {
    codes = special_codes(t);
    for (int k = 0; k < 120; ++k) codes.push_back(std::uint32_t(rng()) & ((std::uint32_t{1} << t.f.bits) - 1));
  }
  std::vector<policy> ps(6);
  ps[1].daz = true;
  ps[2].nan = fpscope::nan_style::quiet;
  ps[3].nan = fpscope::nan_style::canonical;
  ps[3].daz = true;
  ps[4].round = rounding::rdn;  // min/max do not round: the mode must not matter
  ps[4].ftz = true;
  ps[5] = fpscope::profile_policy(fpscope::profile::cuda, t.f);
  mismatches mm;
  for (std::uint32_t a : codes)
    for (std::uint32_t b : codes)
      for (const policy& p : ps) {
        for (bool is_max : {false, true}) {
          const ref::result want = ref::min_max(t, is_max, a, b, p);
          unsigned fl = 0;
          const std::uint32_t got = fpscope::apply(is_max ? op::max : op::min, a, b, 0, t.f, p, 0, &fl);
          ++mm.checked;
          if (got != want.code || fl != want.flags)
            mm.add(ref::describe(t.f, p) + ": " + (is_max ? "max(" : "min(") + ref::hex(a) + ", " + ref::hex(b) +
                   ") -> " + ref::hex(got) + " " + flags_str(fl) + ", reference " + ref::hex(want.code) + " " +
                   flags_str(want.flags));
        }
        const ref::result want = ref::compare(t, a, b, p);
        unsigned fl = 0;
        const int got = static_cast<int>(fpscope::compare(a, b, t.f, p, &fl));
        ++mm.checked;
        if (got != static_cast<int>(want.code) || fl != want.flags)
          mm.add(ref::describe(t.f, p) + ": compare(" + ref::hex(a) + ", " + ref::hex(b) + ") -> " +
                 std::to_string(got) + " " + flags_str(fl) + ", reference " +
                 std::to_string(static_cast<int>(want.code)) + " " + flags_str(want.flags));
      }
  mm.report(std::string(t.f.name) + " min / max / compare");
}

// ---- stochastic rounding ---------------------------------------------------------------------

TEMPLATE_TEST_CASE("arith: stochastic rounding picks a neighbour as documented", "[arith][sr]",
                   FPSCOPE_UNIT_FORMATS) {
  // The result is the exact result's neighbour toward zero or away from it; away exactly when
  // floor(f * 2^32) + sr_bits(seed, index) >= 2^32, f the exact result's place between the two
  // (found by exact comparisons, so also for sqrt); exact results never move; the same
  // (seed, index) gives the same result.
  const ref::table& t = ref::get(TestType::id);
  auto rng = rng_for(86, TestType::id);
  std::vector<std::pair<op, triple>> cases;
  for (op o : {op::add, op::sub, op::mul, op::div, op::sqrt, op::fma}) {
    std::vector<triple> v;
    random_codes(t, rng, 300, v);
    random_spread(t, o == op::sqrt ? op::mul : o, rng, 1500, v);
    for (const auto& c : v) cases.push_back({o, c});
  }
  mismatches mm;
  std::size_t moved_away = 0, inexact = 0;
  for (const auto& [o, c] : cases) {
    const ref::exact_located xl = ref::locate(t, ref::exact_op(t, o, c[0], c[1], c[2], false));
    for (auto ovf : {fpscope::overflow::infinity, fpscope::overflow::saturate}) {
      policy p;
      p.round = rounding::sr;
      p.on_overflow = ovf;
      p.seed = rng();
      const std::uint64_t index = rng() >> (rng() % 64);
      policy toward = p, away = p;
      toward.round = rounding::rtz;
      away.round = xl.x.neg ? rounding::rdn : rounding::rup;
      // The reference's result for the direction taken: its code, and its flags but underflow
      // (whose tininess test draws on the same random bits).
      const policy* chosen = &p;
      bool is_inexact = true;
      if (xl.x.kind != ref::exact_result::finite) {
        is_inexact = false;
      } else if (xl.l.kind == ref::located::finite && xl.l.exact) {
        chosen = &toward;
        is_inexact = false;
      } else if (xl.l.kind == ref::located::beyond) {
        chosen = &away;
      } else if (xl.l.kind == ref::located::below) {
        chosen = &toward;
      } else {
        const std::size_t lo = xl.l.lo;
        const double hi = lo + 1 < t.n() ? t.val[lo + 1] : t.next;
        const std::uint64_t f32 = ref::fraction32(xl.x.m, ref::exact(t.val[lo]), ref::exact(hi));
        const bool up = f32 + fpscope::sr_bits(p.seed, index) >= (std::uint64_t{1} << 32);
        chosen = up ? &away : &toward;
        moved_away += up;
      }
      const ref::result want = ref::finish(t, xl, *chosen);
      inexact += is_inexact;
      unsigned fl = 0;
      const std::uint32_t got = fpscope::apply(o, c[0], c[1], c[2], t.f, p, index, &fl);
      const std::uint32_t again = fpscope::apply(o, c[0], c[1], c[2], t.f, p, index);
      ++mm.checked;
      const unsigned mask = ~unsigned(fpscope::flag_underflow);
      if (got != want.code || again != got || (fl & mask) != (want.flags & mask))
        mm.add(ref::describe(t.f, p) + " seed " + std::to_string(p.seed) + " index " + std::to_string(index) + ": " +
               show_case(o, c) + " -> " + ref::hex(got) + " " + flags_str(fl) + " (again " + ref::hex(again) +
               "), reference " + ref::hex(want.code) + " " + flags_str(want.flags) +
               (is_inexact ? " inexact" : " exact"));
    }
  }
  mm.report(std::string(t.f.name) + " sr");
  CHECK(inexact > 1000);
  CHECK(moved_away > inexact / 10);
}

TEST_CASE("arith: stochastic rounding frequencies", "[arith][sr]") {
  // 1/3 in fp16 and the sum 1 + 2^-12 (a quarter of the gap above 1): away from zero with the
  // probability of the dropped fraction, within 5 sigma over 40000 indices; different seeds
  // give different streams.
  const auto fp16 = fpscope::builtin(fpscope::format_id::fp16);
  const ref::table& t = ref::get(fpscope::format_id::fp16);
  struct item {
    op o;
    std::uint32_t a, b;
  };
  for (const item& it : {item{op::div, 0x3C00, 0x4200}, item{op::add, 0x3C00, 0x0C00}, item{op::sqrt, 0x4000, 0}}) {
    const ref::exact_located xl = ref::locate(t, ref::exact_op(t, it.o, it.a, it.b, 0, false));
    REQUIRE(xl.l.kind == ref::located::finite);
    REQUIRE_FALSE(xl.l.exact);
    const std::size_t lo = xl.l.lo;
    const double f = double(ref::fraction32(xl.x.m, ref::exact(t.val[lo]), ref::exact(t.val[lo + 1]))) * 0x1p-32;
    const std::size_t draws = 40000;
    std::size_t up = 0, differ = 0;
    policy p, q;
    p.round = q.round = rounding::sr;
    p.seed = 7;
    q.seed = 8;
    for (std::uint64_t i = 0; i < draws; ++i) {
      const std::uint32_t c = fpscope::apply(it.o, it.a, it.b, 0, fp16, p, i);
      up += c != t.code[lo];
      differ += c != fpscope::apply(it.o, it.a, it.b, 0, fp16, q, i);
    }
    const double sigma = std::sqrt(draws * f * (1 - f));
    INFO(op_name(it.o) << ": fraction " << f << ", " << up << " of " << draws << " away");
    CHECK(std::fabs(double(up) - draws * f) < 5 * sigma);
    CHECK(differ > 0);
  }
}

// ---- hand-checked cases ------------------------------------------------------------------------

TEST_CASE("arith: hand-checked cases", "[arith]") {
  using fpscope::builtin;
  using fpscope::format_id;
  const auto fp16 = builtin(format_id::fp16);
  const auto e4m3 = builtin(format_id::e4m3);
  const auto e4m3fnuz = builtin(format_id::e4m3fnuz);
  const auto e2m1 = builtin(format_id::e2m1);
  const auto e8m0 = builtin(format_id::e8m0);
  policy p;
  unsigned fl = 0;
  CHECK(fpscope::add(0x3C00, 0x3C00, fp16) == 0x4000);  // 1 + 1 = 2
  CHECK(fpscope::add(0x3C00, 0x1000, fp16, p, 0, &fl) == 0x3C00);  // 1 + 2^-11: a tie, to even 1
  CHECK(fl == fpscope::flag_inexact);
  CHECK(fpscope::add(0x3C01, 0x1000, fp16) == 0x3C02);  // (1 + 2^-10) + 2^-11: a tie, to even
  fl = 0;
  CHECK(fpscope::add(0x7BFF, 0x4C00, fp16, p, 0, &fl) == 0x7C00);  // 65504 + 16 = 65520: a tie past max
  CHECK(fl == (fpscope::flag_inexact | fpscope::flag_overflow));
  CHECK(fpscope::add(0x7BFF, 0x4BFF, fp16) == 0x7BFF);  // 65504 + 15.99: below the threshold
  fl = 0;
  CHECK(fpscope::mul(0x0001, 0x3800, fp16, p, 0, &fl) == 0x0000);  // 2^-24 * 0.5: a tie, to even 0
  CHECK(fl == (fpscope::flag_inexact | fpscope::flag_underflow));
  fl = 0;
  // (1 - 2^-11) * 2^-14: a tie between the largest subnormal and the smallest normal, which
  // rne takes; tiny before and after rounding with an unbounded exponent: underflow.
  CHECK(fpscope::mul(0x3BFF, 0x0400, fp16, p, 0, &fl) == 0x0400);
  CHECK(fl == (fpscope::flag_inexact | fpscope::flag_underflow));
  fl = 0;
  CHECK(fpscope::div(0x3C00, 0x0000, fp16, p, 0, &fl) == 0x7C00);
  CHECK(fl == fpscope::flag_infinite);
  fl = 0;
  CHECK(fpscope::div(0x0000, 0x0000, fp16, p, 0, &fl) == 0xFE00);  // invalid: the default NaN
  CHECK(fl == fpscope::flag_invalid);
  fl = 0;
  CHECK(fpscope::sqrt(0xBC00, fp16, p, 0, &fl) == 0xFE00);
  CHECK(fl == fpscope::flag_invalid);
  CHECK(fpscope::sqrt(0x4400, fp16) == 0x4000);  // sqrt(4) = 2
  fl = 0;
  CHECK(fpscope::add(0x7E01, 0x7C05, fp16, p, 0, &fl) == 0x7E01);  // qNaN first: its payload
  CHECK(fl == fpscope::flag_invalid);  // the second is signalling
  CHECK(fpscope::add(0x3C00, 0xFC05, fp16) == 0xFE05);  // sNaN quieted, sign and payload kept
  fl = 0;
  CHECK(fpscope::fma(0x0000, 0x7C00, 0x7E00, fp16, p, 0, &fl) == 0x7E00);  // 0 * inf + qNaN: x86
  CHECK(fl == 0u);
  fl = 0;
  CHECK(fpscope::fma(0x0000, 0x7C00, 0x3C00, fp16, p, 0, &fl) == 0xFE00);
  CHECK(fl == fpscope::flag_invalid);
  // fma rounds once: (1 + 3*2^-10)^2 - 1 = 3*2^-9 + 9*2^-20 rounds to 3*2^-9 + 2^-17 (0x1e02);
  // a mul then a sub would lose the 9*2^-20 (0x1e00).
  CHECK(fpscope::fma(0x3C03, 0x3C03, 0xBC00, fp16) == 0x1E02);
  policy cuda = fpscope::profile_policy(fpscope::profile::cuda, fp16);
  CHECK(fpscope::div(0x0000, 0x0000, fp16, cuda) == 0x7FFF);
  CHECK(fpscope::add(0x7E01, 0x3C00, fp16, cuda) == 0x7FFF);
  // e4m3: 448 + 32 = 480 overflows to NaN (no inf), saturates under cuda; 448 + 16 = 464 ties to 448.
  fl = 0;
  CHECK(fpscope::add(0x7E, 0x60, e4m3, p, 0, &fl) == 0x7F);
  CHECK(fl == (fpscope::flag_inexact | fpscope::flag_overflow));
  CHECK(fpscope::add(0x7E, 0x60, e4m3, fpscope::profile_policy(fpscope::profile::cuda, e4m3)) == 0x7E);
  CHECK(fpscope::add(0x7E, 0x58, e4m3) == 0x7E);
  fl = 0;
  CHECK(fpscope::div(0x38, 0x00, e4m3, p, 0, &fl) == 0x7F);  // 1/0: no inf, the NaN; invalid too
  CHECK(fl == (fpscope::flag_infinite | fpscope::flag_invalid));
  // fnuz: no -0; a negative result that rounds to zero is +0.
  CHECK(fpscope::mul(0x81, 0x01, e4m3fnuz) == 0x00);
  CHECK(fpscope::sub(0x40, 0x40, e4m3fnuz, policy{rounding::rdn}) == 0x00);
  // e2m1: 6 + 6 = 12: no inf, max finite, with overflow.
  fl = 0;
  CHECK(fpscope::add(0x7, 0x7, e2m1, p, 0, &fl) == 0x7);
  CHECK(fl == (fpscope::flag_inexact | fpscope::flag_overflow));
  // e8m0: powers of two multiply, divide and take roots exactly; 2^a + 2^a = 2^(a+1).
  CHECK(fpscope::mul(0x7F, 0x80, e8m0) == 0x80);  // 1 * 2 = 2
  CHECK(fpscope::mul(0x81, 0x82, e8m0) == 0x84);  // 4 * 8 = 32
  CHECK(fpscope::div(0x7F, 0x81, e8m0) == 0x7D);  // 1 / 4
  CHECK(fpscope::sqrt(0x81, e8m0) == 0x80);       // sqrt(4) = 2
  CHECK(fpscope::add(0x80, 0x80, e8m0) == 0x81);  // 2 + 2 = 4
  fl = 0;
  CHECK(fpscope::sub(0x80, 0x81, e8m0, p, 0, &fl) == 0xFF);  // 2 - 4 < 0: NaN
  CHECK(fl == fpscope::flag_invalid);
  fl = 0;
  CHECK(fpscope::mul(0xFE, 0xFE, e8m0, p, 0, &fl) == 0xFF);  // 2^254: overflow to NaN
  CHECK(fl == (fpscope::flag_inexact | fpscope::flag_overflow));
  // The named forms are apply().
  for (std::uint32_t a : {0x3C00u, 0x0001u, 0x7BFFu, 0xFE01u})
    for (std::uint32_t b : {0x4200u, 0x8400u, 0x7C00u}) {
      policy q;
      q.round = rounding::rup;
      CHECK(fpscope::add(a, b, fp16, q) == fpscope::apply(op::add, a, b, 0, fp16, q));
      CHECK(fpscope::sub(a, b, fp16, q) == fpscope::apply(op::sub, a, b, 0, fp16, q));
      CHECK(fpscope::mul(a, b, fp16, q) == fpscope::apply(op::mul, a, b, 0, fp16, q));
      CHECK(fpscope::div(a, b, fp16, q) == fpscope::apply(op::div, a, b, 0, fp16, q));
      CHECK(fpscope::sqrt(a, fp16, q) == fpscope::apply(op::sqrt, a, 0, 0, fp16, q));
      CHECK(fpscope::fma(a, b, a, fp16, q) == fpscope::apply(op::fma, a, b, a, fp16, q));
    }
  // Codes are masked to the format's width.
  CHECK(fpscope::add(0xFF3C00, 0x3C00, fp16) == 0x4000);
}
