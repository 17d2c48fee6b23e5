//===- Compiler.cpp - model directory -> plan ----------------------------===//

#include "codegen/mlir/Compiler.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "codegen/mlir/PlanBuilder.h"
#include "frontends/safetensors/builder.h"
#include "ir/TreniDialect.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/Pass/PassManager.h"
#include "passes/Passes.h"
#include "support/clock.h"
#include "support/status.h"

namespace treni {
namespace {
std::string print(mlir::ModuleOp module) {
  std::string text;
  llvm::raw_string_ostream os(text);
  module.print(os);
  return text;
}
} // namespace

void loadTreniDialects(mlir::MLIRContext &context) {
  context.loadDialect<TreniDialect, mlir::func::FuncDialect>();
}

absl::StatusOr<CompiledModel> compileModelDir(mlir::MLIRContext &context,
                                              const std::string &dir,
                                              const CompileOptions &options) {
  auto start = std::chrono::steady_clock::now();
  TRENI_ASSIGN_OR_RETURN(auto opened, openModelDir(dir));
  double openSeconds = secondsSince(start);
  TRENI_ASSIGN_OR_RETURN(CompiledModel compiled,
                         compileModelDir(context, *opened, options));
  compiled.loadSeconds += openSeconds;
  return compiled;
}

absl::StatusOr<CompiledModel> compileModelDir(mlir::MLIRContext &context,
                                              const ModelDir &dir,
                                              const CompileOptions &options) {
  loadTreniDialects(context);
  auto start = std::chrono::steady_clock::now();
  BuildOptions build;
  build.activationDtype = options.activationDtype;
  auto loaded = loadModelDir(context, dir, build);
  if (!loaded.ok())
    return loaded.status();
  CompiledModel compiled;
  compiled.config = loaded->config;
  compiled.loadSeconds = secondsSince(start);
  if (options.inputIR)
    *options.inputIR = print(*loaded->module);

  start = std::chrono::steady_clock::now();
  std::vector<std::string> diagnostics;
  mlir::ScopedDiagnosticHandler handler(&context, [&](mlir::Diagnostic &diag) {
    std::string text;
    llvm::raw_string_ostream os(text);
    os << diag.getLocation() << ": " << diag;
    diagnostics.push_back(text);
    return mlir::success();
  });
  mlir::PassManager pm(&context);
  DefaultPipelineOptions pipeline;
  pipeline.disabledPasses = options.disabledPasses;
  pipeline.passOptions = options.passOptions;
  std::string pipelineError;
  if (failed(buildDefaultPipeline(pm, pipeline, &pipelineError)))
    return absl::InvalidArgumentError(
        absl::StrCat("--disable-pass / --pass-option: ", pipelineError));
  if (failed(pm.run(*loaded->module)))
    return absl::InternalError(absl::StrCat("pass pipeline failed: ",
                                            absl::StrJoin(diagnostics, "\n")));
  if (options.outputIR)
    *options.outputIR = print(*loaded->module);
  if (options.buildPlan) {
    auto plan = buildPlan(*loaded->module);
    if (!plan.ok())
      return plan.status();
    compiled.plan = std::move(*plan);
  }
  compiled.compileSeconds = secondsSince(start);
  return compiled;
}

} // namespace treni
