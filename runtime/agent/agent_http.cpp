//===- agent_http.cpp - POST /v1/agent/run on treni serve -----------------===//

#include "runtime/agent/agent_http.h"

#include "absl/strings/str_cat.h"

#include "runtime/serve/http_server.h"
#include "runtime/serve/openai_api.h"
#include "runtime/tools/tool_registry.h"
#include "support/json.h"
#include "support/json_bounded.h"

namespace treni {
namespace {
using json = nlohmann::json;
} // namespace

void addAgentRoute(HttpServer &server, Generator &generator, const ServedModel &model,
                   ToolRegistry &tools, AgentExecutorOptions options) {
  AgentModel agentModel{model.name, &generator, model.chatTemplate};
  options.lowConfidenceThreshold = model.lowConfidenceThreshold;
  server.addStreamedRoute("/v1/agent/run", [agentModel, &tools, options](
                                               const std::string &body,
                                               const std::function<void(const std::string &)> &emit,
                                               const std::atomic<bool> &cancel) {
    auto error = [&](const std::string &message) {
      emit(dumpJson(json{{"event", "error"}, {"error", message}}));
    };
    // Bounded nesting: the arguments are bound, traced and dumped, and
    // copying or dumping recurses.
    absl::StatusOr<json> parsed = parseJsonBounded(body);
    if (!parsed.ok())
      return error(absl::StrCat("the body is not usable JSON: ",
                                parsed.status().message()));
    json request = *std::move(parsed);
    if (!request.is_object())
      return error("the body must be a JSON object {source, workflow?, args?}");
    if (!request.contains("source") || !request["source"].is_string())
      return error("'source' (the .agent text) is required and must be a string");
    if (request.contains("workflow") && !request["workflow"].is_string())
      return error("'workflow' must be a string");
    if (request.contains("args") && !request["args"].is_object())
      return error("'args' must be an object");
    if (request.contains("file") && !request["file"].is_string())
      return error("'file' must be a string");
    std::string source = request["source"].get<std::string>();
    std::string file = request.value("file", std::string("request.agent"));
    mlir::MLIRContext context;
    auto module = compileAgentSource(source, file, context, tools.toJson());
    if (!module.ok())
      return error(std::string(module.status().message()));
    if (cancel)
      return;
    AgentExecutorOptions runOptions = options;
    runOptions.cancel = &cancel;
    AgentExecutor executor(tools, runOptions);
    executor.addModel(agentModel);
    bool streamedError = false;
    absl::StatusOr<AgentRunResult> result =
        executor.run(**module, request.value("workflow", std::string()),
                     request.value("args", json::object()), [&](const json &event) {
                       streamedError |= event.value("event", "") == "error";
                       emit(dumpJson(event));
                     });
    // Errors before the workflow starts (arguments, its name) have no
    // event of their own.
    if (!result.ok() && !streamedError)
      error(std::string(result.status().message()));
  });
}

} // namespace treni
