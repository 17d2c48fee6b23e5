//===- agent_dsl_fuzz.cpp - libFuzzer target for the .agent front end -----===//
//
// Feeds arbitrary bytes to the lexer, parser and Sema (agent_dsl/, no MLIR).
// Besides the sanitizers, it checks the front end's promises: a rejected
// input has at least one diagnostic, each with a message and a position
// inside the input, and renders without trouble; an accepted input has every
// expression typed, and parsing it again gives the same tree.
//
//===----------------------------------------------------------------------===//

#include <cstdint>
#include <string>
#include <string_view>

#include "agent_dsl/Diagnostics.h"
#include "agent_dsl/Parser.h"

namespace {
using namespace treni::agentdsl;

void check(bool condition) {
  if (!condition)
    __builtin_trap();
}

void checkExpr(const Expr &expr) {
  check(expr.type != Type::Error);
  for (const TemplatePart &part : expr.parts)
    if (part.path)
      checkExpr(*part.path);
  for (const ExprPtr &operand : expr.operands)
    checkExpr(*operand);
}

void checkBlock(const Block &block) {
  for (const StmtPtr &stmt : block) {
    if (stmt->value)
      checkExpr(*stmt->value);
    for (const ToolArgument &argument : stmt->arguments)
      checkExpr(*argument.value);
    for (const Export &exported : stmt->exports)
      check(exported.type != Type::Error && exported.type != Type::Void);
    checkBlock(stmt->body);
    checkBlock(stmt->elseBody);
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string_view source(reinterpret_cast<const char *>(data), size);
  uint32_t lines = 1;
  for (char c : source)
    lines += c == '\n';

  DiagnosticEngine diags;
  std::optional<Program> program = parseAndCheck(source, diags);
  if (!program) {
    check(diags.hasErrors() && !diags.diagnostics().empty());
    for (const Diagnostic &diagnostic : diags.diagnostics()) {
      check(!diagnostic.message.empty());
      check(diagnostic.loc.line >= 1 && diagnostic.loc.line <= lines);
      check(diagnostic.loc.column >= 1);
    }
    check(!diags.render(source, "fuzz.agent").empty());
    return 0;
  }
  check(!diags.hasErrors());
  for (const Workflow &workflow : program->workflows)
    checkBlock(workflow.body);

  DiagnosticEngine again;
  std::optional<Program> reparsed = parseAndCheck(source, again);
  check(reparsed.has_value() &&
        dumpProgram(*reparsed) == dumpProgram(*program));
  return 0;
}
