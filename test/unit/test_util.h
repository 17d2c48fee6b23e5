//===- test_util.h - helpers shared by the unit tests -----------*- C++ -*-===//
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/status.h"

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

} // namespace treni::testing_util
