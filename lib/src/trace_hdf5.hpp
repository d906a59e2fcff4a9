// What the trace reader (trace_reader.cpp), its chunk decoder (trace_chunks.cpp) and the writer
// (trace_writer.cpp) share; private to fpscope_trace: the owner of an HDF5 identifier, HDF5's
// error printing turned off, the escaping of tensor names into link names, a dtype's storage
// type and a dataset's filter pipeline.
#pragma once

#include <hdf5.h>

#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "fpscope/trace.hpp"

namespace fpscope::trace_detail {

// Owns an HDF5 identifier; closes it with the function of its kind.
class id {
 public:
  id() = default;
  id(hid_t v, herr_t (*close)(hid_t)) : v_(v), close_(close) {}
  id(id&& o) noexcept : v_(std::exchange(o.v_, H5I_INVALID_HID)), close_(o.close_) {}
  id& operator=(id&& o) noexcept {
    std::swap(v_, o.v_);
    std::swap(close_, o.close_);
    return *this;
  }
  ~id() {
    if (v_ >= 0 && close_) close_(v_);
  }
  operator hid_t() const { return v_; }
  bool ok() const { return v_ >= 0; }

 private:
  hid_t v_ = H5I_INVALID_HID;
  herr_t (*close_)(hid_t) = nullptr;
};

// HDF5's own error stack printing is off: every failure becomes one trace_error line. A
// thread-safe libhdf5 (Debian's) keeps that setting per thread, so every entry point of the
// reader and the writer quiets the thread it runs on (the caller's, a contained worker's), once.
inline void quiet_hdf5() {
  thread_local const bool quiet = H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr) >= 0;
  (void)quiet;
}

// Tensor names as link names ('/' separates HDF5 path components): the writer escapes, the
// reader unescapes.
inline std::string escape(const std::string& s) {
  std::string out;
  for (const char c : s) out += c == '%' ? std::string("%25") : c == '/' ? std::string("%2F") : std::string(1, c);
  return out;
}

inline std::string unescape(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s.compare(i, 3, "%25") == 0) out += '%', i += 2;
    else if (s.compare(i, 3, "%2F") == 0) out += '/', i += 2;
    else out += s[i];
  }
  return out;
}

// The HDF5 storage type a dtype must have: class, size.
inline std::pair<H5T_class_t, std::size_t> storage(trace_dtype t) {
  switch (t) {
    case trace_dtype::float32: return {H5T_FLOAT, 4};
    case trace_dtype::float16:
    case trace_dtype::bfloat16: return {H5T_INTEGER, 2};
    default: return {H5T_INTEGER, 1};
  }
}

// A dataset's filter pipeline, in the order the filters were applied when writing (a filter
// that cannot be read is H5Z_FILTER_ERROR); nullopt when the pipeline cannot be read at all.
inline std::optional<std::vector<H5Z_filter_t>> filters(hid_t dcpl) {
  const int n = H5Pget_nfilters(dcpl);
  if (n < 0) return std::nullopt;
  std::vector<H5Z_filter_t> out;
  for (int i = 0; i < n; ++i) {
    unsigned flags = 0, conf = 0;
    std::size_t nv = 0;
    out.push_back(H5Pget_filter2(dcpl, unsigned(i), &flags, &nv, nullptr, 0, nullptr, &conf));
  }
  return out;
}

}  // namespace fpscope::trace_detail
