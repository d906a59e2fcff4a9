// fpscope::cuda without a GPU: how cudaGetDeviceCount's answer is classified (a driver too old is
// not "no device"), and the kernels' scale step on NaN payloads (the functor the kernels run,
// here on the host), each against values written out from the specifications they follow.
#define CATCH_CONFIG_MAIN
#include <cuda_runtime_api.h>

#include <bit>
#include <catch2/catch.hpp>
#include <cstdint>
#include <limits>
#include <string>

#include "fpscope/cuda.hpp"

namespace fc = fpscope::cuda;
using st = fc::device_probe::state;

TEST_CASE("a driver too old for the runtime is not 'no device'") {
  // cudaErrorInsufficientDriver with a driver present: too old (CUDA 13 needs r580).
  CHECK(fc::classify_probe(cudaErrorInsufficientDriver, 0, 12080) == st::driver_too_old);
  // The same error with no driver at all (cudaDriverGetVersion gives 0): nothing to run on.
  CHECK(fc::classify_probe(cudaErrorInsufficientDriver, 0, 0) == st::no_driver);
  CHECK(fc::classify_probe(cudaErrorNoDevice, 0, 13000) == st::no_device);
  CHECK(fc::classify_probe(cudaSuccess, 0, 13000) == st::no_device);
  CHECK(fc::classify_probe(cudaSuccess, 2, 13000) == st::ok);
  CHECK(fc::classify_probe(cudaErrorDevicesUnavailable, 0, 13000) == st::unusable);
  CHECK(fc::classify_probe(cudaErrorSystemDriverMismatch, 0, 13000) == st::unusable);
  CHECK(fc::classify_probe(cudaErrorCompatNotSupportedOnDevice, 0, 13000) == st::unusable);
  CHECK(std::string(fc::name(st::driver_too_old)) == "driver_too_old");
}

TEST_CASE("probe_devices on this machine agrees with its own classification") {
  const fc::device_probe p = fc::probe_devices();
  CHECK(p.what == fc::classify_probe(p.error, p.count, p.driver_version));
  CHECK(p.runtime_version >= 13000);  // the runtime linked in (CUDA 13)
  if (p.what != st::ok) {
    CHECK(p.count == 0);
    CHECK(fc::device_count() == 0);
  }
  if (p.error != 0) CHECK(p.error_text.rfind("cudaError", 0) == 0);
}

namespace {
std::uint32_t scaled_bits(std::uint32_t x, float scale) {
  return std::bit_cast<std::uint32_t>(fc::host::scale_input(std::bit_cast<float>(x), scale));
}
}  // namespace

TEST_CASE("the kernels' scale step keeps a NaN's sign and payload as x86 MULSS does") {
  // Intel SDM vol. 1, table 4-7: one NaN operand: a QNaN is the result as is, an SNaN is
  // converted to a QNaN (bit 22 set); never the GPU's canonical 0x7FFFFFFF.
  for (float s : {0.3f, 3.0f, 0x1p-10f}) {
    CHECK(scaled_bits(0x7FC00000u, s) == 0x7FC00000u);
    CHECK(scaled_bits(0xFFC12345u, s) == 0xFFC12345u);
    CHECK(scaled_bits(0x7FFFFFFFu, s) == 0x7FFFFFFFu);
    CHECK(scaled_bits(0x7F800001u, s) == 0x7FC00001u);  // signalling: quieted, payload kept
    CHECK(scaled_bits(0xFFA00000u, s) == 0xFFE00000u);
  }
  // At scale 1 the CPU does not multiply at all (lib/src/convert.cpp): a signalling NaN stays.
  CHECK(scaled_bits(0x7F800001u, 1.0f) == 0x7F800001u);
  CHECK(scaled_bits(0xFFA00000u, 1.0f) == 0xFFA00000u);
  // Everything else is the IEEE product rounded to nearest.
  CHECK(fc::host::scale_input(3.0f, 0.5f) == 1.5f);
  CHECK(scaled_bits(0x7F800000u, 0.3f) == 0x7F800000u);                 // inf
  CHECK(scaled_bits(0x00000001u, 0.5f) == 0x00000000u);                 // tie to even: 0
  CHECK(scaled_bits(0x00000003u, 0.5f) == 0x00000002u);                 // 1.5 ulp: to even 2
  CHECK(fc::host::scale_input(0x1.fffffep127f, 2.0f) == std::numeric_limits<float>::infinity());
}
