//===- PlanBuffers.cpp - static arena offsets with liveness reuse --------===//
//
// Straight-line functions only (what the builders emit): a value is live from
// the op that defines it to its last user; the return keeps values alive to
// the end. Allocation is first-fit over the gaps between live buffers, done
// separately for static buffers (bytes) and token-dynamic buffers (bytes per
// token row). An op's results never share memory with its operands because
// operands are released only after the op's results are placed.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/Support/MathExtras.h"

#include <map>

namespace treni {
#define GEN_PASS_DEF_PLANBUFFERSPASS
#include "passes/Passes.h.inc"

namespace {
using namespace mlir;

/// First-fit allocator over [0, inf): `live` maps offset -> size.
class Arena {
public:
  int64_t allocate(int64_t size) {
    int64_t candidate = 0;
    for (auto [offset, used] : live) {
      if (offset - candidate >= size)
        break;
      candidate = std::max(candidate, offset + used);
    }
    live.emplace(candidate, size);
    peak = std::max(peak, candidate + size);
    return candidate;
  }
  void release(int64_t offset) { live.erase(offset); }
  int64_t peakBytes() const { return peak; }

private:
  std::map<int64_t, int64_t> live;
  int64_t peak = 0;
};

/// Where a value lives: which arena and at what offset.
struct Placement {
  bool dynamic = false;
  int64_t offset = 0;
};

int64_t elementBytes(Type type) {
  return llvm::divideCeil(type.getIntOrFloatBitWidth(), 8);
}

/// Kernels load and store up to 16 bytes at once (common.cuh's Vector).
constexpr int64_t kMinAlignment = 16;

struct PlanBuffersPass : public impl::PlanBuffersPassBase<PlanBuffersPass> {
  using Base::Base;

  void runOnOperation() override {
    for (int64_t value : {int64_t(alignment), int64_t(rowAlignment)})
      if (value < kMinAlignment || !llvm::isPowerOf2_64(value)) {
        getOperation().emitError()
            << "treni-plan-buffers: alignments must be powers of two of at "
               "least "
            << kMinAlignment << " (kernels move 16-byte vectors), got "
            << value;
        return signalPassFailure();
      }
    for (auto func : getOperation().getOps<func::FuncOp>())
      if (!func.isExternal() && failed(planFunction(func)))
        return signalPassFailure();
  }

  static int64_t alignedSize(int64_t bytes, int64_t align) {
    return llvm::alignTo(std::max<int64_t>(bytes, 1), align);
  }

  /// Size in its arena's unit (bytes, or bytes per token row), or failure
  /// for a shape the plan cannot express.
  FailureOr<std::pair<bool, int64_t>> sizeOf(Operation *where, Value value) {
    auto type = dyn_cast<RankedTensorType>(value.getType());
    if (!type)
      return where->emitOpError() << "cannot plan " << value.getType()
                                  << ": buffers need a ranked tensor type";
    int64_t perRow = elementBytes(type.getElementType());
    for (int64_t dim : type.getShape().drop_front())
      if (ShapedType::isDynamic(dim))
        return where->emitOpError()
               << "cannot plan " << type
               << ": only the leading dimension may be dynamic";
      else
        perRow *= dim;
    // Empty tensors still take one aligned slot: a zero-size buffer would
    // share an offset with a live one and corrupt the allocator's map.
    if (type.getRank() == 0)
      return std::make_pair(false, alignedSize(perRow, alignment));
    int64_t rows = type.getDimSize(0);
    if (ShapedType::isDynamic(rows))
      return std::make_pair(true, alignedSize(perRow, rowAlignment));
    return std::make_pair(false, alignedSize(rows * perRow, alignment));
  }

  LogicalResult planFunction(func::FuncOp func) {
    if (!func.getBody().hasOneBlock())
      return func.emitOpError("treni-plan-buffers needs a single-block body");
    Block &body = func.getBody().front();
    Builder builder(func.getContext());

    // Index of each op, and the last op index at which each value is used.
    llvm::DenseMap<Operation *, int64_t> index;
    for (Operation &op : body)
      index[&op] = index.size();
    auto lastUse = [&](Value value, int64_t defIndex) {
      int64_t last = defIndex;
      for (Operation *user : value.getUsers()) {
        Operation *inBody = body.findAncestorOpInBlock(*user);
        if (isa<func::ReturnOp>(inBody))
          return std::numeric_limits<int64_t>::max();
        last = std::max(last, index.lookup(inBody));
      }
      return last;
    };

    Arena staticArena, dynamicArena;
    // (last use, value) of every live buffer, released once the walk passes it.
    std::multimap<int64_t, Value> expiries;
    llvm::DenseMap<Value, Placement> placements;
    auto place = [&](Operation *where, Value value,
                     int64_t defIndex) -> FailureOr<Placement> {
      auto size = sizeOf(where, value);
      if (failed(size))
        return failure();
      auto [dynamic, bytes] = *size;
      Placement placement{dynamic, dynamic ? dynamicArena.allocate(bytes)
                                           : staticArena.allocate(bytes)};
      placements[value] = placement;
      expiries.emplace(lastUse(value, defIndex), value);
      return placement;
    };
    auto releaseBefore = [&](int64_t opIndex) {
      while (!expiries.empty() && expiries.begin()->first < opIndex) {
        Value value = expiries.begin()->second;
        Placement placement = placements[value];
        (placement.dynamic ? dynamicArena : staticArena)
            .release(placement.offset);
        expiries.erase(expiries.begin());
      }
    };

    for (BlockArgument arg : func.getArguments()) {
      if (!isa<TensorType>(arg.getType()))
        continue;
      auto placement = place(func, arg, -1);
      if (failed(placement))
        return failure();
      func.setArgAttr(arg.getArgNumber(), "treni.offset",
                      builder.getI64IntegerAttr(placement->offset));
    }
    for (Operation &op : body) {
      if (isa<WeightOp, ConcatOp>(op) || op.getNumResults() == 0)
        continue;
      int64_t opIndex = index[&op];
      releaseBefore(opIndex);
      SmallVector<int64_t> offsets;
      for (Value result : op.getResults()) {
        if (!isa<TensorType>(result.getType()))
          return op.emitOpError("treni-plan-buffers only plans tensors");
        auto placement = place(&op, result, opIndex);
        if (failed(placement))
          return failure();
        offsets.push_back(placement->offset);
      }
      op.setAttr("treni.offsets", builder.getDenseI64ArrayAttr(offsets));
    }

    int64_t staticBytes = llvm::alignTo(staticArena.peakBytes(), alignment);
    func->setAttr("treni.arena_static_bytes",
                  builder.getI64IntegerAttr(staticBytes));
    func->setAttr("treni.arena_row_bytes",
                  builder.getI64IntegerAttr(dynamicArena.peakBytes()));
    if (report)
      func.emitRemark() << "arena for @" << func.getSymName() << ": "
                        << staticBytes << " bytes + "
                        << dynamicArena.peakBytes() << " bytes per token";
    return success();
  }
};
} // namespace
} // namespace treni
