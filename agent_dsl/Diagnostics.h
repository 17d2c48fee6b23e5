//===- Diagnostics.h - errors of the .agent front end -----------*- C++ -*-===//
//
// Every error carries a line and column; rendering shows the file name, the
// source line and a caret under the column, as clang and MLIR do:
//
//   flow.agent:3:12: error: unknown name 'qestion' (did you mean 'question'?)
//     let p = "{qestion}"
//              ^
//
//===----------------------------------------------------------------------===//
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "agent_dsl/Ast.h"

namespace treni::agentdsl {

struct Diagnostic {
  SourceLoc loc;
  std::string message;
  /// Optional notes ("previous definition is here"), each with a location.
  std::vector<std::pair<SourceLoc, std::string>> notes;
};

/// Collects diagnostics; stops collecting after `limit` so a pathological
/// input cannot produce unbounded output.
class DiagnosticEngine {
public:
  explicit DiagnosticEngine(size_t limit = 20) : limit(limit) {}

  Diagnostic &error(SourceLoc loc, std::string message);
  bool hasErrors() const { return count > 0; }
  size_t errorCount() const { return count; }
  const std::vector<Diagnostic> &diagnostics() const { return list; }

  /// All diagnostics rendered against `source`, one after another.
  std::string render(std::string_view source, std::string_view fileName) const;

private:
  size_t limit;
  size_t count = 0;
  std::vector<Diagnostic> list;
  Diagnostic overflow; ///< Sink for errors past the limit.
};

/// One diagnostic line with its source line and caret.
std::string renderDiagnostic(std::string_view source, std::string_view fileName,
                             SourceLoc loc, std::string_view kind,
                             std::string_view message);

} // namespace treni::agentdsl
