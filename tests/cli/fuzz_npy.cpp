// libFuzzer harness: any byte string, written to a file, opened by fpscope::npy_reader and read
// completely through for_each_chunk (uint codes as a format of their width). Only npy_error may
// come out; anything else (a crash, a sanitizer report, another exception) is a bug. How to
// build and run it: tests/trace/CMakeLists.txt (FPSCOPE_FUZZ).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "fpscope/format.hpp"
#include "fpscope/npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = "/dev/shm/fpscope_fuzz_" + std::to_string(::getpid()) + ".npy";
  if (std::FILE* f = std::fopen(path.c_str(), "wb")) {
    std::fwrite(data, 1, size, f);
    std::fclose(f);
  }
  try {
    const fpscope::npy_reader r(path);
    static const fpscope::format e4m3 = fpscope::builtin(fpscope::format_id::e4m3),
                                 bf16 = fpscope::builtin(fpscope::format_id::bf16),
                                 tf32 = fpscope::builtin(fpscope::format_id::tf32);
    using fpscope::npy_dtype;
    const npy_dtype d = r.dtype();
    const fpscope::format* codes = d == npy_dtype::u1 ? &e4m3 : d == npy_dtype::u2 ? &bf16 : d == npy_dtype::u4 ? &tf32 : nullptr;
    double sum = 0;
    fpscope::for_each_chunk(
        r, codes, [&](std::span<const float> v) { for (const float x : v) sum += x; },
        [&](std::span<const double> v) { for (const double x : v) sum += x; }, 1, {}, 4096);
    (void)sum;
  } catch (const fpscope::npy_error&) {
  }
  return 0;
}
