//===- gpu_step_runner.cpp - batch steps on the GPU -----------------------===//

#include "runtime/exec/gpu_step_runner.h"

namespace treni {

StepRowOrder orderStepRows(const StepPlan &plan) {
  StepRowOrder order;
  auto add = [&](int32_t id, int64_t position, BlockTableRef table) {
    order.ids.push_back(id);
    order.positions.push_back(int32_t(position));
    order.tableOffsets.push_back(int32_t(table.offset));
  };
  for (const DecodeRow &row : plan.decodes)
    add(row.token, row.position, row.blockTable);
  for (const PrefillChunk &chunk : plan.prefills)
    if (chunk.samplesLast && !chunk.tokens.empty())
      add(chunk.tokens.back(),
          chunk.firstPosition + int64_t(chunk.tokens.size()) - 1,
          chunk.blockTable);
  order.sampledRows = int64_t(order.ids.size());
  for (const PrefillChunk &chunk : plan.prefills) {
    size_t rest = chunk.samplesLast && !chunk.tokens.empty()
                      ? chunk.tokens.size() - 1
                      : chunk.tokens.size();
    for (size_t i = 0; i < rest; ++i)
      add(chunk.tokens[i], chunk.firstPosition + int64_t(i), chunk.blockTable);
  }
  return order;
}

absl::StatusOr<std::unique_ptr<GpuStepRunner>>
GpuStepRunner::create(GpuExecutor &executor) {
  if (executor.pagedBlocks() == 0)
    return absl::FailedPreconditionError(
        "a GPU step runner needs the executor's paged KV pool");
  return std::unique_ptr<GpuStepRunner>(new GpuStepRunner(executor));
}

absl::StatusOr<absl::Span<const float>>
GpuStepRunner::run(const StepPlan &plan) {
  StepRowOrder rows = orderStepRows(plan);
  return executor_.runStep({rows.ids, rows.positions, rows.tableOffsets,
                            plan.blockTables, rows.sampledRows});
}

absl::StatusOr<std::vector<SampleResult>>
GpuStepRunner::runSampled(const StepPlan &plan,
                          absl::Span<const RowSampling> sampling) {
  StepRowOrder rows = orderStepRows(plan);
  return executor_.runStepSampled({rows.ids, rows.positions, rows.tableOffsets,
                                   plan.blockTables, rows.sampledRows},
                                  sampling);
}

absl::StatusOr<absl::Span<const float>>
GpuStepRunner::embed(const StepPlan &plan) {
  if (!plan.decodes.empty())
    return absl::InvalidArgumentError("an embedding step has no decode rows");
  std::vector<int32_t> ids, positions, offsets;
  for (const PrefillChunk &chunk : plan.prefills)
    for (size_t i = 0; i < chunk.tokens.size(); ++i) {
      ids.push_back(chunk.tokens[i]);
      positions.push_back(int32_t(chunk.firstPosition + int64_t(i)));
      offsets.push_back(int32_t(chunk.blockTable.offset));
    }
  return executor_.runEmbed(
      {ids, positions, offsets, plan.blockTables, /*sampledRows=*/0});
}

absl::StatusOr<std::vector<StepTime>>
GpuStepRunner::profile(const StepPlan &plan, int iterations) {
  StepRowOrder rows = orderStepRows(plan);
  return executor_.profileStepRows({rows.ids, rows.positions, rows.tableOffsets,
                                    plan.blockTables, rows.sampledRows},
                                   iterations);
}

} // namespace treni
