//===- Ast.h - syntax tree of the .agent workflow language ------*- C++ -*-===//
//
// Plain data, no MLIR: the parser builds it, Sema annotates it (expression
// types, what a retry / if block makes visible after it), Lowering turns it
// into the agent dialect. See docs/agent-language.md for the language.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace treni::agentdsl {

/// The most attempts a `retry ... max N` may make. A workflow is outside
/// input: `max 9223372036854775807` on a body with no model or tool step
/// spun a server thread forever. ir/AgentOps.td holds agent.retry to the
/// same bound.
inline constexpr int64_t kMaxRetryAttempts = 1000;

/// A position in the source: 1-based line and column (in bytes).
struct SourceLoc {
  uint32_t line = 0;
  uint32_t column = 0;
};

/// Types of the language. `Generation` and `ToolResult` are step results;
/// only their fields are values.
enum class Type : uint8_t {
  Error, ///< Set after a type error, so one mistake is reported once.
  Void,  ///< A workflow without `-> TYPE`.
  String,
  Int,
  Float,
  Bool,
  Json,
  Generation,
  ToolResult,
};

/// The spelling of a type in diagnostics ("string", "generate step", ...).
std::string_view typeName(Type type);
/// True for string, int, float, bool and json.
bool isValueType(Type type);

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

/// One piece of a string template: literal text, or `{path}`.
struct TemplatePart {
  std::string literal;
  ExprPtr path; ///< Set for an interpolation (an Expr of kind Path).
};

enum class CompareOp : uint8_t { Eq, Ne, Lt, Le, Gt, Ge };
std::string_view compareOpSpelling(CompareOp op);

struct Expr {
  enum class Kind : uint8_t {
    String,  ///< parts
    Int,     ///< intValue (durations are Int in milliseconds, isDuration)
    Float,   ///< floatValue
    Bool,    ///< boolValue
    List,    ///< operands
    Path,    ///< path (a.b.c), pathLocs
    Call,    ///< callee(operands)
    Not,     ///< operands[0]
    And,     ///< operands[0], operands[1]
    Or,      ///< operands[0], operands[1]
    Compare, ///< operands[0] compareOp operands[1]
  };
  Kind kind;
  SourceLoc loc;
  std::vector<TemplatePart> parts;
  int64_t intValue = 0;
  bool isDuration = false;
  double floatValue = 0;
  bool boolValue = false;
  std::vector<std::string> path;
  std::vector<SourceLoc> pathLocs;
  std::string callee;
  CompareOp compareOp = CompareOp::Eq;
  std::vector<ExprPtr> operands;
  /// Set by Sema.
  Type type = Type::Error;

  Expr(Kind kind, SourceLoc loc) : kind(kind), loc(loc) {}
  /// True for a string literal without interpolation.
  bool isPlainString() const;
  /// The text of a plain string literal.
  std::string plainString() const;
};

/// `name value` after a generate or tool step (`max_tokens 64`).
struct StepOption {
  std::string name;
  SourceLoc loc;
  ExprPtr value;
};

/// `name: value` in a tool call.
struct ToolArgument {
  std::string name;
  SourceLoc loc;
  ExprPtr value;
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Block = std::vector<StmtPtr>;

/// A name a block makes visible after it, with its type.
struct Export {
  std::string name;
  Type type;
};

struct Stmt {
  enum class Kind : uint8_t { Let, Generate, Tool, Retry, If, Return };
  Kind kind;
  SourceLoc loc;
  /// let NAME / generate ... as NAME / tool ... as NAME (empty: anonymous).
  std::string name;
  SourceLoc nameLoc;
  /// let value, generate prompt, return value (may be null), if / retry
  /// condition.
  ExprPtr value;
  /// generate and tool options.
  std::vector<StepOption> options;
  /// tool name and arguments.
  std::string toolName;
  SourceLoc toolLoc;
  std::vector<ToolArgument> arguments;
  /// retry body / if then-block; if else-block.
  Block body;
  Block elseBody;
  bool hasElse = false;
  /// retry max N (1..kMaxRetryAttempts).
  int64_t maxAttempts = 0;
  SourceLoc maxLoc;
  /// Set by Sema: names a retry or if makes visible after it, in order.
  std::vector<Export> exports;
  /// Set by Sema: every path through this statement returns.
  bool terminates = false;

  Stmt(Kind kind, SourceLoc loc) : kind(kind), loc(loc) {}
};

struct Param {
  std::string name;
  SourceLoc loc;
  Type type = Type::Error;
  ExprPtr defaultValue; ///< A literal, or null.
};

struct Workflow {
  std::string name;
  SourceLoc loc;
  std::vector<Param> params;
  Type returnType = Type::Void;
  SourceLoc returnTypeLoc;
  Block body;
  SourceLoc endLoc; ///< The closing brace.
};

/// `extern tool NAME(param: type, optional?: type) readonly`.
struct ToolDecl {
  std::string name;
  SourceLoc loc;
  struct Parameter {
    std::string name;
    SourceLoc loc;
    Type type = Type::Error;
    bool optional = false;
  };
  std::vector<Parameter> params;
  bool readonly = false;
};

struct Program {
  std::vector<ToolDecl> tools;
  std::vector<Workflow> workflows;
};

/// A readable, indented dump of the tree with Sema's types (`--emit=ast`).
std::string dumpProgram(const Program &program);

} // namespace treni::agentdsl
