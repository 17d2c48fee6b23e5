//===- cpu_executor.h - the fp32 reference executor -------------*- C++ -*-===//
//
// Runs a Plan with the plain loops of cpu_kernels: weights converted to fp32
// once, one activation arena laid out by the plan's own buffer offsets (scaled
// so every buffer holds fp32), and an fp32 KV cache. What CI runs end to end
// and the oracle for fusion equivalence.
//
// The KV cache is either contiguous (one sequence, position p in cache row p)
// or paged: a pool of fixed-size blocks per layer that sequences share, each
// call naming its sequence's block table (runtime/batch/kv_block_pool.h) -
// the reference for the GPU executor's paged addressing. prefill and decode
// run one sequence per call; step runs @step over rows of several sequences
// at once (one engine step of continuous batching), each row through its
// own table.
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
#include "runtime/batch/kv_block_pool.h"
#include "runtime/exec/kv_pages.h"

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

  /// A paged executor: each layer's cache is a pool of `numBlocks` blocks of
  /// `blockTokens` rows, and every call passes the block table of the
  /// sequence it runs, so sequences share the pool without touching each
  /// other's rows and can share the blocks of a common prefix. Which blocks a
  /// sequence holds is the caller's bookkeeping (KvBlockPool); `blockTokens`
  /// is a parameter so tests cross block boundaries with short prompts.
  static absl::StatusOr<std::unique_ptr<CpuExecutor>>
  createPaged(Plan plan, const Checkpoint &weights, int64_t numBlocks,
              int64_t blockTokens = kKvBlockTokens);
  static absl::StatusOr<std::unique_ptr<CpuExecutor>>
  createPaged(Plan plan, const std::string &modelDir, int64_t numBlocks,
              int64_t blockTokens = kKvBlockTokens);
  /// A paged executor of this one's plan that shares its fp32 weights (read
  /// only, no second copy; either may outlive the other): a batch runner
  /// beside an engine's single-sequence cache.
  absl::StatusOr<std::unique_ptr<CpuExecutor>>
  createPagedSharingWeights(int64_t numBlocks,
                            int64_t blockTokens = kKvBlockTokens) const;
  /// Whether `other` reads the same weight storage.
  bool sharesWeightsWith(const CpuExecutor &other) const {
    return weights_ == other.weights_;
  }

  /// Runs @prefill on `ids` at positions start.., returning the last row's
  /// logits. Contiguous executors only.
  absl::StatusOr<std::vector<float>> prefill(absl::Span<const int32_t> ids,
                                             int64_t startPosition);
  /// Runs @decode for one token at `position`. Contiguous executors only.
  absl::StatusOr<std::vector<float>> decode(int32_t id, int64_t position);

  /// The same for one sequence of a paged executor: position p's KV row is
  /// row p % blockTokens of block blockTable[p / blockTokens]. The rows at
  /// the call's positions are written, and attention reads every position
  /// up to them through the table, so the blocks of earlier positions must
  /// already hold this sequence's rows (its own earlier calls, or another
  /// sequence's for a shared prefix). A table that names a block outside the
  /// pool or one block twice, or that does not reach the last position, is
  /// an InvalidArgument and nothing runs.
  absl::StatusOr<std::vector<float>>
  prefill(absl::Span<const int32_t> ids, int64_t startPosition,
          absl::Span<const KvBlockId> blockTable);
  absl::StatusOr<std::vector<float>>
  decode(int32_t id, int64_t position, absl::Span<const KvBlockId> blockTable);

  /// Runs @step, one engine step of continuous batching on a paged executor:
  /// row r is token ids[r] at position positions[r] of the sequence whose
  /// block table starts at blockTables[rowTables[r]] (the tables lie back to
  /// back, StepPlan::blockTables; a table ends where the next one starts).
  /// Rows may belong to any sequences, in any order; the rows of one
  /// sequence (a prefill chunk) name the same table offset. Every row's K/V
  /// row is written before any row attends, and row r attends to positions
  /// 0..positions[r] of its own table, so the rows of a chunk see each other
  /// causally and earlier positions must hold rows written before. Returns
  /// rows x vocab logits, row-major. checkStepRows (step_inputs.h) refuses a
  /// bad step with an InvalidArgument before anything runs.
  absl::StatusOr<std::vector<float>>
  step(absl::Span<const int32_t> ids, absl::Span<const int32_t> positions,
       absl::Span<const KvBlockId> blockTables,
       absl::Span<const int32_t> rowTables);
  /// The same on a contiguous executor: every row belongs to the one
  /// sequence of its cache (position p in cache row p).
  absl::StatusOr<std::vector<float>> step(absl::Span<const int32_t> ids,
                                          absl::Span<const int32_t> positions);

  /// @embed over one sequence's tokens from `startPosition`, on a contiguous
  /// executor, or (with the sequence's block table) on a paged one: rows x
  /// hidden_size f32, each row's final-norm hidden state (what embedding
  /// models pool), row-major. It writes the rows' K/V as prefill does (later
  /// chunks attend to them) and computes no logits.
  absl::StatusOr<std::vector<float>> embed(absl::Span<const int32_t> ids,
                                           int64_t startPosition);
  absl::StatusOr<std::vector<float>>
  embed(absl::Span<const int32_t> ids, int64_t startPosition,
        absl::Span<const KvBlockId> blockTable);
  /// Columns of @embed's rows (0 for a plan compiled without it).
  int64_t hiddenSize() const;

  const Plan &plan() const { return plan_; }
  /// Positions one sequence can reach: the cache's rows, or the pool's when
  /// paged.
  int64_t maxSeq() const { return maxSeq_; }
  bool paged() const { return blockTokens_ > 0; }
  /// The pool's blocks and rows per block (0 when contiguous).
  int64_t numBlocks() const { return numBlocks_; }
  int64_t blockTokens() const { return blockTokens_; }
  int64_t vocabSize() const { return vocabSize_; }
  /// Bytes of fp32 weights held.
  int64_t weightBytes() const;

private:
  CpuExecutor() = default;
  /// Loads the weights and sizes each layer's cache for `cacheRows` rows.
  static absl::StatusOr<std::unique_ptr<CpuExecutor>>
  load(Plan plan, const Checkpoint &weights, int64_t cacheRows);
  /// Runs @prefill or @decode over one sequence's tokens from
  /// `startPosition`; `blockTable` is the sequence's table when paged and
  /// ignored otherwise.
  absl::StatusOr<std::vector<float>>
  runSequence(const PlanFunction &function, absl::Span<const int32_t> ids,
              int64_t startPosition, absl::Span<const KvBlockId> blockTable);
  /// Checks a paged call's view, whose rows all belong to the sequence of
  /// `blockTable` (so they share its one table), against the pool.
  absl::Status checkPages(const KvPages &pages,
                          absl::Span<const KvBlockId> blockTable,
                          absl::Span<const int32_t> positions) const;
  /// @step or @embed (`name`) over checked rows of a paged executor.
  absl::StatusOr<std::vector<float>>
  pagedRows(const char *name, absl::Span<const int32_t> ids,
            absl::Span<const int32_t> positions,
            absl::Span<const KvBlockId> blockTables,
            absl::Span<const int32_t> rowTables);
  /// @step or @embed (`name`), or FailedPrecondition for a plan compiled
  /// without it.
  absl::StatusOr<const PlanFunction *>
  rowsFunction(const char *name = "step") const;
  /// Runs `function` on checked rows whose cache rows `pages` addresses;
  /// returns its logits (every row's for @step, the last row's otherwise),
  /// or @embed's hidden states.
  absl::StatusOr<std::vector<float>> run(const PlanFunction &function,
                                         absl::Span<const int32_t> ids,
                                         absl::Span<const int32_t> positions,
                                         const KvPages &pages);

  Plan plan_;
  int64_t maxSeq_ = 0;
  int64_t numBlocks_ = 0, blockTokens_ = 0; ///< paged mode only
  int64_t vocabSize_ = 0;
  /// By plan weight index; shared with executors made by
  /// createPagedSharingWeights.
  std::shared_ptr<const std::vector<std::vector<float>>> weights_;
  /// Sizes every layer's key and value cache for `cacheRows` rows.
  void allocateCaches(int64_t cacheRows);
  /// A pool of `numBlocks` blocks of `blockTokens` rows can be addressed.
  static absl::Status checkPool(int64_t numBlocks, int64_t blockTokens);
  /// cache name -> per layer key and value, each [maxSeq, kvHeads*headDim]
  /// (paged: numBlocks * blockTokens rows).
  std::map<std::string, std::vector<std::vector<float>>> keys_, values_;
  std::vector<float> arena_; ///< fp32 words
};

/// Index of the largest logit (lowest index on ties).
int32_t argmax(absl::Span<const float> logits);

} // namespace treni
