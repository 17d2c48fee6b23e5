//===- rag_store.h - collections of embedded text chunks --------*- C++ -*-===//
//
// The storage and search behind rag.ingest and rag.search (rag_tools.h),
// independent of any model: the caller embeds, the store keeps and finds.
//
// SQLite holds everything, so collections survive restarts (schema version
// kRagSchemaVersion in PRAGMA user_version; a newer one is refused):
//   rag_collections(name, dimension, model, created, next_document, chunks)
//   rag_documents(collection, document, metadata)
//   rag_chunks(id, collection, document, chunk, text, vector)
// `metadata` is an object's JSON text, kept once per document (not per
// chunk: a document's metadata times its chunks would let one ingest write
// far more than it sent); `vector` is the float32 values as a little-endian
// BLOB. A collection's dimension and embedding model are fixed by its first
// ingest; a later one with another is refused, naming both. Documents are
// numbered per collection across ingests (0, 1, ...); chunk ids are unique
// in the file and never reused (AUTOINCREMENT).
//
// Search is by inner product over L2-normalised vectors (cosine; the store
// normalises what it is given). A collection's vectors are loaded from
// SQLite once, on first use, into one in-memory matrix that add() extends,
// so a search reads SQLite only for the text and metadata of its hits.
//  - "exact": at most exactLimit vectors: one pass over the matrix
//    (faiss::knn_inner_product, a top-k heap), the true top k.
//  - "hnsw": more: a FAISS HNSW graph (IndexHNSWFlat, inner product) over
//    the vectors, built on the first search that needs it and extended with
//    what later ingests add. The build goes in batches, checking the
//    context between them, and stops at half the time left before the
//    deadline; vectors not in the graph yet are searched exactly and the
//    two top-k lists merged ("hnsw+exact"), so a search always sees every
//    vector, and the next one carries on building. A vector in the graph
//    leaves the exact matrix, so memory holds one copy (two during a build).
//    The graph lives in memory only: after a restart the first search past
//    the limit builds it again. A build uses every core (OpenMP); a search
//    runs on the caller's thread alone.
//
// Thread-safe: one SQLite connection, serialized, each statement
// interrupted (progress handler) when the call's context stops (deadline or
// cancellation); searches of a collection run concurrently, an ingest's
// append to the matrix or an HNSW extension excludes them for a while.
//
// The inputs come from a model-written workflow, so they are bounded (the
// constants below), here as well as in the tools.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/tools/tool_context.h"

struct sqlite3;

namespace treni {

inline constexpr int kRagSchemaVersion = 1;
inline constexpr size_t kRagMaxCollectionName = 64; ///< [A-Za-z0-9_.-]{1,64}
inline constexpr size_t kRagMaxModelName = 256;
inline constexpr int64_t kRagMaxK = 100;
inline constexpr size_t kRagMaxTexts = 1024;             ///< per ingest
inline constexpr size_t kRagMaxTextBytes = 1 << 20;      ///< a text or query
inline constexpr size_t kRagMaxCallBytes = 8 << 20;      ///< an ingest's input
inline constexpr size_t kRagMaxMetadataBytes = 64 << 10; ///< JSON text
inline constexpr int64_t kRagMaxDimension = 1 << 16;

/// InvalidArgument unless `name` is [A-Za-z0-9_.-]{1,64}.
absl::Status validateRagCollectionName(std::string_view name);

/// Splits UTF-8 `text` into chunks of at most `maxChars` bytes (at least 4,
/// so that any character fits; smaller is taken as 4) that never split a
/// UTF-8 sequence. A chunk ends, by preference, at a paragraph break (a
/// blank line), then after a sentence (. ! ? and whitespace, or 。！？),
/// each only when it keeps the chunk at least half full, then before any
/// whitespace, else after the last character that fits. The next chunk
/// starts about `overlapChars` bytes (at most maxChars / 2) before that
/// end, moved forward to the start of a word when the overlap holds one.
/// Chunks carry no leading or trailing whitespace; whitespace-only text has
/// none. Deterministic. The views point into `text`.
std::vector<std::string_view> chunkText(std::string_view text, size_t maxChars,
                                        size_t overlapChars);

/// A chunk to store: its text and embedding (any length; normalised here).
struct RagChunk {
  std::string text;
  std::vector<float> vector;
};

/// A text of an ingest: its metadata and its chunks, in order (none for an
/// empty text, which still takes a document number).
struct RagDocument {
  std::string metadata = "{}"; ///< an object's JSON text
  std::vector<RagChunk> chunks;
};

struct RagAddResult {
  int64_t firstDocument = 0; ///< the collection's number for documents[0]
  std::vector<int64_t> ids;  ///< per chunk, documents in order
};

struct RagHit {
  int64_t id = 0;
  int64_t document = 0;
  int64_t chunk = 0;
  std::string text;
  std::string metadata; ///< JSON text
  float score = 0;      ///< inner product (cosine)
};

struct RagSearchResult {
  std::string method;       ///< "exact", "hnsw" or "hnsw+exact"
  int64_t searched = 0;     ///< vectors in the collection when searched
  std::vector<RagHit> hits; ///< best first
};

struct RagCollectionInfo {
  std::string name;
  int64_t dimension = 0;
  std::string model;
  std::string created; ///< ISO 8601, UTC
  int64_t documents = 0;
  int64_t chunks = 0;
};

struct RagStoreOptions {
  /// Collections of at most this many vectors are searched exactly.
  int64_t exactLimit = 1000000;
  int hnswNeighbors = 32;          ///< HNSW M
  int hnswEfConstruction = 64;     ///< build-time beam
  int hnswEfSearch = 2 * kRagMaxK; ///< search-time beam (>= k)
  int64_t hnswBuildBatch = 4096;   ///< vectors added between context checks
  /// How long a statement waits for another process's lock on the file.
  std::chrono::milliseconds busyTimeout{2000};
};

class RagStore {
public:
  /// Opens (creating when absent) the database at `path`, a file or
  /// ":memory:", and its tables. Fails when it cannot be opened (naming the
  /// path) or holds a newer schema.
  static absl::StatusOr<std::shared_ptr<RagStore>>
  open(const std::string &path, RagStoreOptions options = {});
  ~RagStore();
  RagStore(const RagStore &) = delete;
  RagStore &operator=(const RagStore &) = delete;

  /// Stores `documents` in one transaction, creating the collection on its
  /// first add. An add without any chunk stores nothing (no dimension to
  /// check; its documents take no numbers). At most kRagMaxTexts
  /// documents, each chunk's text at most kRagMaxTextBytes, metadata at
  /// most kRagMaxMetadataBytes; all vectors of one dimension
  /// (1..kRagMaxDimension), the collection's if it exists, finite and not
  /// zero; `model` (1..kRagMaxModelName bytes) the collection's. Nothing is
  /// stored when a check fails or the context stops the call.
  absl::StatusOr<RagAddResult> add(std::string_view collection,
                                   std::string_view model,
                                   std::vector<RagDocument> documents,
                                   const ToolContext &context);

  /// The `k` (1..kRagMaxK) chunks nearest `query` (of the collection's
  /// dimension). NotFound when the collection does not exist.
  absl::StatusOr<RagSearchResult> search(std::string_view collection,
                                         absl::Span<const float> query,
                                         int64_t k, const ToolContext &context);

  /// The collection's description; nullopt when it does not exist.
  absl::StatusOr<std::optional<RagCollectionInfo>>
  collection(std::string_view name, const ToolContext &context);
  /// Every collection, by name.
  absl::StatusOr<std::vector<RagCollectionInfo>>
  collections(const ToolContext &context);
  /// Removes a collection with its documents and chunks; NotFound when it
  /// does not exist.
  absl::Status deleteCollection(std::string_view name,
                                const ToolContext &context);

  const RagStoreOptions &options() const { return options_; }

  struct Index;  ///< implementation detail: a collection's vectors in memory
  class Session; ///< implementation detail: one call's hold on SQLite

private:
  RagStore(std::string path, RagStoreOptions options)
      : path_(std::move(path)), options_(options) {}
  /// The collection's vectors in memory, loaded on first use.
  absl::StatusOr<std::shared_ptr<Index>> loadIndex(std::string_view name,
                                                   const ToolContext &context);
  void forgetIndex(std::string_view name);
  static int onProgress(void *self);

  std::string path_;
  RagStoreOptions options_;
  sqlite3 *db_ = nullptr;
  /// The connection. Held while a loaded Index joins indexes_ and while an
  /// add extends one, so memory and SQLite change in the same order.
  std::timed_mutex dbMutex_;
  const ToolContext *context_ = nullptr; ///< the running call; dbMutex_
  bool interruptible_ = true;            ///< false while rolling back; dbMutex_
  std::mutex indexesMutex_;
  std::map<std::string, std::shared_ptr<Index>, std::less<>> indexes_;
};

} // namespace treni
