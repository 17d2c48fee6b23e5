//===- model_dir.cpp - a checkpoint directory opened once -----------------===//

#include "frontends/safetensors/model_dir.h"

#include "support/status.h"

namespace treni {

absl::StatusOr<std::shared_ptr<const ModelDir>>
openModelDir(const std::string &path) {
  auto dir = std::make_shared<ModelDir>();
  dir->path = path;
  TRENI_ASSIGN_OR_RETURN(dir->config, loadModelConfig(path));
  TRENI_ASSIGN_OR_RETURN(dir->checkpoint, Checkpoint::open(path));
  return std::shared_ptr<const ModelDir>(std::move(dir));
}

} // namespace treni
