//===- metrics.h - Prometheus counters for `treni serve` -----*- C++ -*-===//
//
// What GET /metrics exposes, in the Prometheus text format (version 0.0.4):
// requests by endpoint and status, errors by type, prompt and completion
// tokens, TTFT and request latency histograms, cancellations, and the queue
// depth. Thread-safe: HTTP threads and the engine worker both record.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace treni {

/// A cumulative histogram with fixed upper bounds (seconds).
class Histogram {
public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double value);
  /// `name_bucket{le="..."}`, `name_sum`, `name_count` lines.
  std::string render(const std::string &name) const;
  uint64_t count() const { return count_; }

private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_; ///< per bound, not cumulative; last is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

struct BatchStats;

/// The batch loops' gauges and counters (running and waiting sequences, KV
/// blocks, prefix-cache hits, steps and their sizes, preemptions), in the
/// same format, one sample per served model (label `model`), appended to
/// Metrics::render() by a batching server. Nothing for no loops.
std::string renderBatchMetrics(
    const std::vector<std::pair<std::string, BatchStats>> &loops);

class Metrics {
public:
  Metrics();
  void countRequest(const std::string &endpoint, int status);
  void countError(const std::string &type);
  void countCancelled();
  void countTimeout();
  void addTokens(int64_t prompt, int64_t completion);
  void observeTimeToFirstToken(double seconds);
  void observeLatency(double seconds);
  /// Prompt tokens served from the prefix cache.
  void addCachedTokens(int64_t cached);
  /// A request's mean time between tokens.
  void observeInterTokenLatency(double seconds);
  void setQueueDepth(int64_t waiting, int64_t running);

  /// The whole exposition text.
  std::string render() const;

  /// For tests: one counter's value (0 when never counted).
  uint64_t requests(const std::string &endpoint, int status) const;
  uint64_t errors(const std::string &type) const;
  uint64_t cancelled() const { return cancelled_; }
  uint64_t completionTokens() const { return completionTokens_; }
  int64_t queueDepth() const { return waiting_; }
  int64_t running() const { return running_; }

private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::map<std::string, uint64_t> errors_;
  Histogram ttft_, latency_, interToken_;
  std::atomic<uint64_t> cancelled_{0}, timeouts_{0}, promptTokens_{0},
      cachedTokens_{0}, completionTokens_{0};
  std::atomic<int64_t> waiting_{0}, running_{0};
};

} // namespace treni
