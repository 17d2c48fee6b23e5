//===- Compiler.h - model directory -> plan ---------------------*- C++ -*-===//
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "codegen/Plan.h"
#include "frontends/safetensors/model_config.h"
#include "frontends/safetensors/model_dir.h"
#include "mlir/IR/MLIRContext.h"

namespace treni {

struct CompileOptions {
  /// Pass flags of treni-default-pipeline to leave out (--disable-pass).
  std::vector<std::string> disabledPasses;
  /// Pass options by pass flag (--pass-option FLAG=OPTIONS).
  std::map<std::string, std::string> passOptions;
  /// When set, receives the module as the builder emitted it.
  std::string *inputIR = nullptr;
  /// When set, receives the module after the pipeline.
  std::string *outputIR = nullptr;
  /// Build the plan (fails when outlining or buffer planning is disabled).
  bool buildPlan = true;
  /// Activation / KV-cache dtype; default: the checkpoint's (see BuildOptions).
  std::optional<DType> activationDtype;
};

struct CompiledModel {
  ModelConfig config;
  Plan plan;
  double loadSeconds = 0;    ///< config + safetensors + IR construction
  double compileSeconds = 0; ///< pass pipeline + plan extraction
};

/// Builds the IR of an opened model directory, runs treni-default-pipeline
/// and extracts the plan. Pass diagnostics are returned in the status
/// message.
absl::StatusOr<CompiledModel> compileModelDir(mlir::MLIRContext &context,
                                              const ModelDir &dir,
                                              const CompileOptions &options);

/// The same for a directory not yet opened (`treni compile`).
absl::StatusOr<CompiledModel> compileModelDir(mlir::MLIRContext &context,
                                              const std::string &dir,
                                              const CompileOptions &options);

/// Registers the dialects the compiler needs with `context`.
void loadTreniDialects(mlir::MLIRContext &context);

} // namespace treni
