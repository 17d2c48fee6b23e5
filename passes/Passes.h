//===- Passes.h - treni passes and the default pipeline ---------*- C++ -*-===//
#pragma once

#include <map>
#include <string>
#include <vector>

#include "ir/TreniDialect.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassManager.h"

namespace treni {

#define GEN_PASS_DECL
#include "passes/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "passes/Passes.h.inc"

/// Options of `treni-default-pipeline`.
struct DefaultPipelineOptions {
  /// Pass flags (e.g. "treni-fuse-ffn-act") to leave out.
  std::vector<std::string> disabledPasses;
  /// Options of passes that stay, by pass flag, in the pass's own syntax
  /// (e.g. "treni-fuse-matvec" -> "fold-norm=false").
  std::map<std::string, std::string> passOptions;
};

/// The flags of every pass `treni-default-pipeline` may run, in order.
const std::vector<std::string> &defaultPipelinePassNames();

/// Fills `pm` with the default pipeline. Fails when `options` disables or
/// configures a pass that is not part of it (a typo must not silently
/// measure nothing), or when a pass rejects its options.
mlir::LogicalResult buildDefaultPipeline(mlir::OpPassManager &pm,
                                         const DefaultPipelineOptions &options,
                                         std::string *error = nullptr);

/// Registers every treni pass and `treni-default-pipeline` with the global
/// registry (for treni-opt).
void registerAllTreniPasses();

} // namespace treni
