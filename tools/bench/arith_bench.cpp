// fpscope-bench-arith: bulk arithmetic (fpscope::apply on spans, arith_bulk.hpp) in fp16, bf16,
// e4m3 and e5m2, nearest-even: add, mul and fma, per element, in interleaved rounds (harness.hpp):
//
//   fpscope   fpscope::apply(op, a, b, c, out, format), threads = 1 and 2, on typical operands
//             (finite, log-uniform over 12 binades, both signs, 2 % zeros) and, 1 thread, on
//             the same with 1 % NaN/inf operands (the elements the scalar path redoes)
//   hardware  the host's float arithmetic between hardware conversions: fp16 F16C vcvtph2ps ->
//             vaddps/vmulps/vfmadd231ps -> vcvtps2ph (ymm, and zmm with AVX-512F); bf16 a shift
//             left -> the float op -> AVX512-BF16 vcvtne2ps2bf16. e4m3/e5m2: no x86 instruction
//   reference streaming read of the operands and write of the result (a ^ b [^ c]), 1 and 2 threads
//   peers     numpy, torch, ml_dtypes (arith_peers.py), fed the same codes and timed between
//             our samples
//
// In cache it checks that the work is the same: the bulk path against the scalar apply, the
// hardware kernels and every peer against fpscope (under the profile closest to the peer), bit
// for bit. Then a sweep of sizes 2^10..2^22 finds where two threads start to beat one (the
// OpenMP `arith_parallel_threshold` of arith_bulk.hpp). See tools/bench/README.md.
#include <fpscope/arith_bulk.hpp>
#include <fpscope/convert.hpp>

#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "harness.hpp"

#if FPSCOPE_BENCH_X86
// GCC 12 sees the AVX-512 intrinsics' "undefined" pass-through vectors (__m512i __Y = __Y) as
// maybe-uninitialized once they are inlined into a target("avx512f") function (clang has no
// such warning).
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#endif

namespace {

using namespace fpscope::bench;
using fpscope::op;

// ----------------------------------------------------------------------------------------
// Formats, operations, data

struct op_info {
  op o;
  const char* name;
  int operands;
};
constexpr std::array<op_info, 3> ops{{{op::add, "add", 2}, {op::mul, "mul", 2}, {op::fma, "fma", 3}}};

enum class kind { typical, specials };
const char* kind_key(kind k) { return k == kind::typical ? "typical" : "specials"; }

constexpr double gen_lo = -8, gen_hi = 4;  // log2|x| uniform in [gen_lo, gen_hi)
constexpr double gen_zeros = 0.02, gen_specials = 0.01;

/// The operands a, b, c of one format and input kind, as codes.
struct operands {
  const fmt_info* f = nullptr;
  kind k = kind::typical;
  std::size_t n = 0;
  std::array<buffer<unsigned char>, 3> x;
  std::size_t special_elements[3] = {0, 0, 0};  // elements with a NaN/inf among the first 2 or 3 operands
  template <class W>
  const W* get(int i) const {
    return x[std::size_t(i)].as<W>();
  }
};

/// A NaN or an infinity of f: for IEEE-style formats 40 % +-inf, 40 % quiet NaN with a random
/// payload, 20 % signalling NaN; e4m3 (fn) has only its NaN.
std::uint32_t special_code(const fpscope::format& f, std::uint64_t r) {
  const std::uint32_t sign = (r >> 63) ? f.sign_mask() : 0u;
  if (!f.has_inf()) return sign | (f.mask() & ~f.sign_mask());  // e4m3fn: S.1111.111
  const std::uint32_t inf = f.inf_bits(), quiet = std::uint32_t{1} << (f.man_bits - 1);
  const std::uint32_t payload = static_cast<std::uint32_t>(r >> 8) & (quiet - 1);
  const unsigned pick = static_cast<unsigned>(r % 10);
  if (pick < 4) return sign | inf;
  if (pick < 8) return sign | inf | quiet | payload;
  return sign | inf | (payload ? payload : 1u);  // signalling
}

template <class W>
void generate(const fmt_info& fi, kind k, W* out, std::size_t n, std::uint64_t seed) {
  const fpscope::format f = fpscope::builtin(fi.id);
  splitmix g{seed};
  constexpr std::size_t chunk = 4096;
  std::vector<float> v(chunk);
  for (std::size_t lo = 0; lo < n; lo += chunk) {
    const std::size_t m = std::min(chunk, n - lo);
    for (std::size_t i = 0; i < m; ++i) {
      const std::uint64_t r = g.next();
      const bool zero = double(r & 0xFFFFFFFFu) * 0x1p-32 < gen_zeros;
      const float mag = float(std::exp2(gen_lo + (gen_hi - gen_lo) * g.uniform()));
      v[i] = zero ? 0.0f : (r >> 63) ? -mag : mag;
    }
    fpscope::bulk_options o;
    o.threads = 1;
    fpscope::encode(std::span<const float>(v.data(), m), std::span<W>(out + lo, m), f, fpscope::policy{}, o);
  }
  if (k == kind::specials) {
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint64_t r = g.next();
      if (double(r & 0xFFFFFFFFu) * 0x1p-32 < gen_specials) out[i] = static_cast<W>(special_code(f, g.next()));
    }
  }
}

operands make_operands(const fmt_info& fi, kind k, std::size_t n, std::uint64_t seed) {
  operands d;
  d.f = &fi;
  d.k = k;
  d.n = n;
  const fpscope::format f = fpscope::builtin(fi.id);
  for (int j = 0; j < 3; ++j) {
    d.x[std::size_t(j)] = buffer<unsigned char>(n * std::size_t(fi.bytes));
    const std::uint64_t s = seed * 131 + std::uint64_t(j) * 7919 + std::uint64_t(fi.id) * 104729;
    if (fi.bytes == 2) generate(fi, k, d.x[std::size_t(j)].as<std::uint16_t>(), n, s);
    else generate(fi, k, d.x[std::size_t(j)].as<std::uint8_t>(), n, s);
  }
  auto code = [&](int j, std::size_t i) -> std::uint32_t {
    return fi.bytes == 2 ? d.get<std::uint16_t>(j)[i] : d.get<std::uint8_t>(j)[i];
  };
  for (std::size_t i = 0; i < n; ++i) {
    bool any = false;
    for (int j = 0; j < 3; ++j) {
      const double v = fpscope::decode(code(j, i), f);
      any = any || !std::isfinite(v);
      if (j == 1) d.special_elements[1] += any;  // add, mul: a, b
      if (j == 2) d.special_elements[2] += any;  // fma: a, b, c
    }
  }
  return d;
}

// ----------------------------------------------------------------------------------------
// Kernels: fpscope, the hardware references, the streaming reference

template <class W>
void fp_apply(op o, const operands& d, W* out, std::size_t n, const fpscope::policy& p, int threads,
              std::size_t offset = 0) {
  const fpscope::format f = fpscope::builtin(d.f->id);
  fpscope::bulk_options opt;
  opt.threads = threads;
  const W* a = d.get<W>(0) + offset;
  const W* b = d.get<W>(1) + offset;
  const W* c = d.get<W>(2) + offset;
  fpscope::apply<W>(o, std::span<const W>(a, n), std::span<const W>(b, n),
                    o == op::fma ? std::span<const W>(c, n) : std::span<const W>(), std::span<W>(out + offset, n), f,
                    p, opt);
}

// Two threads on two halves, each a serial fpscope::apply: what the library's threads=2 call
// does above arith_parallel_threshold, at any size.
template <class W>
void fp_apply_split2(op o, const operands& d, W* out, std::size_t n, const fpscope::policy& p) {
#pragma omp parallel num_threads(2)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const std::size_t lo = (n * std::size_t(t) / std::size_t(nt)) & ~std::size_t{63};
    const std::size_t hi = t + 1 == nt ? n : (n * std::size_t(t + 1) / std::size_t(nt)) & ~std::size_t{63};
    fp_apply<W>(o, d, out, hi - lo, p, 1, lo);
  }
}

#if FPSCOPE_BENCH_X86
// fp16: F16C vcvtph2ps, the float op (vaddps, vmulps, vfmadd), vcvtps2ph nearest-even; 16
// elements per iteration in two ymm vectors. The tail goes through a zero-padded block.
template <op O>
[[gnu::target("avx2,fma,f16c"), gnu::noinline]] void f16c_arith(const std::uint16_t* __restrict a,
                                                                 const std::uint16_t* __restrict b,
                                                                 const std::uint16_t* __restrict c,
                                                                 std::uint16_t* __restrict out, std::size_t n) {
  auto body = [](const std::uint16_t* x, const std::uint16_t* y, const std::uint16_t* z, std::uint16_t* r) {
    for (int h = 0; h < 16; h += 8) {
      const __m256 u = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + h)));
      const __m256 v = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(y + h)));
      __m256 s;
      if constexpr (O == op::add) s = _mm256_add_ps(u, v);
      else if constexpr (O == op::mul) s = _mm256_mul_ps(u, v);
      else s = _mm256_fmadd_ps(u, v, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(z + h))));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(r + h), _mm256_cvtps_ph(s, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
  };
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) body(a + i, b + i, O == op::fma ? c + i : a + i, out + i);
  if (i < n) {
    std::uint16_t x[16] = {}, y[16] = {}, z[16] = {}, r[16];
    std::memcpy(x, a + i, (n - i) * 2);
    std::memcpy(y, b + i, (n - i) * 2);
    if (O == op::fma) std::memcpy(z, c + i, (n - i) * 2);
    body(x, y, z, r);
    std::memcpy(out + i, r, (n - i) * 2);
  }
}

// fp16 with AVX-512F: vcvtph2ps zmm, the float op, vcvtps2ph zmm; 32 per iteration.
template <op O>
[[gnu::target("avx512f"), gnu::noinline]] void avx512_fp16_arith(const std::uint16_t* __restrict a,
                                                                  const std::uint16_t* __restrict b,
                                                                  const std::uint16_t* __restrict c,
                                                                  std::uint16_t* __restrict out, std::size_t n) {
  auto body = [](const std::uint16_t* x, const std::uint16_t* y, const std::uint16_t* z, std::uint16_t* r) {
    for (int h = 0; h < 32; h += 16) {
      const __m512 u = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + h)));
      const __m512 v = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(y + h)));
      __m512 s;
      if constexpr (O == op::add) s = _mm512_add_ps(u, v);
      else if constexpr (O == op::mul) s = _mm512_mul_ps(u, v);
      else s = _mm512_fmadd_ps(u, v, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(z + h))));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(r + h), _mm512_cvtps_ph(s, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
  };
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) body(a + i, b + i, O == op::fma ? c + i : a + i, out + i);
  if (i < n) {
    std::uint16_t x[32] = {}, y[32] = {}, z[32] = {}, r[32];
    std::memcpy(x, a + i, (n - i) * 2);
    std::memcpy(y, b + i, (n - i) * 2);
    if (O == op::fma) std::memcpy(z, c + i, (n - i) * 2);
    body(x, y, z, r);
    std::memcpy(out + i, r, (n - i) * 2);
  }
}

// bf16: decode by a 16-bit shift left (vpmovzxwd, vpslld), the float op, AVX512-BF16
// vcvtne2ps2bf16 (nearest-even; float32 denormal inputs read as zero, denormal results
// flushed); 32 per iteration.
template <op O>
[[gnu::target("avx512f,avx512bf16"), gnu::noinline]] void avx512bf16_arith(const std::uint16_t* __restrict a,
                                                                            const std::uint16_t* __restrict b,
                                                                            const std::uint16_t* __restrict c,
                                                                            std::uint16_t* __restrict out,
                                                                            std::size_t n) {
  auto body = [](const std::uint16_t* x, const std::uint16_t* y, const std::uint16_t* z, std::uint16_t* r) {
    auto load = [](const std::uint16_t* p) {
      return _mm512_castsi512_ps(
          _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
    };
    __m512 s[2];
    for (int h = 0; h < 2; ++h) {
      const __m512 u = load(x + 16 * h), v = load(y + 16 * h);
      if constexpr (O == op::add) s[h] = _mm512_add_ps(u, v);
      else if constexpr (O == op::mul) s[h] = _mm512_mul_ps(u, v);
      else s[h] = _mm512_fmadd_ps(u, v, load(z + 16 * h));
    }
    const __m512bh q = _mm512_cvtne2ps_pbh(s[1], s[0]);  // low half from the second argument
    std::memcpy(r, &q, 64);
  };
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) body(a + i, b + i, O == op::fma ? c + i : a + i, out + i);
  if (i < n) {
    std::uint16_t x[32] = {}, y[32] = {}, z[32] = {}, r[32];
    std::memcpy(x, a + i, (n - i) * 2);
    std::memcpy(y, b + i, (n - i) * 2);
    if (O == op::fma) std::memcpy(z, c + i, (n - i) * 2);
    body(x, y, z, r);
    std::memcpy(out + i, r, (n - i) * 2);
  }
}
#endif

using hw_kernel = void (*)(const std::uint16_t*, const std::uint16_t*, const std::uint16_t*, std::uint16_t*,
                           std::size_t);
struct hw_info {
  const char* key;   // id part
  const char* name;  // what runs
  const char* format;
  const char* needs;  // cpu_has() features
  std::array<hw_kernel, 3> k;  // by ops[]
};
const std::vector<hw_info>& hw_kernels() {
  static const std::vector<hw_info> v{
#if FPSCOPE_BENCH_X86
      {"f16c", "F16C ymm: vcvtph2ps, float op, vcvtps2ph", "fp16", "f16c,avx2,fma",
       {f16c_arith<op::add>, f16c_arith<op::mul>, f16c_arith<op::fma>}},
      {"avx512", "AVX-512F zmm: vcvtph2ps, float op, vcvtps2ph", "fp16", "avx512f",
       {avx512_fp16_arith<op::add>, avx512_fp16_arith<op::mul>, avx512_fp16_arith<op::fma>}},
      {"avx512bf16", "AVX512-BF16 zmm: shift, float op, vcvtne2ps2bf16", "bf16", "avx512bf16",
       {avx512bf16_arith<op::add>, avx512bf16_arith<op::mul>, avx512bf16_arith<op::fma>}},
#endif
  };
  return v;
}

// Streaming reference: read the operands, write one word per element (a ^ b [^ c]): the same
// traffic as the arithmetic with next to no work.
template <class W, int K>
[[gnu::noinline]] void stream_ref(const W* __restrict a, const W* __restrict b, const W* __restrict c,
                                  W* __restrict out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    if constexpr (K == 3) out[i] = static_cast<W>(a[i] ^ b[i] ^ c[i]);
    else out[i] = static_cast<W>(a[i] ^ b[i]);
  }
}
template <class W, int K>
void stream_threads(const W* a, const W* b, const W* c, W* out, std::size_t n, int threads) {
  if (threads <= 1) return stream_ref<W, K>(a, b, c, out, n);
#pragma omp parallel num_threads(threads)
  {
    const std::size_t t = std::size_t(omp_get_thread_num()), nt = std::size_t(omp_get_num_threads());
    const std::size_t lo = n * t / nt, hi = n * (t + 1) / nt;
    stream_ref<W, K>(a + lo, b + lo, c + lo, out + lo, hi - lo);
  }
}

// ----------------------------------------------------------------------------------------
// The cases, their measurement, their checks and their tables

// Every peer arith_peers.py knows, listed as skipped when the peers cannot run: numpy fp16,
// torch fp16 and bf16 (every op), ml_dtypes bf16, e4m3, e5m2 (add and mul).
std::vector<peer_desc> known_peers() {
  std::vector<peer_desc> k;
  for (const char* lib : {"numpy", "torch", "ml_dtypes"})
    for (const auto& f : formats)
      for (const auto& o : ops) {
        const std::string fn = f.name, on = o.name, l = lib;
        const bool known = (l == "numpy" && fn == "fp16") || (l == "torch" && (fn == "fp16" || fn == "bf16")) ||
                           (l == "ml_dtypes" && fn != "fp16" && on != "fma");
        if (known) k.push_back({.id = l + "." + fn + "." + on, .format = fn, .op = on, .lib = l});
      }
  return k;
}

class arith_bench {
 public:
  // A 2-thread sample starts with 20 ms of untimed calls and is followed by a 15 ms pause
  // (session::warm_s, settle_s): this benchmark's 2-thread samples are short.
  arith_bench(session& s, sweep_options sw) : s_(s), sweep_(sw) {
    s_.warm_s = warm_s;
    s_.settle_s = settle_s;
  }

  void run() {
    const options& opt = s_.opt();
    std::string vec;
    for (const auto& f : formats)
      for (const auto& o : ops)
        if (!fpscope::apply_is_vectorised(o.o, fpscope::builtin(f.id),
                                          fpscope::profile_policy(fpscope::profile::ieee, fpscope::builtin(f.id))))
          vec += fmt::format(" {} {}", f.name, o.name);
    s_.begin({fmt::format("- arith_parallel_threshold {}", fpscope::arith_parallel_threshold),
              fmt::format("- operands: codes of random values, sign random, log2|x| uniform in [{}, {}), {:.0f} % zeros, "
                          "rounded to the format (nearest-even); the NaN/inf rows replace {:.0f} % of each operand by "
                          "+-inf, quiet or signalling NaNs (e4m3: its NaN)",
                          gen_lo, gen_hi, gen_zeros * 100, gen_specials * 100),
              "- vectorised path (apply_is_vectorised): " + (vec.empty() ? "every format and op measured" : "NOT for" + vec)},
             known_peers());
    json jsizes = json::array();
    {
      arith_size cache{{opt.cache_n, "in-cache", opt.rounds_cache, false, {}}, {}, {}, {}};
      run_size(cache, jsizes);
    }
    {
      arith_size mem{{opt.mem_n, "from-memory", opt.rounds_mem, true, {}}, {}, {}, {}};
      run_size(mem, jsizes);
    }
    s_.out["sizes"] = jsizes;
    s_.peers.stop();
    if (sweep_.on) sweep();
    s_.goals_report(goal_layout::worst_case);
  }

 private:
  struct arith_size : size_run {
    std::map<std::pair<int, kind>, operands> data;  // (format index, kind)
    buffer<unsigned char> o16, o8;                  // outputs: the items of a size run one at a time
  };

  static std::string data_name(const arith_size& s, const fmt_info& f, kind k) {
    return fmt::format("{}-{}-{}", s.label, f.name, kind_key(k));
  }

  void run_size(arith_size& s, json& jsizes) {
    const std::size_t n = s.n;
    progress("{}: n = {}: generating operands\n", s.label, n);
    {
      std::vector<std::pair<int, kind>> keys;
      for (int fi = 0; fi < int(formats.size()); ++fi)
        for (kind k : {kind::typical, kind::specials}) keys.push_back({fi, k});
      std::vector<operands> made(keys.size());
#pragma omp parallel for schedule(dynamic) num_threads(2)
      for (std::size_t i = 0; i < keys.size(); ++i)
        made[i] = make_operands(formats[std::size_t(keys[i].first)], keys[i].second, n,
                                keys[i].second == kind::typical ? 1 : 2);
      for (std::size_t i = 0; i < keys.size(); ++i) s.data.emplace(keys[i], std::move(made[i]));
    }
    s.o16 = buffer<unsigned char>(n * 2);
    s.o8 = buffer<unsigned char>(n);

    for (int fi = 0; fi < int(formats.size()); ++fi) {
      const fmt_info& f = formats[std::size_t(fi)];
      const fpscope::policy p = fpscope::profile_policy(fpscope::profile::ieee, fpscope::builtin(f.id));
      for (const op_info& o : ops)
        for (kind k : {kind::typical, kind::specials})
          for (int th : {1, 2}) {
            if (k == kind::specials && th == 2) continue;
            const operands* d = &s.data.at({fi, k});
            const op oo = o.o;
            item it{.id = fmt::format("fpscope/{}/{}/{}/t{}", f.name, o.name, kind_key(k), th),
                    .group = "fpscope",
                    .impl = fmt::format("fpscope::apply(op::{}, ...), threads={}", o.name, th),
                    .format = f.name,
                    .op = o.name,
                    .input = kind_key(k),
                    .threads = th,
                    .bytes = double(f.bytes * (o.operands + 1))};
            if (f.bytes == 2) {
              std::uint16_t* w = s.o16.as<std::uint16_t>();
              it.run = [=] { fp_apply<std::uint16_t>(oo, *d, w, n, p, th); escape(w); };
            } else {
              std::uint8_t* w = s.o8.as<std::uint8_t>();
              it.run = [=] { fp_apply<std::uint8_t>(oo, *d, w, n, p, th); escape(w); };
            }
            s.items.add(std::move(it));
          }
    }
    for (const hw_info& h : hw_kernels()) {
      const int fi = std::string_view(h.format) == "fp16" ? 0 : 1;
      const operands* d = &s.data.at({fi, kind::typical});
      for (std::size_t oi = 0; oi < ops.size(); ++oi) {
        item it{.id = fmt::format("hw/{}/{}", h.key, ops[oi].name), .group = "hardware", .impl = h.name,
                .format = h.format, .op = ops[oi].name, .bytes = double(2 * (ops[oi].operands + 1))};
        if (!cpu_has(h.needs)) {
          it.na = fmt::format("n/a (CPU lacks {})", h.needs);
        } else {
          const hw_kernel k = h.k[oi];
          std::uint16_t* w = s.o16.as<std::uint16_t>();
          it.run = [=] {
            k(d->get<std::uint16_t>(0), d->get<std::uint16_t>(1), d->get<std::uint16_t>(2), w, n);
            escape(w);
          };
        }
        s.items.add(std::move(it));
      }
    }
    for (int bytes : {2, 1})
      for (int K : {2, 3})
        for (int th : {1, 2}) {
          const operands* d = &s.data.at({bytes == 2 ? 0 : 2, kind::typical});
          item it{.id = fmt::format("stream/w{}/k{}/t{}", bytes * 8, K, th), .group = "stream",
                  .impl = fmt::format("stream: read {} x {} B, write {} B", K, bytes, bytes), .threads = th,
                  .bytes = double(bytes * (K + 1))};
          auto stream = [&](auto* w) {
            using W = std::remove_pointer_t<decltype(w)>;
            const W *a = d->get<W>(0), *b = d->get<W>(1), *c = d->get<W>(2);
            if (K == 2) it.run = [=] { stream_threads<W, 2>(a, b, c, w, n, th); escape(w); };
            else it.run = [=] { stream_threads<W, 3>(a, b, c, w, n, th); escape(w); };
          };
          if (bytes == 2) stream(s.o16.as<std::uint16_t>());
          else stream(s.o8.as<std::uint8_t>());
          s.items.add(std::move(it));
        }

    // Peers: the same codes, checked by checksum on the Python side. The NaN/inf operands only
    // in cache, for the checks; a format only where one of its peers can run.
    std::vector<std::string> names;
    for (int fi = 0; fi < int(formats.size()); ++fi)
      for (kind k : {kind::typical, kind::specials}) {
        const fmt_info& f = formats[std::size_t(fi)];
        const auto& all = s_.peers.all();
        if ((k == kind::specials && s.mem) || !s_.peers.up() ||
            std::none_of(all.begin(), all.end(), [&](const peer_desc& p) { return p.why.empty() && p.format == f.name; }))
          continue;
        const operands& d = s.data.at({fi, k});
        const auto dtype = fpscope::npy_uint_dtype(f.bytes);
        names.push_back(data_name(s, f, k));
        s_.peers.load(names.back(), {{dtype, d.x[0].data(), n}, {dtype, d.x[1].data(), n}, {dtype, d.x[2].data(), n}});
      }
    for (item& it : s_.peers.items([&](const peer_desc& p) {
           return data_name(s, formats[format_index(p.format)], kind::typical);
         }))
      s.items.add(std::move(it));

    json checks = json::array();
    if (!s.mem) checks = cross_check(s);

    s_.measure(s);
    for (const auto& nm : names) s_.peers.forget(nm);

    report_size(s, checks, jsizes);
  }

  // ----------------------------------------------------------------------------------------
  // Are we comparing the same work? In cache, on both input kinds.

  // fpscope's codes (as uint32) of op o on d under policy p; variant: "fpscope" (the op),
  // "mul+add" (fma as two roundings in the format), "f32fma" (fma as one binary32 fma rounded
  // once to the format).
  static std::vector<std::uint32_t> ours(const operands& d, op o, const fpscope::policy& p, const std::string& variant,
                                         int threads = 1) {
    const std::size_t n = d.n;
    const fpscope::format f = fpscope::builtin(d.f->id);
    std::vector<std::uint32_t> r(n);
    auto run = [&](auto w) {
      using W = decltype(w);
      std::vector<W> t(n);
      if (variant == "fpscope") {
        fp_apply<W>(o, d, t.data(), n, p, threads);
      } else if (variant == "mul+add") {
        std::vector<W> prod(n);
        fp_apply<W>(op::mul, d, prod.data(), n, p, 1);
        for (std::size_t i = 0; i < n; ++i) t[i] = static_cast<W>(fpscope::apply(op::add, prod[i], d.get<W>(2)[i], 0, f, p));
      } else {  // f32fma
        std::vector<float> x(n), y(n), z(n), s(n);
        fpscope::decode(std::span<const W>(d.get<W>(0), n), std::span<float>(x), f);
        fpscope::decode(std::span<const W>(d.get<W>(1), n), std::span<float>(y), f);
        fpscope::decode(std::span<const W>(d.get<W>(2), n), std::span<float>(z), f);
        for (std::size_t i = 0; i < n; ++i) s[i] = std::fma(x[i], y[i], z[i]);
        fpscope::bulk_options bo;
        bo.threads = 1;
        fpscope::encode(std::span<const float>(s), std::span<W>(t), f, p, bo);
      }
      std::copy(t.begin(), t.end(), r.begin());
    };
    if (d.f->bytes == 2) run(std::uint16_t{});
    else run(std::uint8_t{});
    return r;
  }

  /// Codes that differ: value_diff where not both are NaN (a NaN against a number counts),
  /// nan_diff where both are NaN with other bits (sign, payload); nans: NaN results of a.
  static diff_count compare(const std::vector<std::uint32_t>& a, const std::vector<std::uint32_t>& b,
                            const fpscope::format& f) {
    diff_count c;
    for (std::size_t i = 0; i < a.size(); ++i) {
      const bool na = std::isnan(fpscope::decode(a[i], f)), nb = std::isnan(fpscope::decode(b[i], f));
      c.nans += na;
      if (a[i] == b[i]) continue;
      ++(na && nb ? c.nan_diff : c.value_diff);
    }
    return c;
  }

  static json check_row(const std::string& who, const operands& d, const std::string& opn, const std::string& against,
                        const char* profile, const diff_count& c) {
    return {{"who", who}, {"format", d.f->name}, {"op", opn}, {"input", kind_key(d.k)}, {"against", against},
            {"profile", profile}, {"n", d.n}, {"differ_values", c.value_diff}, {"differ_nan_bits", c.nan_diff},
            {"nan_results", c.nans}};
  }

  // The closest fpscope profile for `theirs` (fewest value differences, then NaN ones), and for
  // fma the double-rounded variants under it.
  static void check_against(json& checks, const std::string& who, const operands& d, const op_info& o,
                            const std::vector<std::uint32_t>& theirs) {
    const fpscope::format f = fpscope::builtin(d.f->id);
    const auto [pr, best] = closest_profile(
        [&](fpscope::profile p) { return compare(ours(d, o.o, fpscope::profile_policy(p, f), "fpscope"), theirs, f); });
    checks.push_back(check_row(who, d, o.name, fmt::format("fpscope {}", o.name), pr.name, best));
    if (o.o != op::fma) return;
    const fpscope::policy p = fpscope::profile_policy(pr.p, f);
    for (const char* v : {"mul+add", "f32fma"})
      checks.push_back(check_row(who, d, o.name,
                                 std::string(v) == "mul+add" ? "fpscope mul, then fpscope add (two roundings)"
                                                             : "binary32 fma, then one rounding (fpscope encode)",
                                 pr.name, compare(ours(d, op::fma, p, v), theirs, f)));
  }

  json cross_check(arith_size& s) {
    progress("{}: checking the work is the same (bulk vs scalar, hardware, peers)\n", s.label);
    json checks = json::array();
    // 1. The bulk path against the scalar apply, every format, op, input kind, 1 and 2 threads.
    for (int fi = 0; fi < int(formats.size()); ++fi)
      for (kind k : {kind::typical, kind::specials}) {
        const operands& d = s.data.at({fi, k});
        const fpscope::format f = fpscope::builtin(d.f->id);
        const fpscope::policy p = fpscope::profile_policy(fpscope::profile::ieee, f);
        for (const op_info& o : ops) {
          std::vector<std::uint32_t> ref(d.n);
          for (std::size_t i = 0; i < d.n; ++i) {
            const auto code = [&](int j) -> std::uint32_t {
              return d.f->bytes == 2 ? d.get<std::uint16_t>(j)[i] : d.get<std::uint8_t>(j)[i];
            };
            ref[i] = fpscope::apply(o.o, code(0), code(1), o.o == op::fma ? code(2) : 0u, f, p, i);
          }
          for (int th : {1, 2})
            checks.push_back(check_row(fmt::format("fpscope bulk apply, threads={}", th), d, o.name,
                                       "fpscope scalar apply", "ieee", compare(ours(d, o.o, p, "fpscope", th), ref, f)));
        }
      }
    // 2. The hardware references.
    for (const hw_info& h : hw_kernels()) {
      if (!cpu_has(h.needs)) continue;
      const int fi = std::string_view(h.format) == "fp16" ? 0 : 1;
      for (kind k : {kind::typical, kind::specials}) {
        const operands& d = s.data.at({fi, k});
        for (std::size_t oi = 0; oi < ops.size(); ++oi) {
          std::vector<std::uint16_t> w(d.n);
          h.k[oi](d.get<std::uint16_t>(0), d.get<std::uint16_t>(1), d.get<std::uint16_t>(2), w.data(), d.n);
          check_against(checks, h.name, d, ops[oi], std::vector<std::uint32_t>(w.begin(), w.end()));
        }
      }
    }
    // 3. The peers.
    if (!s_.peers.up()) return checks;
    for (const peer_desc& pd : s_.peers.all()) {
      if (!pd.why.empty()) continue;
      const int fi = int(format_index(pd.format));
      const op_info& o = *std::find_if(ops.begin(), ops.end(), [&](const op_info& x) { return pd.op == x.name; });
      for (kind k : {kind::typical, kind::specials}) {
        const operands& d = s.data.at({fi, k});
        std::string why;
        if (auto theirs = s_.peers.output(pd.id, data_name(s, *d.f, k), why))
          check_against(checks, pd.id, d, o, *theirs);
        else
          checks.push_back({{"who", pd.id}, {"format", pd.format}, {"op", pd.op}, {"input", kind_key(k)}, {"error", why}});
      }
    }
    return checks;
  }

  // ----------------------------------------------------------------------------------------
  // Reporting

  void report_size(arith_size& s, const json& checks, json& jsizes) {
    const std::size_t n = s.n;
    const std::size_t rounds = std::size_t(s.rounds);
    json js = {{"label", s.label}, {"n", n}, {"rounds", s.rounds}, {"items", json::array()}, {"rows", json::array()},
               {"checks", checks}};
    for (const item& it : s.items) js["items"].push_back(item_json(it, n, "ops"));

    s_.emit("\n## {}: n = {} elements per operand, {} interleaved rounds\n\n", s.label, n, s.rounds);
    s_.emit("Gops/s = 1e9 elements per second (one add, mul or fma per element): median over rounds (best round). "
            "Ratios x = fpscope's speed / the other's, paired per round: median (best/best).\n\n");

    // References.
    std::vector<std::vector<std::string>> rrows;
    for (const item& it : s.items)
      if (it.group == "hardware" || it.group == "stream") {
        const std::string gbs =
            it.na.empty() ? fmt::format("{:.1f}", it.bytes * double(n) / median(it.t) * 1e-9) : std::string("-");
        rrows.push_back({it.impl, it.format.empty() ? "-" : it.format, it.op.empty() ? "-" : it.op,
                         std::to_string(it.threads), rate_cell(it, n), gbs});
      }
    s_.emit("### Hardware reference (the host's float arithmetic between hardware conversions) and bandwidth\n\n"
            "fp16 and bf16 fma here is a binary32 fma rounded once more to the format: double rounding, NOT "
            "correctly rounded (a speed reference, not a correctness one). add and mul are correctly rounded "
            "(binary32 has 24 >= 2p + 2 bits: Figueroa). e4m3 and e5m2 have no x86 instruction.\n\n{}\n",
            table({"kernel", "format", "op", "threads", "Gops/s median (best)", "GB/s median"}, rrows));

    // One core.
    std::vector<std::vector<std::string>> rows;
    for (const auto& f : formats)
      for (const auto& o : ops) {
        const item& me = s.items.get(fmt::format("fpscope/{}/{}/typical/t1", f.name, o.name));
        auto vs = [&](const std::function<bool(const item&)>& pick, const std::string& none = "-") {
          return versus_fastest(me, s.items, rounds, pick, none);
        };
        auto this_case = [&](const item& it) { return it.format == f.name && it.op == o.name; };
        const std::string stream = fmt::format("stream/w{}/k{}/t1", f.bytes * 8, o.operands);
        const versus hw = vs([&](const item& it) { return it.group == "hardware" && this_case(it); },
                             "none (no x86 instruction)"),
                     st = vs([&](const item& it) { return it.id == stream; }), np = vs(peers_of("numpy", this_case)),
                     to = vs(peers_of("torch", this_case)), ml = vs(peers_of("ml_dtypes", this_case));
        const double med = double(n) / median(me.t), best = double(n) / minimum(me.t);
        s_.goal("per core >= 1e9 ops/s (nearest-even, 1 thread)", fmt::format("{} {} {}", s.label, f.name, o.name), med,
                best, {1e9}, "ops/s");
        const bool dbl = o.o == op::fma && hw.na.empty();
        rows.push_back({f.name, o.name, rate_cell(me, n) + verdict(med, best, {1e9}),
                        hw.cell() + (dbl ? " (ref. double-rounded)" : ""), st.cell(), np.cell({}, 1), to.cell({}, 1),
                        ml.cell({}, 1)});
        js["rows"].push_back({{"format", f.name}, {"op", o.name}, {"median_ops_per_s", med}, {"best_ops_per_s", best}});
        for (const auto& [key, v] : {std::pair{"vs_hardware", &hw}, {"vs_stream", &st}, {"vs_numpy", &np},
                                     {"vs_torch", &to}, {"vs_ml_dtypes", &ml}})
          js["rows"].back()[key] = {v->r.median, v->r.best};
      }
    s_.emit("### fpscope, one core (threads=1), typical operands\n\n"
            "x hardware: against the fastest hardware kernel of that format and op in each round (fp16: F16C ymm "
            "or AVX-512F zmm; bf16: AVX512-BF16). x stream: against reading the operands and writing the result. "
            "Peers: the library's call on its own dtype, 1 thread.\n\n{}\n",
            table({"format", "op", "fpscope Gops/s (goal >= 1)", "x hardware", "x stream", "x numpy", "x torch 1T",
                   "x ml_dtypes"},
                  rows));

    // Two cores.
    std::vector<std::vector<std::string>> trows;
    for (const auto& f : formats)
      for (const auto& o : ops) {
        const item& t1 = s.items.get(fmt::format("fpscope/{}/{}/typical/t1", f.name, o.name));
        const item& t2 = s.items.get(fmt::format("fpscope/{}/{}/typical/t2", f.name, o.name));
        const ratio sp = time_ratio(t2.t, t1.t);
        const double per_core = double(n) / median(t2.t) / 2;
        const item* p2 = s.items.find(fmt::format("peer/torch.{}.{}/t2", f.name, o.name));
        const item* p1 = s.items.find(fmt::format("peer/torch.{}.{}/t1", f.name, o.name));
        const std::string tsp = p2 && p1 ? (p2->na.empty() && p1->na.empty() ? ratio_cell(time_ratio(p2->t, p1->t)) : p2->na)
                                         : std::string("-");
        trows.push_back({f.name, o.name, rate_cell(t1, n), rate_cell(t2, n), ratio_cell(sp),
                         fmt::format("{:.2f}", per_core * 1e-9), tsp});
        js["rows_2t"].push_back({{"format", f.name}, {"op", o.name}, {"speedup", {sp.median, sp.best}},
                                 {"per_core_ops_per_s", per_core}});
      }
    s_.emit("### Second core: fpscope threads=2 vs threads=1 (library path; an explicit threads=2 runs parallel "
            "at any size, arith_parallel_threshold = {} governs threads=0)\n\n"
            "The stream reference (read 2 x 2 B, write 2 B) gains {} from a second thread here.\n\n{}\n",
            fpscope::arith_parallel_threshold,
            ratio_cell(time_ratio(s.items.get("stream/w16/k2/t2").t, s.items.get("stream/w16/k2/t1").t)),
            table({"format", "op", "1 thread Gops/s", "2 threads Gops/s", "speed-up", "2T Gops/s per core",
                   "torch speed-up 2T/1T"},
                  trows));

    // The scalar fallback.
    std::vector<std::vector<std::string>> frows;
    for (int fi = 0; fi < int(formats.size()); ++fi)
      for (const auto& o : ops) {
        const fmt_info& f = formats[std::size_t(fi)];
        const item& a = s.items.get(fmt::format("fpscope/{}/{}/typical/t1", f.name, o.name));
        const item& b = s.items.get(fmt::format("fpscope/{}/{}/specials/t1", f.name, o.name));
        const operands& d = s.data.at({fi, kind::specials});
        const std::size_t redone = d.special_elements[o.operands - 1];
        const ratio slow = time_ratio(a.t, b.t);
        const double extra_ns = (median(b.t) - median(a.t)) / double(redone) * 1e9;
        frows.push_back({f.name, o.name, rate_cell(a, n), rate_cell(b, n), ratio_cell(slow),
                         fmt::format("{:.2f} %", 100.0 * double(redone) / double(n)), fmt::format("{:.0f}", extra_ns)});
        js["rows_specials"].push_back({{"format", f.name}, {"op", o.name}, {"slowdown", {slow.median, slow.best}},
                                       {"elements_redone", redone}, {"extra_ns_per_redone_element", extra_ns}});
      }
    s_.emit("### NaN/inf operands: 1 % of each operand a NaN or an infinity (the scalar fallback), 1 thread\n\n"
            "Elements with a NaN/inf operand are computed by the vector pass, then redone by the scalar apply.\n\n{}\n",
            table({"format", "op", "typical Gops/s", "1% NaN/inf Gops/s", "time x typical", "elements redone",
                   "extra ns per redone element"},
                  frows));

    s_.emit("### Peers (same operands, interleaved with the rows above)\n\n{}\n",
            peers_table(s.items, n, "op", "Gops/s median (best)"));

    if (!checks.empty()) {
      std::vector<std::vector<std::string>> crows;
      std::size_t bulk_ok = 0, bulk_total = 0;
      for (const auto& c : checks) {
        if (c.contains("error")) {
          crows.push_back({c["who"], c["format"], c["op"], c["input"], "-", "-", "error: " + c["error"].get<std::string>()});
          continue;
        }
        const auto v = c["differ_values"].get<std::size_t>(), nb = c["differ_nan_bits"].get<std::size_t>();
        const std::string who = c["who"];
        if (who.starts_with("fpscope bulk")) {  // summarised below, listed only when they differ
          ++bulk_total;
          if (v == 0 && nb == 0) {
            ++bulk_ok;
            continue;
          }
        }
        const std::string res = v == 0 && nb == 0 ? "bit-identical"
                                : v == 0 ? fmt::format("identical but for the bits of {} of {} NaN results", nb,
                                                       c["nan_results"].get<std::size_t>())
                                         : fmt::format("{} DIFFER ({:.3f} %){}", v, 100.0 * double(v) / double(s.n),
                                                       nb ? fmt::format(", + NaN bits of {}", nb) : std::string());
        crows.push_back({who, c["format"], c["op"], c["input"] == "typical" ? "typical" : "1% NaN/inf",
                         c["against"], c["profile"], res});
      }
      s_.emit("### Same work? Result codes on the in-cache operands ({} elements), bit for bit\n\n"
              "fpscope's bulk apply against its scalar apply: {} of {} (format, op, input, threads) cases "
              "bit-identical{}. Every other result set is set against fpscope under the closest profile (fewest "
              "differences; NaN results differ only by the NaN rules of a profile). For an fma done in two steps, "
              "also against fpscope mul then add, and against a binary32 fma rounded once to the format: the row "
              "with 0 differences says what the peer computes.\n\n{}\n",
              s.n, bulk_ok, bulk_total, bulk_ok == bulk_total ? "" : " (the others are listed)",
              table({"who", "format", "op", "input", "against", "profile", "result"}, crows));
      s_.emit("Reading it: a value difference in an fma row against `fpscope fma` is a double rounding (the row "
              "with 0 differences says what was computed). NaN bits: a profile has one NaN rule; torch's bfloat16 "
              "gives +NaN 0x7FC0 whatever the operands, and in ml_dtypes the NaN's sign follows the float operation "
              "compiled into its ufunc (which NaN operand x86 returns depends on the operand order the compiler "
              "chose).\n\n");
      js["bulk_vs_scalar"] = {{"identical", bulk_ok}, {"cases", bulk_total}};
    }
    jsizes.push_back(js);
  }

  // OpenMP crossover: two threads (two halves, each a serial apply) against one: fp16 add (also
  // cold and through the library), fp16 fma, e4m3 add.
  void sweep() {
    constexpr int e_lo = 10, e_hi = 22;
    sweep_spec spec{.rounds = sweep_.rounds,
                    .input = "typical operands",
                    .halves = "fpscope::apply, in one `omp parallel num_threads(2)` (the library's threads=2 path with "
                              "threshold 0)",
                    .threshold_name = "arith_parallel_threshold",
                    .threshold = fpscope::arith_parallel_threshold,
                    .rate_columns = true,
                    .unit = "Gops/s",
                    .warm_s = warm_s,
                    .busy_cold = true};
    for (int e = e_lo; e <= e_hi; ++e) spec.sizes.push_back(std::size_t{1} << e);
    std::map<int, operands> data;
    buffer<unsigned char> o(spec.sizes.back() * 2);
    std::vector<sweep_series> series;
    struct one_series {
      const char* name;
      int fi;
      op o;
    };
    for (const one_series& z : {one_series{"fp16 add", 0, op::add}, {"fp16 fma", 0, op::fma}, {"e4m3 add", 2, op::add}}) {
      if (!data.count(z.fi)) data.emplace(z.fi, make_operands(formats[std::size_t(z.fi)], kind::typical, spec.sizes.back(), 3));
      const operands* d = &data.at(z.fi);
      series.push_back({z.name, [d, oo = z.o, &o](std::size_t n, int how) {
                          auto go = [&](auto* w) {
                            using W = std::remove_pointer_t<decltype(w)>;
                            const fpscope::policy p{};
                            if (how == 2) fp_apply_split2<W>(oo, *d, w, n, p);
                            else fp_apply<W>(oo, *d, w, n, p, how == 1 ? 1 : 2);
                            escape(w);
                          };
                          if (d->f->bytes == 2) go(o.as<std::uint16_t>());
                          else go(o.as<std::uint8_t>());
                        }});
    }
    thread_sweep(s_, series, spec);
  }

  static constexpr double warm_s = 20e-3, settle_s = 15e-3;
  session& s_;
  sweep_options sweep_;
};

}  // namespace

int main(int argc, char** argv) {
  options o;
  o.rounds_mem = 7;
  o.mem_n = std::size_t{1} << 24;
  o.script = peers_file("arith_peers.py");
  sweep_options sw;
  parse(argc, argv, o,
        "Bulk fp16/bf16/e4m3/e5m2 add, mul, fma (nearest-even) against the host's float arithmetic\n"
        "with hardware conversions, a streaming bandwidth reference and numpy/torch/ml_dtypes.\n",
        {quick_option(o, "fewer rounds and a 4 Mi from-memory size (a smoke run, ~30 s)", std::size_t{1} << 22,
                      [&] { sw.rounds = 3; }),
         count_option("--sweep-rounds", "rounds of the 2^10..2^22 thread crossover sweep", sw.rounds),
         sw.no_sweep()});
  return run("fpscope-bench-arith", o, [&](session& s) { arith_bench(s, sw).run(); });
}
