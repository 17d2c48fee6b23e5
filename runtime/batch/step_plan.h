//===- step_plan.h - what one engine step computes --------------*- C++ -*-===//
//
// The scheduler's answer for one step, in the form a model runner consumes:
// every running sequence's next decode row, then chunks of prompts (chunked
// prefill), each with the block table its attention reads. The block tables
// of all rows lie back to back in one int32 array, so a runner uploads them
// with one copy and a kernel finds a row's table by offset.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "runtime/batch/kv_block_pool.h"
#include "runtime/batch/sequence.h"

namespace treni {

/// A row's block table inside StepPlan::blockTables.
struct BlockTableRef {
  int64_t offset = 0;
  int64_t size = 0;
};

/// One token of a running sequence, its logits sampled: the token at
/// `position` (the last sampled one) is fed and its KV row written.
struct DecodeRow {
  SequenceId sequence = 0;
  int64_t position = 0;
  int32_t token = 0;
  BlockTableRef blockTable;
};

/// Tokens [firstPosition, firstPosition + tokens.size()) of a sequence's
/// list: part of a prompt, or of prompt + generated tokens recomputed after
/// a preemption. Only a chunk that reaches the end of the list has its last
/// row's logits sampled.
struct PrefillChunk {
  SequenceId sequence = 0;
  int64_t firstPosition = 0;
  std::vector<int32_t> tokens;
  bool samplesLast = false;
  BlockTableRef blockTable;
};

struct StepPlan {
  uint64_t step = 0; ///< the scheduler's step number, checked by commit()
  std::vector<DecodeRow> decodes;
  std::vector<PrefillChunk> prefills;
  /// Every row's block table, back to back.
  std::vector<KvBlockId> blockTables;
  /// Sent back to the waiting queue this step (their blocks released); the
  /// runner drops any state it keeps for them.
  std::vector<SequenceId> preempted;

  absl::Span<const KvBlockId> blockTable(BlockTableRef ref) const {
    return absl::MakeConstSpan(blockTables).subspan(ref.offset, ref.size);
  }
  /// Tokens computed this step (decode rows + chunk tokens).
  int64_t numTokens() const;
  /// The sequences whose rows are sampled, in the order commit() expects
  /// their tokens: the decode rows, then the chunks that sample.
  std::vector<SequenceId> sampledSequences() const;
  bool empty() const { return decodes.empty() && prefills.empty(); }
};

/// A runner's result for one sampled row.
struct SampledToken {
  SequenceId sequence = 0;
  int32_t token = 0;
  /// The caller ends the sequence here (EOS, a stop string); the token is
  /// kept.
  bool stop = false;
};

} // namespace treni
