// Containment of third-party parsers: work on a hostile file (libhdf5 reading a crafted trace
// can crash or loop forever) runs in a forked worker process, so that a crash or a hang becomes
// one error naming the file instead of a dead or stuck caller. The CLI and the Python module use
// the same worker.
#pragma once

#include <functional>
#include <stdexcept>
#include <string>

namespace fpscope {

/// The worker failed: it crashed (a signal), stalled (see below), or `body` threw. One line.
class contained_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The default stall limit, and the one in effect: FPSCOPE_STALL_SECONDS (0: none), else
/// default_stall_seconds. A malformed value throws option_error.
inline constexpr double default_stall_seconds = 60;
double stall_limit();

/// Runs `body` in a forked worker and returns the bytes it returned. In the worker `body` runs
/// on a thread of its own (GNU libgomp's thread pool does not survive fork(): a parent that has
/// run an OpenMP region would leave the worker's first one waiting forever), and the worker dies
/// with the caller (Linux PR_SET_PDEATHSIG).
///
/// Errors: an option_error thrown by `body` comes back as an option_error, any other exception as
/// contained_error with its message. The worker must call heartbeat() at least every
/// stall_limit() seconds until heartbeat_done() (libhdf5 loops forever on some damaged files);
/// otherwise it is killed (SIGKILL) and contained_error says the file made no progress. A worker
/// killed by a signal gives contained_error naming `file` and the signal, except SIGINT, SIGTERM
/// and SIGHUP, which are raised again in the caller, and SIGPIPE (the worker wrote to a closed
/// pipe), which is raised in the caller too so that it ends as a pipe's reader expects.
/// `cancelled`, when given, is polled a few times a second: true kills the worker and throws
/// contained_error("cancelled"). Without fork (or without the pipe), `body` runs in the caller.
std::string run_contained(const std::string& file, const std::function<std::string()>& body,
                          const std::function<bool()>& cancelled = {});

/// In run_contained()'s worker: progress was made (a step, a tensor, a slab of values read).
/// Elsewhere it does nothing. Async-signal-safe and thread-safe.
void heartbeat() noexcept;
/// In run_contained()'s worker: the file has been read; what is left (reports, plots, output
/// that may block on a slow reader of stdout) has no stall limit.
void heartbeat_done() noexcept;
/// Kills the running worker of run_contained(), if any (async-signal-safe: for signal handlers).
void kill_worker() noexcept;

}  // namespace fpscope
