//===- agent_request_fuzz.cpp - libFuzzer target for POST /v1/agent/run ---===//
//
// Feeds arbitrary bytes to the route's request reader
// (runtime/agent/agent_request.cpp) and, when it accepts them, the request's
// workflow source to the .agent front end and its arguments to JSON output,
// as the route does before the executor runs (no MLIR here). Besides the
// sanitizers it checks the reader's promises: an accepted request has a
// source within its bound, arguments that are an object no deeper than
// kMaxJsonDepth, and arguments that dump and parse back to the same value;
// a rejected one has a message.
//
//===----------------------------------------------------------------------===//

#include <cstdint>
#include <string_view>

#include "agent_dsl/Diagnostics.h"
#include "agent_dsl/Parser.h"
#include "runtime/agent/agent_request.h"
#include "support/json.h"
#include "support/json_bounded.h"

namespace {
void check(bool condition) {
  if (!condition)
    __builtin_trap();
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string_view body(reinterpret_cast<const char *>(data), size);
  absl::StatusOr<treni::AgentRunRequest> request =
      treni::parseAgentRunRequest(body);
  if (!request.ok()) {
    check(!request.status().message().empty());
    return 0;
  }
  check(request->source.size() <= treni::kMaxAgentSourceBytes);
  check(request->args.is_object());
  check(treni::jsonValueDepth(request->args) <= treni::kMaxJsonDepth);
  std::string dumped = treni::dumpJson(request->args);
  absl::StatusOr<nlohmann::json> again = treni::parseJsonBounded(dumped);
  check(again.ok() && *again == request->args);
  treni::agentdsl::DiagnosticEngine diags;
  std::optional<treni::agentdsl::Program> program =
      treni::agentdsl::parseAndCheck(request->source, diags);
  check(program.has_value() || diags.hasErrors());
  return 0;
}
