//===- AgentSharePrefix.cpp - mark generate steps sharing a prompt prefix -===//
//
// Groups are per workflow and per model; group numbers are unique in the
// module. A step joins the group with which it shares the longest literal
// prefix (at least min-prefix bytes), and the group's prefix shrinks to what
// all its members share.
//
//===----------------------------------------------------------------------===//

#include "passes/AgentPasses.h"

#include "mlir/IR/Builders.h"

namespace agent {
#define GEN_PASS_DEF_AGENTSHAREPREFIXPASS
#include "passes/AgentPasses.h.inc"

namespace {
using namespace mlir;

/// The literal text every rendering of `prompt` starts with.
std::string literalPrefix(Value prompt) {
  if (auto format = prompt.getDefiningOp<FormatOp>())
    return format.getLiteralPrefix();
  if (auto constant = prompt.getDefiningOp<ConstantOp>())
    if (auto text = dyn_cast<StringAttr>(constant.getValue()))
      return text.str();
  return "";
}

/// Length of the common prefix of `a` and `b`, cut back so it does not end
/// inside a UTF-8 sequence.
size_t commonPrefix(StringRef a, StringRef b) {
  size_t length = 0;
  size_t limit = std::min(a.size(), b.size());
  while (length < limit && a[length] == b[length])
    ++length;
  if (length == a.size() || length == b.size())
    return length;
  // a[length] differs: if it is a continuation byte, the character started
  // earlier and is not shared whole.
  while (length > 0 && (static_cast<unsigned char>(a[length]) & 0xC0) == 0x80)
    --length;
  return length;
}

struct Group {
  std::string model;
  std::string prefix;
  SmallVector<GenerateOp> members;
};

struct AgentSharePrefixPass
    : public impl::AgentSharePrefixPassBase<AgentSharePrefixPass> {
  using AgentSharePrefixPassBase::AgentSharePrefixPassBase;

  void runOnOperation() override {
    if (minPrefix < 1) {
      getOperation().emitError() << "agent-share-prefix: min-prefix must be "
                                    "at least 1, got "
                                 << static_cast<int64_t>(minPrefix);
      return signalPassFailure();
    }
    int64_t nextGroup = 0;
    Builder builder(&getContext());
    for (auto workflow : getOperation().getOps<WorkflowOp>()) {
      std::vector<Group> groups;
      workflow.walk([&](GenerateOp generate) {
        std::string prefix = literalPrefix(generate.getPrompt());
        if ((int64_t)prefix.size() < minPrefix)
          return;
        std::string model = generate.getModel().value_or("").str();
        Group *best = nullptr;
        size_t bestLength = 0;
        for (Group &group : groups) {
          if (group.model != model)
            continue;
          size_t length = commonPrefix(group.prefix, prefix);
          if ((int64_t)length >= minPrefix && length > bestLength) {
            best = &group;
            bestLength = length;
          }
        }
        if (best) {
          best->prefix.resize(bestLength);
          best->members.push_back(generate);
        } else {
          groups.push_back(Group{model, prefix, {generate}});
        }
      });
      for (Group &group : groups) {
        bool reruns = group.members.size() == 1 &&
                      group.members.front()->getParentOfType<RetryOp>();
        if (group.members.size() < 2 && !reruns)
          continue;
        for (GenerateOp generate : group.members) {
          generate.setPrefixGroupAttr(builder.getI64IntegerAttr(nextGroup));
          generate.setPrefixLenAttr(
              builder.getI64IntegerAttr((int64_t)group.prefix.size()));
        }
        ++nextGroup;
      }
    }
  }
};
} // namespace
} // namespace agent
