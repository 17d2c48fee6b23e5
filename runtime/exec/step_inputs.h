//===- step_inputs.h - checks shared by the executors -----------*- C++ -*-===//
#pragma once

#include <cstdint>

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

} // namespace treni
