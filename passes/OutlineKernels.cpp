//===- OutlineKernels.cpp - compute ops -> treni.kernel ------------------===//
//
// Every compute op becomes one `treni.kernel` carrying the template name and
// the constants codegen specialises it with. The mapping lives here, in one
// table, so the CPU executor, codegen and the plan all read the same names.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

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

/// Template name and constants of one op, or failure if it has no kernel.
struct KernelDesc {
  StringRef templateName;
  SmallVector<NamedAttribute> constants;
};

FailureOr<KernelDesc> describe(Operation *op) {
  Builder b(op->getContext());
  auto i64 = [&](StringRef name, int64_t value) {
    return b.getNamedAttr(name, b.getI64IntegerAttr(value));
  };
  auto f64 = [&](StringRef name, double value) {
    return b.getNamedAttr(name, b.getF64FloatAttr(value));
  };
  return TypeSwitch<Operation *, FailureOr<KernelDesc>>(op)
      .Case([&](EmbeddingOp e) {
        auto table = cast<RankedTensorType>(e.getTable().getType());
        return KernelDesc{"embedding", {i64("vocab", table.getDimSize(0)),
                                        i64("dim", table.getDimSize(1))}};
      })
      .Case([&](RmsNormOp n) {
        auto group = cast<RankedTensorType>(n.getWeight().getType());
        return KernelDesc{"rms_norm",
                          {i64("dim", width(n.getInput())),
                           i64("group", group.getDimSize(0)),
                           f64("epsilon", n.getEpsilon().convertToDouble())}};
      })
      .Case([&](LinearOp l) {
        auto weight = cast<RankedTensorType>(l.getWeight().getType());
        return KernelDesc{"gemm",
                          {i64("n", weight.getDimSize(0)),
                           i64("k", weight.getDimSize(1)),
                           b.getNamedAttr("bias", b.getBoolAttr(!!l.getBias()))}};
      })
      .Case([&](RopeOp r) {
        KernelDesc desc{"rope",
                        {i64("dim", width(r.getInput())),
                         i64("head_dim", r.getHeadDim()),
                         f64("theta", r.getTheta().convertToDouble())}};
        if (r.getLlama3Factor()) {
          desc.constants.push_back(f64("llama3_factor", r.getLlama3Factor()->convertToDouble()));
          desc.constants.push_back(
              f64("llama3_low_freq_factor", r.getLlama3LowFreqFactor()->convertToDouble()));
          desc.constants.push_back(
              f64("llama3_high_freq_factor", r.getLlama3HighFreqFactor()->convertToDouble()));
          desc.constants.push_back(i64("llama3_original_max_position",
                                       *r.getLlama3OriginalMaxPosition()));
        }
        return desc;
      })
      .Case([&](CacheWriteOp c) {
        return KernelDesc{"cache_write",
                          {b.getNamedAttr("cache", c.getCacheAttr()),
                           i64("layer", c.getLayer()),
                           i64("dim", width(c.getKey()))}};
      })
      .Case([&](QkvRopeCacheOp f) {
        bool norm = !f.getNorms().empty();
        KernelDesc desc{norm ? "qkv_norm_rope_cache" : "qkv_rope_cache",
                        {b.getNamedAttr("cache", f.getCacheAttr()),
                         i64("layer", f.getLayer()),
                         i64("num_heads", f.getNumHeads()),
                         i64("num_kv_heads", f.getNumKvHeads()),
                         i64("head_dim", f.getHeadDim()),
                         f64("theta", f.getTheta().convertToDouble())}};
        if (norm)
          desc.constants.push_back(
              f64("epsilon", f.getEpsilon()->convertToDouble()));
        if (f.getLlama3Factor()) {
          desc.constants.push_back(f64("llama3_factor", f.getLlama3Factor()->convertToDouble()));
          desc.constants.push_back(
              f64("llama3_low_freq_factor", f.getLlama3LowFreqFactor()->convertToDouble()));
          desc.constants.push_back(
              f64("llama3_high_freq_factor", f.getLlama3HighFreqFactor()->convertToDouble()));
          desc.constants.push_back(i64("llama3_original_max_position",
                                       *f.getLlama3OriginalMaxPosition()));
        }
        return desc;
      })
      .Case([&](AttentionOp a) {
        return KernelDesc{"attention",
                          {b.getNamedAttr("cache", a.getCacheAttr()),
                           i64("layer", a.getLayer()),
                           i64("num_heads", a.getNumHeads()),
                           i64("num_kv_heads", a.getNumKvHeads()),
                           i64("head_dim", a.getHeadDim()),
                           f64("scale", a.getScale().convertToDouble())}};
      })
      .Case([&](SiluOp s) {
        return KernelDesc{"silu", {i64("dim", width(s.getInput()))}};
      })
      .Case([&](SiluMulOp s) {
        return KernelDesc{"silu_mul", {i64("dim", width(s.getResult()))}};
      })
      .Case([&](MulOp m) {
        return KernelDesc{"mul", {i64("dim", width(m.getLhs()))}};
      })
      .Case([&](AddOp a) {
        return KernelDesc{"add", {i64("dim", width(a.getLhs()))}};
      })
      .Case([&](ResidualNormOp r) {
        return KernelDesc{"residual_norm",
                          {i64("dim", width(r.getResidual())),
                           f64("epsilon", r.getEpsilon().convertToDouble())}};
      })
      .Case([&](TakeLastOp t) {
        return KernelDesc{"take_last", {i64("dim", width(t.getInput()))}};
      })
      .Default([](Operation *) { return failure(); });
}

/// treni.attention_seq1 is two launches: "attention_seq1_partial" writes,
/// per (query head, split), the slice's max score, sum of exponentials and
/// unnormalised output (head_dim + 2 floats) to an f32 tensor the buffer plan
/// sizes like any other; "attention_seq1_reduce" combines the splits.
void outlineSeq1Attention(AttentionSeq1Op op) {
  OpBuilder b(op);
  auto i64 = [&](StringRef name, int64_t value) {
    return b.getNamedAttr(name, b.getI64IntegerAttr(value));
  };
  int64_t heads = op.getNumHeads(), headDim = op.getHeadDim(),
          splits = op.getNumSplits();
  SmallVector<NamedAttribute> partialConstants = {
      b.getNamedAttr("cache", op.getCacheAttr()),
      i64("head_dim", headDim),
      i64("layer", op.getLayer()),
      i64("num_heads", heads),
      i64("num_kv_heads", op.getNumKvHeads()),
      i64("num_splits", splits),
      b.getNamedAttr("scale",
                     b.getF64FloatAttr(op.getScale().convertToDouble()))};
  auto partialType =
      RankedTensorType::get({heads * splits * (headDim + 2)}, b.getF32Type());
  StringRef origin = op->getName().getStringRef();
  auto partial = KernelOp::create(
      b, op.getLoc(), TypeRange{partialType}, "attention_seq1_partial",
      ValueRange{op.getQuery(), op.getPositions()},
      b.getDictionaryAttr(partialConstants), origin);
  SmallVector<NamedAttribute> reduceConstants = {i64("head_dim", headDim),
                                                 i64("num_heads", heads),
                                                 i64("num_splits", splits)};
  auto reduce = KernelOp::create(
      b, op.getLoc(), TypeRange{op.getResult().getType()},
      "attention_seq1_reduce", ValueRange{partial.getResult(0)},
      b.getDictionaryAttr(reduceConstants), origin);
  op.getResult().replaceAllUsesWith(reduce.getResult(0));
  op.erase();
}

/// treni.matvec is the "gemv" template, whose ABI has a slot for every
/// optional operand (x, w, bias, norm, residual): an absent one is passed
/// the weight again and never read (its flag constant is false).
void outlineMatvec(MatvecOp op) {
  OpBuilder b(op);
  auto weight = cast<RankedTensorType>(op.getWeight().getType());
  auto flag = [&](StringRef name, bool value) {
    return b.getNamedAttr(name, b.getBoolAttr(value));
  };
  SmallVector<NamedAttribute> constants = {
      flag("bias", !!op.getBias()),
      flag("gated", op.getGated()),
      b.getNamedAttr("k", b.getI64IntegerAttr(weight.getDimSize(1))),
      b.getNamedAttr("n", b.getI64IntegerAttr(weight.getDimSize(0))),
      flag("norm", !!op.getNormWeight()),
      flag("residual", !!op.getResidual())};
  if (op.getEpsilon())
    constants.push_back(b.getNamedAttr("epsilon", op.getEpsilonAttr()));
  llvm::sort(constants, [](const NamedAttribute &x, const NamedAttribute &y) {
    return x.getName().strref() < y.getName().strref();
  });
  Value w = op.getWeight();
  auto kernel = KernelOp::create(
      b, op.getLoc(), TypeRange{op.getResult().getType()}, "gemv",
      ValueRange{op.getInput(), w, op.getBias() ? op.getBias() : w,
                 op.getNormWeight() ? op.getNormWeight() : w,
                 op.getResidual() ? op.getResidual() : w},
      b.getDictionaryAttr(constants), op->getName().getStringRef());
  op.getResult().replaceAllUsesWith(kernel.getResult(0));
  op.erase();
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
        outlineSeq1Attention(seq1);
        continue;
      }
      if (auto matvec = dyn_cast<MatvecOp>(op)) {
        outlineMatvec(matvec);
        continue;
      }
      FailureOr<KernelDesc> desc = describe(op);
      if (failed(desc)) {
        op->emitOpError("has no kernel template");
        return signalPassFailure();
      }
      OpBuilder builder(op);
      llvm::sort(desc->constants, [](const NamedAttribute &a,
                                     const NamedAttribute &b) {
        return a.getName().strref() < b.getName().strref();
      });
      auto kernel = KernelOp::create(
          builder, op->getLoc(), op->getResultTypes(), desc->templateName,
          op->getOperands(), builder.getDictionaryAttr(desc->constants),
          op->getName().getStringRef());
      op->replaceAllUsesWith(kernel.getResults());
      op->erase();
    }
  }
};
} // namespace
} // namespace treni
