//===- weights.cpp - match a plan's weights against a checkpoint ---------===//

#include "runtime/exec/weights.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace treni {
namespace {

absl::StatusOr<const TensorInfo *> matchTensor(const PlanWeight &weight,
                                               const Checkpoint &checkpoint) {
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
  return info;
}

} // namespace

absl::StatusOr<std::vector<WeightTensors>>
matchPlanWeights(const Plan &plan, const Checkpoint &checkpoint) {
  std::vector<WeightTensors> tensors;
  for (const PlanWeight &weight : plan.weights) {
    if (weight.parts.empty()) {
      auto info = matchTensor(weight, checkpoint);
      if (!info.ok())
        return info.status();
      tensors.push_back({*info});
      continue;
    }
    // A concatenation along dimension 0: same dtype and trailing dims, rows
    // adding up to the weight's.
    WeightTensors parts;
    int64_t rows = 0;
    for (const PlanWeight &part : weight.parts) {
      auto info = matchTensor(part, checkpoint);
      if (!info.ok())
        return info.status();
      if (part.dtype != weight.dtype || part.shape.empty() ||
          part.shape.size() != weight.shape.size() ||
          !std::equal(part.shape.begin() + 1, part.shape.end(),
                      weight.shape.begin() + 1))
        return absl::FailedPreconditionError(absl::StrCat(
            "plan: part '", part.name, "' of '", weight.name,
            "' does not match the concatenation's dtype or trailing shape"));
      rows += part.shape[0];
      parts.push_back(*info);
    }
    if (weight.shape.empty() || rows != weight.shape[0])
      return absl::FailedPreconditionError(
          absl::StrCat("plan: the parts of '", weight.name, "' have ", rows,
                       " rows in all, not the concatenation's"));
    tensors.push_back(std::move(parts));
  }
  return tensors;
}

} // namespace treni
