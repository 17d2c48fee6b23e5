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
  std::function<std::unique_ptr<Pass>()> create;
};

const std::vector<PipelineEntry> &pipelineEntries() {
  static const std::vector<PipelineEntry> entries = {
      {"canonicalize", [] { return createCanonicalizerPass(); }},
      {"cse", [] { return createCSEPass(); }},
      {"treni-fuse-qkv-split-bias",
       [] { return createFuseQkvSplitBiasPass(); }},
      {"treni-fuse-ffn-act", [] { return createFuseFfnActPass(); }},
      {"treni-fuse-residual-norm", [] { return createFuseResidualNormPass(); }},
      {"treni-specialize-seq1-attention",
       [] { return createSpecializeSeq1AttentionPass(); }},
      {"treni-specialize-flash-attention",
       [] { return createSpecializeFlashAttentionPass(); }},
      {"treni-fuse-matvec", [] { return createFuseMatvecPass(); }},
      {"treni-outline-kernels", [] { return createOutlineKernelsPass(); }},
      {"treni-plan-buffers", [] { return createPlanBuffersPass(); }},
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
                                   const DefaultPipelineOptions &options,
                                   std::string *error) {
  auto reject = [&](const Twine &message) {
    if (error)
      *error = message.str();
    return failure();
  };
  std::string names = llvm::join(defaultPipelinePassNames(), ", ");
  for (const std::string &disabled : options.disabledPasses)
    if (!llvm::is_contained(defaultPipelinePassNames(), disabled))
      return reject("'" + disabled +
                    "' is not in the pipeline (passes: " + names + ")");
  for (const auto &[flag, text] : options.passOptions)
    if (!llvm::is_contained(defaultPipelinePassNames(), flag))
      return reject("'" + flag + "' is not in the pipeline (passes: " + names +
                    ")");
  for (const PipelineEntry &entry : pipelineEntries()) {
    if (llvm::is_contained(options.disabledPasses, entry.flag))
      continue;
    std::unique_ptr<Pass> pass = entry.create();
    auto text = options.passOptions.find(entry.flag);
    if (text != options.passOptions.end() &&
        failed(pass->initializeOptions(text->second, [&](const Twine &message) {
          return reject(Twine(entry.flag) + " options '" + text->second +
                        "': " + message);
        })))
      return failure();
    pm.addPass(std::move(pass));
  }
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
      "Fusion, kernel outlining and buffer planning, as `treni compile` runs "
      "them",
      [](OpPassManager &pm, StringRef text,
         function_ref<LogicalResult(const Twine &)> errorHandler) {
        auto cl = PipelineCLOptions::createFromString(text);
        if (!cl)
          return failure();
        DefaultPipelineOptions options;
        options.disabledPasses.assign(cl->disable.begin(), cl->disable.end());
        std::string error;
        if (failed(buildDefaultPipeline(pm, options, &error)))
          return errorHandler("treni-default-pipeline: disable=" + error);
        return success();
      },
      [](function_ref<void(const mlir::detail::PassOptions &)> optHandler) {
        optHandler(PipelineCLOptions());
      });
}

} // namespace treni
