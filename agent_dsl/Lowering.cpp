//===- Lowering.cpp - checked .agent syntax tree -> agent dialect --------===//
//
// Names become SSA values. Structured statements carry values out through
// region results: a retry's top-level names are its results (the last
// attempt's values) and its body's block arguments (the previous attempt's
// values, for `attempt.previous.STEP`); an if's results are the names Sema
// found visible after it. Field reads (`draft.perplexity`) become the pure
// accessor ops at the point of use.
//
//===----------------------------------------------------------------------===//

#include "agent_dsl/Lowering.h"

#include <map>

#include "agent_dsl/Sema.h"
#include "ir/AgentDialect.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/StringExtras.h"

namespace treni::agentdsl {
namespace {
using namespace mlir;

class Lowerer {
public:
  Lowerer(MLIRContext &context, StringRef fileName)
      : context(context), builder(&context),
        file(StringAttr::get(&context, fileName)) {}

  OwningOpRef<ModuleOp> lower(const Program &program) {
    OwningOpRef<ModuleOp> module =
        ModuleOp::create(FileLineColLoc::get(file, 1, 1));
    builder.setInsertionPointToEnd(module->getBody());
    for (const ToolDecl &tool : program.tools)
      lowerToolDecl(tool);
    for (const Workflow &workflow : program.workflows)
      lowerWorkflow(workflow);
    return module;
  }

private:
  struct RetryFrame {
    Value index;
    std::map<std::string, Value> previous;
  };

  MLIRContext &context;
  OpBuilder builder;
  StringAttr file;
  std::vector<std::vector<std::pair<std::string, Value>>> scopes;
  std::vector<RetryFrame> retries;
  mlir::Type returnType;

  Location loc(SourceLoc at) {
    return FileLineColLoc::get(file, at.line, at.column);
  }

  mlir::Type irType(agentdsl::Type type) {
    switch (type) {
    case agentdsl::Type::String:
      return agent::StringType::get(&context);
    case agentdsl::Type::Int:
      return builder.getI64Type();
    case agentdsl::Type::Float:
      return builder.getF64Type();
    case agentdsl::Type::Bool:
      return builder.getI1Type();
    case agentdsl::Type::Json:
      return agent::JsonType::get(&context);
    case agentdsl::Type::Generation:
      return agent::GenerationType::get(&context);
    case agentdsl::Type::ToolResult:
      return agent::ToolResultType::get(&context);
    case agentdsl::Type::Error:
    case agentdsl::Type::Void:
      break;
    }
    return builder.getNoneType();
  }

  void bind(const std::string &name, Value value) {
    scopes.back().push_back({name, value});
  }
  Value lookup(const std::string &name) const {
    for (auto scope = scopes.rbegin(); scope != scopes.rend(); ++scope)
      for (auto it = scope->rbegin(); it != scope->rend(); ++it)
        if (it->first == name)
          return it->second;
    return Value();
  }

  //===--------------------------------------------------------------------===//
  // Declarations
  //===--------------------------------------------------------------------===//

  void lowerToolDecl(const ToolDecl &tool) {
    SmallVector<NamedAttribute> params;
    SmallVector<StringRef> optional;
    for (const ToolDecl::Parameter &param : tool.params) {
      params.push_back(
          builder.getNamedAttr(param.name, TypeAttr::get(irType(param.type))));
      if (param.optional)
        optional.push_back(param.name);
    }
    OperationState state(loc(tool.loc), agent::ToolDeclOp::getOperationName());
    state.addAttribute("tool", builder.getStringAttr(tool.name));
    state.addAttribute("params", builder.getDictionaryAttr(params));
    if (!optional.empty())
      state.addAttribute("optional", builder.getStrArrayAttr(optional));
    if (tool.readonly)
      state.addAttribute("readonly", builder.getUnitAttr());
    builder.create(state);
  }

  Attribute defaultAttr(const Param &param) {
    const Expr &value = *param.defaultValue;
    switch (param.type) {
    case agentdsl::Type::Int:
      return builder.getI64IntegerAttr(value.intValue);
    case agentdsl::Type::Float:
      return builder.getF64FloatAttr(value.kind == Expr::Kind::Int
                                         ? static_cast<double>(value.intValue)
                                         : value.floatValue);
    case agentdsl::Type::Bool:
      return builder.getBoolAttr(value.boolValue);
    default:
      return builder.getStringAttr(value.plainString());
    }
  }

  void lowerWorkflow(const Workflow &workflow) {
    SmallVector<mlir::Type> inputs, results;
    for (const Param &param : workflow.params)
      inputs.push_back(irType(param.type));
    if (workflow.returnType != agentdsl::Type::Void)
      results.push_back(irType(workflow.returnType));
    returnType = results.empty() ? mlir::Type() : results.front();
    OpBuilder::InsertionGuard guard(builder);
    auto op =
        agent::WorkflowOp::create(builder, loc(workflow.loc), workflow.name,
                                  builder.getFunctionType(inputs, results));
    mlir::Block *entry = new mlir::Block();
    op.getBody().push_back(entry);
    scopes.clear();
    scopes.emplace_back();
    for (auto [index, param] : llvm::enumerate(workflow.params)) {
      op.setArgAttr(index, agent::kParamAttrName,
                    builder.getStringAttr(param.name));
      if (param.defaultValue)
        op.setArgAttr(index, agent::kDefaultAttrName, defaultAttr(param));
      bind(param.name, entry->addArgument(inputs[index], loc(param.loc)));
    }
    builder.setInsertionPointToEnd(entry);
    bool returns = lowerBlock(workflow.body);
    if (returns)
      endUnreachable(loc(workflow.endLoc));
    else if (returnType)
      agent::UnreachableOp::create(builder, loc(workflow.endLoc));
    else
      agent::ReturnOp::create(builder, loc(workflow.endLoc), ValueRange());
    scopes.clear();
  }

  /// A block every path of which returned ends in agent.unreachable when
  /// its last op (an agent.if whose branches both return) is no terminator.
  void endUnreachable(Location at) {
    mlir::Block *block = builder.getInsertionBlock();
    if (block->empty() || !block->back().hasTrait<OpTrait::IsTerminator>())
      agent::UnreachableOp::create(builder, at);
  }

  //===--------------------------------------------------------------------===//
  // Statements
  //===--------------------------------------------------------------------===//

  /// Lowers the statements at the insertion point; returns whether they
  /// always return.
  bool lowerBlock(const agentdsl::Block &block) {
    bool returns = false;
    for (const StmtPtr &stmt : block) {
      lowerStatement(*stmt);
      returns = returns || stmt->terminates;
      if (returns)
        break;
    }
    return returns;
  }

  static std::string stepName(const Stmt &stmt, StringRef kind) {
    if (!stmt.name.empty())
      return stmt.name;
    return (kind + "@" + std::to_string(stmt.loc.line) + ":" +
            std::to_string(stmt.loc.column))
        .str();
  }

  void lowerStatement(const Stmt &stmt) {
    switch (stmt.kind) {
    case Stmt::Kind::Let:
      bind(stmt.name, lowerExpr(*stmt.value));
      return;
    case Stmt::Kind::Generate:
      lowerGenerate(stmt);
      return;
    case Stmt::Kind::Tool:
      lowerTool(stmt);
      return;
    case Stmt::Kind::Retry:
      lowerRetry(stmt);
      return;
    case Stmt::Kind::If:
      lowerIf(stmt);
      return;
    case Stmt::Kind::Return: {
      SmallVector<Value> values;
      if (stmt.value)
        values.push_back(lowerExpr(*stmt.value));
      agent::ReturnOp::create(builder, loc(stmt.loc), values);
      return;
    }
    }
  }

  void lowerGenerate(const Stmt &stmt) {
    Value prompt = lowerExpr(*stmt.value);
    OperationState state(loc(stmt.loc), agent::GenerateOp::getOperationName());
    state.addOperands(prompt);
    state.addTypes(agent::GenerationType::get(&context));
    state.addAttribute("step",
                       builder.getStringAttr(stepName(stmt, "generate")));
    for (const StepOption &option : stmt.options) {
      const Expr &value = *option.value;
      Attribute attr;
      if (option.name == "model") {
        attr = builder.getStringAttr(value.plainString());
      } else if (option.name == "temperature" || option.name == "top_p") {
        attr = builder.getF64FloatAttr(value.kind == Expr::Kind::Int
                                           ? double(value.intValue)
                                           : value.floatValue);
      } else if (option.name == "stop") {
        SmallVector<std::string> stops;
        if (value.kind == Expr::Kind::List)
          for (const ExprPtr &element : value.operands)
            stops.push_back(element->plainString());
        else
          stops.push_back(value.plainString());
        SmallVector<StringRef> refs(stops.begin(), stops.end());
        attr = builder.getStrArrayAttr(refs);
      } else {
        attr = builder.getI64IntegerAttr(value.intValue);
      }
      state.addAttribute(option.name, attr);
    }
    Operation *op = builder.create(state);
    if (!stmt.name.empty())
      bind(stmt.name, op->getResult(0));
  }

  void lowerTool(const Stmt &stmt) {
    SmallVector<Value> args;
    SmallVector<StringRef> names;
    for (const ToolArgument &argument : stmt.arguments) {
      args.push_back(lowerExpr(*argument.value));
      names.push_back(argument.name);
    }
    OperationState state(loc(stmt.loc), agent::ToolOp::getOperationName());
    state.addOperands(args);
    state.addTypes(agent::ToolResultType::get(&context));
    state.addAttribute("tool", builder.getStringAttr(stmt.toolName));
    state.addAttribute("arg_names", builder.getStrArrayAttr(names));
    state.addAttribute("step", builder.getStringAttr(stepName(stmt, "tool")));
    for (const StepOption &option : stmt.options)
      state.addAttribute(option.name == "timeout" ? "timeout_ms" : option.name,
                         builder.getI64IntegerAttr(option.value->intValue));
    Operation *op = builder.create(state);
    if (!stmt.name.empty())
      bind(stmt.name, op->getResult(0));
  }

  /// The `names` attribute of a retry / if: its exports, or null for none.
  ArrayAttr exportNames(const Stmt &stmt) {
    if (stmt.exports.empty())
      return nullptr;
    SmallVector<StringRef> names;
    for (const Export &exported : stmt.exports)
      names.push_back(exported.name);
    return builder.getStrArrayAttr(names);
  }

  SmallVector<mlir::Type> exportTypes(const Stmt &stmt) {
    SmallVector<mlir::Type> types;
    for (const Export &exported : stmt.exports)
      types.push_back(irType(exported.type));
    return types;
  }

  void yieldExports(const Stmt &stmt, Location at) {
    SmallVector<Value> values;
    for (const Export &exported : stmt.exports)
      values.push_back(lookup(exported.name));
    agent::YieldOp::create(builder, at, values);
  }

  void lowerRetry(const Stmt &stmt) {
    SmallVector<mlir::Type> types = exportTypes(stmt);
    Location at = loc(stmt.loc);
    auto retry = agent::RetryOp::create(
        builder, at, types, builder.getI64IntegerAttr(stmt.maxAttempts),
        exportNames(stmt));
    {
      OpBuilder::InsertionGuard guard(builder);
      mlir::Block *body = new mlir::Block();
      retry.getBody().push_back(body);
      RetryFrame frame;
      frame.index = body->addArgument(builder.getI64Type(), at);
      for (auto [exported, type] : llvm::zip(stmt.exports, types))
        frame.previous[exported.name] = body->addArgument(type, at);
      retries.push_back(std::move(frame));
      scopes.emplace_back();
      builder.setInsertionPointToEnd(body);
      lowerBlock(stmt.body);
      yieldExports(stmt, at);
      scopes.pop_back();
      retries.pop_back();

      mlir::Block *condition = new mlir::Block();
      retry.getCondition().push_back(condition);
      scopes.emplace_back();
      for (auto [exported, type] : llvm::zip(stmt.exports, types))
        bind(exported.name, condition->addArgument(type, at));
      builder.setInsertionPointToEnd(condition);
      Value again = lowerExpr(*stmt.value);
      agent::YieldOp::create(builder, loc(stmt.value->loc), ValueRange(again));
      scopes.pop_back();
    }
    for (auto [exported, result] : llvm::zip(stmt.exports, retry.getResults()))
      bind(exported.name, result);
  }

  void lowerIf(const Stmt &stmt) {
    Value condition = lowerExpr(*stmt.value);
    Location at = loc(stmt.loc);
    auto ifOp = agent::IfOp::create(builder, at, exportTypes(stmt), condition,
                                    exportNames(stmt));
    auto lowerBranch = [&](Region &region, const agentdsl::Block &block) {
      OpBuilder::InsertionGuard guard(builder);
      region.push_back(new mlir::Block());
      builder.setInsertionPointToEnd(&region.front());
      scopes.emplace_back();
      if (lowerBlock(block))
        endUnreachable(at);
      else
        yieldExports(stmt, at);
      scopes.pop_back();
    };
    lowerBranch(ifOp.getThenRegion(), stmt.body);
    if (stmt.hasElse)
      lowerBranch(ifOp.getElseRegion(), stmt.elseBody);
    for (auto [exported, result] : llvm::zip(stmt.exports, ifOp.getResults()))
      bind(exported.name, result);
  }

  //===--------------------------------------------------------------------===//
  // Expressions
  //===--------------------------------------------------------------------===//

  Value constant(Location at, Attribute value) {
    return agent::ConstantOp::create(builder, at, value).getResult();
  }

  Value lowerField(Value step, const std::string &field, Location at) {
    if (isa<agent::GenerationType>(step.getType())) {
      if (field == "text")
        return agent::TextOp::create(builder, at,
                                     agent::StringType::get(&context), step);
      mlir::Type type = agent::uncertaintyMetricType(&context, field);
      return agent::UncertaintyOp::create(builder, at, type, step,
                                          builder.getStringAttr(field));
    }
    if (field == "text")
      return agent::TextOp::create(builder, at,
                                   agent::StringType::get(&context), step);
    if (field == "output")
      return agent::ToolOutputOp::create(builder, at,
                                         agent::JsonType::get(&context), step);
    if (field == "ok")
      return agent::ToolOkOp::create(builder, at, builder.getI1Type(), step);
    return agent::ToolErrorOp::create(builder, at,
                                      agent::StringType::get(&context), step);
  }

  Value lowerPath(const Expr &expr) {
    const std::vector<std::string> &path = expr.path;
    Value base;
    size_t fieldIndex;
    if (path[0] == "attempt") {
      const RetryFrame &frame = retries.back();
      if (path[1] == "index")
        return frame.index;
      base = frame.previous.at(path[2]);
      fieldIndex = 3;
    } else {
      base = lookup(path[0]);
      fieldIndex = 1;
    }
    if (fieldIndex == path.size())
      return base;
    return lowerField(base, path[fieldIndex], loc(expr.pathLocs[fieldIndex]));
  }

  static std::string escapeBraces(StringRef text) {
    std::string out;
    for (char c : text) {
      out += c;
      if (c == '{' || c == '}')
        out += c;
    }
    return out;
  }

  Value lowerString(const Expr &expr) {
    Location at = loc(expr.loc);
    if (expr.isPlainString())
      return constant(at, builder.getStringAttr(expr.plainString()));
    std::string text;
    SmallVector<Value> args;
    std::map<std::string, size_t> indexOfPath;
    for (const TemplatePart &part : expr.parts) {
      if (!part.path) {
        text += escapeBraces(part.literal);
        continue;
      }
      std::string key = llvm::join(part.path->path, ".");
      auto [it, inserted] = indexOfPath.try_emplace(key, args.size());
      if (inserted)
        args.push_back(lowerPath(*part.path));
      text += "{" + std::to_string(it->second) + "}";
    }
    return agent::FormatOp::create(builder, at,
                                   agent::StringType::get(&context),
                                   builder.getStringAttr(text), args);
  }

  Value lowerExpr(const Expr &expr) {
    Location at = loc(expr.loc);
    switch (expr.kind) {
    case Expr::Kind::String:
      return lowerString(expr);
    case Expr::Kind::Int:
      return constant(at, builder.getI64IntegerAttr(expr.intValue));
    case Expr::Kind::Float:
      return constant(at, builder.getF64FloatAttr(expr.floatValue));
    case Expr::Kind::Bool:
      return constant(at, builder.getBoolAttr(expr.boolValue));
    case Expr::Kind::List: {
      SmallVector<Value> elements;
      for (const ExprPtr &element : expr.operands)
        elements.push_back(lowerExpr(*element));
      return agent::ListOp::create(builder, at, agent::JsonType::get(&context),
                                   elements);
    }
    case Expr::Kind::Path:
      return lowerPath(expr);
    case Expr::Kind::Call: {
      mlir::Type i1 = builder.getI1Type();
      if (expr.callee == "ok" || expr.callee == "failed") {
        Value ok = agent::ToolOkOp::create(builder, at, i1,
                                           lowerExpr(*expr.operands[0]));
        if (expr.callee == "ok")
          return ok;
        return agent::NotOp::create(builder, at, i1, ok);
      }
      if (expr.callee == "matches")
        return agent::MatchesOp::create(
            builder, at, i1, lowerExpr(*expr.operands[0]),
            builder.getStringAttr(expr.operands[1]->plainString()));
      return agent::JsonValidOp::create(builder, at, i1,
                                        lowerExpr(*expr.operands[0]));
    }
    case Expr::Kind::Not:
      return agent::NotOp::create(builder, at, builder.getI1Type(),
                                  lowerExpr(*expr.operands[0]));
    case Expr::Kind::And:
    case Expr::Kind::Or: {
      Value lhs = lowerExpr(*expr.operands[0]);
      Value rhs = lowerExpr(*expr.operands[1]);
      if (expr.kind == Expr::Kind::And)
        return agent::AndOp::create(builder, at, builder.getI1Type(), lhs, rhs);
      return agent::OrOp::create(builder, at, builder.getI1Type(), lhs, rhs);
    }
    case Expr::Kind::Compare: {
      static const char *const predicates[] = {"eq", "ne", "lt",
                                               "le", "gt", "ge"};
      Value lhs = lowerExpr(*expr.operands[0]);
      Value rhs = lowerExpr(*expr.operands[1]);
      return agent::CmpOp::create(
          builder, at, builder.getI1Type(),
          builder.getStringAttr(predicates[static_cast<int>(expr.compareOp)]),
          lhs, rhs);
    }
    }
    return Value();
  }
};

} // namespace

OwningOpRef<ModuleOp> lowerToAgentIR(const Program &program,
                                     MLIRContext &context,
                                     llvm::StringRef fileName) {
  context.getOrLoadDialect<agent::AgentDialect>();
  return Lowerer(context, fileName).lower(program);
}

} // namespace treni::agentdsl
