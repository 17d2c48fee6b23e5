//===- AgentDialect.cpp - agent dialect, types and op verifiers ----------===//
//
// What ODS cannot say: region signatures of agent.if / agent.retry /
// agent.parallel, workflow parameters, template placeholders, option ranges
// and the result type of each uncertainty metric.
//
//===----------------------------------------------------------------------===//

#include "ir/AgentDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "mlir/Interfaces/FunctionImplementation.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace agent;

#include "ir/AgentDialect.cpp.inc"

#define GET_TYPEDEF_CLASSES
#include "ir/AgentTypes.cpp.inc"

void AgentDialect::initialize() {
  addTypes<
#define GET_TYPEDEF_LIST
#include "ir/AgentTypes.cpp.inc"
      >();
  addOperations<
#define GET_OP_LIST
#include "ir/AgentOps.cpp.inc"
      >();
}

#define GET_OP_CLASSES
#include "ir/AgentOps.cpp.inc"

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

bool agent::isValueType(Type type) {
  return isa<StringType, JsonType>(type) || type.isInteger(64) ||
         type.isF64() || type.isInteger(1);
}

Type agent::uncertaintyMetricType(MLIRContext *context, StringRef metric) {
  Builder b(context);
  if (metric == "perplexity" || metric == "max_entropy" ||
      metric == "mean_entropy")
    return b.getF64Type();
  if (metric == "low_confidence" || metric == "tokens")
    return b.getI64Type();
  if (metric == "uncertain")
    return JsonType::get(context);
  return Type();
}

FailureOr<std::vector<TemplatePiece>> agent::splitTemplate(StringRef text,
                                                           std::string &error) {
  std::vector<TemplatePiece> pieces;
  std::string literal;
  auto flush = [&] {
    if (!literal.empty())
      pieces.push_back({std::move(literal), -1});
    literal.clear();
  };
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '}') {
      if (i + 1 < text.size() && text[i + 1] == '}') {
        literal += '}';
        ++i;
        continue;
      }
      error = "unmatched '}' at offset " + std::to_string(i) +
              " (write '}}' for a literal brace)";
      return failure();
    }
    if (c != '{') {
      literal += c;
      continue;
    }
    if (i + 1 < text.size() && text[i + 1] == '{') {
      literal += '{';
      ++i;
      continue;
    }
    size_t close = text.find('}', i);
    StringRef digits =
        close == StringRef::npos ? StringRef() : text.slice(i + 1, close);
    int64_t index;
    if (digits.empty() ||
        !llvm::all_of(digits, [](char d) { return d >= '0' && d <= '9'; }) ||
        digits.getAsInteger(10, index)) {
      error = "placeholder at offset " + std::to_string(i) +
              " is not '{N}' with an operand number N (write '{{' for a "
              "literal brace)";
      return failure();
    }
    flush();
    pieces.push_back({"", index});
    i = close;
  }
  flush();
  return pieces;
}

namespace {
/// "i64, !agent.string": types without the quotes a diagnostic adds.
std::string typeList(TypeRange types) {
  std::string text;
  llvm::raw_string_ostream os(text);
  llvm::interleaveComma(types, os);
  return text;
}

/// A step or variable name as an SSA name: letters, digits and '_'.
std::string ssaName(StringRef name) {
  std::string out;
  for (char c : name)
    out += llvm::isAlnum(c) ? c : '_';
  return out;
}

/// Checks that `names`, when present, has one entry per result.
LogicalResult verifyNames(Operation *op, std::optional<ArrayAttr> names) {
  if (names && names->size() != op->getNumResults())
    return op->emitOpError()
           << "has " << op->getNumResults() << " result(s) but "
           << names->size() << " name(s)";
  return success();
}

/// Names results after `names`.
void nameResults(Operation *op, std::optional<ArrayAttr> names,
                 OpAsmSetValueNameFn setNameFn) {
  if (!names || names->size() != op->getNumResults())
    return;
  for (auto [result, name] : llvm::zip(op->getResults(), *names))
    setNameFn(result, ssaName(cast<StringAttr>(name).getValue()));
}

/// Checks that `region`'s block ends in a terminator allowed by `allowExit`
/// (agent.return / agent.unreachable) or an agent.yield of `types`.
LogicalResult verifyRegionEnd(Operation *op, Region &region, StringRef what,
                              TypeRange types, bool allowExit) {
  Block &block = region.front();
  Operation *end = block.empty() ? nullptr : &block.back();
  if (end && allowExit && isa<ReturnOp, UnreachableOp>(end))
    return success();
  auto yield = dyn_cast_or_null<YieldOp>(end);
  if (!yield)
    return op->emitOpError()
           << what << " must end with agent.yield"
           << (allowExit ? ", agent.return or agent.unreachable" : "");
  if (TypeRange(yield.getValues().getTypes()) != types) {
    auto diag = op->emitOpError()
                << what << " yields " << yield.getValues().size()
                << " value(s) of types ("
                << typeList(yield.getValues().getTypes()) << ") but ("
                << typeList(types) << ") are expected";
    diag.attachNote(yield.getLoc()) << "yield is here";
    return diag;
  }
  return success();
}
} // namespace

//===----------------------------------------------------------------------===//
// WorkflowOp
//===----------------------------------------------------------------------===//

void WorkflowOp::build(OpBuilder &builder, OperationState &state,
                       StringRef name, FunctionType type) {
  state.addAttribute(SymbolTable::getSymbolAttrName(),
                     builder.getStringAttr(name));
  state.addAttribute(getFunctionTypeAttrName(state.name), TypeAttr::get(type));
  state.addRegion();
}

ParseResult WorkflowOp::parse(OpAsmParser &parser, OperationState &result) {
  auto buildType = [](Builder &builder, ArrayRef<Type> argTypes,
                      ArrayRef<Type> results,
                      function_interface_impl::VariadicFlag, std::string &) {
    return builder.getFunctionType(argTypes, results);
  };
  return function_interface_impl::parseFunctionOp(
      parser, result, /*allowVariadic=*/false,
      getFunctionTypeAttrName(result.name), buildType,
      getArgAttrsAttrName(result.name), getResAttrsAttrName(result.name));
}

void WorkflowOp::print(OpAsmPrinter &p) {
  function_interface_impl::printFunctionOp(
      p, *this, /*isVariadic=*/false, getFunctionTypeAttrName(),
      getArgAttrsAttrName(), getResAttrsAttrName());
}

StringRef WorkflowOp::getParamName(unsigned index) {
  if (auto name = getArgAttrOfType<StringAttr>(index, kParamAttrName))
    return name.getValue();
  return "";
}

void WorkflowOp::getAsmBlockArgumentNames(Region &region,
                                          OpAsmSetValueNameFn setNameFn) {
  if (region.empty())
    return;
  for (auto [index, arg] : llvm::enumerate(region.front().getArguments()))
    if (index < getNumArguments() && !getParamName(index).empty())
      setNameFn(arg, getParamName(index));
}

LogicalResult WorkflowOp::verify() {
  if (getBody().empty())
    return emitOpError("needs a body");
  if (getResultTypes().size() > 1)
    return emitOpError("returns at most one value");
  for (Type type : getResultTypes())
    if (!isValueType(type))
      return emitOpError() << "result type " << type << " is not a value type";
  llvm::StringSet<> names;
  for (unsigned i = 0, e = getNumArguments(); i < e; ++i) {
    Type type = getArgumentTypes()[i];
    if (!isValueType(type))
      return emitOpError() << "parameter #" << i << " has type " << type
                           << ", not a value type";
    StringRef name = getParamName(i);
    if (name.empty())
      return emitOpError() << "parameter #" << i << " needs a '"
                           << kParamAttrName << "' name";
    if (!names.insert(name).second)
      return emitOpError() << "parameter name '" << name << "' is used twice";
    if (Attribute value = getArgAttr(i, kDefaultAttrName)) {
      auto typed = dyn_cast<TypedAttr>(value);
      bool matches = isa<StringType>(type) || isa<JsonType>(type)
                         ? isa<StringAttr>(value)
                         : typed && typed.getType() == type;
      if (!matches)
        return emitOpError()
               << "default of parameter '" << name << "' is not a " << type;
    }
  }
  return success();
}

LogicalResult WorkflowOp::verifyRegions() {
  Block &entry = getBody().front();
  if (entry.empty() || !isa<ReturnOp, UnreachableOp>(entry.back()))
    return emitOpError("body must end with agent.return or agent.unreachable");
  return success();
}

//===----------------------------------------------------------------------===//
// ToolDeclOp
//===----------------------------------------------------------------------===//

LogicalResult ToolDeclOp::verify() {
  if (getTool().empty())
    return emitOpError("needs a tool name");
  for (NamedAttribute param : getParams()) {
    auto type = dyn_cast<TypeAttr>(param.getValue());
    if (!type || !isValueType(type.getValue()))
      return emitOpError() << "parameter '" << param.getName().getValue()
                           << "' must map to a value type";
  }
  if (auto optional = getOptional())
    for (Attribute name : *optional)
      if (!getParams().get(cast<StringAttr>(name).getValue()))
        return emitOpError()
               << "optional parameter '" << cast<StringAttr>(name).getValue()
               << "' is not in params";
  auto module = (*this)->getParentOfType<ModuleOp>();
  for (auto other : module.getOps<ToolDeclOp>()) {
    if (other == *this)
      break;
    if (other.getTool() == getTool())
      return emitOpError() << "tool '" << getTool() << "' is declared twice";
  }
  return success();
}

//===----------------------------------------------------------------------===//
// Steps
//===----------------------------------------------------------------------===//

void GenerateOp::getAsmResultNames(OpAsmSetValueNameFn setNameFn) {
  setNameFn(getResult(), ssaName(getStep()));
}

LogicalResult GenerateOp::verify() {
  if (getStep().empty())
    return emitOpError("needs a step name");
  // I64Attr getters return uint64_t: read the attributes as signed.
  auto signedValue = [](IntegerAttr attr) {
    return attr ? std::optional<int64_t>(attr.getInt()) : std::nullopt;
  };
  if (auto maxTokens = signedValue(getMaxTokensAttr());
      maxTokens && *maxTokens <= 0)
    return emitOpError() << "max_tokens must be positive, got " << *maxTokens;
  if (auto temperature = getTemperature();
      temperature && !(temperature->convertToDouble() >= 0.0))
    return emitOpError() << "temperature must be >= 0, got "
                         << temperature->convertToDouble();
  if (auto topP = getTopP(); topP && !(topP->convertToDouble() > 0.0 &&
                                       topP->convertToDouble() <= 1.0))
    return emitOpError() << "top_p must be in (0, 1], got "
                         << topP->convertToDouble();
  if (auto topK = signedValue(getTopKAttr()); topK && *topK < 0)
    return emitOpError() << "top_k must be >= 0, got " << *topK;
  if (bool(getPrefixGroupAttr()) != bool(getPrefixLenAttr()))
    return emitOpError("prefix_group and prefix_len come together");
  if (auto group = signedValue(getPrefixGroupAttr()); group && *group < 0)
    return emitOpError() << "prefix_group must be >= 0, got " << *group;
  if (auto len = signedValue(getPrefixLenAttr()); len && *len <= 0)
    return emitOpError() << "prefix_len must be positive, got " << *len;
  return success();
}

void ToolOp::getAsmResultNames(OpAsmSetValueNameFn setNameFn) {
  setNameFn(getResult(), ssaName(getStep()));
}

LogicalResult ToolOp::verify() {
  if (getTool().empty())
    return emitOpError("needs a tool name");
  if (getStep().empty())
    return emitOpError("needs a step name");
  if (getArgNames().size() != getArgs().size())
    return emitOpError() << "has " << getArgs().size() << " argument(s) but "
                         << getArgNames().size() << " argument name(s)";
  llvm::StringSet<> seen;
  for (Attribute name : getArgNames()) {
    StringRef text = cast<StringAttr>(name).getValue();
    if (text.empty())
      return emitOpError("argument names must not be empty");
    if (!seen.insert(text).second)
      return emitOpError() << "argument '" << text << "' is given twice";
  }
  if (auto timeout = getTimeoutMsAttr(); timeout && timeout.getInt() <= 0)
    return emitOpError() << "timeout_ms must be positive, got "
                         << timeout.getInt();
  if (auto retries = getRetriesAttr(); retries && retries.getInt() < 0)
    return emitOpError() << "retries must be >= 0, got " << retries.getInt();
  return success();
}

//===----------------------------------------------------------------------===//
// Values
//===----------------------------------------------------------------------===//

LogicalResult
ConstantOp::inferReturnTypes(MLIRContext *context,
                             std::optional<Location> location, Adaptor adaptor,
                             SmallVectorImpl<Type> &inferredReturnTypes) {
  Attribute value = adaptor.getValue();
  if (isa_and_nonnull<StringAttr>(value))
    inferredReturnTypes.push_back(StringType::get(context));
  else if (auto typed = dyn_cast_or_null<TypedAttr>(value))
    inferredReturnTypes.push_back(typed.getType());
  else
    return emitOptionalError(location, "agent.constant needs a value");
  return success();
}

OpFoldResult ConstantOp::fold(FoldAdaptor) { return getValueAttr(); }

LogicalResult FormatOp::verify() {
  std::string error;
  auto pieces = splitTemplate(getText(), error);
  if (failed(pieces))
    return emitOpError() << "template: " << error;
  llvm::SmallVector<bool> used(getArgs().size(), false);
  for (const TemplatePiece &piece : *pieces) {
    if (piece.index < 0)
      continue;
    if (piece.index >= (int64_t)getArgs().size())
      return emitOpError() << "placeholder {" << piece.index << "} but only "
                           << getArgs().size() << " operand(s)";
    used[piece.index] = true;
  }
  for (auto [index, isUsed] : llvm::enumerate(used))
    if (!isUsed)
      return emitOpError() << "operand #" << index
                           << " is not used by the template";
  return success();
}

std::string FormatOp::getLiteralPrefix() {
  std::string error;
  auto pieces = splitTemplate(getText(), error);
  if (failed(pieces) || pieces->empty() || pieces->front().index >= 0)
    return "";
  return pieces->front().literal;
}

LogicalResult UncertaintyOp::verify() {
  Type expected = uncertaintyMetricType(getContext(), getMetric());
  if (!expected)
    return emitOpError() << "unknown metric '" << getMetric()
                         << "' (perplexity, max_entropy, mean_entropy, "
                            "low_confidence, tokens, uncertain)";
  if (getResult().getType() != expected)
    return emitOpError() << "metric '" << getMetric() << "' is a " << expected
                         << ", not " << getResult().getType();
  return success();
}

//===----------------------------------------------------------------------===//
// Conditions
//===----------------------------------------------------------------------===//

LogicalResult CmpOp::verify() {
  StringRef predicate = getPredicate();
  bool ordering = llvm::is_contained({"lt", "le", "gt", "ge"}, predicate);
  if (!ordering && predicate != "eq" && predicate != "ne")
    return emitOpError() << "unknown predicate '" << predicate
                         << "' (eq, ne, lt, le, gt, ge)";
  auto numeric = [](Type type) { return type.isInteger(64) || type.isF64(); };
  Type lhs = getLhs().getType(), rhs = getRhs().getType();
  if (numeric(lhs) && numeric(rhs))
    return success();
  if (lhs != rhs)
    return emitOpError() << "cannot compare " << lhs << " with " << rhs;
  if (ordering)
    return emitOpError() << "'" << predicate << "' needs numbers, not " << lhs;
  return success();
}

LogicalResult MatchesOp::verify() {
  if (getPattern().empty())
    return emitOpError("needs a non-empty pattern");
  return success();
}

//===----------------------------------------------------------------------===//
// Control flow
//===----------------------------------------------------------------------===//

void IfOp::getAsmResultNames(OpAsmSetValueNameFn setNameFn) {
  nameResults(*this, getNames(), setNameFn);
}

LogicalResult IfOp::verify() {
  if (failed(verifyNames(*this, getNames())))
    return failure();
  if (failed(verifyRegionEnd(*this, getThenRegion(), "then region",
                             getResultTypes(), /*allowExit=*/true)))
    return failure();
  if (getElseRegion().empty()) {
    if (getNumResults() != 0)
      return emitOpError("with results needs an else region");
    return success();
  }
  return verifyRegionEnd(*this, getElseRegion(), "else region",
                         getResultTypes(), /*allowExit=*/true);
}

void RetryOp::getAsmResultNames(OpAsmSetValueNameFn setNameFn) {
  nameResults(*this, getNames(), setNameFn);
}

void RetryOp::getAsmBlockArgumentNames(Region &region,
                                       OpAsmSetValueNameFn setNameFn) {
  if (region.empty())
    return;
  auto names = getNames();
  auto args = region.front().getArguments();
  bool isBody = &region == &getBody();
  if (isBody && !args.empty()) {
    setNameFn(args.front(), "attempt");
    args = args.drop_front();
  }
  if (!names || names->size() != args.size())
    return;
  for (auto [arg, name] : llvm::zip(args, *names)) {
    std::string text = ssaName(cast<StringAttr>(name).getValue());
    setNameFn(arg, isBody ? "previous_" + text : text);
  }
}

LogicalResult RetryOp::verify() {
  if (failed(verifyNames(*this, getNames())))
    return failure();
  Block &body = getBody().front();
  TypeRange args = body.getArgumentTypes();
  if (args.empty() || !args.front().isInteger(64) ||
      args.drop_front() != TypeRange(getResultTypes()))
    return emitOpError() << "body arguments must be the attempt index (i64) "
                            "then one previous value per result ("
                         << typeList(getResultTypes()) << "), got ("
                         << typeList(args) << ")";
  if (failed(verifyRegionEnd(*this, getBody(), "body", getResultTypes(),
                             /*allowExit=*/false)))
    return failure();
  Block &condition = getCondition().front();
  if (condition.getArgumentTypes() != getResultTypes())
    return emitOpError() << "condition arguments must be the body's values ("
                         << typeList(getResultTypes()) << "), got ("
                         << typeList(condition.getArgumentTypes()) << ")";
  Type i1 = IntegerType::get(getContext(), 1);
  return verifyRegionEnd(*this, getCondition(), "condition region",
                         TypeRange(i1), /*allowExit=*/false);
}

void ParallelOp::getAsmResultNames(OpAsmSetValueNameFn setNameFn) {
  // Each result is named after the step of the call it yields.
  if (getBody().empty() || getBody().front().empty())
    return;
  auto yield = dyn_cast<YieldOp>(getBody().front().back());
  if (!yield || yield.getValues().size() != getNumResults())
    return;
  for (auto [result, value] : llvm::zip(getResults(), yield.getValues()))
    if (auto tool = value.getDefiningOp<ToolOp>())
      setNameFn(result, ssaName(tool.getStep()));
    else if (auto generate = value.getDefiningOp<GenerateOp>())
      setNameFn(result, ssaName(generate.getStep()));
}

LogicalResult ParallelOp::verify() {
  Block &body = getBody().front();
  for (Operation &op : body.without_terminator()) {
    StringRef step;
    if (auto tool = dyn_cast<ToolOp>(op))
      step = tool.getStep();
    else if (auto generate = dyn_cast<GenerateOp>(op))
      step = generate.getStep();
    else
      return emitOpError()
             << "may only hold agent.tool and agent.generate ops, found '"
             << op.getName() << "'";
    for (Value operand : op.getOperands())
      if (operand.getParentRegion() == &getBody())
        return emitOpError() << "step '" << step
                             << "' uses a value computed inside the region";
  }
  return verifyRegionEnd(*this, getBody(), "body", getResultTypes(),
                         /*allowExit=*/false);
}

LogicalResult ReturnOp::verify() {
  auto workflow = (*this)->getParentOfType<WorkflowOp>();
  if (!workflow)
    return emitOpError("must be inside an agent.workflow");
  if (TypeRange(getValues().getTypes()) != workflow.getResultTypes())
    return emitOpError() << "returns (" << typeList(getValues().getTypes())
                         << ") but workflow '" << workflow.getSymName()
                         << "' returns (" << typeList(workflow.getResultTypes())
                         << ")";
  return success();
}
