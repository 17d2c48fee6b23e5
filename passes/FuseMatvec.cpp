//===- FuseMatvec.cpp - one-row linear -> matvec with its neighbours ----===//
//
// Four rewrites, in this order (see Passes.td for why):
//  1. a treni.linear with one static row becomes treni.matvec;
//  2. a treni.residual_norm between two matvecs is split back into
//     treni.add + treni.rms_norm, so that both halves can fold;
//  3. a treni.silu_mul that is a matvec's only user folds into it (gated);
//  4. a treni.add that is a matvec's only user folds into it (residual);
//  5. a full-row treni.rms_norm that only a matvec reads folds into it (norm);
//     not a `unit_offset` norm (Qwen3.5), which the gemv prologue does not
//     compute.
// Each fold keeps the rounding the unfused ops had: the value between two
// ops was stored in the weight's element type, and so is it rounded inside
// the matvec, which the checks on element types below guarantee.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/IR/Builders.h"

namespace treni {
#define GEN_PASS_DEF_FUSEMATVECPASS
#include "passes/Passes.h.inc"

namespace {
using namespace mlir;

RankedTensorType tensorOf(Value value) {
  return cast<RankedTensorType>(value.getType());
}

Type elementOf(Value value) { return tensorOf(value).getElementType(); }

/// Everything a matvec is built from; folds edit a copy and rebuild.
struct MatvecParts {
  Type type;
  Value input, weight, bias, norm, residual;
  bool gated = false;
  FloatAttr epsilon;

  static MatvecParts of(MatvecOp op) {
    return {op.getResult().getType(),
            op.getInput(),
            op.getWeight(),
            op.getBias(),
            op.getNormWeight(),
            op.getResidual(),
            op.getGated(),
            op.getEpsilonAttr()};
  }

  /// The new op at the builder's insertion point.
  MatvecOp build(OpBuilder &b, Location loc) const {
    return MatvecOp::create(b, loc, type, input, weight, bias, norm, residual,
                            gated ? b.getUnitAttr() : UnitAttr(), epsilon);
  }
};

/// A one-row linear the matvec kernel can run: it streams each weight row in
/// 16-byte chunks, and reads the input in the weight's element type.
bool isMatvecLinear(LinearOp linear) {
  auto input = tensorOf(linear.getInput());
  auto weight = tensorOf(linear.getWeight());
  if (input.getDimSize(0) != 1 || !weight.hasStaticShape() ||
      input.getElementType() != weight.getElementType())
    return false;
  int64_t rowBytes = weight.getDimSize(1) *
                     weight.getElementType().getIntOrFloatBitWidth() / 8;
  return rowBytes % 16 == 0;
}

/// The single user of `op`'s result if it is an OpT, else null.
template <typename OpT> OpT soleUser(Operation *op) {
  if (!op->hasOneUse())
    return nullptr;
  return dyn_cast<OpT>(*op->getUsers().begin());
}

/// Step 2: residual_norm(r, matvec) whose normed row only a matvec reads.
void splitResidualNorm(ResidualNormOp fused, int64_t maxWidth) {
  auto producer = fused.getBranch().getDefiningOp<MatvecOp>();
  if (!producer || !producer->hasOneUse() || !fused.getNormed().hasOneUse() ||
      tensorOf(fused.getNormed()).getDimSize(1) > maxWidth)
    return;
  auto consumer = dyn_cast<MatvecOp>(*fused.getNormed().getUsers().begin());
  if (!consumer || consumer.getInput() != fused.getNormed())
    return;
  OpBuilder b(fused);
  Value sum = AddOp::create(b, fused.getLoc(), fused.getSum().getType(),
                            fused.getResidual(), fused.getBranch());
  Value normed =
      RmsNormOp::create(b, fused.getLoc(), fused.getNormed().getType(), sum,
                        fused.getWeight(), fused.getEpsilonAttr());
  fused.getSum().replaceAllUsesWith(sum);
  fused.getNormed().replaceAllUsesWith(normed);
  fused.erase();
}

/// Step 3: silu_mul(matvec) -> matvec {gated}.
void foldSiluMul(MatvecOp op) {
  auto siluMul = soleUser<SiluMulOp>(op);
  if (!siluMul || op.getGated() || op.getResidual() ||
      elementOf(op.getResult()) != elementOf(op.getWeight()))
    return;
  MatvecParts parts = MatvecParts::of(op);
  parts.gated = true;
  parts.type = siluMul.getResult().getType();
  OpBuilder b(siluMul);
  siluMul.getResult().replaceAllUsesWith(parts.build(b, op.getLoc()));
  siluMul.erase();
  op.erase();
}

/// Step 4: add(r, matvec) -> matvec residual r.
void foldResidualAdd(MatvecOp op) {
  auto add = soleUser<AddOp>(op);
  if (!add || op.getGated() || op.getResidual() ||
      elementOf(op.getResult()) != elementOf(op.getWeight()))
    return;
  Value residual = add.getLhs() == op.getResult() ? add.getRhs() : add.getLhs();
  if (residual == op.getResult() ||
      residual.getType() != add.getResult().getType())
    return;
  MatvecParts parts = MatvecParts::of(op);
  parts.residual = residual;
  parts.type = add.getResult().getType();
  // At the add: the residual is defined before it, and so is everything the
  // matvec read.
  OpBuilder b(add);
  add.getResult().replaceAllUsesWith(parts.build(b, op.getLoc()));
  add.erase();
  op.erase();
}

/// Step 5: matvec(rms_norm(x, g)) -> matvec x norm g.
void foldRmsNorm(MatvecOp op, int64_t maxWidth) {
  auto norm = op.getInput().getDefiningOp<RmsNormOp>();
  if (!norm || op.getNormWeight() || !norm->hasOneUse() || norm.getUnitOffset())
    return;
  Type weightType = elementOf(op.getWeight());
  Type rowType = elementOf(norm.getInput());
  int64_t width = tensorOf(norm.getInput()).getDimSize(1);
  if (width > maxWidth || tensorOf(norm.getWeight()).getDimSize(0) != width ||
      elementOf(norm.getResult()) != weightType ||
      (rowType != weightType && !rowType.isF32()))
    return;
  MatvecParts parts = MatvecParts::of(op);
  parts.input = norm.getInput();
  parts.norm = norm.getWeight();
  parts.epsilon = norm.getEpsilonAttr();
  OpBuilder b(op);
  op.getResult().replaceAllUsesWith(parts.build(b, op.getLoc()));
  op.erase();
  norm.erase();
}

template <typename OpT> SmallVector<OpT> collect(Operation *root) {
  SmallVector<OpT> ops;
  root->walk([&](OpT op) { ops.push_back(op); });
  return ops;
}

struct FuseMatvecPass : public impl::FuseMatvecPassBase<FuseMatvecPass> {
  using Base::Base;

  void runOnOperation() override {
    Operation *root = getOperation();
    for (LinearOp linear : collect<LinearOp>(root)) {
      if (!isMatvecLinear(linear))
        continue;
      OpBuilder b(linear);
      auto matvec = MatvecOp::create(
          b, linear.getLoc(), linear.getResult().getType(), linear.getInput(),
          linear.getWeight(), linear.getBias(), Value(), Value(), UnitAttr(),
          FloatAttr());
      linear.getResult().replaceAllUsesWith(matvec.getResult());
      linear.erase();
    }
    if (foldResidual && foldNorm)
      for (ResidualNormOp fused : collect<ResidualNormOp>(root))
        splitResidualNorm(fused, foldNormMaxWidth);
    if (foldGated)
      for (MatvecOp op : collect<MatvecOp>(root))
        foldSiluMul(op);
    if (foldResidual)
      for (MatvecOp op : collect<MatvecOp>(root))
        foldResidualAdd(op);
    if (foldNorm)
      for (MatvecOp op : collect<MatvecOp>(root))
        foldRmsNorm(op, foldNormMaxWidth);
  }
};
} // namespace
} // namespace treni
