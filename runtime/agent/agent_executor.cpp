//===- agent_executor.cpp - runs agent IR in-process ---------------------===//

#include "runtime/agent/agent_executor.h"

#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>
#include <variant>

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent_dsl/Lowering.h"
#include "agent_dsl/Parser.h"
#include "ir/AgentDialect.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Pass/PassManager.h"
#include "passes/AgentPasses.h"
#include "runtime/tools/builtin_tools.h"
#include "runtime/text/chat_template.h"
#include "runtime/tools/external_tools.h"
#include "runtime/serve/generation.h"
#include "runtime/tools/tool_registry.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"
#include "support/clock.h"
#include "support/utf8.h"
#include "support/json.h"

namespace treni {
namespace {
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

//===----------------------------------------------------------------------===//
// Run-time values
//===----------------------------------------------------------------------===//

struct JsonValue {
  json value;
};

struct GenerationValue {
  std::string text;
  std::vector<GeneratedToken> tokens;
  Awareness awareness;
  json uncertain = json::array();
};

struct ToolValue {
  bool ok = false;
  json output; ///< null on failure
  std::string error;
};

using Value =
    std::variant<std::monostate, std::string, int64_t, double, bool, JsonValue,
                 std::shared_ptr<const GenerationValue>, std::shared_ptr<const ToolValue>>;

std::string formatDouble(double value) {
  if (std::isnan(value))
    return "nan";
  if (std::isinf(value))
    return value > 0 ? "inf" : "-inf";
  char buffer[64];
  auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  std::string text(buffer, result.ptr);
  return text;
}

/// The text `agent.format` renders for a value.
std::string renderValue(const Value &value) {
  if (auto *s = std::get_if<std::string>(&value))
    return *s;
  if (auto *i = std::get_if<int64_t>(&value))
    return std::to_string(*i);
  if (auto *d = std::get_if<double>(&value))
    return formatDouble(*d);
  if (auto *b = std::get_if<bool>(&value))
    return *b ? "true" : "false";
  if (auto *j = std::get_if<JsonValue>(&value))
    return dumpJson(j->value);
  return "";
}

json toJsonValue(const Value &value) {
  if (auto *s = std::get_if<std::string>(&value))
    return utf8::repair(*s);
  if (auto *i = std::get_if<int64_t>(&value))
    return *i;
  if (auto *d = std::get_if<double>(&value))
    return std::isfinite(*d) ? json(*d) : json(formatDouble(*d));
  if (auto *b = std::get_if<bool>(&value))
    return *b;
  if (auto *j = std::get_if<JsonValue>(&value))
    return j->value;
  if (auto *g = std::get_if<std::shared_ptr<const GenerationValue>>(&value))
    return utf8::repair((*g)->text);
  if (auto *t = std::get_if<std::shared_ptr<const ToolValue>>(&value))
    return (*t)->output;
  return nullptr;
}

/// The value a retry's "previous" arguments start with.
Value emptyValueOf(mlir::Type type) {
  if (mlir::isa<agent::StringType>(type))
    return std::string();
  if (type.isInteger(1))
    return false;
  if (type.isInteger(64))
    return int64_t(0);
  if (type.isF64())
    return 0.0;
  if (mlir::isa<agent::JsonType>(type))
    return JsonValue{nullptr};
  if (mlir::isa<agent::GenerationType>(type))
    return std::shared_ptr<const GenerationValue>(std::make_shared<GenerationValue>());
  if (mlir::isa<agent::ToolResultType>(type))
    return std::shared_ptr<const ToolValue>(std::make_shared<ToolValue>());
  return std::monostate();
}

std::string typeName(mlir::Type type) {
  if (mlir::isa<agent::StringType>(type))
    return "string";
  if (type.isInteger(1))
    return "bool";
  if (type.isInteger(64))
    return "int";
  if (type.isF64())
    return "float";
  if (mlir::isa<agent::JsonType>(type))
    return "json";
  return "value";
}

/// Converts an argument (JSON) to a parameter of `type`. A JSON string is
/// read as text of the type (`--arg n=3`).
absl::StatusOr<Value> bindArgument(const json &arg, mlir::Type type, std::string_view name) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("argument '", std::string(name), "' (",
                                                   typeName(type), "): ", std::string(why)));
  };
  if (mlir::isa<agent::StringType>(type)) {
    if (arg.is_string())
      return arg.get<std::string>();
    return dumpJson(arg);
  }
  if (mlir::isa<agent::JsonType>(type)) {
    if (arg.is_string()) {
      json parsed = json::parse(arg.get<std::string>(), nullptr, /*allow_exceptions=*/false);
      if (parsed.is_discarded())
        return JsonValue{arg}; // a plain string is a JSON string
      return JsonValue{parsed};
    }
    return JsonValue{arg};
  }
  if (type.isInteger(1)) {
    if (arg.is_boolean())
      return arg.get<bool>();
    if (arg.is_string() && (arg == "true" || arg == "false"))
      return arg == "true";
    return bad(absl::StrCat("expected true or false, got ", dumpJson(arg)));
  }
  if (type.isInteger(64)) {
    if (arg.is_number_integer())
      return arg.get<int64_t>();
    if (arg.is_string()) {
      std::string text = arg.get<std::string>();
      int64_t value = 0;
      auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
      if (ec == std::errc() && ptr == text.data() + text.size() && !text.empty())
        return value;
    }
    return bad(absl::StrCat("expected an integer, got ", dumpJson(arg)));
  }
  if (type.isF64()) {
    if (arg.is_number())
      return arg.get<double>();
    if (arg.is_string()) {
      std::string text = arg.get<std::string>();
      double value = 0;
      auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
      if (ec == std::errc() && ptr == text.data() + text.size() && !text.empty())
        return value;
    }
    return bad(absl::StrCat("expected a number, got ", dumpJson(arg)));
  }
  return bad("unsupported parameter type");
}

absl::StatusOr<Value> attributeValue(mlir::Attribute attr, mlir::Type type) {
  if (auto s = mlir::dyn_cast<mlir::StringAttr>(attr)) {
    if (mlir::isa<agent::JsonType>(type)) {
      json parsed = json::parse(s.getValue().str(), nullptr, false);
      if (parsed.is_discarded())
        return absl::InvalidArgumentError(
            absl::StrCat("default is not valid JSON: ", s.getValue().str()));
      return JsonValue{parsed};
    }
    return s.getValue().str();
  }
  if (auto b = mlir::dyn_cast<mlir::BoolAttr>(attr))
    return b.getValue();
  if (auto i = mlir::dyn_cast<mlir::IntegerAttr>(attr)) {
    if (i.getType().isInteger(1))
      return i.getValue().getBoolValue();
    return i.getValue().getSExtValue();
  }
  if (auto f = mlir::dyn_cast<mlir::FloatAttr>(attr))
    return f.getValueAsDouble();
  return absl::InvalidArgumentError("unsupported constant attribute");
}

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
    os << file.getFilename().getValue() << ":" << file.getLine() << ":" << file.getColumn();
    return text;
  }
  loc.print(os);
  return text;
}

//===----------------------------------------------------------------------===//
// Regex cache
//===----------------------------------------------------------------------===//

struct RegexDeleter {
  void operator()(pcre2_code *code) const { pcre2_code_free(code); }
};
using Regex = std::unique_ptr<pcre2_code, RegexDeleter>;

absl::StatusOr<Regex> compileRegex(const std::string &pattern) {
  int errorCode = 0;
  PCRE2_SIZE errorOffset = 0;
  pcre2_code *code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                    PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &errorCode, &errorOffset, nullptr);
  if (!code) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(errorCode, message, sizeof(message));
    return absl::InvalidArgumentError(absl::StrCat("invalid regular expression '", pattern,
                                                   "' at offset ", errorOffset, ": ",
                                                   reinterpret_cast<char *>(message)));
  }
  return Regex(code);
}

absl::StatusOr<bool> regexSearch(const pcre2_code *code, std::string_view text) {
  pcre2_match_data *data = pcre2_match_data_create_from_pattern(code, nullptr);
  if (!data)
    return absl::ResourceExhaustedError("out of memory for a regex match");
  int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), 0, 0, data,
                       nullptr);
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
  return json{
      {"ok", true},     {"workflow", std::string(workflow)}, {"value", value}, {"seconds", seconds},
      {"steps", steps}, {"tool_failures", toolFailures},     {"trace", trace}};
}

//===----------------------------------------------------------------------===//
// Compilation
//===----------------------------------------------------------------------===//

absl::StatusOr<mlir::OwningOpRef<mlir::ModuleOp>>
compileAgentSource(std::string_view source, std::string_view fileName, mlir::MLIRContext &context,
                   const json &toolsJson, int64_t minPrefix) {
  agentdsl::DiagnosticEngine diags;
  std::optional<agentdsl::Program> program = agentdsl::parseAndCheck(source, diags);
  if (!program)
    return absl::InvalidArgumentError(diags.render(source, fileName));

  std::string messages;
  llvm::raw_string_ostream os(messages);
  llvm::SourceMgr sourceMgr;
  sourceMgr.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(source, llvm::StringRef(fileName)), llvm::SMLoc());
  mlir::SourceMgrDiagnosticHandler handler(sourceMgr, &context, os);
  mlir::OwningOpRef<mlir::ModuleOp> module =
      agentdsl::lowerToAgentIR(*program, context, llvm::StringRef(fileName));
  if (!module || mlir::failed(mlir::verify(*module)))
    return absl::InvalidArgumentError(messages.empty() ? "lowering failed" : messages);

  // The registry's signatures travel through a temporary file, which is
  // what the pipeline reads.
  std::string toolsFile;
  if (!toolsJson.is_null()) {
    llvm::SmallString<128> path;
    int fd = -1;
    if (llvm::sys::fs::createTemporaryFile("treni-tools", "json", fd, path))
      return absl::InternalError("cannot create a temporary file for the tool signatures");
    llvm::raw_fd_ostream out(fd, /*shouldClose=*/true);
    out << dumpJson(toolsJson);
    out.close();
    toolsFile = std::string(path);
  }
  mlir::PassManager pm(&context);
  agent::AgentPipelineOptions options;
  options.toolRegistryFile = toolsFile;
  options.minPrefix = minPrefix;
  options.verifyTools = !toolsFile.empty() || !module->getOps<agent::ToolDeclOp>().empty();
  agent::buildAgentPipeline(pm, options);
  mlir::LogicalResult passed = pm.run(*module);
  if (!toolsFile.empty())
    llvm::sys::fs::remove(toolsFile);
  if (mlir::failed(passed))
    return absl::InvalidArgumentError(messages.empty() ? "the agent passes failed" : messages);
  return module;
}

//===----------------------------------------------------------------------===//
// Tool configuration
//===----------------------------------------------------------------------===//

absl::Status configureAgentTools(ToolRegistry &registry, const json &config,
                                 const std::string &baseDir) {
  if (!config.is_object())
    return absl::InvalidArgumentError("the tools configuration must be a JSON object");
  auto resolve = [&](const std::string &path) {
    if (path.empty() || path == ":memory:" || baseDir.empty() ||
        std::filesystem::path(path).is_absolute())
      return path;
    return (std::filesystem::path(baseDir) / path).string();
  };
  for (auto &[key, value] : config.items()) {
    if (key != "sqlite" && key != "files" && key != "http" && key != "external" && key != "faults")
      return absl::InvalidArgumentError(
          absl::StrCat("tools configuration: unknown key '", key,
                       "' (expected sqlite, files, http, external, faults)"));
    if (!value.is_object())
      return absl::InvalidArgumentError(
          absl::StrCat("tools configuration: '", key, "' must be an object"));
  }
  try {
    if (config.contains("sqlite")) {
      const json &s = config["sqlite"];
      SqliteToolConfig sqlite;
      sqlite.path = resolve(s.value("path", std::string(":memory:")));
      sqlite.readOnly = s.value("read_only", false);
      if (absl::Status st = registerSqliteTools(registry, sqlite); !st.ok())
        return st;
    }
    if (config.contains("files")) {
      const json &f = config["files"];
      if (!f.contains("sandbox") || !f["sandbox"].is_string())
        return absl::InvalidArgumentError(
            "tools configuration: files.sandbox (a directory) is required");
      FileToolConfig files;
      files.sandboxDir = resolve(f["sandbox"].get<std::string>());
      files.allowWrite = f.value("allow_write", true);
      if (absl::Status st = registerFileTools(registry, files); !st.ok())
        return st;
    }
    if (config.contains("http")) {
      HttpGetConfig http;
      if (config["http"].contains("allowed_hosts"))
        http.allowedHosts = config["http"]["allowed_hosts"].get<std::vector<std::string>>();
      if (absl::Status st = registerHttpGetTool(registry, http); !st.ok())
        return st;
    }
    if (config.contains("external")) {
      auto processes = registerExternalToolsFromJson(registry, config["external"]);
      if (!processes.ok())
        return processes.status();
    }
    if (config.contains("faults"))
      if (absl::Status st = registry.faults().loadJson(config["faults"]); !st.ok())
        return st;
  } catch (const json::exception &e) {
    return absl::InvalidArgumentError(absl::StrCat("tools configuration: ", e.what()));
  }
  return absl::OkStatus();
}

absl::Status configureAgentToolsFromFile(ToolRegistry &registry, const std::string &path) {
  std::ifstream in(path);
  if (!in)
    return absl::NotFoundError(absl::StrCat("cannot read '", path, "'"));
  json config = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded())
    return absl::InvalidArgumentError(absl::StrCat("'", path, "' is not valid JSON"));
  absl::Status status =
      configureAgentTools(registry, config, std::filesystem::absolute(path).parent_path().string());
  if (!status.ok())
    return absl::Status(status.code(), absl::StrCat(path, ": ", std::string(status.message())));
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// The interpreter
//===----------------------------------------------------------------------===//

struct AgentExecutor::Impl {
  AgentExecutor &self;
  const AgentEventCallback &onEvent;
  AgentRunResult result;
  Clock::time_point start = Clock::now();
  llvm::DenseMap<mlir::Value, Value> values;
  std::map<mlir::Operation *, Regex> regexes;
  /// Attempt indices of the enclosing retries (innermost last).
  std::vector<int64_t> attempts;
  std::map<int64_t, bool> prefixSeen; ///< prefix groups already generated

  enum class Flow { Next, Returned };

  Impl(AgentExecutor &self, const AgentEventCallback &onEvent) : self(self), onEvent(onEvent) {}

  absl::Status fail(mlir::Operation *op, std::string_view message) {
    std::string step;
    if (auto name = op->getAttrOfType<mlir::StringAttr>("step"))
      step = absl::StrCat(" step '", name.getValue().str(), "'");
    return absl::Status(absl::StatusCode::kFailedPrecondition,
                        absl::StrCat(locationOf(op), ":", step, " (",
                                     op->getName().getStringRef().str(),
                                     "): ", std::string(message)));
  }
  absl::Status failWith(mlir::Operation *op, const absl::Status &status) {
    absl::Status out = fail(op, std::string(status.message()));
    return absl::Status(status.code() == absl::StatusCode::kOk ? absl::StatusCode::kInternal
                                                               : status.code(),
                        out.message());
  }

  void emit(json event) {
    event["t_ms"] = millisecondsSince(start);
    result.trace.push_back(event);
    if (onEvent)
      onEvent(result.trace.back());
  }

  const Value &get(mlir::Value v) { return values[v]; }

  template <typename T> const T *as(mlir::Value v) { return std::get_if<T>(&values[v]); }

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

  //===------------------------------------------------------------------===//
  // Steps
  //===------------------------------------------------------------------===//

  json uncertaintyJson(const GenerationValue &g) {
    const Awareness &a = g.awareness;
    return json{{"perplexity", a.perplexity},
                {"max_entropy", a.maxEntropy},
                {"mean_entropy", a.meanEntropy},
                {"low_confidence", int64_t(a.lowConfidencePositions.size())},
                {"threshold", a.lowConfidenceThreshold},
                {"tokens", a.numTokens},
                {"uncertain", g.uncertain}};
  }

  absl::Status runGenerate(agent::GenerateOp op) {
    const std::string *prompt = as<std::string>(op.getPrompt());
    std::string promptText = prompt ? *prompt : std::string();
    std::optional<llvm::StringRef> modelName;
    if (op.getModel())
      modelName = *op.getModel();
    const AgentModel *model = findModel(modelName);
    if (!model || !model->generator) {
      std::vector<std::string> names;
      for (const AgentModel &m : self.models_)
        names.push_back(m.name);
      return fail(op, self.models_.empty()
                          ? std::string("no model is loaded (run with --model)")
                          : absl::StrCat("unknown model '", modelName->str(),
                                         "' (loaded: ", absl::StrJoin(names, ", "), ")"));
    }
    Generator &generator = *model->generator;
    const Tokenizer &tokenizer = generator.tokenizer();

    GenerationRequest request;
    bool chat = self.options_.applyChatTemplate && model->chatTemplate;
    if (chat) {
      json messages = json::array({json{{"role", "user"}, {"content", promptText}}});
      absl::StatusOr<std::string> rendered = model->chatTemplate->render(messages);
      if (!rendered.ok())
        return fail(op, absl::StrCat("the chat template failed: ",
                                     std::string(rendered.status().message())));
      request.promptIds = tokenizer.encode(*rendered, /*addSpecialTokens=*/false);
    } else {
      request.promptIds = tokenizer.encode(promptText);
    }
    request.maxTokens =
        op.getMaxTokensAttr() ? op.getMaxTokensAttr().getInt() : self.options_.defaultMaxTokens;
    request.sampling.temperature = op.getTemperatureAttr()
                                       ? op.getTemperatureAttr().getValueAsDouble()
                                       : self.options_.defaultTemperature;
    if (op.getTopPAttr())
      request.sampling.topP = op.getTopPAttr().getValueAsDouble();
    if (op.getTopKAttr())
      request.sampling.topK = int32_t(op.getTopKAttr().getInt());
    if (op.getSeedAttr())
      request.sampling.seed = uint64_t(op.getSeedAttr().getInt());
    request.sampling.numAlternatives = self.options_.numAlternatives;
    if (auto stops = op.getStopAttr())
      for (mlir::Attribute s : stops)
        request.stop.push_back(mlir::cast<mlir::StringAttr>(s).getValue().str());
    request.lowConfidenceThreshold = self.options_.lowConfidenceThreshold;

    Clock::time_point stepStart = Clock::now();
    absl::StatusOr<GenerationResult> generated = generator.generate(request);
    if (!generated.ok()) {
      json event{{"event", "step"},
                 {"kind", "generate"},
                 {"step", op.getStep().str()},
                 {"location", locationOf(op)},
                 {"error", std::string(generated.status().message())}};
      emit(event);
      return failWith(op, generated.status());
    }
    auto value = std::make_shared<GenerationValue>();
    value->text = generated->text;
    value->tokens = std::move(generated->tokens);
    value->awareness = generated->awareness;
    auto pieceOf = [&](int32_t id) {
      absl::StatusOr<std::string> text = tokenizer.decode({&id, 1}, false);
      return utf8::repair(text.ok() ? *text : generator.tokenBytes(id));
    };
    // Rounded to 4 decimals: the list is meant to be read (and put in
    // refinement prompts), where 17 digits only cost tokens.
    auto round4 = [](double x) { return std::round(x * 1e4) / 1e4; };
    for (int64_t index : value->awareness.lowConfidencePositions) {
      if (index < 0 || index >= int64_t(value->tokens.size()))
        continue;
      const GeneratedToken &token = value->tokens[size_t(index)];
      json alternatives = json::array();
      for (const TokenChoice &choice : token.alternatives)
        alternatives.push_back(json{{"token", pieceOf(choice.token)},
                                    {"prob", round4(std::exp(double(choice.logprob)))}});
      value->uncertain.push_back(json{{"index", index},
                                      {"token", pieceOf(token.id)},
                                      {"prob", round4(std::exp(double(token.logprob)))},
                                      {"entropy", round4(token.entropy)},
                                      {"alternatives", alternatives}});
    }
    ++result.steps;
    // Prompt tokens whose KV cache an earlier generation left (not prefilled).
    int64_t reusedTokens = generated->awareness.timing.cachedPromptTokens;
    json event{{"event", "step"},
               {"kind", "generate"},
               {"step", op.getStep().str()},
               {"location", locationOf(op)},
               {"model", model->name},
               {"inputs", json{{"prompt", utf8::repair(promptText)},
                               {"prompt_tokens", int64_t(request.promptIds.size())},
                               {"chat_template", chat},
                               {"max_tokens", request.maxTokens},
                               {"temperature", request.sampling.temperature}}},
               {"outputs", json{{"text", utf8::repair(value->text)},
                                {"tokens", int64_t(value->tokens.size())},
                                {"finish_reason", toString(generated->finishReason)}}},
               {"uncertainty", uncertaintyJson(*value)},
               {"latency_ms", millisecondsSince(stepStart)},
               {"reused", reusedTokens > 0},
               {"reused_tokens", reusedTokens},
               {"retries", 0}};
    if (!attempts.empty())
      event["attempt"] = attempts.back();
    if (op.getPrefixGroupAttr()) {
      int64_t group = op.getPrefixGroupAttr().getInt();
      event["prefix"] = json{{"group", group},
                             {"bytes", op.getPrefixLenAttr() ? op.getPrefixLenAttr().getInt() : 0},
                             {"reused", reusedTokens > 0},
                             {"reused_tokens", reusedTokens}};
      prefixSeen[group] = true;
    }
    emit(event);
    values[op.getResult()] = std::shared_ptr<const GenerationValue>(value);
    return absl::OkStatus();
  }

  /// The arguments of a tool call (validated by the registry later).
  json toolArguments(agent::ToolOp op) {
    json args = json::object();
    mlir::ArrayAttr names = op.getArgNames();
    for (auto [name, operand] : llvm::zip(names, op.getArgs()))
      args[mlir::cast<mlir::StringAttr>(name).getValue().str()] = toJsonValue(get(operand));
    return args;
  }

  CallOptions callOptions(agent::ToolOp op) {
    CallOptions options;
    if (op.getTimeoutMsAttr())
      options.timeout = std::chrono::milliseconds(op.getTimeoutMsAttr().getInt());
    if (op.getRetriesAttr())
      options.retries = int(op.getRetriesAttr().getInt());
    options.backoffBase = self.options_.backoffBase;
    options.backoffCap = self.options_.backoffCap;
    options.jitterSeed = self.options_.jitterSeed;
    return options;
  }

  /// Runs one call; thread-safe (touches no interpreter state).
  struct ToolCall {
    json args;
    CallOptions options;
    ToolResult result;
    double startMs = 0, endMs = 0;
  };
  void callTool(agent::ToolOp op, ToolCall &call) {
    call.startMs = millisecondsSince(start);
    call.result = self.tools_.call(op.getTool(), call.args, call.options);
    call.endMs = millisecondsSince(start);
  }

  void finishTool(agent::ToolOp op, ToolCall &call, bool parallel) {
    auto value = std::make_shared<ToolValue>();
    value->ok = call.result.ok;
    value->output = call.result.ok ? call.result.value : json(nullptr);
    if (!call.result.ok)
      value->error = call.result.error.message.empty()
                         ? call.result.error.type
                         : absl::StrCat(call.result.error.type, ": ", call.result.error.message);
    ++result.steps;
    if (!value->ok)
      ++result.toolFailures;
    json attemptLog = json::array();
    for (const ToolAttempt &attempt : call.result.attemptLog) {
      json entry{
          {"ok", attempt.ok},
          {"latency_ms", std::chrono::duration<double, std::milli>(attempt.latency).count()}};
      if (!attempt.ok)
        entry["error"] = utf8::repair(attempt.error.message.empty()
                                       ? attempt.error.type
                                       : attempt.error.type + ": " + attempt.error.message);
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
    absl::StatusOr<std::string> name = self.tools_.resolveName(op.getTool().str());
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

  absl::Status runParallel(agent::ParallelOp op) {
    std::vector<agent::ToolOp> calls;
    mlir::Block &body = op.getBody().front();
    for (mlir::Operation &inner : body.without_terminator()) {
      auto toolOp = mlir::dyn_cast<agent::ToolOp>(inner);
      if (!toolOp)
        return fail(&inner, "only agent.tool may appear in agent.parallel");
      if (absl::Status known = checkTool(toolOp); !known.ok())
        return known;
      calls.push_back(toolOp);
    }
    std::vector<ToolCall> state(calls.size());
    for (size_t i = 0; i < calls.size(); ++i)
      state[i] = ToolCall{toolArguments(calls[i]), callOptions(calls[i]), {}, 0, 0};
    if (self.options_.parallelTools && calls.size() > 1) {
      std::vector<std::thread> threads;
      threads.reserve(calls.size());
      for (size_t i = 0; i < calls.size(); ++i)
        threads.emplace_back([this, &calls, &state, i] { callTool(calls[i], state[i]); });
      for (std::thread &thread : threads)
        thread.join();
    } else {
      for (size_t i = 0; i < calls.size(); ++i)
        callTool(calls[i], state[i]);
    }
    for (size_t i = 0; i < calls.size(); ++i)
      finishTool(calls[i], state[i], /*parallel=*/calls.size() > 1);
    auto yield = mlir::cast<agent::YieldOp>(body.getTerminator());
    for (auto [res, yielded] : llvm::zip(op.getResults(), yield.getValues()))
      values[res] = get(yielded);
    return absl::OkStatus();
  }

  //===------------------------------------------------------------------===//
  // Values and conditions
  //===------------------------------------------------------------------===//

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
        if (close == llvm::StringRef::npos || text.slice(i + 1, close).getAsInteger(10, index) ||
            index >= op.getArgs().size())
          return fail(op, "malformed placeholder in the template");
        out += renderValue(get(op.getArgs()[index]));
        i = close;
      } else {
        out += c;
      }
    }
    values[op.getResult()] = std::move(out);
    return absl::OkStatus();
  }

  absl::StatusOr<bool> compare(agent::CmpOp op) {
    llvm::StringRef pred = op.getPredicate();
    const Value &lhs = get(op.getLhs());
    const Value &rhs = get(op.getRhs());
    auto number = [](const Value &v) -> std::optional<double> {
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
    Value v;
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
      return fail(op, absl::StrCat("unknown uncertainty metric '", metric.str(), "'"));
    values[op.getResult()] = std::move(v);
    return absl::OkStatus();
  }

  //===------------------------------------------------------------------===//
  // Control flow
  //===------------------------------------------------------------------===//

  /// Runs `block` up to its terminator. A yield leaves its values in
  /// `yielded`; a return sets the workflow's value and answers Returned.
  absl::StatusOr<Flow> runBlock(mlir::Block &block, std::vector<Value> *yielded) {
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
        return failWith(&op, absl::InternalError("reached agent.unreachable (an executor bug)"));
      absl::StatusOr<Flow> flow = runOp(op);
      if (!flow.ok())
        return flow.status();
      if (*flow == Flow::Returned)
        return Flow::Returned;
    }
    return Flow::Next;
  }

  absl::StatusOr<Flow> runIf(agent::IfOp op) {
    bool condition = boolean(op.getCondition());
    mlir::Region &region = condition ? op.getThenRegion() : op.getElseRegion();
    if (region.empty())
      return Flow::Next;
    std::vector<Value> yielded;
    absl::StatusOr<Flow> flow = runBlock(region.front(), &yielded);
    if (!flow.ok() || *flow == Flow::Returned)
      return flow;
    for (auto [res, v] : llvm::zip(op.getResults(), yielded))
      values[res] = v;
    return Flow::Next;
  }

  absl::StatusOr<Flow> runRetry(agent::RetryOp op) {
    mlir::Block &body = op.getBody().front();
    mlir::Block &condition = op.getCondition().front();
    int64_t maxAttempts = int64_t(op.getMaxAttempts());
    std::vector<Value> previous;
    for (mlir::Type type : op.getResultTypes())
      previous.push_back(emptyValueOf(type));
    std::vector<Value> current;
    std::string name;
    if (auto names = op.getNamesAttr())
      for (mlir::Attribute n : names)
        name += (name.empty() ? "" : ",") + mlir::cast<mlir::StringAttr>(n).getValue().str();
    for (int64_t attempt = 0;; ++attempt) {
      values[body.getArgument(0)] = attempt;
      for (unsigned i = 0; i < previous.size(); ++i)
        values[body.getArgument(i + 1)] = previous[i];
      current.clear();
      attempts.push_back(attempt);
      absl::StatusOr<Flow> flow = runBlock(body, &current);
      attempts.pop_back();
      if (!flow.ok() || *flow == Flow::Returned)
        return flow;
      bool last = attempt + 1 >= maxAttempts;
      bool again = false;
      for (unsigned i = 0; i < current.size() && i < condition.getNumArguments(); ++i)
        values[condition.getArgument(i)] = current[i];
      std::vector<Value> verdict;
      absl::StatusOr<Flow> condFlow = runBlock(condition, &verdict);
      if (!condFlow.ok())
        return condFlow.status();
      if (!verdict.empty())
        if (auto *b = std::get_if<bool>(&verdict.front()))
          again = *b;
      emit(json{{"event", "retry"},
                {"retry", name},
                {"location", locationOf(op)},
                {"attempt", attempt},
                {"condition", again},
                {"again", again && !last},
                {"max_attempts", maxAttempts}});
      if (!again || last)
        break;
      previous = current;
    }
    for (auto [res, v] : llvm::zip(op.getResults(), current))
      values[res] = v;
    return Flow::Next;
  }

  absl::StatusOr<Flow> runOp(mlir::Operation &operation) {
    mlir::Operation *op = &operation;
    absl::Status status = absl::OkStatus();
    if (self.options_.cancel && self.options_.cancel->load() &&
        mlir::isa<agent::GenerateOp, agent::ToolOp, agent::ParallelOp>(op))
      return failWith(op, absl::CancelledError("the run was cancelled"));
    if (auto g = mlir::dyn_cast<agent::GenerateOp>(op)) {
      status = runGenerate(g);
    } else if (auto t = mlir::dyn_cast<agent::ToolOp>(op)) {
      status = runTool(t);
    } else if (auto p = mlir::dyn_cast<agent::ParallelOp>(op)) {
      status = runParallel(p);
    } else if (auto i = mlir::dyn_cast<agent::IfOp>(op)) {
      return runIf(i);
    } else if (auto r = mlir::dyn_cast<agent::RetryOp>(op)) {
      return runRetry(r);
    } else if (auto c = mlir::dyn_cast<agent::ConstantOp>(op)) {
      absl::StatusOr<Value> v = attributeValue(c.getValue(), c.getType());
      if (!v.ok())
        return failWith(op, v.status());
      values[c.getResult()] = *v;
    } else if (auto f = mlir::dyn_cast<agent::FormatOp>(op)) {
      status = runFormat(f);
    } else if (auto l = mlir::dyn_cast<agent::ListOp>(op)) {
      json array = json::array();
      for (mlir::Value e : l.getElements())
        array.push_back(toJsonValue(get(e)));
      values[l.getResult()] = JsonValue{array};
    } else if (auto t = mlir::dyn_cast<agent::TextOp>(op)) {
      std::string text;
      const Value &step = get(t.getStep());
      if (auto *g = std::get_if<std::shared_ptr<const GenerationValue>>(&step)) {
        text = (*g)->text;
      } else if (auto *tv = std::get_if<std::shared_ptr<const ToolValue>>(&step)) {
        if ((*tv)->ok)
          text = (*tv)->output.is_string() ? (*tv)->output.get<std::string>()
                                           : dumpJson((*tv)->output);
      }
      values[t.getResult()] = std::move(text);
    } else if (auto u = mlir::dyn_cast<agent::UncertaintyOp>(op)) {
      status = runUncertainty(u);
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
      auto it = regexes.find(op);
      if (it == regexes.end()) {
        absl::StatusOr<Regex> regex = compileRegex(m.getPattern().str());
        if (!regex.ok())
          return failWith(op, regex.status());
        it = regexes.emplace(op, std::move(*regex)).first;
      }
      const std::string *text = as<std::string>(m.getInput());
      absl::StatusOr<bool> found = regexSearch(it->second.get(), text ? *text : "");
      if (!found.ok())
        return failWith(op, found.status());
      values[m.getResult()] = *found;
    } else if (auto j = mlir::dyn_cast<agent::JsonValidOp>(op)) {
      const std::string *text = as<std::string>(j.getInput());
      values[j.getResult()] = text && json::accept(*text);
    } else {
      return fail(op, "the executor does not know this operation");
    }
    if (!status.ok())
      return status;
    return Flow::Next;
  }
};

//===----------------------------------------------------------------------===//
// AgentExecutor
//===----------------------------------------------------------------------===//

AgentExecutor::AgentExecutor(ToolRegistry &tools, AgentExecutorOptions options)
    : tools_(tools), options_(std::move(options)) {}
AgentExecutor::~AgentExecutor() = default;

void AgentExecutor::addModel(AgentModel model) { models_.push_back(std::move(model)); }

absl::StatusOr<AgentRunResult> AgentExecutor::run(mlir::ModuleOp module, std::string_view workflow,
                                                  const json &args,
                                                  const AgentEventCallback &onEvent) {
  if (options_.numAlternatives < 0 || options_.numAlternatives > 20)
    return absl::InvalidArgumentError("numAlternatives must be in [0, 20]");
  std::vector<agent::WorkflowOp> workflows(module.getOps<agent::WorkflowOp>().begin(),
                                           module.getOps<agent::WorkflowOp>().end());
  std::vector<std::string> names;
  for (agent::WorkflowOp w : workflows)
    names.push_back(w.getSymName().str());
  agent::WorkflowOp selected;
  if (workflow.empty()) {
    if (workflows.size() != 1)
      return absl::InvalidArgumentError(workflows.empty()
                                            ? std::string("the file defines no workflow")
                                            : absl::StrCat("the file defines several workflows (",
                                                           absl::StrJoin(names, ", "),
                                                           "); choose one with --workflow"));
    selected = workflows.front();
  } else {
    for (agent::WorkflowOp w : workflows)
      if (w.getSymName() == llvm::StringRef(workflow.data(), workflow.size()))
        selected = w;
    if (!selected)
      return absl::NotFoundError(absl::StrCat("no workflow '", std::string(workflow),
                                              "' (defined: ", absl::StrJoin(names, ", "), ")"));
  }
  if (!args.is_object())
    return absl::InvalidArgumentError("workflow arguments must be a JSON object");

  Impl impl(*this, onEvent);
  mlir::Block &entry = selected.getBody().front();
  std::vector<std::string> paramNames;
  for (unsigned i = 0; i < entry.getNumArguments(); ++i)
    paramNames.push_back(selected.getParamName(i).str());
  for (auto &[key, value] : args.items())
    if (std::find(paramNames.begin(), paramNames.end(), key) == paramNames.end())
      return absl::InvalidArgumentError(
          absl::StrCat("workflow '", selected.getSymName().str(), "' has no parameter '", key,
                       "' (parameters: ", absl::StrJoin(paramNames, ", "), ")"));
  json bound = json::object();
  for (unsigned i = 0; i < entry.getNumArguments(); ++i) {
    mlir::BlockArgument arg = entry.getArgument(i);
    const std::string &name = paramNames[i];
    absl::StatusOr<Value> value;
    if (args.contains(name)) {
      value = bindArgument(args[name], arg.getType(), name);
    } else if (mlir::Attribute def = selected.getArgAttr(i, "agent.default")) {
      value = attributeValue(def, arg.getType());
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "missing argument '", name, "' (", typeName(arg.getType()), ") of workflow '",
          selected.getSymName().str(), "' (--arg ", name, "=VALUE)"));
    }
    if (!value.ok())
      return value.status();
    bound[name] = toJsonValue(*value);
    impl.values[arg] = std::move(*value);
  }
  impl.emit(json{{"event", "start"}, {"workflow", selected.getSymName().str()}, {"args", bound}});
  absl::StatusOr<Impl::Flow> flow = impl.runBlock(entry, nullptr);
  impl.result.seconds = millisecondsSince(impl.start) / 1000.0;
  if (!flow.ok()) {
    impl.emit(json{{"event", "error"}, {"error", std::string(flow.status().message())}});
    return flow.status();
  }
  impl.emit(json{{"event", "end"},
                 {"value", impl.result.value},
                 {"seconds", impl.result.seconds},
                 {"steps", impl.result.steps},
                 {"tool_failures", impl.result.toolFailures}});
  return std::move(impl.result);
}

} // namespace treni
