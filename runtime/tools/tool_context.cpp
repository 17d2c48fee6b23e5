//===- tool_context.cpp - cancel tokens, deadlines, tool errors -----------===//

#include "runtime/tools/tool_context.h"

#include <algorithm>
#include <optional>
#include <thread>

#include "absl/strings/cord.h"

namespace treni {

namespace {
/// Status payload key for an explicit tool error type.
constexpr std::string_view kErrorTypePayload = "treni.dev/tool_error_type";
} // namespace

void CancelToken::cancel() {
  std::vector<std::weak_ptr<CancelToken>> children;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    cancelled_ = true;
    children.swap(children_);
  }
  cv_.notify_all();
  for (const std::weak_ptr<CancelToken> &weak : children)
    if (std::shared_ptr<CancelToken> child = weak.lock())
      child->cancel();
}

void CancelToken::link(const std::shared_ptr<CancelToken> &child) {
  if (!child || child.get() == this)
    return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!cancelled_) {
      std::erase_if(children_, [](const std::weak_ptr<CancelToken> &weak) {
        return weak.expired();
      });
      children_.push_back(child);
      return;
    }
  }
  child->cancel();
}

bool CancelToken::cancelled() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return cancelled_;
}

bool CancelToken::sleepFor(ToolClock::duration duration) const {
  std::unique_lock<std::mutex> lock(mutex_);
  return !cv_.wait_for(lock, duration, [this] { return cancelled_; });
}

ToolClock::duration ToolContext::remaining() const {
  if (!hasDeadline())
    return ToolClock::duration::max();
  return std::max(ToolClock::duration::zero(), deadline - ToolClock::now());
}

bool ToolContext::shouldStop() const {
  return (cancel && cancel->cancelled()) ||
         (hasDeadline() && ToolClock::now() >= deadline);
}

bool ToolContext::sleepFor(ToolClock::duration duration) const {
  ToolClock::duration left = remaining();
  bool cutByDeadline = left < duration;
  ToolClock::duration slept = std::min(duration, left);
  bool whole = true;
  if (cancel)
    whole = cancel->sleepFor(slept);
  else
    std::this_thread::sleep_for(slept);
  return whole && !cutByDeadline;
}

nlohmann::json ToolError::toJson() const {
  return {{"type", type}, {"message", message}, {"retryable", retryable}};
}

absl::Status toolErrorStatus(absl::StatusCode code, std::string_view type,
                             std::string_view message) {
  absl::Status status(code, toAbsl(message));
  status.SetPayload(toAbsl(kErrorTypePayload), absl::Cord(toAbsl(type)));
  return status;
}

bool isRetryableToolError(std::string_view type) {
  return type == tool_error::kTimeout || type == tool_error::kUnavailable ||
         type == tool_error::kInjectedFault;
}

ToolError toolErrorFromStatus(const absl::Status &status) {
  ToolError error;
  error.message = std::string(status.message());
  if (absl::optional<absl::Cord> type =
          status.GetPayload(toAbsl(kErrorTypePayload))) {
    error.type = std::string(*type);
  } else {
    switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
      error.type = tool_error::kInvalidArguments;
      break;
    case absl::StatusCode::kDeadlineExceeded:
      error.type = tool_error::kTimeout;
      break;
    case absl::StatusCode::kUnavailable:
      error.type = tool_error::kUnavailable;
      break;
    case absl::StatusCode::kPermissionDenied:
      error.type = tool_error::kPermissionDenied;
      break;
    case absl::StatusCode::kNotFound:
      error.type = tool_error::kNotFound;
      break;
    case absl::StatusCode::kResourceExhausted:
      error.type = tool_error::kTooLarge;
      break;
    case absl::StatusCode::kCancelled:
      error.type = tool_error::kCancelled;
      break;
    default:
      error.type = tool_error::kToolError;
      break;
    }
  }
  error.retryable = isRetryableToolError(error.type);
  return error;
}

} // namespace treni
