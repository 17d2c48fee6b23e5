//===- sequence.h - one request's state in the batch scheduler --*- C++ -*-===//
#pragma once

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "runtime/batch/kv_block_pool.h"

namespace treni {

/// Chosen by the caller (the server's request number); unique among the
/// sequences a scheduler holds.
using SequenceId = int64_t;

/// Why the scheduler ended a sequence (cancellation is the caller's).
enum class SequenceFinish {
  Stop,    ///< the caller's verdict on a sampled token (EOS, a stop string)
  Length,  ///< max new tokens generated
  Context, ///< the next token's position would not fit max_seq_len
};
/// "stop", "length", "context".
const char *toString(SequenceFinish reason);

/// A request as the scheduler tracks it. Its token list is the prompt, then
/// the sampled tokens; positions [0, numComputed) have KV rows in the blocks
/// of `blockTable` (row p in block blockTable[p / kKvBlockTokens]). A running
/// sequence has at least one token left to compute (the last sampled one),
/// a waiting one holds no blocks.
struct Sequence {
  SequenceId id = 0;
  std::vector<int32_t> tokens;
  int64_t promptLength = 0;
  int64_t maxNewTokens = 0;
  int64_t numComputed = 0;
  /// Contiguous block ids, as the attention kernel reads them.
  std::vector<KvBlockId> blockTable;
  /// The prefix-cache hashes of the full computed blocks (chaining needs the
  /// last one); blockHashes.size() == numComputed / kKvBlockTokens.
  std::vector<KvBlockHash> blockHashes;
  /// Prompt tokens found in the prefix cache at the first admission
  /// (usage.prompt_tokens_details.cached_tokens).
  int64_t cachedPromptTokens = 0;
  int64_t numPreemptions = 0;
  bool admitted = false; ///< admitted at least once
  bool running = false;  ///< in the running set, else waiting

  int64_t numTokens() const { return int64_t(tokens.size()); }
  int64_t numGenerated() const { return numTokens() - promptLength; }
  /// Tokens whose KV rows are still to be written this admission.
  int64_t numUncomputed() const { return numTokens() - numComputed; }
  absl::Span<const int32_t> generated() const {
    return absl::MakeConstSpan(tokens).subspan(promptLength);
  }
};

/// A sequence the scheduler ended: its blocks are released already.
struct FinishedSequence {
  SequenceId id = 0;
  SequenceFinish reason = SequenceFinish::Stop;
  std::vector<int32_t> generated;
  int64_t cachedPromptTokens = 0;
  int64_t numPreemptions = 0;
};

} // namespace treni
