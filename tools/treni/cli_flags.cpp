//===- cli_flags.cpp - what treni's subcommands share ---------------------===//

#include "tools/treni/cli_flags.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "frontends/safetensors/model_config.h"
#include "frontends/safetensors/model_dir.h"
#include "runtime/batch/kv_block_pool.h"
#include "runtime/exec/gpu_executor.h"
#include "runtime/exec/package.h"
#include "runtime/exec/step_inputs.h"
#include "runtime/serve/progress.h"
#include "support/clock.h"
#include "support/status.h"

#ifndef TRENI_DEFAULT_MODEL_DIR
#define TRENI_DEFAULT_MODEL_DIR ""
#endif

namespace cl = llvm::cl;

namespace treni::cli {

const char *const kDefaultModelDir = TRENI_DEFAULT_MODEL_DIR;

cl::SubCommand &compileSubcommand() {
  static cl::SubCommand command("compile", "Compile a model directory");
  return command;
}
cl::SubCommand &runSubcommand() {
  static cl::SubCommand command(
      "run", "Answer a prompt and show how fast and how sure the model was "
             "(or generate from token ids: --prompt-ids, --json, ...)");
  return command;
}
cl::SubCommand &chatSubcommand() {
  static cl::SubCommand command(
      "chat", "Interactive multi-turn chat with the model's template");
  return command;
}
cl::SubCommand &serveSubcommand() {
  static cl::SubCommand command("serve", "Serve the OpenAI HTTP API");
  return command;
}

namespace {

//===----------------------------------------------------------------------===//
// Compiler flags: compile, run, chat, serve
//===----------------------------------------------------------------------===//

cl::opt<std::string>
    dtype("dtype",
          cl::desc("Activation dtype: bf16, f16 or f32 (default: the "
                   "checkpoint's; bf16 for f32 checkpoints on GPU)"),
          cl::init(""), cl::sub(compileSubcommand()), cl::sub(runSubcommand()),
          cl::sub(chatSubcommand()), cl::sub(serveSubcommand()));
cl::list<std::string>
    disablePass("disable-pass",
                cl::desc("Leave a pass of treni-default-pipeline out"),
                cl::value_desc("NAME"), cl::sub(compileSubcommand()),
                cl::sub(runSubcommand()), cl::sub(chatSubcommand()),
                cl::sub(serveSubcommand()));
cl::list<std::string>
    passOption("pass-option",
               cl::desc("Options of a pass of treni-default-pipeline, e.g. "
                        "'treni-fuse-matvec=fold-norm=false fold-gated=false'"),
               cl::value_desc("NAME=OPTIONS"), cl::sub(compileSubcommand()),
               cl::sub(runSubcommand()), cl::sub(chatSubcommand()),
               cl::sub(serveSubcommand()));

//===----------------------------------------------------------------------===//
// Engine flags: run, chat, serve
//===----------------------------------------------------------------------===//

cl::opt<std::string>
    device("device",
           cl::desc("auto (the GPU when a CUDA device is usable, else the "
                    "CPU), cpu or gpu"),
           cl::init("auto"), cl::sub(runSubcommand()),
           cl::sub(chatSubcommand()), cl::sub(serveSubcommand()));
cl::opt<int> maxSeq(
    "max-seq",
    cl::desc("KV cache length in tokens, the context (default: on the GPU as "
             "many as fit in the memory the weights leave, on the CPU 4096; "
             "at most the model's max_position_embeddings)"),
    cl::init(0), cl::sub(runSubcommand()), cl::sub(chatSubcommand()),
    cl::sub(serveSubcommand()));
cl::opt<int> prefillChunk(
    "prefill-chunk",
    cl::desc("Prefill a prompt in chunks of at most this many tokens, each "
             "against the KV cache of the ones before (bounds the activation "
             "memory; default 2048)"),
    cl::init(2048), cl::sub(runSubcommand()), cl::sub(chatSubcommand()),
    cl::sub(serveSubcommand()));
cl::opt<std::string> tokenizerDir(
    "tokenizer",
    cl::desc("Directory of tokenizer.json and tokenizer_config.json "
             "(default: the model's)"),
    cl::init(""), cl::sub(runSubcommand()), cl::sub(chatSubcommand()),
    cl::sub(serveSubcommand()));
cl::opt<std::string> chatTemplateFile(
    "chat-template",
    cl::desc("Chat template: a Jinja file, or a tokenizer_config.json"),
    cl::init(""), cl::sub(runSubcommand()), cl::sub(chatSubcommand()),
    cl::sub(serveSubcommand()));
cl::opt<double> lowConfidence(
    "low-confidence",
    cl::desc("Probability under which a token counts as low-confidence in "
             "`awareness`"),
    cl::init(kDefaultLowConfidenceProbability), cl::sub(runSubcommand()),
    cl::sub(chatSubcommand()), cl::sub(serveSubcommand()));
cl::opt<bool> noPrefixCache(
    "no-prefix-cache",
    cl::desc("Prefill every prompt whole instead of reusing the KV cache of "
             "the prefix it shares with the previous one"),
    cl::init(false), cl::sub(runSubcommand()), cl::sub(chatSubcommand()),
    cl::sub(serveSubcommand()));

// GPU runtime switches of `run` (A/B runs and debugging).
cl::opt<bool> noGraph("no-cuda-graph", cl::desc("Launch decode step by step"),
                      cl::init(false), cl::sub(runSubcommand()));
cl::opt<bool> blockingSync(
    "blocking-sync",
    cl::desc("Wait for each step with a blocking synchronisation instead of "
             "polling the stream"),
    cl::sub(runSubcommand()));
cl::opt<bool>
    noPdl("no-pdl",
          cl::desc("Launch kernels without programmatic dependent launch"),
          cl::sub(runSubcommand()));
cl::opt<bool> seq1TensorCores(
    "seq1-tensor-cores",
    cl::desc("Decode attention (attention_seq1_partial) on the tensor cores "
             "where it applies (16-bit cache, head dim a multiple of 64)"),
    cl::sub(runSubcommand()), cl::sub(serveSubcommand()));
cl::opt<bool> chunkFlash(
    "chunk-flash",
    cl::desc("In a batched step, prompt-chunk rows attend through the "
             "tensor-core flash kernel (K/V tiles shared by a tile of rows)"),
    cl::sub(runSubcommand()), cl::sub(serveSubcommand()));
cl::opt<bool> gemmTuning(
    "gemm-tuning",
    cl::desc("Time cuBLASLt's first eight algorithms for each GEMM of a "
             "batched step before its graph is captured; keep the fastest"),
    cl::sub(runSubcommand()), cl::sub(serveSubcommand()));
cl::opt<bool> noAsyncDecode(
    "no-async-decode",
    cl::desc("Read each decode step's token before enqueueing the next one "
             "(default: the GPU feeds a step's token to the next, which is "
             "enqueued before the host reads it)"),
    cl::sub(runSubcommand()));

//===----------------------------------------------------------------------===//
// Generation flags: run, chat
//===----------------------------------------------------------------------===//

cl::opt<int> maxTokens("max-tokens",
                       cl::desc("Tokens to generate (default: run 64, run with "
                                "token ids 16, chat 512)"),
                       cl::init(0), cl::sub(runSubcommand()),
                       cl::sub(chatSubcommand()));
cl::opt<float> temperature("temperature", cl::desc("0 = greedy"),
                           cl::init(0.0f), cl::sub(runSubcommand()),
                           cl::sub(chatSubcommand()));
cl::opt<int> topK("top-k", cl::desc("0 = off"), cl::init(0),
                  cl::sub(runSubcommand()), cl::sub(chatSubcommand()));
cl::opt<float> topP("top-p", cl::desc("1 = off"), cl::init(1.0f),
                    cl::sub(runSubcommand()), cl::sub(chatSubcommand()));
cl::opt<uint64_t> seed("seed", cl::desc("Sampling seed"), cl::init(0),
                       cl::sub(runSubcommand()), cl::sub(chatSubcommand()));
cl::list<std::string> stopStrings("stop",
                                  cl::desc("Stop at this text (repeatable)"),
                                  cl::sub(runSubcommand()),
                                  cl::sub(chatSubcommand()));

/// --pass-option values by pass flag (the text after the first '=').
std::map<std::string, std::string> passOptionMap() {
  std::map<std::string, std::string> options;
  for (const std::string &entry : passOption) {
    size_t equals = entry.find('=');
    std::string flag = entry.substr(0, equals);
    std::string &text = options[flag];
    if (equals != std::string::npos)
      text += (text.empty() ? "" : " ") + entry.substr(equals + 1);
  }
  return options;
}

absl::StatusOr<std::optional<DType>> dtypeFromFlag() {
  if (dtype.empty())
    return std::optional<DType>();
  if (dtype == "bf16")
    return std::optional<DType>(DType::BF16);
  if (dtype == "f16")
    return std::optional<DType>(DType::F16);
  if (dtype == "f32")
    return std::optional<DType>(DType::F32);
  return absl::InvalidArgumentError("--dtype must be bf16, f16 or f32, not " +
                                    dtype);
}

absl::StatusOr<Device> deviceFromFlag() {
  if (device == "cpu")
    return Device::Cpu;
  if (device == "gpu")
    return Device::Gpu;
  if (device == "auto")
    return currentDeviceArch().ok() ? Device::Gpu : Device::Cpu;
  return absl::InvalidArgumentError("--device must be auto, cpu or gpu, not " +
                                    device);
}

/// The weights' directory of `model` (a checkpoint directory, or the one a
/// package records), opened: the engine loader is handed it and does not
/// open it again.
absl::StatusOr<std::shared_ptr<const ModelDir>>
weightsDirOf(const std::string &model) {
  if (isPackageFile(model)) {
    TRENI_ASSIGN_OR_RETURN(Package package, readPackage(model));
    return openModelDir(package.modelDir);
  }
  return openModelDir(model);
}

/// Refuses a KV cache (keys and values of every layer, for --max-seq
/// positions) larger than the memory it would live in, before the executor
/// tries to take it. The activation arena and weights come on top: the
/// check catches a --max-seq off by orders of magnitude, and the executor
/// reports a smaller shortfall when it allocates.
absl::Status checkKvCacheFits(const ModelConfig &config,
                              const EngineOptions &options) {
  // The CPU executor keeps the cache in fp32; the GPU in the activation
  // dtype, 16-bit unless --dtype f32.
  int64_t elementBytes =
      options.device == Device::Cpu || options.activationDtype == DType::F32
          ? 4
          : 2;
  // Only full-attention layers keep K/V (a Qwen3.5 linear-attention layer
  // carries a fixed-size state instead).
  int64_t kvLayers = 0;
  for (int64_t layer = 0; layer < config.numLayers; ++layer)
    kvLayers += config.layerType(layer) == LayerType::FullAttention;
  double bytes = 2.0 * double(kvLayers) * double(config.numKvHeads) *
                 double(config.headDim) * double(elementBytes) *
                 double(options.maxSeq);
  double available = 0;
  const char *where = "";
  if (options.device == Device::Cpu) {
    long pages = sysconf(_SC_PHYS_PAGES), pageSize = sysconf(_SC_PAGE_SIZE);
    if (pages <= 0 || pageSize <= 0)
      return absl::OkStatus(); // unknown: the allocation will tell
    available = double(pages) * double(pageSize);
    where = "physical memory";
  } else {
    absl::StatusOr<int64_t> freeBytes = freeDeviceMemoryBytes();
    if (!freeBytes.ok())
      return absl::OkStatus(); // no GPU: the loader says so
    available = double(*freeBytes);
    where = "free GPU memory";
  }
  if (bytes <= available)
    return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrFormat(
      "--max-seq %d needs a %.1f GB KV cache (2 x %d layers x %d KV heads x "
      "head_dim %d x %d bytes, per position), more than the %.1f GB of %s",
      options.maxSeq, bytes / 1e9, kvLayers, config.numKvHeads, config.headDim,
      elementBytes, available / 1e9, where));
}

/// Sets options.maxSeq from --max-seq and the model (see
/// engineOptionsFromFlags); options.device must be set.
/// Without --max-seq the GPU executor sizes the cache after the weights
/// are up (EngineOptions::maxSeq 0); the CPU takes 4096 rows.
absl::Status resolveMaxSeq(const std::string &model, EngineOptions &options) {
  const bool given = maxSeq.getNumOccurrences() > 0;
  if (given && maxSeq < 2)
    return absl::InvalidArgumentError(
        absl::StrCat("--max-seq must be at least 2, not ", maxSeq.getValue()));
  options.maxSeq = given ? maxSeq : options.device == Device::Gpu ? 0 : 4096;
  absl::StatusOr<std::shared_ptr<const ModelDir>> dir = weightsDirOf(model);
  if (!dir.ok())
    return absl::OkStatus(); // the loader reports an unreadable model
  options.modelDir = *dir;
  const ModelConfig *config = &(*dir)->config;
  for (const std::string &note : config->notes) // e.g. a vision tower left out
    std::fprintf(stderr, "treni: note: %s\n", note.c_str());
  int64_t limit = config->maxPositionEmbeddings;
  if (limit >= 2 && options.maxSeq > limit) {
    if (given)
      return absl::InvalidArgumentError(absl::StrCat(
          "--max-seq ", options.maxSeq,
          " is more than the model's max_position_embeddings (", limit, ")"));
    options.maxSeq = limit;
  }
  if (options.maxSeq == 0)
    return absl::OkStatus();
  return checkKvCacheFits(*config, options);
}

} // namespace

int fail(const absl::Status &status) {
  std::fprintf(stderr, "treni: error: %s\n",
               std::string(status.message()).c_str());
  return 1;
}

const char *deviceName(Device device) {
  return device == Device::Gpu ? "gpu" : "cpu";
}

absl::StatusOr<EngineOptions> compilerOptionsFromFlags() {
  EngineOptions options;
  TRENI_ASSIGN_OR_RETURN(options.activationDtype, dtypeFromFlag());
  options.disabledPasses.assign(disablePass.begin(), disablePass.end());
  options.passOptions = passOptionMap();
  return options;
}

absl::StatusOr<EngineOptions> engineOptionsFromFlags(const std::string &model) {
  TRENI_ASSIGN_OR_RETURN(EngineOptions options, compilerOptionsFromFlags());
  TRENI_ASSIGN_OR_RETURN(options.device, deviceFromFlag());
  TRENI_RETURN_IF_ERROR(resolveMaxSeq(model, options));
  if (prefillChunk < 1 || prefillChunk > kMaxPrefillChunk)
    return absl::InvalidArgumentError(
        absl::StrCat("--prefill-chunk must be 1 to ", kMaxPrefillChunk,
                     " tokens, not ", prefillChunk.getValue()));
  options.prefillChunk = prefillChunk;
  options.cudaGraphs = !noGraph;
  options.programmaticLaunch = !noPdl;
  options.spinWait = !blockingSync;
  options.asyncDecode = !noAsyncDecode;
  options.seq1TensorCores = seq1TensorCores;
  options.chunkFlash = chunkFlash;
  options.gemmTuning = gemmTuning;
  return options;
}

absl::StatusOr<SamplingParams> samplingFromFlags() {
  SamplingParams params;
  params.temperature = temperature;
  params.topK = topK;
  params.topP = topP;
  params.seed = seed;
  TRENI_RETURN_IF_ERROR(validate(params));
  return params;
}

int64_t maxTokensFromFlags(int64_t defaultValue) {
  return maxTokens.getNumOccurrences() ? int64_t(maxTokens) : defaultValue;
}

absl::StatusOr<double> lowConfidenceFromFlags() {
  if (!(lowConfidence >= 0 && lowConfidence <= 1))
    return absl::InvalidArgumentError(
        absl::StrCat("--low-confidence must be a probability in [0, 1], not ",
                     lowConfidence.getValue()));
  return lowConfidence.getValue();
}

absl::StatusOr<GenerationRequest> requestFromFlags(int64_t defaultMaxTokens) {
  GenerationRequest request;
  TRENI_ASSIGN_OR_RETURN(request.sampling, samplingFromFlags());
  request.maxTokens = maxTokensFromFlags(defaultMaxTokens);
  if (request.maxTokens < 1)
    return absl::InvalidArgumentError(absl::StrCat(
        "--max-tokens must be at least 1, not ", request.maxTokens));
  request.stop.assign(stopStrings.begin(), stopStrings.end());
  TRENI_ASSIGN_OR_RETURN(request.lowConfidenceThreshold,
                         lowConfidenceFromFlags());
  return request;
}

std::string modelName(const std::string &model) {
  std::filesystem::path path = std::filesystem::path(model).lexically_normal();
  std::string name = path.filename().string();
  return name.empty() ? path.parent_path().filename().string() : name;
}

bool printDelta(std::string_view delta, absl::Span<const GeneratedToken>) {
  std::fwrite(delta.data(), 1, delta.size(), stdout);
  std::fflush(stdout);
  return true;
}

GeneratorOptions TextModel::generatorOptions() const {
  return {options.maxSeq, loaded.eosIds, !noPrefixCache};
}

absl::StatusOr<TextModel> loadForText(const std::string &model) {
  if (model.empty())
    return absl::InvalidArgumentError("no MODEL given");
  auto start = std::chrono::steady_clock::now();
  TextModel text;
  TRENI_ASSIGN_OR_RETURN(text.options, engineOptionsFromFlags(model));
  Progress progress("loading " + modelName(model), 3);
  LoadOptions options;
  options.engine = text.options;
  options.tokenizerDir = tokenizerDir;
  options.chatTemplateFile = chatTemplateFile;
  options.progress = &progress;
  TRENI_ASSIGN_OR_RETURN(text.loaded, loadModel(model, options));
  text.options.maxSeq = text.loaded.engine->maxSeq(); // when it was automatic
  const EngineStats &stats = text.loaded.engine->stats();
  progress.finish(
      absl::StrCat(stats.source, stats.compileSeconds > 0
                                     ? absl::StrFormat(", compiled in %.2f s",
                                                       stats.compileSeconds)
                                     : ""));
  text.loadSeconds = secondsSince(start);
  return text;
}

int64_t scorerPoolBlocks(int64_t maxSeq, int64_t stepTokens) {
  return kvBlocksFor(maxSeq) + (stepTokens + 7) / 8;
}

absl::StatusOr<Scorer> makeScorer(const LoadedModel &model, bool reranker,
                                  int64_t blocks, int64_t stepTokens) {
  Scorer scorer;
  if (reranker) {
    TRENI_ASSIGN_OR_RETURN(RerankTokens tokens, rerankTokens(*model.tokenizer));
    TRENI_ASSIGN_OR_RETURN(scorer.runner,
                           model.engine->createStepRunner(blocks, stepTokens));
    scorer.reranker = std::make_unique<Reranker>(
        *scorer.runner, *model.tokenizer, tokens, stepTokens);
    return scorer;
  }
  TRENI_ASSIGN_OR_RETURN(Pooling pooling, readPooling(model.tokenizerDir));
  TRENI_ASSIGN_OR_RETURN(scorer.runner,
                         model.engine->createStepRunner(blocks, stepTokens));
  if (scorer.runner->hiddenSize() <= 0)
    return absl::FailedPreconditionError(
        "the model was compiled without @embed (an older package): compile "
        "it again to compute embeddings");
  scorer.embedder =
      std::make_unique<Embedder>(*scorer.runner, pooling, stepTokens);
  return scorer;
}

} // namespace treni::cli
