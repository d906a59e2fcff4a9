#include "cli.hpp"

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
#include <csignal>
#include <new>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <cstring>
#include <fmt/format.h>

namespace fpscope::cli {

std::vector<command>& commands() {
  static std::vector<command> list;
  return list;
}

registrar::registrar(std::string_view name, int order, setup_fn setup) {
  commands().push_back({name, order, setup});
}

std::string rounding_names() {
  std::string s;
  for (int i = 0; i <= int(rounding::sr); ++i) s += (i ? ", " : "") + std::string(name(static_cast<rounding>(i)));
  return s;
}

std::string profile_names() {
  std::string s;
  for (int i = 0; i <= int(profile::ml_dtypes); ++i)
    s += (i ? ", " : "") + std::string(name(static_cast<profile>(i)));
  return s;
}

CLI::Validator count_check(bool positive) {
  return CLI::Validator(
      [positive](std::string& s) {
        const bool digits = !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
        const bool zero = digits && s.find_first_not_of('0') == std::string::npos;
        errno = 0;
        if (digits && (std::strtoull(s.c_str(), nullptr, 10), errno == ERANGE)) return "'" + s + "' is too large";
        if (digits && !(positive && zero)) return std::string();
        return "'" + s + "' is not a " + (positive ? "positive" : "non-negative") + " integer";
      },
      positive ? "N>0" : "N>=0", positive ? "positive" : "non-negative");
}

void add_conversion_options(CLI::App& app, conversion_options& o, const std::string& format_flag, bool with_scale) {
  const CLI::Validator format_check(
      [](std::string& s) {
        return find_format(s) ? std::string()
                              : "unknown format '" + s + "' (known: " + std::string(format_names()) + ")";
      },
      "FORMAT", "format");
  const CLI::Validator rounding_check(
      [](std::string& s) {
        return find_rounding(s) ? std::string() : "unknown rounding mode '" + s + "' (known: " + rounding_names() + ")";
      },
      "MODE", "rounding");
  const CLI::Validator profile_check(
      [](std::string& s) {
        return find_profile(s) ? std::string() : "unknown profile '" + s + "' (known: " + profile_names() + ")";
      },
      "PROFILE", "profile");
  const CLI::Validator overflow_check(
      [](std::string& s) {
        return s == "inf" || s == "saturate" ? std::string()
                                             : "unknown overflow policy '" + s + "' (known: inf, saturate)";
      },
      "inf|saturate", "overflow");
  const CLI::Validator finite_check(
      [](std::string& s) {
        char* end = nullptr;
        const double v = std::strtod(s.c_str(), &end);
        return std::isfinite(v) ? std::string() : "scale must be finite, not '" + s + "'";
      },
      "S", "finite");

  app.add_option(format_flag, o.to,
                 "target format: " + std::string(format_names()) + "\n(aliases: half, bfloat16, float8_e4m3fn, fp4, ...)")
      ->required()
      ->check(format_check);
  app.add_option("-r,--rounding", o.rounding, "rounding mode: " + rounding_names() + " [default: the profile's, rne]")
      ->check(rounding_check);
  app.add_option("-p,--profile", o.profile,
                 "policy bundle of an implementation: " + profile_names() + "\n[default: ieee]")
      ->check(profile_check);
  app.add_option("--overflow", o.overflow,
                 "what overflows become: inf (inf, else NaN, else max finite)\n"
                 "or saturate (+-max finite) [default: the profile's]")
      ->check(overflow_check);
  if (with_scale)
    app.add_option("-s,--scale", o.scale, "multiply every input by S before converting [default: 1]")
        ->check(finite_check);
  app.add_option("--seed", o.seed, "key of stochastic rounding (--rounding sr) [default: 0]")
      ->check(count_check(false));
}

void resolve(conversion_options& o) {
  const auto id = find_format(o.to);
  if (!id) throw usage_error("unknown format '" + o.to + "' (known: " + std::string(format_names()) + ")");
  o.fmt = builtin(*id);
  const auto pr = find_profile(o.profile);
  if (!pr) throw usage_error("unknown profile '" + o.profile + "' (known: " + profile_names() + ")");
  o.prof = *pr;
  o.pol = profile_policy(*pr, o.fmt);
  if (!o.rounding.empty()) {
    const auto r = find_rounding(o.rounding);
    if (!r) throw usage_error("unknown rounding mode '" + o.rounding + "' (known: " + rounding_names() + ")");
    o.pol.round = *r;
  }
  if (!o.overflow.empty()) o.pol.on_overflow = o.overflow == "saturate" ? overflow::saturate : overflow::infinity;
  o.pol.seed = o.seed;
}

std::string conversion_options::describe() const {
  std::string s = fmt::format("{} (rounding {}, overflow {}, profile {}", fmt.name, name(pol.round),
                              name(pol.on_overflow), name(prof));
  if (pol.round == rounding::sr) s += fmt::format(", seed {}", pol.seed);
  return s + ")";
}

bool use_colour(std::FILE* stream) {
  if (!::isatty(::fileno(stream))) return false;
  if (const char* no = std::getenv("NO_COLOR"); no && *no) return false;
  if (const char* term = std::getenv("TERM"); term && std::strcmp(term, "dumb") == 0) return false;
  return true;
}

std::string paint(bool on, const fmt::text_style& st, std::string_view s) {
  return on ? fmt::format(st, "{}", s) : std::string(s);
}

progress::progress(std::string label, std::uint64_t total, std::uint64_t bytes, bool allowed)
    : label_(std::move(label)),
      total_(total),
      on_(allowed && bytes >= (std::uint64_t{64} << 20) && ::isatty(STDERR_FILENO)) {}

progress::~progress() {
  if (on_ && drawn_) std::fputs("\r\033[K", stderr);
}

void progress::update(std::uint64_t done) {
  if (!on_) return;
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_ < std::chrono::milliseconds(100) && done != total_) return;
  last_ = now;
  drawn_ = true;
  const double frac = total_ ? double(done) / double(total_) : 1.0;
  const int width = 30, full = int(frac * width);
  std::fprintf(stderr, "\r  %s [%s%s] %3d%%  %llu / %llu values", label_.c_str(),
               std::string(std::size_t(full), '#').c_str(), std::string(std::size_t(width - full), ' ').c_str(),
               int(frac * 100), static_cast<unsigned long long>(done), static_cast<unsigned long long>(total_));
  std::fflush(stderr);
}

namespace {

// What the worker of contained() shares with its parent: an anonymous MAP_SHARED page made before
// the fork. The worker counts heartbeats; the parent's watchdog reads the count.
struct shared_beat {
  std::atomic<std::uint64_t> beats{0};
  std::atomic<bool> done{false};  // the worker has finished reading: no more limit
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "a shared counter needs lock-free atomics");

shared_beat* beat_page = nullptr;           // the worker's view (and the parent's while it waits)
volatile std::sig_atomic_t worker_pid = 0;  // the running worker, for kill_worker()

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

std::pair<std::int64_t, std::int64_t> parse_steps(const std::string& text) {
  std::int64_t first = std::numeric_limits<std::int64_t>::min(), last = std::numeric_limits<std::int64_t>::max();
  if (text.empty()) return {first, last};
  const auto colon = text.find(':');
  const auto number = [&](const std::string& t, std::int64_t& v) {
    std::size_t used = 0;
    try {
      v = std::stoll(t, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != t.size() || t.empty())
      throw usage_error("--steps: expected A:B, A: or :B (training step indices), not '" + text + "'");
  };
  if (colon == std::string::npos) number("", first);
  if (colon > 0) number(text.substr(0, colon), first);
  if (colon + 1 < text.size()) number(text.substr(colon + 1), last);
  return {first, last};
}

double stall_limit() {
  const char* env = std::getenv("FPSCOPE_STALL_SECONDS");
  if (!env || !*env) return default_stall_seconds;
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(env, &end);
  if (*end || errno == ERANGE || !std::isfinite(v) || v < 0)
    throw usage_error(std::string("FPSCOPE_STALL_SECONDS must be a number of seconds (0: no limit), not '") + env + "'");
  return v;
}

int contained(const std::string& file, const std::function<int()>& body) {
  const double stall = stall_limit();
  std::fflush(stdout);
  std::fflush(stderr);
  // The heartbeat page, and a pipe whose write end only the worker holds: its end (POLLHUP)
  // wakes the watchdog at once.
  void* page = ::mmap(nullptr, sizeof(shared_beat), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  int fds[2] = {-1, -1};
  if (page == MAP_FAILED || ::pipe(fds) != 0) {  // no watchdog possible: run unprotected rather than not at all
    if (page != MAP_FAILED) ::munmap(page, sizeof(shared_beat));
    return body();
  }
  for (const int fd : fds) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  auto* shared = new (page) shared_beat;
  const auto release = [&] {
    beat_page = nullptr;
    worker_pid = 0;
    shared->~shared_beat();
    ::munmap(page, sizeof(shared_beat));
    ::close(fds[0]);
  };
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {  // no fork: run unprotected rather than not at all
    ::close(fds[1]);
    release();
    return body();
  }
  if (pid == 0) {
#ifdef __linux__
    // Die with the parent, however it dies (SIGKILL included): never an orphan looping in libhdf5.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(exit_runtime);  // it died before prctl
#endif
    (void)parent;
    ::close(fds[0]);
    beat_page = shared;
    int status = exit_runtime;
    try {
      status = body();
    } catch (const usage_error& e) {
      report(e.what());
      status = exit_usage;
    } catch (const std::exception& e) {
      report(e.what());
    } catch (...) {
      report("unexpected internal error");
    }
    std::fflush(stdout);
    std::fflush(stderr);
    ::_exit(std::ferror(stdout) ? exit_runtime : status);
  }
  worker_pid = pid;
  ::close(fds[1]);

  // The watchdog: the worker must beat at least every `stall` seconds until it says it is done
  // reading. Checked every stall/4 (at most 1 s), so it fires between 1 and 1.25 stall limits.
  using clock = std::chrono::steady_clock;
  const auto limit = std::chrono::duration<double>(stall);
  const int tick_ms = int(std::clamp(stall * 250.0, 10.0, 1000.0));
  std::uint64_t seen = 0;
  auto last = clock::now();
  bool stalled = false;
  int st = 0;
  for (;;) {
    const pid_t w = ::waitpid(pid, &st, WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) {
      release();
      throw std::runtime_error("cannot wait for the worker process");
    }
    pollfd pfd{fds[0], POLLIN, 0};
    const int r = ::poll(&pfd, 1, stall > 0 ? tick_ms : -1);
    if (r > 0 && (pfd.revents & (POLLHUP | POLLERR))) {  // the worker is exiting: reap it
      while (::waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) {
          release();
          throw std::runtime_error("cannot wait for the worker process");
        }
      break;
    }
    if (stall <= 0 || shared->done.load(std::memory_order_relaxed)) continue;
    const std::uint64_t now_beats = shared->beats.load(std::memory_order_relaxed);
    const auto now = clock::now();
    if (now_beats != seen) {
      seen = now_beats;
      last = now;
    } else if (now - last >= limit) {
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
      }
      stalled = true;
      break;
    }
  }
  release();
  if (stalled)
    throw std::runtime_error(fmt::format("{}: the HDF5 library made no progress reading this file for {:g} s (it loops "
                                         "on some damaged files): it is corrupt or not an fpscope trace",
                                         file, stall));
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  const int sig = WTERMSIG(st);
  if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) std::raise(sig);
  throw std::runtime_error(file + ": the HDF5 library crashed reading this file (signal " + std::to_string(sig) + ", " +
                           strsignal(sig) + "): it is corrupt or not an fpscope trace");
}

std::string hex_code(std::uint32_t bits, const format& f) {
  return fmt::format("0x{:0{}x}", bits, (f.bits + 3) / 4);
}

}  // namespace fpscope::cli
