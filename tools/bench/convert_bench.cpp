// fpscope-bench-convert: bulk float32 -> fp16 / bf16 / e4m3 / e5m2 (nearest-even) throughput,
// in interleaved rounds (harness.hpp), in cache and from memory, on one and two cores:
//
//   fpscope   fpscope::encode, threads = 1 and threads = 2, 4 formats x 2 input kinds
//   hardware  x86 F16C _mm256_cvtps_ph (fp16), AVX512-BF16 _mm512_cvtneps_pbh (bf16)
//   reference memcpy of the input, and a streaming read 4 B / write 2 or 1 B kernel
//   peers     numpy, torch, ml_dtypes (peers.py), fed the same arrays and timed between our
//             samples; in cache their codes are checked against fpscope's, bit for bit
//
// Then a sweep of sizes 2^10..2^22 finds where two threads start to beat one (the OpenMP
// `parallel_threshold` of convert.hpp). See tools/bench/README.md.
#include <fpscope/convert.hpp>

#include <fmt/format.h>
#include <omp.h>

#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "harness.hpp"

#if FPSCOPE_BENCH_X86
#include <immintrin.h>
#endif

namespace {

using namespace fpscope::bench;

// ----------------------------------------------------------------------------------------
// Data

enum class kind { normal, wide };
constexpr std::array kinds{kind::normal, kind::wide};
const char* kind_name(kind k) { return k == kind::normal ? "normal" : "wide"; }

// normal: |x| log-uniform in [2^-6, 2^8), random signs: normal in float32 and in every target
//         (e4m3's smallest normal is 2^-6, its largest finite 448), no overflow, no NaN.
// wide:   |x| log-uniform in [2^-40, 2^40), random signs (underflow to zero, subnormal results
//         and overflow for every 8/16-bit target), plus 2 % specials: +-inf, quiet and
//         signalling NaNs with random payloads and signs, +-0, float32 denormals.
void generate(kind k, std::span<float> x, std::uint64_t seed) {
  splitmix g{seed};
  auto f32 = [](std::uint32_t u) { return std::bit_cast<float>(u); };
  auto u32 = [](float f) { return std::bit_cast<std::uint32_t>(f); };
  for (float& v : x) {
    const std::uint64_t r = g.next();
    const std::uint32_t sign = static_cast<std::uint32_t>(r >> 63) << 31;
    if (k == kind::normal) {
      v = f32(u32(std::exp2(float(-6.0 + 14.0 * g.uniform()))) | sign);
      continue;
    }
    const unsigned pick = static_cast<unsigned>(r % 1000);  // 20 per mille specials
    const std::uint32_t payload = static_cast<std::uint32_t>(g.next()) & 0x3FFFFF;
    if (pick < 4) v = f32(sign | 0x7F800000u);                          // +-inf
    else if (pick < 8) v = f32(sign | 0x7FC00000u | payload);           // quiet NaN
    else if (pick < 10) v = f32(sign | 0x7F800000u | (payload | 1u));   // signalling NaN
    else if (pick < 15) v = f32(sign);                                  // +-0
    else if (pick < 20) v = f32(sign | ((payload << 1) | 1u));          // denormal
    else v = f32(u32(std::exp2(float(-40.0 + 80.0 * g.uniform()))) | sign);
  }
}

// ----------------------------------------------------------------------------------------
// Kernels: hardware conversions and bandwidth references

#if FPSCOPE_BENCH_X86
// x86 F16C, nearest-even, 4 vectors of 8 per iteration.
[[gnu::target("avx,f16c"), gnu::noinline]] void f16c_encode(const float* __restrict in,
                                                            std::uint16_t* __restrict out,
                                                            std::size_t n) {
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256 a = _mm256_loadu_ps(in + i), b = _mm256_loadu_ps(in + i + 8),
                 c = _mm256_loadu_ps(in + i + 16), d = _mm256_loadu_ps(in + i + 24);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i + 8), _mm256_cvtps_ph(b, _MM_FROUND_TO_NEAREST_INT));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i + 16), _mm256_cvtps_ph(c, _MM_FROUND_TO_NEAREST_INT));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i + 24), _mm256_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT));
  }
  // The tail one by one (not _cvtss_sh: clang's is a compound literal, which -Wpedantic rejects).
  for (; i < n; ++i)
    out[i] = static_cast<std::uint16_t>(_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(in[i]), _MM_FROUND_TO_NEAREST_INT), 0));
}

// AVX512-BF16 VCVTNEPS2BF16 (nearest-even, denormal inputs read as zero), 16 per vector.
[[gnu::target("avx512f,avx512bf16"), gnu::noinline]] void avx512bf16_encode(
    const float* __restrict in, std::uint16_t* __restrict out, std::size_t n) {
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(in + i));
    std::memcpy(out + i, &h, 32);
  }
  if (i < n) {
    alignas(64) float tail_in[16] = {};
    alignas(32) std::uint16_t tail_out[16];
    std::memcpy(tail_in, in + i, (n - i) * 4);
    const __m256bh h = _mm512_cvtneps_pbh(_mm512_load_ps(tail_in));
    std::memcpy(tail_out, &h, 32);
    std::memcpy(out + i, tail_out, (n - i) * 2);
  }
}
#endif

// Streaming references: read the 4-byte inputs, write 2- or 1-byte words (the top bytes:
// truncation), the same traffic as a conversion with next to no arithmetic.
template <class Out>
[[gnu::noinline]] void stream_encode(const float* __restrict in, Out* __restrict out, std::size_t n) {
  constexpr int shift = 32 - 8 * int(sizeof(Out));
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t u;
    std::memcpy(&u, in + i, 4);
    out[i] = static_cast<Out>(u >> shift);
  }
}

[[gnu::noinline]] void copy_bytes(void* __restrict dst, const void* __restrict src, std::size_t bytes) {
  std::memcpy(dst, src, bytes);
}

// fpscope bulk encode into a 1- or 2-byte output buffer.
void fp_encode(const float* in, void* out, std::size_t n, const fmt_info& f, const fpscope::policy& p,
               int threads) {
  fpscope::bulk_options o;
  o.threads = threads;
  const fpscope::format fm = fpscope::builtin(f.id);
  if (f.bytes == 2)
    fpscope::encode(std::span<const float>(in, n), std::span<std::uint16_t>(static_cast<std::uint16_t*>(out), n), fm, p, o);
  else
    fpscope::encode(std::span<const float>(in, n), std::span<std::uint8_t>(static_cast<std::uint8_t*>(out), n), fm, p, o);
}

// Two threads on two halves, each a serial fpscope::encode: what encode_loop would do below
// its parallel_threshold if the threshold were 0 (and its 4096-element blocks no obstacle).
void fp_encode_split2(const float* in, void* out, std::size_t n, const fmt_info& f, const fpscope::policy& p) {
#pragma omp parallel num_threads(2)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const std::size_t lo = (n * std::size_t(t) / std::size_t(nt)) & ~std::size_t{63};
    const std::size_t hi = t + 1 == nt ? n : (n * std::size_t(t + 1) / std::size_t(nt)) & ~std::size_t{63};
    fp_encode(in + lo, static_cast<char*>(out) + lo * std::size_t(f.bytes), hi - lo, f, p, 1);
  }
}

// ----------------------------------------------------------------------------------------
// The cases, their measurement and their tables

// Every peer peers.py knows, listed as skipped when the peers cannot run.
std::vector<peer_desc> known_peers() {
  std::vector<peer_desc> k;
  for (const auto& [id, format, lib] : std::initializer_list<std::array<const char*, 3>>{
           {"numpy.fp16.astype", "fp16", "numpy"}, {"numpy.fp16.copyto", "fp16", "numpy"},
           {"torch.fp16.half", "fp16", "torch"}, {"torch.fp16.copy_", "fp16", "torch"},
           {"torch.bf16.bfloat16", "bf16", "torch"}, {"torch.bf16.copy_", "bf16", "torch"},
           {"ml_dtypes.bf16.astype", "bf16", "ml_dtypes"}, {"ml_dtypes.bf16.copyto", "bf16", "ml_dtypes"},
           {"ml_dtypes.e4m3.astype", "e4m3", "ml_dtypes"}, {"ml_dtypes.e4m3.copyto", "e4m3", "ml_dtypes"},
           {"ml_dtypes.e5m2.astype", "e5m2", "ml_dtypes"}, {"ml_dtypes.e5m2.copyto", "e5m2", "ml_dtypes"}})
    k.push_back({.id = id, .format = format, .lib = lib});
  return k;
}

class convert_bench {
 public:
  convert_bench(session& s, sweep_options sw) : s_(s), sweep_(sw) {}

  void run() {
    s_.begin({}, known_peers());
    json sizes = json::array();
    {
      convert_size cache{{s_.opt().cache_n, "in-cache", s_.opt().rounds_cache, false, {}}, {}};
      run_size(cache, sizes);
    }
    convert_size mem{{s_.opt().mem_n, "from-memory", s_.opt().rounds_mem, true, {}}, {}};
    run_size(mem, sizes);
    s_.out["sizes"] = sizes;
    if (sweep_.on) sweep(mem.x[0].data(), mem.n);
    s_.goals_report(goal_layout::worst_case);
  }

 private:
  struct convert_size : size_run {
    std::array<buffer<float>, 2> x;  // by kind
  };

  void run_size(convert_size& s, json& jsizes) {
    const std::size_t n = s.n;
    progress("{}: n = {} ({} MiB of float32 per input kind)\n", s.label, n, double(n) * 4 / (1 << 20));
    for (kind k : kinds) {
      s.x[int(k)] = buffer<float>(n);
      generate(k, std::span<float>(s.x[int(k)].data(), n), k == kind::normal ? 1 : 2);
    }
    // Outputs: one per (format, threads) would waste memory at the big size; the items of one
    // size run one after the other, so one 2-byte and one 1-byte buffer serve them all, plus the
    // memcpy destination.
    buffer<std::uint16_t> o16(n);
    buffer<std::uint8_t> o8(n);
    buffer<float> ocopy(n);
    const fpscope::policy rne{};

    for (kind k : kinds) {
      const float* xin = s.x[int(k)].data();
      for (const auto& f : formats)
        for (int th : {1, 2}) {
          void* o = f.bytes == 2 ? static_cast<void*>(o16.data()) : static_cast<void*>(o8.data());
          s.items.add({.id = fmt::format("fpscope/{}/{}/t{}", f.name, kind_name(k), th),
                       .group = "fpscope",
                       .impl = fmt::format("fpscope::encode, threads={}", th),
                       .format = f.name,
                       .input = kind_name(k),
                       .threads = th,
                       .run = [=, &f] { fp_encode(xin, o, n, f, rne, th); escape(o); }});
        }
      item f16c{.id = fmt::format("hw/fp16/{}", kind_name(k)), .group = "hardware", .impl = "F16C _mm256_cvtps_ph",
                .format = "fp16", .input = kind_name(k), .bytes = 6};
      item bf16{.id = fmt::format("hw/bf16/{}", kind_name(k)), .group = "hardware",
                .impl = "AVX512-BF16 _mm512_cvtneps_pbh", .format = "bf16", .input = kind_name(k), .bytes = 6};
#if FPSCOPE_BENCH_X86
      std::uint16_t* w = o16.data();
      if (cpu_has("f16c")) f16c.run = [=] { f16c_encode(xin, w, n); escape(w); };
      else f16c.na = "n/a (CPU lacks f16c)";
      if (cpu_has("avx512bf16")) bf16.run = [=] { avx512bf16_encode(xin, w, n); escape(w); };
      else bf16.na = "n/a (CPU lacks avx512_bf16)";
#else
      f16c.na = bf16.na = "n/a (not x86)";
#endif
      s.items.add(std::move(f16c));
      s.items.add(std::move(bf16));
    }
    {
      const float* xin = s.x[0].data();
      std::uint16_t* w16 = o16.data();
      std::uint8_t* w8 = o8.data();
      float* wc = ocopy.data();
      s.items.add({.id = "ref/stream16", .group = "reference", .impl = "stream: read 4 B, write 2 B (truncate)",
                   .bytes = 6, .run = [=] { stream_encode(xin, w16, n); escape(w16); }});
      s.items.add({.id = "ref/stream8", .group = "reference", .impl = "stream: read 4 B, write 1 B (truncate)",
                   .bytes = 5, .run = [=] { stream_encode(xin, w8, n); escape(w8); }});
      s.items.add({.id = "ref/memcpy", .group = "reference", .impl = "memcpy of the float32 input (4 B read + 4 B write)",
                   .bytes = 8, .run = [=] { copy_bytes(wc, xin, n * 4); escape(wc); }});
    }

    // Peers: the same arrays, checked by checksum on the Python side.
    std::array<std::string, 2> data_names;
    std::array<bool, 2> loaded{};
    for (kind k : kinds) {
      data_names[int(k)] = fmt::format("{}-{}", s.label, kind_name(k));
      loaded[int(k)] = s_.peers.load(data_names[int(k)], {{fpscope::npy_dtype::f4, s.x[int(k)].data(), n}});
    }
    for (kind k : kinds)
      for (item& it : s_.peers.items([&](const peer_desc&) { return data_names[int(k)]; }, kind_name(k)))
        s.items.add(std::move(it));

    json checks = json::array();
    if (!s.mem) checks = cross_check(s, loaded[int(kind::wide)], data_names[int(kind::wide)]);

    s_.measure(s);
    for (const auto& d : data_names) s_.peers.forget(d);

    report_size(s, checks, jsizes);
  }

  // Are we comparing the same work? Each peer's codes (in-cache size) against fpscope's under
  // the closest fpscope profile, and the hardware's too; differences split by NaN inputs.
  json cross_check(convert_size& s, bool loaded, const std::string& data) {
    json checks = json::array();
    const std::size_t n = s.n;
    const kind k = kind::wide;  // the interesting one: specials, overflow, subnormals
    const float* xin = s.x[int(k)].data();
    auto compare = [&](const std::string& who, const fmt_info& f, const std::vector<std::uint32_t>& theirs) {
      std::size_t nan_in = 0;
      const auto [pr, d] = closest_profile([&](fpscope::profile p) {
        std::vector<std::uint16_t> ours(n);
        fp_encode(xin, ours.data(), n, f, fpscope::profile_policy(p, fpscope::builtin(f.id)), 1);
        diff_count c;
        const auto* o8 = reinterpret_cast<const std::uint8_t*>(ours.data());
        for (std::size_t i = 0; i < n; ++i) {
          const bool is_nan = std::isnan(xin[i]);
          c.nans += is_nan;
          if ((f.bytes == 2 ? ours[i] : o8[i]) != theirs[i]) ++(is_nan ? c.nan_diff : c.value_diff);
        }
        nan_in = c.nans;
        return c;
      });
      checks.push_back({{"who", who}, {"format", f.name}, {"profile", pr.name}, {"n", n}, {"nan_inputs", nan_in},
                        {"differ_nan_inputs", d.nan_diff}, {"differ_other_inputs", d.value_diff}});
    };
#if FPSCOPE_BENCH_X86
    if (cpu_has("f16c")) {
      std::vector<std::uint16_t> hw(n);
      f16c_encode(xin, hw.data(), n);
      compare("F16C _mm256_cvtps_ph", formats[0], std::vector<std::uint32_t>(hw.begin(), hw.end()));
    }
#endif
    if (!loaded) return checks;
    for (const peer_desc& p : s_.peers.all()) {
      if (!p.why.empty()) continue;
      const std::size_t fi = format_index(p.format);
      if (fi == formats.size()) continue;
      std::string why;
      if (auto theirs = s_.peers.output(p.id, data, why)) compare(p.id, formats[fi], *theirs);
      else checks.push_back({{"who", p.id}, {"format", p.format}, {"error", why}});
    }
    return checks;
  }

  void report_size(convert_size& s, const json& checks, json& jsizes) {
    const std::size_t n = s.n;
    const std::size_t rounds = std::size_t(s.rounds);
    json js = {{"label", s.label}, {"n", n}, {"rounds", s.rounds}, {"items", json::array()},
               {"rows", json::array()}, {"crosscheck", checks}};
    for (const item& it : s.items) js["items"].push_back(item_json(it, n, "values"));

    s_.emit("\n## {}: n = {} values ({} KiB float32 in), {} interleaved rounds\n\n", s.label, n, n * 4 / 1024,
            s.rounds);
    s_.emit("Values/s in 1e9 (Gval/s): median over rounds (best round). Ratios: paired per round, "
            "median (best/best).\n\n");

    // References.
    std::vector<std::vector<std::string>> rrows;
    for (const item& it : s.items)
      if (it.group == "hardware" || it.group == "reference")
        rrows.push_back({it.impl, it.input.empty() ? "-" : it.input, rate_cell(it, n),
                         it.na.empty() ? fmt::format("{:.1f} GB/s", it.bytes * double(n) / median(it.t) * 1e-9) : ""});
    s_.emit("### Hardware limit and bandwidth references (1 core)\n\n{}\n",
            table({"kernel", "input", "Gval/s median (best)", "traffic, median"}, rrows));

    // Single core, fpscope against everything.
    std::vector<std::vector<std::string>> rows;
    for (const auto& f : formats)
      for (kind k : kinds) {
        const std::string kn = kind_name(k);
        const item& me = s.items.get(fmt::format("fpscope/{}/{}/t1", f.name, kn));
        auto vs = [&](const std::function<bool(const item&)>& pick) { return versus_fastest(me, s.items, rounds, pick); };
        auto id_is = [](const std::string& id) { return [id](const item& it) { return it.id == id; }; };
        auto this_case = [&](const item& it) { return it.format == f.name && it.input == kn; };
        const versus f16c = vs(id_is("hw/fp16/" + kn)), bfhw = vs(id_is("hw/bf16/" + kn)),
                     st = vs(id_is(f.bytes == 2 ? "ref/stream16" : "ref/stream8")),
                     np = vs(peers_of("numpy", this_case)), to = vs(peers_of("torch", this_case)),
                     ml = vs(peers_of("ml_dtypes", this_case));
        const double med_rate = double(n) / median(me.t), best_rate = double(n) / minimum(me.t);
        const std::string where = fmt::format("{} {} {}", s.label, f.name, kn);

        s_.goal("per-core >= 3e9 values/s", where, med_rate, best_rate, {3e9}, "values/s");
        s_.goal("per-core >= 0.6 x F16C", where, f16c.r.median, f16c.r.best, {0.6}, "x");
        // ml_dtypes has no float16: there the goal is judged against numpy, which ml_dtypes users get.
        const bool fp16 = f.id == fpscope::format_id::fp16;
        const ratio& r_peer = fp16 ? np.r : ml.r;
        s_.goal("per-core >= 3 x ml_dtypes", where, r_peer.median, r_peer.best, {3.0}, "x",
                fp16 ? "ml_dtypes has no float16: numpy astype/copyto instead" : "");
        rows.push_back({f.name, kn, rate_cell(me, n) + verdict(med_rate, best_rate, {3e9}), ratio_cell(f16c.r, {0.6}),
                        f.id == fpscope::format_id::bf16 ? bfhw.cell() : "-", st.cell(), np.cell({fp16 ? 3.0 : NAN}),
                        to.cell(), fp16 ? "- (no float16; goal vs numpy)" : ml.cell({3.0})});
        js["rows"].push_back({{"format", f.name}, {"input", kn}, {"median_values_per_s", med_rate},
                              {"best_values_per_s", best_rate}});
        for (const auto& [key, v] : {std::pair{"vs_f16c", &f16c}, {"vs_avx512bf16", &bfhw}, {"vs_stream", &st},
                                     {"vs_numpy", &np}, {"vs_torch", &to}, {"vs_ml_dtypes", &ml}})
          js["rows"].back()[key] = {v->r.median, v->r.best};
      }
    s_.emit("### fpscope, one core (threads=1): rate and speed ratios (x = fpscope / other)\n\n{}\n",
            table({"format", "input", "fpscope Gval/s (goal >= 3)", "x F16C (goal >= 0.6)", "x AVX512-BF16",
                   "x stream r/w", "x numpy (best API)", "x torch 1T (best API)", "x ml_dtypes (best API, goal >= 3)"},
                  rows));

    s_.emit("### Peers (same arrays, interleaved with the rows above)\n\n{}\n",
            peers_table(s.items, n, "input", "Gval/s median (best)"));

    // Two cores.
    std::vector<std::vector<std::string>> trows;
    for (const auto& f : formats)
      for (kind k : kinds) {
        const std::string kn = kind_name(k);
        const item& t1 = s.items.get(fmt::format("fpscope/{}/{}/t1", f.name, kn));
        const item& t2 = s.items.get(fmt::format("fpscope/{}/{}/t2", f.name, kn));
        const ratio sp = time_ratio(t2.t, t1.t);
        s_.goal("2 threads >= 1.7 x 1 thread", fmt::format("{} {} {}", s.label, f.name, kn), sp.median, sp.best, {1.7}, "x");
        std::string torch_sp = "-";  // the first 2-thread peer, or copy_ where there is one
        for (const item& it : s.items)
          if (it.group == "peer" && it.threads == 2 && it.format == f.name && it.input == kn) {
            const item* p1 = s.items.find(fmt::format("peer/{}/{}/t1", it.peer, kn));
            torch_sp = it.na.empty() && p1 && p1->na.empty()
                           ? fmt::format("{} {}", it.peer, ratio_cell(time_ratio(it.t, p1->t)))
                           : it.na;
            if (it.peer.find("copy_") != std::string::npos) break;
          }
        trows.push_back({f.name, kn, rate_cell(t1, n), rate_cell(t2, n), ratio_cell(sp, {1.7}), torch_sp});
      }
    s_.emit("### Second core: fpscope threads=2 vs threads=1 (library path, parallel_threshold = {})\n\n{}\n",
            fpscope::parallel_threshold,
            table({"format", "input", "1 thread Gval/s", "2 threads Gval/s", "speed-up (goal >= 1.7)",
                   "torch speed-up 2T/1T"},
                  trows));

    if (!checks.empty()) {
      std::vector<std::vector<std::string>> crows;
      for (const auto& c : checks) {
        if (c.contains("error")) {
          crows.push_back({c["who"], c["format"], "-", "error: " + c["error"].get<std::string>()});
          continue;
        }
        const auto other = c["differ_other_inputs"].get<std::size_t>();
        const auto nan = c["differ_nan_inputs"].get<std::size_t>();
        std::string result = other == 0 && nan == 0 ? "bit-identical"
                             : other == 0 ? fmt::format("identical except {} of {} NaN inputs (NaN style)", nan,
                                                        c["nan_inputs"].get<std::size_t>())
                                          : fmt::format("DIFFERS on {} non-NaN inputs (+{} NaN)", other, nan);
        crows.push_back({c["who"], c["format"], c["profile"], result});
      }
      s_.emit("### Same work? Codes on the wide input ({} values) against fpscope's closest profile\n\n{}\n", s.n,
              table({"implementation", "format", "fpscope profile", "result"}, crows));
    }
    jsizes.push_back(js);
  }

  // OpenMP crossover: two threads (two halves, each a serial encode) against one.
  void sweep(const float* x, std::size_t max_n) {
    sweep_spec spec{.rounds = sweep_.rounds,
                    .input = "normal input",
                    .halves = "fpscope::encode, in one `omp parallel num_threads(2)` (encode_loop with threshold 0)",
                    .threshold_name = "parallel_threshold",
                    .threshold = fpscope::parallel_threshold};
    for (int e = 10; e <= 22; ++e)
      if ((std::size_t{1} << e) <= max_n) spec.sizes.push_back(std::size_t{1} << e);
    if (spec.sizes.empty()) return;
    buffer<std::uint16_t> o(spec.sizes.back());
    std::vector<sweep_series> series;
    for (const fmt_info& f : formats)
      series.push_back({f.name, [&o, x, &f](std::size_t n, int how) {
                          const fpscope::policy rne{};
                          if (how == 2) fp_encode_split2(x, o.data(), n, f, rne);
                          else fp_encode(x, o.data(), n, f, rne, how == 1 ? 1 : 2);
                          escape(o.data());
                        }});
    thread_sweep(s_, series, spec);
  }

  session& s_;
  sweep_options sweep_;
};

}  // namespace

int main(int argc, char** argv) {
  options o;
  o.script = peers_file("peers.py");
  sweep_options sw;
  parse(argc, argv, o,
        "Bulk float32 -> fp16/bf16/e4m3/e5m2 (nearest-even) against the hardware conversions, a streaming\n"
        "bandwidth reference and numpy/torch/ml_dtypes.\n",
        {count_option("--rounds", "interleaved rounds for the in-cache size and the sweep",
                      [&](int r) { o.rounds_cache = sw.rounds = r; }, o.rounds_cache),
         quick_option(o, "fewer rounds and a 16 Mi from-memory size (a smoke run, ~30 s)", std::size_t{1} << 24,
                      [&] { sw.rounds = 5; }),
         sw.no_sweep()});
  return run("fpscope-bench-convert", o, [&](session& s) { convert_bench(s, sw).run(); });
}
