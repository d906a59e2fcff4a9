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
#include "fpscope/options.hpp"
#include "fpscope/policy.hpp"

namespace fpscope::cli {

/// Exit statuses (documented in `fpscope --help`).
inline constexpr int exit_ok = 0, exit_runtime = 1, exit_usage = 2;

/// A bad command line found after parsing (a malformed VALUE): exit status 2. The library's
/// option_error (fpscope/options.hpp) is the same kind of error.
class usage_error : public option_error {
 public:
  using option_error::option_error;
};

/// Prints "fpscope: error: WHAT" as one line on stderr (colour on a terminal); never throws.
void report(const char* what) noexcept;

/// Runs `body`, which prints to stdout, and flushes stdout. A failed write there (fmt's
/// exception, or the stream's error flag at the end) becomes one error, "cannot write to standard
/// output: WHY", exit status 1; EPIPE (a reader that went away, SIGPIPE being ignored) ends the
/// process by SIGPIPE instead, quietly, as any Unix tool writing to a closed pipe.
int printing(const std::function<int()>& body);

/// Flushes stdout mid-run (a streaming subcommand), failing as printing() does.
void flush_stdout();

/// Runs `body` (which prints its output at its end) in a worker process that a crash or hang of
/// libhdf5 on `file` cannot take down (fpscope/contain.hpp's run_contained, whose heartbeat()
/// the reading code calls); returns body's exit status. Errors come back as exceptions.
int contained(const std::string& file, const std::function<int()>& body);

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

/// The options every converting subcommand takes, as typed, and what they resolve to (the
/// library's conversion: fmt, pol, prof, describe()).
struct conversion_options : conversion {
  conversion_request req;
  std::string scale_text;  ///< --scale as typed; empty: 1
  double scale = 1.0;
};

/// Adds --to (or `format_flag`), --rounding, --profile, --overflow, --scale and --seed, each
/// validated while parsing by the library's parser (fpscope/options.hpp): a bad value is a CLI11
/// validation error, exit status 2. `with_scale` false leaves --scale out.
void add_conversion_options(CLI::App& app, conversion_options& o, const std::string& format_flag = "-t,--to",
                            bool with_scale = true);
/// -r/--rounding, -p/--profile and --overflow alone, for commands that choose their formats
/// otherwise (hist, replay); `defaults` is the help text's default.
void add_policy_options(CLI::App& app, conversion_request& r, const std::string& profile_default);
/// -j/--threads (or `flags`): 0 (all cores) to fpscope::max_threads.
void add_threads_option(CLI::App& app, int& threads, const std::string& flags = "-j,--threads",
                        const std::string& help = "threads [default: all]");
/// Validates a decimal integer: >= 0, or > 0 when `positive` (one-line messages, unlike CLI11's ranges).
CLI::Validator count_check(bool positive);
/// A CLI11 validator running one of the library's parsers (the option's name is CLI11's prefix).
CLI::Validator parsed_by(std::function<void(const std::string&)> parse, const std::string& what, const std::string& name);
/// Resolves the typed options with the library (fpscope::resolve, parse_scale).
void resolve(conversion_options& o);

/// Colour only where the stream is a terminal (and NO_COLOR is unset, TERM is not dumb).
bool use_colour(std::FILE* stream);
/// `s` in style `st` when `on`, else `s` unchanged.
std::string paint(bool on, const fmt::text_style& st, std::string_view s);

/// A progress bar on stderr, drawn only when stderr is a terminal and `allowed`: at once for 64
/// MiB of input or more, else once the work has run for a second (a slow hist of a smaller
/// file, a trace); erased when destroyed.
class progress {
 public:
  progress(std::string label, std::uint64_t total, std::uint64_t bytes, bool allowed);
  ~progress();
  progress(const progress&) = delete;
  progress& operator=(const progress&) = delete;
  void update(std::uint64_t done);
  /// The same with a total learned on the way.
  void update(std::uint64_t done, std::uint64_t total);
  /// Erases the bar now (in a worker process, whose destructors never run).
  void clear();

 private:
  std::string label_;
  std::uint64_t total_;
  bool on_, at_once_;
  std::chrono::steady_clock::time_point start_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_{};
};

/// A hex code padded to the format's width: 0x0002, 0x7e.
std::string hex_code(std::uint32_t bits, const format& f);

}  // namespace fpscope::cli
