//===- step_runner.h - an executor's side of continuous batching -*- C++
//-*-===//
//
// What the batch loop (runtime/serve/batch_generator.h) asks of an executor:
// compute one StepPlan - every running sequence's decode row and the prompt
// chunks the scheduler picked, each through its own block table of one
// shared KV pool - and hand back the logits of the rows that are sampled.
// Sampling, stops and streaming stay with the caller, per sequence.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/batch/step_plan.h"
#include "runtime/exec/sampler.h"

namespace treni {

/// How one sampled row of a step is drawn: sampleCpu's parameters and step
/// (the sequence's own token count).
struct RowSampling {
  SamplingParams params;
  uint64_t step = 0;
};

class StepRunner {
public:
  virtual ~StepRunner() = default;

  /// Computes `plan`'s rows: each row's KV row is written into the block of
  /// its position (row p % kKvBlockTokens of block table[p / kKvBlockTokens])
  /// and attends to its sequence's positions up to its own. Returns the
  /// logits of the sampled rows in plan.sampledSequences() order, row-major
  /// [rows, vocabSize()], valid until the next run. On an error the blocks
  /// the plan names may hold partial rows (the scheduler's abortStep() drops
  /// them).
  virtual absl::StatusOr<absl::Span<const float>> run(const StepPlan &plan) = 0;
  /// The same, but the sampled rows are drawn where the logits are (the GPU
  /// sampler, sampleCpu's meaning: the same token for the same logits,
  /// parameters and step), row i with `sampling[i]`; only the results come
  /// back. Unimplemented where the runner has no such sampler (the caller
  /// samples run()'s logits).
  virtual absl::StatusOr<std::vector<SampleResult>>
  runSampled(const StepPlan &plan, absl::Span<const RowSampling> sampling) {
    return absl::UnimplementedError("this runner returns logits only");
  }

  /// Embeddings: computes the rows of `plan`'s prompt chunks (it has no
  /// decode rows) through @embed, writing their KV rows as run() does, and
  /// returns every chunk row's final-norm hidden state, chunk by chunk in
  /// plan order, row-major [rows, hiddenSize()], valid until the next call.
  virtual absl::StatusOr<absl::Span<const float>> embed(const StepPlan &plan) {
    return absl::UnimplementedError("this runner computes no embeddings");
  }
  /// Columns of embed()'s rows (0 without @embed).
  virtual int64_t hiddenSize() const { return 0; }

  virtual int64_t vocabSize() const = 0;
  /// Blocks in the KV pool this runner computes into (the scheduler's
  /// KvBlockPool must have as many).
  virtual int64_t numBlocks() const = 0;
  /// Positions one sequence can reach.
  virtual int64_t maxSeq() const = 0;
};

} // namespace treni
