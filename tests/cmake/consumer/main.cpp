// Uses fpscope as a consumer would: 1.0f is 0x3C00 in binary16 (IEEE 754 Table 3.5 layout:
// biased exponent 15, fraction 0), and 65520 overflows to +inf (0x7C00) under nearest-even.
#include <fpscope/convert.hpp>

#include <cstdio>

int main() {
  const auto fp16 = fpscope::builtin(fpscope::format_id::fp16);
  const auto one = fpscope::encode(1.0f, fp16);
  const auto big = fpscope::encode(65520.0f, fp16);
  if (one != 0x3C00 || big != 0x7C00) {
    std::printf("consumer: wrong codes 0x%x 0x%x\n", one, big);
    return 1;
  }
  std::printf("consumer: ok\n");
  return 0;
}
