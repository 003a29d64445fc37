//===- TestSupport.h - helpers shared by the runtime's test areas -*- C++ -*-===//
//
// A self-removing temporary directory and the check that a call fails with
// a diffrt::Error whose message carries given fragments (the file, the
// field, the numbers).
//
//===----------------------------------------------------------------------===//
#pragma once

#include "diffrt/Error.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <unistd.h>
#include <vector>

namespace diffrt::testsupport {

class TempDir {
public:
  explicit TempDir(const std::string &prefix) {
    std::string pattern = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
    if (!::mkdtemp(pattern.data()))
      throw std::runtime_error("mkdtemp failed for " + pattern);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir &) = delete;
  TempDir &operator=(const TempDir &) = delete;

  std::string file(const std::string &name) const { return (path_ / name).string(); }
  const std::filesystem::path &path() const { return path_; }
  /// The names in the directory, sorted.
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (const auto &e : std::filesystem::directory_iterator(path_))
      out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }

private:
  std::filesystem::path path_;
};

/// Runs `body`, which must throw diffrt::Error containing every fragment.
inline void expectError(const std::function<void()> &body, std::initializer_list<std::string> fragments) {
  try {
    body();
  } catch (const Error &e) {
    std::string message = e.what();
    for (const std::string &fragment : fragments)
      EXPECT_NE(message.find(fragment), std::string::npos)
          << "message \"" << message << "\" lacks \"" << fragment << "\"";
    return;
  }
  ADD_FAILURE() << "no diffrt::Error was thrown";
}

} // namespace diffrt::testsupport
