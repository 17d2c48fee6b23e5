//===- builder.h - architecture builders emitting treni IR ------*- C++ -*-===//
//
// One builder serves Qwen2, Llama and Qwen3: they differ only in q/k/v bias,
// Qwen3's per-head q/k RMSNorm, Llama 3's RoPE frequency scaling and tied
// embeddings, all read from ModelConfig. The module holds:
//
//   treni.kv_cache @kv ...
//   func.func @prefill(%ids: tensor<?xi32>, %positions: tensor<?xi32>)
//       -> tensor<1xVxf32> attributes {treni.one_sequence}
//   func.func @decode(%ids: tensor<1xi32>, %positions: tensor<1xi32>)
//       -> tensor<1xVxf32> attributes {treni.one_sequence}
//   func.func @step(%ids: tensor<?xi32>, %positions: tensor<?xi32>)
//       -> tensor<?xVxf32>
//
// @prefill (a chunk of one prompt) and @decode (one token) are one sequence
// at consecutive positions and return the last row's logits. @step is the
// same model over rows of any sequences (continuous batching: decode rows
// and prefill chunks of several requests in one call) and returns every
// row's logits; which KV rows each row writes and reads is the executor's
// business (a block table per row), so the IR is the same.
//
// plus the module attributes `treni.weights` (where every tensor lives) and
// `treni.model` (the config values the runtime needs). Activations are in the
// activation dtype except the residual stream (embedding output and residual
// adds), which is f32.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "frontends/safetensors/model_config.h"
#include "frontends/safetensors/model_dir.h"
#include "frontends/safetensors/safetensors.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

namespace treni {

struct BuildOptions {
  /// Element type of activations and the KV cache. Default: the config's
  /// `dtype`, else the embedding's. (The GPU runtime asks for bf16 when a
  /// checkpoint is f32 and converts those weights on the device.)
  std::optional<DType> activationDtype;
};

/// Builds the treni module for a validated config + checkpoint. Without a
/// checkpoint (shape-only builds, e.g. to compile kernels for a model that is
/// not on disk) every weight is taken to be of the activation type, tied
/// embeddings follow the config, and the weight map has no file locations.
absl::StatusOr<mlir::OwningOpRef<mlir::ModuleOp>>
buildModule(mlir::MLIRContext &context, const ModelConfig &config,
            const Checkpoint *checkpoint, const BuildOptions &options = {});

/// A model directory's config and the IR built from it.
struct LoadedModel {
  ModelConfig config;
  mlir::OwningOpRef<mlir::ModuleOp> module;
};

/// Validates an opened directory's config and checkpoint against each other
/// and builds the module.
absl::StatusOr<LoadedModel> loadModelDir(mlir::MLIRContext &context,
                                         const ModelDir &dir,
                                         const BuildOptions &options = {});

} // namespace treni
