//===- tool_registry.h - named tools: timeouts, retries ---------*- C++ -*-===//
//
// The agent executor's view of tools: a name, a declared signature, and
// call(name, args, options) -> ToolResult. The registry
//  - validates the arguments against the signature before the tool runs;
//  - enforces the timeout: the attempt runs on its own thread, and when the
//    deadline passes the caller gets a "timeout" error at once while the
//    attempt is cancelled (its ToolContext says so) and abandoned: it keeps
//    running until the tool returns, holding only shared state, and its
//    result is dropped. Tools that can stop early (the built-ins, external
//    processes, which are killed) do so. Without a timeout the tool runs on
//    the caller's thread, with no thread hop. If the tool is not read-only
//    and had already started (it was not still in an injected delay), the
//    error is "outcome_unknown" instead, which is not retried: the abandoned
//    attempt may still have taken effect, and a retry could apply it twice;
//  - retries retryable errors (timeout, unavailable, injected_fault) with
//    exponential backoff, min(cap, base * 2^(k-1)), halved and jittered
//    deterministically from a seed ("equal jitter": [d/2, d));
//  - applies fault injection (fault_injection.h) to every attempt;
//  - bounds what a call hands back: arguments nested deeper than
//    kMaxJsonDepth are invalid_arguments, and a result nested deeper, or
//    whose JSON text is over maxResultBytes() (16 MiB by default), is a
//    too_large error (not retried) instead of a value: never truncated,
//    since half a JSON value is no value, and never kept in the trace;
//  - is safe to call from many threads at once (tools run concurrently; a
//    tool's own state must be thread-safe, as the built-ins are).
//
//===----------------------------------------------------------------------===//
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/tools/fault_injection.h"
#include "runtime/tools/tool_context.h"
#include "runtime/tools/tool_signature.h"
#include "support/json_bounded.h"
#include <nlohmann/json.hpp>

namespace treni {

/// The default cap on a tool result's JSON text (ToolRegistry::
/// setMaxResultBytes).
inline constexpr size_t kDefaultMaxToolResultBytes = size_t(16) << 20;

/// A tool's body. Receives validated arguments (defaults filled in). Fails
/// by returning a status (see toolErrorFromStatus); an exception it throws
/// is caught and reported as a tool_error.
using ToolFunction = std::function<absl::StatusOr<nlohmann::json>(
    const nlohmann::json &args, const ToolContext &context)>;

struct CallOptions {
  /// Per-attempt limit; 0 = none (the tool runs on the caller's thread).
  std::chrono::milliseconds timeout{0};
  int retries = 0; ///< extra attempts after a retryable error
  std::chrono::milliseconds backoffBase{50};
  std::chrono::milliseconds backoffCap{2000};
  bool jitter = true;
  uint64_t jitterSeed = 0;
  /// The caller's cancellation (a workflow aborted, a client gone): stops
  /// the backoff and the running attempt (its context is cancelled; the
  /// caller stops waiting for it), and the call fails as "cancelled".
  std::shared_ptr<CancelToken> cancel;
};

/// The wait before retry `retry` (1-based): d = min(cap, base * 2^(retry-1)),
/// then, with jitter, d/2 + u * d/2 with u = deterministicUnit(seed, retry).
std::chrono::milliseconds backoffDelay(const CallOptions &options, int retry);

struct ToolAttempt {
  bool ok = false;
  ToolError error; ///< empty type when ok
  std::chrono::nanoseconds latency{0};
  std::chrono::nanoseconds backoffBefore{0};
  bool injectedDelay = false;
};

struct ToolResult {
  bool ok = false;
  nlohmann::json value; ///< the tool's result (null on failure)
  ToolError error;      ///< the last attempt's error (empty type when ok)
  int attempts = 0;
  std::chrono::nanoseconds latency{0}; ///< whole call, backoff included
  std::vector<ToolAttempt> attemptLog;

  /// {"ok", "value" | "error": {type, message, retryable}, "attempts",
  /// "latency_ms", "attempt_log": [{ok, error?, latency_ms, backoff_ms}]}.
  nlohmann::json toJson() const;
};

/// Counters per tool (monotonic, except running).
struct ToolStats {
  int64_t calls = 0, attempts = 0, successes = 0, failures = 0, timeouts = 0,
          injectedFailures = 0;
  /// Attempts on their own thread that have not returned yet (abandoned
  /// ones included).
  int64_t running = 0;
};

class ToolRegistry {
public:
  ToolRegistry();
  ~ToolRegistry();
  ToolRegistry(const ToolRegistry &) = delete;
  ToolRegistry &operator=(const ToolRegistry &) = delete;

  /// Registers a tool. Errors: an invalid signature, a name (or its OpenAI
  /// name) already taken.
  absl::Status add(ToolSignature signature, ToolFunction function);
  bool remove(std::string_view name);
  bool contains(std::string_view name) const;

  /// The registered name for `name` or its OpenAI form ("sqlite_query" ->
  /// "sqlite.query"); NotFound naming the known tools otherwise.
  absl::StatusOr<std::string> resolveName(std::string_view name) const;
  absl::StatusOr<ToolSignature> signature(std::string_view name) const;
  std::vector<ToolSignature> signatures() const; ///< sorted by name

  /// {"format": "treni.tools/1", "tools": [signature.toJson(), ...]}.
  nlohmann::json toJson() const;
  /// OpenAI `tools` array for the chat template / API.
  nlohmann::json toOpenAiTools() const;

  /// Validates `args` against the tool's signature (defaults filled in).
  absl::StatusOr<nlohmann::json>
  validateArguments(std::string_view name, const nlohmann::json &args) const;

  /// Calls a tool (by its name or OpenAI name). Never throws; every failure
  /// is in the result.
  ToolResult call(std::string_view name, const nlohmann::json &args,
                  const CallOptions &options = {});

  FaultInjector &faults() { return *faults_; }
  ToolStats stats(std::string_view name) const;

  /// The largest result, as JSON text, a call returns; a larger one fails
  /// the call as too_large. Applies to calls that start after it is set.
  void setMaxResultBytes(size_t bytes) { maxResultBytes_ = bytes; }
  size_t maxResultBytes() const { return maxResultBytes_; }

  struct Entry; ///< implementation detail (shared with running attempts)

private:
  std::shared_ptr<const Entry> find(std::string_view name) const;

  mutable std::shared_mutex mutex_;
  std::map<std::string, std::shared_ptr<const Entry>, std::less<>> tools_;
  std::map<std::string, std::string, std::less<>> openAiNames_;
  std::shared_ptr<FaultInjector> faults_;
  std::atomic<size_t> maxResultBytes_{kDefaultMaxToolResultBytes};
};

} // namespace treni
