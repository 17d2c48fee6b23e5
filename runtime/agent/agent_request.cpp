//===- agent_request.cpp - the body of POST /v1/agent/run -----------------===//

#include "runtime/agent/agent_request.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "support/json_bounded.h"

namespace treni {
namespace {
using json = nlohmann::json;

/// The optional string member `key`, at most `maxBytes` long.
absl::Status readName(const json &request, const char *key, size_t maxBytes,
                      std::string &out) {
  auto member = request.find(key);
  if (member == request.end())
    return absl::OkStatus();
  if (!member->is_string())
    return absl::InvalidArgumentError(
        absl::StrCat("'", key, "' must be a string"));
  const std::string &text = member->get_ref<const std::string &>();
  if (text.size() > maxBytes)
    return absl::InvalidArgumentError(absl::StrCat(
        "'", key, "' is ", text.size(), " bytes; at most ", maxBytes));
  out = text;
  return absl::OkStatus();
}

} // namespace

absl::StatusOr<AgentRunRequest> parseAgentRunRequest(std::string_view body) {
  // Bounded nesting: the arguments are bound, traced and dumped, and copying
  // or dumping a value recurses.
  absl::StatusOr<json> parsed = parseJsonBounded(body);
  if (!parsed.ok())
    return absl::InvalidArgumentError(absl::StrCat(
        "the body is not usable JSON: ", parsed.status().message()));
  const json &request = *parsed;
  if (!request.is_object())
    return absl::InvalidArgumentError(
        "the body must be a JSON object {source, workflow?, args?}");
  AgentRunRequest out;
  auto source = request.find("source");
  if (source == request.end() || !source->is_string())
    return absl::InvalidArgumentError(
        "'source' (the .agent text) is required and must be a string");
  out.source = source->get<std::string>();
  if (out.source.size() > kMaxAgentSourceBytes)
    return absl::InvalidArgumentError(
        absl::StrCat("'source' is ", out.source.size(), " bytes; at most ",
                     kMaxAgentSourceBytes));
  if (absl::Status status =
          readName(request, "workflow", kMaxAgentNameBytes, out.workflow);
      !status.ok())
    return status;
  if (absl::Status status =
          readName(request, "file", kMaxAgentNameBytes, out.file);
      !status.ok())
    return status;
  if (auto args = request.find("args"); args != request.end()) {
    if (!args->is_object())
      return absl::InvalidArgumentError("'args' must be an object");
    out.args = *args;
  }
  return out;
}

} // namespace treni
