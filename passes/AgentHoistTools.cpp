//===- AgentHoistTools.cpp - independent steps -> agent.parallel ---------===//
//
// Per block, in order, each tool call or generate (a "call") tries to join
// the group of an earlier call (its "leader"): it moves up to the leader
// together with the pure ops computing its operands. It may not when it
// needs a value that only a non-pure op after the leader produces (a
// generate, a tool, an if/retry result), when it is a tool call that
// conflicts with a group member or with a tool call it would cross (same
// namespace, not both readonly), or when it would cross an op that may
// return from the workflow. A generation touches no tool's state, so it
// conflicts with nothing.
//
//===----------------------------------------------------------------------===//

#include "passes/AgentPasses.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/SetVector.h"

namespace agent {
#define GEN_PASS_DEF_AGENTHOISTTOOLSPASS
#include "passes/AgentPasses.h.inc"

namespace {
using namespace mlir;

/// A tool call or a generate: what a group holds.
bool isCall(Operation *op) { return isa<ToolOp, GenerateOp>(op); }

struct Group {
  Operation *leader;
  SmallVector<Operation *> members;
  /// Pure ops that must move above the leader, with the members.
  llvm::SetVector<Operation *> slice;
};

class Hoister {
public:
  explicit Hoister(
      const std::map<std::string, treni::ToolSignature> &signatures)
      : signatures(signatures) {}

  void run(Block &block) {
    std::vector<Group> groups;
    for (Operation &op : block) {
      if (!isCall(&op))
        continue;
      Operation *call = &op;
      bool joined = false;
      for (Group &group : groups) {
        llvm::SetVector<Operation *> slice;
        if (canJoin(group, call, slice)) {
          group.members.push_back(call);
          group.slice.insert(slice.begin(), slice.end());
          joined = true;
          break;
        }
      }
      if (!joined)
        groups.push_back(Group{call, {call}, {}});
    }
    for (Group &group : groups)
      if (group.members.size() >= 2)
        materialize(group);
  }

private:
  const std::map<std::string, treni::ToolSignature> &signatures;

  bool isReadonly(ToolOp call) const {
    auto found = signatures.find(call.getTool().str());
    return found != signatures.end() && found->second.readOnly;
  }

  /// Two calls conflict when they may touch the same state: two tool calls
  /// of one namespace, not both readonly.
  bool conflict(Operation *a, Operation *b) const {
    auto toolA = dyn_cast<ToolOp>(a), toolB = dyn_cast<ToolOp>(b);
    return toolA && toolB &&
           toolNamespace(toolA.getTool()) == toolNamespace(toolB.getTool()) &&
           !(isReadonly(toolA) && isReadonly(toolB));
  }

  /// Whether moving `call` above `op` could change what happens: `op` is
  /// or holds a conflicting tool call, or may return from the workflow.
  bool isBarrier(Operation *op, Operation *call) const {
    bool barrier = false;
    op->walk([&](Operation *inner) {
      if (isa<ToolOp>(inner) && conflict(inner, call))
        barrier = true;
      else if (isa<ReturnOp>(inner))
        barrier = true;
      return barrier ? WalkResult::interrupt() : WalkResult::advance();
    });
    return barrier;
  }

  /// Collects into `slice` the pure ops between the leader and `call` that
  /// `value` depends on; fails when it depends on anything else there.
  bool collect(Value value, const Group &group,
               llvm::SetVector<Operation *> &slice) const {
    Operation *def = value.getDefiningOp();
    Block *block = group.leader->getBlock();
    // Block arguments and values from enclosing regions dominate the leader.
    if (!def || def->getBlock() != block)
      return true;
    if (def->isBeforeInBlock(group.leader))
      return true;
    if (slice.contains(def) || group.slice.contains(def))
      return true;
    if (!isPure(def) || def->getNumRegions() != 0)
      return false; // A member, a generate, an if/retry result, ...
    slice.insert(def);
    for (Value operand : def->getOperands())
      if (!collect(operand, group, slice))
        return false;
    return true;
  }

  bool canJoin(const Group &group, Operation *call,
               llvm::SetVector<Operation *> &slice) const {
    for (Operation *member : group.members)
      if (conflict(member, call))
        return false;
    for (Value operand : call->getOperands())
      if (!collect(operand, group, slice))
        return false;
    for (Operation *op = group.leader->getNextNode(); op != call;
         op = op->getNextNode()) {
      if (slice.contains(op) || group.slice.contains(op))
        continue;
      if (llvm::is_contained(group.members, op))
        continue;
      if (isBarrier(op, call))
        return false;
    }
    return true;
  }

  void materialize(Group &group) {
    Operation *leader = group.leader;
    // Argument computations go above the leader in their original order.
    SmallVector<Operation *> slice(group.slice.begin(), group.slice.end());
    llvm::sort(slice, [](Operation *a, Operation *b) {
      return a->isBeforeInBlock(b);
    });
    for (Operation *op : slice)
      if (leader->isBeforeInBlock(op)) // An earlier group may have moved it.
        op->moveBefore(leader);

    OpBuilder builder(leader);
    SmallVector<Type> types;
    SmallVector<Location> locs;
    for (Operation *member : group.members) {
      types.push_back(member->getResult(0).getType());
      locs.push_back(member->getLoc());
    }
    auto parallel =
        ParallelOp::create(builder, builder.getFusedLoc(locs), types);
    Block *body = new Block();
    parallel.getBody().push_back(body);
    SmallVector<Value> results;
    for (Operation *member : group.members) {
      member->moveBefore(body, body->end());
      results.push_back(member->getResult(0));
    }
    builder.setInsertionPointToEnd(body);
    auto yield = YieldOp::create(builder, parallel.getLoc(), results);
    for (auto [member, result] :
         llvm::zip(group.members, parallel.getResults()))
      member->getResult(0).replaceAllUsesExcept(result, yield);
  }
};

struct AgentHoistToolsPass
    : public impl::AgentHoistToolsPassBase<AgentHoistToolsPass> {
  using AgentHoistToolsPassBase::AgentHoistToolsPassBase;
  explicit AgentHoistToolsPass(ToolSignatureList given)
      : given(std::move(given)) {}

  void runOnOperation() override {
    ModuleOp module = getOperation();
    auto signatures = collectToolSignatures(module, registry, given);
    if (failed(signatures))
      return signalPassFailure();
    std::vector<Block *> blocks;
    module.walk([&](WorkflowOp workflow) {
      workflow.walk([&](Block *block) {
        if (!isa<ParallelOp>(block->getParentOp()))
          blocks.push_back(block);
      });
    });
    Hoister hoister(*signatures);
    for (Block *block : blocks)
      hoister.run(*block);
  }

  /// Signatures handed over in memory (createAgentHoistToolsPass).
  ToolSignatureList given;
};
} // namespace

std::unique_ptr<Pass> createAgentHoistToolsPass(ToolSignatureList signatures) {
  return std::make_unique<AgentHoistToolsPass>(std::move(signatures));
}

} // namespace agent
