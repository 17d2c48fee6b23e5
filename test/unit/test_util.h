//===- test_util.h - helpers shared by the unit tests -----------*- C++ -*-===//
#pragma once

#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace treni::testing_util {

/// Directory of a bundled fixture model (test/fixtures/NAME); the
/// environment's TRENI_FIXTURES_DIR overrides the build's, for a test binary
/// carried to another machine (the GPU one).
inline std::string fixtureDir(const std::string &name) {
  const char *moved = std::getenv("TRENI_FIXTURES_DIR");
  return std::string(moved && *moved ? moved : TRENI_FIXTURES_DIR) + "/" + name;
}

/// A status's message as a std::string (for HasSubstr and friends).
inline std::string messageOf(const absl::Status &status) {
  return std::string(status.message().data(), status.message().size());
}

/// max |a - b| / max |b|: the error measure of the issues (relative to the
/// reference row's scale, so near-zero logits do not dominate).
inline double relativeError(const std::vector<float> &actual,
                            const std::vector<float> &expected) {
  double maxDiff = 0, maxRef = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    maxDiff = std::max(maxDiff, std::abs(double(actual[i]) - expected[i]));
    maxRef = std::max(maxRef, std::abs(double(expected[i])));
  }
  return maxDiff / maxRef;
}

/// A fresh directory under the system's temporary one, removed with what it
/// holds at the end of the test.
class TempDir {
public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "treni-test-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data()) ? pattern : "";
    EXPECT_FALSE(path_.empty()) << "mkdtemp failed";
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir &) = delete;
  TempDir &operator=(const TempDir &) = delete;
  const std::string &path() const { return path_; }
  /// `name` inside the directory.
  std::string operator/(const std::string &name) const {
    return path_ + "/" + name;
  }

private:
  std::string path_;
};

} // namespace treni::testing_util
