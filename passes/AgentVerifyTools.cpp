//===- AgentVerifyTools.cpp - tool calls against declared signatures -----===//
//
// Reports every mismatch (not just the first) at the tool call: an unknown
// tool, an argument the tool does not take, a missing required argument, a
// value of the wrong type.
//
//===----------------------------------------------------------------------===//

#include "passes/AgentPasses.h"

#include "llvm/ADT/StringExtras.h"

namespace agent {
#define GEN_PASS_DEF_AGENTVERIFYTOOLSPASS
#include "passes/AgentPasses.h.inc"

namespace {
using namespace mlir;

std::string withArticle(const std::string &name) {
  bool vowel = !name.empty() && StringRef("aeiou").contains(name[0]);
  return (vowel ? "an " : "a ") + name;
}

/// " (did you mean 'x'?)" for the closest of `names` within two edits.
std::string suggestion(StringRef name, ArrayRef<std::string> names) {
  std::string best;
  unsigned bestDistance = 3;
  for (const std::string &candidate : names) {
    unsigned distance = name.edit_distance(candidate, true, bestDistance);
    if (distance < bestDistance) {
      bestDistance = distance;
      best = candidate;
    }
  }
  return best.empty() ? "" : " (did you mean '" + best + "'?)";
}

/// Reports every mismatch of `call` with `signature`; false if there was
/// one.
bool checkCall(ToolOp call, const treni::ToolSignature &signature) {
  bool ok = true;
  std::vector<std::string> paramNames;
  for (const treni::ToolParameter &param : signature.parameters)
    paramNames.push_back(param.name);
  for (auto [nameAttr, value] : llvm::zip(call.getArgNames(), call.getArgs())) {
    StringRef name = cast<StringAttr>(nameAttr).getValue();
    const treni::ToolParameter *param = signature.parameter(name);
    if (!param) {
      call.emitError() << "tool '" << signature.name << "' has no argument '"
                       << name << "'" << suggestion(name, paramNames)
                       << " (arguments: "
                       << (paramNames.empty() ? std::string("none")
                                              : llvm::join(paramNames, ", "))
                       << ")";
      ok = false;
      continue;
    }
    if (!acceptsToolType(param->type, value.getType())) {
      call.emitError() << "argument '" << name << "' of tool '"
                       << signature.name << "' must be "
                       << withArticle(
                              std::string(treni::toolTypeName(param->type)))
                       << ", got "
                       << withArticle(valueTypeName(value.getType()));
      ok = false;
    }
  }
  for (const treni::ToolParameter &param : signature.parameters) {
    if (!param.required ||
        llvm::any_of(call.getArgNames(), [&](Attribute name) {
          return cast<StringAttr>(name).getValue() == param.name;
        }))
      continue;
    call.emitError() << "tool '" << signature.name << "' needs argument '"
                     << param.name << "' ("
                     << std::string(treni::toolTypeName(param.type)) << ")";
    ok = false;
  }
  return ok;
}

struct AgentVerifyToolsPass
    : public impl::AgentVerifyToolsPassBase<AgentVerifyToolsPass> {
  using AgentVerifyToolsPassBase::AgentVerifyToolsPassBase;
  explicit AgentVerifyToolsPass(ToolSignatureList given)
      : given(std::move(given)) {}

  void runOnOperation() override {
    ModuleOp module = getOperation();
    auto signatures = collectToolSignatures(module, registry, given);
    if (failed(signatures))
      return signalPassFailure();
    std::vector<std::string> toolNames;
    for (const auto &[name, signature] : *signatures)
      toolNames.push_back(name);

    bool ok = true;
    module.walk([&](ToolOp call) {
      auto found = signatures->find(call.getTool().str());
      if (found != signatures->end()) {
        ok &= checkCall(call, found->second);
        return;
      }
      auto diag = call.emitError() << "unknown tool '" << call.getTool() << "'"
                                   << suggestion(call.getTool(), toolNames);
      if (toolNames.empty())
        diag << ": no tools are declared (add 'extern tool' declarations "
                "or a registry file)";
      else
        diag << " (declared: " << llvm::join(toolNames, ", ") << ")";
      ok = false;
    });
    if (!ok)
      signalPassFailure();
  }

  /// Signatures handed over in memory (createAgentVerifyToolsPass).
  ToolSignatureList given;
};
} // namespace

std::unique_ptr<Pass> createAgentVerifyToolsPass(ToolSignatureList signatures) {
  return std::make_unique<AgentVerifyToolsPass>(std::move(signatures));
}

} // namespace agent
