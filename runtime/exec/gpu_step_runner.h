//===- gpu_step_runner.h - batch steps on the GPU ---------------*- C++ -*-===//
//
// A StepRunner over a GpuExecutor's paged KV pool: one StepPlan is one @step
// launch sequence over all its rows (every running sequence's decode row and
// the prompt chunks), each row through its own block table, the GEMMs over
// all rows at once. The rows go in sampled-first order (orderStepRows), so
// the final norm and lm_head run on the sampled rows only.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/batch/step_runner.h"
#include "runtime/exec/gpu_executor.h"

namespace treni {

/// A step's rows in the order the GPU computes them: first the sampled rows
/// in StepPlan::sampledSequences() order (the decode rows, then the last row
/// of each chunk that samples), then every other chunk row. Any order is
/// valid for @step, whose rows carry their own positions and tables.
struct StepRowOrder {
  std::vector<int32_t> ids, positions, tableOffsets;
  int64_t sampledRows = 0;
};
StepRowOrder orderStepRows(const StepPlan &plan);

class GpuStepRunner : public StepRunner {
public:
  /// Over `executor`'s paged pool (preparePagedPool, blocks of
  /// kKvBlockTokens positions); the executor must outlive the runner.
  static absl::StatusOr<std::unique_ptr<GpuStepRunner>>
  create(GpuExecutor &executor);

  absl::StatusOr<absl::Span<const float>> run(const StepPlan &plan) override;
  absl::StatusOr<std::vector<SampleResult>>
  runSampled(const StepPlan &plan,
             absl::Span<const RowSampling> sampling) override;
  /// run's launches for `plan`, one by one with events around each (see
  /// GpuExecutor::profileStepRows).
  absl::StatusOr<std::vector<StepTime>> profile(const StepPlan &plan,
                                                int iterations);
  absl::StatusOr<absl::Span<const float>> embed(const StepPlan &plan) override;
  int64_t hiddenSize() const override { return executor_.hiddenSize(); }
  int64_t vocabSize() const override { return executor_.vocabSize(); }
  int64_t numBlocks() const override { return executor_.pagedBlocks(); }
  int64_t maxSeq() const override { return executor_.maxSeq(); }

private:
  explicit GpuStepRunner(GpuExecutor &executor) : executor_(executor) {}
  GpuExecutor &executor_;
};

} // namespace treni
