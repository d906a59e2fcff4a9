// What this CPU can run, for the hardware conversion paths and the benchmarks: CPUID bits and the
// register state the OS saves (XGETBV), the same under every compiler.
#pragma once

namespace fpscope {

/// x86 features; all false elsewhere.
struct cpu_features {
  bool avx2 = false, fma = false, f16c = false;  ///< each with AVX (YMM state) enabled
  bool avx512f = false, avx512bf16 = false;      ///< AVX512F (+DQ, BW, VL for bf16) with ZMM state enabled
};

/// This machine's features (detected once).
const cpu_features& cpu();

}  // namespace fpscope
