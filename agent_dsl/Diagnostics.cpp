//===- Diagnostics.cpp - errors of the .agent front end ------------------===//

#include "agent_dsl/Diagnostics.h"

namespace treni::agentdsl {

Diagnostic &DiagnosticEngine::error(SourceLoc loc, std::string message) {
  ++count;
  if (list.size() >= limit) {
    overflow = Diagnostic{loc, std::move(message), {}};
    return overflow;
  }
  list.push_back(Diagnostic{loc, std::move(message), {}});
  return list.back();
}

namespace {
/// The text of 1-based line `line`, without its line ending.
std::string_view sourceLine(std::string_view source, uint32_t line) {
  size_t start = 0;
  for (uint32_t current = 1; current < line; ++current) {
    size_t newline = source.find('\n', start);
    if (newline == std::string_view::npos)
      return {};
    start = newline + 1;
  }
  size_t end = source.find('\n', start);
  std::string_view text = source.substr(start, end == std::string_view::npos
                                                   ? std::string_view::npos
                                                   : end - start);
  if (!text.empty() && text.back() == '\r')
    text.remove_suffix(1);
  return text;
}
} // namespace

std::string renderDiagnostic(std::string_view source, std::string_view fileName,
                             SourceLoc loc, std::string_view kind,
                             std::string_view message) {
  std::string out;
  out += fileName;
  out +=
      ':' + std::to_string(loc.line) + ':' + std::to_string(loc.column) + ": ";
  out += kind;
  out += ": ";
  out += message;
  out += '\n';
  std::string_view text = sourceLine(source, loc.line);
  if (loc.line == 0)
    return out;
  out += text;
  out += '\n';
  // Tabs stay tabs so the caret lines up whatever the tab width.
  size_t caretColumn = loc.column == 0 ? 0 : loc.column - 1;
  for (size_t i = 0; i < caretColumn && i <= text.size(); ++i)
    out += i < text.size() && text[i] == '\t' ? '\t' : ' ';
  out += "^\n";
  return out;
}

std::string DiagnosticEngine::render(std::string_view source,
                                     std::string_view fileName) const {
  std::string out;
  for (const Diagnostic &diagnostic : list) {
    out += renderDiagnostic(source, fileName, diagnostic.loc, "error",
                            diagnostic.message);
    for (const auto &[loc, note] : diagnostic.notes)
      out += renderDiagnostic(source, fileName, loc, "note", note);
  }
  if (count > list.size())
    out += std::string(fileName) + ": " + std::to_string(count - list.size()) +
           " more error(s) not shown\n";
  return out;
}

} // namespace treni::agentdsl
