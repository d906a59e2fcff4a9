// The trace tests' scratch files: one directory per test process under the temp directory.
#pragma once

#include <filesystem>
#include <string>
#include <unistd.h>

inline std::filesystem::path scratch(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("fpscope_trace_tests_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return dir / name;
}
