//===- Ast.cpp - syntax tree helpers and the --emit=ast dump -------------===//

#include "agent_dsl/Ast.h"

#include <cstdio>
#include <cstdlib>

namespace treni::agentdsl {

std::string_view typeName(Type type) {
  switch (type) {
  case Type::Error:
    return "<error>";
  case Type::Void:
    return "nothing";
  case Type::String:
    return "string";
  case Type::Int:
    return "int";
  case Type::Float:
    return "float";
  case Type::Bool:
    return "bool";
  case Type::Json:
    return "json";
  case Type::Generation:
    return "generate step";
  case Type::ToolResult:
    return "tool step";
  }
  return "<error>";
}

bool isValueType(Type type) {
  return type == Type::String || type == Type::Int || type == Type::Float ||
         type == Type::Bool || type == Type::Json;
}

std::string_view compareOpSpelling(CompareOp op) {
  switch (op) {
  case CompareOp::Eq:
    return "==";
  case CompareOp::Ne:
    return "!=";
  case CompareOp::Lt:
    return "<";
  case CompareOp::Le:
    return "<=";
  case CompareOp::Gt:
    return ">";
  case CompareOp::Ge:
    return ">=";
  }
  return "==";
}

bool Expr::isPlainString() const {
  if (kind != Kind::String)
    return false;
  for (const TemplatePart &part : parts)
    if (part.path)
      return false;
  return true;
}

std::string Expr::plainString() const {
  std::string text;
  for (const TemplatePart &part : parts)
    text += part.literal;
  return text;
}

namespace {

/// A string literal as source text: quoted, escaped, braces doubled.
std::string quote(std::string_view text, bool doubleBraces) {
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
    case '\n':
      out += "\\n";
      break;
    case '\t':
      out += "\\t";
      break;
    case '\r':
      out += "\\r";
      break;
    case '\\':
      out += "\\\\";
      break;
    case '"':
      out += "\\\"";
      break;
    case '{':
      out += doubleBraces ? "{{" : "{";
      break;
    case '}':
      out += doubleBraces ? "}}" : "}";
      break;
    default:
      out += c;
    }
  }
  return out + "\"";
}

std::string formatFloat(double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%.17g", value);
  // The shortest form that reads back the same.
  for (int precision = 1; precision <= 17; ++precision) {
    char shortBuffer[64];
    std::snprintf(shortBuffer, sizeof(shortBuffer), "%.*g", precision, value);
    if (std::strtod(shortBuffer, nullptr) == value) {
      std::string text = shortBuffer;
      if (text.find_first_of(".eEn") == std::string::npos)
        text += ".0";
      return text;
    }
  }
  return buffer;
}

std::string exprText(const Expr &expr) {
  switch (expr.kind) {
  case Expr::Kind::String: {
    std::string out = "\"";
    for (const TemplatePart &part : expr.parts) {
      if (part.path) {
        out += "{" + exprText(*part.path) + "}";
      } else {
        std::string quoted = quote(part.literal, true);
        out += quoted.substr(1, quoted.size() - 2);
      }
    }
    return out + "\"";
  }
  case Expr::Kind::Int:
    return std::to_string(expr.intValue) + (expr.isDuration ? "ms" : "");
  case Expr::Kind::Float:
    return formatFloat(expr.floatValue);
  case Expr::Kind::Bool:
    return expr.boolValue ? "true" : "false";
  case Expr::Kind::List: {
    std::string out = "[";
    for (size_t i = 0; i < expr.operands.size(); ++i)
      out += (i ? ", " : "") + exprText(*expr.operands[i]);
    return out + "]";
  }
  case Expr::Kind::Path: {
    std::string out;
    for (size_t i = 0; i < expr.path.size(); ++i)
      out += (i ? "." : "") + expr.path[i];
    return out;
  }
  case Expr::Kind::Call: {
    std::string out = expr.callee + "(";
    for (size_t i = 0; i < expr.operands.size(); ++i)
      out += (i ? ", " : "") + exprText(*expr.operands[i]);
    return out + ")";
  }
  case Expr::Kind::Not:
    return "(not " + exprText(*expr.operands[0]) + ")";
  case Expr::Kind::And:
  case Expr::Kind::Or:
  case Expr::Kind::Compare: {
    std::string op = expr.kind == Expr::Kind::And ? "and"
                     : expr.kind == Expr::Kind::Or
                         ? "or"
                         : std::string(compareOpSpelling(expr.compareOp));
    return "(" + exprText(*expr.operands[0]) + " " + op + " " +
           exprText(*expr.operands[1]) + ")";
  }
  }
  return "?";
}

std::string locText(SourceLoc loc) {
  // Appending (not "@" + ...) also sidesteps a GCC 12 -Wrestrict false
  // positive.
  std::string text = "@";
  text += std::to_string(loc.line);
  text += ':';
  text += std::to_string(loc.column);
  return text;
}

std::string typedExpr(const Expr &expr) {
  return exprText(expr) + " : " + std::string(typeName(expr.type));
}

void dumpBlock(const Block &block, int indent, std::string &out);

void dumpExports(const Stmt &stmt, std::string &out) {
  if (stmt.exports.empty())
    return;
  out += " exports(";
  for (size_t i = 0; i < stmt.exports.size(); ++i)
    out += (i ? ", " : "") + stmt.exports[i].name + ": " +
           std::string(typeName(stmt.exports[i].type));
  out += ")";
}

void dumpStmt(const Stmt &stmt, int indent, std::string &out) {
  std::string pad(indent, ' ');
  std::string named = stmt.name.empty() ? "" : " as " + stmt.name;
  switch (stmt.kind) {
  case Stmt::Kind::Let:
    out += pad + "let " + stmt.name + " = " + typedExpr(*stmt.value) + "  " +
           locText(stmt.loc) + "\n";
    return;
  case Stmt::Kind::Generate:
    out += pad + "generate" + named + "  " + locText(stmt.loc) + "\n";
    out += pad + "  prompt " + typedExpr(*stmt.value) + "\n";
    for (const StepOption &option : stmt.options)
      out += pad + "  option " + option.name + " " + exprText(*option.value) +
             "\n";
    return;
  case Stmt::Kind::Tool:
    out +=
        pad + "tool " + stmt.toolName + named + "  " + locText(stmt.loc) + "\n";
    for (const ToolArgument &argument : stmt.arguments)
      out += pad + "  arg " + argument.name + ": " +
             typedExpr(*argument.value) + "\n";
    for (const StepOption &option : stmt.options)
      out += pad + "  option " + option.name + " " + exprText(*option.value) +
             "\n";
    return;
  case Stmt::Kind::Retry:
    out += pad + "retry max " + std::to_string(stmt.maxAttempts);
    dumpExports(stmt, out);
    out += "  " + locText(stmt.loc) + "\n";
    dumpBlock(stmt.body, indent + 2, out);
    out += pad + "when " + typedExpr(*stmt.value) + "\n";
    return;
  case Stmt::Kind::If:
    out += pad + "if " + typedExpr(*stmt.value);
    dumpExports(stmt, out);
    out += (stmt.terminates ? " returns" : "") + std::string("  ") +
           locText(stmt.loc) + "\n";
    dumpBlock(stmt.body, indent + 2, out);
    if (stmt.hasElse) {
      out += pad + "else\n";
      dumpBlock(stmt.elseBody, indent + 2, out);
    }
    return;
  case Stmt::Kind::Return:
    out += pad + "return" +
           (stmt.value ? " " + typedExpr(*stmt.value) : std::string()) + "  " +
           locText(stmt.loc) + "\n";
    return;
  }
}

void dumpBlock(const Block &block, int indent, std::string &out) {
  for (const StmtPtr &stmt : block)
    dumpStmt(*stmt, indent, out);
}

} // namespace

std::string dumpProgram(const Program &program) {
  std::string out;
  for (const ToolDecl &tool : program.tools) {
    out += "extern tool " + tool.name + "(";
    for (size_t i = 0; i < tool.params.size(); ++i)
      out += (i ? ", " : "") + tool.params[i].name +
             (tool.params[i].optional ? "?" : "") + ": " +
             std::string(typeName(tool.params[i].type));
    out += ")" + std::string(tool.readonly ? " readonly" : "") + "  " +
           locText(tool.loc) + "\n";
  }
  for (const Workflow &workflow : program.workflows) {
    out += "workflow " + workflow.name + "(";
    for (size_t i = 0; i < workflow.params.size(); ++i) {
      const Param &param = workflow.params[i];
      out += (i ? ", " : "") + param.name + ": " +
             std::string(typeName(param.type));
      if (param.defaultValue)
        out += " = " + exprText(*param.defaultValue);
    }
    out += ")";
    if (workflow.returnType != Type::Void)
      out += " -> " + std::string(typeName(workflow.returnType));
    out += "  " + locText(workflow.loc) + "\n";
    dumpBlock(workflow.body, 2, out);
  }
  return out;
}

} // namespace treni::agentdsl
