//===- agent_command.cpp - `treni agent ...` ------------------------------===//
//
//   treni agent compile FLOW.agent [--emit=ast|mlir|mlir-opt] [-o FILE]
//                       [--tools=REGISTRY.json] [--min-prefix=N]
//   treni agent run FLOW.agent --model MODEL [--arg NAME=VALUE ...]
//                   [--workflow NAME] [--device cpu|gpu] [--trace FILE]
//                   [--tools-config FILE] [--raw-prompt] [--json]
//                   [--batch ARGS.jsonl] [--tokenizer DIR] [--max-seq N]
//                   [--no-prefix-cache] [--embedding-model NAME=DIR]
//                   [--reranker-model NAME=DIR]
//
// `--embedding-model` (and `--reranker-model`) load the models the rag tools
// of a `--tools-config` "rag" section run on, beside the chat model; the
// section's embedding_model / reranker name them by NAME.
//
// `--batch` runs the workflow once per line of ARGS.jsonl (a JSON object of
// arguments, merged over the --arg ones) in one process, printing one JSON
// summary line per run (failed runs too); tools, their state and their
// fault-injection counters carry over from run to run (bench/agent_bench.py).
//
// `ast` is the checked syntax tree, `mlir` the agent dialect as lowered
// (verified), `mlir-opt` after the agent passes: agent-verify-tools,
// agent-hoist-tools and agent-share-prefix. Errors name FILE:LINE:COLUMN
// and show the source line with a caret, for syntax, type, verifier and
// pass errors alike.
//
//===----------------------------------------------------------------------===//

#include "tools/treni/agent_command.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "agent_dsl/Ast.h"
#include "mlir/IR/MLIRContext.h"
#include "runtime/agent/agent_compiler.h"
#include "runtime/agent/agent_executor.h"
#include "runtime/agent/agent_tool_config.h"
#include "runtime/agent/rag_models.h"
#include "runtime/serve/generation.h"
#include "runtime/serve/loaded_model.h"
#include "runtime/text/chat_template.h"
#include "runtime/tools/tool_registry.h"
#include "runtime/tools/tool_signature.h"
#include "support/json.h"
#include "support/status.h"
#include "tools/treni/cli_flags.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/raw_ostream.h"

namespace cl = llvm::cl;

namespace treni {
namespace {
cl::SubCommand agentCommand("agent", "Agent workflows (.agent files)");

cl::opt<std::string> agentAction(cl::Positional,
                                 cl::desc("ACTION (compile or run)"),
                                 cl::Required, cl::sub(agentCommand));
cl::opt<std::string> agentFile(cl::Positional, cl::desc("FLOW.agent"),
                               cl::Required, cl::sub(agentCommand));
enum class AgentEmit { Ast, Mlir, MlirOpt };
cl::opt<AgentEmit> agentEmit(
    "emit", cl::desc("What `compile` writes (default: mlir)"),
    cl::values(clEnumValN(AgentEmit::Ast, "ast", "the checked syntax tree"),
               clEnumValN(AgentEmit::Mlir, "mlir",
                          "the agent dialect as lowered"),
               clEnumValN(AgentEmit::MlirOpt, "mlir-opt",
                          "the agent dialect after the agent passes")),
    cl::init(AgentEmit::Mlir), cl::sub(agentCommand));
cl::opt<std::string> agentOutput("o", cl::desc("Output file (default: stdout)"),
                                 cl::value_desc("FILE"), cl::init("-"),
                                 cl::sub(agentCommand));
cl::opt<std::string> agentTools(
    "tools",
    cl::desc("JSON file of tool signatures for agent-verify-tools (besides "
             "the file's `extern tool` declarations)"),
    cl::value_desc("FILE"), cl::init(""), cl::sub(agentCommand));
cl::opt<int> agentMinPrefix(
    "min-prefix",
    cl::desc("Shortest shared literal prompt prefix (bytes) agent-share-prefix "
             "marks"),
    cl::init(16), cl::sub(agentCommand));

cl::opt<std::string>
    agentModel("model", cl::desc("run: the model (directory or package)"),
               cl::value_desc("MODEL"), cl::init(""), cl::sub(agentCommand));
cl::list<std::string> agentArgs("arg",
                                cl::desc("run: a workflow argument NAME=VALUE"),
                                cl::value_desc("NAME=VALUE"),
                                cl::sub(agentCommand));
cl::opt<std::string> agentTokenizerDir(
    "tokenizer",
    cl::desc("run: directory of tokenizer.json and tokenizer_config.json "
             "(default: the model's)"),
    cl::init(""), cl::sub(agentCommand));
cl::opt<std::string> agentWorkflow(
    "workflow",
    cl::desc("run: the workflow to run (default: the file's only one)"),
    cl::value_desc("NAME"), cl::init(""), cl::sub(agentCommand));
cl::opt<std::string> agentDevice("device", cl::desc("run: cpu or gpu"),
                                 cl::init("cpu"), cl::sub(agentCommand));
cl::opt<int> agentMaxSeq("max-seq", cl::desc("run: KV cache length in tokens"),
                         cl::init(4096), cl::sub(agentCommand));
cl::opt<bool> agentNoPrefixCache(
    "no-prefix-cache",
    cl::desc("run: prefill every generate step's prompt whole (no KV-cache "
             "reuse of a prefix shared with the previous step)"),
    cl::init(false), cl::sub(agentCommand));
cl::opt<std::string>
    agentTrace("trace", cl::desc("run: write the step trace (JSON) to FILE"),
               cl::value_desc("FILE"), cl::init(""), cl::sub(agentCommand));
cl::opt<std::string> agentToolsConfig(
    "tools-config",
    cl::desc("run: tools to register (sqlite, files, http, external, faults; "
             "see docs/user-guide.md)"),
    cl::value_desc("FILE"), cl::init(""), cl::sub(agentCommand));
cl::opt<bool> agentRawPrompt(
    "raw-prompt",
    cl::desc(
        "run: send generate prompts as plain completions (no chat template)"),
    cl::init(false), cl::sub(agentCommand));
cl::opt<double> agentLowConfidence(
    "low-confidence",
    cl::desc("run: probability under which a token is uncertain"),
    cl::init(0.5), cl::sub(agentCommand));
cl::opt<std::string> agentEmbeddingModel(
    "embedding-model",
    cl::desc("run: an embedding model for the rag tools, as NAME=DIR (the "
             "tools config's rag.embedding_model names NAME)"),
    cl::value_desc("NAME=DIR"), cl::init(""), cl::sub(agentCommand));
cl::opt<std::string> agentRerankerModel(
    "reranker-model",
    cl::desc("run: a reranker (Qwen3-Reranker style) for rag.search, as "
             "NAME=DIR (rag.reranker names NAME)"),
    cl::value_desc("NAME=DIR"), cl::init(""), cl::sub(agentCommand));
cl::opt<std::string> agentBatch(
    "batch",
    cl::desc(
        "run: run once per JSON line of FILE (arguments), one summary each"),
    cl::value_desc("ARGS.jsonl"), cl::init(""), cl::sub(agentCommand));
cl::opt<bool>
    agentJson("json",
              cl::desc("run: print {ok, value, seconds, steps, ...} as JSON"),
              cl::init(false), cl::sub(agentCommand));

int error(const llvm::Twine &message) {
  llvm::errs() << "treni: error: " << message << "\n";
  return 1;
}

bool writeOutput(llvm::StringRef text) {
  std::error_code ec;
  llvm::ToolOutputFile out(agentOutput, ec, llvm::sys::fs::OF_None);
  if (ec) {
    error("cannot write '" + agentOutput + "': " + ec.message());
    return false;
  }
  out.os() << text;
  out.keep();
  return true;
}

int runCompile() {
  auto buffer = llvm::MemoryBuffer::getFileOrSTDIN(agentFile, /*IsText=*/true);
  if (!buffer)
    return error("cannot read '" + agentFile +
                 "': " + buffer.getError().message());
  std::string source = (*buffer)->getBuffer().str();

  absl::StatusOr<agentdsl::Program> program =
      parseAgentSource(source, agentFile);
  if (!program.ok()) {
    llvm::errs() << std::string(program.status().message());
    return 1;
  }
  if (agentEmit == AgentEmit::Ast)
    return writeOutput(agentdsl::dumpProgram(*program)) ? 0 : 1;

  AgentCompileOptions options;
  options.minPrefix = agentMinPrefix;
  options.runPasses = agentEmit == AgentEmit::MlirOpt;
  if (options.runPasses && !agentTools.empty()) {
    absl::StatusOr<std::vector<ToolSignature>> tools =
        readToolSignaturesFile(agentTools);
    if (!tools.ok())
      return error(std::string(tools.status().message()));
    options.tools = std::move(*tools);
  }
  mlir::MLIRContext context;
  auto module =
      lowerAgentProgram(*program, source, agentFile, context, options);
  if (!module.ok()) {
    llvm::errs() << std::string(module.status().message());
    return 1;
  }
  std::string text;
  llvm::raw_string_ostream os(text);
  (*module)->print(os);
  return writeOutput(text) ? 0 : 1;
}

/// Writes the trace file (when asked for); false (with a message) on error.
bool writeTrace(const nlohmann::json &trace) {
  if (agentTrace.empty())
    return true;
  std::ofstream out(agentTrace);
  out << dumpJson(trace, 2) << "\n";
  if (!out) {
    error("cannot write '" + agentTrace + "'");
    return false;
  }
  return true;
}

/// The summary line of a run (--json, --batch): its result without the
/// trace, or {ok: false, error}.
nlohmann::json runSummary(const absl::StatusOr<AgentRunResult> &run,
                          const nlohmann::json &events) {
  if (!run.ok())
    return {{"ok", false}, {"error", std::string(run.status().message())}};
  nlohmann::json summary =
      run->toJson(events.empty() ? "" : events.front().value("workflow", ""));
  summary.erase("trace");
  return summary;
}

/// Runs the workflow once per line of --batch (arguments merged over
/// `args`), printing one summary line per run, failed runs too.
int runBatch(AgentExecutor &executor, mlir::ModuleOp module,
             const nlohmann::json &args) {
  std::ifstream batch(agentBatch);
  if (!batch)
    return error("cannot read '" + agentBatch + "'");
  std::string line;
  int lineNumber = 0;
  nlohmann::json traces = nlohmann::json::array();
  while (std::getline(batch, line)) {
    ++lineNumber;
    if (line.find_first_not_of(" \t\r") == std::string::npos)
      continue;
    nlohmann::json runArgs = nlohmann::json::parse(line, nullptr, false);
    if (!runArgs.is_object())
      return error(agentBatch + ":" + std::to_string(lineNumber) +
                   ": not a JSON object of arguments");
    nlohmann::json merged = args;
    merged.update(runArgs);
    nlohmann::json runEvents = nlohmann::json::array();
    absl::StatusOr<AgentRunResult> run = executor.run(
        module, agentWorkflow, merged,
        [&](const nlohmann::json &event) { runEvents.push_back(event); });
    nlohmann::json summary = runSummary(run, runEvents);
    summary["line"] = lineNumber;
    traces.push_back(runEvents);
    llvm::outs() << dumpJson(summary) << "\n";
    llvm::outs().flush();
  }
  return writeTrace(traces) ? 0 : 1;
}

/// Runs the workflow once and prints its value (or, with --json, its
/// summary).
int runOnce(AgentExecutor &executor, mlir::ModuleOp module,
            const nlohmann::json &args) {
  nlohmann::json events = nlohmann::json::array();
  absl::StatusOr<AgentRunResult> result = executor.run(
      module, agentWorkflow, args,
      [&](const nlohmann::json &event) { events.push_back(event); });
  if (!result.ok()) {
    writeTrace(events);
    if (agentJson)
      llvm::outs() << dumpJson(runSummary(result, events)) << "\n";
    return error(std::string(result.status().message()));
  }
  if (!writeTrace(result->trace))
    return 1;
  if (agentJson)
    llvm::outs() << dumpJson(runSummary(result, events)) << "\n";
  else if (result->value.is_string())
    llvm::outs() << result->value.get<std::string>() << "\n";
  else if (!result->value.is_null())
    llvm::outs() << dumpJson(result->value) << "\n";
  return 0;
}

/// The name workflows call the model by: the last component of its path.
std::string modelNameOf(const std::string &model) {
  std::filesystem::path path = std::filesystem::path(model).lexically_normal();
  std::string name = path.filename().string();
  return name.empty() ? path.parent_path().filename().string() : name;
}

/// An embedding model or reranker for the rag tools, with what scores.
struct ScoringModel {
  std::string name;
  LoadedModel loaded;
  std::unique_ptr<StepRunner> runner;
  std::unique_ptr<Embedder> embedder;
  std::unique_ptr<Reranker> reranker;
};

/// Steps of the scoring models: inputs of up to this many tokens together.
constexpr int64_t kScoringStepTokens = 2048;

/// Loads `spec` (NAME=DIR) as an embedding model or a reranker. Its KV pool
/// holds one --max-seq input plus a step's worth of short inputs, as
/// `treni serve` sizes a scoring model's.
absl::StatusOr<std::unique_ptr<ScoringModel>>
loadScoringModel(const std::string &flag, const std::string &spec,
                 bool reranker) {
  size_t equals = spec.find('=');
  if (equals == std::string::npos || equals == 0 || equals + 1 == spec.size())
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " '", spec, "' is not NAME=DIR"));
  auto model = std::make_unique<ScoringModel>();
  model->name = spec.substr(0, equals);
  const std::string dir = spec.substr(equals + 1);
  LoadOptions options;
  options.engine.device = agentDevice == "gpu" ? Device::Gpu : Device::Cpu;
  options.engine.maxSeq = agentMaxSeq;
  auto loaded = loadModel(dir, options);
  if (!loaded.ok())
    return absl::Status(
        loaded.status().code(),
        absl::StrCat(flag, " ", dir, ": ", loaded.status().message()));
  model->loaded = std::move(*loaded);
  auto scorer =
      cli::makeScorer(model->loaded, reranker,
                      cli::scorerPoolBlocks(agentMaxSeq, kScoringStepTokens),
                      kScoringStepTokens);
  if (!scorer.ok())
    return absl::Status(
        scorer.status().code(),
        absl::StrCat(flag, " ", dir, ": ", scorer.status().message()));
  model->runner = std::move(scorer->runner);
  model->embedder = std::move(scorer->embedder);
  model->reranker = std::move(scorer->reranker);
  return model;
}

/// The rag tools' models: those --embedding-model / --reranker-model gave,
/// by the names the "rag" section uses.
absl::StatusOr<RagModels> ragModelsOf(const ScoringModel *embedding,
                                      const ScoringModel *reranker,
                                      const RagModelRequest &request) {
  if (!embedding || embedding->name != request.embeddingModel)
    return absl::InvalidArgumentError(absl::StrCat(
        "tools configuration: rag.embedding_model '", request.embeddingModel,
        "' is not loaded (give --embedding-model ", request.embeddingModel,
        "=DIR)"));
  if (!request.reranker.empty() &&
      (!reranker || reranker->name != request.reranker))
    return absl::InvalidArgumentError(absl::StrCat(
        "tools configuration: rag.reranker '", request.reranker,
        "' is not loaded (give --reranker-model ", request.reranker, "=DIR)"));
  return ragModels(
      embedding->name, *embedding->embedder, *embedding->loaded.tokenizer,
      request.reranker.empty() ? nullptr : reranker->reranker.get(),
      request.queryPrefix);
}

int runWorkflow() {
  std::ifstream in(agentFile);
  if (!in)
    return error("cannot read '" + agentFile + "'");
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string source = buffer.str();

  nlohmann::json args = nlohmann::json::object();
  for (const std::string &arg : agentArgs) {
    size_t eq = arg.find('=');
    if (eq == std::string::npos || eq == 0)
      return error("--arg '" + arg + "' is not NAME=VALUE");
    args[arg.substr(0, eq)] = arg.substr(eq + 1);
  }
  if (agentDevice != "cpu" && agentDevice != "gpu")
    return error("--device must be cpu or gpu, not " + agentDevice);
  if (agentMaxSeq < 2)
    return error("--max-seq must be at least 2");

  // The rag tools' models, then the tools: a bad configuration fails
  // before the chat model loads.
  std::unique_ptr<ScoringModel> embedding, reranker;
  for (auto [flag, spec, model, isReranker] :
       {std::tuple{"--embedding-model", &agentEmbeddingModel, &embedding,
                   false},
        std::tuple{"--reranker-model", &agentRerankerModel, &reranker, true}}) {
    if (spec->empty())
      continue;
    auto loaded = loadScoringModel(flag, *spec, isReranker);
    if (!loaded.ok())
      return error(std::string(loaded.status().message()));
    *model = std::move(*loaded);
  }
  ToolRegistry registry;
  if (!agentToolsConfig.empty()) {
    absl::Status configured = configureAgentToolsFromFile(
        registry, agentToolsConfig, [&](const RagModelRequest &request) {
          return ragModelsOf(embedding.get(), reranker.get(), request);
        });
    if (!configured.ok())
      return error(std::string(configured.message()));
  }

  mlir::MLIRContext context;
  AgentCompileOptions compileOptions;
  compileOptions.tools = registry.signatures();
  compileOptions.minPrefix = agentMinPrefix;
  auto module = compileAgentSource(source, agentFile, context, compileOptions);
  if (!module.ok()) {
    llvm::errs() << std::string(module.status().message());
    return 1;
  }

  if (agentModel.empty())
    return error("run needs --model MODEL");
  LoadOptions loadOptions;
  loadOptions.engine.device = agentDevice == "gpu" ? Device::Gpu : Device::Cpu;
  loadOptions.engine.maxSeq = agentMaxSeq;
  loadOptions.tokenizerDir = agentTokenizerDir;
  absl::StatusOr<LoadedModel> loaded = loadModel(agentModel, loadOptions);
  if (!loaded.ok())
    return error("cannot load '" + agentModel +
                 "': " + std::string(loaded.status().message()));
  Generator generator(*loaded->engine, *loaded->tokenizer,
                      {agentMaxSeq, loaded->eosIds, !agentNoPrefixCache});

  AgentExecutorOptions options;
  options.applyChatTemplate = !agentRawPrompt;
  options.lowConfidenceThreshold = agentLowConfidence;
  AgentExecutor executor(registry, options);
  executor.addModel(
      {modelNameOf(agentModel), &generator, loaded->chatTemplate.get()});
  if (!agentBatch.empty())
    return runBatch(executor, **module, args);
  return runOnce(executor, **module, args);
}
} // namespace

bool agentCommandSelected() { return static_cast<bool>(agentCommand); }

int runAgentCommand() {
  if (agentAction == "compile")
    return runCompile();
  if (agentAction == "run")
    return runWorkflow();
  return error("unknown agent action '" + agentAction + "' (compile or run)");
}

} // namespace treni
