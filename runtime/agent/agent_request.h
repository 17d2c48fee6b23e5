//===- agent_request.h - the body of POST /v1/agent/run ---------*- C++ -*-===//
//
// {"source": ".agent text", "workflow"?: NAME, "args"?: {...}, "file"?: NAME}
// read and checked without MLIR, so the libFuzzer target
// (test/fuzz/agent_request_fuzz.cpp) can drive it with the .agent front end.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace treni {

/// Largest `source` a request may carry (the body limit bounds it too).
inline constexpr size_t kMaxAgentSourceBytes = 1 << 20;
/// Longest `workflow` and `file` names.
inline constexpr size_t kMaxAgentNameBytes = 256;

struct AgentRunRequest {
  std::string source;
  std::string workflow; ///< empty: the module's only workflow
  std::string file = "request.agent";
  nlohmann::json args = nlohmann::json::object();
};

/// Parses and checks a request body: JSON nested at most kMaxJsonDepth deep,
/// an object with a string `source` (at most kMaxAgentSourceBytes), optional
/// string `workflow` and `file` (at most kMaxAgentNameBytes) and an optional
/// object `args`. The error names the field.
absl::StatusOr<AgentRunRequest> parseAgentRunRequest(std::string_view body);

} // namespace treni
