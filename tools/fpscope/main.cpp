// fpscope: the command-line front end. Subcommands live one per file and register themselves
// (see cli.hpp); this file parses, dispatches and turns every failure into one line on stderr.
#include <malloc.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <string>
#include <utility>

#include "cli.hpp"
#include "text.hpp"
#include "fpscope/contain.hpp"
#include "fpscope/output.hpp"

#ifndef FPSCOPE_VERSION
#define FPSCOPE_VERSION "unknown"
#endif

namespace {

using namespace fpscope::cli;

}  // namespace

// One line, never throws: newlines folded, "fpscope: error: " in front.
void fpscope::cli::report(const char* what) noexcept {
  try {
    std::string msg = what ? what : "unknown error";
    for (auto& c : msg)
      if (c == '\n' || c == '\r') c = ' ';
    // Messages quote file text (a tensor name, a path): escaped, never sent raw to a terminal.
    msg = printable(msg);
    while (!msg.empty() && msg.back() == ' ') msg.pop_back();
    const std::string head = paint(use_colour(stderr), fmt::fg(fmt::terminal_color::bright_red) | fmt::emphasis::bold,
                                   "fpscope: error:");
    std::fprintf(stderr, "%s %s\n", head.c_str(), msg.c_str());
  } catch (...) {
    std::fputs("fpscope: error: (out of memory while reporting an error)\n", stderr);
  }
}

namespace {

// An interrupted `convert` must not leave its temporary output behind, nor `replay` its worker.
// (Outputs are unnamed files until complete: only the named fallback needs removing.)
extern "C" void on_signal(int sig) {
  fpscope::kill_worker();
  fpscope::remove_output_temporaries();
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

int run(int argc, char** argv) {
  // Chunk-sized buffers (HDF5's inflate buffers, the values streamed per tensor) would each be a
  // fresh mmap, paying a page fault per 4 KiB every time: measured 1.8x slower trace reading
  // (tools/bench/RESULTS-replay.md). Keep them in the heap instead.
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) std::signal(sig, on_signal);
  // A closed pipe on stdout (`fpscope replay run.h5 | head`) ends fpscope quietly by SIGPIPE,
  // exit status 141 in a shell, as any Unix tool: also when the caller left SIGPIPE ignored
  // (Python's subprocess with restore_signals=False, some CI runners), which would otherwise
  // turn each write into an EPIPE error message.
  std::signal(SIGPIPE, SIG_DFL);
  // Past the file size limit (ulimit -f), a write fails with EFBIG, reported as one line naming
  // the output, instead of killing the process.
  std::signal(SIGXFSZ, SIG_IGN);

  CLI::App app{"fpscope: emulate low-precision floating point bit-exactly", "fpscope"};
  app.set_version_flag("--version", "fpscope " FPSCOPE_VERSION);
  app.require_subcommand(1, 1);
  app.get_formatter()->column_width(28);
  app.footer(
      "Examples:\n"
      "  fpscope formats                      table of every built-in format\n"
      "  fpscope cast 0.1 --to bf16           what 0.1 becomes in bfloat16, exactly\n"
      "  fpscope convert w.npy --to e4m3 -o w8.npy\n"
      "  fpscope <command> --help             options and examples of a command\n"
      "\n"
      "Exit status:\n"
      "  0  success\n"
      "  1  runtime error: I/O, a bad or unsupported .npy file\n"
      "  2  usage error: bad option, unknown format/rounding/profile, malformed VALUE\n"
      "  141  (as a shell shows it) killed by SIGPIPE: stdout closed by its reader (| head), a quiet end");

  auto& cmds = commands();
  std::stable_sort(cmds.begin(), cmds.end(), [](const command& a, const command& b) { return a.order < b.order; });
  std::vector<std::pair<CLI::App*, runner>> runners;
  for (const auto& c : cmds) {
    runner r = c.setup(app);
    runners.emplace_back(app.get_subcommand(std::string(c.name)), std::move(r));
  }

  // An unknown command or option name reads better than CLI11's "A subcommand is required".
  if (argc > 1 && argv[1][0] == '-') {
    const std::string_view first = argv[1];
    if (first != "-h" && first != "--help" && first != "--version")
      throw usage_error("unknown option '" + std::string(first) + "' (see 'fpscope --help')");
  }
  if (argc > 1 && argv[1][0] != '-') {
    const std::string_view first = argv[1];
    std::string known;
    bool found = false;
    for (const auto& c : cmds) {
      found = found || c.name == first;
      known += (known.empty() ? "" : ", ") + std::string(c.name);
    }
    if (!found) throw usage_error("unknown command '" + std::string(first) + "' (known: " + known + ")");
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return printing([&] { return app.exit(e); });  // --help, --version: on stdout
    std::string msg = e.what();
    if (msg.empty()) msg = e.get_name();
    std::string where = "fpscope";
    for (auto* sub = &app; !sub->get_subcommands().empty();) {
      sub = sub->get_subcommands().front();
      where += " " + sub->get_name();
    }
    throw usage_error(msg + " (see '" + where + " --help')");
  }

  for (auto& [sub, r] : runners)
    if (sub->parsed()) {
      return printing(r);
    }
  throw usage_error("a command is required (see 'fpscope --help')");
}

}  // namespace

int main(int argc, char** argv) noexcept {
  try {
    return run(argc, argv);
  } catch (const fpscope::option_error& e) {  // usage_error too
    report(e.what());
    return exit_usage;
  } catch (const std::exception& e) {
    report(e.what());
    return exit_runtime;
  } catch (...) {
    report("unexpected internal error");
    return exit_runtime;
  }
}
