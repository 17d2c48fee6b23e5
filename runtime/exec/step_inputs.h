//===- step_inputs.h - checks shared by the executors -----------*- C++ -*-===//
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "runtime/exec/kv_pages.h"

namespace treni {

/// The most tokens of one prefill chunk: a chunk's rows are a grid dimension
/// of the per-row kernels (at most 65535 blocks).
inline constexpr int64_t kMaxPrefillChunk = 65535;

/// A prefill chunk size must be 1..kMaxPrefillChunk tokens.
absl::Status checkPrefillChunk(int64_t tokens);

/// A prefill/decode call's tokens: positions start.. must fit the KV cache of
/// `maxSeq` rows and every id must be inside the vocabulary.
absl::Status checkStepInputs(absl::Span<const int32_t> ids,
                             int64_t startPosition, int64_t maxSeq,
                             int64_t vocabSize);

/// How the rows of a batched step on a paged cache name their block tables
/// (CpuExecutor::step). Nothing is owned.
struct StepTables {
  /// Every table back to back (StepPlan::blockTables).
  absl::Span<const int32_t> blockTables;
  /// Per row: where its table starts in blockTables.
  absl::Span<const int32_t> rowTables;
  /// Rows per block and blocks in the pool.
  int64_t blockTokens = 0, numBlocks = 0;
};

/// A batched step's rows (one token each, of any sequences), checked before
/// anything runs so that a bad step is an InvalidArgument naming the problem,
/// never a stray access: ids and positions have one entry per row, 1 to
/// kMaxPrefillChunk rows (the GPU runs them as a prefill chunk's rows), every
/// id inside the vocabulary and every position in [0, maxSeq). With `tables`
/// (a paged cache) every row has a table offset inside blockTables, and row
/// r's table runs from rowTables[r] to the next larger offset any row names
/// (or the end: the tables lie back to back); it must cover positions[r] and
/// name only blocks of the pool, none twice. Either way no two rows may write
/// the same cache row (without tables all rows are one sequence: no position
/// twice).
absl::Status checkStepRows(absl::Span<const int32_t> ids,
                           absl::Span<const int32_t> positions, int64_t maxSeq,
                           int64_t vocabSize,
                           const StepTables *tables = nullptr);

/// A block table names each block at most once: a block named twice would
/// hold two positions of the sequence in one cache row.
absl::Status checkDistinctBlocks(absl::Span<const int32_t> table,
                                 int64_t numBlocks);

/// A paged step's addressing, checked before any kernel follows it so that a
/// bad table is an InvalidArgument naming the step row, never a stray access:
/// every row r's table (tableSizes[r] ids from pages.tableOffsets[r]) must lie
/// inside the `numTableIds` ids of pages.blockTables, cover positions 0..
/// positions[r] (what its attention reads), and name only blocks of the pool
/// of `numBlocks`.
absl::Status checkKvPages(const KvPages &pages, int64_t numTableIds,
                          absl::Span<const int32_t> positions,
                          absl::Span<const int32_t> tableSizes,
                          int64_t numBlocks);

/// attention_flash's tiles over the rows `firstRow`.. of a batched step (the
/// rows of its prompt chunks: the runtime puts them after the sampled rows),
/// three ints per tile: the first row of its run, the run's rows, the tile's
/// first query vector in the run. A run is a stretch of consecutive rows with
/// one table offset (one sequence); its rows * `group` vectors (the query
/// heads of a KV head, packed per row) are cut into tiles of `blockM`, so a
/// tile never mixes two sequences' tables. Tiles whose last row has the
/// larger position come first (the most keys start first).
std::vector<int32_t> flashChunkTiles(absl::Span<const int32_t> tableOffsets,
                                     absl::Span<const int32_t> positions,
                                     int64_t firstRow, int64_t group,
                                     int64_t blockM);

} // namespace treni
