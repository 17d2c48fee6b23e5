//===- cpu_executor.cpp - the fp32 reference executor --------------------===//
//
// The arena is the plan's own: every buffer sits at its planned byte offset
// times `scale` = 4 / (smallest element size), so a bf16 plan's buffers fit
// their fp32 copies and any aliasing bug of treni-plan-buffers shows up as
// wrong logits here.
//
//===----------------------------------------------------------------------===//

#include "runtime/exec/cpu_executor.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "codegen/KernelRegistry.h"
#include "frontends/safetensors/safetensors.h"
#include "runtime/exec/cpu_kernels.h"
#include "runtime/exec/step_inputs.h"
#include "runtime/exec/weights.h"
#include "support/dtype.h"
#include "support/status.h"

namespace treni {

int32_t argmax(absl::Span<const float> logits) {
  return int32_t(std::max_element(logits.begin(), logits.end()) -
                 logits.begin());
}

absl::StatusOr<std::unique_ptr<CpuExecutor>>
CpuExecutor::create(Plan plan, const std::string &modelDir, int64_t maxSeq) {
  TRENI_ASSIGN_OR_RETURN(auto checkpoint, Checkpoint::open(modelDir));
  return create(std::move(plan), *checkpoint, maxSeq);
}

absl::StatusOr<std::unique_ptr<CpuExecutor>>
CpuExecutor::create(Plan plan, const Checkpoint &weights, int64_t maxSeq) {
  if (maxSeq <= 0)
    return absl::InvalidArgumentError("max-seq must be positive");
  return load(std::move(plan), weights, maxSeq);
}

absl::StatusOr<std::unique_ptr<CpuExecutor>>
CpuExecutor::createPaged(Plan plan, const std::string &modelDir,
                         int64_t numBlocks, int64_t blockTokens) {
  TRENI_ASSIGN_OR_RETURN(auto checkpoint, Checkpoint::open(modelDir));
  return createPaged(std::move(plan), *checkpoint, numBlocks, blockTokens);
}

absl::Status CpuExecutor::checkPool(int64_t numBlocks, int64_t blockTokens) {
  // Block ids are int32 (KvBlockId), and so are positions.
  if (numBlocks <= 0 || blockTokens <= 0 || numBlocks > INT32_MAX / blockTokens)
    return absl::InvalidArgumentError(
        absl::StrCat("a KV pool needs a positive number of blocks of positive "
                     "size, at most 2^31 - 1 rows in all; got ",
                     numBlocks, " blocks of ", blockTokens, " rows"));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CpuExecutor>>
CpuExecutor::createPaged(Plan plan, const Checkpoint &weights,
                         int64_t numBlocks, int64_t blockTokens) {
  TRENI_RETURN_IF_ERROR(checkPool(numBlocks, blockTokens));
  TRENI_ASSIGN_OR_RETURN(
      auto executor, load(std::move(plan), weights, numBlocks * blockTokens));
  executor->numBlocks_ = numBlocks;
  executor->blockTokens_ = blockTokens;
  return executor;
}

absl::StatusOr<std::unique_ptr<CpuExecutor>>
CpuExecutor::createPagedSharingWeights(int64_t numBlocks,
                                       int64_t blockTokens) const {
  TRENI_RETURN_IF_ERROR(checkPool(numBlocks, blockTokens));
  std::unique_ptr<CpuExecutor> executor(new CpuExecutor());
  executor->plan_ = plan_;
  executor->vocabSize_ = vocabSize_;
  executor->weights_ = weights_;
  executor->maxSeq_ = numBlocks * blockTokens;
  executor->numBlocks_ = numBlocks;
  executor->blockTokens_ = blockTokens;
  executor->allocateCaches(executor->maxSeq_);
  return executor;
}

void CpuExecutor::allocateCaches(int64_t cacheRows) {
  for (const PlanKvCache &cache : plan_.caches) {
    size_t size = size_t(cacheRows) * cache.numKvHeads * cache.headDim;
    keys_[cache.name].assign(cache.numLayers, std::vector<float>(size));
    values_[cache.name].assign(cache.numLayers, std::vector<float>(size));
  }
}

absl::StatusOr<std::unique_ptr<CpuExecutor>>
CpuExecutor::load(Plan plan, const Checkpoint &weights, int64_t cacheRows) {
  std::unique_ptr<CpuExecutor> executor(new CpuExecutor());
  executor->maxSeq_ = cacheRows;
  auto vocab = plan.model.find("vocab_size");
  if (vocab == plan.model.end() ||
      !std::holds_alternative<int64_t>(vocab->second))
    return absl::InvalidArgumentError("plan: model.vocab_size missing");
  executor->vocabSize_ = std::get<int64_t>(vocab->second);

  TRENI_ASSIGN_OR_RETURN(auto tensors, matchPlanWeights(plan, weights));
  auto converted = std::make_shared<std::vector<std::vector<float>>>();
  for (const WeightTensors &parts : tensors) {
    // A concatenation is its parts back to back (row-major, dimension 0).
    int64_t total = 0;
    for (const TensorInfo *info : parts)
      total += info->numElements();
    std::vector<float> data(total);
    float *next = data.data();
    for (const TensorInfo *info : parts) {
      convertToF32(info->dtype, weights.data(*info).data(), next,
                   info->numElements());
      next += info->numElements();
    }
    converted->push_back(std::move(data));
  }
  executor->weights_ = std::move(converted);
  for (const char *name : {"prefill", "decode"})
    if (!plan.function(name))
      return absl::InvalidArgumentError(
          absl::StrCat("plan has no @", name, " function"));
  executor->plan_ = std::move(plan);
  executor->allocateCaches(cacheRows);
  return executor;
}

int64_t CpuExecutor::weightBytes() const {
  int64_t total = 0;
  for (const auto &w : *weights_)
    total += w.size() * sizeof(float);
  return total;
}

namespace {

/// The error of a call whose cache mode does not match the executor's.
absl::Status wrongCacheMode(bool executorIsPaged) {
  return absl::FailedPreconditionError(
      executorIsPaged
          ? "this executor's KV cache is paged: pass the sequence's block "
            "table"
          : "this executor's KV cache is contiguous: create it with "
            "createPaged to pass block tables");
}

} // namespace

absl::StatusOr<std::vector<float>>
CpuExecutor::prefill(absl::Span<const int32_t> ids, int64_t startPosition) {
  if (paged())
    return wrongCacheMode(true);
  if (ids.empty())
    return absl::InvalidArgumentError("prefill needs at least one token");
  return runSequence(*plan_.function("prefill"), ids, startPosition, {});
}

absl::StatusOr<std::vector<float>> CpuExecutor::decode(int32_t id,
                                                       int64_t position) {
  if (paged())
    return wrongCacheMode(true);
  return runSequence(*plan_.function("decode"), {&id, 1}, position, {});
}

absl::StatusOr<std::vector<float>>
CpuExecutor::prefill(absl::Span<const int32_t> ids, int64_t startPosition,
                     absl::Span<const KvBlockId> blockTable) {
  if (!paged())
    return wrongCacheMode(false);
  if (ids.empty())
    return absl::InvalidArgumentError("prefill needs at least one token");
  return runSequence(*plan_.function("prefill"), ids, startPosition,
                     blockTable);
}

absl::StatusOr<std::vector<float>>
CpuExecutor::decode(int32_t id, int64_t position,
                    absl::Span<const KvBlockId> blockTable) {
  if (!paged())
    return wrongCacheMode(false);
  return runSequence(*plan_.function("decode"), {&id, 1}, position, blockTable);
}

absl::Status
CpuExecutor::checkPages(const KvPages &pages,
                        absl::Span<const KvBlockId> blockTable,
                        absl::Span<const int32_t> positions) const {
  std::vector<int32_t> tableSizes(positions.size(), int32_t(blockTable.size()));
  TRENI_RETURN_IF_ERROR(checkKvPages(pages, blockTable.size(), positions,
                                     tableSizes, numBlocks_));
  return checkDistinctBlocks(blockTable, numBlocks_);
}

absl::StatusOr<std::vector<float>>
CpuExecutor::runSequence(const PlanFunction &function,
                         absl::Span<const int32_t> ids, int64_t startPosition,
                         absl::Span<const KvBlockId> blockTable) {
  int64_t tokens = ids.size();
  TRENI_RETURN_IF_ERROR(
      checkStepInputs(ids, startPosition, maxSeq_, vocabSize_));
  std::vector<int32_t> positions(tokens);
  for (int64_t i = 0; i < tokens; ++i)
    positions[i] = int32_t(startPosition + i);
  KvPages pages;                                // the null view: contiguous
  std::vector<int32_t> tableOffsets(tokens, 0); // one sequence, one table
  if (paged()) {
    pages = {blockTokens_, blockTable.data(), tableOffsets.data()};
    TRENI_RETURN_IF_ERROR(checkPages(pages, blockTable, positions));
  }
  return run(function, ids, positions, pages);
}

absl::StatusOr<const PlanFunction *>
CpuExecutor::rowsFunction(const char *name) const {
  const PlanFunction *function = plan_.function(name);
  if (!function)
    return absl::FailedPreconditionError(absl::StrCat(
        "the plan has no @", name,
        " function (compiled by an older treni): compile the "
        "model again to run ",
        std::string_view(name) == "step" ? "batched steps" : "embeddings"));
  return function;
}

int64_t CpuExecutor::hiddenSize() const { return plan_.embedColumns(); }

absl::StatusOr<std::vector<float>>
CpuExecutor::pagedRows(const char *name, absl::Span<const int32_t> ids,
                       absl::Span<const int32_t> positions,
                       absl::Span<const KvBlockId> blockTables,
                       absl::Span<const int32_t> rowTables) {
  if (!paged())
    return wrongCacheMode(false);
  TRENI_ASSIGN_OR_RETURN(const PlanFunction *function, rowsFunction(name));
  StepTables tables{blockTables, rowTables, blockTokens_, numBlocks_};
  TRENI_RETURN_IF_ERROR(
      checkStepRows(ids, positions, maxSeq_, vocabSize_, &tables));
  return run(*function, ids, positions,
             KvPages{blockTokens_, blockTables.data(), rowTables.data()});
}

absl::StatusOr<std::vector<float>>
CpuExecutor::embed(absl::Span<const int32_t> ids, int64_t startPosition) {
  if (paged())
    return wrongCacheMode(true);
  if (ids.empty())
    return absl::InvalidArgumentError("embed needs at least one token");
  TRENI_ASSIGN_OR_RETURN(const PlanFunction *function, rowsFunction("embed"));
  return runSequence(*function, ids, startPosition, {});
}

absl::StatusOr<std::vector<float>>
CpuExecutor::embed(absl::Span<const int32_t> ids, int64_t startPosition,
                   absl::Span<const KvBlockId> blockTable) {
  if (!paged())
    return wrongCacheMode(false);
  if (ids.empty())
    return absl::InvalidArgumentError("embed needs at least one token");
  TRENI_ASSIGN_OR_RETURN(const PlanFunction *function, rowsFunction("embed"));
  return runSequence(*function, ids, startPosition, blockTable);
}

absl::StatusOr<std::vector<float>>
CpuExecutor::step(absl::Span<const int32_t> ids,
                  absl::Span<const int32_t> positions,
                  absl::Span<const KvBlockId> blockTables,
                  absl::Span<const int32_t> rowTables) {
  return pagedRows("step", ids, positions, blockTables, rowTables);
}

absl::StatusOr<std::vector<float>>
CpuExecutor::step(absl::Span<const int32_t> ids,
                  absl::Span<const int32_t> positions) {
  if (paged())
    return wrongCacheMode(true);
  TRENI_ASSIGN_OR_RETURN(const PlanFunction *function, rowsFunction());
  TRENI_RETURN_IF_ERROR(checkStepRows(ids, positions, maxSeq_, vocabSize_));
  return run(*function, ids, positions, KvPages{});
}

absl::StatusOr<std::vector<float>>
CpuExecutor::run(const PlanFunction &function, absl::Span<const int32_t> ids,
                 absl::Span<const int32_t> positions, const KvPages &pages) {
  int64_t tokens = ids.size();
  if (function.inputs.size() != 2 || function.outputs.size() != 1)
    return absl::InvalidArgumentError(
        absl::StrCat("@", function.name,
                     " must take (ids, positions) and "
                     "return logits"));
  for (int64_t input : function.inputs) {
    const PlanBuffer &buffer = function.buffers[input];
    if (!buffer.dynamic && buffer.shape != std::vector<int64_t>{tokens})
      return absl::InvalidArgumentError(absl::StrCat("@", function.name,
                                                     " takes ", buffer.shape[0],
                                                     " tokens, got ", tokens));
  }

  int64_t minBytes = 4;
  for (const PlanBuffer &buffer : function.buffers)
    minBytes = std::min(minBytes, dtypeBytes(buffer.dtype));
  int64_t scale = 4 / minBytes;
  arena_.assign((function.arenaBytes(tokens) * scale + 3) / 4, 0.0f);
  auto address = [&](int64_t buffer) {
    return arena_.data() + function.bufferOffset(buffer, tokens) * scale / 4;
  };
  auto words = [&](int64_t buffer) {
    return reinterpret_cast<int32_t *>(address(buffer));
  };
  std::copy(ids.begin(), ids.end(), words(function.inputs[0]));
  std::copy(positions.begin(), positions.end(), words(function.inputs[1]));

  // Each step is checked against its template, then run by its reference
  // function (cpu_kernels.cpp).
  for (const PlanStep &step : function.steps) {
    const KernelTemplate *kernel = findKernelTemplate(step.templateName);
    cpu::StepKernel reference = cpu::findStepKernel(step.templateName);
    if (!kernel || !reference)
      return absl::UnimplementedError(
          absl::StrCat("the CPU executor has no kernel '", step.templateName,
                       "' (", step.origin, ")"));
    TRENI_RETURN_IF_ERROR(checkStep(*kernel, step));
    cpu::StepArgs args{step};
    for (const PlanOperand &operand : step.inputs) {
      if (operand.kind == PlanOperand::Kind::Weight) {
        args.inputs.push_back((*weights_)[operand.index].data());
        const std::vector<int64_t> &shape = plan_.weights[operand.index].shape;
        args.inputRows.push_back(shape.empty() ? 1 : shape[0]);
        continue;
      }
      const PlanBuffer &buffer = function.buffers[operand.index];
      if (buffer.shape.empty())
        return invalidStep(step, "kernel input of rank 0");
      args.inputs.push_back(address(operand.index));
      args.inputRows.push_back(buffer.dynamic ? tokens : buffer.shape[0]);
    }
    for (int64_t output : step.outputs)
      args.outputs.push_back(address(output));
    if (kernel->usesCache) {
      TRENI_ASSIGN_OR_RETURN(std::string cacheName,
                             step.stringConstant("cache"));
      TRENI_ASSIGN_OR_RETURN(int64_t layer, step.intConstant("layer"));
      auto keys = keys_.find(cacheName);
      if (keys == keys_.end() || layer < 0 ||
          layer >= int64_t(keys->second.size()))
        return invalidStep(step, absl::StrCat("no layer ", layer, " in cache '",
                                              cacheName, "'"));
      args.keyCache = keys->second[layer].data();
      args.valueCache = values_[cacheName][layer].data();
      args.pages = pages;
    }
    TRENI_RETURN_IF_ERROR(reference(args));
  }
  // [1, vocab] (@prefill, @decode), [tokens, vocab] (@step) or [tokens,
  // hidden] (@embed).
  const PlanBuffer &output = function.buffers[function.outputs[0]];
  const int64_t columns = function.name == "embed" ? hiddenSize() : vocabSize_;
  if (output.shape.size() != 2 || output.shape[1] != columns || columns <= 0 ||
      output.dtype != "f32")
    return absl::InvalidArgumentError(
        absl::StrCat("@", function.name, " must return f32 ",
                     function.name == "embed" ? "hidden states" : "logits",
                     " of ", columns, " columns"));
  int64_t rows = output.dynamic ? tokens : output.shape[0];
  const float *values =
      reinterpret_cast<const float *>(words(function.outputs[0]));
  return std::vector<float>(values, values + rows * columns);
}

} // namespace treni
