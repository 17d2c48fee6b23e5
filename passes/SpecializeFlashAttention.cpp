//===- SpecializeFlashAttention.cpp - prefill attention -> attention_flash ===//
//
// A treni.attention whose query has more than one row (dynamic, or static
// and > 1), a 16-bit element type and a supported head dim, in a function
// marked treni.one_sequence, becomes treni.attention_flash; see Passes.td for
// what the kernel does differently. Runs after
// treni-specialize-seq1-attention, which takes the one-row ones.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/IR/Builders.h"

namespace treni {
#define GEN_PASS_DEF_SPECIALIZEFLASHATTENTIONPASS
#include "passes/Passes.h.inc"

namespace {
using namespace mlir;

bool flashCandidate(AttentionOp attention) {
  auto query = cast<RankedTensorType>(attention.getQuery().getType());
  // A block of the kernel reads one run of cache rows (keys 0..its largest
  // position) for all its query rows: that holds only when they are one
  // sequence.
  return inOneSequenceFunction(attention) && query.getDimSize(0) != 1 &&
         AttentionFlashOp::supportsElementType(query.getElementType()) &&
         AttentionFlashOp::supportsHeadDim(attention.getHeadDim());
}

struct SpecializeFlashAttentionPass
    : public impl::SpecializeFlashAttentionPassBase<
          SpecializeFlashAttentionPass> {
  using Base::Base;

  void runOnOperation() override {
    SmallVector<AttentionOp> candidates;
    getOperation().walk([&](AttentionOp attention) {
      if (flashCandidate(attention))
        candidates.push_back(attention);
    });
    for (AttentionOp attention : candidates) {
      OpBuilder builder(attention);
      auto flash = AttentionFlashOp::create(
          builder, attention.getLoc(), attention.getResult().getType(),
          attention.getQuery(), attention.getPositions(),
          attention.getCacheAttr(), attention.getLayerAttr(),
          attention.getNumHeadsAttr(), attention.getNumKvHeadsAttr(),
          attention.getHeadDimAttr(), attention.getScaleAttr());
      attention.getResult().replaceAllUsesWith(flash.getResult());
      attention.erase();
    }
  }
};
} // namespace
} // namespace treni
