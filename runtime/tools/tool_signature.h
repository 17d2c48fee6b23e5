//===- tool_signature.h - tool signatures and validation --------*- C++ -*-===//
//
// A tool declares its arguments (name, type, required or optional with a
// default) and what it returns. The same declaration serves three readers:
//  - the registry, which validates every call's arguments before the tool
//    runs (unknown, missing or mistyped arguments are refused with a message
//    naming the tool, the argument and what was expected);
//  - the agent passes (agent-verify-tools, agent-hoist-tools), which get a
//    registry's signatures in memory, or read a `treni.tools/1` document
//    (`{"format": "treni.tools/1", "tools": [...]}`, the registry's JSON
//    export, documented in docs/user-guide.md, "Tools") through
//    parseToolSignatures(), the one reader of that format;
//  - the model, through OpenAI `tools` definitions (JSON Schema parameters).
//
// This file is a library of its own (TreniToolSignature: absl, nlohmann and
// support/ only) so that the compiler's passes can share it without the
// runtime's tools.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include <nlohmann/json.hpp>

namespace treni {

/// Argument and result types. `Json` is any JSON value; `Int` takes only
/// integral numbers; `Float` takes any number.
enum class ToolType { String, Int, Float, Bool, Json };

std::string_view toolTypeName(ToolType type); ///< "string", "int", ...
absl::StatusOr<ToolType> parseToolType(std::string_view name);

struct ToolParameter {
  std::string name;
  ToolType type = ToolType::String;
  bool required = true;
  std::string description;
  /// Filled in by validation when an optional argument is absent.
  std::optional<nlohmann::json> defaultValue;
};

struct ToolSignature {
  std::string name; ///< [a-z0-9_][a-z0-9_.-]*, e.g. "sqlite.query"
  std::string description;
  std::vector<ToolParameter> parameters;
  ToolType resultType = ToolType::Json;
  std::string resultDescription;
  /// The tool changes no state (agent-hoist-tools may reorder and overlap
  /// calls of read-only tools).
  bool readOnly = false;

  const ToolParameter *parameter(std::string_view name) const;

  /// {"name", "description", "readonly", "parameters": [{"name", "type",
  /// "required", "description", "default"?}], "result": {"type",
  /// "description"}}.
  nlohmann::json toJson() const;
  /// The inverse of toJson(); errors name the field (and the tool).
  static absl::StatusOr<ToolSignature> fromJson(const nlohmann::json &json);
  /// {"type": "function", "function": {"name": openAiToolName(name),
  /// "description", "parameters": <JSON Schema object>}}.
  nlohmann::json toOpenAiTool() const;
};

/// Checks a signature on its own: a valid tool name, unique non-empty
/// parameter names, defaults only on optional parameters and of their type.
absl::Status validateSignature(const ToolSignature &signature);

/// Whether `name` is a valid tool name ([a-z0-9_][a-z0-9_.-]*, at most 64).
bool isValidToolName(std::string_view name);

/// The name as OpenAI function names allow ([a-zA-Z0-9_-]): '.' -> '_'.
std::string openAiToolName(std::string_view name);

/// Whether `value` has `type` (Int: an integral number; Float: any number).
bool matchesToolType(const nlohmann::json &value, ToolType type);

/// Checks `args` against the signature: an object, no unknown names, every
/// required argument present, every value of its declared type. Returns the
/// arguments with the defaults of absent optional arguments filled in (an
/// optional non-json argument given as null counts as absent).
/// InvalidArgument errors read "tool 'x': argument 'y' must be an int, got
/// string \"3\"".
absl::StatusOr<nlohmann::json>
validateToolArguments(const ToolSignature &signature,
                      const nlohmann::json &args);

/// The format name of a signature document.
inline constexpr std::string_view kToolSignaturesFormat = "treni.tools/1";

/// Reads a `treni.tools/1` document: an object with a "tools" array of
/// signatures (ToolSignature::fromJson) and an optional "format", which must
/// then be "treni.tools/1". Errors (InvalidArgument) name the entry:
/// "tools[2]: tool signature 'x': ...".
absl::StatusOr<std::vector<ToolSignature>>
parseToolSignatures(const nlohmann::json &document);

/// parseToolSignatures() of the JSON file `path` (a regular file of at most
/// 64 MiB). Errors name the file: "cannot read tool registry 'PATH': ..."
/// (NotFound when it does not exist), "tool registry 'PATH': ...".
absl::StatusOr<std::vector<ToolSignature>>
readToolSignaturesFile(const std::string &path);

} // namespace treni
