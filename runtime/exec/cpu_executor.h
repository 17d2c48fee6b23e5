//===- cpu_executor.h - the fp32 reference executor -------------*- C++ -*-===//
//
// Runs a Plan with the plain loops of cpu_kernels: weights converted to fp32
// once, one activation arena laid out by the plan's own buffer offsets (scaled
// so every buffer holds fp32), and an fp32 KV cache. What CI runs end to end
// and the oracle for fusion equivalence.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "codegen/Plan.h"
#include "frontends/safetensors/safetensors.h"

namespace treni {

class CpuExecutor {
public:
  /// Loads the plan's weights from an opened checkpoint and sizes the KV
  /// cache for `maxSeq` positions.
  static absl::StatusOr<std::unique_ptr<CpuExecutor>>
  create(Plan plan, const Checkpoint &weights, int64_t maxSeq);
  /// The same, opening the checkpoint in `modelDir` (tests and tools; a load
  /// passes the checkpoint it already opened).
  static absl::StatusOr<std::unique_ptr<CpuExecutor>>
  create(Plan plan, const std::string &modelDir, int64_t maxSeq);

  /// Runs @prefill on `ids` at positions start.., returning the last row's
  /// logits.
  absl::StatusOr<std::vector<float>> prefill(absl::Span<const int32_t> ids,
                                             int64_t startPosition);
  /// Runs @decode for one token at `position`.
  absl::StatusOr<std::vector<float>> decode(int32_t id, int64_t position);

  const Plan &plan() const { return plan_; }
  int64_t maxSeq() const { return maxSeq_; }
  int64_t vocabSize() const { return vocabSize_; }
  /// Bytes of fp32 weights held.
  int64_t weightBytes() const;

private:
  CpuExecutor() = default;
  absl::StatusOr<std::vector<float>> run(const PlanFunction &function,
                                         absl::Span<const int32_t> ids,
                                         int64_t startPosition);

  Plan plan_;
  int64_t maxSeq_ = 0;
  int64_t vocabSize_ = 0;
  std::vector<std::vector<float>> weights_; ///< by plan weight index
  /// cache name -> per layer key and value, each [maxSeq, kvHeads*headDim].
  std::map<std::string, std::vector<std::vector<float>>> keys_, values_;
  std::vector<float> arena_; ///< fp32 words
};

/// Index of the largest logit (lowest index on ties).
int32_t argmax(absl::Span<const float> logits);

} // namespace treni
