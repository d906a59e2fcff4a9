// Bytes between a contained worker (fpscope/contain.hpp) and its caller: both ends are the same
// build of this library, so values travel in their native layout, unversioned; the reader still
// checks every length against what is left, so a truncated answer is a trace_error, not a crash.
// Used by replay_file's answer (src/replay_wire.cpp) and the Python Trace's (python/module.cpp).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

#include "fpscope/trace.hpp"

namespace fpscope::detail {

class wire_writer {
 public:
  template <class T>
  void pod(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    out.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  void str(std::string_view s) {
    pod(std::uint64_t(s.size()));
    out += s;
  }
  std::string out;
};

class wire_reader {
 public:
  /// `who` names the answer in the error ("replay", "trace").
  wire_reader(std::string_view bytes, const char* who) : b_(bytes), who_(who) {}
  template <class T>
  T pod() {
    static_assert(std::is_trivially_copyable_v<T>);
    T v;
    need(sizeof v);
    std::memcpy(&v, b_.data(), sizeof v);
    b_.remove_prefix(sizeof v);
    return v;
  }
  std::string str() {
    const auto n = pod<std::uint64_t>();
    need(n);
    std::string s(b_.substr(0, n));
    b_.remove_prefix(n);
    return s;
  }
  /// A count of elements each at least `min_bytes` long: bounded by what is left.
  std::uint64_t count(std::size_t min_bytes) {
    const auto n = pod<std::uint64_t>();
    need(n * min_bytes);
    return n;
  }
  bool done() const { return b_.empty(); }
  std::string_view rest() const { return b_; }

 private:
  void need(std::uint64_t n) const {
    if (n > b_.size()) throw trace_error(std::string(who_) + ": the worker's answer is truncated");
  }
  std::string_view b_;
  const char* who_;
};

}  // namespace fpscope::detail
