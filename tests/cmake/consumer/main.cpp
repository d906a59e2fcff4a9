// Uses fpscope as a consumer would: 1.0f is 0x3C00 in binary16 (IEEE 754 Table 3.5 layout:
// biased exponent 15, fraction 0), and 65520 overflows to +inf (0x7C00) under nearest-even.
// And opens a trace that does not exist, which fpscope::trace reports as a trace_error.
#include <fpscope/convert.hpp>
#include <fpscope/trace.hpp>

#include <cstdio>

int main() {
  const auto fp16 = fpscope::builtin(fpscope::format_id::fp16);
  const auto one = fpscope::encode(1.0f, fp16);
  const auto big = fpscope::encode(65520.0f, fp16);
  if (one != 0x3C00 || big != 0x7C00) {
    std::printf("consumer: wrong codes 0x%x 0x%x\n", one, big);
    return 1;
  }
  try {
    const fpscope::trace_reader r("/nonexistent/consumer.h5");
    std::printf("consumer: opened a trace that does not exist\n");
    return 1;
  } catch (const fpscope::trace_error& e) {
    std::printf("consumer: %s\n", e.what());
  }
  std::printf("consumer: ok\n");
  return 0;
}
