//===- Parser.h - .agent source -> syntax tree ------------------*- C++ -*-===//
#pragma once

#include <optional>
#include <string_view>

#include "agent_dsl/Ast.h"
#include "agent_dsl/Diagnostics.h"

namespace treni::agentdsl {

/// Parses a whole `.agent` file. On a syntax error, reports it to `diags`
/// (the first one: later ones would mostly be consequences) and returns
/// nothing. Never throws or aborts, whatever the input.
std::optional<Program> parseProgram(std::string_view source,
                                    DiagnosticEngine &diags);

/// Parses and type-checks: what `treni agent compile` and the executor use.
/// Returns nothing when `diags` has errors.
std::optional<Program> parseAndCheck(std::string_view source,
                                     DiagnosticEngine &diags);

} // namespace treni::agentdsl
