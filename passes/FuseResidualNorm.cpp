//===- FuseResidualNorm.cpp - add + rms_norm -> residual_norm ------------===//
//
// `%s = treni.add %r, %b` read by a full-row `treni.rms_norm %s, %w` becomes
// `%s, %n = treni.residual_norm %r, %b, %w`. The add's other users keep
// reading the sum; only the first qualifying norm is folded in (a second norm
// of the same sum stays a separate kernel reading %s). A `unit_offset` norm
// (Qwen3.5) is left alone: residual_norm applies the weight as is.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/Dominance.h"

namespace treni {
#define GEN_PASS_DEF_FUSERESIDUALNORMPASS
#include "passes/Passes.h.inc"

namespace {
using namespace mlir;

/// The first user of `sum` that normalises whole rows of it, or null.
RmsNormOp fullRowNorm(Value sum) {
  int64_t width = cast<RankedTensorType>(sum.getType()).getDimSize(1);
  for (Operation *user : sum.getUsers()) {
    auto norm = dyn_cast<RmsNormOp>(user);
    if (!norm || norm.getInput() != sum || norm.getUnitOffset())
      continue;
    auto weight = cast<RankedTensorType>(norm.getWeight().getType());
    if (!ShapedType::isDynamic(width) && weight.getDimSize(0) == width)
      return norm;
  }
  return nullptr;
}

struct FuseResidualNormPass
    : public impl::FuseResidualNormPassBase<FuseResidualNormPass> {
  void runOnOperation() override {
    SmallVector<AddOp> adds;
    getOperation().walk([&](AddOp add) { adds.push_back(add); });
    DominanceInfo dominance(getOperation());
    for (AddOp add : adds) {
      RmsNormOp norm = fullRowNorm(add.getResult());
      if (!norm)
        continue;
      // The fused op sits where the add was, so the norm's weight must be
      // available there; a treni.weight (no operands) can simply move up.
      Value weight = norm.getWeight();
      if (!dominance.properlyDominates(weight, add)) {
        Operation *def = weight.getDefiningOp();
        if (!def || !isa<WeightOp>(def) || def->getBlock() != add->getBlock())
          continue;
        def->moveBefore(add);
      }
      OpBuilder builder(add);
      auto fused = ResidualNormOp::create(
          builder, add.getLoc(), add.getResult().getType(),
          norm.getResult().getType(), add.getLhs(), add.getRhs(), weight,
          norm.getEpsilonAttr());
      norm.getResult().replaceAllUsesWith(fused.getNormed());
      norm.erase();
      add.getResult().replaceAllUsesWith(fused.getSum());
      add.erase();
    }
  }
};
} // namespace
} // namespace treni
