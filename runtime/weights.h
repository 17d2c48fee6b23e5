//===- weights.h - match a plan's weights against a checkpoint --*- C++ -*-===//
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "codegen/Plan.h"
#include "frontends/safetensors/safetensors.h"

namespace treni {

/// The checkpoint tensor of every plan weight, in plan order. Fails, naming
/// the tensor, when one is missing or its file, offset, dtype or shape differ
/// from what the plan was compiled against (the model changed on disk).
absl::StatusOr<std::vector<const TensorInfo *>>
matchPlanWeights(const Plan &plan, const Checkpoint &checkpoint);

} // namespace treni
