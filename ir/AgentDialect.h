//===- AgentDialect.h - the agent dialect -----------------------*- C++ -*-===//
//
// Agent workflows as IR: see ir/AgentOps.td for what every op means at run
// time and docs/agent-language.md for the language that lowers to it.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/FunctionInterfaces.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

namespace agent {
/// Argument attribute naming a workflow parameter.
inline constexpr llvm::StringLiteral kParamAttrName = "agent.param";
/// Argument attribute holding a workflow parameter's default value.
inline constexpr llvm::StringLiteral kDefaultAttrName = "agent.default";
} // namespace agent

#include "ir/AgentDialect.h.inc"

#define GET_TYPEDEF_CLASSES
#include "ir/AgentTypes.h.inc"

#define GET_OP_CLASSES
#include "ir/AgentOps.h.inc"

namespace agent {
/// True for the types a plain value may have: !agent.string, i64, f64, i1,
/// !agent.json.
bool isValueType(mlir::Type type);

/// The metrics `agent.uncertainty` knows, with their result types.
mlir::Type uncertaintyMetricType(mlir::MLIRContext *context,
                                 llvm::StringRef metric);

/// Splits a format template into literal text and operand indices. Returns
/// failure with a message for an unbalanced or malformed brace.
struct TemplatePiece {
  std::string literal; ///< Text (unescaped) when `index` is -1.
  int64_t index = -1;  ///< Operand index of a `{N}` placeholder.
};
mlir::FailureOr<std::vector<TemplatePiece>> splitTemplate(llvm::StringRef text,
                                                          std::string &error);
} // namespace agent
