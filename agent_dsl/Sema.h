//===- Sema.h - name resolution and type checking of .agent -----*- C++ -*-===//
#pragma once

#include "agent_dsl/Ast.h"
#include "agent_dsl/Diagnostics.h"

namespace treni::agentdsl {

/// Resolves names, checks types, options and control flow, and annotates
/// the tree (expression types, retry / if exports, which statements always
/// return). Returns false when it reported errors.
bool checkProgram(Program &program, DiagnosticEngine &diags);

/// Fields of a generate step result, with their types.
struct FieldInfo {
  std::string_view name;
  Type type;
};
const std::vector<FieldInfo> &generationFields();
const std::vector<FieldInfo> &toolResultFields();
/// The type of `field` of a step of type `stepType`, or Error.
Type fieldType(Type stepType, std::string_view field);

} // namespace treni::agentdsl
