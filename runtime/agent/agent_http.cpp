//===- agent_http.cpp - POST /v1/agent/run on treni serve -----------------===//

#include "runtime/agent/agent_http.h"

#include "runtime/agent/agent_request.h"
#include "runtime/serve/http_server.h"
#include "runtime/serve/openai_api.h"
#include "runtime/tools/tool_registry.h"
#include "support/json.h"

namespace treni {
namespace {
using json = nlohmann::json;
} // namespace

void addAgentRoute(HttpServer &server, TextGenerator &generator,
                   const ServedModel &model, ToolRegistry &tools,
                   AgentExecutorOptions options) {
  AgentModel agentModel{model.name, &generator, model.chatTemplate};
  options.lowConfidenceThreshold = model.lowConfidenceThreshold;
  server.addStreamedRoute(
      "/v1/agent/run",
      [agentModel, &tools,
       options](const std::string &body,
                const std::function<void(const std::string &)> &emit,
                const std::atomic<bool> &cancel) {
        auto error = [&](const std::string &message) {
          emit(dumpJson(json{{"event", "error"}, {"error", message}}));
        };
        absl::StatusOr<AgentRunRequest> request = parseAgentRunRequest(body);
        if (!request.ok())
          return error(std::string(request.status().message()));
        mlir::MLIRContext context;
        // The registry's signatures in memory: no JSON export to parse back
        // on every request.
        auto module = compileAgentSource(
            request->source, request->file, context,
            AgentCompileOptions{.tools = tools.signatures()});
        if (!module.ok())
          return error(std::string(module.status().message()));
        if (cancel)
          return;
        AgentExecutorOptions runOptions = options;
        runOptions.cancel = &cancel;
        AgentExecutor executor(tools, runOptions);
        executor.addModel(agentModel);
        bool streamedError = false;
        absl::StatusOr<AgentRunResult> result = executor.run(
            **module, request->workflow, request->args, [&](const json &event) {
              streamedError |= event.value("event", "") == "error";
              emit(dumpJson(event));
            });
        // Errors before the workflow starts (arguments, its name) have no
        // event of their own.
        if (!result.ok() && !streamedError)
          error(std::string(result.status().message()));
      },
      /*concurrent=*/generator.concurrent());
}

} // namespace treni
