// What a gradient trace stores about a tensor besides its raw values (docs/trace.md): its element
// counts, its amax and its exact bucket histogram, computed together. The Python recorder
// (tools/record/fpscope_record.py, through the module's tensor_summary) and trace_writer use it.
#pragma once

#include <cstdint>
#include <span>

#include "fpscope/histogram.hpp"

namespace fpscope {

/// A tensor's trace attributes (@count, @amax, @zeros, @infs, @nans) and its bucket histogram.
struct tensor_summary {
  std::uint64_t count = 0;
  double amax = 0;  ///< max |x| over the finite elements, 0 when there are none
  std::uint64_t zeros = 0, infs = 0, nans = 0;
  bucket_histogram hist;
};

/// The summary of float32 values in one read of them: the bucket histogram and the amax
/// (bucket_histogram::add_amax); zeros, infs and NaNs are read off the histogram (their buckets
/// hold nothing else).
/// OpenMP above fpscope::parallel_threshold values unless threads == 1 (threads 0: all cores).
tensor_summary summarize(std::span<const float> x, int threads = 0);

}  // namespace fpscope
