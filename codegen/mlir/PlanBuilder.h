//===- PlanBuilder.h - outlined, planned module -> Plan ---------*- C++ -*-===//
#pragma once

#include "absl/status/statusor.h"
#include "codegen/Plan.h"
#include "mlir/IR/BuiltinOps.h"

namespace treni {

/// Extracts the executable plan from a module that went through
/// treni-outline-kernels and treni-plan-buffers. A compute op that was not
/// outlined, or a value without an arena offset, is an error that names the
/// pass that must run.
absl::StatusOr<Plan> buildPlan(mlir::ModuleOp module);

} // namespace treni
