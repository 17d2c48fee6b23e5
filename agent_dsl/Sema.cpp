//===- Sema.cpp - name resolution and type checking of .agent ------------===//
//
// Scoping: names are never shadowed or redefined. A retry block's top-level
// names stay visible after it (they are what the retry produced: its last
// attempt's values) and in its `when` condition. An if's branches are
// scopes of their own; after the if, a name is visible when every branch
// that does not return defines it with the same type.
//
//===----------------------------------------------------------------------===//

#include "agent_dsl/Sema.h"

#include <algorithm>
#include <optional>

namespace treni::agentdsl {

const std::vector<FieldInfo> &generationFields() {
  static const std::vector<FieldInfo> fields = {
      {"text", Type::String},        {"tokens", Type::Int},
      {"perplexity", Type::Float},   {"max_entropy", Type::Float},
      {"mean_entropy", Type::Float}, {"low_confidence", Type::Int},
      {"uncertain", Type::Json},
  };
  return fields;
}

const std::vector<FieldInfo> &toolResultFields() {
  static const std::vector<FieldInfo> fields = {
      {"text", Type::String},
      {"output", Type::Json},
      {"ok", Type::Bool},
      {"error", Type::String},
  };
  return fields;
}

Type fieldType(Type stepType, std::string_view field) {
  const std::vector<FieldInfo> *fields =
      stepType == Type::Generation   ? &generationFields()
      : stepType == Type::ToolResult ? &toolResultFields()
                                     : nullptr;
  if (!fields)
    return Type::Error;
  for (const FieldInfo &info : *fields)
    if (info.name == field)
      return info.type;
  return Type::Error;
}

namespace {

bool isStepType(Type type) {
  return type == Type::Generation || type == Type::ToolResult;
}
bool isNumeric(Type type) { return type == Type::Int || type == Type::Float; }

std::string fieldList(Type stepType) {
  std::string list;
  for (const FieldInfo &info :
       stepType == Type::Generation ? generationFields() : toolResultFields()) {
    if (!list.empty())
      list += ", ";
    list += info.name;
  }
  return list;
}

/// "a string", "an int", "a generate step".
std::string withArticle(Type type) {
  std::string_view name = typeName(type);
  bool vowel = !name.empty() && std::string_view("aeiou").find(name[0]) !=
                                    std::string_view::npos;
  return std::string(vowel ? "an " : "a ") + std::string(name);
}

/// Where an expression starts: binary operators carry their operator's
/// location, which is right for "cannot compare" but not for "must be a
/// bool".
SourceLoc startLoc(const Expr &expr) {
  if (expr.kind == Expr::Kind::Compare || expr.kind == Expr::Kind::And ||
      expr.kind == Expr::Kind::Or)
    return startLoc(*expr.operands[0]);
  return expr.loc;
}

size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j)
    row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1,
                         diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

struct Symbol {
  std::string name;
  Type type;
  SourceLoc loc;
};

struct RetryContext {
  /// Named generate / tool steps at the top level of the retry body: what
  /// `attempt.previous.NAME` may name.
  std::vector<Symbol> steps;
};

class Checker {
public:
  explicit Checker(DiagnosticEngine &diags) : diags(diags) {}

  void checkProgram(Program &program) {
    for (size_t i = 0; i < program.tools.size(); ++i) {
      ToolDecl &tool = program.tools[i];
      for (size_t j = 0; j < i; ++j)
        if (program.tools[j].name == tool.name) {
          diags.error(tool.loc, "tool '" + tool.name + "' is declared twice")
              .notes.push_back({program.tools[j].loc, "first declared here"});
          break;
        }
      for (size_t p = 0; p < tool.params.size(); ++p)
        for (size_t q = 0; q < p; ++q)
          if (tool.params[p].name == tool.params[q].name) {
            diags.error(tool.params[p].loc, "parameter '" +
                                                tool.params[p].name +
                                                "' is declared twice");
            break;
          }
    }
    for (size_t i = 0; i < program.workflows.size(); ++i) {
      for (size_t j = 0; j < i; ++j)
        if (program.workflows[j].name == program.workflows[i].name) {
          diags
              .error(program.workflows[i].loc, "workflow '" +
                                                   program.workflows[i].name +
                                                   "' is defined twice")
              .notes.push_back(
                  {program.workflows[j].loc, "first defined here"});
          break;
        }
      checkWorkflow(program.workflows[i]);
    }
  }

private:
  DiagnosticEngine &diags;
  std::vector<std::vector<Symbol>> scopes;
  std::vector<RetryContext> retries;
  Workflow *workflow = nullptr;

  //===--------------------------------------------------------------------===//
  // Scopes
  //===--------------------------------------------------------------------===//

  const Symbol *lookup(std::string_view name) const {
    for (auto scope = scopes.rbegin(); scope != scopes.rend(); ++scope)
      for (const Symbol &symbol : *scope)
        if (symbol.name == name)
          return &symbol;
    return nullptr;
  }

  void declare(const std::string &name, SourceLoc loc, Type type) {
    if (name == "attempt") {
      diags.error(loc, "'attempt' is reserved for the retry attempt; choose "
                       "another name");
      return;
    }
    if (const Symbol *existing = lookup(name)) {
      diags.error(loc, "'" + name + "' is already defined")
          .notes.push_back({existing->loc, "previous definition is here"});
      return;
    }
    scopes.back().push_back({name, type, loc});
  }

  std::string suggestion(std::string_view name) const {
    std::string best;
    // No suggestion for one- or two-letter names: everything is close.
    size_t bestDistance = name.size() <= 2 ? 0 : name.size() <= 4 ? 1 : 2;
    for (const auto &scope : scopes)
      for (const Symbol &symbol : scope) {
        size_t distance = editDistance(name, symbol.name);
        if (distance <= bestDistance && distance > 0) {
          bestDistance = distance;
          best = symbol.name;
        }
      }
    return best.empty() ? "" : " (did you mean '" + best + "'?)";
  }

  //===--------------------------------------------------------------------===//
  // Workflows and statements
  //===--------------------------------------------------------------------===//

  void checkWorkflow(Workflow &flow) {
    workflow = &flow;
    scopes.clear();
    scopes.emplace_back();
    for (Param &param : flow.params) {
      declare(param.name, param.loc, param.type);
      if (param.defaultValue)
        checkDefault(param);
    }
    bool terminates = checkBlock(flow.body);
    if (flow.returnType != Type::Void && !terminates)
      diags.error(flow.endLoc, "workflow '" + flow.name +
                                   "' can reach its end without returning " +
                                   withArticle(flow.returnType));
    scopes.clear();
    workflow = nullptr;
  }

  void checkDefault(Param &param) {
    Expr &value = *param.defaultValue;
    bool ok = false;
    switch (param.type) {
    case Type::String:
    case Type::Json:
      ok = value.isPlainString();
      value.type = Type::String;
      break;
    case Type::Int:
      ok = value.kind == Expr::Kind::Int;
      value.type = Type::Int;
      break;
    case Type::Float:
      ok = value.kind == Expr::Kind::Float || value.kind == Expr::Kind::Int;
      value.type = Type::Float;
      break;
    case Type::Bool:
      ok = value.kind == Expr::Kind::Bool;
      value.type = Type::Bool;
      break;
    default:
      break;
    }
    if (!ok)
      diags.error(value.loc,
                  "the default of parameter '" + param.name + "' must be " +
                      (param.type == Type::Json
                           ? std::string("a string of JSON text")
                           : "a literal " + std::string(typeName(param.type))));
  }

  /// Checks a block in the current scope; returns whether it always returns.
  bool checkBlock(Block &block) {
    bool terminated = false, reported = false;
    for (StmtPtr &stmt : block) {
      if (terminated && !reported) {
        diags.error(stmt->loc, "unreachable statement: every path before it "
                               "returns");
        reported = true;
      }
      checkStatement(*stmt);
      terminated = terminated || stmt->terminates;
    }
    return terminated;
  }

  void checkStatement(Stmt &stmt) {
    switch (stmt.kind) {
    case Stmt::Kind::Let: {
      Type type = checkExpr(*stmt.value);
      declare(stmt.name, stmt.nameLoc, type);
      return;
    }
    case Stmt::Kind::Generate: {
      Type type = checkExpr(*stmt.value);
      if (type != Type::String && type != Type::Error)
        diags.error(startLoc(*stmt.value),
                    "the prompt must be a string, not " + withArticle(type));
      checkGenerateOptions(stmt);
      if (!stmt.name.empty())
        declare(stmt.name, stmt.nameLoc, Type::Generation);
      return;
    }
    case Stmt::Kind::Tool: {
      for (size_t i = 0; i < stmt.arguments.size(); ++i) {
        ToolArgument &argument = stmt.arguments[i];
        for (size_t j = 0; j < i; ++j)
          if (stmt.arguments[j].name == argument.name) {
            diags.error(argument.loc,
                        "argument '" + argument.name + "' is given twice");
            break;
          }
        checkExpr(*argument.value);
      }
      checkToolOptions(stmt);
      if (!stmt.name.empty())
        declare(stmt.name, stmt.nameLoc, Type::ToolResult);
      return;
    }
    case Stmt::Kind::Retry:
      checkRetry(stmt);
      return;
    case Stmt::Kind::If:
      checkIf(stmt);
      return;
    case Stmt::Kind::Return:
      checkReturn(stmt);
      return;
    }
  }

  void checkRetry(Stmt &stmt) {
    RetryContext context;
    for (const StmtPtr &inner : stmt.body)
      if ((inner->kind == Stmt::Kind::Generate ||
           inner->kind == Stmt::Kind::Tool) &&
          !inner->name.empty())
        context.steps.push_back({inner->name,
                                 inner->kind == Stmt::Kind::Generate
                                     ? Type::Generation
                                     : Type::ToolResult,
                                 inner->nameLoc});
    retries.push_back(std::move(context));
    scopes.emplace_back();
    bool terminates = checkBlock(stmt.body);
    std::vector<Symbol> bodyNames = std::move(scopes.back());
    scopes.pop_back();
    retries.pop_back();
    if (terminates)
      diags.error(stmt.loc, "this retry block always returns, so it can never "
                            "be retried");
    for (const Symbol &symbol : bodyNames)
      stmt.exports.push_back({symbol.name, symbol.type});

    // The condition sees the attempt's values, not `attempt` itself.
    scopes.emplace_back(bodyNames);
    Type condition = checkExpr(*stmt.value);
    if (condition != Type::Bool && condition != Type::Error)
      diags.error(startLoc(*stmt.value),
                  "a retry condition must be a bool, not " +
                      withArticle(condition));
    scopes.pop_back();
    if (stmt.maxAttempts < 1 || stmt.maxAttempts > kMaxRetryAttempts)
      diags.error(stmt.maxLoc,
                  "'max' is the number of attempts and must be 1 to " +
                      std::to_string(kMaxRetryAttempts) + ", got " +
                      std::to_string(stmt.maxAttempts));
    for (const Symbol &symbol : bodyNames)
      scopes.back().push_back(symbol);
  }

  void checkIf(Stmt &stmt) {
    Type condition = checkExpr(*stmt.value);
    if (condition != Type::Bool && condition != Type::Error)
      diags.error(startLoc(*stmt.value),
                  "an if condition must be a bool, not " +
                      withArticle(condition));
    scopes.emplace_back();
    bool thenReturns = checkBlock(stmt.body);
    std::vector<Symbol> thenNames = std::move(scopes.back());
    scopes.pop_back();
    scopes.emplace_back();
    bool elseReturns = checkBlock(stmt.elseBody);
    std::vector<Symbol> elseNames = std::move(scopes.back());
    scopes.pop_back();

    stmt.terminates = stmt.hasElse && thenReturns && elseReturns;
    std::vector<Symbol> visible;
    if (!stmt.hasElse || stmt.terminates) {
      // Nothing flows out: either one branch is missing or both return.
    } else if (thenReturns) {
      visible = elseNames;
    } else if (elseReturns) {
      visible = thenNames;
    } else {
      for (const Symbol &symbol : thenNames)
        for (const Symbol &other : elseNames)
          if (other.name == symbol.name && other.type == symbol.type)
            visible.push_back(symbol);
    }
    for (const Symbol &symbol : visible) {
      stmt.exports.push_back({symbol.name, symbol.type});
      scopes.back().push_back(symbol);
    }
  }

  void checkReturn(Stmt &stmt) {
    stmt.terminates = true;
    Type expected = workflow->returnType;
    if (!stmt.value) {
      if (expected != Type::Void)
        diags.error(stmt.loc, "workflow '" + workflow->name + "' returns " +
                                  withArticle(expected) +
                                  ": 'return' needs a value");
      return;
    }
    Type type = checkExpr(*stmt.value);
    if (type == Type::Error)
      return;
    if (expected == Type::Void)
      diags.error(startLoc(*stmt.value), "workflow '" + workflow->name +
                                             "' has no return type: add '-> " +
                                             std::string(typeName(type)) +
                                             "' or return nothing");
    else if (type != expected)
      diags.error(startLoc(*stmt.value),
                  "workflow '" + workflow->name + "' returns " +
                      withArticle(expected) + ", not " + withArticle(type));
  }

  //===--------------------------------------------------------------------===//
  // Step options
  //===--------------------------------------------------------------------===//

  bool checkDuplicateOption(Stmt &stmt, size_t index) {
    for (size_t j = 0; j < index; ++j)
      if (stmt.options[j].name == stmt.options[index].name) {
        diags.error(stmt.options[index].loc,
                    "option '" + stmt.options[index].name + "' is given twice");
        return false;
      }
    return true;
  }

  /// A number option: an integer, or (when `allowFloat`) a float.
  std::optional<double> numberOption(StepOption &option, bool allowFloat) {
    Expr &value = *option.value;
    if (value.kind == Expr::Kind::Int && !value.isDuration) {
      value.type = Type::Int;
      return static_cast<double>(value.intValue);
    }
    if (allowFloat && value.kind == Expr::Kind::Float) {
      value.type = Type::Float;
      return value.floatValue;
    }
    diags.error(value.loc, "'" + option.name + "' takes " +
                               (allowFloat ? "a number" : "an integer") +
                               (value.isDuration ? ", not a duration" : ""));
    return std::nullopt;
  }

  void checkGenerateOptions(Stmt &stmt) {
    for (size_t i = 0; i < stmt.options.size(); ++i) {
      StepOption &option = stmt.options[i];
      if (!checkDuplicateOption(stmt, i))
        continue;
      Expr &value = *option.value;
      const std::string &name = option.name;
      if (name == "model") {
        if (!value.isPlainString())
          diags.error(value.loc, "'model' takes a model name as a string "
                                 "literal");
        else if (value.plainString().empty())
          diags.error(value.loc, "the model name is empty (leave 'model' out "
                                 "for the default model)");
        value.type = Type::String;
      } else if (name == "max_tokens") {
        if (auto number = numberOption(option, false); number && *number < 1)
          diags.error(value.loc, "'max_tokens' must be at least 1");
      } else if (name == "temperature") {
        if (auto number = numberOption(option, true); number && *number < 0)
          diags.error(value.loc, "'temperature' must be >= 0 (0 is greedy)");
      } else if (name == "top_p") {
        if (auto number = numberOption(option, true);
            number && !(*number > 0 && *number <= 1))
          diags.error(value.loc, "'top_p' must be in (0, 1]");
      } else if (name == "top_k") {
        if (auto number = numberOption(option, false); number && *number < 0)
          diags.error(value.loc, "'top_k' must be >= 0 (0 is off)");
      } else if (name == "seed") {
        if (auto number = numberOption(option, false); number && *number < 0)
          diags.error(value.loc, "'seed' must be >= 0");
      } else if (name == "stop") {
        checkStopOption(value);
      } else {
        diags.error(option.loc, "unknown generate option '" + name +
                                    "' (model, max_tokens, temperature, "
                                    "top_p, top_k, seed, stop)");
      }
    }
  }

  void checkStopOption(Expr &value) {
    auto checkOne = [&](Expr &element) {
      if (!element.isPlainString())
        diags.error(element.loc,
                    "a stop sequence must be a string literal without {...}");
      else if (element.plainString().empty())
        diags.error(element.loc, "a stop sequence must not be empty");
      element.type = Type::String;
    };
    if (value.kind == Expr::Kind::List) {
      if (value.operands.empty())
        diags.error(value.loc, "'stop' needs at least one string");
      for (ExprPtr &element : value.operands)
        checkOne(*element);
      value.type = Type::Json;
      return;
    }
    checkOne(value);
  }

  void checkToolOptions(Stmt &stmt) {
    for (size_t i = 0; i < stmt.options.size(); ++i) {
      StepOption &option = stmt.options[i];
      if (!checkDuplicateOption(stmt, i))
        continue;
      Expr &value = *option.value;
      if (option.name == "timeout") {
        if (!value.isDuration)
          diags.error(value.loc, "'timeout' takes a duration with a unit, "
                                 "e.g. 'timeout 2s' or 'timeout 500ms'");
        else if (value.intValue < 1)
          diags.error(value.loc, "'timeout' must be at least 1ms");
        value.type = Type::Int;
      } else if (option.name == "retries") {
        if (auto number = numberOption(option, false);
            number && (*number < 0 || *number > 100))
          diags.error(value.loc, "'retries' must be between 0 and 100");
      } else {
        diags.error(option.loc, "unknown tool option '" + option.name +
                                    "' (timeout, retries)");
      }
    }
  }

  //===--------------------------------------------------------------------===//
  // Expressions
  //===--------------------------------------------------------------------===//

  /// Types `expr`. Step results are only accepted where `allowStep` (the
  /// argument of ok() / failed()).
  Type checkExpr(Expr &expr, bool allowStep = false) {
    expr.type = computeType(expr, allowStep);
    return expr.type;
  }

  Type computeType(Expr &expr, bool allowStep) {
    switch (expr.kind) {
    case Expr::Kind::String:
      for (TemplatePart &part : expr.parts)
        if (part.path)
          checkExpr(*part.path);
      return Type::String;
    case Expr::Kind::Int:
      return Type::Int;
    case Expr::Kind::Float:
      return Type::Float;
    case Expr::Kind::Bool:
      return Type::Bool;
    case Expr::Kind::List:
      for (ExprPtr &element : expr.operands)
        checkExpr(*element);
      return Type::Json;
    case Expr::Kind::Path:
      return checkPath(expr, allowStep);
    case Expr::Kind::Call:
      return checkCall(expr);
    case Expr::Kind::Not: {
      Type operand = checkExpr(*expr.operands[0]);
      if (operand != Type::Bool && operand != Type::Error)
        diags.error(startLoc(*expr.operands[0]),
                    "'not' needs a bool, not " + withArticle(operand));
      return Type::Bool;
    }
    case Expr::Kind::And:
    case Expr::Kind::Or: {
      const char *op = expr.kind == Expr::Kind::And ? "and" : "or";
      for (ExprPtr &operand : expr.operands) {
        Type type = checkExpr(*operand);
        if (type != Type::Bool && type != Type::Error)
          diags.error(startLoc(*operand),
                      std::string("'") + op +
                          "' needs bools on both sides, not " +
                          withArticle(type));
      }
      return Type::Bool;
    }
    case Expr::Kind::Compare: {
      Type lhs = checkExpr(*expr.operands[0]);
      Type rhs = checkExpr(*expr.operands[1]);
      if (lhs == Type::Error || rhs == Type::Error)
        return Type::Bool;
      std::string op(compareOpSpelling(expr.compareOp));
      bool ordering =
          expr.compareOp != CompareOp::Eq && expr.compareOp != CompareOp::Ne;
      if (isNumeric(lhs) && isNumeric(rhs))
        return Type::Bool;
      if (lhs != rhs)
        diags.error(expr.loc, "cannot compare " + withArticle(lhs) + " with " +
                                  withArticle(rhs) + " using '" + op + "'");
      else if (ordering)
        diags.error(expr.loc,
                    "'" + op + "' needs numbers, not " +
                        (lhs == Type::Json ? std::string("JSON values")
                                           : std::string(typeName(lhs)) + "s"));
      return Type::Bool;
    }
    }
    return Type::Error;
  }

  Type checkPath(Expr &expr, bool allowStep) {
    const std::vector<std::string> &path = expr.path;
    Type base;
    size_t fieldIndex;
    std::string baseName;
    if (path[0] == "attempt") {
      if (retries.empty()) {
        diags.error(expr.pathLocs[0],
                    "'attempt' is only available inside a retry block");
        return Type::Error;
      }
      if (path.size() == 1) {
        diags.error(expr.pathLocs[0], "'attempt' is not a value: use "
                                      "'attempt.index' or "
                                      "'attempt.previous.STEP.FIELD'");
        return Type::Error;
      }
      if (path[1] == "index") {
        if (path.size() > 2) {
          diags.error(expr.pathLocs[2],
                      "'attempt.index' is an int and has no fields");
          return Type::Error;
        }
        return Type::Int;
      }
      if (path[1] != "previous") {
        diags.error(expr.pathLocs[1], "'attempt' has no field '" + path[1] +
                                          "' (index, previous)");
        return Type::Error;
      }
      if (path.size() == 2) {
        diags.error(expr.pathLocs[1], "name a step of this retry block: "
                                      "'attempt.previous.STEP.FIELD'");
        return Type::Error;
      }
      const RetryContext &context = retries.back();
      auto step = std::find_if(
          context.steps.begin(), context.steps.end(),
          [&](const Symbol &symbol) { return symbol.name == path[2]; });
      if (step == context.steps.end()) {
        std::string known;
        for (const Symbol &symbol : context.steps)
          known += (known.empty() ? "" : ", ") + symbol.name;
        diags.error(expr.pathLocs[2],
                    "'" + path[2] +
                        "' is not a named generate or tool step of this retry "
                        "block" +
                        (known.empty() ? std::string(" (it has none)")
                                       : " (steps: " + known + ")"));
        return Type::Error;
      }
      base = step->type;
      baseName = "attempt.previous." + path[2];
      fieldIndex = 3;
    } else {
      const Symbol *symbol = lookup(path[0]);
      if (!symbol) {
        diags.error(expr.pathLocs[0],
                    "unknown name '" + path[0] + "'" + suggestion(path[0]));
        return Type::Error;
      }
      base = symbol->type;
      baseName = path[0];
      fieldIndex = 1;
    }
    if (base == Type::Error)
      return Type::Error;
    if (fieldIndex == path.size()) {
      if (isStepType(base) && !allowStep) {
        diags.error(expr.loc,
                    "'" + baseName + "' is " + withArticle(base) +
                        ", not a value: use one of its fields, e.g. '" +
                        baseName + ".text'");
        return Type::Error;
      }
      return base;
    }
    const std::string &field = path[fieldIndex];
    if (!isStepType(base)) {
      diags.error(expr.pathLocs[fieldIndex],
                  "'" + baseName + "' is " + withArticle(base) +
                      " and has no field '" + field + "'");
      return Type::Error;
    }
    Type type = fieldType(base, field);
    if (type == Type::Error) {
      diags.error(expr.pathLocs[fieldIndex], withArticle(base) +
                                                 " has no field '" + field +
                                                 "' (" + fieldList(base) + ")");
      return Type::Error;
    }
    if (fieldIndex + 1 < path.size()) {
      diags.error(expr.pathLocs[fieldIndex + 1],
                  "'" + baseName + "." + field + "' is " + withArticle(type) +
                      " and has no fields");
      return Type::Error;
    }
    return type;
  }

  bool checkArity(Expr &expr, size_t expected) {
    if (expr.operands.size() == expected)
      return true;
    diags.error(expr.loc, "'" + expr.callee + "' takes " +
                              std::to_string(expected) + " argument" +
                              (expected == 1 ? "" : "s") + ", got " +
                              std::to_string(expr.operands.size()));
    return false;
  }

  Type checkCall(Expr &expr) {
    const std::string &callee = expr.callee;
    if (callee == "ok" || callee == "failed") {
      if (!checkArity(expr, 1))
        return Type::Error;
      Expr &argument = *expr.operands[0];
      Type type = checkExpr(argument, /*allowStep=*/true);
      if (type != Type::ToolResult && type != Type::Error)
        diags.error(argument.loc, "'" + callee + "' takes a tool step, not " +
                                      withArticle(type));
      return Type::Bool;
    }
    if (callee == "matches") {
      if (!checkArity(expr, 2))
        return Type::Error;
      Type type = checkExpr(*expr.operands[0]);
      if (type != Type::String && type != Type::Error)
        diags.error(startLoc(*expr.operands[0]),
                    "'matches' searches a string, not " + withArticle(type));
      Expr &pattern = *expr.operands[1];
      checkExpr(pattern);
      if (!pattern.isPlainString())
        diags.error(pattern.loc, "the pattern of 'matches' must be a string "
                                 "literal without {...}");
      else if (pattern.plainString().empty())
        diags.error(pattern.loc, "the pattern of 'matches' is empty");
      return Type::Bool;
    }
    if (callee == "json_valid") {
      if (!checkArity(expr, 1))
        return Type::Error;
      Type type = checkExpr(*expr.operands[0]);
      if (type != Type::String && type != Type::Error)
        diags.error(startLoc(*expr.operands[0]),
                    "'json_valid' checks a string, not " + withArticle(type));
      return Type::Bool;
    }
    diags.error(expr.loc, "unknown function '" + callee +
                              "' (ok, failed, matches, json_valid)");
    for (ExprPtr &operand : expr.operands)
      checkExpr(*operand, /*allowStep=*/true);
    return Type::Error;
  }
};

} // namespace

bool checkProgram(Program &program, DiagnosticEngine &diags) {
  size_t before = diags.errorCount();
  Checker(diags).checkProgram(program);
  return diags.errorCount() == before;
}

} // namespace treni::agentdsl
