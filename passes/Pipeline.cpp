//===- Pipeline.cpp - treni-default-pipeline -----------------------------===//
//
// The order matters: fusions first (they see transformer-level ops), then
// outlining (one op per kernel launch), then buffer planning (buffers only at
// kernel boundaries).
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"

namespace treni {
using namespace mlir;

namespace {
struct PipelineEntry {
  const char *flag;
  std::function<void(OpPassManager &)> add;
};

const std::vector<PipelineEntry> &pipelineEntries() {
  static const std::vector<PipelineEntry> entries = {
      {"canonicalize", [](OpPassManager &pm) { pm.addPass(createCanonicalizerPass()); }},
      {"cse", [](OpPassManager &pm) { pm.addPass(createCSEPass()); }},
      {"treni-fuse-qkv-split-bias",
       [](OpPassManager &pm) { pm.addPass(createFuseQkvSplitBiasPass()); }},
      {"treni-fuse-ffn-act",
       [](OpPassManager &pm) { pm.addPass(createFuseFfnActPass()); }},
      {"treni-fuse-residual-norm",
       [](OpPassManager &pm) { pm.addPass(createFuseResidualNormPass()); }},
      {"treni-specialize-seq1-attention",
       [](OpPassManager &pm) {
         pm.addPass(createSpecializeSeq1AttentionPass());
       }},
      {"treni-outline-kernels",
       [](OpPassManager &pm) { pm.addPass(createOutlineKernelsPass()); }},
      {"treni-plan-buffers",
       [](OpPassManager &pm) { pm.addPass(createPlanBuffersPass()); }},
  };
  return entries;
}
} // namespace

const std::vector<std::string> &defaultPipelinePassNames() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> result;
    for (const PipelineEntry &entry : pipelineEntries())
      result.push_back(entry.flag);
    return result;
  }();
  return names;
}

LogicalResult buildDefaultPipeline(OpPassManager &pm,
                                   const DefaultPipelineOptions &options) {
  for (const std::string &disabled : options.disabledPasses)
    if (!llvm::is_contained(defaultPipelinePassNames(), disabled))
      return failure();
  for (const PipelineEntry &entry : pipelineEntries())
    if (!llvm::is_contained(options.disabledPasses, entry.flag))
      entry.add(pm);
  return success();
}

namespace {
struct PipelineCLOptions : public PassPipelineOptions<PipelineCLOptions> {
  ListOption<std::string> disable{*this, "disable",
                                  llvm::cl::desc("Pass flags to leave out")};
};
} // namespace

void registerAllTreniPasses() {
  registerTreniPasses();
  registerPassPipeline(
      "treni-default-pipeline",
      "Fusion, kernel outlining and buffer planning, as `treni compile` runs them",
      [](OpPassManager &pm, StringRef text,
         function_ref<LogicalResult(const Twine &)> errorHandler) {
        auto cl = PipelineCLOptions::createFromString(text);
        if (!cl)
          return failure();
        DefaultPipelineOptions options;
        options.disabledPasses.assign(cl->disable.begin(), cl->disable.end());
        if (failed(buildDefaultPipeline(pm, options)))
          return errorHandler("treni-default-pipeline: disable= names a pass "
                              "that is not in the pipeline (passes: " +
                              llvm::join(defaultPipelinePassNames(), ", ") +
                              ")");
        return success();
      },
      [](function_ref<void(const mlir::detail::PassOptions &)> optHandler) {
        optHandler(PipelineCLOptions());
      });
}

} // namespace treni
