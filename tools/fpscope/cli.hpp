// What the fpscope subcommands share: self-registration, the exit-code exceptions, the
// conversion options (--to, --rounding, --profile, --overflow, --scale, --seed) and colour.
#pragma once

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fmt/color.h>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <string_view>
#include <vector>

#include "fpscope/format.hpp"
#include "fpscope/policy.hpp"

namespace fpscope::cli {

/// Exit statuses (documented in `fpscope --help`).
inline constexpr int exit_ok = 0, exit_runtime = 1, exit_usage = 2;

/// A bad command line found after parsing (a malformed VALUE): exit status 2.
class usage_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Prints "fpscope: error: WHAT" as one line on stderr (colour on a terminal); never throws.
void report(const char* what) noexcept;

/// Runs `body` in a forked child and returns its exit status, so that a crash inside a
/// third-party parser (libhdf5 on a corrupt file) becomes a one-line error naming `file` and
/// exit status 1 instead of a dead process. The child reports its own errors as main() does.
/// Output must be written only at the end of `body` (a crash then leaves none behind).
///
/// libhdf5 can also loop forever on a damaged file (tests/trace/corpus/hdf5-hang-*), so a
/// watchdog in the parent kills the worker (SIGKILL) once it has not called heartbeat() for the
/// stall limit (stall_limit(): FPSCOPE_STALL_SECONDS, default 60 s, 0 for none), and reports it
/// as one line naming `file`, exit status 1; the limit stops counting at heartbeat_done(). The
/// worker dies with the parent (Linux: PR_SET_PDEATHSIG; and main()'s signal handler calls
/// kill_worker()).
int contained(const std::string& file, const std::function<int()>& body);

/// In contained()'s worker: progress was made (a step, a tensor, a slab of values read). Call it
/// at least every few seconds while reading the file; elsewhere it does nothing. Signal-safe.
void heartbeat() noexcept;
/// In contained()'s worker: the file has been read; what is left (reports, plots, output that
/// may block on a slow reader of stdout) has no stall limit.
void heartbeat_done() noexcept;
/// Kills the running worker of contained(), if any (async-signal-safe: for signal handlers).
void kill_worker() noexcept;
/// The stall limit in seconds: FPSCOPE_STALL_SECONDS (0: none), else default_stall_seconds; a
/// malformed value is a usage_error.
inline constexpr double default_stall_seconds = 60;
double stall_limit();

/// --steps A:B, A: or :B: the inclusive range of training step indices (open ends are the
/// int64 limits; empty text: every step). Anything else is a usage_error.
std::pair<std::int64_t, std::int64_t> parse_steps(const std::string& text);

/// A subcommand: adds itself to the app and returns what runs it once it is selected.
using runner = std::function<int()>;
using setup_fn = runner (*)(CLI::App& app);

struct command {
  std::string_view name;
  int order;  ///< position in `fpscope --help`
  setup_fn setup;
};

/// The registered subcommands, in registration order.
std::vector<command>& commands();

/// A file-scope `const registrar r{"name", order, &setup};` registers a subcommand.
struct registrar {
  registrar(std::string_view name, int order, setup_fn setup);
};

/// The options every converting subcommand takes, and what they resolve to.
struct conversion_options {
  std::string to;
  std::string rounding;
  std::string profile = "ieee";
  std::string overflow;
  double scale = 1.0;
  std::uint64_t seed = 0;

  format fmt{};
  fpscope::policy pol{};
  fpscope::profile prof = fpscope::profile::ieee;

  /// One line: "e4m3 (rounding rne, overflow inf, profile ieee)".
  std::string describe() const;
};

/// Adds --to, --rounding, --profile, --overflow, --scale and --seed, validated while parsing
/// (an unknown name is a CLI11 validation error, exit status 2). `format_flag` names the
/// format option; `with_scale` false leaves --scale out (for commands that do not scale).
void add_conversion_options(CLI::App& app, conversion_options& o, const std::string& format_flag = "-t,--to",
                            bool with_scale = true);
/// Validates a decimal integer: >= 0, or > 0 when `positive` (one-line messages, unlike CLI11's ranges).
CLI::Validator count_check(bool positive);
/// Fills fmt and pol: the profile's policy for the format, then --rounding / --overflow / --seed.
void resolve(conversion_options& o);

/// "rne, rtz, ..." and "ieee, cuda, ...".
std::string rounding_names();
std::string profile_names();

/// Colour only where the stream is a terminal (and NO_COLOR is unset, TERM is not dumb).
bool use_colour(std::FILE* stream);
/// `s` in style `st` when `on`, else `s` unchanged.
std::string paint(bool on, const fmt::text_style& st, std::string_view s);

/// A progress bar on stderr, drawn only when stderr is a terminal, the work is large (64 MiB of
/// input or more) and `allowed`; erased when destroyed.
class progress {
 public:
  progress(std::string label, std::uint64_t total, std::uint64_t bytes, bool allowed);
  ~progress();
  progress(const progress&) = delete;
  progress& operator=(const progress&) = delete;
  void update(std::uint64_t done);

 private:
  std::string label_;
  std::uint64_t total_;
  bool on_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_{};
};

/// A hex code padded to the format's width: 0x0002, 0x7e.
std::string hex_code(std::uint32_t bits, const format& f);

}  // namespace fpscope::cli
