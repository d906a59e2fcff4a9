// libFuzzer harness: any byte string, written to a file, opened and read completely by
// fpscope::trace_reader. Only trace_error may come out; anything else (a crash, a sanitizer
// report, another exception) is a bug. See CMakeLists.txt for how to run it.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "fpscope/trace.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = "/dev/shm/fpscope_fuzz_" + std::to_string(::getpid()) + ".h5";
  if (std::FILE* f = std::fopen(path.c_str(), "wb")) {
    std::fwrite(data, 1, size, f);
    std::fclose(f);
  }
  try {
    const fpscope::trace_reader r(path);
    for (std::size_t i = 0; i < r.size(); ++i) {
      const auto s = r.step(i);
      std::vector<const fpscope::trace_tensor*> raw;
      for (const auto& t : s.tensors) {
        if (t.has_values) r.values(s, t, [](std::span<const float>) {}, 4096), raw.push_back(&t);
        if (t.has_hist) (void)r.histogram(s, t);
      }
      r.values_parallel(s, raw, [](std::size_t, std::uint64_t, std::span<const float>) {}, 2, 4096);
    }
  } catch (const fpscope::trace_error&) {
  }
  return 0;
}
