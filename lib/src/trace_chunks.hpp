// The trace reader's own decoder of stored chunks; private to fpscope_trace. Which values
// datasets it decodes (raw_layout_of), and read_stored_chunks: the plan of where each stored chunk
// lies in the file (from HDF5's chunk index), then read, inflate, unshuffle and widen on several
// threads, outside HDF5 (docs/trace.md, "Reading fast"). trace_reader::values_parallel and
// decodes_chunks are its users.
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

// Where an open trace's bytes can be read without HDF5: the file descriptor of HDF5's default
// (sec2) driver, and the file offset of HDF5 address 0 (the user block's size).
struct stored_file {
  int fd = -1;
  std::uint64_t base = 0;
};

// The stored_file of an HDF5 file; nullopt under any other driver than sec2 (its chunks then go
// through H5Dread).
std::optional<stored_file> stored_file_of(hid_t file);

// A tensor whose stored chunks read_stored_chunks decodes.
struct chunk_source {
  std::size_t index;      // the tensor's index for the values callback
  const trace_tensor* t;
  id ds;                  // its values dataset
  raw_layout l;           // raw_layout_of(ds, *t)
  std::string where;      // "FILE: step S, tensor T": how its errors begin
};

// Streams every value of the sources, stored in `file`, as trace_reader::values_parallel does:
// f(index, offset, values) on `threads` OpenMP threads (0: all), concurrently, in no set order.
// The first failure in reading order is thrown.
void read_stored_chunks(const stored_file& file, std::span<const chunk_source> sources,
                        const std::function<void(std::size_t, std::uint64_t, std::span<const float>)>& f,
                        int threads);

}  // namespace fpscope::trace_detail
