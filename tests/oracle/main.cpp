// Catch2 v2 runner with skips: a test case whose oracle is missing calls oracle::skip(), and
// a run with no failure but a skip prints "SKIPPED: <reason>" and exits 77, which ctest
// reports as Skipped (SKIP_RETURN_CODE 77).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "oracle.hpp"

namespace {
std::vector<std::string>& skips() {
  static std::vector<std::string> s;
  return s;
}
}  // namespace

void oracle::skip(const std::string& reason) {
  skips().push_back(reason);
}

int main(int argc, char** argv) {
  // Oracles run under the default floating-point environment: F16C obeys MXCSR.DAZ, and
  // libgcc and the CUDA host code read its rounding control. Threads inherit it.
  oracle::set_mxcsr_default();
  Catch::Session session;
  if (const int rc = session.applyCommandLine(argc, argv); rc != 0) return rc;
  // A test name that matches nothing must fail, not pass with nothing run.
  auto& cfg = session.configData();
  cfg.warnings = static_cast<Catch::WarnAbout::What>(cfg.warnings | Catch::WarnAbout::NoTests);
  const int failed = session.run();
  if (failed == 0 && !skips().empty()) {
    for (const auto& s : skips()) std::printf("SKIPPED: %s\n", s.c_str());
    return 77;
  }
  return failed;
}
