//===- rag_store.cpp - collections of embedded text chunks ----------------===//

#include "runtime/tools/rag_store.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <omp.h>
#include <shared_mutex>
#include <sqlite3.h>

#include "absl/strings/str_cat.h"
#include <faiss/IndexHNSW.h>
#include <faiss/utils/distances.h>

namespace treni {

namespace {

using FaissLabel = faiss::Index::idx_t;

//===----------------------------------------------------------------------===//
// Chunking
//===----------------------------------------------------------------------===//

bool isSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
         c == '\v';
}

bool isContinuation(char c) { return (uint8_t(c) & 0xC0) == 0x80; }

/// A blank line starts at `pos`: a line break, horizontal space, another.
bool paragraphBreakAt(std::string_view text, size_t pos) {
  if (text[pos] != '\n')
    return false;
  for (size_t i = pos + 1; i < text.size(); ++i) {
    if (text[i] == '\n')
      return true;
    if (!isSpace(text[i]))
      return false;
  }
  return false;
}

/// A sentence ends just before `pos`.
bool sentenceEndsAt(std::string_view text, size_t pos) {
  if (pos == 0 || pos >= text.size())
    return false;
  char last = text[pos - 1];
  if ((last == '.' || last == '!' || last == '?') && isSpace(text[pos]))
    return true;
  if (pos < 3)
    return false;
  std::string_view tail = text.substr(pos - 3, 3);
  return tail == "\xE3\x80\x82" /*。*/ || tail == "\xEF\xBC\x81" /*！*/ ||
         tail == "\xEF\xBC\x9F" /*？*/;
}

/// Where the chunk starting at `start` ends, `text.size() - start >
/// maxChars`: the chunk is [start, result).
size_t chunkEnd(std::string_view text, size_t start, size_t maxChars) {
  size_t end = start + maxChars, half = start + maxChars / 2;
  size_t paragraph = 0, sentence = 0, space = 0;
  for (size_t pos = start + 1; pos <= end; ++pos) {
    if (isSpace(text[pos]))
      space = pos;
    if (pos >= half && paragraphBreakAt(text, pos))
      paragraph = pos;
    if (pos >= half && sentenceEndsAt(text, pos))
      sentence = pos;
  }
  if (paragraph)
    return paragraph;
  if (sentence)
    return sentence;
  if (space)
    return space;
  size_t cut = end;
  while (cut > start && isContinuation(text[cut]))
    --cut;
  return cut > start ? cut : end; // only bytes that are not UTF-8
}

//===----------------------------------------------------------------------===//
// SQLite helpers
//===----------------------------------------------------------------------===//

struct StatementDeleter {
  void operator()(sqlite3_stmt *statement) const {
    sqlite3_finalize(statement);
  }
};
using Statement = std::unique_ptr<sqlite3_stmt, StatementDeleter>;

absl::Status stoppedStatus(const ToolContext &context, std::string_view what) {
  if (context.cancel && context.cancel->cancelled())
    return absl::CancelledError(
        absl::StrCat("rag: ", toAbsl(what), ": cancelled"));
  return absl::DeadlineExceededError(
      absl::StrCat("rag: ", toAbsl(what), ": stopped at the deadline"));
}

void bindText(sqlite3_stmt *statement, int index, std::string_view text) {
  sqlite3_bind_text64(statement, index, text.data(), text.size(), SQLITE_STATIC,
                      SQLITE_UTF8);
}

std::string columnText(sqlite3_stmt *statement, int column) {
  const auto *text =
      reinterpret_cast<const char *>(sqlite3_column_text(statement, column));
  return text ? std::string(text, sqlite3_column_bytes(statement, column))
              : std::string();
}

/// `vector` scaled to unit length; InvalidArgument when it has a non-finite
/// value or is zero.
absl::Status normalize(std::vector<float> &vector, std::string_view what) {
  double sum = 0;
  for (float value : vector) {
    if (!std::isfinite(value))
      return absl::InvalidArgumentError(
          absl::StrCat("rag: ", toAbsl(what), " has a non-finite value"));
    sum += double(value) * value;
  }
  if (!(sum > 0) || !std::isfinite(sum))
    return absl::InvalidArgumentError(absl::StrCat(
        "rag: ", toAbsl(what), " has no direction (all zero or too large)"));
  float scale = float(1.0 / std::sqrt(sum));
  for (float &value : vector)
    value *= scale;
  return absl::OkStatus();
}

} // namespace

std::vector<std::string_view> chunkText(std::string_view text, size_t maxChars,
                                        size_t overlapChars) {
  maxChars = std::max<size_t>(maxChars, 4);
  size_t overlap = std::min(overlapChars, maxChars / 2);
  std::vector<std::string_view> chunks;
  auto trimmed = [&](size_t begin, size_t end) {
    while (end > begin && isSpace(text[end - 1]))
      --end;
    return text.substr(begin, end - begin);
  };
  size_t start = 0, size = text.size();
  while (start < size && isSpace(text[start]))
    ++start;
  while (start < size) {
    if (size - start <= maxChars) {
      chunks.push_back(trimmed(start, size));
      break;
    }
    size_t end = chunkEnd(text, start, maxChars);
    chunks.push_back(trimmed(start, end));
    size_t rest = end;
    while (rest < size && isSpace(text[rest]))
      ++rest;
    if (rest == size)
      break;
    // Step back into this chunk by the overlap, to a character boundary,
    // then to the start of a word if the overlap holds one.
    size_t next = end - start > overlap ? end - overlap : end;
    if (next <= start)
      next = end;
    while (next < end && isContinuation(text[next]))
      ++next;
    if (next < end && next > 0 && !isSpace(text[next - 1]))
      for (size_t pos = next; pos < end; ++pos)
        if (isSpace(text[pos])) {
          next = pos;
          break;
        }
    while (next < size && isSpace(text[next]))
      ++next;
    start = next;
  }
  return chunks;
}

absl::Status validateRagCollectionName(std::string_view name) {
  bool valid = !name.empty() && name.size() <= kRagMaxCollectionName;
  for (char c : name)
    valid =
        valid && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-');
  if (valid)
    return absl::OkStatus();
  // The name is the model's: quote at most the limit, as JSON.
  std::string shown(name.substr(0, kRagMaxCollectionName));
  return absl::InvalidArgumentError(absl::StrCat(
      "rag: collection name ", dumpJson(nlohmann::json(shown)),
      name.size() > kRagMaxCollectionName ? "..." : "", " is not valid: 1 to ",
      kRagMaxCollectionName, " of the characters A-Z a-z 0-9 _ . -"));
}

//===----------------------------------------------------------------------===//
// Index
//===----------------------------------------------------------------------===//

/// A collection's vectors in memory. Rows [0, graphRows()) are in the HNSW
/// graph (its storage holds them), rows [graphRows(), rows()) in `tail`;
/// ids maps every row to its chunk id.
struct RagStore::Index {
  explicit Index(int64_t dimension) : dimension(dimension) {}
  int64_t rows() const { return int64_t(ids.size()); }
  int64_t graphRows() const { return hnsw ? int64_t(hnsw->ntotal) : 0; }

  const int64_t dimension;
  std::shared_timed_mutex mutex; ///< guards the rest
  std::vector<int64_t> ids;
  std::vector<float> tail;
  std::unique_ptr<faiss::IndexHNSWFlat> hnsw;
  /// An HNSW extension failed half way: the store reloads the collection.
  bool broken = false;
};

namespace {

/// Runs FAISS's OpenMP regions on this thread only, while it lives (the
/// setting is per thread; a graph build keeps every core).
class SingleOmpThread {
public:
  SingleOmpThread() : saved_(omp_get_max_threads()) { omp_set_num_threads(1); }
  ~SingleOmpThread() { omp_set_num_threads(saved_); }
  SingleOmpThread(const SingleOmpThread &) = delete;
  SingleOmpThread &operator=(const SingleOmpThread &) = delete;

private:
  int saved_;
};

/// Takes `lock` (shared or unique), giving up when the context stops.
template <typename Lock>
bool lockUnlessStopped(Lock &lock, const ToolContext &context) {
  while (!lock.try_lock_for(std::chrono::milliseconds(20)))
    if (context.shouldStop())
      return false;
  return true;
}

} // namespace

//===----------------------------------------------------------------------===//
// Session: one call's hold on the connection
//===----------------------------------------------------------------------===//

class RagStore::Session {
public:
  Session(RagStore &store, const ToolContext &context, std::string what)
      : store_(store), context_(context), what_(std::move(what)),
        lock_(store.dbMutex_, std::defer_lock) {}
  ~Session() {
    if (inTransaction_ && !sqlite3_get_autocommit(store_.db_)) {
      store_.interruptible_ = false;
      sqlite3_exec(store_.db_, "ROLLBACK", nullptr, nullptr, nullptr);
      store_.interruptible_ = true;
    }
    if (lock_.owns_lock())
      store_.context_ = nullptr;
  }

  /// Locks the connection (giving up when the context stops) and points
  /// the progress handler at this call's context.
  absl::Status acquire() {
    while (!lock_.try_lock_for(std::chrono::milliseconds(20)))
      if (context_.shouldStop())
        return stopped();
    store_.context_ = &context_;
    return context_.shouldStop() ? stopped() : absl::OkStatus();
  }

  absl::Status stopped() const { return stoppedStatus(context_, what_); }

  absl::Status status(int code) const {
    std::string message =
        absl::StrCat("rag: ", what_, ": sqlite: ", sqlite3_errmsg(store_.db_));
    switch (code & 0xff) {
    case SQLITE_INTERRUPT:
      return stopped();
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::UnavailableError(message);
    case SQLITE_FULL:
    case SQLITE_TOOBIG:
    case SQLITE_NOMEM:
      return absl::ResourceExhaustedError(message);
    case SQLITE_READONLY:
    case SQLITE_PERM:
      return absl::PermissionDeniedError(message);
    default:
      return absl::InternalError(message);
    }
  }

  absl::StatusOr<Statement> prepare(std::string_view sql) const {
    sqlite3_stmt *raw = nullptr;
    int rc = sqlite3_prepare_v2(store_.db_, sql.data(), int(sql.size()), &raw,
                                nullptr);
    Statement statement(raw);
    if (rc != SQLITE_OK)
      return status(rc);
    return statement;
  }

  /// Steps a statement that returns no row.
  absl::Status run(sqlite3_stmt *statement) const {
    int rc = sqlite3_step(statement);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
      return status(rc);
    return absl::OkStatus();
  }

  absl::Status exec(const char *sql) const {
    int rc = sqlite3_exec(store_.db_, sql, nullptr, nullptr, nullptr);
    return rc == SQLITE_OK ? absl::OkStatus() : status(rc);
  }

  absl::Status beginTransaction() {
    if (absl::Status s = exec("BEGIN IMMEDIATE"); !s.ok())
      return s;
    inTransaction_ = true;
    return absl::OkStatus();
  }

  absl::Status commit() {
    if (context_.shouldStop())
      return stopped();
    if (absl::Status s = exec("COMMIT"); !s.ok())
      return s;
    inTransaction_ = false;
    return absl::OkStatus();
  }

  sqlite3 *db() const { return store_.db_; }

private:
  RagStore &store_;
  const ToolContext &context_;
  std::string what_;
  std::unique_lock<std::timed_mutex> lock_;
  bool inTransaction_ = false;
};

//===----------------------------------------------------------------------===//
// RagStore
//===----------------------------------------------------------------------===//

namespace {

constexpr const char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS rag_collections(
  name TEXT PRIMARY KEY,
  dimension INTEGER NOT NULL,
  model TEXT NOT NULL,
  created TEXT NOT NULL,
  next_document INTEGER NOT NULL,
  chunks INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rag_documents(
  collection TEXT NOT NULL,
  document INTEGER NOT NULL,
  metadata TEXT NOT NULL,
  PRIMARY KEY(collection, document)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rag_chunks(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  collection TEXT NOT NULL,
  document INTEGER NOT NULL,
  chunk INTEGER NOT NULL,
  text TEXT NOT NULL,
  vector BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS rag_chunks_by_collection
  ON rag_chunks(collection, id);
PRAGMA user_version = 1;
)sql";
static_assert(kRagSchemaVersion == 1, "update kSchema's user_version");

} // namespace

int RagStore::onProgress(void *self) {
  auto *store = static_cast<RagStore *>(self);
  return store->interruptible_ && store->context_ &&
                 store->context_->shouldStop()
             ? 1
             : 0;
}

absl::StatusOr<std::shared_ptr<RagStore>>
RagStore::open(const std::string &path, RagStoreOptions options) {
  std::shared_ptr<RagStore> store(new RagStore(path, options));
  int rc = sqlite3_open_v2(path.c_str(), &store->db_,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                               SQLITE_OPEN_FULLMUTEX,
                           nullptr);
  if (rc != SQLITE_OK)
    return absl::FailedPreconditionError(absl::StrCat(
        "rag: cannot open database '", path,
        "': ", store->db_ ? sqlite3_errmsg(store->db_) : sqlite3_errstr(rc)));
  sqlite3 *db = store->db_;
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, int(options.busyTimeout.count()));
  sqlite3_enable_load_extension(db, 0);
  sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);
  sqlite3_progress_handler(db, 1000, &RagStore::onProgress, store.get());

  ToolContext context;
  Session session(*store, context, absl::StrCat("opening '", path, "'"));
  if (absl::Status s = session.acquire(); !s.ok())
    return s;
  absl::StatusOr<Statement> version = session.prepare("PRAGMA user_version");
  if (!version.ok())
    return version.status();
  if (sqlite3_step(version->get()) != SQLITE_ROW)
    return session.status(sqlite3_errcode(db));
  int64_t found = sqlite3_column_int64(version->get(), 0);
  version->reset();
  if (found > kRagSchemaVersion)
    return absl::FailedPreconditionError(absl::StrCat(
        "rag: '", path, "' holds schema version ", found,
        "; this treni reads version ", kRagSchemaVersion, " and older"));
  if (absl::Status s = session.beginTransaction(); !s.ok())
    return s;
  if (absl::Status s = session.exec(kSchema); !s.ok())
    return s;
  if (absl::Status s = session.commit(); !s.ok())
    return s;
  return store;
}

RagStore::~RagStore() { sqlite3_close_v2(db_); }

void RagStore::forgetIndex(std::string_view name) {
  std::lock_guard<std::mutex> lock(indexesMutex_);
  auto it = indexes_.find(name);
  if (it != indexes_.end())
    indexes_.erase(it);
}

absl::StatusOr<std::shared_ptr<RagStore::Index>>
RagStore::loadIndex(std::string_view name, const ToolContext &context) {
  auto find = [&]() -> std::shared_ptr<Index> {
    std::lock_guard<std::mutex> lock(indexesMutex_);
    auto it = indexes_.find(name);
    return it == indexes_.end() ? nullptr : it->second;
  };
  if (std::shared_ptr<Index> index = find())
    return index;
  Session session(*this, context,
                  absl::StrCat("loading collection '", toAbsl(name), "'"));
  if (absl::Status s = session.acquire(); !s.ok())
    return s;
  if (std::shared_ptr<Index> index = find()) // loaded while we waited
    return index;

  absl::StatusOr<Statement> collection =
      session.prepare("SELECT dimension FROM rag_collections WHERE name = ?1");
  if (!collection.ok())
    return collection.status();
  bindText(collection->get(), 1, name);
  int rc = sqlite3_step(collection->get());
  if (rc == SQLITE_DONE)
    return absl::NotFoundError(absl::StrCat("rag: no collection named '",
                                            toAbsl(name),
                                            "' (rag.ingest creates it)"));
  if (rc != SQLITE_ROW)
    return session.status(rc);
  int64_t dimension = sqlite3_column_int64(collection->get(), 0);
  if (dimension < 1 || dimension > kRagMaxDimension)
    return absl::InternalError(absl::StrCat("rag: collection '", toAbsl(name),
                                            "' has dimension ", dimension,
                                            " (the file is damaged)"));

  auto index = std::make_shared<Index>(dimension);
  absl::StatusOr<Statement> rows = session.prepare(
      "SELECT id, vector FROM rag_chunks WHERE collection = ?1 ORDER BY id");
  if (!rows.ok())
    return rows.status();
  bindText(rows->get(), 1, name);
  try {
    while ((rc = sqlite3_step(rows->get())) == SQLITE_ROW) {
      int64_t id = sqlite3_column_int64(rows->get(), 0);
      const void *blob = sqlite3_column_blob(rows->get(), 1);
      size_t bytes = size_t(sqlite3_column_bytes(rows->get(), 1));
      if (bytes != size_t(dimension) * sizeof(float))
        return absl::InternalError(absl::StrCat(
            "rag: chunk ", id, " of collection '", toAbsl(name), "' has ",
            bytes, " bytes of vector; its dimension ", dimension, " needs ",
            dimension * int64_t(sizeof(float)), " (the file is damaged)"));
      index->ids.push_back(id);
      size_t at = index->tail.size();
      index->tail.resize(at + size_t(dimension));
      std::memcpy(index->tail.data() + at, blob, bytes);
    }
  } catch (const std::bad_alloc &) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "rag: collection '", toAbsl(name), "' does not fit in memory"));
  }
  if (rc != SQLITE_DONE)
    return session.status(rc);
  std::lock_guard<std::mutex> lock(indexesMutex_);
  indexes_[std::string(name)] = index;
  return index;
}

absl::StatusOr<RagAddResult> RagStore::add(std::string_view collection,
                                           std::string_view model,
                                           std::vector<RagDocument> documents,
                                           const ToolContext &context) {
  if (absl::Status s = validateRagCollectionName(collection); !s.ok())
    return s;
  if (model.empty() || model.size() > kRagMaxModelName)
    return absl::InvalidArgumentError(
        absl::StrCat("rag: the embedding model's name must be 1 to ",
                     kRagMaxModelName, " bytes"));
  if (documents.size() > kRagMaxTexts)
    return absl::InvalidArgumentError(
        absl::StrCat("rag: ", documents.size(),
                     " documents in one ingest; at most ", kRagMaxTexts));
  int64_t dimension = 0;
  size_t chunkCount = 0;
  for (size_t d = 0; d < documents.size(); ++d) {
    RagDocument &document = documents[d];
    if (document.metadata.size() > kRagMaxMetadataBytes)
      return absl::InvalidArgumentError(absl::StrCat(
          "rag: the metadata of document ", d, " is ", document.metadata.size(),
          " bytes; at most ", kRagMaxMetadataBytes));
    for (size_t c = 0; c < document.chunks.size(); ++c) {
      RagChunk &chunk = document.chunks[c];
      std::string what = absl::StrCat("chunk ", c, " of document ", d);
      if (chunk.text.size() > kRagMaxTextBytes)
        return absl::InvalidArgumentError(
            absl::StrCat("rag: ", what, " is ", chunk.text.size(),
                         " bytes; at most ", kRagMaxTextBytes));
      int64_t size = int64_t(chunk.vector.size());
      if (dimension == 0)
        dimension = size;
      if (size != dimension || size < 1 || size > kRagMaxDimension)
        return absl::InvalidArgumentError(
            absl::StrCat("rag: the vector of ", what, " has ", size,
                         " dimensions; the ingest's first has ", dimension,
                         " (1 to ", kRagMaxDimension, ")"));
      if (absl::Status s =
              normalize(chunk.vector, absl::StrCat("the vector of ", what));
          !s.ok())
        return s;
      ++chunkCount;
    }
  }

  std::string name(collection);
  Session session(*this, context, absl::StrCat("ingest into '", name, "'"));
  if (absl::Status s = session.acquire(); !s.ok())
    return s;
  if (absl::Status s = session.beginTransaction(); !s.ok())
    return s;
  absl::StatusOr<Statement> existing = session.prepare(
      "SELECT dimension, model, next_document FROM rag_collections "
      "WHERE name = ?1");
  if (!existing.ok())
    return existing.status();
  bindText(existing->get(), 1, name);
  int rc = sqlite3_step(existing->get());
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return session.status(rc);
  RagAddResult result;
  bool exists = rc == SQLITE_ROW;
  if (exists) {
    int64_t storedDimension = sqlite3_column_int64(existing->get(), 0);
    std::string storedModel = columnText(existing->get(), 1);
    result.firstDocument = sqlite3_column_int64(existing->get(), 2);
    if (chunkCount > 0 &&
        (storedDimension != dimension || storedModel != model))
      return absl::InvalidArgumentError(absl::StrCat(
          "rag: collection '", name, "' holds ", storedDimension,
          "-dimensional vectors of model '", storedModel, "'; this ingest has ",
          dimension, "-dimensional vectors of model '", toAbsl(model),
          "' (a collection keeps the embedding model of its first ingest)"));
  }
  existing->reset();
  if (chunkCount == 0)
    return result; // nothing to store, and no dimension to create one with

  if (!exists) {
    absl::StatusOr<Statement> create = session.prepare(
        "INSERT INTO rag_collections(name, dimension, model, created, "
        "next_document, chunks) VALUES (?1, ?2, ?3, "
        "strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 0, 0)");
    if (!create.ok())
      return create.status();
    bindText(create->get(), 1, name);
    sqlite3_bind_int64(create->get(), 2, dimension);
    bindText(create->get(), 3, model);
    if (absl::Status s = session.run(create->get()); !s.ok())
      return s;
  }
  absl::StatusOr<Statement> insertDocument = session.prepare(
      "INSERT INTO rag_documents(collection, document, metadata) "
      "VALUES (?1, ?2, ?3)");
  if (!insertDocument.ok())
    return insertDocument.status();
  absl::StatusOr<Statement> insertChunk = session.prepare(
      "INSERT INTO rag_chunks(collection, document, chunk, text, vector) "
      "VALUES (?1, ?2, ?3, ?4, ?5)");
  if (!insertChunk.ok())
    return insertChunk.status();
  result.ids.reserve(chunkCount);
  for (size_t d = 0; d < documents.size(); ++d) {
    const RagDocument &document = documents[d];
    int64_t number = result.firstDocument + int64_t(d);
    sqlite3_stmt *statement = insertDocument->get();
    sqlite3_reset(statement);
    bindText(statement, 1, name);
    sqlite3_bind_int64(statement, 2, number);
    bindText(statement, 3, document.metadata);
    if (absl::Status s = session.run(statement); !s.ok())
      return s;
    for (size_t c = 0; c < document.chunks.size(); ++c) {
      const RagChunk &chunk = document.chunks[c];
      statement = insertChunk->get();
      sqlite3_reset(statement);
      bindText(statement, 1, name);
      sqlite3_bind_int64(statement, 2, number);
      sqlite3_bind_int64(statement, 3, int64_t(c));
      bindText(statement, 4, chunk.text);
      sqlite3_bind_blob64(statement, 5, chunk.vector.data(),
                          chunk.vector.size() * sizeof(float), SQLITE_STATIC);
      if (absl::Status s = session.run(statement); !s.ok())
        return s;
      result.ids.push_back(sqlite3_last_insert_rowid(session.db()));
    }
  }
  absl::StatusOr<Statement> advance = session.prepare(
      "UPDATE rag_collections SET next_document = ?2, chunks = chunks + ?3 "
      "WHERE name = ?1");
  if (!advance.ok())
    return advance.status();
  bindText(advance->get(), 1, name);
  sqlite3_bind_int64(advance->get(), 2,
                     result.firstDocument + int64_t(documents.size()));
  sqlite3_bind_int64(advance->get(), 3, int64_t(chunkCount));
  if (absl::Status s = session.run(advance->get()); !s.ok())
    return s;
  if (absl::Status s = session.commit(); !s.ok())
    return s;

  // Committed; extend the collection's matrix if it is loaded (still under
  // the connection's lock, so no load can interleave). When that cannot be
  // done, the next search reloads it from SQLite instead.
  std::shared_ptr<Index> index;
  {
    std::lock_guard<std::mutex> lock(indexesMutex_);
    auto it = indexes_.find(name);
    if (it != indexes_.end())
      index = it->second;
  }
  if (!index)
    return result;
  std::unique_lock<std::shared_timed_mutex> lock(index->mutex, std::defer_lock);
  bool extended = false;
  if (lockUnlessStopped(lock, context) && !index->broken) {
    try {
      index->ids.reserve(index->ids.size() + chunkCount);
      index->tail.reserve(index->tail.size() + chunkCount * size_t(dimension));
      size_t id = 0;
      for (const RagDocument &document : documents)
        for (const RagChunk &chunk : document.chunks) {
          index->ids.push_back(result.ids[id++]);
          index->tail.insert(index->tail.end(), chunk.vector.begin(),
                             chunk.vector.end());
        }
      extended = true;
    } catch (const std::bad_alloc &) {
      index->broken = true;
    }
  }
  if (!extended)
    forgetIndex(name);
  return result;
}

absl::StatusOr<RagSearchResult> RagStore::search(std::string_view collection,
                                                 absl::Span<const float> query,
                                                 int64_t k,
                                                 const ToolContext &context) {
  if (absl::Status s = validateRagCollectionName(collection); !s.ok())
    return s;
  if (k < 1 || k > kRagMaxK)
    return absl::InvalidArgumentError(
        absl::StrCat("rag: k must be 1 to ", kRagMaxK, ", got ", k));
  std::string name(collection);
  std::string what = absl::StrCat("search of '", name, "'");
  std::vector<float> normalized(query.begin(), query.end());
  if (absl::Status s = normalize(normalized, "the query vector"); !s.ok())
    return s;

  // The collection's matrix, and whether part of it should go into the
  // graph first (past the exact limit).
  std::shared_ptr<Index> index;
  bool needsGraph = false;
  for (int attempt = 0;; ++attempt) {
    absl::StatusOr<std::shared_ptr<Index>> loaded = loadIndex(name, context);
    if (!loaded.ok())
      return loaded.status();
    index = *loaded;
    std::shared_lock<std::shared_timed_mutex> lock(index->mutex,
                                                   std::defer_lock);
    if (!lockUnlessStopped(lock, context))
      return stoppedStatus(context, what);
    if (!index->broken) {
      needsGraph = index->rows() > options_.exactLimit &&
                   index->graphRows() < index->rows();
      break;
    }
    lock.unlock();
    forgetIndex(name);
    if (attempt > 0)
      return absl::InternalError(
          absl::StrCat("rag: ", what, ": the collection's index failed twice"));
  }
  if (int64_t(normalized.size()) != index->dimension)
    return absl::InvalidArgumentError(
        absl::StrCat("rag: the query vector has ", normalized.size(),
                     " dimensions; collection '", name, "' holds ",
                     index->dimension, "-dimensional vectors"));
  const size_t dimension = size_t(index->dimension);

  if (needsGraph) {
    std::unique_lock<std::shared_timed_mutex> lock(index->mutex,
                                                   std::defer_lock);
    if (!lockUnlessStopped(lock, context))
      return stoppedStatus(context, what);
    ToolClock::time_point budget = ToolClock::time_point::max();
    if (context.hasDeadline())
      budget = ToolClock::now() + context.remaining() / 2;
    size_t moved = 0;
    try {
      if (!index->hnsw) {
        index->hnsw = std::make_unique<faiss::IndexHNSWFlat>(
            int(dimension), options_.hnswNeighbors,
            faiss::METRIC_INNER_PRODUCT);
        index->hnsw->hnsw.efConstruction = options_.hnswEfConstruction;
        index->hnsw->hnsw.efSearch =
            std::max<int>(options_.hnswEfSearch, int(kRagMaxK));
      }
      size_t pending = size_t(index->rows() - index->graphRows());
      while (moved < pending && !context.shouldStop() &&
             ToolClock::now() < budget) {
        size_t batch =
            std::min(size_t(std::max<int64_t>(options_.hnswBuildBatch, 1)),
                     pending - moved);
        index->hnsw->add(FaissLabel(batch),
                         index->tail.data() + moved * dimension);
        moved += batch;
      }
      index->tail.erase(index->tail.begin(),
                        index->tail.begin() + moved * dimension);
    } catch (const std::exception &) {
      // The graph and the matrix may disagree now: reload next time.
      index->broken = true;
      lock.unlock();
      forgetIndex(name);
      return absl::InternalError(absl::StrCat(
          "rag: ", what, ": building the HNSW index failed (out of memory?)"));
    }
  }

  struct Candidate {
    float score;
    int64_t row;
  };
  std::vector<Candidate> candidates;
  RagSearchResult result;
  std::vector<int64_t> ids;
  {
    std::shared_lock<std::shared_timed_mutex> lock(index->mutex,
                                                   std::defer_lock);
    if (!lockUnlessStopped(lock, context))
      return stoppedStatus(context, what);
    if (index->broken)
      return absl::UnavailableError(absl::StrCat(
          "rag: ", what, ": the collection's index is being reloaded"));
    int64_t rows = index->rows(), graphRows = index->graphRows();
    int64_t tailRows = rows - graphRows;
    try {
      // One query: FAISS's OpenMP team (and, for HNSW, a visited table of
      // every vector per thread) would cost more than it saves, times the
      // searches running at once.
      SingleOmpThread single;
      std::vector<float> scores(static_cast<size_t>(k));
      std::vector<FaissLabel> labels(static_cast<size_t>(k));
      if (graphRows > 0) {
        int64_t want = std::min(k, graphRows);
        index->hnsw->search(1, normalized.data(), want, scores.data(),
                            labels.data());
        for (int64_t i = 0; i < want; ++i)
          if (labels[i] >= 0)
            candidates.push_back({scores[i], labels[i]});
      }
      if (tailRows > 0) {
        int64_t want = std::min(k, tailRows);
        std::vector<int64_t> rowLabels(static_cast<size_t>(want));
        faiss::knn_inner_product(normalized.data(), index->tail.data(),
                                 dimension, 1, size_t(tailRows), size_t(want),
                                 scores.data(), rowLabels.data());
        for (int64_t i = 0; i < want; ++i)
          if (rowLabels[i] >= 0)
            candidates.push_back({scores[i], graphRows + rowLabels[i]});
      }
    } catch (const std::exception &) {
      return absl::InternalError(
          absl::StrCat("rag: ", what, ": the vector search failed"));
    }
    std::sort(candidates.begin(), candidates.end(),
              [](const Candidate &a, const Candidate &b) {
                return a.score != b.score ? a.score > b.score : a.row < b.row;
              });
    if (int64_t(candidates.size()) > k)
      candidates.resize(size_t(k));
    for (const Candidate &candidate : candidates)
      ids.push_back(index->ids[size_t(candidate.row)]);
    result.searched = rows;
    result.method = graphRows == 0  ? "exact"
                    : tailRows == 0 ? "hnsw"
                                    : "hnsw+exact";
  }
  if (ids.empty())
    return result;

  // The hits' text and metadata (ids are numbers, bound, never spliced).
  std::string sql =
      "SELECT c.id, c.document, c.chunk, c.text, d.metadata FROM rag_chunks c "
      "JOIN rag_documents d ON d.collection = c.collection AND d.document = "
      "c.document WHERE c.id IN (?1";
  for (size_t i = 1; i < ids.size(); ++i)
    absl::StrAppend(&sql, ", ?", i + 1);
  sql += ")";
  Session session(*this, context, what);
  if (absl::Status s = session.acquire(); !s.ok())
    return s;
  absl::StatusOr<Statement> statement = session.prepare(sql);
  if (!statement.ok())
    return statement.status();
  for (size_t i = 0; i < ids.size(); ++i)
    sqlite3_bind_int64(statement->get(), int(i + 1), ids[i]);
  std::map<int64_t, RagHit> found;
  int rc;
  while ((rc = sqlite3_step(statement->get())) == SQLITE_ROW) {
    RagHit hit;
    hit.id = sqlite3_column_int64(statement->get(), 0);
    hit.document = sqlite3_column_int64(statement->get(), 1);
    hit.chunk = sqlite3_column_int64(statement->get(), 2);
    hit.text = columnText(statement->get(), 3);
    hit.metadata = columnText(statement->get(), 4);
    found[hit.id] = std::move(hit);
  }
  if (rc != SQLITE_DONE)
    return session.status(rc);
  // A chunk missing here was deleted with its collection since.
  for (size_t i = 0; i < ids.size(); ++i) {
    auto it = found.find(ids[i]);
    if (it == found.end())
      continue;
    it->second.score = candidates[i].score;
    result.hits.push_back(std::move(it->second));
  }
  return result;
}

namespace {

constexpr const char kCollectionColumns[] =
    "SELECT name, dimension, model, created, next_document, chunks "
    "FROM rag_collections";

RagCollectionInfo collectionInfo(sqlite3_stmt *statement) {
  RagCollectionInfo info;
  info.name = columnText(statement, 0);
  info.dimension = sqlite3_column_int64(statement, 1);
  info.model = columnText(statement, 2);
  info.created = columnText(statement, 3);
  info.documents = sqlite3_column_int64(statement, 4);
  info.chunks = sqlite3_column_int64(statement, 5);
  return info;
}

} // namespace

absl::StatusOr<std::vector<RagCollectionInfo>>
RagStore::collections(const ToolContext &context) {
  Session session(*this, context, "listing collections");
  if (absl::Status s = session.acquire(); !s.ok())
    return s;
  absl::StatusOr<Statement> statement =
      session.prepare(absl::StrCat(kCollectionColumns, " ORDER BY name"));
  if (!statement.ok())
    return statement.status();
  std::vector<RagCollectionInfo> infos;
  int rc;
  while ((rc = sqlite3_step(statement->get())) == SQLITE_ROW)
    infos.push_back(collectionInfo(statement->get()));
  if (rc != SQLITE_DONE)
    return session.status(rc);
  return infos;
}

absl::StatusOr<std::optional<RagCollectionInfo>>
RagStore::collection(std::string_view name, const ToolContext &context) {
  if (absl::Status s = validateRagCollectionName(name); !s.ok())
    return s;
  Session session(*this, context,
                  absl::StrCat("reading collection '", toAbsl(name), "'"));
  if (absl::Status s = session.acquire(); !s.ok())
    return s;
  absl::StatusOr<Statement> statement =
      session.prepare(absl::StrCat(kCollectionColumns, " WHERE name = ?1"));
  if (!statement.ok())
    return statement.status();
  bindText(statement->get(), 1, name);
  int rc = sqlite3_step(statement->get());
  if (rc == SQLITE_DONE)
    return std::optional<RagCollectionInfo>();
  if (rc != SQLITE_ROW)
    return session.status(rc);
  return std::optional<RagCollectionInfo>(collectionInfo(statement->get()));
}

absl::Status RagStore::deleteCollection(std::string_view name,
                                        const ToolContext &context) {
  if (absl::Status s = validateRagCollectionName(name); !s.ok())
    return s;
  Session session(*this, context,
                  absl::StrCat("deleting collection '", toAbsl(name), "'"));
  if (absl::Status s = session.acquire(); !s.ok())
    return s;
  if (absl::Status s = session.beginTransaction(); !s.ok())
    return s;
  bool first = true;
  for (const char *sql : {"DELETE FROM rag_collections WHERE name = ?1",
                          "DELETE FROM rag_documents WHERE collection = ?1",
                          "DELETE FROM rag_chunks WHERE collection = ?1"}) {
    absl::StatusOr<Statement> statement = session.prepare(sql);
    if (!statement.ok())
      return statement.status();
    bindText(statement->get(), 1, name);
    if (absl::Status s = session.run(statement->get()); !s.ok())
      return s;
    if (first && sqlite3_changes64(session.db()) == 0)
      return absl::NotFoundError(
          absl::StrCat("rag: no collection named '", toAbsl(name), "'"));
    first = false;
  }
  if (absl::Status s = session.commit(); !s.ok())
    return s;
  forgetIndex(name);
  return absl::OkStatus();
}

} // namespace treni
