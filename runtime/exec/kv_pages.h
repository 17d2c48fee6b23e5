//===- kv_pages.h - how a step's rows address a paged KV cache --*- C++ -*-===//
//
// A paged KV cache is a pool of fixed-size blocks per layer; a sequence's
// positions live in the blocks its block table names, in table order. This
// view is what a kernel needs to follow one step's tables: the rows of a step
// may belong to different sequences, so every row carries its own table. A
// null view is the contiguous cache (cache row = position), what a single
// sequence with a cache of its own uses. Plain C++ with no dependencies, so
// the CPU kernels, the executors' checks (step_inputs.h) and the GPU side can
// share it.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>

namespace treni {

/// How the rows of one step map positions to cache rows. Nothing is owned:
/// the arrays belong to the step and must outlive the kernels that read them.
/// Kernels trust the view; the executor checks it first (checkKvPages in
/// step_inputs.h), so a bad table is an error, never a stray access.
struct KvPages {
  /// Cache rows per block (the pool's kKvBlockTokens; a parameter so tests can
  /// cross block boundaries with short prompts); 0 in the null view.
  int64_t blockTokens = 0;
  /// Every row's block table back to back (StepPlan::blockTables): the ids of
  /// the blocks that hold positions 0.., blockTokens positions each.
  const int32_t *blockTables = nullptr;
  /// Per step row: where its table starts in blockTables. The rows of one
  /// prefill chunk share one offset.
  const int32_t *tableOffsets = nullptr;

  /// False for the null view: the cache is contiguous.
  bool paged() const { return blockTokens > 0; }

  /// The cache row that holds `position` of step row `row`: the position's
  /// block in the row's table, then its place inside the block. The
  /// contiguous cache holds position p in row p.
  int64_t cacheRow(int64_t row, int64_t position) const {
    if (!paged())
      return position;
    int64_t block = blockTables[tableOffsets[row] + position / blockTokens];
    return block * blockTokens + position % blockTokens;
  }
};

} // namespace treni
