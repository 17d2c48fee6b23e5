//===- tool_context.h - deadlines, cancellation, errors ---------*- C++ -*-===//
//
// The pieces shared by the registry and every tool implementation:
//  - CancelToken: a flag the registry raises when it gives up on an attempt
//    (timeout); sleeping on it wakes up at once.
//  - ToolContext: the attempt's deadline and cancel token. A tool that can
//    stop early (SQLite, HTTP, subprocess, a sleeping test tool) polls it;
//    one that cannot is abandoned by the registry, not waited for.
//  - ToolError and the status <-> error mapping. Tools fail by returning an
//    absl::Status; its code gives the error type ("timeout", "unavailable",
//    ...), or toolErrorStatus() attaches a custom type (an external tool's
//    own error type) as a status payload.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "support/json.h"
#include <nlohmann/json.hpp>

namespace treni {

using ToolClock = std::chrono::steady_clock;

/// A one-way flag: once cancelled, stays cancelled. Thread-safe.
class CancelToken {
public:
  /// Cancels this token and every linked child.
  void cancel();
  bool cancelled() const;
  /// Sleeps for `duration` or until cancelled; true when it slept the whole
  /// duration.
  bool sleepFor(ToolClock::duration duration) const;
  /// Cancelling this token cancels `child` too (at once if it already is).
  /// Children are held weakly.
  void link(const std::shared_ptr<CancelToken> &child);

private:
  mutable std::mutex mutex_;
  mutable std::condition_variable cv_;
  bool cancelled_ = false;
  std::vector<std::weak_ptr<CancelToken>> children_;
};

/// Passed to a tool for one attempt. Copyable; an abandoned attempt keeps its
/// own copy (and a reference to the token), never the caller's.
struct ToolContext {
  std::string tool;
  int attempt = 1; ///< 1-based
  /// time_point::max() when the call has no timeout.
  ToolClock::time_point deadline = ToolClock::time_point::max();
  std::shared_ptr<CancelToken> cancel = std::make_shared<CancelToken>();

  bool hasDeadline() const { return deadline != ToolClock::time_point::max(); }
  /// Time left before the deadline (0 when past it; max() without one).
  ToolClock::duration remaining() const;
  /// The registry gave up on this attempt, or its deadline has passed.
  bool shouldStop() const;
  /// Sleeps `duration`, cut short by cancellation or the deadline; true when
  /// it slept the whole duration.
  bool sleepFor(ToolClock::duration duration) const;
};

/// Error types a ToolResult can carry (ToolError::type). External tools may
/// report others; they pass through unchanged.
namespace tool_error {
inline constexpr std::string_view kInvalidArguments = "invalid_arguments";
inline constexpr std::string_view kUnknownTool = "unknown_tool";
inline constexpr std::string_view kTimeout = "timeout";
/// A state-changing (not read-only) tool's attempt abandoned at its deadline
/// after the tool had started: it may still have taken effect, so it is not
/// retried (a retry could apply it twice).
inline constexpr std::string_view kOutcomeUnknown = "outcome_unknown";
inline constexpr std::string_view kUnavailable = "unavailable";
inline constexpr std::string_view kInjectedFault = "injected_fault";
inline constexpr std::string_view kPermissionDenied = "permission_denied";
inline constexpr std::string_view kNotFound = "not_found";
inline constexpr std::string_view kTooLarge = "too_large";
inline constexpr std::string_view kCancelled = "cancelled";
inline constexpr std::string_view kProtocolError = "protocol_error";
inline constexpr std::string_view kToolError = "tool_error";
} // namespace tool_error

struct ToolError {
  std::string type; ///< one of tool_error::k*, or an external tool's own
  std::string message;
  /// Whether the registry retries after it (timeout, unavailable, injected
  /// faults): retrying cannot fix bad arguments or a refused path.
  bool retryable = false;

  nlohmann::json toJson() const;
};

/// A status carrying an explicit error type (kept as a payload; the code
/// still decides retryability unless the type is timeout/unavailable/
/// injected_fault, which always retry).
absl::Status toolErrorStatus(absl::StatusCode code, std::string_view type,
                             std::string_view message);

/// The ToolError a failed status stands for: the payload type if present,
/// else by code (InvalidArgument -> invalid_arguments, DeadlineExceeded ->
/// timeout, Unavailable -> unavailable, PermissionDenied ->
/// permission_denied, NotFound -> not_found, ResourceExhausted -> too_large,
/// Cancelled -> cancelled, anything else -> tool_error).
ToolError toolErrorFromStatus(const absl::Status &status);

/// Whether errors of `type` are retried by the registry.
bool isRetryableToolError(std::string_view type);

/// Debian's Abseil has its own string_view (not std::string_view); StrCat and
/// Status take this.
inline absl::string_view toAbsl(std::string_view text) {
  return absl::string_view(text.data(), text.size());
}

} // namespace treni
