//===- agent_executor.cpp - runs agent IR in-process ---------------------===//
//
// The interpreter. AgentExecutor::run() selects the workflow, binds its
// parameters and hands its entry block to an Interpreter, whose loop is:
//
//   runBlock(block)            every op of a block in order, up to its
//     runOp(op)                terminator (yield: the block's values;
//       beforeStep(op)         return: the workflow's value)
//       runGenerate / runTool / runParallel      steps: model and tools
//       runIf / runRetry (-> runBlock)           control flow
//       evaluate(op)                             pure value ops
//
// Steps are where a run spends its time; beforeStep() is the one place
// checked before each of them and before every retry attempt
// (cancellation, which is also how a server's request deadline arrives).
// A run is bounded by its trace: every step and retry decision is an event,
// and past AgentExecutorOptions::maxTraceEvents the run fails; strings a
// workflow builds are bounded by maxStringBytes.
//
//===----------------------------------------------------------------------===//

#include "runtime/agent/agent_executor.h"

#include <cmath>
#include <map>
#include <optional>
#include <thread>

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ir/AgentDialect.h"
#include "runtime/agent/agent_values.h"
#include "runtime/serve/generation.h"
#include "runtime/text/chat_template.h"
#include "runtime/tools/tool_registry.h"
#include "support/clock.h"
#include "support/json.h"
#include "support/status.h"
#include "support/utf8.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/Support/raw_ostream.h"

namespace treni {
namespace {
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

/// FILE:LINE:COLUMN of an op (its first location when fused).
std::string locationOf(mlir::Operation *op) {
  std::string text;
  llvm::raw_string_ostream os(text);
  mlir::Location loc = op->getLoc();
  if (auto fused = mlir::dyn_cast<mlir::FusedLoc>(loc))
    if (!fused.getLocations().empty())
      loc = fused.getLocations().front();
  if (auto name = mlir::dyn_cast<mlir::NameLoc>(loc))
    loc = name.getChildLoc();
  if (auto file = mlir::dyn_cast<mlir::FileLineColLoc>(loc)) {
    os << file.getFilename().getValue() << ":" << file.getLine() << ":"
       << file.getColumn();
    return text;
  }
  loc.print(os);
  return text;
}

// Regular expressions of agent.matches (PCRE2).

struct RegexDeleter {
  void operator()(pcre2_code *code) const { pcre2_code_free(code); }
};
using Regex = std::unique_ptr<pcre2_code, RegexDeleter>;

absl::StatusOr<Regex> compileRegex(const std::string &pattern) {
  int errorCode = 0;
  PCRE2_SIZE errorOffset = 0;
  pcre2_code *code = pcre2_compile(
      reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
      PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &errorCode, &errorOffset, nullptr);
  if (!code) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(errorCode, message, sizeof(message));
    return absl::InvalidArgumentError(
        absl::StrCat("invalid regular expression '", pattern, "' at offset ",
                     errorOffset, ": ", reinterpret_cast<char *>(message)));
  }
  return Regex(code);
}

absl::StatusOr<bool> regexSearch(const pcre2_code *code,
                                 std::string_view text) {
  pcre2_match_data *data = pcre2_match_data_create_from_pattern(code, nullptr);
  if (!data)
    return absl::ResourceExhaustedError("out of memory for a regex match");
  int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(text.data()),
                       text.size(), 0, 0, data, nullptr);
  pcre2_match_data_free(data);
  if (rc >= 0)
    return true;
  if (rc == PCRE2_ERROR_NOMATCH)
    return false;
  PCRE2_UCHAR message[256];
  pcre2_get_error_message(rc, message, sizeof(message));
  return absl::InternalError(
      absl::StrCat("regex match failed: ", reinterpret_cast<char *>(message)));
}

} // namespace

//===----------------------------------------------------------------------===//
// AgentRunResult
//===----------------------------------------------------------------------===//

json AgentRunResult::toJson(std::string_view workflow) const {
  return json{{"ok", true},     {"workflow", std::string(workflow)},
              {"value", value}, {"seconds", seconds},
              {"steps", steps}, {"tool_failures", toolFailures},
              {"trace", trace}};
}

//===----------------------------------------------------------------------===//
// The interpreter
//===----------------------------------------------------------------------===//

/// One run of a workflow: the values of its SSA values, the trace, and the
/// retry attempts it is inside of.
struct AgentExecutor::Interpreter {
  enum class Flow { Next, Returned };

  AgentExecutor &self;
  const AgentEventCallback &onEvent;
  AgentRunResult result;
  Clock::time_point start = Clock::now();
  llvm::DenseMap<mlir::Value, AgentValue> values;
  /// Compiled `agent.matches` patterns, by op.
  std::map<mlir::Operation *, Regex> regexes;
  /// Attempt indices of the enclosing retries (innermost last).
  std::vector<int64_t> attempts;

  Interpreter(AgentExecutor &self, const AgentEventCallback &onEvent)
      : self(self), onEvent(onEvent) {}

  //===------------------------------------------------------------------===//
  // Errors, trace, values
  //===------------------------------------------------------------------===//

  /// "FILE:LINE:COL: step 'name' (agent.op): message".
  absl::Status fail(mlir::Operation *op, std::string_view message) {
    std::string step;
    if (auto name = op->getAttrOfType<mlir::StringAttr>("step"))
      step = absl::StrCat(" step '", name.getValue().str(), "'");
    return absl::Status(absl::StatusCode::kFailedPrecondition,
                        absl::StrCat(locationOf(op), ":", step, " (",
                                     op->getName().getStringRef().str(),
                                     "): ", std::string(message)));
  }
  /// fail() keeping the code of `status`.
  absl::Status failWith(mlir::Operation *op, const absl::Status &status) {
    absl::Status out = fail(op, std::string(status.message()));
    return absl::Status(status.code() == absl::StatusCode::kOk
                            ? absl::StatusCode::kInternal
                            : status.code(),
                        out.message());
  }

  void emit(json event) {
    event["t_ms"] = millisecondsSince(start);
    result.trace.push_back(event);
    if (onEvent)
      onEvent(result.trace.back());
  }

  /// Fails once the trace holds maxTraceEvents events: the run has done as
  /// much as one run may.
  absl::Status checkTraceRoom(mlir::Operation *op) {
    if (result.trace.size() < self.options_.maxTraceEvents)
      return absl::OkStatus();
    return failWith(
        op, absl::ResourceExhaustedError(absl::StrCat(
                "the run reached its limit of ", self.options_.maxTraceEvents,
                " trace events (steps and retry decisions)")));
  }

  const AgentValue &get(mlir::Value v) { return values[v]; }

  template <typename T> const T *as(mlir::Value v) {
    return std::get_if<T>(&values[v]);
  }

  std::shared_ptr<const GenerationValue> generation(mlir::Value v) {
    auto *g = as<std::shared_ptr<const GenerationValue>>(v);
    return g ? *g : std::make_shared<GenerationValue>();
  }
  std::shared_ptr<const ToolValue> tool(mlir::Value v) {
    auto *t = as<std::shared_ptr<const ToolValue>>(v);
    return t ? *t : std::make_shared<ToolValue>();
  }
  bool boolean(mlir::Value v) {
    auto *b = as<bool>(v);
    return b && *b;
  }

  //===------------------------------------------------------------------===//
  // The loop
  //===------------------------------------------------------------------===//

  /// Runs `block` up to its terminator. A yield leaves its values in
  /// `yielded`; a return sets the workflow's value and answers Returned.
  absl::StatusOr<Flow> runBlock(mlir::Block &block,
                                std::vector<AgentValue> *yielded) {
    for (mlir::Operation &op : block) {
      if (auto yield = mlir::dyn_cast<agent::YieldOp>(op)) {
        if (yielded)
          for (mlir::Value v : yield.getValues())
            yielded->push_back(get(v));
        return Flow::Next;
      }
      if (auto ret = mlir::dyn_cast<agent::ReturnOp>(op)) {
        if (!ret.getValues().empty())
          result.value = toJsonValue(get(ret.getValues().front()));
        return Flow::Returned;
      }
      if (mlir::isa<agent::UnreachableOp>(op))
        return failWith(
            &op,
            absl::InternalError("reached agent.unreachable (an executor bug)"));
      absl::StatusOr<Flow> flow = runOp(op);
      if (!flow.ok())
        return flow.status();
      if (*flow == Flow::Returned)
        return Flow::Returned;
    }
    return Flow::Next;
  }

  /// One op that is not a terminator: a step, control flow or a value.
  absl::StatusOr<Flow> runOp(mlir::Operation &operation) {
    mlir::Operation *op = &operation;
    if (mlir::isa<agent::GenerateOp, agent::ToolOp, agent::ParallelOp>(op)) {
      if (absl::Status ready = beforeStep(op); !ready.ok())
        return ready;
      absl::Status status = absl::OkStatus();
      if (auto g = mlir::dyn_cast<agent::GenerateOp>(op))
        status = runGenerate(g);
      else if (auto t = mlir::dyn_cast<agent::ToolOp>(op))
        status = runTool(t);
      else
        status = runParallel(mlir::cast<agent::ParallelOp>(op));
      if (!status.ok())
        return status;
      return Flow::Next;
    }
    if (auto i = mlir::dyn_cast<agent::IfOp>(op))
      return runIf(i);
    if (auto r = mlir::dyn_cast<agent::RetryOp>(op))
      return runRetry(r);
    if (absl::Status status = evaluate(op); !status.ok())
      return status;
    return Flow::Next;
  }

  /// Checked before every generate, tool and parallel step, and before
  /// every retry attempt.
  absl::Status beforeStep(mlir::Operation *op) {
    if (self.options_.cancel && self.options_.cancel->load())
      return failWith(op, absl::CancelledError("the run was cancelled"));
    return checkTraceRoom(op);
  }

  //===------------------------------------------------------------------===//
  // Control flow
  //===------------------------------------------------------------------===//

  absl::StatusOr<Flow> runIf(agent::IfOp op) {
    bool condition = boolean(op.getCondition());
    mlir::Region &region = condition ? op.getThenRegion() : op.getElseRegion();
    if (region.empty())
      return Flow::Next;
    std::vector<AgentValue> yielded;
    absl::StatusOr<Flow> flow = runBlock(region.front(), &yielded);
    if (!flow.ok() || *flow == Flow::Returned)
      return flow;
    for (auto [res, v] : llvm::zip(op.getResults(), yielded))
      values[res] = v;
    return Flow::Next;
  }

  /// Runs the body once per attempt (the attempt index and the previous
  /// attempt's values as its arguments) until the condition block says no
  /// or max_attempts is reached; each decision is a "retry" event.
  absl::StatusOr<Flow> runRetry(agent::RetryOp op) {
    mlir::Block &body = op.getBody().front();
    int64_t maxAttempts = int64_t(op.getMaxAttempts());
    std::vector<AgentValue> previous;
    for (mlir::Type type : op.getResultTypes())
      previous.push_back(emptyValueOf(type));
    std::vector<AgentValue> current;
    for (int64_t attempt = 0;; ++attempt) {
      if (absl::Status ready = beforeStep(op); !ready.ok())
        return ready;
      values[body.getArgument(0)] = attempt;
      for (unsigned i = 0; i < previous.size(); ++i)
        values[body.getArgument(i + 1)] = previous[i];
      current.clear();
      attempts.push_back(attempt);
      absl::StatusOr<Flow> flow = runBlock(body, &current);
      attempts.pop_back();
      if (!flow.ok() || *flow == Flow::Returned)
        return flow;
      absl::StatusOr<bool> again = retryCondition(op, current);
      if (!again.ok())
        return again.status();
      bool last = attempt + 1 >= maxAttempts;
      emit(json{{"event", "retry"},
                {"retry", retryName(op)},
                {"location", locationOf(op)},
                {"attempt", attempt},
                {"condition", *again},
                {"again", *again && !last},
                {"max_attempts", maxAttempts}});
      if (!*again || last)
        break;
      previous = current;
    }
    for (auto [res, v] : llvm::zip(op.getResults(), current))
      values[res] = v;
    return Flow::Next;
  }

  /// The retry's condition block over an attempt's values.
  absl::StatusOr<bool> retryCondition(agent::RetryOp op,
                                      const std::vector<AgentValue> &attempt) {
    mlir::Block &condition = op.getCondition().front();
    for (unsigned i = 0; i < attempt.size() && i < condition.getNumArguments();
         ++i)
      values[condition.getArgument(i)] = attempt[i];
    std::vector<AgentValue> verdict;
    absl::StatusOr<Flow> flow = runBlock(condition, &verdict);
    if (!flow.ok())
      return flow.status();
    if (!verdict.empty())
      if (auto *b = std::get_if<bool>(&verdict.front()))
        return *b;
    return false;
  }

  /// The names a retry exports, "a,b" (for its trace events).
  static std::string retryName(agent::RetryOp op) {
    std::string name;
    if (auto names = op.getNamesAttr())
      for (mlir::Attribute n : names)
        name += (name.empty() ? "" : ",") +
                mlir::cast<mlir::StringAttr>(n).getValue().str();
    return name;
  }

  //===------------------------------------------------------------------===//
  // Generate steps
  //===------------------------------------------------------------------===//

  const AgentModel *findModel(std::optional<llvm::StringRef> name) {
    if (self.models_.empty())
      return nullptr;
    if (!name)
      return &self.models_.front();
    for (const AgentModel &model : self.models_)
      if (model.name == *name)
        return &model;
    return nullptr;
  }

  /// The request of a generate step: its prompt (in the model's chat
  /// template when `chat`) and its sampling options over the defaults.
  absl::StatusOr<GenerationRequest>
  generateRequest(agent::GenerateOp op, const AgentModel &model,
                  const std::string &promptText, bool chat) {
    const Tokenizer &tokenizer = model.generator->tokenizer();
    GenerationRequest request;
    if (chat) {
      json messages =
          json::array({json{{"role", "user"}, {"content", promptText}}});
      absl::StatusOr<std::string> rendered =
          model.chatTemplate->render(messages);
      if (!rendered.ok())
        return fail(op, absl::StrCat("the chat template failed: ",
                                     std::string(rendered.status().message())));
      request.promptIds =
          tokenizer.encode(*rendered, /*addSpecialTokens=*/false);
    } else {
      request.promptIds = tokenizer.encode(promptText);
    }
    const AgentExecutorOptions &defaults = self.options_;
    request.maxTokens = op.getMaxTokensAttr() ? op.getMaxTokensAttr().getInt()
                                              : defaults.defaultMaxTokens;
    request.sampling.temperature =
        op.getTemperatureAttr() ? op.getTemperatureAttr().getValueAsDouble()
                                : defaults.defaultTemperature;
    if (op.getTopPAttr())
      request.sampling.topP = op.getTopPAttr().getValueAsDouble();
    if (op.getTopKAttr())
      request.sampling.topK = int32_t(op.getTopKAttr().getInt());
    if (op.getSeedAttr())
      request.sampling.seed = uint64_t(op.getSeedAttr().getInt());
    request.sampling.numAlternatives = defaults.numAlternatives;
    if (auto stops = op.getStopAttr())
      for (mlir::Attribute s : stops)
        request.stop.push_back(
            mlir::cast<mlir::StringAttr>(s).getValue().str());
    request.lowConfidenceThreshold = defaults.lowConfidenceThreshold;
    return request;
  }

  /// The low-confidence tokens of a generation with their alternatives.
  static json uncertainTokens(const GenerationValue &value,
                              const TextGenerator &generator) {
    auto pieceOf = [&](int32_t id) {
      absl::StatusOr<std::string> text =
          generator.tokenizer().decode({&id, 1}, false);
      return utf8::repair(text.ok() ? *text : generator.tokenBytes(id));
    };
    // Rounded to 4 decimals: the list is meant to be read (and put in
    // refinement prompts), where 17 digits only cost tokens.
    auto round4 = [](double x) { return std::round(x * 1e4) / 1e4; };
    json uncertain = json::array();
    for (int64_t index : value.awareness.lowConfidencePositions) {
      if (index < 0 || index >= int64_t(value.tokens.size()))
        continue;
      const GeneratedToken &token = value.tokens[size_t(index)];
      json alternatives = json::array();
      for (const TokenChoice &choice : token.alternatives)
        alternatives.push_back(
            json{{"token", pieceOf(choice.token)},
                 {"prob", round4(std::exp(double(choice.logprob)))}});
      uncertain.push_back(
          json{{"index", index},
               {"token", pieceOf(token.id)},
               {"prob", round4(std::exp(double(token.logprob)))},
               {"entropy", round4(token.entropy)},
               {"alternatives", alternatives}});
    }
    return uncertain;
  }

  static json uncertaintyJson(const GenerationValue &g) {
    const Awareness &a = g.awareness;
    return json{{"perplexity", a.perplexity},
                {"max_entropy", a.maxEntropy},
                {"mean_entropy", a.meanEntropy},
                {"low_confidence", int64_t(a.lowConfidencePositions.size())},
                {"threshold", a.lowConfidenceThreshold},
                {"tokens", a.numTokens},
                {"uncertain", g.uncertain}};
  }

  /// The trace event of a generate step that ran.
  json generateEvent(agent::GenerateOp op, const AgentModel &model,
                     const std::string &promptText, bool chat,
                     const GenerationRequest &request,
                     const GenerationResult &generated,
                     const GenerationValue &value,
                     Clock::time_point stepStart) {
    // Prompt tokens whose KV cache an earlier generation left (not prefilled).
    int64_t reusedTokens = generated.awareness.timing.cachedPromptTokens;
    json event{
        {"event", "step"},
        {"kind", "generate"},
        {"step", op.getStep().str()},
        {"location", locationOf(op)},
        {"model", model.name},
        {"inputs", json{{"prompt", utf8::repair(promptText)},
                        {"prompt_tokens", int64_t(request.promptIds.size())},
                        {"chat_template", chat},
                        {"max_tokens", request.maxTokens},
                        {"temperature", request.sampling.temperature}}},
        {"outputs", json{{"text", utf8::repair(value.text)},
                         {"tokens", int64_t(value.tokens.size())},
                         {"finish_reason", toString(generated.finishReason)}}},
        {"uncertainty", uncertaintyJson(value)},
        {"latency_ms", millisecondsSince(stepStart)},
        {"reused", reusedTokens > 0},
        {"reused_tokens", reusedTokens},
        {"retries", 0}};
    if (!attempts.empty())
      event["attempt"] = attempts.back();
    if (op.getPrefixGroupAttr())
      event["prefix"] = json{
          {"group", op.getPrefixGroupAttr().getInt()},
          {"bytes", op.getPrefixLenAttr() ? op.getPrefixLenAttr().getInt() : 0},
          {"reused", reusedTokens > 0},
          {"reused_tokens", reusedTokens}};
    return event;
  }

  /// One generate step: what prepareGenerate builds on the workflow's
  /// thread, what callGenerate (any thread) adds.
  struct GenerateCall {
    const AgentModel *model = nullptr;
    std::string promptText;
    bool chat = false;
    GenerationRequest request;
    Clock::time_point start;
    absl::StatusOr<GenerationResult> result = absl::UnknownError("not run");
  };

  absl::StatusOr<GenerateCall> prepareGenerate(agent::GenerateOp op) {
    GenerateCall call;
    const std::string *prompt = as<std::string>(op.getPrompt());
    call.promptText = prompt ? *prompt : std::string();
    std::optional<llvm::StringRef> modelName;
    if (op.getModel())
      modelName = *op.getModel();
    call.model = findModel(modelName);
    if (!call.model || !call.model->generator) {
      std::vector<std::string> names;
      for (const AgentModel &m : self.models_)
        names.push_back(m.name);
      return fail(op, self.models_.empty()
                          ? std::string("no model is loaded (run with --model)")
                          : absl::StrCat("unknown model '", modelName->str(),
                                         "' (loaded: ",
                                         absl::StrJoin(names, ", "), ")"));
    }
    call.chat = self.options_.applyChatTemplate && call.model->chatTemplate;
    TRENI_ASSIGN_OR_RETURN(
        call.request,
        generateRequest(op, *call.model, call.promptText, call.chat));
    return call;
  }

  /// The engine's part: blocks until the generation ends.
  static void callGenerate(GenerateCall &call) {
    call.start = Clock::now();
    call.result = call.model->generator->generate(call.request);
  }

  /// The trace event and the value, on the workflow's thread.
  absl::Status finishGenerate(agent::GenerateOp op, GenerateCall &call,
                              bool parallel) {
    if (!call.result.ok()) {
      emit(json{{"event", "step"},
                {"kind", "generate"},
                {"step", op.getStep().str()},
                {"location", locationOf(op)},
                {"error", std::string(call.result.status().message())}});
      return failWith(op, call.result.status());
    }
    GenerationResult &generated = *call.result;
    auto value = std::make_shared<GenerationValue>();
    value->text = generated.text;
    value->tokens = std::move(generated.tokens);
    value->awareness = generated.awareness;
    value->uncertain = uncertainTokens(*value, *call.model->generator);
    ++result.steps;
    json event = generateEvent(op, *call.model, call.promptText, call.chat,
                               call.request, generated, *value, call.start);
    if (parallel)
      event["parallel"] = true;
    emit(std::move(event));
    values[op.getResult()] = std::shared_ptr<const GenerationValue>(value);
    return absl::OkStatus();
  }

  absl::Status runGenerate(agent::GenerateOp op) {
    TRENI_ASSIGN_OR_RETURN(GenerateCall call, prepareGenerate(op));
    callGenerate(call);
    return finishGenerate(op, call, /*parallel=*/false);
  }

  //===------------------------------------------------------------------===//
  // Tool steps
  //===------------------------------------------------------------------===//

  /// The arguments of a tool call (validated by the registry later).
  json toolArguments(agent::ToolOp op) {
    json args = json::object();
    mlir::ArrayAttr names = op.getArgNames();
    for (auto [name, operand] : llvm::zip(names, op.getArgs()))
      args[mlir::cast<mlir::StringAttr>(name).getValue().str()] =
          toJsonValue(get(operand));
    return args;
  }

  CallOptions callOptions(agent::ToolOp op) {
    CallOptions options;
    if (op.getTimeoutMsAttr())
      options.timeout =
          std::chrono::milliseconds(op.getTimeoutMsAttr().getInt());
    if (op.getRetriesAttr())
      options.retries = int(op.getRetriesAttr().getInt());
    options.backoffBase = self.options_.backoffBase;
    options.backoffCap = self.options_.backoffCap;
    options.jitterSeed = self.options_.jitterSeed;
    return options;
  }

  /// One call: its arguments and options, then its result and times.
  struct ToolCall {
    json args;
    CallOptions options;
    ToolResult result;
    double startMs = 0, endMs = 0;
  };

  /// Runs one call; thread-safe (touches no interpreter state).
  void callTool(agent::ToolOp op, ToolCall &call) {
    call.startMs = millisecondsSince(start);
    call.result = self.tools_.call(op.getTool(), call.args, call.options);
    call.endMs = millisecondsSince(start);
  }

  /// The step's value, its trace event and the run's counters.
  void finishTool(agent::ToolOp op, ToolCall &call, bool parallel) {
    auto value = std::make_shared<ToolValue>();
    value->ok = call.result.ok;
    value->output = call.result.ok ? call.result.value : json(nullptr);
    if (!call.result.ok)
      value->error = call.result.error.message.empty()
                         ? call.result.error.type
                         : absl::StrCat(call.result.error.type, ": ",
                                        call.result.error.message);
    ++result.steps;
    if (!value->ok)
      ++result.toolFailures;
    json attemptLog = json::array();
    for (const ToolAttempt &attempt : call.result.attemptLog) {
      json entry{
          {"ok", attempt.ok},
          {"latency_ms",
           std::chrono::duration<double, std::milli>(attempt.latency).count()}};
      if (!attempt.ok)
        entry["error"] = utf8::repair(attempt.error.message.empty()
                                          ? attempt.error.type
                                          : attempt.error.type + ": " +
                                                attempt.error.message);
      attemptLog.push_back(entry);
    }
    json outputs{{"ok", value->ok}, {"output", value->output}};
    json event{{"event", "step"},
               {"kind", "tool"},
               {"step", op.getStep().str()},
               {"location", locationOf(op)},
               {"tool", op.getTool().str()},
               {"inputs", call.args},
               {"outputs", outputs},
               {"latency_ms", call.endMs - call.startMs},
               {"start_ms", call.startMs},
               {"end_ms", call.endMs},
               {"retries", std::max(0, call.result.attempts - 1)},
               {"attempts", attemptLog},
               {"parallel", parallel}};
    if (!value->ok)
      event["error"] = utf8::repair(value->error);
    if (!attempts.empty())
      event["attempt"] = attempts.back();
    emit(event);
    values[op.getResult()] = std::shared_ptr<const ToolValue>(value);
  }

  /// An unknown tool is the workflow's error, not a failed call: no retry
  /// can make it appear.
  absl::Status checkTool(agent::ToolOp op) {
    absl::StatusOr<std::string> name =
        self.tools_.resolveName(op.getTool().str());
    if (!name.ok())
      return failWith(op, name.status());
    return absl::OkStatus();
  }

  absl::Status runTool(agent::ToolOp op) {
    if (absl::Status known = checkTool(op); !known.ok())
      return known;
    ToolCall call{toolArguments(op), callOptions(op), {}, 0, 0};
    callTool(op, call);
    finishTool(op, call, /*parallel=*/false);
    return absl::OkStatus();
  }

  /// The tool calls and generations of a group at once: each tool on a
  /// thread of its own, each generation too where its generator is
  /// concurrent (continuous batching: they share batch steps), the others
  /// one after another on this thread meanwhile. Results are taken in
  /// order, as if the steps had run one by one.
  absl::Status runParallel(agent::ParallelOp op) {
    mlir::Block &body = op.getBody().front();
    std::vector<mlir::Operation *> steps;
    for (mlir::Operation &inner : body.without_terminator())
      steps.push_back(&inner);
    std::vector<ToolCall> tools(steps.size());
    std::vector<GenerateCall> generations(steps.size());
    for (size_t i = 0; i < steps.size(); ++i) {
      if (auto tool = mlir::dyn_cast<agent::ToolOp>(steps[i])) {
        if (absl::Status known = checkTool(tool); !known.ok())
          return known;
        tools[i] = ToolCall{toolArguments(tool), callOptions(tool), {}, 0, 0};
      } else if (auto generate = mlir::dyn_cast<agent::GenerateOp>(steps[i])) {
        TRENI_ASSIGN_OR_RETURN(generations[i], prepareGenerate(generate));
      } else {
        return fail(steps[i],
                    "only agent.tool and agent.generate may appear in "
                    "agent.parallel");
      }
    }
    auto callStep = [&](size_t i) {
      if (auto tool = mlir::dyn_cast<agent::ToolOp>(steps[i]))
        callTool(tool, tools[i]);
      else
        callGenerate(generations[i]);
    };
    const bool parallel = steps.size() > 1;
    if (self.options_.parallelTools && parallel) {
      std::vector<std::thread> threads;
      std::vector<size_t> serial;
      for (size_t i = 0; i < steps.size(); ++i) {
        bool alone = mlir::isa<agent::GenerateOp>(steps[i]) &&
                     !generations[i].model->generator->concurrent();
        if (alone)
          serial.push_back(i);
        else
          threads.emplace_back(callStep, i);
      }
      for (size_t i : serial)
        callStep(i);
      for (std::thread &thread : threads)
        thread.join();
    } else {
      for (size_t i = 0; i < steps.size(); ++i)
        callStep(i);
    }
    for (size_t i = 0; i < steps.size(); ++i) {
      if (auto tool = mlir::dyn_cast<agent::ToolOp>(steps[i]))
        finishTool(tool, tools[i], parallel);
      else
        TRENI_RETURN_IF_ERROR(finishGenerate(
            mlir::cast<agent::GenerateOp>(steps[i]), generations[i], parallel));
    }
    auto yield = mlir::cast<agent::YieldOp>(body.getTerminator());
    for (auto [res, yielded] : llvm::zip(op.getResults(), yield.getValues()))
      values[res] = get(yielded);
    return absl::OkStatus();
  }

  //===------------------------------------------------------------------===//
  // Values and conditions
  //===------------------------------------------------------------------===//

  /// The value ops: constants, text, JSON, conditions.
  absl::Status evaluate(mlir::Operation *op) {
    if (auto c = mlir::dyn_cast<agent::ConstantOp>(op)) {
      absl::StatusOr<AgentValue> v = attributeValue(c.getValue(), c.getType());
      if (!v.ok())
        return failWith(op, v.status());
      values[c.getResult()] = *v;
    } else if (auto f = mlir::dyn_cast<agent::FormatOp>(op)) {
      return runFormat(f);
    } else if (auto l = mlir::dyn_cast<agent::ListOp>(op)) {
      json array = json::array();
      for (mlir::Value e : l.getElements())
        array.push_back(toJsonValue(get(e)));
      values[l.getResult()] = JsonValue{array};
    } else if (auto t = mlir::dyn_cast<agent::TextOp>(op)) {
      values[t.getResult()] = stepText(get(t.getStep()));
    } else if (auto u = mlir::dyn_cast<agent::UncertaintyOp>(op)) {
      return runUncertainty(u);
    } else if (auto ok = mlir::dyn_cast<agent::ToolOkOp>(op)) {
      values[ok.getResult()] = tool(ok.getStep())->ok;
    } else if (auto out = mlir::dyn_cast<agent::ToolOutputOp>(op)) {
      values[out.getResult()] = JsonValue{tool(out.getStep())->output};
    } else if (auto err = mlir::dyn_cast<agent::ToolErrorOp>(op)) {
      values[err.getResult()] = tool(err.getStep())->error;
    } else if (auto cmp = mlir::dyn_cast<agent::CmpOp>(op)) {
      absl::StatusOr<bool> answer = compare(cmp);
      if (!answer.ok())
        return answer.status();
      values[cmp.getResult()] = *answer;
    } else if (auto a = mlir::dyn_cast<agent::AndOp>(op)) {
      values[a.getResult()] = boolean(a.getLhs()) && boolean(a.getRhs());
    } else if (auto o = mlir::dyn_cast<agent::OrOp>(op)) {
      values[o.getResult()] = boolean(o.getLhs()) || boolean(o.getRhs());
    } else if (auto n = mlir::dyn_cast<agent::NotOp>(op)) {
      values[n.getResult()] = !boolean(n.getInput());
    } else if (auto m = mlir::dyn_cast<agent::MatchesOp>(op)) {
      return runMatches(m);
    } else if (auto j = mlir::dyn_cast<agent::JsonValidOp>(op)) {
      const std::string *text = as<std::string>(j.getInput());
      values[j.getResult()] = text && json::accept(*text);
    } else {
      return fail(op, "the executor does not know this operation");
    }
    return absl::OkStatus();
  }

  /// The text of a generate step, or a tool step's output as text (empty
  /// for a failed call).
  static std::string stepText(const AgentValue &step) {
    if (auto *g = std::get_if<std::shared_ptr<const GenerationValue>>(&step))
      return (*g)->text;
    if (auto *tv = std::get_if<std::shared_ptr<const ToolValue>>(&step))
      if ((*tv)->ok)
        return (*tv)->output.is_string() ? (*tv)->output.get<std::string>()
                                         : dumpJson((*tv)->output);
    return "";
  }

  absl::Status runMatches(agent::MatchesOp op) {
    auto it = regexes.find(op);
    if (it == regexes.end()) {
      absl::StatusOr<Regex> regex = compileRegex(op.getPattern().str());
      if (!regex.ok())
        return failWith(op, regex.status());
      it = regexes.emplace(op, std::move(*regex)).first;
    }
    const std::string *text = as<std::string>(op.getInput());
    absl::StatusOr<bool> found =
        regexSearch(it->second.get(), text ? *text : "");
    if (!found.ok())
      return failWith(op, found.status());
    values[op.getResult()] = *found;
    return absl::OkStatus();
  }

  absl::Status runFormat(agent::FormatOp op) {
    llvm::StringRef text = op.getText();
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size(); ++i) {
      char c = text[i];
      if (c == '{' && i + 1 < text.size() && text[i + 1] == '{') {
        out += '{';
        ++i;
      } else if (c == '}' && i + 1 < text.size() && text[i + 1] == '}') {
        out += '}';
        ++i;
      } else if (c == '{') {
        size_t close = text.find('}', i);
        unsigned index = 0;
        if (close == llvm::StringRef::npos ||
            text.slice(i + 1, close).getAsInteger(10, index) ||
            index >= op.getArgs().size())
          return fail(op, "malformed placeholder in the template");
        out += renderValue(get(op.getArgs()[index]));
        i = close;
      } else {
        out += c;
      }
      if (out.size() > self.options_.maxStringBytes)
        return failWith(op, absl::ResourceExhaustedError(absl::StrCat(
                                "a format string built more than ",
                                self.options_.maxStringBytes,
                                " bytes (the limit of a workflow's strings)")));
    }
    values[op.getResult()] = std::move(out);
    return absl::OkStatus();
  }

  absl::StatusOr<bool> compare(agent::CmpOp op) {
    llvm::StringRef pred = op.getPredicate();
    const AgentValue &lhs = get(op.getLhs());
    const AgentValue &rhs = get(op.getRhs());
    auto number = [](const AgentValue &v) -> std::optional<double> {
      if (auto *i = std::get_if<int64_t>(&v))
        return double(*i);
      if (auto *d = std::get_if<double>(&v))
        return *d;
      return std::nullopt;
    };
    auto ordered = [&](auto a, auto b) -> std::optional<bool> {
      if (pred == "eq")
        return a == b;
      if (pred == "ne")
        return a != b;
      if (pred == "lt")
        return a < b;
      if (pred == "le")
        return a <= b;
      if (pred == "gt")
        return a > b;
      if (pred == "ge")
        return a >= b;
      return std::nullopt;
    };
    std::optional<bool> answer;
    auto *li = std::get_if<int64_t>(&lhs);
    auto *ri = std::get_if<int64_t>(&rhs);
    if (li && ri) {
      answer = ordered(*li, *ri);
    } else if (number(lhs) && number(rhs)) {
      answer = ordered(*number(lhs), *number(rhs));
    } else if (pred == "eq" || pred == "ne") {
      bool equal = toJsonValue(lhs) == toJsonValue(rhs);
      if (auto *ls = std::get_if<std::string>(&lhs))
        if (auto *rs = std::get_if<std::string>(&rhs))
          equal = *ls == *rs;
      answer = pred == "eq" ? equal : !equal;
    }
    if (!answer)
      return fail(op, absl::StrCat("cannot compare with '", pred.str(), "'"));
    return *answer;
  }

  absl::Status runUncertainty(agent::UncertaintyOp op) {
    auto g = generation(op.getGeneration());
    llvm::StringRef metric = op.getMetric();
    const Awareness &a = g->awareness;
    AgentValue v;
    if (metric == "perplexity")
      v = g->tokens.empty() ? 1.0 : a.perplexity;
    else if (metric == "max_entropy")
      v = a.maxEntropy;
    else if (metric == "mean_entropy")
      v = a.meanEntropy;
    else if (metric == "low_confidence")
      v = int64_t(a.lowConfidencePositions.size());
    else if (metric == "tokens")
      v = int64_t(g->tokens.size());
    else if (metric == "uncertain")
      v = JsonValue{g->uncertain};
    else
      return fail(
          op, absl::StrCat("unknown uncertainty metric '", metric.str(), "'"));
    values[op.getResult()] = std::move(v);
    return absl::OkStatus();
  }
};

//===----------------------------------------------------------------------===//
// AgentExecutor
//===----------------------------------------------------------------------===//

namespace {

/// The workflow `name` of `module` (empty: the module's only one).
absl::StatusOr<agent::WorkflowOp> selectWorkflow(mlir::ModuleOp module,
                                                 std::string_view name) {
  std::vector<agent::WorkflowOp> workflows(
      module.getOps<agent::WorkflowOp>().begin(),
      module.getOps<agent::WorkflowOp>().end());
  std::vector<std::string> names;
  for (agent::WorkflowOp w : workflows)
    names.push_back(w.getSymName().str());
  if (name.empty()) {
    if (workflows.size() != 1)
      return absl::InvalidArgumentError(
          workflows.empty()
              ? std::string("the file defines no workflow")
              : absl::StrCat("the file defines several workflows (",
                             absl::StrJoin(names, ", "),
                             "); choose one with --workflow"));
    return workflows.front();
  }
  for (agent::WorkflowOp w : workflows)
    if (w.getSymName() == llvm::StringRef(name.data(), name.size()))
      return w;
  return absl::NotFoundError(
      absl::StrCat("no workflow '", std::string(name),
                   "' (defined: ", absl::StrJoin(names, ", "), ")"));
}

/// The values of `workflow`'s parameters: `args` by name, else the
/// parameter's default. Errors name the parameter.
absl::StatusOr<std::vector<AgentValue>>
bindParameters(agent::WorkflowOp workflow, const json &args) {
  if (!args.is_object())
    return absl::InvalidArgumentError(
        "workflow arguments must be a JSON object");
  mlir::Block &entry = workflow.getBody().front();
  std::vector<std::string> paramNames;
  for (unsigned i = 0; i < entry.getNumArguments(); ++i)
    paramNames.push_back(workflow.getParamName(i).str());
  for (auto &[key, value] : args.items())
    if (std::find(paramNames.begin(), paramNames.end(), key) ==
        paramNames.end())
      return absl::InvalidArgumentError(absl::StrCat(
          "workflow '", workflow.getSymName().str(), "' has no parameter '",
          key, "' (parameters: ", absl::StrJoin(paramNames, ", "), ")"));
  std::vector<AgentValue> bound;
  for (unsigned i = 0; i < entry.getNumArguments(); ++i) {
    mlir::Type type = entry.getArgument(i).getType();
    const std::string &name = paramNames[i];
    absl::StatusOr<AgentValue> value;
    if (args.contains(name)) {
      value = bindArgument(args[name], type, name);
    } else if (mlir::Attribute def = workflow.getArgAttr(i, "agent.default")) {
      value = attributeValue(def, type);
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "missing argument '", name, "' (", parameterTypeName(type),
          ") of workflow '", workflow.getSymName().str(), "' (--arg ", name,
          "=VALUE)"));
    }
    if (!value.ok())
      return value.status();
    bound.push_back(std::move(*value));
  }
  return bound;
}

} // namespace

AgentExecutor::AgentExecutor(ToolRegistry &tools, AgentExecutorOptions options)
    : tools_(tools), options_(std::move(options)) {}
AgentExecutor::~AgentExecutor() = default;

void AgentExecutor::addModel(AgentModel model) {
  models_.push_back(std::move(model));
}

absl::StatusOr<AgentRunResult>
AgentExecutor::run(mlir::ModuleOp module, std::string_view workflow,
                   const json &args, const AgentEventCallback &onEvent) {
  if (options_.numAlternatives < 0 || options_.numAlternatives > 20)
    return absl::InvalidArgumentError("numAlternatives must be in [0, 20]");
  absl::StatusOr<agent::WorkflowOp> selected = selectWorkflow(module, workflow);
  if (!selected.ok())
    return selected.status();
  absl::StatusOr<std::vector<AgentValue>> params =
      bindParameters(*selected, args);
  if (!params.ok())
    return params.status();

  Interpreter interpreter(*this, onEvent);
  mlir::Block &entry = selected->getBody().front();
  json bound = json::object();
  for (unsigned i = 0; i < entry.getNumArguments(); ++i) {
    bound[selected->getParamName(i).str()] = toJsonValue((*params)[i]);
    interpreter.values[entry.getArgument(i)] = std::move((*params)[i]);
  }
  interpreter.emit(json{{"event", "start"},
                        {"workflow", selected->getSymName().str()},
                        {"args", bound}});
  absl::StatusOr<Interpreter::Flow> flow = interpreter.runBlock(entry, nullptr);
  AgentRunResult &result = interpreter.result;
  result.seconds = millisecondsSince(interpreter.start) / 1000.0;
  if (!flow.ok()) {
    interpreter.emit(json{{"event", "error"},
                          {"error", std::string(flow.status().message())}});
    return flow.status();
  }
  interpreter.emit(json{{"event", "end"},
                        {"value", result.value},
                        {"seconds", result.seconds},
                        {"steps", result.steps},
                        {"tool_failures", result.toolFailures}});
  return std::move(result);
}

} // namespace treni
