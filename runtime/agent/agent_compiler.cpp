//===- agent_compiler.cpp - .agent source to agent IR ---------------------===//

#include "runtime/agent/agent_compiler.h"

#include <memory>
#include <string>

#include "agent_dsl/Diagnostics.h"
#include "agent_dsl/Lowering.h"
#include "agent_dsl/Parser.h"
#include "ir/AgentDialect.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Pass/PassManager.h"
#include "passes/AgentPasses.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

namespace treni {

absl::StatusOr<agentdsl::Program> parseAgentSource(std::string_view source,
                                                   std::string_view fileName) {
  agentdsl::DiagnosticEngine diags;
  std::optional<agentdsl::Program> program =
      agentdsl::parseAndCheck(source, diags);
  if (!program)
    return absl::InvalidArgumentError(diags.render(source, fileName));
  return std::move(*program);
}

absl::StatusOr<mlir::OwningOpRef<mlir::ModuleOp>>
lowerAgentProgram(const agentdsl::Program &program, std::string_view source,
                  std::string_view fileName, mlir::MLIRContext &context,
                  const AgentCompileOptions &options) {
  // Verifier and pass diagnostics carry FILE:LINE:COLUMN locations; the
  // handler renders them against the source, into `messages`.
  std::string messages;
  llvm::raw_string_ostream os(messages);
  llvm::SourceMgr sourceMgr;
  sourceMgr.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(source, llvm::StringRef(fileName)),
      llvm::SMLoc());
  mlir::SourceMgrDiagnosticHandler handler(sourceMgr, &context, os);

  mlir::OwningOpRef<mlir::ModuleOp> module =
      agentdsl::lowerToAgentIR(program, context, llvm::StringRef(fileName));
  if (!module || mlir::failed(mlir::verify(*module)))
    return absl::InvalidArgumentError(messages.empty() ? "lowering failed"
                                                       : messages);
  if (!options.runPasses)
    return module;

  agent::AgentPipelineOptions pipeline;
  if (options.tools)
    pipeline.toolSignatures =
        std::make_shared<const std::vector<ToolSignature>>(*options.tools);
  pipeline.minPrefix = options.minPrefix;
  // Without any signature every call would be "unknown": tools are then
  // checked when the workflow runs, against the executor's registry.
  pipeline.verifyTools =
      options.tools.has_value() || !module->getOps<agent::ToolDeclOp>().empty();
  mlir::PassManager pm(&context);
  agent::buildAgentPipeline(pm, pipeline);
  if (mlir::failed(pm.run(*module)))
    return absl::InvalidArgumentError(
        messages.empty() ? "the agent passes failed" : messages);
  return module;
}

absl::StatusOr<mlir::OwningOpRef<mlir::ModuleOp>>
compileAgentSource(std::string_view source, std::string_view fileName,
                   mlir::MLIRContext &context,
                   const AgentCompileOptions &options) {
  absl::StatusOr<agentdsl::Program> program =
      parseAgentSource(source, fileName);
  if (!program.ok())
    return program.status();
  return lowerAgentProgram(*program, source, fileName, context, options);
}

absl::StatusOr<mlir::OwningOpRef<mlir::ModuleOp>>
compileAgentSource(std::string_view source, std::string_view fileName,
                   mlir::MLIRContext &context, const nlohmann::json &toolsJson,
                   int64_t minPrefix) {
  AgentCompileOptions options;
  options.minPrefix = minPrefix;
  if (!toolsJson.is_null()) {
    absl::StatusOr<std::vector<ToolSignature>> tools =
        parseToolSignatures(toolsJson);
    if (!tools.ok())
      return tools.status();
    options.tools = std::move(*tools);
  }
  return compileAgentSource(source, fileName, context, options);
}

} // namespace treni
