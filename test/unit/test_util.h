//===- test_util.h - helpers shared by the unit tests -----------*- C++ -*-===//
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace treni::testing_util {

/// Directory of a bundled fixture model (test/fixtures/NAME).
inline std::string fixtureDir(const std::string &name) {
  return std::string(TRENI_FIXTURES_DIR) + "/" + name;
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
