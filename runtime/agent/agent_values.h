//===- agent_values.h - run-time values of the agent executor ---*- C++ -*-===//
//
// What an SSA value of a running workflow holds, and the conversions the
// interpreter needs: to the text `agent.format` renders, to JSON (tool
// arguments, return values, the trace), from workflow arguments and from
// constant attributes. Internal to runtime/agent.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "mlir/IR/Attributes.h"
#include "mlir/IR/Types.h"
#include "nlohmann/json.hpp"
#include "runtime/serve/awareness.h"
#include "runtime/serve/generation.h"

namespace treni {

/// A JSON value (agent !agent.json).
struct JsonValue {
  nlohmann::json value;
};

/// What a generate step yields: its text, tokens and uncertainty.
struct GenerationValue {
  std::string text;
  std::vector<GeneratedToken> tokens;
  Awareness awareness;
  /// The low-confidence tokens with their alternatives (the `uncertain`
  /// metric and the trace).
  nlohmann::json uncertain = nlohmann::json::array();
};

/// What a tool step yields.
struct ToolValue {
  bool ok = false;
  nlohmann::json output; ///< null on failure
  std::string error;
};

/// The value of an SSA value: none, a string, int, float, bool, JSON, or the
/// result of a generate or tool step (shared: retries copy them around).
using AgentValue =
    std::variant<std::monostate, std::string, int64_t, double, bool, JsonValue,
                 std::shared_ptr<const GenerationValue>,
                 std::shared_ptr<const ToolValue>>;

/// The text `agent.format` renders for a value.
std::string renderValue(const AgentValue &value);

/// The value as JSON (a generation as its text, a tool result as its
/// output; strings with invalid UTF-8 repaired).
nlohmann::json toJsonValue(const AgentValue &value);

/// The value a retry's "previous" arguments start with.
AgentValue emptyValueOf(mlir::Type type);

/// "string", "bool", "int", "float", "json" (else "value").
std::string parameterTypeName(mlir::Type type);

/// Converts an argument (JSON) to a parameter of `type`. A JSON string is
/// read as text of the type (`--arg n=3`).
absl::StatusOr<AgentValue> bindArgument(const nlohmann::json &arg,
                                        mlir::Type type, std::string_view name);

/// The value of a constant (or a parameter default) attribute.
absl::StatusOr<AgentValue> attributeValue(mlir::Attribute attr,
                                          mlir::Type type);

} // namespace treni
