//===- step_inputs.cpp - checks shared by the executors ------------------===//

#include "runtime/exec/step_inputs.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "support/status.h"

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

absl::Status checkDistinctBlocks(absl::Span<const int32_t> table,
                                 int64_t numBlocks) {
  // Blocks outside the pool are checkKvPages' to refuse.
  std::vector<bool> seen(std::max<int64_t>(numBlocks, 0), false);
  for (size_t entry = 0; entry < table.size(); ++entry) {
    int32_t block = table[entry];
    if (block < 0 || block >= numBlocks)
      continue;
    if (seen[block])
      return absl::InvalidArgumentError(
          absl::StrCat("block ", block, " appears twice in the block table (",
                       "again at entry ", entry, ")"));
    seen[block] = true;
  }
  return absl::OkStatus();
}

/// The paged part of checkStepRows: offsets, table sizes, then the tables.
static absl::Status checkStepTables(absl::Span<const int32_t> positions,
                                    const StepTables &tables) {
  int64_t rows = positions.size();
  int64_t numIds = tables.blockTables.size();
  if (int64_t(tables.rowTables.size()) != rows)
    return absl::InvalidArgumentError(
        absl::StrCat("a step has ", rows, " rows but ", tables.rowTables.size(),
                     " table offsets"));
  for (int64_t row = 0; row < rows; ++row) {
    int64_t offset = tables.rowTables[row];
    if (offset < 0 || offset >= numIds)
      return absl::InvalidArgumentError(
          absl::StrCat("step row ", row, ": its table offset ", offset,
                       " is outside the step's ", numIds, " block-table ids"));
  }
  // Tables lie back to back: each one ends where the next one starts.
  std::vector<int32_t> starts(tables.rowTables.begin(), tables.rowTables.end());
  std::sort(starts.begin(), starts.end());
  starts.erase(std::unique(starts.begin(), starts.end()), starts.end());
  std::vector<int32_t> sizes(rows);
  for (int64_t row = 0; row < rows; ++row) {
    int32_t offset = tables.rowTables[row];
    auto next = std::upper_bound(starts.begin(), starts.end(), offset);
    sizes[row] = int32_t((next == starts.end() ? numIds : *next) - offset);
  }
  KvPages pages{tables.blockTokens, tables.blockTables.data(),
                tables.rowTables.data()};
  TRENI_RETURN_IF_ERROR(
      checkKvPages(pages, numIds, positions, sizes, tables.numBlocks));
  std::vector<bool> checked(numIds, false);
  for (int64_t row = 0; row < rows; ++row) {
    int32_t offset = tables.rowTables[row];
    if (checked[offset])
      continue;
    checked[offset] = true;
    absl::Status distinct = checkDistinctBlocks(
        tables.blockTables.subspan(offset, sizes[row]), tables.numBlocks);
    if (!distinct.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("step row ", row, ": ", distinct.message()));
  }
  return absl::OkStatus();
}

absl::Status checkStepRows(absl::Span<const int32_t> ids,
                           absl::Span<const int32_t> positions, int64_t maxSeq,
                           int64_t vocabSize, const StepTables *tables) {
  int64_t rows = ids.size();
  if (int64_t(positions.size()) != rows)
    return absl::InvalidArgumentError(
        absl::StrCat("a step has ", rows, " token ids but ", positions.size(),
                     " positions"));
  if (rows < 1 || rows > kMaxPrefillChunk)
    return absl::InvalidArgumentError(absl::StrCat(
        "a step needs 1 to ", kMaxPrefillChunk, " rows, not ", rows));
  for (int64_t row = 0; row < rows; ++row) {
    if (ids[row] < 0 || ids[row] >= vocabSize)
      return absl::InvalidArgumentError(
          absl::StrCat("step row ", row, ": token id ", ids[row],
                       " is outside the vocabulary [0, ", vocabSize, ")"));
    if (positions[row] < 0 || positions[row] >= maxSeq)
      return absl::InvalidArgumentError(absl::StrCat(
          "step row ", row, ": position ", positions[row],
          " is outside the KV cache's positions [0, ", maxSeq, ")"));
  }
  KvPages pages; // the null view: one sequence, cache row = position
  if (tables) {
    TRENI_RETURN_IF_ERROR(checkStepTables(positions, *tables));
    pages = {tables->blockTokens, tables->blockTables.data(),
             tables->rowTables.data()};
  }
  // Two rows writing one cache row would leave one of them without its K/V
  // (which one depends on the kernel's order).
  std::vector<std::pair<int64_t, int64_t>> writes(rows); // (cache row, row)
  for (int64_t row = 0; row < rows; ++row)
    writes[row] = {pages.cacheRow(row, positions[row]), row};
  std::sort(writes.begin(), writes.end());
  for (int64_t i = 1; i < rows; ++i)
    if (writes[i].first == writes[i - 1].first)
      return absl::InvalidArgumentError(absl::StrCat(
          "step rows ", writes[i - 1].second, " and ", writes[i].second,
          " both write KV cache row ", writes[i].first, " (position ",
          positions[writes[i].second], ")"));
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

std::vector<int32_t> flashChunkTiles(absl::Span<const int32_t> tableOffsets,
                                     absl::Span<const int32_t> positions,
                                     int64_t firstRow, int64_t group,
                                     int64_t blockM) {
  struct Tile {
    int32_t row, rows, vector, lastPosition;
  };
  std::vector<Tile> tiles;
  const int64_t end = std::min(tableOffsets.size(), positions.size());
  for (int64_t row = std::max<int64_t>(firstRow, 0); row < end;) {
    int64_t runEnd = row + 1;
    while (runEnd < end && tableOffsets[runEnd] == tableOffsets[row])
      ++runEnd;
    const int64_t vectors = (runEnd - row) * group;
    for (int64_t first = 0; first < vectors; first += blockM) {
      int64_t last = row + (std::min(first + blockM, vectors) - 1) / group;
      tiles.push_back({int32_t(row), int32_t(runEnd - row), int32_t(first),
                       positions[last]});
    }
    row = runEnd;
  }
  std::stable_sort(tiles.begin(), tiles.end(),
                   [](const Tile &a, const Tile &b) {
                     return a.lastPosition > b.lastPosition;
                   });
  std::vector<int32_t> out;
  out.reserve(3 * tiles.size());
  for (const Tile &tile : tiles)
    out.insert(out.end(), {tile.row, tile.rows, tile.vector});
  return out;
}

} // namespace treni
