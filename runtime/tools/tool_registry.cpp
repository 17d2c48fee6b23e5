//===- tool_registry.cpp - timeouts, retries, faults ----------------------===//

#include "runtime/tools/tool_registry.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace treni {

namespace {

struct AtomicStats {
  std::atomic<int64_t> calls{0}, attempts{0}, successes{0}, failures{0},
      timeouts{0}, injectedFailures{0}, running{0};
};

/// Where an attempt on its own thread leaves its outcome.
struct AttemptState {
  std::mutex mutex;
  std::condition_variable done;
  bool finished = false;
  std::atomic<bool> started{false}; ///< the tool's own body was entered
  absl::StatusOr<nlohmann::json> outcome = absl::UnknownError("not run");
};

double toMillis(std::chrono::nanoseconds duration) {
  return std::chrono::duration<double, std::milli>(duration).count();
}

/// too_large unless `value` nests at most kMaxJsonDepth deep and its JSON
/// text is at most `maxBytes`. The depth is checked first: measuring the
/// text of a deeper value would recurse as deep.
absl::Status checkResultBounds(std::string_view tool,
                               const nlohmann::json &value, size_t maxBytes) {
  if (jsonValueDepth(value) > kMaxJsonDepth)
    return absl::ResourceExhaustedError(absl::StrCat(
        "tool '", toAbsl(tool), "' returned JSON nested deeper than ",
        kMaxJsonDepth, " levels of arrays and objects"));
  size_t bytes = dumpJson(value).size();
  if (bytes > maxBytes)
    return absl::ResourceExhaustedError(
        absl::StrCat("tool '", toAbsl(tool), "' returned ", bytes,
                     " bytes of JSON, over the limit of ", maxBytes,
                     " bytes (the registry's maxResultBytes)"));
  return absl::OkStatus();
}

} // namespace

struct ToolRegistry::Entry {
  ToolSignature signature;
  ToolFunction function;
  std::shared_ptr<AtomicStats> stats = std::make_shared<AtomicStats>();
};

std::chrono::milliseconds backoffDelay(const CallOptions &options, int retry) {
  if (retry < 1 || options.backoffBase.count() <= 0)
    return std::chrono::milliseconds(0);
  int64_t cap = std::max<int64_t>(0, options.backoffCap.count());
  int64_t delay = options.backoffBase.count();
  for (int i = 1; i < retry && delay < cap; ++i)
    delay *= 2;
  delay = std::min(delay, cap);
  if (options.jitter) {
    double unit = deterministicUnit(options.jitterSeed, uint64_t(retry));
    delay = delay / 2 + int64_t(unit * double(delay - delay / 2));
  }
  return std::chrono::milliseconds(delay);
}

nlohmann::json ToolResult::toJson() const {
  nlohmann::json json = {{"ok", ok}};
  if (ok)
    json["value"] = value;
  else
    json["error"] = error.toJson();
  json["attempts"] = attempts;
  json["latency_ms"] = toMillis(latency);
  nlohmann::json log = nlohmann::json::array();
  for (const ToolAttempt &attempt : attemptLog) {
    nlohmann::json entry = {{"ok", attempt.ok},
                            {"latency_ms", toMillis(attempt.latency)},
                            {"backoff_ms", toMillis(attempt.backoffBefore)}};
    if (!attempt.ok)
      entry["error"] = attempt.error.toJson();
    if (attempt.injectedDelay)
      entry["injected_delay"] = true;
    log.push_back(std::move(entry));
  }
  json["attempt_log"] = std::move(log);
  return json;
}

ToolRegistry::ToolRegistry() : faults_(std::make_shared<FaultInjector>()) {}
ToolRegistry::~ToolRegistry() = default;

absl::Status ToolRegistry::add(ToolSignature signature, ToolFunction function) {
  if (absl::Status status = validateSignature(signature); !status.ok())
    return status;
  if (!function)
    return absl::InvalidArgumentError(
        absl::StrCat("tool '", signature.name, "' has no function"));
  std::string name = signature.name;
  std::string openAi = openAiToolName(name);
  std::unique_lock lock(mutex_);
  if (tools_.count(name))
    return absl::AlreadyExistsError(
        absl::StrCat("tool '", name, "' is already registered"));
  if (auto it = openAiNames_.find(openAi); it != openAiNames_.end())
    return absl::AlreadyExistsError(
        absl::StrCat("tool '", name, "' has the OpenAI name '", openAi,
                     "' of the registered tool '", it->second, "'"));
  auto entry = std::make_shared<Entry>();
  entry->signature = std::move(signature);
  entry->function = std::move(function);
  tools_.emplace(name, std::move(entry));
  openAiNames_.emplace(openAi, name);
  return absl::OkStatus();
}

bool ToolRegistry::remove(std::string_view name) {
  std::unique_lock lock(mutex_);
  auto it = tools_.find(name);
  if (it == tools_.end())
    return false;
  openAiNames_.erase(openAiToolName(name));
  tools_.erase(it);
  return true;
}

bool ToolRegistry::contains(std::string_view name) const {
  return find(name) != nullptr;
}

std::shared_ptr<const ToolRegistry::Entry>
ToolRegistry::find(std::string_view name) const {
  std::shared_lock lock(mutex_);
  if (auto it = tools_.find(name); it != tools_.end())
    return it->second;
  if (auto alias = openAiNames_.find(name); alias != openAiNames_.end())
    if (auto it = tools_.find(alias->second); it != tools_.end())
      return it->second;
  return nullptr;
}

absl::StatusOr<std::string>
ToolRegistry::resolveName(std::string_view name) const {
  if (std::shared_ptr<const Entry> entry = find(name))
    return entry->signature.name;
  std::shared_lock lock(mutex_);
  std::vector<std::string> names;
  for (const auto &[known, entry] : tools_)
    names.push_back(known);
  std::string known =
      names.empty() ? std::string("no tools are registered")
                    : absl::StrCat("registered: ", absl::StrJoin(names, ", "));
  return absl::NotFoundError(
      absl::StrCat("unknown tool '", toAbsl(name), "' (", known, ")"));
}

absl::StatusOr<ToolSignature>
ToolRegistry::signature(std::string_view name) const {
  absl::StatusOr<std::string> resolved = resolveName(name);
  if (!resolved.ok())
    return resolved.status();
  std::shared_ptr<const Entry> entry = find(*resolved);
  if (!entry)
    return absl::NotFoundError(
        absl::StrCat("unknown tool '", toAbsl(name), "'"));
  return entry->signature;
}

std::vector<ToolSignature> ToolRegistry::signatures() const {
  std::shared_lock lock(mutex_);
  std::vector<ToolSignature> result;
  for (const auto &[name, entry] : tools_)
    result.push_back(entry->signature);
  return result;
}

nlohmann::json ToolRegistry::toJson() const {
  nlohmann::json tools = nlohmann::json::array();
  for (const ToolSignature &signature : signatures())
    tools.push_back(signature.toJson());
  return {{"format", "treni.tools/1"}, {"tools", std::move(tools)}};
}

nlohmann::json ToolRegistry::toOpenAiTools() const {
  nlohmann::json tools = nlohmann::json::array();
  for (const ToolSignature &signature : signatures())
    tools.push_back(signature.toOpenAiTool());
  return tools;
}

absl::StatusOr<nlohmann::json>
ToolRegistry::validateArguments(std::string_view name,
                                const nlohmann::json &args) const {
  std::shared_ptr<const Entry> entry = find(name);
  if (!entry)
    return resolveName(name).status();
  return validateToolArguments(entry->signature, args);
}

ToolStats ToolRegistry::stats(std::string_view name) const {
  ToolStats stats;
  std::shared_ptr<const Entry> entry = find(name);
  if (!entry)
    return stats;
  const AtomicStats &s = *entry->stats;
  stats.calls = s.calls.load();
  stats.attempts = s.attempts.load();
  stats.successes = s.successes.load();
  stats.failures = s.failures.load();
  stats.timeouts = s.timeouts.load();
  stats.injectedFailures = s.injectedFailures.load();
  stats.running = s.running.load();
  return stats;
}

namespace {

/// One attempt's body: the injected delay and failure, then the tool (its
/// exceptions caught).
absl::StatusOr<nlohmann::json> runBody(const ToolFunction &function,
                                       const nlohmann::json &args,
                                       const ToolContext &context,
                                       const FaultDecision &fault,
                                       std::atomic<bool> *started = nullptr) {
  if (fault.delay.count() > 0 && !context.sleepFor(fault.delay))
    return absl::DeadlineExceededError(
        absl::StrCat("tool '", context.tool, "': injected delay of ",
                     fault.delay.count(), " ms outlasted the timeout"));
  if (fault.fail)
    return toolErrorStatus(absl::StatusCode::kUnavailable,
                           tool_error::kInjectedFault,
                           absl::StrCat("tool '", context.tool,
                                        "': injected fault, ", fault.reason));
  if (started)
    *started = true;
  try {
    return function(args, context);
  } catch (const std::exception &e) {
    return absl::InternalError(
        absl::StrCat("tool '", context.tool, "' threw: ", e.what()));
  } catch (...) {
    return absl::InternalError(absl::StrCat(
        "tool '", context.tool, "' threw a non-standard exception"));
  }
}

/// Runs one attempt under `timeout` (0: inline on this thread). An attempt
/// of a state-changing tool abandoned after the tool started fails as
/// outcome_unknown, not timeout.
absl::StatusOr<nlohmann::json>
runAttempt(std::shared_ptr<const ToolFunction> function,
           std::shared_ptr<AtomicStats> stats, nlohmann::json args,
           ToolContext context, FaultDecision fault,
           std::chrono::milliseconds timeout,
           const std::shared_ptr<CancelToken> &callerCancel, bool readOnly) {
  if (timeout.count() <= 0 && !callerCancel)
    return runBody(*function, args, context, fault);

  auto state = std::make_shared<AttemptState>();
  std::shared_ptr<CancelToken> cancel = context.cancel;
  ToolClock::time_point deadline = context.deadline;
  std::string tool = context.tool;
  ++stats->running;
  try {
    std::thread([state, stats, function, args = std::move(args),
                 context = std::move(context), fault] {
      absl::StatusOr<nlohmann::json> outcome =
          runBody(*function, args, context, fault, &state->started);
      --stats->running;
      {
        std::lock_guard<std::mutex> lock(state->mutex);
        state->outcome = std::move(outcome);
        state->finished = true;
      }
      state->done.notify_all();
    }).detach();
  } catch (const std::system_error &e) {
    --stats->running;
    return absl::UnavailableError(absl::StrCat(
        "tool '", tool, "': cannot start a thread for the call: ", e.what()));
  }
  // Wakes at the deadline, and every 20 ms to see the caller's cancellation.
  std::unique_lock<std::mutex> lock(state->mutex);
  while (!state->finished) {
    if (callerCancel && callerCancel->cancelled()) {
      cancel->cancel();
      return absl::CancelledError(
          absl::StrCat("tool '", tool, "': the call was cancelled"));
    }
    if (ToolClock::now() >= deadline) {
      cancel->cancel();
      if (!readOnly && state->started)
        return toolErrorStatus(
            absl::StatusCode::kDeadlineExceeded, tool_error::kOutcomeUnknown,
            absl::StrCat("tool '", tool, "' did not finish within ",
                         timeout.count(),
                         " ms and may still take effect (attempt abandoned; "
                         "a state-changing tool is not retried)"));
      return absl::DeadlineExceededError(
          absl::StrCat("tool '", tool, "' did not finish within ",
                       timeout.count(), " ms (attempt abandoned)"));
    }
    ToolClock::time_point wake =
        ToolClock::now() + std::chrono::milliseconds(20);
    state->done.wait_until(lock,
                           callerCancel ? std::min(wake, deadline) : deadline);
  }
  return std::move(state->outcome);
}

} // namespace

ToolResult ToolRegistry::call(std::string_view name, const nlohmann::json &args,
                              const CallOptions &options) {
  ToolClock::time_point start = ToolClock::now();
  ToolResult result;
  auto fail = [&](ToolError error) {
    result.ok = false;
    result.error = std::move(error);
    result.latency = ToolClock::now() - start;
    return result;
  };

  std::shared_ptr<const Entry> entry = find(name);
  if (!entry) {
    ToolError error = toolErrorFromStatus(resolveName(name).status());
    error.type = tool_error::kUnknownTool;
    return fail(std::move(error));
  }
  AtomicStats &stats = *entry->stats;
  ++stats.calls;
  absl::StatusOr<nlohmann::json> validated =
      jsonValueDepth(args) > kMaxJsonDepth
          ? absl::InvalidArgumentError(
                absl::StrCat("tool '", entry->signature.name,
                             "': the arguments are nested deeper than ",
                             kMaxJsonDepth, " levels of arrays and objects"))
          : validateToolArguments(entry->signature, args);
  if (!validated.ok()) {
    ++stats.failures;
    return fail(toolErrorFromStatus(validated.status()));
  }
  // Shared with abandoned attempts, which may outlive this entry.
  auto function = std::shared_ptr<const ToolFunction>(entry, &entry->function);
  size_t maxResultBytes = maxResultBytes_;

  int maxAttempts = 1 + std::max(0, options.retries);
  for (int attempt = 1; attempt <= maxAttempts; ++attempt) {
    ToolAttempt log;
    if (attempt > 1) {
      std::chrono::milliseconds backoff = backoffDelay(options, attempt - 1);
      if (options.cancel)
        options.cancel->sleepFor(backoff);
      else
        std::this_thread::sleep_for(backoff);
      log.backoffBefore = backoff;
    }
    if (options.cancel && options.cancel->cancelled()) {
      result.error = toolErrorFromStatus(absl::CancelledError(absl::StrCat(
          "tool '", entry->signature.name, "': the call was cancelled")));
      break;
    }
    FaultDecision fault = faults_->next(entry->signature.name);
    log.injectedDelay = fault.delay.count() > 0;
    ToolContext context;
    context.tool = entry->signature.name;
    context.attempt = attempt;
    if (options.timeout.count() > 0)
      context.deadline = ToolClock::now() + options.timeout;
    if (options.cancel)
      options.cancel->link(context.cancel);

    ToolClock::time_point attemptStart = ToolClock::now();
    ++stats.attempts;
    absl::StatusOr<nlohmann::json> outcome = runAttempt(
        function, entry->stats, *validated, std::move(context), fault,
        options.timeout, options.cancel, entry->signature.readOnly);
    if (outcome.ok())
      if (absl::Status bounds = checkResultBounds(entry->signature.name,
                                                  *outcome, maxResultBytes);
          !bounds.ok())
        outcome = std::move(bounds);
    log.latency = ToolClock::now() - attemptStart;
    result.attempts = attempt;
    if (outcome.ok()) {
      log.ok = true;
      result.attemptLog.push_back(std::move(log));
      result.ok = true;
      result.value = std::move(*outcome);
      result.error = ToolError();
      break;
    }
    ToolError error = toolErrorFromStatus(outcome.status());
    if (error.type == tool_error::kTimeout ||
        error.type == tool_error::kOutcomeUnknown)
      ++stats.timeouts;
    if (error.type == tool_error::kInjectedFault)
      ++stats.injectedFailures;
    log.error = error;
    result.attemptLog.push_back(std::move(log));
    result.error = std::move(error);
    if (!result.error.retryable)
      break;
  }
  ++(result.ok ? stats.successes : stats.failures);
  result.latency = ToolClock::now() - start;
  return result;
}

} // namespace treni
