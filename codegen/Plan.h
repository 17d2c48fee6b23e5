//===- Plan.h - the executable plan -----------------------------*- C++ -*-===//
//
// What the runtime executes: for each function, the buffers of the activation
// arena, the kernel steps in order (template + constants + operands), and the
// checkpoint tensors they read. It is plain data, versioned, and serialises to
// JSON so `treni run` can load a package without MLIR.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"

namespace treni {

/// Bumped whenever the serialised layout changes; readers reject others.
inline constexpr int64_t kPlanVersion = 2;

/// A kernel constant: integer, float, string (e.g. a cache symbol) or bool.
using PlanConstant = std::variant<int64_t, double, std::string, bool>;

/// One tensor in the activation arena. Its byte address for a call with
/// `tokens` rows is `offset` when static, `staticBytes + tokens * offset` when
/// dynamic (the leading dimension is the token count).
struct PlanBuffer {
  std::string dtype;          ///< "bf16", "f16", "f32", "i32"
  std::vector<int64_t> shape; ///< -1 for the dynamic leading dimension
  bool dynamic = false;
  int64_t offset = 0;
  bool operator==(const PlanBuffer &) const = default;
};

/// An operand of a step: an arena buffer (index into PlanFunction::buffers)
/// or a checkpoint tensor (index into Plan::weights).
struct PlanOperand {
  enum class Kind { Buffer, Weight };
  Kind kind = Kind::Buffer;
  int64_t index = 0;
  bool operator==(const PlanOperand &) const = default;
};

/// One kernel launch.
struct PlanStep {
  std::string templateName; ///< "rms_norm", "gemm", "attention", ...
  std::string origin;       ///< the op(s) it was outlined from
  std::map<std::string, PlanConstant> constants;
  std::vector<PlanOperand> inputs;
  std::vector<int64_t> outputs; ///< buffer indices
  bool operator==(const PlanStep &) const = default;

  /// Typed constant lookups; fail naming the step and key when absent.
  absl::StatusOr<int64_t> intConstant(const std::string &key) const;
  absl::StatusOr<double> floatConstant(const std::string &key) const;
  absl::StatusOr<std::string> stringConstant(const std::string &key) const;
  absl::StatusOr<bool> boolConstant(const std::string &key) const;
};

struct PlanFunction {
  std::string name; ///< "prefill" or "decode"
  std::vector<PlanBuffer> buffers;
  std::vector<int64_t> inputs;  ///< buffer indices of (ids, positions)
  std::vector<int64_t> outputs; ///< buffer indices of the results (logits)
  std::vector<PlanStep> steps;
  int64_t staticBytes = 0; ///< size of the static region
  int64_t rowBytes = 0;    ///< dynamic region bytes per token
  bool operator==(const PlanFunction &) const = default;

  /// Arena bytes for a call with `tokens` rows.
  int64_t arenaBytes(int64_t tokens) const {
    return staticBytes + tokens * rowBytes;
  }
  /// Byte address of buffer `index` for a call with `tokens` rows.
  int64_t bufferOffset(int64_t index, int64_t tokens) const;
};

/// A checkpoint tensor a step reads, or (when `parts` is not empty) the
/// concatenation of checkpoint tensors along dimension 0 (treni.concat): its
/// data is the parts back to back, its name "concat(a,b,...)", its file
/// empty and its offset -1; dtype and shape are the concatenation's.
struct PlanWeight {
  std::string name;
  std::string file; ///< file name inside the model directory
  int64_t offset = 0;
  std::string dtype; ///< "BF16", "F16", "F32" (safetensors spelling)
  std::vector<int64_t> shape;
  std::vector<PlanWeight> parts; ///< checkpoint tensors, none of them concats
  bool operator==(const PlanWeight &) const = default;
};

struct PlanKvCache {
  std::string name;
  int64_t numLayers = 0;
  int64_t numKvHeads = 0;
  int64_t headDim = 0;
  std::string dtype;
  bool operator==(const PlanKvCache &) const = default;
};

struct Plan {
  int64_t version = kPlanVersion;
  std::map<std::string, PlanConstant> model; ///< architecture, sizes
  std::vector<PlanWeight> weights;
  std::vector<PlanKvCache> caches;
  std::vector<PlanFunction> functions;
  bool operator==(const Plan &) const = default;

  const PlanFunction *function(const std::string &name) const;
  const PlanKvCache *cache(const std::string &name) const;
  /// model.max_position_embeddings when the plan records one (>= 2), else
  /// `fallback`.
  int64_t maxPositions(int64_t fallback) const;
  /// Columns of @embed's rows (the hidden size), 0 for a plan without it.
  int64_t embedColumns() const;
};

/// JSON text of a plan (stable key order, floats round-trip exactly).
std::string serializePlan(const Plan &plan);
/// Parses and validates JSON text (version, indices in range, buffer kinds).
absl::StatusOr<Plan> parsePlan(const std::string &text);

} // namespace treni
