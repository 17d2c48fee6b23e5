//===- SpecializeSeq1Attention.cpp - decode attention -> attention_seq1 --===//
//
// A treni.attention whose query has exactly one static row becomes
// treni.attention_seq1 with the pass's `num-splits`. Outlining turns it into
// two kernels (partials, then their combination); see Passes.td for why.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/IR/Builders.h"

namespace treni {
#define GEN_PASS_DEF_SPECIALIZESEQ1ATTENTIONPASS
#include "passes/Passes.h.inc"

namespace {
using namespace mlir;

struct SpecializeSeq1AttentionPass
    : public impl::SpecializeSeq1AttentionPassBase<
          SpecializeSeq1AttentionPass> {
  using Base::Base;

  void runOnOperation() override {
    if (numSplits <= 0) {
      getOperation().emitError()
          << "treni-specialize-seq1-attention: num-splits must be positive, "
             "got "
          << int64_t(numSplits);
      return signalPassFailure();
    }
    SmallVector<AttentionOp> candidates;
    getOperation().walk([&](AttentionOp attention) {
      if (cast<RankedTensorType>(attention.getQuery().getType())
              .getDimSize(0) == 1)
        candidates.push_back(attention);
    });
    for (AttentionOp attention : candidates) {
      OpBuilder builder(attention);
      auto seq1 = AttentionSeq1Op::create(
          builder, attention.getLoc(), attention.getResult().getType(),
          attention.getQuery(), attention.getPositions(),
          attention.getCacheAttr(), attention.getLayerAttr(),
          attention.getNumHeadsAttr(), attention.getNumKvHeadsAttr(),
          attention.getHeadDimAttr(), attention.getScaleAttr(),
          builder.getI64IntegerAttr(numSplits));
      attention.getResult().replaceAllUsesWith(seq1.getResult());
      attention.erase();
    }
  }
};
} // namespace
} // namespace treni
