//===- serve_command.cpp - `treni serve` ----------------------------------===//
//
//   treni serve [MODEL] [--host 127.0.0.1 --port 8080 --queue-size N
//               --max-num-seqs N --max-batch-tokens N --kv-blocks N
//               --request-timeout S --max-body-kib N --chat-template FILE
//               --served-model-name NAME --api-key KEY --allowed-hosts NAMES
//               --enable-agent-api --tools-config FILE]
//
// Serves the OpenAI HTTP API (runtime/serve/http_server.h), and POST
// /v1/agent/run when --enable-agent-api is given, until SIGINT or SIGTERM,
// then stops gracefully. docs/server.md: limits, timeouts, access checks.
//
// A new server flag: declare it below and set its ServerOptions field in
// serverOptionsFromFlags(), which checks every value before the model loads.
//
//===----------------------------------------------------------------------===//

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/agent/agent_http.h"
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

/// What the server tells clients about the model.
absl::StatusOr<ServedModel> servedModel(const TextModel &model) {
  ServedModel served;
  served.name = servedModelName.empty() ? modelName(serveModel)
                                        : servedModelName.getValue();
  served.tokenizer = model.loaded.tokenizer.get();
  served.chatTemplate = model.loaded.chatTemplate.get();
  served.toolFormat = servedToolCallFormat(model.loaded.chatTemplateSource);
  served.maxSeq = model.options.maxSeq;
  TRENI_ASSIGN_OR_RETURN(served.lowConfidenceThreshold,
                         lowConfidenceFromFlags());
  return served;
}

/// The batch loop over a step runner of `model`'s engine, or null: batching
/// is off (--max-num-seqs 1) or the engine has no batched path yet, which
/// the log says.
absl::StatusOr<std::unique_ptr<BatchGenerator>>
batchGenerator(TextModel &model, std::unique_ptr<StepRunner> &runner) {
  if (maxNumSeqs <= 1)
    return nullptr;
  const int64_t maxSeq = model.loaded.engine->maxSeq();
  auto made = model.loaded.engine->createStepRunner(kvBlocks, maxBatchTokens);
  if (absl::IsUnimplemented(made.status())) {
    std::fprintf(stderr, "treni serve: %s; serving one request at a time\n",
                 std::string(made.status().message()).c_str());
    return nullptr;
  }
  TRENI_ASSIGN_OR_RETURN(runner, std::move(made));
  BatchGeneratorOptions options;
  options.scheduler.maxNumSeqs = maxNumSeqs;
  options.scheduler.maxBatchTokens = maxBatchTokens;
  options.scheduler.prefillChunk =
      std::min<int64_t>(model.options.prefillChunk, maxBatchTokens);
  options.scheduler.maxSeqLen = maxSeq;
  options.scheduler.prefixCaching = model.generatorOptions().prefixCache;
  options.eosIds = model.loaded.eosIds;
  return BatchGenerator::create(*runner, *model.loaded.tokenizer,
                                std::move(options));
}

/// The served model's kind (--model-kind): "chat", "embedding" or
/// "reranker".
absl::StatusOr<std::string> servedKind(const TextModel &model) {
  if (modelKind == "chat" || modelKind == "embedding" ||
      modelKind == "reranker")
    return modelKind.getValue();
  if (modelKind != "auto")
    return absl::InvalidArgumentError(absl::StrCat(
        "--model-kind must be chat, embedding, reranker or auto, not '",
        modelKind.getValue(), "'"));
  return std::string(
      declaresEmbeddingModel(model.loaded.tokenizerDir) ? "embedding" : "chat");
}

/// The Embedder over a step runner of `model`'s engine (its pooling read
/// from the checkpoint directory).
absl::StatusOr<std::unique_ptr<Embedder>>
makeEmbedder(TextModel &model, std::unique_ptr<StepRunner> &runner) {
  TRENI_ASSIGN_OR_RETURN(Pooling pooling,
                         readPooling(model.loaded.tokenizerDir));
  TRENI_ASSIGN_OR_RETURN(
      runner, model.loaded.engine->createStepRunner(kvBlocks, maxBatchTokens));
  if (runner->hiddenSize() <= 0)
    return absl::FailedPreconditionError(
        "the model was compiled without @embed (an older package): compile "
        "it again to serve embeddings");
  return std::make_unique<Embedder>(*runner, pooling, maxBatchTokens);
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
  // Tools first: a bad configuration should fail before the model loads.
  ToolRegistry agentTools; // POST /v1/agent/run (runtime/agent/agent_http.h)
  if (!toolsConfig.empty())
    if (absl::Status status =
            configureAgentToolsFromFile(agentTools, toolsConfig);
        !status.ok())
      return fail(status);
  auto model = loadForText(serveModel);
  if (!model.ok())
    return fail(model.status());
  auto served = servedModel(*model);
  if (!served.ok())
    return fail(served.status());
  Generator generator(*model->loaded.engine, *model->loaded.tokenizer,
                      model->generatorOptions());
  auto kind = servedKind(*model);
  if (!kind.ok())
    return fail(kind.status());
  std::unique_ptr<StepRunner> runner;
  std::unique_ptr<Embedder> embedder;
  std::unique_ptr<Reranker> reranker;
  // An embedding model's or reranker's step runner is theirs: its chat and
  // completion routes answer one request at a time.
  absl::StatusOr<std::unique_ptr<BatchGenerator>> batch = nullptr;
  if (*kind == "embedding") {
    auto made = makeEmbedder(*model, runner);
    if (!made.ok())
      return fail(made.status());
    embedder = std::move(*made);
  } else if (*kind == "reranker") {
    auto tokens = rerankTokens(*model->loaded.tokenizer);
    if (!tokens.ok())
      return fail(tokens.status());
    auto made =
        model->loaded.engine->createStepRunner(kvBlocks, maxBatchTokens);
    if (!made.ok())
      return fail(made.status());
    runner = std::move(*made);
    reranker = std::make_unique<Reranker>(*runner, *model->loaded.tokenizer,
                                          *tokens, maxBatchTokens);
  } else {
    batch = batchGenerator(*model, runner);
  }
  if (!batch.ok())
    return fail(batch.status());
  HttpServer server(generator, *served, *options, batch->get());
  ApiLimits limits;
  limits.maxSeq = served->maxSeq;
  limits.modelNames = {served->name};
  server.addJsonRoute("/v1/embeddings",
                      embeddingsWork(embedder.get(), *model->loaded.tokenizer,
                                     limits,
                                     model->loaded.engine->vocabSize()));
  for (const char *path : {"/v1/rerank", "/rerank"})
    server.addJsonRoute(path, rerankWork(reranker.get(), limits));
  if (enableAgentApi)
    addAgentRoute(server,
                  *batch ? static_cast<TextGenerator &>(**batch) : generator,
                  *served, agentTools);
  if (absl::Status status = server.start(); !status.ok())
    return fail(status);
  std::signal(SIGINT, onStopSignal);
  std::signal(SIGTERM, onStopSignal);
  std::string mode = "one request at a time";
  if (reranker)
    mode = absl::StrCat("reranking in shared steps, ", runner->numBlocks(),
                        " KV blocks");
  else if (embedder)
    mode = absl::StrCat("embeddings (", poolingName(embedder->pooling()),
                        " pooling, ", embedder->hiddenSize(),
                        " dims) in shared steps, ", runner->numBlocks(),
                        " KV blocks");
  else if (*batch)
    mode = absl::StrCat("continuous batching of up to ", options->maxNumSeqs,
                        " sequences, ", runner->numBlocks(), " KV blocks");
  std::fprintf(
      stderr,
      "treni serve: listening on http://%s:%d (model '%s', %s, "
      "max-seq %lld, queue %d, %s)%s\n",
      options->host.c_str(), server.port(), served->name.c_str(),
      deviceName(model->options.device), (long long)model->options.maxSeq,
      options->queueSize, mode.c_str(),
      model->loaded.chatTemplate ? ""
                                 : " [no chat template: /v1/completions only]");
  std::fflush(stderr);
  while (!stopRequested)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::fprintf(stderr, "treni serve: shutting down\n");
  server.stop();
  std::fprintf(stderr, "treni serve: stopped\n");
  return 0;
}

} // namespace treni::cli
