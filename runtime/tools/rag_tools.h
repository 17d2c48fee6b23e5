//===- rag_tools.h - rag.ingest and rag.search ------------------*- C++ -*-===//
//
// Retrieval for agent workflows, inside the process, over a RagStore
// (rag_store.h) and the models the caller hands in (RagModels):
//
//   rag.ingest {collection, texts: [string], metadata?: {..} | [{..}]}
//     -> {collection, documents, chunks, first_document, ids: [chunk id]}
//   rag.search {collection, query, k? = 5, rerank? = false}
//     -> {collection, method, searched, results: [{id, document, chunk,
//         text, metadata, score, rerank_score?}]}
//
// rag.ingest chunks every text (chunkText: chunkChars bytes, overlapChars
// of overlap), embeds the chunks in batches of embedBatch (isQuery false;
// the context is checked between batches, so a deadline or a cancel stops
// the ingest before anything is stored), and stores them with their text's
// metadata in one transaction. `metadata` is one object for every text or
// an array of one object per text; absent, each text gets {}. A text that
// is empty or only whitespace takes a document number but has no chunk (an
// ingest with no chunk at all stores nothing).
// Bounds: collection [A-Za-z0-9_.-]{1,64}; 1 to 1024 texts, each at most
// 1 MiB of UTF-8; at most 64 KiB of metadata JSON per text; the texts and
// metadata together at most 8 MiB.
//
// rag.search embeds the query (isQuery true), finds the k (1..100) nearest
// chunks by cosine (`method`: "exact", "hnsw" or "hnsw+exact", see
// rag_store.h; `searched`: the vectors in the collection) and returns them
// best first. With rerank, the top max(k, rerankCandidates) go to the
// reranker, and the k it scores highest come back, ordered by rerank_score
// (ties by score). rerank without a reranker model is invalid_arguments.
//
// A collection keeps the embedding model (and dimension) of its first
// ingest: an ingest or search with another model is invalid_arguments
// naming both; an unknown collection is not_found naming it. Errors are
// statuses mapped like the built-ins' (toolErrorFromStatus); a model
// callback that returns the wrong number of vectors or scores, vectors of
// another dimension or non-finite values is an internal error saying so.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/tools/tool_registry.h"

namespace treni {

/// One vector per text, all of one dimension. `isQuery`: the text is a
/// search query (embedding models such as Qwen3-Embedding prefix queries
/// with an instruction), not a passage.
using RagEmbedFunction =
    std::function<absl::StatusOr<std::vector<std::vector<float>>>(
        absl::Span<const std::string> texts, bool isQuery,
        const ToolContext &context)>;
/// One relevance score per document (higher is more relevant).
using RagRerankFunction = std::function<absl::StatusOr<std::vector<float>>(
    const std::string &query, absl::Span<const std::string> documents,
    const ToolContext &context)>;

struct RagModels {
  /// The embedding model's name, recorded with each collection.
  std::string embeddingModel;
  RagEmbedFunction embed;   ///< required
  RagRerankFunction rerank; ///< may be empty: no reranker
};

struct RagToolConfig {
  std::string path = ":memory:"; ///< the SQLite file of the collections
  size_t chunkChars = 1200;      ///< bytes per chunk (16 .. 1 MiB)
  size_t overlapChars = 200;     ///< less than chunkChars / 2
  /// Collections of at most this many vectors are searched exactly; larger
  /// ones through an HNSW index.
  int64_t exactLimit = 1000000;
  int64_t rerankCandidates = 20; ///< passed to the reranker (1..100)
  int64_t embedBatch = 32;       ///< texts per embed call (1..1024)
  std::chrono::milliseconds busyTimeout{2000};
};

/// Opens the store at config.path and registers rag.ingest and rag.search
/// on it. Fails on a bad config, a missing embed function or model name,
/// or a store that cannot be opened (naming the path).
absl::Status registerRagTools(ToolRegistry &registry,
                              const RagToolConfig &config, RagModels models);

/// The two signatures, without opening anything (for the compiler's tool
/// verification and `tools` exports).
std::vector<ToolSignature> ragToolSignatures();

} // namespace treni
