//===- cpu_step_runner.h - batch steps on the CPU reference ----*- C++ -*-===//
//
// A StepRunner over a paged CpuExecutor: each row group of a step (one
// sequence's decode row, or one prompt chunk) runs as that sequence's own
// paged call, so a batched generation computes exactly what the sequences
// would alone - the oracle a GPU runner is checked against.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <memory>

#include "runtime/batch/step_runner.h"
#include "runtime/exec/cpu_executor.h"

namespace treni {

class CpuStepRunner : public StepRunner {
public:
  /// `executor` must be paged with blocks of kKvBlockTokens rows (the
  /// scheduler's block size); InvalidArgument otherwise.
  static absl::StatusOr<std::unique_ptr<CpuStepRunner>>
  create(std::unique_ptr<CpuExecutor> executor);

  absl::StatusOr<absl::Span<const float>> run(const StepPlan &plan) override;
  /// run(), then sampleCpu on each sampled row.
  absl::StatusOr<std::vector<SampleResult>>
  runSampled(const StepPlan &plan,
             absl::Span<const RowSampling> sampling) override;
  /// Each chunk as its sequence's own paged @embed call.
  absl::StatusOr<absl::Span<const float>> embed(const StepPlan &plan) override;
  int64_t hiddenSize() const override { return executor_->hiddenSize(); }
  int64_t vocabSize() const override { return executor_->vocabSize(); }
  int64_t numBlocks() const override { return executor_->numBlocks(); }
  int64_t maxSeq() const override { return executor_->maxSeq(); }

private:
  explicit CpuStepRunner(std::unique_ptr<CpuExecutor> executor)
      : executor_(std::move(executor)) {}
  std::unique_ptr<CpuExecutor> executor_;
  std::vector<float> logits_; ///< the last run's (or embed's rows)
};

} // namespace treni
