//===- SpecializeSeq1Attention.cpp - decode attention -> attention_seq1 --===//
//
// A treni.attention whose query has exactly one static row (decode) becomes
// treni.attention_seq1 with the pass's `num-splits`; one in a function whose
// rows may be several sequences (@step: no treni.one_sequence) becomes one
// with `rows-num-splits`. Outlining turns it into two kernels (partials, then
// their combination); see Passes.td for why.
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
    for (auto [name, value] :
         {std::pair{"num-splits", int64_t(numSplits)},
          std::pair{"rows-num-splits", int64_t(rowsNumSplits)}})
      if (value <= 0) {
        getOperation().emitError()
            << "treni-specialize-seq1-attention: " << name
            << " must be positive, got " << value;
        return signalPassFailure();
      }
    SmallVector<std::pair<AttentionOp, int64_t>> candidates;
    getOperation().walk([&](AttentionOp attention) {
      if (cast<RankedTensorType>(attention.getQuery().getType())
              .getDimSize(0) == 1)
        candidates.push_back({attention, numSplits});
      else if (!inOneSequenceFunction(attention))
        candidates.push_back({attention, rowsNumSplits});
    });
    for (auto [attention, splits] : candidates) {
      OpBuilder builder(attention);
      auto seq1 = AttentionSeq1Op::create(
          builder, attention.getLoc(), attention.getResult().getType(),
          attention.getQuery(), attention.getPositions(),
          attention.getCacheAttr(), attention.getLayerAttr(),
          attention.getNumHeadsAttr(), attention.getNumKvHeadsAttr(),
          attention.getHeadDimAttr(), attention.getScaleAttr(),
          builder.getI64IntegerAttr(splits));
      attention.getResult().replaceAllUsesWith(seq1.getResult());
      attention.erase();
    }
  }
};
} // namespace
} // namespace treni
