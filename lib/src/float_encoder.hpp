// Internal: the bulk float32 encoder of convert.cpp resolved once (format, rounding mode,
// policy) and run serially on blocks, for other bulk loops that produce float32 values
// (arith.cpp). Not installed.
#pragma once

#include <cstddef>
#include <cstdint>

#include "fpscope/convert.hpp"

namespace fpscope::detail {

template <class Out>
class float_encoder {
 public:
  using block_fn = void (*)(const float*, Out*, std::size_t, const packer<std::uint32_t>&, std::uint64_t,
                            const format&, rounding);
  float_encoder(const format& f, const policy& p);
  /// out[i] = encode(in[i], f, p, first + i) for i < n, serially.
  void operator()(const float* in, Out* out, std::size_t n, std::uint64_t first = 0) const {
    fn_(in, out, n, k_, first, f_, r_);
  }

 private:
  format f_;
  rounding r_;
  packer<std::uint32_t> k_;
  block_fn fn_;
};

}  // namespace fpscope::detail
