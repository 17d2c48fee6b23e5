//===- agent_executor.h - runs agent IR in-process --------------*- C++ -*-===//
//
// The agent executor walks an `agent.workflow` (verified and, normally,
// processed by the agent passes: see agent_compiler.h) and runs it inside
// the runtime:
//
//  - `agent.generate` calls the model directly through a Generator (no HTTP):
//    the prompt is wrapped in the model's chat template as one user message
//    (AgentExecutorOptions::applyChatTemplate; a model without a template,
//    or the option off, gets the plain prompt), and the result keeps the
//    text, the tokens with their log-probabilities, entropies and top
//    alternatives, and the awareness summary (perplexity, max/mean entropy,
//    low-confidence tokens);
//  - `agent.tool` calls the ToolRegistry (timeouts, retries with backoff and
//    fault injection are the registry's); the calls of an `agent.parallel`
//    (made by agent-hoist-tools) run on their own threads at once;
//  - `agent.retry` re-runs its body with the attempt index and the previous
//    attempt's values; `agent.if` runs one region; `agent.return` ends the
//    workflow from any depth;
//  - every step (and every retry decision) is traced as JSON and can be
//    streamed to a callback as it happens.
//
// Generate steps reuse the KV cache of the prompt prefix they share with
// what the engine last saw (the Generator's prefix caching; see
// generation.h): two steps whose prompts share a prefix (`prefix_group`
// from agent-share-prefix) prefill only the second one's suffix when they
// run one after the other on the same model. Each generate step's trace
// records `reused_tokens` (prompt tokens not prefilled) and, for a grouped
// step, `prefix: {group, bytes, reused}`.
//
// A workflow that fails (bad arguments, an unknown tool or model, an engine
// error, an invalid regex) ends with an error naming the step and its
// FILE:LINE:COLUMN; a tool that fails does not fail the workflow (the
// workflow tests ok()/failed()). Nothing here throws or aborts.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/OwningOpRef.h"
#include "nlohmann/json.hpp"
// The compile driver (agent_compiler.h) and the tools configuration
// (agent_tool_config.h) are files of their own; included here for the
// callers that still reach them through this header.
#include "runtime/agent/agent_compiler.h"
#include "runtime/agent/agent_tool_config.h"

namespace treni {

class ChatTemplate;
class TextGenerator;
class ToolRegistry;

struct AgentExecutorOptions {
  /// Wrap each generate prompt in the model's chat template (one user
  /// message, generation prompt added). Off, or for a model without a
  /// template: the prompt is a plain completion prompt.
  bool applyChatTemplate = true;
  /// A token is low-confidence when its probability is below this.
  double lowConfidenceThreshold = 0.5;
  /// Top alternatives kept per generated token (0..20).
  int numAlternatives = 5;
  /// Defaults for options a generate step leaves out.
  int64_t defaultMaxTokens = 64;
  double defaultTemperature = 0.0;
  /// Run the calls of an agent.parallel concurrently (off: one by one, in
  /// order; for A/B measurements).
  bool parallelTools = true;
  /// Seed of the registry's backoff jitter.
  uint64_t jitterSeed = 0;
  /// Backoff between a tool's attempts (see CallOptions).
  std::chrono::milliseconds backoffBase{50};
  std::chrono::milliseconds backoffCap{2000};
  /// Checked before every step; when set, the run ends with a Cancelled
  /// error (a server sets it when the client goes away).
  const std::atomic<bool> *cancel = nullptr;
  /// Bounds on what a workflow (outside input) can make the executor do: a
  /// string a format op builds, and the events of one run's trace (every
  /// step and every retry decision is one, so this also bounds the
  /// iterations of nested retries). Past either, the run fails and says so.
  size_t maxStringBytes = size_t{1} << 20;
  size_t maxTraceEvents = 10000;
};

/// A model the workflows can name (`model "NAME"`; absent: the default).
struct AgentModel {
  std::string name;
  TextGenerator *generator = nullptr;         ///< not owned
  const ChatTemplate *chatTemplate = nullptr; ///< may be null; not owned
};

/// Called with each trace event as it is recorded (step, retry and the final
/// event); the same objects as AgentRunResult::trace.
using AgentEventCallback = std::function<void(const nlohmann::json &event)>;

struct AgentRunResult {
  /// The workflow's return value as JSON (a string, number, bool or JSON
  /// value; null for a workflow without a result).
  nlohmann::json value;
  /// Events in order: {"event": "step", ...}, {"event": "retry", ...}.
  nlohmann::json trace = nlohmann::json::array();
  double seconds = 0;
  int64_t steps = 0;        ///< generate and tool steps run
  int64_t toolFailures = 0; ///< tool steps that failed after their retries

  /// {"ok": true, "workflow", "value", "seconds", "steps", "tool_failures",
  ///  "trace": [...]}.
  nlohmann::json toJson(std::string_view workflow) const;
};

class AgentExecutor {
public:
  AgentExecutor(ToolRegistry &tools, AgentExecutorOptions options = {});
  ~AgentExecutor();
  AgentExecutor(const AgentExecutor &) = delete;
  AgentExecutor &operator=(const AgentExecutor &) = delete;

  /// Adds a model; the first one added is the default.
  void addModel(AgentModel model);

  /// Runs workflow `workflow` of `module` (empty: the module's only
  /// workflow). `args` binds parameters by name: a JSON string is parsed as
  /// the parameter's type (so `--arg n=3` works), other JSON values must
  /// fit the type. A parameter without an argument takes its default; one
  /// without either is an error. `onEvent` sees each trace event.
  absl::StatusOr<AgentRunResult>
  run(mlir::ModuleOp module, std::string_view workflow,
      const nlohmann::json &args = nlohmann::json::object(),
      const AgentEventCallback &onEvent = {});

  const AgentExecutorOptions &options() const { return options_; }

private:
  /// One run (agent_executor.cpp): the op loop and the steps.
  struct Interpreter;
  ToolRegistry &tools_;
  AgentExecutorOptions options_;
  std::vector<AgentModel> models_;
};

} // namespace treni
