//===- agent_command.cpp - `treni agent ...` ------------------------------===//
//
//   treni agent compile FLOW.agent [--emit=ast|mlir|mlir-opt] [-o FILE]
//                       [--tools=REGISTRY.json] [--min-prefix=N]
//
// `ast` is the checked syntax tree, `mlir` the agent dialect as lowered
// (verified), `mlir-opt` after the agent passes: agent-verify-tools,
// agent-hoist-tools and agent-share-prefix. Errors name FILE:LINE:COLUMN
// and show the source line with a caret, for syntax, type, verifier and
// pass errors alike.
//
//===----------------------------------------------------------------------===//

#include "tools/treni/agent_command.h"

#include <cstdio>
#include <string>

#include "agent_dsl/Lowering.h"
#include "agent_dsl/Parser.h"
#include "ir/AgentDialect.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Pass/PassManager.h"
#include "passes/AgentPasses.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/raw_ostream.h"

namespace cl = llvm::cl;

namespace treni {
namespace {
cl::SubCommand agentCommand("agent", "Agent workflows (.agent files)");

cl::opt<std::string> agentAction(cl::Positional, cl::desc("ACTION (compile)"),
                                 cl::Required, cl::sub(agentCommand));
cl::opt<std::string> agentFile(cl::Positional, cl::desc("FLOW.agent"),
                               cl::Required, cl::sub(agentCommand));
enum class AgentEmit { Ast, Mlir, MlirOpt };
cl::opt<AgentEmit> agentEmit(
    "emit", cl::desc("What `compile` writes (default: mlir)"),
    cl::values(clEnumValN(AgentEmit::Ast, "ast", "the checked syntax tree"),
               clEnumValN(AgentEmit::Mlir, "mlir",
                          "the agent dialect as lowered"),
               clEnumValN(AgentEmit::MlirOpt, "mlir-opt",
                          "the agent dialect after the agent passes")),
    cl::init(AgentEmit::Mlir), cl::sub(agentCommand));
cl::opt<std::string> agentOutput("o", cl::desc("Output file (default: stdout)"),
                                 cl::value_desc("FILE"), cl::init("-"),
                                 cl::sub(agentCommand));
cl::opt<std::string> agentTools(
    "tools",
    cl::desc("JSON file of tool signatures for agent-verify-tools (besides "
             "the file's `extern tool` declarations)"),
    cl::value_desc("FILE"), cl::init(""), cl::sub(agentCommand));
cl::opt<int> agentMinPrefix(
    "min-prefix",
    cl::desc("Shortest shared literal prompt prefix (bytes) agent-share-prefix "
             "marks"),
    cl::init(16), cl::sub(agentCommand));

int error(const llvm::Twine &message) {
  llvm::errs() << "treni: error: " << message << "\n";
  return 1;
}

bool writeOutput(llvm::StringRef text) {
  std::error_code ec;
  llvm::ToolOutputFile out(agentOutput, ec, llvm::sys::fs::OF_None);
  if (ec) {
    error("cannot write '" + agentOutput + "': " + ec.message());
    return false;
  }
  out.os() << text;
  out.keep();
  return true;
}

int runCompile() {
  auto buffer = llvm::MemoryBuffer::getFileOrSTDIN(agentFile, /*IsText=*/true);
  if (!buffer)
    return error("cannot read '" + agentFile +
                 "': " + buffer.getError().message());
  std::string source = (*buffer)->getBuffer().str();

  agentdsl::DiagnosticEngine diags;
  std::optional<agentdsl::Program> program =
      agentdsl::parseAndCheck(source, diags);
  if (!program) {
    llvm::errs() << diags.render(source, agentFile);
    return 1;
  }
  if (agentEmit == AgentEmit::Ast)
    return writeOutput(agentdsl::dumpProgram(*program)) ? 0 : 1;

  mlir::MLIRContext context;
  llvm::SourceMgr sourceMgr;
  sourceMgr.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(source, agentFile), llvm::SMLoc());
  mlir::SourceMgrDiagnosticHandler handler(sourceMgr, &context);
  mlir::OwningOpRef<mlir::ModuleOp> module =
      agentdsl::lowerToAgentIR(*program, context, agentFile);
  if (!module || mlir::failed(mlir::verify(*module)))
    return 1;
  if (agentEmit == AgentEmit::MlirOpt) {
    mlir::PassManager pm(&context);
    agent::AgentPipelineOptions options;
    options.toolRegistryFile = agentTools;
    options.minPrefix = agentMinPrefix;
    // Without any signature every call would be "unknown": tools are then
    // checked when the workflow runs, against the executor's registry.
    options.verifyTools =
        !agentTools.empty() || !module->getOps<agent::ToolDeclOp>().empty();
    agent::buildAgentPipeline(pm, options);
    if (mlir::failed(pm.run(*module)))
      return 1;
  }
  std::string text;
  llvm::raw_string_ostream os(text);
  module->print(os);
  return writeOutput(text) ? 0 : 1;
}
} // namespace

bool agentCommandSelected() { return static_cast<bool>(agentCommand); }

int runAgentCommand() {
  if (agentAction == "compile")
    return runCompile();
  return error("unknown agent action '" + agentAction + "' (compile)");
}

} // namespace treni
