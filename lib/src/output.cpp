#include "fpscope/output.hpp"

#include "fpscope/input.hpp"  // file_kind

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <utility>

namespace fpscope {
namespace {

constexpr std::size_t buffer_bytes = std::size_t{1} << 20;

// strerror, and what the few errors a full disk or a size limit give mean for the user.
std::string why(int err) {
  std::string s = std::strerror(err);
  if (err == ENOSPC) s += " (the file system holding it is full)";
  if (err == EDQUOT) s += " (the disk quota is used up)";
  if (err == EFBIG) s += " (over the file size limit: see ulimit -f, or the file system's largest file)";
  return s;
}

[[noreturn]] void refuse(const std::string& path, const std::string& why_not) {
  throw output_error(path + ": cannot write: " + why_not);
}

std::optional<struct stat> stat_of(const std::string& path, bool follow) {
  struct stat st {};
  if ((follow ? ::stat(path.c_str(), &st) : ::lstat(path.c_str(), &st)) != 0) return std::nullopt;
  return st;
}

std::string directory_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Temporary names only need to be unguessable enough that nobody plants a link there first
// (O_EXCL | O_NOFOLLOW refuses one anyway): getrandom, or the clock where that fails.
std::string random_suffix() {
  std::uint64_t r = 0;
  if (::getrandom(&r, sizeof r, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof r)) {
    static std::atomic<std::uint64_t> counter{0};
    timespec t{};
    ::clock_gettime(CLOCK_MONOTONIC, &t);
    r = (std::uint64_t(t.tv_nsec) << 20) ^ std::uint64_t(t.tv_sec) ^ (std::uint64_t(::getpid()) << 40) ^
        (counter.fetch_add(1) * 0x9E3779B97F4A7C15ull);
  }
  static constexpr char hex[] = "0123456789abcdef";
  std::string s(16, '0');
  for (std::size_t i = 0; i < 16; ++i) s[i] = hex[(r >> (4 * i)) & 15];
  return s;
}

// Visible temporary files of live writers, for remove_output_temporaries() from a signal
// handler: fixed storage and atomics only, nothing a handler cannot touch.
constexpr int max_temporaries = 16;
constexpr std::size_t max_temp_path = PATH_MAX;
struct temporaries {
  std::array<std::atomic<int>, max_temporaries> state{};  // 0 free, 1 being filled, 2 live
  char paths[max_temporaries][max_temp_path]{};
};
temporaries& temps() {
  static temporaries t;
  return t;
}
static_assert(std::atomic<int>::is_always_lock_free);

int register_temporary(const std::string& path) noexcept {
  if (path.size() >= max_temp_path) return -1;
  auto& t = temps();
  for (int i = 0; i < max_temporaries; ++i) {
    int expected = 0;
    if (t.state[i].compare_exchange_strong(expected, 1)) {
      std::memcpy(t.paths[i], path.c_str(), path.size() + 1);
      t.state[i].store(2);
      return i;
    }
  }
  return -1;
}
void unregister_temporary(int& slot) noexcept {
  if (slot >= 0) temps().state[slot].store(0);
  slot = -1;
}

// Links the unnamed file `fd` at `name`: through /proc (any user), else AT_EMPTY_PATH (needs
// CAP_DAC_READ_SEARCH, but no /proc). Returns 0 or the errno.
int link_unnamed(int fd, const std::string& name) {
  const std::string proc = "/proc/self/fd/" + std::to_string(fd);
  if (::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, name.c_str(), AT_SYMLINK_FOLLOW) == 0) return 0;
  const int err = errno;
  if (err == ENOENT && ::access("/proc/self/fd", F_OK) != 0) {
    if (::linkat(fd, "", AT_FDCWD, name.c_str(), AT_EMPTY_PATH) == 0) return 0;
    return errno;
  }
  return err;
}

// O_TMPFILE is refused with these where the kernel or the file system lacks it (old kernels
// take it for O_DIRECTORY: EISDIR).
bool no_tmpfile_support(int err) { return err == EOPNOTSUPP || err == EISDIR || err == EINVAL; }

}  // namespace

output_file::output_file(std::string path, const output_options& opt) : path_(std::move(path)) {
  if (path_.empty()) throw output_error("output path is empty");
  target_ = path_;
  const auto link = stat_of(path_, false);
  if (link && S_ISLNK(link->st_mode)) {
    // Written through: the file the link points to is replaced, the link stays.
    const std::unique_ptr<char, decltype(&std::free)> real(::realpath(path_.c_str(), nullptr), &std::free);
    if (!real && errno == ENOENT) refuse(path_, "a symbolic link to nothing (dangling)");
    if (!real) refuse(path_, why(errno));
    target_ = real.get();
  }
  if (const auto st = stat_of(target_, true)) {
    if (S_ISDIR(st->st_mode)) refuse(path_, target_ == path_ ? "is a directory" : "links to a directory, " + target_);
    if (!S_ISREG(st->st_mode))
      refuse(path_, std::string(target_ == path_ ? "" : "links to " + target_ + ", ") + file_kind(st->st_mode) +
                        ", not a regular file");
    for (const auto& in : opt.inputs)
      if (const auto i = stat_of(in, true); i && i->st_dev == st->st_dev && i->st_ino == st->st_ino)
        refuse(path_, "it is the input file " + in + " (write the output elsewhere)");
  }
  dir_ = directory_of(target_);
  buffer_.reserve(buffer_bytes);

  if (!opt.named_temporary) {
    fd_ = ::open(dir_.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);
    if (fd_ >= 0) return;
    if (!no_tmpfile_support(errno)) fail(errno);
  }
  for (int tries = 0; tries < 64; ++tries) {
    temp_ = target_ + ".tmp." + random_suffix();
    slot_ = register_temporary(temp_);  // before it exists: a signal in between finds nothing to delete
    fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd_ >= 0) return;
    const int err = errno;
    unregister_temporary(slot_);
    temp_.clear();
    if (err != EEXIST) fail(err);
  }
  fail(EEXIST);
}

output_file::~output_file() {
  if (!committed_) abandon();
}

void output_file::abandon() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (!temp_.empty()) ::unlink(temp_.c_str());
  temp_.clear();
  unregister_temporary(slot_);
}

void output_file::fail(int err) const { refuse(path_, why(err)); }

void output_file::flush() {
  write_out(buffer_.data(), buffer_.size());
  buffer_.clear();
}

// Written data handed to the disk as the file grows (sync_file_range: start the writeback of
// what is written, do not wait), so that commit()'s fsync finds little left: converting 5e8
// values to e4m3 (500 MB) spent 0.21 s in that fsync at the end, the disk idle until then.
constexpr std::uint64_t writeback_bytes = std::uint64_t{8} << 20;

void output_file::write_out(const char* p, std::size_t n) {
  written_ += n;
  if (written_ - started_ >= writeback_bytes) {
    // Advice only: an error here (a file system without it) changes nothing; fsync decides.
    (void)::sync_file_range(fd_, off_t(started_), off_t(written_ - n - started_), SYNC_FILE_RANGE_WRITE);
    started_ = written_ - n;
  }
  while (n > 0) {
    const ssize_t k = ::write(fd_, p, n);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) {
      const int err = errno;
      abandon();  // a write failed: the file is worthless, and may hold a full disk's last blocks
      fail(err);
    }
    p += k;
    n -= static_cast<std::size_t>(k);
  }
}

void output_file::write(const void* bytes, std::size_t n) {
  if (committed_ || fd_ < 0) throw std::logic_error(path_ + ": write after commit or after a failed write");
  const char* p = static_cast<const char*>(bytes);
  while (n > 0) {
    if (buffer_.empty() && n >= buffer_.capacity()) {
      // Whole buffers' worth straight from the caller: copying them through the buffer first
      // was 4-6% of convert's time (a chunk is 1 MB and more).
      const std::size_t k = n - n % buffer_.capacity();
      write_out(p, k);
      p += k;
      n -= k;
      continue;
    }
    const std::size_t k = std::min(buffer_.capacity() - buffer_.size(), n);
    buffer_.insert(buffer_.end(), p, p + k);
    p += k;
    n -= k;
    if (buffer_.size() == buffer_.capacity()) flush();
  }
}

void output_file::commit() {
  if (committed_) return;
  if (fd_ < 0) throw std::logic_error(path_ + ": commit after a failed write");
  flush();
  if (::fsync(fd_) != 0) {
    const int err = errno;
    abandon();
    fail(err);
  }
  link_into_place();
  // The data is on disk (fsync) and in place: close() has nothing left to report.
  ::close(std::exchange(fd_, -1));
  committed_ = true;
  // Best effort: the new directory entry on disk too.
  if (const int dir = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

void output_file::link_into_place() {
  const auto fail_and_abandon = [&](int err) {
    abandon();
    fail(err);
  };
  if (temp_.empty()) {
    // Nothing there: one link, and no moment with a visible temporary name.
    const int err = link_unnamed(fd_, target_);
    if (err == 0) return;
    if (err != EEXIST) fail_and_abandon(err);
  }
  // Replacing: rename() is atomic, but only a name can be renamed; a device node or FIFO that
  // appeared since the constructor's check is still refused.
  if (const auto st = stat_of(target_, false); st && !S_ISREG(st->st_mode)) {
    abandon();
    refuse(path_, std::string(file_kind(st->st_mode)) + " appeared there while writing, not a regular file");
  }
  for (int tries = 0; temp_.empty(); ++tries) {
    std::string name = target_ + ".tmp." + random_suffix();
    slot_ = register_temporary(name);
    const int err = link_unnamed(fd_, name);
    if (err == 0) {
      temp_ = std::move(name);
      break;
    }
    unregister_temporary(slot_);
    if (err != EEXIST || tries == 63) fail_and_abandon(err);
  }
  if (::rename(temp_.c_str(), target_.c_str()) != 0) fail_and_abandon(errno);  // abandon() unlinks temp_
  temp_.clear();
  unregister_temporary(slot_);
}

void write_output(const std::string& path, std::string_view bytes, const output_options& opt) {
  output_file f(path, opt);
  f.write(bytes);
  f.commit();
}

void remove_output_temporaries() noexcept {
  auto& t = temps();
  for (int i = 0; i < max_temporaries; ++i)
    if (t.state[i].load() == 2) ::unlink(t.paths[i]);
}

}  // namespace fpscope
