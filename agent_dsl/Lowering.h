//===- Lowering.h - checked .agent syntax tree -> agent dialect -*- C++ -*-===//
#pragma once

#include "agent_dsl/Ast.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/OwningOpRef.h"

namespace treni::agentdsl {

/// Lowers a program that passed checkProgram into a module of the agent
/// dialect: one `agent.tool_decl` per `extern tool`, one `agent.workflow`
/// per workflow. Locations are `fileName:line:column` of the source, so
/// verifier and pass diagnostics point into the .agent file. Loads the
/// agent dialect into `context`.
mlir::OwningOpRef<mlir::ModuleOp> lowerToAgentIR(const Program &program,
                                                 mlir::MLIRContext &context,
                                                 llvm::StringRef fileName);

} // namespace treni::agentdsl
