//===- serve_command.cpp - `treni serve` ----------------------------------===//
//
//   treni serve [MODEL] [--host 127.0.0.1 --port 8080 --queue-size N
//               --request-timeout S --max-body-kib N --chat-template FILE
//               --served-model-name NAME --tools-config FILE]
//
// Serves the OpenAI HTTP API (runtime/serve/http_server.h) and POST
// /v1/agent/run until SIGINT or SIGTERM, then stops gracefully.
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
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/agent/agent_http.h"
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
    cl::desc("Tools for POST /v1/agent/run (see `treni agent run`)"),
    cl::value_desc("FILE"), cl::init(""), cl::sub(serveSubcommand()));
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
  if (maxBodyKiB < 1)
    return absl::InvalidArgumentError(absl::StrCat(
        "--max-body-kib must be at least 1, not ", maxBodyKiB.getValue()));
  if (tokenDelayMs < 0)
    return absl::InvalidArgumentError("--debug-token-delay-ms must be >= 0");
  ServerOptions options;
  options.host = host;
  options.port = port;
  options.queueSize = queueSize;
  options.requestTimeoutSeconds = requestTimeout;
  options.maxBodyBytes = size_t(maxBodyKiB) * 1024;
  options.tokenDelay = std::chrono::milliseconds(tokenDelayMs.getValue());
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
  HttpServer server(generator, *served, *options);
  addAgentRoute(server, generator, *served, agentTools);
  if (absl::Status status = server.start(); !status.ok())
    return fail(status);
  std::signal(SIGINT, onStopSignal);
  std::signal(SIGTERM, onStopSignal);
  std::fprintf(stderr,
               "treni serve: listening on http://%s:%d (model '%s', %s, "
               "max-seq %lld, queue %d)%s\n",
               options->host.c_str(), server.port(), served->name.c_str(),
               deviceName(model->options.device),
               (long long)model->options.maxSeq, options->queueSize,
               model->loaded.chatTemplate
                   ? ""
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
