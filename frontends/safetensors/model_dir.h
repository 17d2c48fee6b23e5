//===- model_dir.h - a checkpoint directory opened once ----------*- C++
//-*-===//
//
// config.json parsed and checked, every safetensors header mapped and
// parsed: what the compiler (to build the IR), the engine loader (to pick the
// activation type) and the executors (to upload the weights) all read. A load
// opens the directory once and passes this down.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "frontends/safetensors/model_config.h"
#include "frontends/safetensors/safetensors.h"

namespace treni {

struct ModelDir {
  std::string path;
  ModelConfig config;
  std::unique_ptr<Checkpoint> checkpoint;
};

/// Opens `path`: its config.json and its checkpoint (single file or shards).
absl::StatusOr<std::shared_ptr<const ModelDir>>
openModelDir(const std::string &path);

} // namespace treni
