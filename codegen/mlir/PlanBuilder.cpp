//===- PlanBuilder.cpp - outlined, planned module -> Plan ----------------===//

#include "codegen/mlir/PlanBuilder.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ir/TreniDialect.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/DenseMap.h"

namespace treni {
namespace {
using namespace mlir;

#define TRENI_PLAN_RETURN_IF_ERROR(expr)                                       \
  do {                                                                         \
    absl::Status status_ = (expr);                                             \
    if (!status_.ok())                                                         \
      return status_;                                                          \
  } while (false)

std::string describe(Operation *op) {
  std::string text;
  llvm::raw_string_ostream os(text);
  os << "'" << op->getName() << "' at " << op->getLoc();
  return text;
}

std::string dtypeOf(Type type) {
  if (type.isBF16())
    return "bf16";
  if (type.isF16())
    return "f16";
  if (type.isF32())
    return "f32";
  if (type.isInteger(32))
    return "i32";
  std::string text;
  llvm::raw_string_ostream os(text);
  os << type;
  return text;
}

absl::StatusOr<PlanConstant> toConstant(Attribute attr) {
  if (auto b = dyn_cast<BoolAttr>(attr))
    return PlanConstant(b.getValue());
  if (auto i = dyn_cast<IntegerAttr>(attr))
    return PlanConstant(i.getInt());
  if (auto f = dyn_cast<FloatAttr>(attr))
    return PlanConstant(f.getValueAsDouble());
  if (auto s = dyn_cast<StringAttr>(attr))
    return PlanConstant(s.str());
  if (auto sym = dyn_cast<FlatSymbolRefAttr>(attr))
    return PlanConstant(sym.getValue().str());
  std::string text;
  llvm::raw_string_ostream os(text);
  os << attr;
  return absl::InvalidArgumentError("unsupported kernel constant " + text);
}

class Builder {
public:
  explicit Builder(ModuleOp module) : module(module) {}

  absl::StatusOr<Plan> build() {
    if (auto model = module->getAttrOfType<DictionaryAttr>("treni.model"))
      for (NamedAttribute entry : model) {
        auto value = toConstant(entry.getValue());
        if (!value.ok())
          return value.status();
        plan.model[entry.getName().str()] = *value;
      }
    for (auto cache : module.getOps<KvCacheOp>())
      plan.caches.push_back(
          {cache.getSymName().str(), (int64_t)cache.getNumLayers(),
           (int64_t)cache.getNumKvHeads(), (int64_t)cache.getHeadDim(),
           dtypeOf(cache.getElementType())});
    for (auto func : module.getOps<func::FuncOp>()) {
      auto function = buildFunction(func);
      if (!function.ok())
        return function.status();
      plan.functions.push_back(std::move(*function));
    }
    return plan;
  }

private:
  /// The checkpoint entry of one treni.weight.
  absl::StatusOr<PlanWeight> checkpointWeight(WeightOp op) {
    auto map = module->getAttrOfType<DictionaryAttr>(kWeightsAttrName);
    DictionaryAttr entry =
        map ? map.getAs<DictionaryAttr>(op.getName()) : nullptr;
    auto file = entry ? entry.getAs<StringAttr>("file") : nullptr;
    auto offset = entry ? entry.getAs<IntegerAttr>("offset") : nullptr;
    auto dtype = entry ? entry.getAs<StringAttr>("dtype") : nullptr;
    if (!file || !offset || !dtype)
      return absl::InvalidArgumentError(
          absl::StrCat("weight '", op.getName().str(),
                       "' has no complete entry in the module's weight map"));
    auto type = op.getResult().getType();
    return PlanWeight{
        op.getName().str(),
        file.str(),
        offset.getInt(),
        dtype.str(),
        std::vector<int64_t>(type.getShape().begin(), type.getShape().end()),
        {}};
  }

  /// Appends the checkpoint tensors of a concat (nested concats flattened).
  absl::Status collectParts(ConcatOp op, std::vector<PlanWeight> &parts) {
    for (Value part : op.getParts()) {
      if (auto nested = part.getDefiningOp<ConcatOp>()) {
        TRENI_PLAN_RETURN_IF_ERROR(collectParts(nested, parts));
        continue;
      }
      auto weight = part.getDefiningOp<WeightOp>();
      if (!weight)
        return absl::InvalidArgumentError(
            absl::StrCat(describe(op), " concatenates a non-weight"));
      auto leaf = checkpointWeight(weight);
      if (!leaf.ok())
        return leaf.status();
      parts.push_back(std::move(*leaf));
    }
    return absl::OkStatus();
  }

  /// Whether a step (anything but a concat) reads `op`'s result.
  static bool readOutsideConcats(Operation *op) {
    return llvm::any_of(op->getUsers(),
                        [](Operation *user) { return !isa<ConcatOp>(user); });
  }

  int64_t addWeight(PlanWeight weight) {
    auto it = weightIndices.find(weight.name);
    if (it != weightIndices.end())
      return it->second;
    int64_t index = plan.weights.size();
    weightIndices[weight.name] = index;
    plan.weights.push_back(std::move(weight));
    return index;
  }

  absl::StatusOr<int64_t> weightIndex(WeightOp op) {
    auto it = weightIndices.find(op.getName().str());
    if (it != weightIndices.end())
      return it->second;
    auto weight = checkpointWeight(op);
    if (!weight.ok())
      return weight.status();
    return addWeight(std::move(*weight));
  }

  /// One plan weight whose data is the concat's parts back to back.
  absl::StatusOr<int64_t> weightIndex(ConcatOp op) {
    PlanWeight weight;
    TRENI_PLAN_RETURN_IF_ERROR(collectParts(op, weight.parts));
    std::vector<std::string> names;
    for (const PlanWeight &part : weight.parts) {
      names.push_back(part.name);
      if (part.dtype != weight.parts.front().dtype)
        return absl::InvalidArgumentError(absl::StrCat(
            describe(op), " concatenates checkpoint tensors of dtypes ",
            weight.parts.front().dtype, " and ", part.dtype));
    }
    weight.name = "concat(" + absl::StrJoin(names, ",") + ")";
    weight.offset = -1;
    weight.dtype = weight.parts.front().dtype;
    auto type = cast<RankedTensorType>(op.getResult().getType());
    weight.shape.assign(type.getShape().begin(), type.getShape().end());
    return addWeight(std::move(weight));
  }

  int64_t addBuffer(PlanFunction &f, Value value, int64_t offset) {
    auto type = cast<RankedTensorType>(value.getType());
    PlanBuffer buffer;
    buffer.dtype = dtypeOf(type.getElementType());
    for (int64_t dim : type.getShape())
      buffer.shape.push_back(ShapedType::isDynamic(dim) ? -1 : dim);
    buffer.dynamic = type.getRank() > 0 && type.isDynamicDim(0);
    buffer.offset = offset;
    f.buffers.push_back(std::move(buffer));
    return f.buffers.size() - 1;
  }

  absl::StatusOr<PlanFunction> buildFunction(func::FuncOp func) {
    PlanFunction f;
    f.name = func.getSymName().str();
    auto staticBytes =
        func->getAttrOfType<IntegerAttr>("treni.arena_static_bytes");
    auto rowBytes = func->getAttrOfType<IntegerAttr>("treni.arena_row_bytes");
    if (!staticBytes || !rowBytes)
      return absl::FailedPreconditionError(
          absl::StrCat("@", f.name,
                       " has no arena sizes: run treni-plan-buffers "
                       "before building a plan (was it disabled?)"));
    f.staticBytes = staticBytes.getInt();
    f.rowBytes = rowBytes.getInt();

    llvm::DenseMap<Value, PlanOperand> operands;
    for (BlockArgument arg : func.getArguments()) {
      auto offset = func.getArgAttrOfType<IntegerAttr>(arg.getArgNumber(),
                                                       "treni.offset");
      if (!offset)
        return absl::FailedPreconditionError(absl::StrCat(
            "@", f.name, " argument ", arg.getArgNumber(), " has no offset"));
      int64_t index = addBuffer(f, arg, offset.getInt());
      f.inputs.push_back(index);
      operands[arg] = {PlanOperand::Kind::Buffer, index};
    }
    for (Operation &op : func.getBody().front()) {
      if (auto weight = dyn_cast<WeightOp>(op)) {
        // A tensor only concats read (q/k/v, gate/up after the fusions) is
        // stored inside them (PlanWeight::parts), not a second time on its
        // own: the GPU holds each checkpoint byte once.
        if (!readOutsideConcats(weight))
          continue;
        auto index = weightIndex(weight);
        if (!index.ok())
          return index.status();
        operands[weight.getResult()] = {PlanOperand::Kind::Weight, *index};
        continue;
      }
      if (auto concat = dyn_cast<ConcatOp>(op)) {
        // Only concats a step reads become plan weights; inner ones of a
        // nested concat are flattened into it.
        if (!readOutsideConcats(concat))
          continue;
        auto index = weightIndex(concat);
        if (!index.ok())
          return index.status();
        operands[concat.getResult()] = {PlanOperand::Kind::Weight, *index};
        continue;
      }
      if (auto ret = dyn_cast<func::ReturnOp>(op)) {
        for (Value value : ret.getOperands()) {
          auto it = operands.find(value);
          if (it == operands.end() ||
              it->second.kind != PlanOperand::Kind::Buffer)
            return absl::InvalidArgumentError(
                absl::StrCat("@", f.name, " returns a value with no buffer"));
          f.outputs.push_back(it->second.index);
        }
        continue;
      }
      auto kernel = dyn_cast<KernelOp>(op);
      if (!kernel)
        return absl::FailedPreconditionError(
            absl::StrCat(describe(&op),
                         " was not outlined into a kernel: run "
                         "treni-outline-kernels before building a plan (was it "
                         "disabled?)"));
      PlanStep step;
      step.templateName = kernel.getTemplateName().str();
      step.origin = kernel.getOrigin().str();
      for (NamedAttribute constant : kernel.getConstants()) {
        auto value = toConstant(constant.getValue());
        if (!value.ok())
          return absl::InvalidArgumentError(
              absl::StrCat(describe(&op), ": ", value.status().message()));
        step.constants[constant.getName().str()] = *value;
      }
      for (Value arg : kernel.getArgs()) {
        auto it = operands.find(arg);
        if (it == operands.end())
          return absl::InvalidArgumentError(
              absl::StrCat(describe(&op), " reads a value with no buffer"));
        step.inputs.push_back(it->second);
      }
      auto offsets = kernel->getAttrOfType<DenseI64ArrayAttr>("treni.offsets");
      if (kernel.getNumResults() > 0 &&
          (!offsets || offsets.size() != (int64_t)kernel.getNumResults()))
        return absl::FailedPreconditionError(absl::StrCat(
            describe(&op), " has no arena offsets: run "
                           "treni-plan-buffers before building a plan"));
      for (auto [i, result] : llvm::enumerate(kernel.getResults())) {
        int64_t index = addBuffer(f, result, offsets[i]);
        step.outputs.push_back(index);
        operands[result] = {PlanOperand::Kind::Buffer, index};
      }
      f.steps.push_back(std::move(step));
    }
    return f;
  }

  ModuleOp module;
  Plan plan;
  std::map<std::string, int64_t> weightIndices;
};
} // namespace

absl::StatusOr<Plan> buildPlan(ModuleOp module) {
  return Builder(module).build();
}

} // namespace treni
