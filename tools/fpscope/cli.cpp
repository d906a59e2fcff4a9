#include "cli.hpp"

#include "fpscope/contain.hpp"

#include <unistd.h>

#include <algorithm>

#include <cerrno>
#include <csignal>
#include <system_error>
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

CLI::Validator parsed_by(std::function<void(const std::string&)> parse, const std::string& what, const std::string& name) {
  return CLI::Validator(
      [parse = std::move(parse), what](std::string& s) {
        try {
          parse(s);
          return std::string();
        } catch (const option_error& e) {
          // CLI11 puts the option's name in front: drop the parser's own.
          std::string m = e.what();
          if (m.rfind(what + ": ", 0) == 0) m.erase(0, what.size() + 2);
          return m;
        }
      },
      name, what);
}

void add_policy_options(CLI::App& app, conversion_request& r, const std::string& profile_default) {
  app.add_option("-r,--rounding", r.rounding, "rounding mode: " + rounding_names() + " [default: the profile's, rne]")
      ->check(parsed_by([](const std::string& v) { parse_rounding(v); }, "--rounding", "MODE"));
  app.add_option("-p,--profile", r.profile,
                 "policy bundle of an implementation: " + profile_names() + "\n[default: " + profile_default + "]")
      ->check(parsed_by([](const std::string& v) { parse_profile(v); }, "--profile", "PROFILE"));
  app.add_option("--overflow", r.overflow,
                 "what overflows become: inf (inf, else NaN, else max finite)\n"
                 "or saturate (+-max finite) [default: the profile's]")
      ->check(parsed_by([](const std::string& v) { parse_overflow(v); }, "--overflow", "inf|saturate"));
}

void add_threads_option(CLI::App& app, int& threads, const std::string& flags, const std::string& help) {
  app.add_option(flags, threads, help)->check(parsed_by([](const std::string& v) { parse_threads(v); }, "--threads", "N"));
}

void add_conversion_options(CLI::App& app, conversion_options& o, const std::string& format_flag, bool with_scale) {
  app.add_option(format_flag, o.req.format,
                 "target format: " + std::string(format_names()) + "\n(aliases: half, bfloat16, float8_e4m3fn, fp4, ...)")
      ->required()
      ->check(parsed_by([](const std::string& v) { parse_format(v); }, "format", "FORMAT"));
  add_policy_options(app, o.req, "ieee");
  if (with_scale)
    app.add_option("-s,--scale", o.scale_text, "multiply every input by S (2^K or a number) before converting [default: 1]")
        ->check(parsed_by([](const std::string& v) { parse_scale(v); }, "--scale", "S"));
  app.add_option("--seed", o.req.seed, "key of stochastic rounding (--rounding sr) [default: 0]")
      ->check(count_check(false));
}

void resolve(conversion_options& o) {
  static_cast<conversion&>(o) = fpscope::resolve(o.req);
  o.scale = o.scale_text.empty() ? 1.0 : parse_scale(o.scale_text);
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
      on_(allowed && ::isatty(STDERR_FILENO)),
      at_once_(bytes >= (std::uint64_t{64} << 20)),
      start_(std::chrono::steady_clock::now()) {}

progress::~progress() { clear(); }

void progress::clear() {
  if (on_ && drawn_) std::fputs("\r\033[K", stderr), std::fflush(stderr);
  drawn_ = false;
}

void progress::update(std::uint64_t done, std::uint64_t total) {
  total_ = total;
  update(done);
}

void progress::update(std::uint64_t done) {
  if (!on_) return;
  const auto now = std::chrono::steady_clock::now();
  if (!drawn_ && !at_once_ && now - start_ < std::chrono::seconds(1)) return;
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

[[noreturn]] void stdout_failed(int err) {
  if (err == EPIPE) {
    std::signal(SIGPIPE, SIG_DFL);
    std::raise(SIGPIPE);
  }
  throw std::runtime_error(std::string("cannot write to standard output: ") + std::strerror(err));
}

}  // namespace

void flush_stdout() {
  // errno is the failed write's (the flush's, or an earlier one that set the error flag).
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) stdout_failed(errno ? errno : EIO);
}

int printing(const std::function<int()>& body) {
  int status = 0;
  try {
    status = body();
  } catch (const std::system_error& e) {  // fmt::print's, naming no file: the stream says whose
    if (!std::ferror(stdout)) throw;
    stdout_failed(e.code().value());
  }
  flush_stdout();
  return status;
}

int contained(const std::string& file, const std::function<int()>& body) {
  // The worker prints: its write errors are told there, before it answers.
  const std::string status = run_contained(file, [&] { return std::to_string(printing(body)); });
  return std::stoi(status);
}

std::string hex_code(std::uint32_t bits, const format& f) {
  return fmt::format("0x{:0{}x}", bits, (f.bits + 3) / 4);
}

}  // namespace fpscope::cli
