//===- agent_compiler.h - .agent source to agent IR -------------*- C++ -*-===//
//
// The one compile driver of agent workflows, for `treni agent compile`,
// `treni agent run`, the server's agent route and the tests:
//
//   source --parseAgentSource--> checked syntax tree (agent_dsl)
//          --lowerAgentProgram--> agent dialect, verified
//          --the agent passes--> agent-verify-tools, agent-hoist-tools,
//                                agent-share-prefix (passes/AgentPasses.h)
//
// Tool signatures reach the passes in memory (AgentCompileOptions::tools,
// e.g. a ToolRegistry's signatures()). Every error is the rendered
// diagnostics: FILE:LINE:COLUMN, the source line and a caret, for syntax,
// type, verifier and pass errors alike.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "agent_dsl/Ast.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/OwningOpRef.h"
#include "nlohmann/json.hpp"
#include "runtime/tools/tool_signature.h"

namespace treni {

struct AgentCompileOptions {
  /// Signatures tool calls are checked against besides the file's `extern
  /// tool` declarations. nullopt: none, and calls are checked only when the
  /// file declares tools (else when the workflow runs, against the
  /// executor's registry). An empty list still checks: a call of an
  /// undeclared tool is then an error.
  std::optional<std::vector<ToolSignature>> tools;
  /// Shortest shared literal prompt prefix (bytes) agent-share-prefix marks.
  int64_t minPrefix = 16;
  /// Run the agent passes (off: the dialect as lowered, verified).
  bool runPasses = true;
};

/// Parses and checks `.agent` source: the checked syntax tree, or
/// InvalidArgument with the rendered diagnostics.
absl::StatusOr<agentdsl::Program> parseAgentSource(std::string_view source,
                                                   std::string_view fileName);

/// Lowers a checked `program` (parsed from `source`, which the diagnostics
/// quote), verifies it and runs the agent passes.
absl::StatusOr<mlir::OwningOpRef<mlir::ModuleOp>>
lowerAgentProgram(const agentdsl::Program &program, std::string_view source,
                  std::string_view fileName, mlir::MLIRContext &context,
                  const AgentCompileOptions &options = {});

/// parseAgentSource(), then lowerAgentProgram().
absl::StatusOr<mlir::OwningOpRef<mlir::ModuleOp>>
compileAgentSource(std::string_view source, std::string_view fileName,
                   mlir::MLIRContext &context,
                   const AgentCompileOptions &options = {});

/// compileAgentSource() for a caller holding a registry's toJson() export
/// (`treni.tools/1`, read by parseToolSignatures) instead of its
/// signatures; null `toolsJson`: no signatures.
absl::StatusOr<mlir::OwningOpRef<mlir::ModuleOp>>
compileAgentSource(std::string_view source, std::string_view fileName,
                   mlir::MLIRContext &context, const nlohmann::json &toolsJson,
                   int64_t minPrefix = 16);

} // namespace treni
