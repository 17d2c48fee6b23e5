//===- OutlineKernels.cpp - compute ops -> treni.kernel ------------------===//
//
// Every compute op becomes one `treni.kernel` carrying the template name and
// the constants codegen specialises it with. Which constants a template takes
// is its entry in codegen/KernelRegistry.h: the ones it sources from an
// attribute are copied here from the op's attribute of the same name, the
// derived ones (widths, vocabulary, which optional operands exist) are
// computed below, and the result is checked against the entry.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "codegen/KernelRegistry.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/TypeSwitch.h"

namespace treni {
#define GEN_PASS_DEF_OUTLINEKERNELSPASS
#include "passes/Passes.h.inc"

namespace {
using namespace mlir;

int64_t width(Value value) {
  return cast<RankedTensorType>(value.getType()).getDimSize(1);
}

/// `value` as a kernel constant of `kind` (an i64, f64, bool or the symbol
/// itself; a unit attribute is true), or null when it is not one.
Attribute asConstant(Builder &b, Attribute value, ConstantKind kind) {
  switch (kind) {
  case ConstantKind::Int:
    if (auto i = dyn_cast<IntegerAttr>(value); i && !isa<BoolAttr>(value))
      return b.getI64IntegerAttr(i.getInt());
    return {};
  case ConstantKind::Float:
    if (auto f = dyn_cast<FloatAttr>(value))
      return b.getF64FloatAttr(f.getValueAsDouble());
    return {};
  case ConstantKind::Bool:
    if (isa<UnitAttr>(value))
      return b.getBoolAttr(true);
    return isa<BoolAttr>(value) ? value : Attribute();
  case ConstantKind::Symbol:
    return isa<FlatSymbolRefAttr>(value) ? value : Attribute();
  }
  return {};
}

/// The constants of a `templateName` kernel outlined from `op`: `derived`,
/// plus every constant the registry sources from an attribute, copied from
/// `op`'s attribute of that name (an absent bool is false, an absent optional
/// one is left out, as rms_norm's unit_offset: the launch rule supplies its
/// default). Emits an error on `op` when they do not match the registry
/// entry.
FailureOr<DictionaryAttr> kernelConstants(Operation *op, StringRef templateName,
                                          ArrayRef<NamedAttribute> derived) {
  const KernelTemplate *kernel = findKernelTemplate(templateName);
  if (!kernel)
    return op->emitOpError() << "has no kernel template '" << templateName
                             << "' in codegen/KernelRegistry.cpp";
  Builder b(op->getContext());
  SmallVector<NamedAttribute> constants;
  for (NamedAttribute attr : derived) {
    const KernelConstant *constant = kernel->constant(attr.getName().strref());
    Attribute value = constant && constant->source == ConstantSource::Derived
                          ? asConstant(b, attr.getValue(), constant->kind)
                          : Attribute();
    if (!value)
      return op->emitOpError()
             << "derives constant '" << attr.getName().strref()
             << "', which kernel template '" << templateName
             << "' does not declare as derived of that kind";
    constants.push_back(b.getNamedAttr(attr.getName(), value));
  }
  for (const KernelConstant &constant : kernel->constants) {
    if (constant.source != ConstantSource::Attribute)
      continue;
    Attribute value = op->getAttr(constant.key);
    if (!value && constant.kind == ConstantKind::Bool && !constant.optional)
      value = b.getBoolAttr(false);
    if (!value && constant.optional)
      continue;
    Attribute converted =
        value ? asConstant(b, value, constant.kind) : Attribute();
    if (!converted)
      return op->emitOpError()
             << "needs attribute '" << constant.key << "' of the kind "
             << "kernel template '" << templateName << "' declares";
    constants.push_back(b.getNamedAttr(constant.key, converted));
  }
  for (const KernelConstant &constant : kernel->constants)
    if (!constant.optional &&
        llvm::none_of(constants, [&](const NamedAttribute &attr) {
          return attr.getName().strref() == constant.key;
        }))
      return op->emitOpError()
             << "derives no constant '" << constant.key
             << "' for kernel template '" << templateName << "'";
  return b.getDictionaryAttr(constants);
}

/// Template name and the constants derived from operand shapes or presence
/// of one op, or failure if it has no kernel.
struct KernelDesc {
  StringRef templateName;
  SmallVector<NamedAttribute> derived;
};

FailureOr<KernelDesc> describe(Operation *op) {
  Builder b(op->getContext());
  auto i64 = [&](StringRef name, int64_t value) {
    return b.getNamedAttr(name, b.getI64IntegerAttr(value));
  };
  auto dim = [&](StringRef templateName, Value value) {
    return KernelDesc{templateName, {i64("dim", width(value))}};
  };
  return TypeSwitch<Operation *, FailureOr<KernelDesc>>(op)
      .Case([&](EmbeddingOp e) {
        auto table = cast<RankedTensorType>(e.getTable().getType());
        return KernelDesc{"embedding",
                          {i64("vocab", table.getDimSize(0)),
                           i64("dim", table.getDimSize(1))}};
      })
      .Case([&](RmsNormOp n) {
        auto group = cast<RankedTensorType>(n.getWeight().getType());
        return KernelDesc{"rms_norm",
                          {i64("dim", width(n.getInput())),
                           i64("group", group.getDimSize(0))}};
      })
      .Case([&](LinearOp l) {
        auto weight = cast<RankedTensorType>(l.getWeight().getType());
        return KernelDesc{
            "gemm",
            {i64("n", weight.getDimSize(0)), i64("k", weight.getDimSize(1)),
             b.getNamedAttr("bias", b.getBoolAttr(!!l.getBias()))}};
      })
      .Case([&](RopeOp r) { return dim("rope", r.getInput()); })
      .Case([&](CacheWriteOp c) { return dim("cache_write", c.getKey()); })
      .Case([&](QkvRopeCacheOp f) {
        return KernelDesc{f.getNorms().empty() ? "qkv_rope_cache"
                                               : "qkv_norm_rope_cache",
                          {}};
      })
      .Case([&](AttentionOp) {
        return KernelDesc{"attention", {}};
      })
      .Case([&](AttentionFlashOp) {
        return KernelDesc{"attention_flash", {}};
      })
      .Case([&](SiluOp s) { return dim("silu", s.getInput()); })
      .Case([&](SiluMulOp s) { return dim("silu_mul", s.getResult()); })
      .Case([&](MulOp m) { return dim("mul", m.getLhs()); })
      .Case([&](AddOp a) { return dim("add", a.getLhs()); })
      .Case([&](ResidualNormOp r) {
        return dim("residual_norm", r.getResidual());
      })
      .Case([&](TakeLastOp t) { return dim("take_last", t.getInput()); })
      .Default([](Operation *) { return failure(); });
}

/// treni.attention_seq1 is two launches: "attention_seq1_partial" writes,
/// per (row, query head, split), the slice's max score, sum of exponentials
/// and unnormalised output (head_dim + 2 floats) to an f32 [rows, ...] tensor
/// the buffer plan sizes like any other; "attention_seq1_reduce" combines the
/// splits. Both take every constant from the op's attributes.
LogicalResult outlineSeq1Attention(AttentionSeq1Op op) {
  OpBuilder b(op);
  FailureOr<DictionaryAttr> partialConstants =
      kernelConstants(op, "attention_seq1_partial", {});
  FailureOr<DictionaryAttr> reduceConstants =
      kernelConstants(op, "attention_seq1_reduce", {});
  if (failed(partialConstants) || failed(reduceConstants))
    return failure();
  int64_t heads = op.getNumHeads(), headDim = op.getHeadDim(),
          splits = op.getNumSplits();
  int64_t rows = cast<RankedTensorType>(op.getQuery().getType()).getDimSize(0);
  auto partialType = RankedTensorType::get(
      {rows, heads * splits * (headDim + 2)}, b.getF32Type());
  StringRef origin = op->getName().getStringRef();
  auto partial = KernelOp::create(
      b, op.getLoc(), TypeRange{partialType}, "attention_seq1_partial",
      ValueRange{op.getQuery(), op.getPositions()}, *partialConstants, origin);
  auto reduce = KernelOp::create(
      b, op.getLoc(), TypeRange{op.getResult().getType()},
      "attention_seq1_reduce", ValueRange{partial.getResult(0)},
      *reduceConstants, origin);
  op.getResult().replaceAllUsesWith(reduce.getResult(0));
  op.erase();
  return success();
}

/// treni.matvec is the "gemv" template, whose ABI has a slot for every
/// optional operand (x, w, bias, norm, residual): an absent one is passed
/// the weight again and never read (its flag constant is false).
LogicalResult outlineMatvec(MatvecOp op) {
  OpBuilder b(op);
  auto weight = cast<RankedTensorType>(op.getWeight().getType());
  auto flag = [&](StringRef name, bool value) {
    return b.getNamedAttr(name, b.getBoolAttr(value));
  };
  FailureOr<DictionaryAttr> constants = kernelConstants(
      op, "gemv",
      {flag("bias", !!op.getBias()),
       b.getNamedAttr("k", b.getI64IntegerAttr(weight.getDimSize(1))),
       b.getNamedAttr("n", b.getI64IntegerAttr(weight.getDimSize(0))),
       flag("norm", !!op.getNormWeight()),
       flag("residual", !!op.getResidual())});
  if (failed(constants))
    return failure();
  Value w = op.getWeight();
  auto kernel = KernelOp::create(
      b, op.getLoc(), TypeRange{op.getResult().getType()}, "gemv",
      ValueRange{op.getInput(), w, op.getBias() ? op.getBias() : w,
                 op.getNormWeight() ? op.getNormWeight() : w,
                 op.getResidual() ? op.getResidual() : w},
      *constants, op->getName().getStringRef());
  op.getResult().replaceAllUsesWith(kernel.getResult(0));
  op.erase();
  return success();
}

struct OutlineKernelsPass
    : public impl::OutlineKernelsPassBase<OutlineKernelsPass> {
  void runOnOperation() override {
    SmallVector<Operation *> ops;
    getOperation().walk([&](Operation *op) {
      if (isa_and_nonnull<TreniDialect>(op->getDialect()) &&
          !isa<WeightOp, ConcatOp, KernelOp, KvCacheOp>(op))
        ops.push_back(op);
    });
    for (Operation *op : ops) {
      if (auto seq1 = dyn_cast<AttentionSeq1Op>(op)) {
        if (failed(outlineSeq1Attention(seq1)))
          return signalPassFailure();
        continue;
      }
      if (auto matvec = dyn_cast<MatvecOp>(op)) {
        if (failed(outlineMatvec(matvec)))
          return signalPassFailure();
        continue;
      }
      FailureOr<KernelDesc> desc = describe(op);
      if (failed(desc)) {
        op->emitOpError("has no kernel template");
        return signalPassFailure();
      }
      FailureOr<DictionaryAttr> constants =
          kernelConstants(op, desc->templateName, desc->derived);
      if (failed(constants))
        return signalPassFailure();
      OpBuilder builder(op);
      auto kernel = KernelOp::create(
          builder, op->getLoc(), op->getResultTypes(), desc->templateName,
          op->getOperands(), *constants, op->getName().getStringRef());
      op->replaceAllUsesWith(kernel.getResults());
      op->erase();
    }
  }
};
} // namespace
} // namespace treni
