//===- cpu_step_runner.cpp - batch steps on the CPU reference -------------===//

#include "runtime/exec/cpu_step_runner.h"

#include "absl/strings/str_cat.h"
#include "support/status.h"

namespace treni {

absl::StatusOr<std::unique_ptr<CpuStepRunner>>
CpuStepRunner::create(std::unique_ptr<CpuExecutor> executor) {
  if (!executor || !executor->paged())
    return absl::InvalidArgumentError(
        "a batch step runner needs a paged CPU executor");
  if (executor->blockTokens() != kKvBlockTokens)
    return absl::InvalidArgumentError(
        absl::StrCat("the executor's KV blocks hold ", executor->blockTokens(),
                     " rows; the scheduler's hold ", kKvBlockTokens));
  return std::unique_ptr<CpuStepRunner>(new CpuStepRunner(std::move(executor)));
}

absl::StatusOr<absl::Span<const float>>
CpuStepRunner::run(const StepPlan &plan) {
  const int64_t vocab = executor_->vocabSize();
  std::vector<float> &logits = logits_;
  logits.clear();
  logits.reserve(size_t(vocab) * plan.sampledSequences().size());
  auto append = [&](const std::vector<float> &row) -> absl::Status {
    if (int64_t(row.size()) != vocab)
      return absl::InternalError(
          absl::StrCat("a step row has ", row.size(), " logits, not ", vocab));
    logits.insert(logits.end(), row.begin(), row.end());
    return absl::OkStatus();
  };
  // Decode rows first, then the chunks: plan.sampledSequences()'s order.
  for (const DecodeRow &row : plan.decodes) {
    TRENI_ASSIGN_OR_RETURN(std::vector<float> out,
                           executor_->decode(row.token, row.position,
                                             plan.blockTable(row.blockTable)));
    TRENI_RETURN_IF_ERROR(append(out));
  }
  for (const PrefillChunk &chunk : plan.prefills) {
    TRENI_ASSIGN_OR_RETURN(
        std::vector<float> out,
        executor_->prefill(chunk.tokens, chunk.firstPosition,
                           plan.blockTable(chunk.blockTable)));
    if (chunk.samplesLast)
      TRENI_RETURN_IF_ERROR(append(out));
  }
  return absl::MakeConstSpan(logits);
}

absl::StatusOr<absl::Span<const float>>
CpuStepRunner::embed(const StepPlan &plan) {
  if (!plan.decodes.empty())
    return absl::InvalidArgumentError("an embedding step has no decode rows");
  logits_.clear();
  for (const PrefillChunk &chunk : plan.prefills) {
    TRENI_ASSIGN_OR_RETURN(std::vector<float> out,
                           executor_->embed(chunk.tokens, chunk.firstPosition,
                                            plan.blockTable(chunk.blockTable)));
    logits_.insert(logits_.end(), out.begin(), out.end());
  }
  return absl::MakeConstSpan(logits_);
}

absl::StatusOr<std::vector<SampleResult>>
CpuStepRunner::runSampled(const StepPlan &plan,
                          absl::Span<const RowSampling> sampling) {
  TRENI_ASSIGN_OR_RETURN(absl::Span<const float> logits, run(plan));
  const int64_t vocab = executor_->vocabSize();
  if (int64_t(logits.size()) != int64_t(sampling.size()) * vocab)
    return absl::InvalidArgumentError(
        absl::StrCat("a step samples ", logits.size() / vocab, " rows but ",
                     sampling.size(), " sampling settings came"));
  std::vector<SampleResult> results;
  results.reserve(sampling.size());
  for (size_t i = 0; i < sampling.size(); ++i) {
    TRENI_ASSIGN_OR_RETURN(SampleResult result,
                           sampleCpu(logits.subspan(i * vocab, vocab),
                                     sampling[i].params, sampling[i].step));
    results.push_back(std::move(result));
  }
  return results;
}

} // namespace treni
