// The table of modelled instructions: which (architecture, instruction) pairs exist and the
// parameters of each one's model, transcribed from MMA-Sim 2.1.1 (microsoft/MMA-Sim):
//   instruction lists: mmasim/nv_ptx/isa_mma.py:10-88 (mma.sync per sm_XX, per architecture),
//                      isa_wgmma.py:4-18 (Hopper wgmma), isa_tcgen05mma.py:14-29 (Blackwell);
//   parameters:        mmasim/nv_ptx/sim.py:6-41 (F, L_max bytes, e_zero per architecture),
//                      sim.py:45-75 (mma.sync, incl. the Turing-runs-Volta-shapes and Ada-FP8
//                      special cases), sim.py:128-143 (wgmma), sim.py:158-166 (tcgen05.mma).
//   AMD CDNA3:         mmasim/amd/isa_mfma.py:46-80, amd/sim.py:18-35 (fp16, bf16, xf32: MMA_TR_FDPA,
//                      arithmetic/fdpa.py:335-383; fp8/bf8: MMA_GTR_FDPA, fdpa.py:386-441; f32: MMA_FMA).
//   AMD CDNA1/CDNA2:   mmasim/amd/isa_mfma.py:16-46 (CDNA2 has CDNA1's list too, isa_mfma.py:83-87),
//                      amd/sim.py:10-27 (f32: MMA_FMA; CDNA1 f16/bf16: MMA_E_FDPA; CDNA2: MMA_FTZ_MUL_ADD),
//                      the steps in mma_amd.cpp.
//   block-scaled:      isa_mma.py:155-160 and isa_tcgen05mma.py:36-43 (kind::mxf8f6f4), sim.py:89-104
//                      and 180-195 (MMA_ST_FDPA, fdpa.py:157-245).
//                      MXFP4/NVFP4 (kind::mxf4, mxf4nvf4, k = 64): MMA_GST_FDPA, fdpa.py:248-332.
// Not modelled (refused by name): the f64 instructions (an FMA chain, MMA-Sim arithmetic/fma.py),
// CDNA2's f64_16x16x4f64 and f64_4x4x4f64 included: D here is float32.
#include <algorithm>
#include <array>
#include <string>
#include <tuple>

#include "fpscope/accumulate.hpp"
#include "fpscope/mma.hpp"
#include "fpscope/options.hpp"

namespace fpscope::mma {
namespace {

struct arch_params {
  const char* name;
  int F;             // sim.py:6-14 _mma_F_bits
  int L_bytes;       // sim.py:15-23 _mma_L_max_bytes
  int e_zero_fp16;   // sim.py:24-32
  int e_zero_fp32;   // sim.py:33-41
  unsigned sm_mask;  // which sm_XX lists of isa_mma.py:119-144 the architecture has
};

enum : unsigned { sm70 = 1, sm75 = 2, sm80 = 4, sm89 = 8, sm120 = 16 };

constexpr std::array<arch_params, 10> archs{{
    {"volta", 23, 8, -19, -131, sm70},
    {"turing", 24, 16, -20, -132, sm75 | sm70},
    {"ampere", 24, 16, -20, -132, sm80 | sm75},
    {"ada", 24, 16, -20, -132, sm89 | sm80 | sm75},
    {"hopper", 25, 32, -21, -133, sm80 | sm75},  // sm_90 adds only f64
    {"blackwell", 25, 32, -21, -133, sm80 | sm75},
    {"rtx-blackwell", 25, 32, -21, -133, sm120 | sm89 | sm80 | sm75},
    {"cdna1", 0, 0, 0, 0, 0},   // AMD (mmasim/amd, isa_mfma.py:83-87's order): parameters in resolve()
    {"cdna2", 0, 0, 0, 0, 0},
    {"cdna3", 24, 0, 0, 0, 0},
}};

// PTX type names to formats. The operand byte width is what MMA-Sim divides L_max's bytes by
// (torch itemsize: tf32 is held in float32, FP6/FP4 one per uint8).
struct ptx_type {
  const char* name;
  format fmt;
  int bytes;
};
const std::array<ptx_type, 11> types{{
    {"f32", fp32_format, 4},
    {"tf32", builtin(format_id::tf32), 4},
    {"f16", builtin(format_id::fp16), 2},
    {"bf16", builtin(format_id::bf16), 2},
    {"e4m3", builtin(format_id::e4m3), 1},
    {"e5m2", builtin(format_id::e5m2), 1},
    {"e3m2", builtin(format_id::e3m2), 1},
    {"e2m3", builtin(format_id::e2m3), 1},
    {"e2m1", builtin(format_id::e2m1), 1},
    {"fp8", builtin(format_id::e4m3fnuz), 1},  // AMD CDNA3 (mmasim/amd/isa_mfma.py:11-12)
    {"bf8", builtin(format_id::e5m2fnuz), 1},
}};
const ptx_type& type(std::string_view n) {
  for (const auto& t : types)
    if (n == t.name) return t;
  return types[0];
}

// One row: an instruction (or a family over N, and over M for tcgen05) of one architecture.
struct row {
  std::string arch;
  family fam;
  std::string pattern;  // with "{n}" (and "{m}") where the shape varies
  std::string a, b, c, d;
  int k;
  std::vector<int> ms;  // the M values ({m} patterns) or the one M
  bool n_varies;
  int n;          // when !n_varies
  int block = 0;  // block-scaled: elements of K per scale
  std::string scale = "ue8m0";
  int group = 0;  // MXFP4/NVFP4: products summed exactly in groups of this many
};

std::string fill(std::string p, int m, int n) {
  auto put = [&](std::string_view key, int v) {
    for (std::size_t at; (at = p.find(key)) != std::string::npos;) p.replace(at, key.size(), std::to_string(v));
  };
  put("{m}", m);
  put("{n}", n);
  return p;
}

const std::vector<row>& rows() {
  static const std::vector<row> table = [] {
    std::vector<row> t;
    const char* fp8[] = {"e5m2", "e4m3"};
    const char* f8f6f4[] = {"e5m2", "e4m3", "e3m2", "e2m3", "e2m1"};  // isa_common.py:18
    for (const auto& ap : archs) {
      const std::string arch = ap.name;
      auto mma = [&](int m, int n, int k, std::string d, std::string a, std::string b, std::string c,
                     std::string kind = {}) {
        const std::string shape = "m" + std::to_string(m) + "n" + std::to_string(n) + "k" + std::to_string(k);
        t.push_back({arch, family::mma_sync, shape + (kind.empty() ? "" : ".kind::" + kind) + "." + d + "." + a + "." +
                                                 b + "." + c,
                     a, b, c, d, k, {m}, false, n});
      };
      // isa_mma.py:10-72, in MMA-Sim's order per architecture (isa_mma.py:119-144)
      if (ap.sm_mask & sm120)
        for (const char* d : {"f32", "f16"})
          for (const char* a : f8f6f4)
            for (const char* b : f8f6f4) mma(16, 8, 32, d, a, b, d, "f8f6f4");
      if (ap.sm_mask & sm120)  // isa_mma.py:155-160: MXFP8/6/4, one UE8M0 scale per 32 of K
        for (const char* a : f8f6f4)
          for (const char* b : f8f6f4) {
            t.push_back({arch, family::mma_sync,
                         std::string("m16n8k32.kind::mxf8f6f4.block32.f32.") + a + "." + b + ".f32.ue8m0", a, b, "f32",
                         "f32", 32, {16}, false, 8});
            t.back().block = 32;
          }
      if (ap.sm_mask & sm120)  // isa_mma.py:161-169: MXFP4 and NVFP4, k = 64
        for (const auto& [kind, blk, sc] : {std::tuple{"mxf4", 32, "ue8m0"}, std::tuple{"mxf4nvf4", 32, "ue8m0"},
                                          std::tuple{"mxf4nvf4", 16, "ue8m0"}, std::tuple{"mxf4nvf4", 16, "ue4m3"}}) {
          t.push_back({arch, family::mma_sync,
                       std::string("m16n8k64.kind::") + kind + ".block" + std::to_string(blk) + ".f32.e2m1.e2m1.f32." + sc,
                       "e2m1", "e2m1", "f32", "f32", 64, {16}, false, 8});
          t.back().block = blk;
          t.back().scale = sc;
          t.back().group = 16;
        }
      if (ap.sm_mask & sm89)
        for (int k : {32, 16})
          for (const char* d : {"f32", "f16"})
            for (const char* a : fp8)
              for (const char* b : fp8) mma(16, 8, k, d, a, b, d);
      if (ap.sm_mask & sm80) {
        mma(16, 8, 8, "f32", "tf32", "tf32", "f32");
        mma(16, 8, 4, "f32", "tf32", "tf32", "f32");
        mma(16, 8, 16, "f32", "f16", "f16", "f32");
        mma(16, 8, 16, "f16", "f16", "f16", "f16");
        mma(16, 8, 16, "f32", "bf16", "bf16", "f32");
        mma(16, 8, 8, "f32", "bf16", "bf16", "f32");
      }
      if (ap.sm_mask & sm75) {
        mma(16, 8, 8, "f32", "f16", "f16", "f32");
        mma(16, 8, 8, "f16", "f16", "f16", "f16");
      }
      if (ap.sm_mask & sm70) {
        mma(8, 8, 4, "f32", "f16", "f16", "f32");
        mma(8, 8, 4, "f32", "f16", "f16", "f16");
        mma(8, 8, 4, "f16", "f16", "f16", "f16");
      }
      // CDNA1 and CDNA2 (isa_mfma.py:16-46): v_mfma_f32_<M>x<N>x<K><type>[_1k], in MMA-Sim's order;
      // CDNA2 lists its own (bf16_1k; f64, not modelled) before CDNA1's (isa_mfma.py:85).
      auto cdna12 = [&](const std::string& name) {
        const std::string shape = name.substr(4);  // after "f32_"
        const std::size_t x1 = shape.find('x'), x2 = shape.find('x', x1 + 1);
        const int mm = std::stoi(shape.substr(0, x1)), nn = std::stoi(shape.substr(x1 + 1, x2 - x1 - 1));
        const int kk = std::stoi(shape.substr(x2 + 1));  // stoi stops at the type
        const std::string ab = name.find("bf16") != std::string::npos ? "bf16"
                               : name.find("f16") != std::string::npos ? "f16" : "f32";
        t.push_back({arch, family::mfma, name, ab, ab, "f32", "f32", kk, {mm}, false, nn});
      };
      if (arch == "cdna2")
        for (const char* sh : {"32x32x8", "32x32x4", "16x16x16", "16x16x4", "4x4x4"})
          cdna12(std::string("f32_") + sh + "bf16_1k");
      if (arch == "cdna1" || arch == "cdna2") {
        for (const char* sh : {"32x32x2", "32x32x1", "16x16x4", "16x16x1", "4x4x1"}) cdna12(std::string("f32_") + sh + "f32");
        for (const char* sh : {"32x32x8", "32x32x4", "16x16x16", "16x16x4", "4x4x4"}) cdna12(std::string("f32_") + sh + "f16");
        for (const char* sh : {"32x32x4", "32x32x2", "16x16x8", "16x16x2", "4x4x2"}) cdna12(std::string("f32_") + sh + "bf16");
      }
      if (arch == "cdna3") {  // mmasim/amd/isa_mfma.py:46-80: v_mfma_<d>_<MxNxK>[_<B>b]_<type>
        // f32 (isa_mfma.py:51-56): an FMA chain as on CDNA1/CDNA2 (amd/sim.py:10-13)
        for (const auto& [shape, mm, k] : {std::tuple{"32x32x1_2b", 32, 1}, std::tuple{"16x16x1_4b", 16, 1},
                                           std::tuple{"4x4x1_16b", 4, 1}, std::tuple{"32x32x2", 32, 2},
                                           std::tuple{"16x16x4", 16, 4}})
          t.push_back({arch, family::mfma, std::string("f32_") + shape + "_f32", "f32", "f32", "f32", "f32", k, {mm},
                       false, mm});
        for (const char* shape : {"32x32x4_2b", "16x16x4_4b", "4x4x4_16b", "32x32x8", "16x16x16"})
          for (const char* ab : {"f16", "bf16"}) {
            const std::string sh = shape;
            const int k = std::stoi(sh.substr(sh.rfind('x') + 1));
            const int mm = std::stoi(sh.substr(0, sh.find('x')));
            t.push_back({arch, family::mfma, "f32_" + sh + "_" + ab, ab, ab, "f32", "f32", k, {mm}, false, mm});
          }
        for (const auto& [shape, mm] : {std::tuple{"16x16x32", 16}, std::tuple{"32x32x16", 32}})
          for (const char* a : {"bf8", "fp8"})
            for (const char* b : {"bf8", "fp8"}) {
              const std::string sh = shape;
              t.push_back({arch, family::mfma, "f32_" + sh + "_" + a + "_" + b, a, b, "f32", "f32",
                           std::stoi(sh.substr(sh.rfind('x') + 1)), {mm}, false, mm});
            }
        for (const auto& [shape, mm, k] : {std::tuple{"16x16x8", 16, 8}, std::tuple{"32x32x4", 32, 4}})
          t.push_back({arch, family::mfma, std::string("f32_") + shape + "_xf32", "tf32", "tf32", "f32", "f32", k, {mm},
                       false, mm});
      }
      if (arch == "hopper") {  // isa_wgmma.py:4-18: m64nNkK.d.a.b, C of D's type
        auto wg = [&](int k, std::string d, std::string a, std::string b) {
          t.push_back({arch, family::wgmma, "m64n{n}k" + std::to_string(k) + "." + d + "." + a + "." + b, a, b, d, d,
                       k, {64}, true, 0});
        };
        wg(8, "f32", "tf32", "tf32");
        wg(16, "f32", "f16", "f16");
        wg(16, "f16", "f16", "f16");
        wg(16, "f32", "bf16", "bf16");
        for (const char* d : {"f32", "f16"})
          for (const char* a : fp8)
            for (const char* b : fp8) wg(32, d, a, b);
      }
      if (arch == "blackwell") {  // isa_tcgen05mma.py:14-29: mMnNkK.kind::KIND.d.a.b
        auto tc = [&](int k, std::string kind, std::string d, std::string a, std::string b) {
          t.push_back({arch, family::tcgen05,
                       "m{m}n{n}k" + std::to_string(k) + ".kind::" + kind + "." + d + "." + a + "." + b, a, b, d, d, k,
                       {64, 128}, true, 0});
        };
        tc(8, "tf32", "f32", "tf32", "tf32");
        for (const char* ab : {"f16", "bf16"}) tc(16, "f16", "f32", ab, ab);
        tc(16, "f16", "f16", "f16", "f16");
        for (const char* d : {"f32", "f16"})
          for (const char* a : f8f6f4)
            for (const char* b : f8f6f4) tc(32, "f8f6f4", d, a, b);
        // isa_tcgen05mma.py:44-56: MXFP4 and NVFP4, k = 64, M = 128 only
        for (const auto& [kind, blk, sc] : {std::tuple{"mxf4", 32, "ue8m0"}, std::tuple{"mxf4nvf4", 32, "ue8m0"},
                                          std::tuple{"mxf4nvf4", 16, "ue8m0"}, std::tuple{"mxf4nvf4", 16, "ue4m3"}}) {
          t.push_back({arch, family::tcgen05,
                       std::string("m128n{n}k64.kind::") + kind + ".block" + std::to_string(blk) + ".f32.e2m1.e2m1." + sc,
                       "e2m1", "e2m1", "f32", "f32", 64, {128}, true, 0});
          t.back().block = blk;
          t.back().scale = sc;
          t.back().group = 16;
        }
        // isa_tcgen05mma.py:36-43: MXFP8/6/4, M = 128 only
        for (const char* a : f8f6f4)
          for (const char* b : f8f6f4) {
            t.push_back({arch, family::tcgen05,
                         std::string("m128n{n}k32.kind::mxf8f6f4.block32.f32.") + a + "." + b + ".ue8m0", a, b, "f32",
                         "f32", 32, {128}, true, 0});
            t.back().block = 32;
          }
      }
    }
    return t;
  }();
  return table;
}

std::string join(const std::vector<std::string>& v);

// The architecture named `a`, or option_error naming the known ones.
const arch_params& find_arch(std::string_view a) {
  for (const auto& ap : archs)
    if (a == ap.name) return ap;
  throw option_error("--arch: unknown architecture " + quoted(a) + " (known: " + join(architectures()) + ")");
}

// The model's parameters for a row (sim.py).
instruction resolve(const row& r, const arch_params& ap, int m, int n) {
  instruction in;
  in.arch = r.arch;
  in.name = fill(r.pattern, m, n);
  in.fam = r.fam;
  in.m = m;
  in.n = n;
  in.k = r.k;
  const ptx_type &ta = type(r.a), &tb = type(r.b);
  in.a = ta.fmt;
  in.b = tb.fmt;
  in.c = type(r.c).fmt;
  in.d = type(r.d).fmt;
  const bool f16_out = r.d == "f16";
  const bool fp8 = r.a == "e4m3" || r.a == "e5m2";
  in.rho = f16_out ? result_rounding::rne_fp16 : result_rounding::rz_fp32;
  if (r.fam == family::mfma && (r.arch != "cdna3" || r.a == "f32")) {  // CDNA1, CDNA2, CDNA3 f32: amd/sim.py:10-27
    in.rho = result_rounding::rne_fp32;
    if (r.a == "f32") {  // sim.py:10-13: MMA_FMA, one product a step
      in.arith = arithmetic::fma;
      in.L = 1;
    } else if (r.arch == "cdna1") {  // sim.py:19-21: MMA_E_FDPA(L_max = 4 for f16, 2 for bf16)
      in.arith = arithmetic::e_fdpa;
      in.L = r.a == "f16" ? 4 : 2;
    } else {  // sim.py:22-27: MMA_FTZ_MUL_ADD(P = 2 for bf16 without _1k, else 4)
      in.arith = arithmetic::ftz_mul_add;
      in.L = r.a == "bf16" && !r.pattern.ends_with("_1k") ? 2 : 4;
    }
  } else if (r.fam == family::mfma) {  // mmasim/amd/sim.py:31-35: MMA_TR_FDPA(F=24, F2=31, RNE-FP32), L_max 4 (xf32) or 8
    in.F = 24;
    in.F2 = 31;
    in.rho = result_rounding::rne_fp32;
    in.L = r.a == "tf32" ? 4 : 8;
    in.e_zero = 0;
    if (r.a == "fp8" || r.a == "bf8") {  // amd/sim.py:22-25: MMA_GTR_FDPA(F=24, F2=31, RNE-FP32, L_max=16)
      in.L = 16;
      in.split_even_odd = true;
    }
  } else if (r.fam == family::mma_sync) {  // sim.py:50-72
    in.F = ap.F;
    in.L = ap.L_bytes / ta.bytes;
    in.e_zero = f16_out ? ap.e_zero_fp16 : ap.e_zero_fp32;
    if (r.arch == "turing" && m == 8 && r.k == 4) {  // sim.py:60-66: Volta's shapes run as on Volta
      in.F = 23;
      in.L = 4;
      in.e_zero = f16_out ? -19 : -131;
    }
    if (r.arch == "ada" && fp8) {  // sim.py:67-72: FP8 sums keep 13 fraction bits
      in.F = 13;
      if (!f16_out) in.rho = result_rounding::rz_e8m13;
    }
  } else {
    // wgmma sim.py:130-143, tcgen05 sim.py:160-165: L_max = 32 bytes of operands.
    in.F = r.fam == family::wgmma && fp8 ? 13 : 25;
    if (r.fam == family::wgmma && fp8 && !f16_out) in.rho = result_rounding::rz_e8m13;
    in.L = 32 / ta.bytes;
    in.e_zero = f16_out ? -21 : -133;
  }
  if (r.block) {  // sim.py:96-104, 187-195: MMA_ST_FDPA(F=25, RZ-FP32, L_max=32, e_zero=-133)
    in.block = r.block;
    in.scale = builtin(r.scale == "ue4m3" ? format_id::e4m3 : format_id::e8m0);
    in.F = 25;
    in.rho = result_rounding::rz_fp32;
    in.L = 32;
    in.e_zero = -133;
  }
  if (r.group) {  // sim.py:92-95, 183-186: MMA_GST_FDPA(G=16, F=35, RZ-FP32, L_max=64, e_zero=-139)
    in.group = r.group;
    in.F = 35;
    in.L = 64;
    in.e_zero = -139;
  }
  in.L = std::min(in.L, in.k);  // fdpa.py:134: L = min(K, L_max)
  return in;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

}  // namespace

std::string instruction::describe() const {
  static const char* fams[] = {"mma.sync", "wgmma", "tcgen05.mma", "v_mfma"};
  static const char* rhos[] = {"RZ-FP32", "RZ-E8M13", "RNE-FP16", "RNE-FP32"};
  const std::string head = arch + ": " + fams[int(fam)] + " " + name + " (";
  switch (arith) {
    case arithmetic::fma: return head + "FMA chain: one binary32 fused multiply-add per product, RNE-FP32)";
    case arithmetic::e_fdpa: return head + "E-FDPA: L=" + std::to_string(L) + " products and C summed exactly, RNE-FP32)";
    case arithmetic::ftz_mul_add:
      return head + "FTZ-MUL-ADD: binary32 products summed as " + (L == 4 ? "(p0+p1)+(p2+p3)" : "p0+p1") +
             ", then added to C, RNE-FP32, subnormals flushed)";
    case arithmetic::fdpa: break;
  }
  return arch + ": " + fams[int(fam)] + " " + name + " (F=" + std::to_string(F) +
         (F2 ? ", F2=" + std::to_string(F2) : std::string()) + ", L=" + std::to_string(L) + ", " + rhos[int(rho)] +
         (F2 ? std::string() : ", e_zero=" + std::to_string(e_zero)) +
         (block ? std::string(", a ") + (scale.man_bits ? "UE4M3" : "UE8M0") + " scale per " + std::to_string(block) +
                      " of K" + (group ? ", products summed in groups of " + std::to_string(group) : std::string())
                : std::string()) +
         ")";
}

const std::vector<std::string>& architectures() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& ap : archs) v.emplace_back(ap.name);
    return v;
  }();
  return names;
}

std::vector<std::string> instruction_names(std::string_view arch) {
  find_arch(arch);
  std::vector<std::string> out;
  for (const auto& r : rows()) {
    if (r.arch != arch) continue;
    // "{m}" -> "M", "{n}" -> "N": the braces dropped, the letter upper-cased.
    std::string p;
    for (std::size_t x = 0; x < r.pattern.size(); ++x) {
      if (r.pattern[x] == '{') {
        p += char(r.pattern[x + 1] - 'a' + 'A');
        x += 2;
      } else {
        p += r.pattern[x];
      }
    }
    out.push_back(p);
  }
  return out;
}

instruction find(std::string_view arch, std::string_view name) {
  const arch_params* ap = &find_arch(arch);
  for (const auto& r : rows()) {
    if (r.arch != arch) continue;
    for (int m : r.ms) {
      if (!r.n_varies) {
        if (fill(r.pattern, m, r.n) == name) return resolve(r, *ap, m, r.n);
        continue;
      }
      for (int n = 8; n <= 256; n += 8)  // isa_wgmma.py:4, isa_tcgen05mma.py:14
        if (fill(r.pattern, m, n) == name) return resolve(r, *ap, m, n);
    }
  }
  std::string hint;
  if (name.find(".f64") != std::string_view::npos || name.substr(0, 4) == "f64_")
    hint = "; f64 instructions are not modelled";
  // The known ones, at most 12 of them (Blackwell has 58 families): a line, not a page.
  auto names = instruction_names(arch);
  const std::size_t all = names.size();
  if (all > 12) names.resize(12);
  throw option_error("--inst: " + quoted(name) + " is not a modelled instruction of " + std::string(arch) + hint +
                     " (known: " + join(names) + (all > 12 ? ", and " + std::to_string(all - 12) + " more" : "") +
                     "; see fpscope gemm --help)");
}

}  // namespace fpscope::mma
