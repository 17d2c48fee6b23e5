//===- weights.cpp - match a plan's weights against a checkpoint ---------===//

#include "runtime/weights.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace treni {

absl::StatusOr<std::vector<const TensorInfo *>>
matchPlanWeights(const Plan &plan, const Checkpoint &checkpoint) {
  std::vector<const TensorInfo *> tensors;
  for (const PlanWeight &weight : plan.weights) {
    const TensorInfo *info = checkpoint.find(weight.name);
    std::string file =
        info ? std::filesystem::path(info->file).filename().string() : "";
    if (!info || file != weight.file ||
        int64_t(info->fileOffset) != weight.offset ||
        std::string(dtypeName(info->dtype)) != weight.dtype ||
        info->shape != weight.shape)
      return absl::FailedPreconditionError(absl::StrCat(
          checkpoint.dir(), ": tensor '", weight.name,
          "' differs from the plan (", weight.file, " @", weight.offset, " ",
          weight.dtype, " [", absl::StrJoin(weight.shape, ", "),
          "]): recompile the model"));
    tensors.push_back(info);
  }
  return tensors;
}

} // namespace treni
