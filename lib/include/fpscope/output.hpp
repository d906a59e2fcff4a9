// Output files that appear only when complete, never replace what they must not (a device node,
// a FIFO, a directory, the input being read) and leave nothing behind when the program dies.
//
// How: the data goes to an unnamed file (O_TMPFILE) in the target's directory; commit() fsyncs
// it and links it into place. A kill while writing, SIGKILL included, leaves no file: an unnamed
// file has no name to leave. Replacing an existing file goes through a random O_EXCL name in the
// same directory, renamed over the target at once (linkat cannot replace); that name exists only
// between those two calls. File systems without O_TMPFILE get a named temporary file instead
// (random name, O_EXCL | O_NOFOLLOW), which a SIGINT/SIGTERM handler removes through
// remove_output_temporaries(); only SIGKILL can leave one there.
//
// What may be written (docs/output.md):
//  - a path that does not exist yet, in an existing directory;
//  - an existing regular file: replaced atomically (readers see the old file or the new one);
//    the new file has a new file's permissions (0666 less the umask), not the old one's;
//  - a symbolic link that resolves to an existing regular file: that file is replaced, and the
//    link stays a link (a link at the output path is usually deliberate: latest.npy -> run7.npy).
// Refused, with one line naming the path: directories, devices, FIFOs, sockets, links to any of
// these, dangling links, and the same file (same device and inode: also through ./x, a symlink
// or a hard link) as any of the inputs given.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace fpscope {

/// A failure to write an output: one line, "PATH: cannot write: WHY".
class output_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct output_options {
  /// Files being read to produce the output; writing over any of them is refused.
  std::vector<std::string> inputs;
  /// Skip O_TMPFILE and use a named temporary (the fallback for file systems without it).
  bool named_temporary = false;
};

/// One output file, streamed: write() in pieces (buffered), then commit(). Destroyed without
/// commit() (an error, an exception), nothing is left and an existing target is untouched.
class output_file {
 public:
  /// Checks the target and creates the temporary file; throws output_error naming `path`.
  explicit output_file(std::string path, const output_options& opt = {});
  ~output_file();
  output_file(const output_file&) = delete;
  output_file& operator=(const output_file&) = delete;

  /// Appends bytes; throws output_error naming the path (ENOSPC, EFBIG... spelled out).
  void write(const void* bytes, std::size_t n);
  void write(std::string_view bytes) { write(bytes.data(), bytes.size()); }
  /// Flushes, fsyncs and puts the file in place (replacing the target atomically). Once.
  void commit();

  /// The path as given.
  const std::string& path() const { return path_; }
  /// The file that commit() creates or replaces: path(), or what the symlink there points to.
  const std::string& target() const { return target_; }
  /// The temporary file's name while one is visible (fallback only); "" for an unnamed file.
  const std::string& temp_path() const { return temp_; }

 private:
  void flush();
  // Writes n bytes at p to the file (the buffer aside); on an error, abandons it and throws.
  void write_out(const char* p, std::size_t n);
  void link_into_place();
  void abandon() noexcept;
  [[noreturn]] void fail(int err) const;

  std::string path_, target_, dir_, temp_;
  int fd_ = -1;
  int slot_ = -1;  // in the registry of visible temporaries, or -1
  std::uint64_t written_ = 0, started_ = 0;  // bytes handed to write(2); of them, to writeback
  std::vector<char> buffer_;
  bool committed_ = false;
};

/// Writes `bytes` to `path` as one output_file (write, commit).
void write_output(const std::string& path, std::string_view bytes, const output_options& opt = {});

/// Deletes the visible temporary files of every output_file alive (the O_TMPFILE fallback, and
/// the instant between linking a finished file and renaming it over the target).
/// Async-signal-safe: a program's SIGINT/SIGTERM handler calls it.
void remove_output_temporaries() noexcept;

}  // namespace fpscope
