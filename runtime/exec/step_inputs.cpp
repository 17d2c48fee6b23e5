//===- step_inputs.cpp - checks shared by the executors ------------------===//

#include "runtime/exec/step_inputs.h"

#include "absl/strings/str_cat.h"

namespace treni {

absl::Status checkPrefillChunk(int64_t tokens) {
  if (tokens >= 1 && tokens <= kMaxPrefillChunk)
    return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("the prefill chunk must be 1 to ", kMaxPrefillChunk,
                   " tokens, not ", tokens));
}

absl::Status checkStepInputs(absl::Span<const int32_t> ids,
                             int64_t startPosition, int64_t maxSeq,
                             int64_t vocabSize) {
  int64_t tokens = ids.size();
  if (startPosition < 0 || startPosition + tokens > maxSeq)
    return absl::OutOfRangeError(absl::StrCat(
        "positions ", startPosition, "..", startPosition + tokens - 1,
        " exceed the KV cache (--max-seq ", maxSeq, ")"));
  for (int32_t id : ids)
    if (id < 0 || id >= vocabSize)
      return absl::InvalidArgumentError(absl::StrCat(
          "token id ", id, " is outside the vocabulary [0, ", vocabSize, ")"));
  return absl::OkStatus();
}

absl::Status checkKvPages(const KvPages &pages, int64_t numTableIds,
                          absl::Span<const int32_t> positions,
                          absl::Span<const int32_t> tableSizes,
                          int64_t numBlocks) {
  if (!pages.paged() || !pages.tableOffsets ||
      (numTableIds > 0 && !pages.blockTables))
    return absl::InvalidArgumentError(
        "a paged KV step needs a positive block size, block tables and their "
        "offsets");
  if (positions.size() != tableSizes.size())
    return absl::InvalidArgumentError(
        absl::StrCat("a paged KV step has ", positions.size(),
                     " positions but ", tableSizes.size(), " table sizes"));
  for (size_t row = 0; row < positions.size(); ++row) {
    int64_t offset = pages.tableOffsets[row], size = tableSizes[row];
    if (offset < 0 || size < 0 || offset + size > numTableIds)
      return absl::InvalidArgumentError(absl::StrCat(
          "step row ", row, ": its block table (", size, " ids from ", offset,
          ") lies outside the step's ", numTableIds, " block-table ids"));
    int64_t position = positions[row];
    if (position < 0 || position / pages.blockTokens >= size)
      return absl::InvalidArgumentError(
          absl::StrCat("step row ", row, ": position ", position,
                       " is outside its block table (", size, " blocks of ",
                       pages.blockTokens, " positions)"));
    // The rows of one chunk share a table: its ids are checked once.
    if (row > 0 && offset == pages.tableOffsets[row - 1] &&
        size == tableSizes[row - 1])
      continue;
    for (int64_t entry = 0; entry < size; ++entry) {
      int32_t block = pages.blockTables[offset + entry];
      if (block < 0 || block >= numBlocks)
        return absl::InvalidArgumentError(absl::StrCat(
            "step row ", row, ": block ", block, " (entry ", entry,
            " of its table) is outside the KV pool of ", numBlocks, " blocks"));
    }
  }
  return absl::OkStatus();
}

} // namespace treni
