//===- serve_command.cpp - `treni serve` ----------------------------------===//
//
//   treni serve [MODEL | --model NAME=DIR[:KIND] ...]
//               [--host 127.0.0.1 --port 8080 --queue-size N
//               --max-num-seqs N --max-batch-tokens N --kv-blocks N
//               --request-timeout S --max-body-kib N --chat-template FILE
//               --served-model-name NAME --api-key KEY --allowed-hosts NAMES
//               --enable-agent-api --tools-config FILE]
//
// Serves the OpenAI HTTP API (runtime/serve/http_server.h), and POST
// /v1/agent/run when --enable-agent-api is given, until SIGINT or SIGTERM,
// then stops gracefully. docs/server.md: limits, timeouts, access checks.
//
// Several models in one process (--model, repeated): each is loaded and
// compiled once (the NVRTC cache is shared), its weights on the one GPU.
// The paged KV memory is split by this rule: an embedding model or a
// reranker keeps nothing between requests, so its pool holds one input of
// its --max-seq plus --max-batch-tokens / 8 blocks (a step's worth of inputs
// of 8 tokens or more); the chat models then share what is free equally.
// --kv-blocks, when given, is every model's pool instead.
//
// A new server flag: declare it below and set its ServerOptions field in
// serverOptionsFromFlags(), which checks every value before the model loads.
//
//===----------------------------------------------------------------------===//

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "runtime/agent/agent_http.h"
#include "runtime/agent/agent_tool_config.h"
#include "runtime/agent/rag_models.h"
#include "runtime/serve/embedder.h"
#include "runtime/serve/embeddings_route.h"
#include "runtime/serve/http_server.h"
#include "runtime/serve/openai_api.h"
#include "runtime/tools/tool_registry.h"
#include "support/status.h"
#include "tools/treni/cli_flags.h"

namespace cl = llvm::cl;

namespace treni::cli {
namespace {

cl::opt<std::string> serveModel(cl::Positional,
                                cl::desc("[MODEL_DIR | model.treni]"),
                                cl::init(kDefaultModelDir),
                                cl::sub(serveSubcommand()));
cl::list<std::string> modelSpecs(
    "model",
    cl::desc("A model to serve as NAME (the requests' `model`), from DIR (a "
             "checkpoint directory or package), of KIND chat, embedding or "
             "reranker (default: embedding for a sentence-transformers "
             "directory, else chat); repeat it to serve several models in one "
             "process, instead of MODEL"),
    cl::value_desc("NAME=DIR[:KIND]"), cl::sub(serveSubcommand()));
cl::opt<std::string> host("host", cl::desc("Address to listen on"),
                          cl::init("127.0.0.1"), cl::sub(serveSubcommand()));
cl::opt<int> port("port", cl::desc("Port (0: any free port)"), cl::init(8080),
                  cl::sub(serveSubcommand()));
cl::opt<int>
    queueSize("queue-size",
              cl::desc("Requests that may wait for the engine (more: 429)"),
              cl::init(16), cl::sub(serveSubcommand()));
cl::opt<int> maxNumSeqs(
    "max-num-seqs",
    cl::desc("Requests generated at once by continuous batching (1: one at a "
             "time)"),
    cl::init(64), cl::sub(serveSubcommand()));
cl::opt<int> maxBatchTokens(
    "max-batch-tokens",
    cl::desc("Tokens one batch step computes at most (decode rows + prompt "
             "chunks; >= --max-num-seqs)"),
    cl::init(2048), cl::sub(serveSubcommand()));
cl::opt<std::string> modelKind(
    "model-kind",
    cl::desc("chat, embedding, reranker or auto (the default: embedding for "
             "a sentence-transformers directory, whose modules.json names a "
             "Pooling module; else chat). An embedding model answers POST "
             "/v1/embeddings, a reranker (Qwen3-Reranker's yes/no rule) POST "
             "/v1/rerank, their inputs batched in shared steps"),
    cl::init("auto"), cl::sub(serveSubcommand()));
cl::opt<int> kvBlocks(
    "kv-blocks",
    cl::desc("KV cache blocks of 64 positions shared by the batch (0: on the "
             "GPU what its free memory holds, on the CPU room for four "
             "sequences of --max-seq)"),
    cl::init(0), cl::sub(serveSubcommand()));
cl::opt<double>
    requestTimeout("request-timeout",
                   cl::desc("Seconds a request may take, queue included"),
                   cl::init(600), cl::sub(serveSubcommand()));
cl::opt<int> maxBodyKiB("max-body-kib",
                        cl::desc("Largest request body (413 above)"),
                        cl::init(4096), cl::sub(serveSubcommand()));
cl::opt<std::string> servedModelName(
    "served-model-name",
    cl::desc("The `model` name clients use (default: the model directory's "
             "name)"),
    cl::init(""), cl::sub(serveSubcommand()));
cl::opt<std::string> toolsConfig(
    "tools-config",
    cl::desc("Tools for POST /v1/agent/run (see `treni agent run`; needs "
             "--enable-agent-api)"),
    cl::value_desc("FILE"), cl::init(""), cl::sub(serveSubcommand()));
cl::opt<bool> enableAgentApi(
    "enable-agent-api",
    cl::desc("Mount POST /v1/agent/run (runs the tools of --tools-config for "
             "whoever may call the API)"),
    cl::init(false), cl::sub(serveSubcommand()));
cl::opt<std::string>
    apiKey("api-key",
           cl::desc("Require 'Authorization: Bearer KEY' on every route but "
                    "/health (default: $TRENI_API_KEY)"),
           cl::value_desc("KEY"), cl::init(""), cl::sub(serveSubcommand()));
cl::list<std::string> allowedHosts(
    "allowed-hosts",
    cl::desc("Host header names accepted besides the bound address's ('*': "
             "any)"),
    cl::value_desc("NAME[:PORT],..."), cl::CommaSeparated,
    cl::sub(serveSubcommand()));
cl::opt<double>
    headerTimeout("header-timeout",
                  cl::desc("Seconds a request's headers may take to arrive"),
                  cl::init(10), cl::sub(serveSubcommand()));
cl::opt<double>
    bodyTimeout("body-timeout",
                cl::desc("Seconds a request's body may take to arrive"),
                cl::init(30), cl::sub(serveSubcommand()));
cl::opt<int> maxConnectionsPerClient(
    "max-connections-per-client",
    cl::desc("Open connections one client address may hold (more: 503)"),
    cl::init(64), cl::sub(serveSubcommand()));
cl::opt<int> tokenDelayMs("debug-token-delay-ms",
                          cl::desc("Testing: sleep after every token"),
                          cl::init(0), cl::Hidden, cl::sub(serveSubcommand()));

/// The longest --request-timeout: a deadline further out would overflow the
/// clock's nanoseconds.
constexpr double kMaxRequestTimeoutSeconds = 1e8;

/// ServerOptions from serve's flags, every value checked.
absl::StatusOr<ServerOptions> serverOptionsFromFlags() {
  if (port < 0 || port > 65535)
    return absl::InvalidArgumentError(
        absl::StrCat("--port must be in 0..65535, not ", port.getValue()));
  if (queueSize < 1)
    return absl::InvalidArgumentError(absl::StrCat(
        "--queue-size must be at least 1, not ", queueSize.getValue(),
        " (requests that may wait while one runs)"));
  if (!(std::isfinite(requestTimeout) && requestTimeout > 0 &&
        requestTimeout <= kMaxRequestTimeoutSeconds))
    return absl::InvalidArgumentError(absl::StrFormat(
        "--request-timeout must be a number of seconds in (0, %.0f], not %g",
        kMaxRequestTimeoutSeconds, requestTimeout.getValue()));
  if (maxNumSeqs < 1 || maxNumSeqs > 4096)
    return absl::InvalidArgumentError(absl::StrCat(
        "--max-num-seqs must be in 1..4096, not ", maxNumSeqs.getValue()));
  if (maxBatchTokens < maxNumSeqs || maxBatchTokens > 65536)
    return absl::InvalidArgumentError(absl::StrCat(
        "--max-batch-tokens must be in --max-num-seqs (", maxNumSeqs.getValue(),
        ")..65536, not ", maxBatchTokens.getValue()));
  if (kvBlocks < 0 || kvBlocks > (1 << 24))
    return absl::InvalidArgumentError(absl::StrCat(
        "--kv-blocks must be in 0..16777216, not ", kvBlocks.getValue()));
  if (maxBodyKiB < 1)
    return absl::InvalidArgumentError(absl::StrCat(
        "--max-body-kib must be at least 1, not ", maxBodyKiB.getValue()));
  if (tokenDelayMs < 0)
    return absl::InvalidArgumentError("--debug-token-delay-ms must be >= 0");
  for (auto [flag, seconds] : {std::pair{"--header-timeout", &headerTimeout},
                               std::pair{"--body-timeout", &bodyTimeout}})
    if (!(std::isfinite(*seconds) && *seconds > 0 &&
          *seconds <= kMaxRequestTimeoutSeconds))
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s must be a number of seconds in (0, %.0f], not %g", flag,
          kMaxRequestTimeoutSeconds, seconds->getValue()));
  if (maxConnectionsPerClient < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("--max-connections-per-client must be at least 1, not ",
                     maxConnectionsPerClient.getValue()));
  if (!toolsConfig.empty() && !enableAgentApi)
    return absl::InvalidArgumentError(
        "--tools-config needs --enable-agent-api (the tools are only for "
        "POST /v1/agent/run)");
  ServerOptions options;
  options.host = host;
  options.port = port;
  options.queueSize = queueSize;
  options.maxNumSeqs = maxNumSeqs;
  options.requestTimeoutSeconds = requestTimeout;
  options.maxBodyBytes = size_t(maxBodyKiB) * 1024;
  options.tokenDelay = std::chrono::milliseconds(tokenDelayMs.getValue());
  options.headerTimeoutSeconds = headerTimeout;
  options.bodyTimeoutSeconds = bodyTimeout;
  options.maxConnectionsPerClient = maxConnectionsPerClient;
  options.allowedHosts.assign(allowedHosts.begin(), allowedHosts.end());
  options.apiKey = apiKey;
  if (const char *fromEnvironment = std::getenv("TRENI_API_KEY");
      options.apiKey.empty() && fromEnvironment)
    options.apiKey = fromEnvironment;
  return options;
}

/// A model to serve: its name, directory and kind (nullopt: from the
/// directory).
struct ModelSpec {
  std::string name, dir;
  std::optional<ModelKind> kind;
};

/// A served name: what clients put in `model`, and a Prometheus label.
absl::Status checkModelName(const std::string &name) {
  if (name.empty() || name.size() > 256)
    return absl::InvalidArgumentError(
        absl::StrCat("a served model name must have 1 to 256 characters, not ",
                     name.size()));
  for (char c : name)
    if (static_cast<unsigned char>(c) < 0x20 || c == '"' || c == '\\')
      return absl::InvalidArgumentError(
          absl::StrCat("the served model name '", name,
                       "' has a control character, a quote or a backslash"));
  return absl::OkStatus();
}

/// `NAME=DIR[:KIND]` of --model.
absl::StatusOr<ModelSpec> parseModelSpec(const std::string &text) {
  size_t equals = text.find('=');
  if (equals == std::string::npos)
    return absl::InvalidArgumentError(absl::StrCat(
        "--model ", text, ": expected NAME=DIR[:KIND], e.g. chat=/models/q7"));
  ModelSpec spec{text.substr(0, equals), text.substr(equals + 1), std::nullopt};
  TRENI_RETURN_IF_ERROR(checkModelName(spec.name));
  if (size_t colon = spec.dir.rfind(':'); colon != std::string::npos)
    if (std::optional<ModelKind> kind =
            parseModelKind(std::string_view(spec.dir).substr(colon + 1))) {
      spec.kind = kind;
      spec.dir.resize(colon);
    }
  if (spec.dir.empty())
    return absl::InvalidArgumentError(
        absl::StrCat("--model ", text, ": no directory after '='"));
  return spec;
}

/// The models to serve: --model's, or MODEL (--served-model-name,
/// --model-kind).
absl::StatusOr<std::vector<ModelSpec>> modelSpecsFromFlags() {
  std::vector<ModelSpec> specs;
  if (modelSpecs.empty()) {
    ModelSpec spec{servedModelName.empty() ? modelName(serveModel)
                                           : servedModelName.getValue(),
                   serveModel, std::nullopt};
    TRENI_RETURN_IF_ERROR(checkModelName(spec.name));
    if (modelKind != "auto") {
      spec.kind = parseModelKind(modelKind.getValue());
      if (!spec.kind)
        return absl::InvalidArgumentError(absl::StrCat(
            "--model-kind must be chat, embedding, reranker or auto, not '",
            modelKind.getValue(), "'"));
    }
    specs.push_back(std::move(spec));
    return specs;
  }
  if (serveModel.getNumOccurrences() > 0)
    return absl::InvalidArgumentError(
        "give the models either as MODEL or as --model NAME=DIR, not both");
  if (servedModelName.getNumOccurrences() > 0 ||
      modelKind.getNumOccurrences() > 0)
    return absl::InvalidArgumentError(
        "with --model, the name and kind are part of each --model "
        "(NAME=DIR[:KIND]); drop --served-model-name and --model-kind");
  for (const std::string &text : modelSpecs) {
    TRENI_ASSIGN_OR_RETURN(ModelSpec spec, parseModelSpec(text));
    for (const ModelSpec &other : specs)
      if (other.name == spec.name)
        return absl::InvalidArgumentError(
            absl::StrCat("two --model flags serve the name '", spec.name, "'"));
    specs.push_back(std::move(spec));
  }
  return specs;
}

/// One served model and what serves it.
struct ServingModel {
  ModelSpec spec;
  ModelKind kind = ModelKind::Chat;
  TextModel text;
  std::unique_ptr<Generator> generator; ///< chat
  std::unique_ptr<StepRunner> runner;
  std::unique_ptr<BatchGenerator> batch; ///< chat, --max-num-seqs > 1
  std::unique_ptr<Embedder> embedder;
  std::unique_ptr<Reranker> reranker;

  /// What the server tells clients about it.
  absl::StatusOr<ServedEndpoint> endpoint() const {
    ServedEndpoint endpoint;
    ServedModel &served = endpoint.model;
    served.name = spec.name;
    served.tokenizer = text.loaded.tokenizer.get();
    served.chatTemplate = text.loaded.chatTemplate.get();
    served.toolFormat = servedToolCallFormat(text.loaded.chatTemplateSource);
    served.maxSeq = text.options.maxSeq;
    TRENI_ASSIGN_OR_RETURN(served.lowConfidenceThreshold,
                           lowConfidenceFromFlags());
    endpoint.kind = kind;
    endpoint.generator = generator.get();
    endpoint.batch = batch.get();
    return endpoint;
  }

  /// How it is served, for the log.
  std::string mode() const {
    if (reranker)
      return absl::StrCat("reranker, ", runner->numBlocks(), " KV blocks");
    if (embedder)
      return absl::StrCat("embeddings (", poolingName(embedder->pooling()),
                          " pooling, ", embedder->hiddenSize(), " dims), ",
                          runner->numBlocks(), " KV blocks");
    if (batch)
      return absl::StrCat("continuous batching, ", runner->numBlocks(),
                          " KV blocks");
    return "one request at a time";
  }
};

/// The batch loop over `model`'s step runner (--kv-blocks blocks when given,
/// else `freeShare` of the free GPU memory), or null: batching is off
/// (--max-num-seqs 1) or the engine has no batched path yet, which the log
/// says.
absl::Status startBatching(ServingModel &model, double freeShare) {
  if (maxNumSeqs <= 1)
    return absl::OkStatus();
  auto made = model.text.loaded.engine->createStepRunner(
      kvBlocks, maxBatchTokens, freeShare);
  if (absl::IsUnimplemented(made.status())) {
    std::fprintf(stderr, "treni serve: %s: %s; serving one request at a time\n",
                 model.spec.name.c_str(),
                 std::string(made.status().message()).c_str());
    return absl::OkStatus();
  }
  TRENI_ASSIGN_OR_RETURN(model.runner, std::move(made));
  BatchGeneratorOptions options;
  options.scheduler.maxNumSeqs = maxNumSeqs;
  options.scheduler.maxBatchTokens = maxBatchTokens;
  options.scheduler.prefillChunk =
      std::min<int64_t>(model.text.options.prefillChunk, maxBatchTokens);
  options.scheduler.maxSeqLen = model.text.loaded.engine->maxSeq();
  options.scheduler.prefixCaching = model.text.generatorOptions().prefixCache;
  options.eosIds = model.text.loaded.eosIds;
  TRENI_ASSIGN_OR_RETURN(model.batch,
                         BatchGenerator::create(*model.runner,
                                                *model.text.loaded.tokenizer,
                                                std::move(options)));
  return absl::OkStatus();
}

/// The Embedder or Reranker of a model of that kind: --kv-blocks blocks
/// when given; else, when it shares the process, scorerPoolBlocks.
absl::Status startScoring(ServingModel &model, bool shared) {
  int64_t blocks = kvBlocks;
  if (blocks == 0 && shared)
    blocks =
        scorerPoolBlocks(model.text.loaded.engine->maxSeq(), maxBatchTokens);
  TRENI_ASSIGN_OR_RETURN(Scorer scorer,
                         makeScorer(model.text.loaded,
                                    model.kind == ModelKind::Reranker, blocks,
                                    maxBatchTokens));
  model.runner = std::move(scorer.runner);
  model.embedder = std::move(scorer.embedder);
  model.reranker = std::move(scorer.reranker);
  return absl::OkStatus();
}

/// Loads every model, then makes their step runners: embedding models and
/// rerankers first (small pools), then the chat models, each taking an equal
/// share of what is free.
absl::StatusOr<std::vector<std::unique_ptr<ServingModel>>>
loadModels(const std::vector<ModelSpec> &specs) {
  std::vector<std::unique_ptr<ServingModel>> models;
  for (const ModelSpec &spec : specs) {
    auto model = std::make_unique<ServingModel>();
    model->spec = spec;
    auto text = loadForText(spec.dir);
    if (!text.ok())
      return absl::Status(text.status().code(),
                          absl::StrCat("model '", spec.name, "' (", spec.dir,
                                       "): ", text.status().message()));
    model->text = std::move(*text);
    model->kind = spec.kind.value_or(
        declaresEmbeddingModel(model->text.loaded.tokenizerDir)
            ? ModelKind::Embedding
            : ModelKind::Chat);
    models.push_back(std::move(model));
  }
  const bool shared = models.size() > 1;
  int64_t chatModels = 0;
  for (auto &model : models) {
    if (model->kind == ModelKind::Chat) {
      ++chatModels;
      continue;
    }
    if (absl::Status status = startScoring(*model, shared); !status.ok())
      return absl::Status(
          status.code(),
          absl::StrCat("model '", model->spec.name, "': ", status.message()));
  }
  for (auto &model : models) {
    if (model->kind != ModelKind::Chat)
      continue;
    model->generator = std::make_unique<Generator>(
        *model->text.loaded.engine, *model->text.loaded.tokenizer,
        model->text.generatorOptions());
    if (absl::Status status = startBatching(*model, 1.0 / double(chatModels--));
        !status.ok())
      return absl::Status(
          status.code(),
          absl::StrCat("model '", model->spec.name, "': ", status.message()));
  }
  return models;
}

/// The rag tools' models: the served embedding model (and reranker) that
/// `request` names.
absl::StatusOr<RagModels>
ragModelsOf(const std::vector<std::unique_ptr<ServingModel>> &models,
            const RagModelRequest &request) {
  auto find = [&](const std::string &name, ModelKind kind,
                  const char *field) -> absl::StatusOr<ServingModel *> {
    std::vector<std::string> names;
    for (const auto &model : models)
      if (model->kind == kind) {
        if (model->spec.name == name)
          return model.get();
        names.push_back("'" + model->spec.name + "'");
      }
    return absl::InvalidArgumentError(absl::StrCat(
        "tools configuration: rag.", field, " '", name, "' is not a served ",
        modelKindName(kind), " model (",
        names.empty() ? std::string("none is served")
                      : absl::StrCat("served: ", absl::StrJoin(names, ", ")),
        ")"));
  };
  TRENI_ASSIGN_OR_RETURN(
      ServingModel * embedding,
      find(request.embeddingModel, ModelKind::Embedding, "embedding_model"));
  ServingModel *reranker = nullptr;
  if (!request.reranker.empty()) {
    TRENI_ASSIGN_OR_RETURN(
        reranker, find(request.reranker, ModelKind::Reranker, "reranker"));
  }
  return ragModels(embedding->spec.name, *embedding->embedder,
                   *embedding->text.loaded.tokenizer,
                   reranker ? reranker->reranker.get() : nullptr,
                   request.queryPrefix);
}

std::atomic<bool> stopRequested{false};
void onStopSignal(int) { stopRequested = true; }

} // namespace

int runServeCommand() {
  auto options = serverOptionsFromFlags();
  if (!options.ok())
    return fail(options.status());
  if (auto threshold = lowConfidenceFromFlags(); !threshold.ok())
    return fail(threshold.status());
  auto specs = modelSpecsFromFlags();
  if (!specs.ok())
    return fail(specs.status());
  auto models = loadModels(*specs);
  if (!models.ok())
    return fail(models.status());
  // The tools of POST /v1/agent/run (runtime/agent/agent_http.h); the rag
  // tools run on the served embedding model (and reranker).
  ToolRegistry agentTools;
  if (!toolsConfig.empty())
    if (absl::Status status =
            configureAgentToolsFromFile(agentTools, toolsConfig,
                                        [&](const RagModelRequest &request) {
                                          return ragModelsOf(*models, request);
                                        });
        !status.ok())
      return fail(status);
  std::vector<ServedEndpoint> endpoints;
  for (const auto &model : *models) {
    auto endpoint = model->endpoint();
    if (!endpoint.ok())
      return fail(endpoint.status());
    endpoints.push_back(std::move(*endpoint));
  }
  HttpServer server(endpoints, *options);
  std::optional<size_t> agent; // the first chat model runs workflows
  for (size_t i = 0; i < models->size(); ++i) {
    ServingModel &model = *(*models)[i];
    ApiLimits limits;
    limits.maxSeq = endpoints[i].model.maxSeq;
    limits.modelNames = {model.spec.name};
    if (model.embedder)
      server.addJsonRoute(
          "/v1/embeddings", model.spec.name,
          embeddingsWork(*model.embedder, *model.text.loaded.tokenizer, limits,
                         model.text.loaded.engine->vocabSize()));
    if (model.reranker)
      for (const char *path : {"/v1/rerank", "/rerank"})
        server.addJsonRoute(path, model.spec.name,
                            rerankWork(*model.reranker, limits));
    if (model.kind == ModelKind::Chat && !agent)
      agent = i;
  }
  if (enableAgentApi) {
    if (!agent)
      return fail(absl::InvalidArgumentError(
          "--enable-agent-api needs a chat model to run the workflows"));
    const ServingModel &model = *(*models)[*agent];
    addAgentRoute(server,
                  model.batch ? static_cast<TextGenerator &>(*model.batch)
                              : *model.generator,
                  endpoints[*agent].model, agentTools);
  }
  if (absl::Status status = server.start(); !status.ok())
    return fail(status);
  std::signal(SIGINT, onStopSignal);
  std::signal(SIGTERM, onStopSignal);
  for (const auto &model : *models)
    std::fprintf(
        stderr, "treni serve: model '%s' (%s, %s, max-seq %lld, %s)%s\n",
        model->spec.name.c_str(), modelKindName(model->kind),
        deviceName(model->text.options.device),
        (long long)model->text.options.maxSeq, model->mode().c_str(),
        model->kind == ModelKind::Chat && !model->text.loaded.chatTemplate
            ? " [no chat template: /v1/completions only]"
            : "");
  std::fprintf(stderr,
               "treni serve: listening on http://%s:%d (%zu model%s, a queue "
               "of %d and up to %d sequences batched per model)\n",
               options->host.c_str(), server.port(), models->size(),
               models->size() == 1 ? "" : "s", options->queueSize,
               options->maxNumSeqs);
  std::fflush(stderr);
  while (!stopRequested)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::fprintf(stderr, "treni serve: shutting down\n");
  server.stop();
  std::fprintf(stderr, "treni serve: stopped\n");
  return 0;
}

} // namespace treni::cli
