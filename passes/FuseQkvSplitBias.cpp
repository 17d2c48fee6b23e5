//===- FuseQkvSplitBias.cpp - Q/K/V GEMMs + rope + cache write -> 2 ops --===//
//
// Per layer, the three projections become one GEMM over the concatenated
// weight (and bias), and the head split, the optional q/k norm, RoPE of q and
// k and the K/V cache write become one treni.qkv_rope_cache that returns q.
// Left alone: q/k norms with `unit_offset` and a rope whose rotary_dim is
// less than head_dim (Qwen3.5), which qkv_rope_cache does not compute.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace treni {
#define GEN_PASS_DEF_FUSEQKVSPLITBIASPASS
#include "passes/Passes.h.inc"

namespace {
using namespace mlir;

bool isWeight(Value value) {
  return value &&
         (value.getDefiningOp<WeightOp>() || value.getDefiningOp<ConcatOp>());
}

/// The projection feeding `value`, looking through an optional per-head
/// rms_norm; `norm` receives it.
LinearOp projectionOf(Value value, RmsNormOp &norm) {
  norm = value.getDefiningOp<RmsNormOp>();
  if (norm)
    value = norm.getInput();
  return value.getDefiningOp<LinearOp>();
}

bool sameRope(RopeOp a, RopeOp b) {
  return a.getHeadDim() == b.getHeadDim() &&
         a.getRotaryWidth() == b.getRotaryWidth() &&
         a.getTheta() == b.getTheta() &&
         a.getLlama3Factor() == b.getLlama3Factor() &&
         a.getLlama3LowFreqFactor() == b.getLlama3LowFreqFactor() &&
         a.getLlama3HighFreqFactor() == b.getLlama3HighFreqFactor() &&
         a.getLlama3OriginalMaxPosition() == b.getLlama3OriginalMaxPosition();
}

struct FuseQkv : OpRewritePattern<AttentionOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(AttentionOp attention,
                                PatternRewriter &rewriter) const override {
    auto ropeQ = attention.getQuery().getDefiningOp<RopeOp>();
    if (!ropeQ)
      return rewriter.notifyMatchFailure(attention, "query is not a rope");
    RmsNormOp normQ, normK;
    LinearOp q = projectionOf(ropeQ.getInput(), normQ);
    if (!q)
      return rewriter.notifyMatchFailure(attention, "no q projection");

    // The cache write of this layer: the last one before the attention.
    CacheWriteOp write;
    for (Operation *op = attention->getPrevNode(); op && !write;
         op = op->getPrevNode())
      if (auto w = dyn_cast<CacheWriteOp>(op))
        if (w.getCacheAttr() == attention.getCacheAttr() &&
            w.getLayer() == attention.getLayer())
          write = w;
    if (!write)
      return rewriter.notifyMatchFailure(attention, "no cache write");
    auto ropeK = write.getKey().getDefiningOp<RopeOp>();
    LinearOp k = ropeK ? projectionOf(ropeK.getInput(), normK) : LinearOp();
    LinearOp v = write.getValue().getDefiningOp<LinearOp>();
    if (!ropeK || !k || !v)
      return rewriter.notifyMatchFailure(attention,
                                         "no k rope / cache write pattern");
    if (q == k || k == v || q == v)
      return rewriter.notifyMatchFailure(attention, "shared projections");
    if (q.getInput() != k.getInput() || q.getInput() != v.getInput())
      return rewriter.notifyMatchFailure(attention, "different inputs");
    bool biased = !!q.getBias();
    if (!!k.getBias() != biased || !!v.getBias() != biased)
      return rewriter.notifyMatchFailure(attention, "only some have biases");
    for (LinearOp l : {q, k, v})
      if (!isWeight(l.getWeight()) || (biased && !isWeight(l.getBias())))
        return rewriter.notifyMatchFailure(attention, "not checkpoint weights");
    if (!!normQ != !!normK)
      return rewriter.notifyMatchFailure(attention, "only one of q/k normed");
    if ((normQ && normQ.getUnitOffset()) || (normK && normK.getUnitOffset()))
      return rewriter.notifyMatchFailure(attention, "unit_offset q/k norm");
    if (!sameRope(ropeQ, ropeK) ||
        ropeQ.getPositions() != write.getPositions() ||
        ropeK.getPositions() != write.getPositions() ||
        (int64_t)ropeQ.getHeadDim() != (int64_t)attention.getHeadDim())
      return rewriter.notifyMatchFailure(attention, "rope attributes differ");
    if (ropeQ.getRotaryWidth() != (int64_t)ropeQ.getHeadDim())
      return rewriter.notifyMatchFailure(attention, "partial rotary_dim");

    // Single users all along the chain.
    auto onlyUser = [](Value value, Operation *user) {
      return value.hasOneUse() && *value.getUsers().begin() == user;
    };
    Operation *qUser = normQ ? normQ.getOperation() : ropeQ.getOperation();
    Operation *kUser = normK ? normK.getOperation() : ropeK.getOperation();
    if (!onlyUser(q.getResult(), qUser) || !onlyUser(k.getResult(), kUser) ||
        !onlyUser(v.getResult(), write) ||
        !onlyUser(ropeQ.getResult(), attention) ||
        !onlyUser(ropeK.getResult(), write) ||
        (normQ && !onlyUser(normQ.getResult(), ropeQ)) ||
        (normK && !onlyUser(normK.getResult(), ropeK)))
      return rewriter.notifyMatchFailure(attention, "extra users");

    int64_t headDim = attention.getHeadDim();
    int64_t heads = attention.getNumHeads(),
            kvHeads = attention.getNumKvHeads();
    auto typeOf = [](Value value) {
      return cast<RankedTensorType>(value.getType());
    };
    Type element = typeOf(q.getResult()).getElementType();
    Type weightElement = typeOf(q.getWeight()).getElementType();
    if (typeOf(q.getResult()).getDimSize(1) != heads * headDim ||
        typeOf(k.getResult()).getDimSize(1) != kvHeads * headDim ||
        typeOf(v.getResult()).getDimSize(1) != kvHeads * headDim ||
        typeOf(k.getResult()).getElementType() != element ||
        typeOf(v.getResult()).getElementType() != element ||
        typeOf(k.getWeight()).getElementType() != weightElement ||
        typeOf(v.getWeight()).getElementType() != weightElement ||
        (biased && (typeOf(q.getBias()).getElementType() !=
                        typeOf(k.getBias()).getElementType() ||
                    typeOf(q.getBias()).getElementType() !=
                        typeOf(v.getBias()).getElementType())) ||
        typeOf(ropeQ.getResult()).getElementType() != element ||
        typeOf(ropeK.getResult()).getElementType() != element ||
        typeOf(write.getValue()).getElementType() != element)
      return rewriter.notifyMatchFailure(attention, "shapes or types differ");
    if (normQ && (normQ.getEpsilon() != normK.getEpsilon() ||
                  typeOf(normQ.getWeight()).getDimSize(0) != headDim ||
                  typeOf(normK.getWeight()).getDimSize(0) != headDim ||
                  typeOf(normQ.getResult()).getElementType() != element ||
                  typeOf(normK.getResult()).getElementType() != element))
      return rewriter.notifyMatchFailure(attention, "q/k norms differ");

    // The fused ops take the place of the cache write, so every value they
    // read must already exist there.
    SmallVector<Value> reads = {q.getInput(), q.getWeight(), k.getWeight(),
                                v.getWeight(), write.getPositions()};
    if (biased)
      reads.append({q.getBias(), k.getBias(), v.getBias()});
    if (normQ)
      reads.append({normQ.getWeight(), normK.getWeight()});
    for (Value value : reads) {
      Operation *def = value.getDefiningOp();
      if (def && (def->getBlock() != write->getBlock() ||
                  !def->isBeforeInBlock(write)))
        return rewriter.notifyMatchFailure(attention,
                                           "an operand is defined too late");
      if (!def && cast<BlockArgument>(value).getOwner() != write->getBlock())
        return rewriter.notifyMatchFailure(attention, "operand out of block");
    }

    Location loc = attention.getLoc();
    rewriter.setInsertionPoint(write);
    auto concat = [&](Value a, Value b, Value c) -> Value {
      auto ta = typeOf(a);
      SmallVector<int64_t> shape(ta.getShape());
      shape[0] =
          ta.getDimSize(0) + typeOf(b).getDimSize(0) + typeOf(c).getDimSize(0);
      return ConcatOp::create(rewriter, loc,
                              RankedTensorType::get(shape, ta.getElementType()),
                              ValueRange{a, b, c});
    };
    Value weight = concat(q.getWeight(), k.getWeight(), v.getWeight());
    Value bias =
        biased ? concat(q.getBias(), k.getBias(), v.getBias()) : Value();
    auto fusedType = RankedTensorType::get(
        {typeOf(q.getResult()).getDimSize(0), (heads + 2 * kvHeads) * headDim},
        element);
    Value qkv =
        LinearOp::create(rewriter, loc, fusedType, q.getInput(), weight, bias);
    SmallVector<Value> norms;
    if (normQ)
      norms = {normQ.getWeight(), normK.getWeight()};
    auto fused = QkvRopeCacheOp::create(
        rewriter, loc, ropeQ.getType(), qkv, write.getPositions(), norms,
        attention.getCacheAttr(), attention.getLayerAttr(),
        attention.getNumHeadsAttr(), attention.getNumKvHeadsAttr(),
        attention.getHeadDimAttr(), ropeQ.getThetaAttr(),
        ropeQ.getLlama3FactorAttr(), ropeQ.getLlama3LowFreqFactorAttr(),
        ropeQ.getLlama3HighFreqFactorAttr(),
        ropeQ.getLlama3OriginalMaxPositionAttr(),
        normQ ? normQ.getEpsilonAttr() : FloatAttr());
    rewriter.modifyOpInPlace(attention, [&] {
      attention.getQueryMutable().assign(fused.getResult());
    });
    rewriter.eraseOp(write);
    rewriter.eraseOp(ropeQ);
    rewriter.eraseOp(ropeK);
    if (normQ) {
      rewriter.eraseOp(normQ);
      rewriter.eraseOp(normK);
    }
    rewriter.eraseOp(q);
    rewriter.eraseOp(k);
    rewriter.eraseOp(v);
    return success();
  }
};

struct FuseQkvSplitBiasPass
    : public impl::FuseQkvSplitBiasPassBase<FuseQkvSplitBiasPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseQkv>(&getContext());
    // A pattern that does not apply is not an error: the pass only fuses.
    (void)applyPatternsGreedily(getOperation(), std::move(patterns));
  }
};
} // namespace
} // namespace treni
