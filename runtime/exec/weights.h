//===- weights.h - match a plan's weights against a checkpoint --*- C++ -*-===//
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "codegen/Plan.h"
#include "frontends/safetensors/safetensors.h"

namespace treni {

/// The checkpoint tensors whose data, back to back, is one plan weight: the
/// tensor itself, or the parts of a concatenation in order.
using WeightTensors = std::vector<const TensorInfo *>;

/// The checkpoint tensors of every plan weight, in plan order. Fails, naming
/// the tensor, when one is missing or its file, offset, dtype or shape differ
/// from what the plan was compiled against (the model changed on disk), or
/// when a concatenation's parts do not add up to its shape and dtype.
absl::StatusOr<std::vector<WeightTensors>>
matchPlanWeights(const Plan &plan, const Checkpoint &checkpoint);

} // namespace treni
