#include "fpscope/contain.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <thread>

#include "fpscope/options.hpp"

namespace fpscope {
namespace {

// What the worker shares with its parent: an anonymous MAP_SHARED page made before the fork. The
// worker counts heartbeats; the parent's watchdog reads the count.
struct shared_beat {
  std::atomic<std::uint64_t> beats{0};
  std::atomic<bool> done{false};  // the worker has finished reading: no more limit
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "a shared counter needs lock-free atomics");

shared_beat* beat_page = nullptr;           // the worker's view
volatile std::sig_atomic_t worker_pid = 0;  // the running worker, for kill_worker()

// The worker's answer on the pipe: a tag ('O' result, 'U' option_error, 'E' other error), the
// payload's length (8 bytes, native order: both ends are this program), the payload.
bool write_all(int fd, const void* p, std::size_t n) {
  const auto* c = static_cast<const char*>(p);
  while (n) {
    const ssize_t w = ::write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    c += w, n -= std::size_t(w);
  }
  return true;
}

void answer(int fd, char tag, const std::string& payload) {
  const std::uint64_t n = payload.size();
  (void)(write_all(fd, &tag, 1) && write_all(fd, &n, sizeof n) && write_all(fd, payload.data(), payload.size()));
}

}  // namespace

void heartbeat() noexcept {
  if (beat_page) beat_page->beats.fetch_add(1, std::memory_order_relaxed);
}

void heartbeat_done() noexcept {
  if (beat_page) beat_page->done.store(true, std::memory_order_relaxed);
}

void kill_worker() noexcept {
  if (const pid_t pid = worker_pid; pid > 0) ::kill(pid, SIGKILL);
}

double stall_limit() {
  const char* env = std::getenv("FPSCOPE_STALL_SECONDS");
  if (!env || !*env) return default_stall_seconds;
  const double v = parse_number(env, "FPSCOPE_STALL_SECONDS");
  if (!std::isfinite(v) || v < 0)
    throw option_error("FPSCOPE_STALL_SECONDS must be a number of seconds (0: no limit), not " + quoted(env));
  return v;
}

std::string run_contained(const std::string& file, const std::function<std::string()>& body,
                          const std::function<bool()>& cancelled) {
  const double stall = stall_limit();
  std::fflush(stdout);
  std::fflush(stderr);
  void* page = ::mmap(nullptr, sizeof(shared_beat), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  int fds[2] = {-1, -1};
  if (page == MAP_FAILED || ::pipe2(fds, O_CLOEXEC) != 0) {  // no worker possible: run unprotected rather than not at all
    if (page != MAP_FAILED) ::munmap(page, sizeof(shared_beat));
    return body();
  }
  auto* shared = new (page) shared_beat;
  const auto release = [&] {
    worker_pid = 0;
    shared->~shared_beat();
    ::munmap(page, sizeof(shared_beat));
    ::close(fds[0]);
  };
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[1]);
    release();
    return body();
  }
  if (pid == 0) {
#ifdef __linux__
    // Die with the parent, however it dies (SIGKILL included): never an orphan looping in libhdf5.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);  // it died before prctl
#endif
    (void)parent;
    // The caller's handlers (a test framework's, Python's, the CLI's clean-up) are not the
    // worker's: a crash must end it by the signal, which is what the watchdog reports.
    for (const int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGINT, SIGTERM, SIGHUP, SIGPIPE})
      std::signal(sig, SIG_DFL);
    ::close(fds[0]);
    beat_page = shared;
    char tag = 'O';
    std::string payload;
    try {
      std::thread([&] {
        try {
          payload = body();
        } catch (const option_error& e) {
          tag = 'U', payload = e.what();
        } catch (const std::exception& e) {
          tag = 'E', payload = e.what();
        } catch (...) {
          tag = 'E', payload = "unexpected internal error";
        }
      }).join();
    } catch (const std::exception& e) {  // no thread: nothing ran
      tag = 'E', payload = std::string("cannot start the worker thread: ") + e.what();
    }
    // What body printed must be out before the answer says it is done.
    if ((std::fflush(stdout) != 0 || std::ferror(stdout)) && tag == 'O')
      tag = 'E', payload = std::string("cannot write to standard output: ") + std::strerror(errno);
    std::fflush(stderr);
    answer(fds[1], tag, payload);
    ::_exit(0);
  }
  worker_pid = pid;
  ::close(fds[1]);

  // The watchdog: the worker must beat at least every `stall` seconds until it says it is done
  // reading. Checked every stall/4 (at most 1/4 s), so it fires between 1 and 1.25 stall limits.
  using clock = std::chrono::steady_clock;
  const auto limit = std::chrono::duration<double>(stall);
  const int tick_ms = stall > 0 ? int(std::clamp(stall * 250.0, 10.0, 250.0)) : 250;
  std::uint64_t seen = 0;
  auto last = clock::now();
  bool stalled = false, stopped = false;
  std::string got;
  char buf[1 << 16];
  for (;;) {
    pollfd pfd{fds[0], POLLIN, 0};
    const int r = ::poll(&pfd, 1, tick_ms);
    if (r > 0) {
      const ssize_t n = ::read(fds[0], buf, sizeof buf);
      if (n > 0) {
        got.append(buf, std::size_t(n));
        continue;
      }
      if (n == 0 || errno != EINTR) break;  // the worker is gone (or the pipe broke)
    }
    if (cancelled && cancelled()) {
      stopped = true;
      break;
    }
    if (stall <= 0 || shared->done.load(std::memory_order_relaxed)) continue;
    const std::uint64_t now_beats = shared->beats.load(std::memory_order_relaxed);
    const auto now = clock::now();
    if (now_beats != seen) {
      seen = now_beats;
      last = now;
    } else if (now - last >= limit) {
      stalled = true;
      break;
    }
  }
  if (stalled || stopped) ::kill(pid, SIGKILL);
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) {
      release();
      throw contained_error("cannot wait for the worker process");
    }
  release();
  if (stopped) throw contained_error("cancelled");
  if (stalled)
    throw contained_error(file + ": the HDF5 library made no progress reading this file for " + number_text(stall) +
                          " s (it loops on some damaged files): it is corrupt or not an fpscope trace");
  if (WIFSIGNALED(st)) {
    const int sig = WTERMSIG(st);
    if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP || sig == SIGPIPE) {
      // The caller gets the same signal, under its own disposition (the CLI dies of it; Python
      // turns SIGINT into KeyboardInterrupt and ignores SIGPIPE); if it lives on, an error.
      std::raise(sig);
      throw contained_error(sig == SIGPIPE ? std::string("the output pipe was closed")
                                           : std::string("interrupted (") + strsignal(sig) + ")");
    }
    throw contained_error(file + ": the HDF5 library crashed reading this file (signal " + std::to_string(sig) + ", " +
                          strsignal(sig) + "): it is corrupt or not an fpscope trace");
  }
  std::uint64_t n = 0;
  if (got.size() < 1 + sizeof n || (std::memcpy(&n, got.data() + 1, sizeof n), got.size() != 1 + sizeof n + n))
    throw contained_error(file + ": the worker ended without an answer (exit status " +
                          std::to_string(WIFEXITED(st) ? WEXITSTATUS(st) : -1) + ")");
  std::string payload = got.substr(1 + sizeof n);
  if (got[0] == 'U') throw option_error(payload);
  if (got[0] == 'E') throw contained_error(payload);
  return payload;
}

}  // namespace fpscope
