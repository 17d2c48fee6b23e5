//===- AgentPasses.h - passes over the agent dialect ------------*- C++ -*-===//
#pragma once

#include <map>
#include <string>
#include <vector>

#include "ir/AgentDialect.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassManager.h"

namespace agent {

#define GEN_PASS_DECL
#include "passes/AgentPasses.h.inc"

#define GEN_PASS_REGISTRATION
#include "passes/AgentPasses.h.inc"

/// One declared argument of a tool.
struct ToolParamSignature {
  std::string name;
  mlir::Type type; ///< A value type: !agent.string, i64, f64, i1, !agent.json.
  bool optional = false;
};

/// A tool's declared signature.
struct ToolSignature {
  std::string name;
  std::vector<ToolParamSignature> params;
  bool readonly = false;
  /// Where it was declared: the agent.tool_decl, or the registry file.
  std::string origin;

  const ToolParamSignature *param(llvm::StringRef paramName) const;
};

/// The signatures of `module`'s `agent.tool_decl` ops, over those of the
/// JSON registry file `registryFile` (none when empty). A malformed file is
/// reported on `module` and fails.
mlir::FailureOr<std::map<std::string, ToolSignature>>
collectToolSignatures(mlir::ModuleOp module, llvm::StringRef registryFile);

/// The namespace of a tool: what precedes the first '.' ("sqlite" for
/// "sqlite.query"), or the whole name.
llvm::StringRef toolNamespace(llvm::StringRef toolName);

/// "string", "int", "float", "bool", "json" for the value types.
std::string valueTypeName(mlir::Type type);

/// Options of the agent pass pipeline `treni agent compile --emit=mlir-opt`
/// runs.
struct AgentPipelineOptions {
  /// agent-verify-tools runs when the module declares tools or this names
  /// a registry file.
  std::string toolRegistryFile;
  int64_t minPrefix = 16;
  bool verifyTools = true;
};

/// agent-verify-tools (when there are signatures), agent-hoist-tools,
/// agent-share-prefix.
void buildAgentPipeline(mlir::OpPassManager &pm,
                        const AgentPipelineOptions &options);

/// Registers the agent passes with the global registry (for treni-opt).
void registerAllAgentPasses();

} // namespace agent
