//===- FuseFfnAct.cpp - gate/up GEMM + silu*mul -> one GEMM + silu_mul ---===//
//
// `mul(silu(linear(x, wg)), linear(x, wu))` becomes
// `silu_mul(linear(x, concat(wg, wu)))`: one GEMM over the concatenated
// weight and one elementwise kernel that writes the activation once.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace treni {
#define GEN_PASS_DEF_FUSEFFNACTPASS
#include "passes/Passes.h.inc"

namespace {
using namespace mlir;

struct FuseGateUp : OpRewritePattern<MulOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(MulOp mul,
                                PatternRewriter &rewriter) const override {
    auto silu = mul.getLhs().getDefiningOp<SiluOp>();
    if (!silu)
      return rewriter.notifyMatchFailure(mul, "lhs is not a silu");
    auto gate = silu.getInput().getDefiningOp<LinearOp>();
    auto up = mul.getRhs().getDefiningOp<LinearOp>();
    if (!gate || !up || gate == up)
      return rewriter.notifyMatchFailure(mul, "operands are not projections");
    if (gate.getBias() || up.getBias())
      return rewriter.notifyMatchFailure(mul, "a projection has a bias");
    if (!silu->hasOneUse() || !gate->hasOneUse() || !up->hasOneUse())
      return rewriter.notifyMatchFailure(mul,
                                         "an intermediate has other users");
    if (gate.getInput() != up.getInput())
      return rewriter.notifyMatchFailure(mul,
                                         "gate and up read different inputs");
    auto gateWeight = cast<RankedTensorType>(gate.getWeight().getType());
    auto upWeight = cast<RankedTensorType>(up.getWeight().getType());
    if (gateWeight != upWeight)
      return rewriter.notifyMatchFailure(mul, "the weights differ in type");
    if (!gate.getWeight().getDefiningOp<WeightOp>() &&
        !gate.getWeight().getDefiningOp<ConcatOp>())
      return rewriter.notifyMatchFailure(mul, "gate weight is not a weight");
    if (!up.getWeight().getDefiningOp<WeightOp>() &&
        !up.getWeight().getDefiningOp<ConcatOp>())
      return rewriter.notifyMatchFailure(mul, "up weight is not a weight");
    auto gateType = cast<RankedTensorType>(gate.getType());
    auto resultType = cast<RankedTensorType>(mul.getType());
    if (cast<RankedTensorType>(up.getType()) != gateType ||
        gateType != resultType)
      return rewriter.notifyMatchFailure(mul, "projection types differ");

    // Both projections must be defined before the fused GEMM: it replaces
    // the later of the two, and the concatenation sits right before it.
    Operation *later = gate->isBeforeInBlock(up) ? up : gate;
    rewriter.setInsertionPoint(later);
    int64_t features = gateWeight.getDimSize(0);
    auto concatType = RankedTensorType::get(
        {2 * features, gateWeight.getDimSize(1)}, gateWeight.getElementType());
    Value weight =
        ConcatOp::create(rewriter, mul.getLoc(), concatType,
                         ValueRange{gate.getWeight(), up.getWeight()});
    auto fusedType = RankedTensorType::get(
        {gateType.getDimSize(0), 2 * features}, gateType.getElementType());
    Value fused = LinearOp::create(rewriter, mul.getLoc(), fusedType,
                                   gate.getInput(), weight, Value());
    rewriter.setInsertionPoint(mul);
    rewriter.replaceOpWithNewOp<SiluMulOp>(mul, resultType, fused);
    rewriter.eraseOp(silu);
    rewriter.eraseOp(gate);
    rewriter.eraseOp(up);
    return success();
  }
};

struct FuseFfnActPass : public impl::FuseFfnActPassBase<FuseFfnActPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseGateUp>(&getContext());
    // A pattern that does not apply is not an error: the pass only fuses.
    (void)applyPatternsGreedily(getOperation(), std::move(patterns));
  }
};
} // namespace
} // namespace treni
