#include "fpscope/input.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>
#include <utility>

namespace fpscope {

const char* file_kind(mode_t m) {
  if (S_ISREG(m)) return "a regular file";
  if (S_ISDIR(m)) return "a directory";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISSOCK(m)) return "a socket";
  if (S_ISLNK(m)) return "a symbolic link";
  return "not a regular file";
}

input_file::input_file(const std::string& path) : path_(path) {
  const auto fail = [&](const std::string& why) { throw input_error(path_ + ": " + why); };
  if (path_.empty()) throw input_error("input path is empty");
  fd_ = ::open(path_.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd_ < 0) fail(std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    const int e = errno;
    close();
    fail(std::string("cannot stat: ") + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    close();
    fail(std::string("is ") + file_kind(st.st_mode) + ", not a regular file");
  }
  // Regular: reads never block anyway, but leave nothing unusual on the descriptor.
  if (const int fl = ::fcntl(fd_, F_GETFL); fl >= 0) ::fcntl(fd_, F_SETFL, fl & ~O_NONBLOCK);
  size_ = static_cast<std::uint64_t>(st.st_size);
}

input_file::~input_file() { close(); }

void input_file::close() noexcept {
  if (fd_ >= 0) ::close(std::exchange(fd_, -1));
}

std::string input_file::reopen_name() const {
  // Linux's /proc/self/fd/N is a link to the open file itself: opening it does not look the
  // path up again. Without /proc (some minimal containers) the path is all there is.
  std::string proc = "/proc/self/fd/" + std::to_string(fd_);
  struct stat a {}, b {};
  if (fd_ >= 0 && ::stat(proc.c_str(), &a) == 0 && ::fstat(fd_, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
    return proc;
  return path_;
}

bool input_file::same_file(int fd) const {
  struct stat a {}, b {};
  return fd_ >= 0 && fd >= 0 && ::fstat(fd_, &a) == 0 && ::fstat(fd, &b) == 0 && a.st_dev == b.st_dev &&
         a.st_ino == b.st_ino;
}

bool input_file::path_names_it() const {
  struct stat a {}, b {};
  return fd_ >= 0 && ::stat(path_.c_str(), &a) == 0 && ::fstat(fd_, &b) == 0 && a.st_dev == b.st_dev &&
         a.st_ino == b.st_ino;
}

std::size_t input_file::read_at(void* to, std::size_t n, std::uint64_t at) const {
  auto* p = static_cast<char*>(to);
  std::size_t done = 0;
  while (done < n) {
    const ssize_t got = ::pread(fd_, p + done, n - done, off_t(at + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) throw input_error(path_ + ": cannot read: " + std::strerror(errno));
    if (got == 0) break;
    done += std::size_t(got);
  }
  return done;
}

input_kind sniff_input(const std::string& path) {
  const input_file in(path);
  char sig[8] = {};
  const std::size_t n = in.read_at(sig, sizeof sig, 0);
  if (n == 8 && std::memcmp(sig, "\x89HDF\r\n\x1a\n", 8) == 0) return input_kind::hdf5;
  if (n >= 6 && std::memcmp(sig, "\x93NUMPY", 6) == 0) return input_kind::npy;
  const std::string_view p(path);
  for (const std::string_view ext : {".h5", ".hdf5", ".he5"})
    if (p.size() > ext.size() && p.substr(p.size() - ext.size()) == ext) return input_kind::hdf5;
  return input_kind::npy;
}

}  // namespace fpscope
