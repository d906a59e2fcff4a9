// Input files, opened the one way every reader does (.npy arrays, traces, hist's sniffing):
// without blocking, and only when they are regular files.
//
// Why: open(2) of a FIFO blocks until a writer appears (forever, for a FIFO nobody writes), and a
// character device or a directory is never an array or a trace. The file is opened with
// O_NONBLOCK (which a FIFO's open honours and a regular file ignores) and fstat-ed; anything but
// a regular file is refused with one line naming what it is. Checking the descriptor, not the
// path, leaves no gap in which the path could be swapped for a FIFO.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace fpscope {

/// A refused or unreadable input: one line, "PATH: WHY" ("x.npy: is a FIFO, not a regular file").
class input_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// "a directory", "a FIFO", "a character device", ... for messages.
const char* file_kind(mode_t mode);

/// An open regular file, read-only (O_CLOEXEC; O_NONBLOCK cleared once it is known regular).
class input_file {
 public:
  /// Opens `path`; throws input_error for a missing, unreadable or non-regular file.
  explicit input_file(const std::string& path);
  ~input_file();
  input_file(const input_file&) = delete;
  input_file& operator=(const input_file&) = delete;

  int fd() const { return fd_; }
  /// The size when opened.
  std::uint64_t size() const { return size_; }
  /// Reads up to n bytes from offset `at` (pread, EINTR retried); the count read (short at the end).
  std::size_t read_at(void* to, std::size_t n, std::uint64_t at) const;
  /// Closes the file now.
  void close() noexcept;

  /// A name that opens this very file, for libraries that open by name (libhdf5):
  /// /proc/self/fd/N where /proc is mounted, which reopens the checked inode even if the path
  /// has since been renamed over (by a FIFO, whose open would block); else the path itself.
  std::string reopen_name() const;
  /// Whether descriptor `fd` is open on this same file (device and inode): what a library
  /// opened by reopen_name() is checked with, for the case without /proc.
  bool same_file(int fd) const;
  /// Whether the path still names this file (false once something was renamed over it).
  bool path_names_it() const;

 private:
  std::string path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

/// What an input holds, by its first bytes: an HDF5 file (signature at offset 0), else an .npy
/// array; a file that is neither (empty, say) counts as HDF5 when its name ends in .h5/.hdf5/.he5,
/// so that the error names what the user meant. Throws input_error as input_file does.
enum class input_kind { npy, hdf5 };
input_kind sniff_input(const std::string& path);

}  // namespace fpscope
