//===- AgentPasses.h - passes over the agent dialect ------------*- C++ -*-===//
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ir/AgentDialect.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassManager.h"
#include "runtime/tools/tool_signature.h"

namespace agent {

#define GEN_PASS_DECL
#include "passes/AgentPasses.h.inc"

#define GEN_PASS_REGISTRATION
#include "passes/AgentPasses.h.inc"

/// Tool signatures handed to the passes in memory (a ToolRegistry's, or a
/// file a driver read with treni::readToolSignaturesFile), shared by the
/// passes of a pipeline and their clones.
using ToolSignatureList =
    std::shared_ptr<const std::vector<treni::ToolSignature>>;

/// The signatures tool calls are checked against, by name: `given`, then
/// those of the `treni.tools/1` file `registryFile` (none when empty), then
/// `module`'s `agent.tool_decl` ops; a later source wins. A file that cannot
/// be read or parsed is reported on `module` and fails.
mlir::FailureOr<std::map<std::string, treni::ToolSignature>>
collectToolSignatures(mlir::ModuleOp module, llvm::StringRef registryFile,
                      const ToolSignatureList &given);

/// agent-verify-tools and agent-hoist-tools with `signatures` besides the
/// module's declarations (and the `registry` option, unset here).
std::unique_ptr<mlir::Pass>
createAgentVerifyToolsPass(ToolSignatureList signatures);
std::unique_ptr<mlir::Pass>
createAgentHoistToolsPass(ToolSignatureList signatures);

/// The tool type of an agent value type (!agent.string, i64, f64, i1,
/// !agent.json); none for any other type.
std::optional<treni::ToolType> toolTypeOf(mlir::Type type);

/// Whether a value of type `actual` may be passed where `declared` is
/// expected: its own type, an i64 where a float is declared, anything where
/// json is.
bool acceptsToolType(treni::ToolType declared, mlir::Type actual);

/// The namespace of a tool: what precedes the first '.' ("sqlite" for
/// "sqlite.query"), or the whole name.
llvm::StringRef toolNamespace(llvm::StringRef toolName);

/// "string", "int", "float", "bool", "json" for the value types.
std::string valueTypeName(mlir::Type type);

/// Options of the agent pass pipeline (runtime/agent/agent_compiler.h runs
/// it for `treni agent compile --emit=mlir-opt`, `treni agent run` and the
/// server).
struct AgentPipelineOptions {
  /// Signatures besides the module's `agent.tool_decl` ops (null: none).
  ToolSignatureList toolSignatures;
  int64_t minPrefix = 16;
  /// Run agent-verify-tools. Drivers turn it off when there is no signature
  /// at all: every call would be "unknown".
  bool verifyTools = true;
};

/// agent-verify-tools (when there are signatures), agent-hoist-tools,
/// agent-share-prefix.
void buildAgentPipeline(mlir::OpPassManager &pm,
                        const AgentPipelineOptions &options);

/// Registers the agent passes with the global registry (for treni-opt).
void registerAllAgentPasses();

} // namespace agent
