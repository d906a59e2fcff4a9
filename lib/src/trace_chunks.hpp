// The trace reader's own decoder of stored chunks; private to fpscope_trace. Which values
// datasets it decodes (raw_layout_of), and read_stored_chunks: the raw-chunk read plan, then
// inflate, unshuffle and widen on several threads, outside HDF5 (docs/trace.md, "Reading fast").
// trace_reader::values_parallel and decodes_chunks are its users.
#pragma once

#include <hdf5.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>

#include "fpscope/trace.hpp"
#include "trace_hdf5.hpp"

namespace fpscope::trace_detail {

// How a values dataset's stored chunks decode without HDF5: a 1-D chunked dataset of the dtype's
// little-endian type whose filter pipeline is [shuffle][deflate] (the recorder's and the
// writer's). Anything else (other filters, Fletcher checksums, big-endian, unallocated chunks)
// is left to H5Dread.
struct raw_layout {
  std::uint64_t chunk = 0;  // elements per chunk
  int shuffle = -1, deflate = -1;  // pipeline positions (a chunk's filter mask bit), -1: absent
};

// The layout of tensor t's values dataset ds, if read_stored_chunks decodes it.
std::optional<raw_layout> raw_layout_of(hid_t ds, const trace_tensor& t);

// A tensor whose stored chunks read_stored_chunks decodes.
struct chunk_source {
  std::size_t index;      // the tensor's index for the values callback
  const trace_tensor* t;
  id ds;                  // its values dataset
  raw_layout l;           // raw_layout_of(ds, *t)
  std::string where;      // "FILE: step S, tensor T": how its errors begin
};

// Streams every value of the sources, as trace_reader::values_parallel does: f(index, offset,
// values) on `threads` OpenMP threads (0: all), concurrently, in no set order, at most about
// `budget` stored bytes in flight. The first failure in reading order is thrown.
void read_stored_chunks(std::span<const chunk_source> sources,
                        const std::function<void(std::size_t, std::uint64_t, std::span<const float>)>& f,
                        int threads, std::size_t budget);

}  // namespace fpscope::trace_detail
