// NumPy .npy files: a memory-mapped reader and a streaming writer that never leaves a partial
// output file behind (output.hpp). Only what the fpscope tools exchange: little-endian float16/32/64 and
// uint8/16/32, C order, format versions 1.0, 2.0 and 3.0.
#pragma once

#include "fpscope/format.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "fpscope/output.hpp"

namespace fpscope {

/// Every problem with an .npy file: one line naming the file and the problem.
class npy_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The element types supported, by their .npy descr.
enum class npy_dtype : std::uint8_t { f2, f4, f8, u1, u2, u4 };

/// "<f2", "<f4", "<f8", "|u1", "<u2", "<u4".
std::string_view npy_descr(npy_dtype t);
/// "float16", ..., "uint32".
std::string_view npy_type_name(npy_dtype t);
/// Bytes per element.
std::size_t npy_itemsize(npy_dtype t);
/// The unsigned dtype of a storage word of `bytes` bytes (1, 2 or 4).
npy_dtype npy_uint_dtype(int bytes);
/// "(3, 4)", "(5,)", "()".
std::string npy_shape_string(std::span<const std::uint64_t> shape);

/// The most dimensions an .npy file may have: NumPy 2.x reads and writes at most 64 (NPY_MAXDIMS),
/// NumPy 1.x at most 32; fpscope reads up to 64 and writes up to 32, so that every NumPy loads
/// what it writes.
inline constexpr std::size_t npy_max_read_dims = 64, npy_max_write_dims = 32;

/// A read-only memory mapping of an .npy file. Files larger than memory work: pages come in
/// on demand, and release() hands back the pages of a range already consumed.
/// The file is opened as every input is (input.hpp: never blocking on a FIFO, regular files only).
/// If another process truncates the file while it is mapped, reading a lost page gives zeros
/// instead of killing the process with SIGBUS, and check_intact() throws from then on: whoever
/// reads values() calls it (or release()) before trusting what was read.
class npy_reader {
 public:
  /// Opens, maps and validates `path`; throws npy_error.
  explicit npy_reader(std::string path);
  ~npy_reader();
  npy_reader(npy_reader&& o) noexcept;
  npy_reader& operator=(npy_reader&& o) noexcept;
  npy_reader(const npy_reader&) = delete;
  npy_reader& operator=(const npy_reader&) = delete;

  const std::string& path() const { return path_; }
  int version() const { return version_; }  ///< major format version: 1, 2 or 3
  npy_dtype dtype() const { return dtype_; }
  const std::vector<std::uint64_t>& shape() const { return shape_; }
  std::uint64_t size() const { return count_; }  ///< element count (1 for shape ())
  std::size_t data_bytes() const { return static_cast<std::size_t>(count_ * npy_itemsize(dtype_)); }
  std::size_t data_offset() const { return data_offset_; }  ///< header length in bytes
  const std::byte* data() const { return base_ + data_offset_; }

  /// The elements as T, which must match dtype() in size and kind (std::uint16_t for f2).
  template <class T>
  std::span<const T> values() const {
    check_type(sizeof(T), is_float<T>());
    return {reinterpret_cast<const T*>(data()), static_cast<std::size_t>(count_)};
  }

  /// Tells the kernel the elements [first, first + n) are done with (their pages may go). First
  /// calls check_intact(): a chunk is released once consumed, before its results are kept.
  void release(std::uint64_t first, std::uint64_t n) const;

  /// Throws npy_error ("the file shrank while it was being read") if a read of the mapping found
  /// a page the file had lost (truncated by another process): what was read is then not the file.
  void check_intact() const;

 private:
  template <class T>
  static constexpr bool is_float() {
    return std::is_same_v<T, float> || std::is_same_v<T, double>;
  }
  void check_type(std::size_t bytes, bool floating) const;
  void unmap() noexcept;

  std::string path_;
  const std::byte* base_ = nullptr;
  std::size_t map_bytes_ = 0;
  int guard_ = -1;  // slot in the SIGBUS guard's table (npy.cpp), or -1
  std::size_t data_offset_ = 0;
  int version_ = 1;
  npy_dtype dtype_ = npy_dtype::f4;
  std::vector<std::uint64_t> shape_;
  std::uint64_t count_ = 0;
};

/// Writes an .npy file (version 1.0, or 2.0 when the header needs it) through an output_file
/// (output.hpp): the output appears only at commit(), complete; destroyed without commit() (an
/// error, an exception) it leaves nothing, and an existing file at `path` is untouched. Writing
/// over one of `opt.inputs`, a device, a FIFO or a directory is refused.
/// Calls f32(values) or f64(values) on `in`'s values in chunks of about `chunk` elements,
/// concurrently on `threads` OpenMP threads (0: all cores): float32 and float64 as stored,
/// float16 widened exactly to float32, uint codes decoded to float32 as `codes` (which uint
/// arrays need: npy_error without it). Each chunk's pages are handed back once it is done;
/// `done(n)` (optional) hears of each chunk's n elements. Codes with bits above their format's
/// width, and an input that shrinks while read, are npy_errors. The callbacks run concurrently; the
/// first exception one throws is rethrown after every thread has stopped.
void for_each_chunk(const npy_reader& in, const format* codes, const std::function<void(std::span<const float>)>& f32,
                    const std::function<void(std::span<const double>)>& f64, int threads = 0,
                    const std::function<void(std::size_t)>& done = {}, std::size_t chunk = std::size_t{1} << 22);

class npy_writer {
 public:
  /// Checks the target and creates the temporary file; throws npy_error naming `path`.
  npy_writer(std::string path, npy_dtype dtype, std::vector<std::uint64_t> shape, const output_options& opt = {});
  npy_writer(const npy_writer&) = delete;
  npy_writer& operator=(const npy_writer&) = delete;

  /// Appends raw little-endian element bytes.
  void write(const void* bytes, std::size_t n);
  template <class T>
  void write(std::span<const T> v) {
    write(v.data(), v.size_bytes());
  }
  /// Checks that exactly the declared elements were written and puts the file in place.
  void commit();

  const std::string& path() const { return out_.path(); }

 private:
  output_file out_;
  std::uint64_t expected_ = 0, written_ = 0;
};

/// Writes a whole array at once (through npy_writer).
template <class T>
void npy_save(const std::string& path, npy_dtype dtype, std::vector<std::uint64_t> shape,
              std::span<const T> v) {
  npy_writer w(path, dtype, std::move(shape));
  w.write(v);
  w.commit();
}

}  // namespace fpscope
