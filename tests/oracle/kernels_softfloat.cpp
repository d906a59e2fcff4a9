// Berkeley SoftFloat 3e (the x86-64 static library of PyPI's sfpy 0.6.0 source release, which
// tools/setup.sh puts in .deps/softfloat): fp16 add/sub/mul/div/sqrt/fma in its six rounding
// modes, with its exception flags. CMake defines FPSCOPE_ORACLE_SOFTFLOAT when it finds and
// links the library. SoftFloat keeps its mode and flags in globals: one thread at a time.
#include "kernels_softfloat.hpp"

#ifdef FPSCOPE_ORACLE_SOFTFLOAT
extern "C" {
#include "softfloat.h"
}
#endif

namespace oracle::softfloat {

#ifdef FPSCOPE_ORACLE_SOFTFLOAT
bool built() { return true; }

void f16(sop o, int mode, const std::uint16_t* a, const std::uint16_t* b, const std::uint16_t* c, std::uint16_t* out,
         std::uint8_t* flags, std::size_t n) {
  softfloat_roundingMode = static_cast<uint_fast8_t>(mode);
  softfloat_detectTininess = softfloat_tininess_afterRounding;
  for (std::size_t i = 0; i < n; ++i) {
    softfloat_exceptionFlags = 0;
    const float16_t x{a[i]}, y{b[i]}, z{c[i]};
    float16_t r{0};
    switch (o) {
      case sop::add: r = f16_add(x, y); break;
      case sop::sub: r = f16_sub(x, y); break;
      case sop::mul: r = f16_mul(x, y); break;
      case sop::div: r = f16_div(x, y); break;
      case sop::sqrt: r = f16_sqrt(x); break;
      case sop::fma: r = f16_mulAdd(x, y, z); break;
    }
    out[i] = r.v;
    flags[i] = static_cast<std::uint8_t>(softfloat_exceptionFlags);
  }
}
#else
bool built() { return false; }
void f16(sop, int, const std::uint16_t*, const std::uint16_t*, const std::uint16_t*, std::uint16_t*, std::uint8_t*,
         std::size_t) {}
#endif

}  // namespace oracle::softfloat
