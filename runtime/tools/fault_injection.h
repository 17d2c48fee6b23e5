//===- fault_injection.h - per-tool injected faults -------------*- C++ -*-===//
//
// For tests and the stress benchmarks: each tool can be made to fail every
// Nth attempt, fail with probability p (seeded, so a run is reproducible),
// and/or sleep a fixed delay on every Mth attempt. The registry asks the
// injector before each attempt (retries count: they are calls too); a delay
// is spent inside the attempt, so it counts against the call's timeout.
//
// The decision for the n-th attempt depends only on (spec, n), never on
// timing or thread interleaving.
//
// JSON spec (FaultInjector::loadJson), "*" applying to every tool without
// its own entry:
//   {"http.get": {"fail_every": 9},
//    "*": {"delay_ms": 1100, "delay_every": 11,
//          "fail_probability": 0.05, "seed": 7}}
//
//===----------------------------------------------------------------------===//
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include <nlohmann/json.hpp>

namespace treni {

struct FaultSpec {
  int64_t failEvery = 0;        ///< fail attempts n % failEvery == 0 (0: off)
  double failProbability = 0.0; ///< fail with this probability (seeded)
  std::chrono::milliseconds delay{0}; ///< sleep this long ...
  int64_t delayEvery = 1;             ///< ... on attempts n % delayEvery == 0
  uint64_t seed = 0;                  ///< for failProbability

  bool active() const {
    return failEvery > 0 || failProbability > 0 || delay.count() > 0;
  }
  /// Keys: fail_every, fail_probability, delay_ms, delay_every, seed; any
  /// other key, a negative count or a probability outside [0, 1] is an error.
  static absl::StatusOr<FaultSpec> fromJson(const nlohmann::json &json);
  nlohmann::json toJson() const;
};

struct FaultDecision {
  int64_t attempt = 0; ///< 1-based count of this tool's attempts
  bool fail = false;
  std::chrono::milliseconds delay{0};
  std::string reason; ///< "fail_every 9 (attempt 18)", for the error message
};

/// Thread-safe. One counter per tool, reset when its spec is set.
class FaultInjector {
public:
  /// `tool` may be "*" (every tool without a spec of its own).
  void set(std::string_view tool, const FaultSpec &spec);
  void clear(std::string_view tool);
  void clearAll();
  /// Replaces every spec with those of `json` (an object of tool -> spec).
  /// On error nothing changes; the message names the tool and the key.
  absl::Status loadJson(const nlohmann::json &json);
  nlohmann::json toJson() const;

  /// Counts one attempt of `tool` and decides its fate.
  FaultDecision next(std::string_view tool);

private:
  mutable std::mutex mutex_;
  std::map<std::string, FaultSpec, std::less<>> specs_;
  std::map<std::string, int64_t, std::less<>> counters_;
};

/// A deterministic number in [0, 1) from (seed, index) (splitmix64). Shared
/// with the registry's backoff jitter.
double deterministicUnit(uint64_t seed, uint64_t index);

} // namespace treni
