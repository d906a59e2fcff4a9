// The benchmarks' peers (numpy, torch, ml_dtypes) run in a Python subprocess that serves JSON
// requests, one per line, over two pipes: fpscope-bench-convert talks to peers.py,
// fpscope-bench-hist to hist_peers.py, fpscope-bench-arith to arith_peers.py.
#pragma once

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

extern char** environ;

namespace fpscope::bench {

/// A `python -u SCRIPT --serve` child; request() sends one JSON line and reads one back.
class peer_process {
 public:
  ~peer_process() { stop(); }

  bool start(const std::string& python, const std::string& script, std::string& why) {
    if (access(python.c_str(), X_OK) != 0) {
      why = "no python at " + python + " (run tools/setup.sh)";
      return false;
    }
    if (access(script.c_str(), R_OK) != 0) {
      why = "no peers script at " + script;
      return false;
    }
    int to_child[2], from_child[2];
    if (pipe(to_child) != 0) return why = "pipe failed", false;
    if (pipe(from_child) != 0) {
      close(to_child[0]);
      close(to_child[1]);
      return why = "pipe failed", false;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, to_child[0], 0);
    posix_spawn_file_actions_adddup2(&fa, from_child[1], 1);
    posix_spawn_file_actions_addclose(&fa, to_child[1]);
    posix_spawn_file_actions_addclose(&fa, from_child[0]);
    std::string a0 = python, a1 = "-u", a2 = script, a3 = "--serve";
    char* args[] = {a0.data(), a1.data(), a2.data(), a3.data(), nullptr};
    const int rc = posix_spawn(&pid_, python.c_str(), &fa, nullptr, args, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(to_child[0]);
    close(from_child[1]);
    if (rc != 0) {
      close(to_child[1]);
      close(from_child[0]);
      pid_ = -1;
      why = "cannot start " + python + ": " + std::strerror(rc);
      return false;
    }
    name_ = script.substr(script.find_last_of('/') + 1);
    to_ = fdopen(to_child[1], "w");
    from_ = fdopen(from_child[0], "r");
    return true;
  }

  // One request, one reply; nullopt (with why) if the process is gone or the reply is bad.
  std::optional<nlohmann::json> request(const nlohmann::json& req, std::string& why) {
    if (!to_ || !from_) return why = name_ + " is not running", std::nullopt;
    const std::string line = req.dump() + "\n";
    if (std::fputs(line.c_str(), to_) < 0 || std::fflush(to_) != 0) {
      why = name_ + " exited";
      stop();
      return std::nullopt;
    }
    char* buf = nullptr;
    std::size_t cap = 0;
    const ssize_t got = getline(&buf, &cap, from_);
    std::string reply = got > 0 ? std::string(buf, std::size_t(got)) : std::string();
    std::free(buf);
    if (got <= 0) {
      why = name_ + " exited (see its traceback above)";
      stop();
      return std::nullopt;
    }
    try {
      nlohmann::json j = nlohmann::json::parse(reply);
      if (j.contains("error")) {
        why = j["error"].get<std::string>();
        return std::nullopt;
      }
      return j;
    } catch (const std::exception& e) {
      why = "bad reply from " + name_ + ": " + e.what();
      return std::nullopt;
    }
  }

  bool running() const { return to_ != nullptr; }

  void stop() {
    if (to_) {
      std::fputs("{\"cmd\": \"quit\"}\n", to_);
      std::fclose(to_);
      to_ = nullptr;
    }
    if (from_) {
      std::fclose(from_);
      from_ = nullptr;
    }
    if (pid_ > 0) {
      int st = 0;
      waitpid(pid_, &st, 0);
      pid_ = -1;
    }
  }

 private:
  pid_t pid_ = -1;
  std::string name_ = "the peers script";
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
};

}  // namespace fpscope::bench
