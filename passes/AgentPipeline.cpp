//===- AgentPipeline.cpp - the agent pass pipeline and registration ------===//
//
// Verification first (a bad call should fail before anything moves), then
// hoisting, then prefix marking (it does not care where steps sit).
//
//===----------------------------------------------------------------------===//

#include "passes/AgentPasses.h"

#include "mlir/Pass/PassRegistry.h"

namespace agent {

void buildAgentPipeline(mlir::OpPassManager &pm,
                        const AgentPipelineOptions &options) {
  if (options.verifyTools)
    pm.addPass(createAgentVerifyToolsPass(options.toolSignatures));
  pm.addPass(createAgentHoistToolsPass(options.toolSignatures));
  AgentSharePrefixPassOptions share;
  share.minPrefix = options.minPrefix;
  pm.addPass(createAgentSharePrefixPass(share));
}

void registerAllAgentPasses() { registerAgentPasses(); }

} // namespace agent
