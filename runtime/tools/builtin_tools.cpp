//===- builtin_tools.cpp - SQLite, sandboxed files, http.get --------------===//

#include "runtime/tools/builtin_tools.h"

#include <cmath>
#include <limits>
#include <memory>
#include <mutex>
#include <set>
#include <sqlite3.h>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "support/utf8.h"

namespace treni {

namespace {

using json = nlohmann::json;

ToolParameter param(std::string name, ToolType type, std::string description,
                    std::optional<json> defaultValue = std::nullopt,
                    bool required = false) {
  return {std::move(name), type, required, std::move(description),
          std::move(defaultValue)};
}

ToolParameter requiredParam(std::string name, ToolType type,
                            std::string description) {
  return param(std::move(name), type, std::move(description), std::nullopt,
               true);
}

//===----------------------------------------------------------------------===//
// Signatures
//===----------------------------------------------------------------------===//

const char kParamsDescription[] =
    "values bound to the statement's parameters: an array for '?' "
    "placeholders, or an object for named ones (:name, @name, $name)";

ToolSignature sqliteExecSignature() {
  return {"sqlite.exec",
          "Runs SQL statements that change the database (CREATE, INSERT, "
          "UPDATE, DELETE). Values go in params, never in the SQL text.",
          {requiredParam("sql", ToolType::String,
                         "the SQL; several statements only without params"),
           param("params", ToolType::Json, kParamsDescription)},
          ToolType::Json,
          "{changes, last_insert_rowid, statements}"};
}

ToolSignature sqliteQuerySignature() {
  return {"sqlite.query",
          "Runs one read-only SQL statement (SELECT) and returns its rows.",
          {requiredParam("sql", ToolType::String, "one SELECT statement"),
           param("params", ToolType::Json, kParamsDescription),
           param("max_rows", ToolType::Int,
                 "the most rows to return (capped by the tool's limit)")},
          ToolType::Json,
          "{columns: [name], rows: [{column: value}], truncated: bool}",
          /*readOnly=*/true};
}

ToolSignature fileReadSignature() {
  return {"file.read",
          "Reads a file inside the sandbox directory.",
          {requiredParam("path", ToolType::String,
                         "relative to the sandbox; no '..', no symlinks"),
           param("encoding", ToolType::String, "\"utf8\" or \"base64\"",
                 json("utf8"))},
          ToolType::Json,
          "{path, content, bytes, encoding}",
          /*readOnly=*/true};
}

ToolSignature fileWriteSignature() {
  return {"file.write",
          "Writes a file inside the sandbox directory.",
          {requiredParam("path", ToolType::String,
                         "relative to the sandbox; no '..', no symlinks"),
           requiredParam("content", ToolType::String, "the file's content"),
           param("encoding", ToolType::String,
                 "\"utf8\" or \"base64\" (content is base64)", json("utf8")),
           param("append", ToolType::Bool, "append instead of replacing",
                 json(false)),
           param("create_dirs", ToolType::Bool,
                 "create missing directories on the way", json(false))},
          ToolType::Json,
          "{path, bytes}"};
}

ToolSignature httpGetSignature() {
  return {"http.get",
          "Fetches a URL with GET (allowed hosts only; redirects are not "
          "followed).",
          {requiredParam("url", ToolType::String, "http:// or https:// URL"),
           param("headers", ToolType::Json,
                 "request headers, an object of name -> string")},
          ToolType::Json,
          "{status, headers, body} (body_base64 instead of body when the body "
          "is not UTF-8)",
          /*readOnly=*/true};
}

//===----------------------------------------------------------------------===//
// SQLite
//===----------------------------------------------------------------------===//

/// The connection's limits besides the configured length (see the file
/// comment of builtin_tools.h): tight enough that no statement the model
/// writes can make SQLite recurse deeply or build something huge, loose
/// enough for any schema or query a workflow has a use for.
constexpr std::pair<int, int> kSqliteLimits[] = {
    {SQLITE_LIMIT_SQL_LENGTH, 1 << 20},
    {SQLITE_LIMIT_ATTACHED, 0},
    {SQLITE_LIMIT_COLUMN, 500},
    {SQLITE_LIMIT_EXPR_DEPTH, 100},
    {SQLITE_LIMIT_COMPOUND_SELECT, 100},
    {SQLITE_LIMIT_VDBE_OP, 250000},
    {SQLITE_LIMIT_FUNCTION_ARG, 32},
    {SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 1000},
    {SQLITE_LIMIT_VARIABLE_NUMBER, 999},
    {SQLITE_LIMIT_TRIGGER_DEPTH, 10},
    {SQLITE_LIMIT_WORKER_THREADS, 0},
};

/// PRAGMAs that only describe the database. Those marked `takesName` may
/// name a table or index; the others may not be given a value (which would
/// set it).
struct AllowedPragma {
  std::string_view name;
  bool takesName;
};
constexpr AllowedPragma kAllowedPragmas[] = {
    {"table_info", true},       {"table_xinfo", true},
    {"table_list", true},       {"index_list", true},
    {"index_info", true},       {"index_xinfo", true},
    {"foreign_key_list", true}, {"foreign_key_check", true},
    {"integrity_check", true},  {"quick_check", true},
    {"user_version", false},    {"application_id", false},
    {"schema_version", false},  {"data_version", false},
    {"page_count", false},      {"page_size", false},
    {"freelist_count", false},  {"encoding", false},
    {"foreign_keys", false},
};

/// Functions that leak or reach outside the database: fts3_tokenizer()
/// returns a code pointer (defeats ASLR) and with two arguments installs
/// one; load_extension() loads a library; rtreenode() and rtreedepth()
/// are debugging aids that decode a caller-supplied node blob.
constexpr std::string_view kDeniedFunctions[] = {
    "fts3_tokenizer", "load_extension", "rtreenode", "rtreedepth"};

const AllowedPragma *findAllowedPragma(std::string_view name) {
  for (const AllowedPragma &pragma : kAllowedPragmas)
    if (absl::EqualsIgnoreCase(toAbsl(pragma.name), toAbsl(name)))
      return &pragma;
  return nullptr;
}

/// One connection, serialized; the progress handler stops a statement at
/// the running call's deadline.
class SqliteDatabase {
public:
  static absl::StatusOr<std::shared_ptr<SqliteDatabase>>
  open(const SqliteToolConfig &config);
  ~SqliteDatabase() { sqlite3_close_v2(db_); }

  absl::StatusOr<json> exec(const json &args, const ToolContext &context);
  absl::StatusOr<json> query(const json &args, const ToolContext &context);

private:
  explicit SqliteDatabase(const SqliteToolConfig &config) : config_(config) {}
  /// Locks the connection (waiting at most until the context's deadline)
  /// and arms the progress handler for this call.
  absl::StatusOr<std::unique_lock<std::timed_mutex>>
  begin(const ToolContext &context);
  absl::Status error(int code, std::string_view what) const;
  absl::Status bind(sqlite3_stmt *statement, const json &params) const;
  absl::StatusOr<sqlite3_stmt *> prepareOne(const std::string &sql) const;
  static int onProgress(void *self);
  /// The authorizer (file comment); remembers why it refused in denial_.
  static int authorize(void *self, int action, const char *first,
                       const char *second, const char *database,
                       const char *trigger);
  int deny(std::string why);

  SqliteToolConfig config_;
  sqlite3 *db_ = nullptr;
  std::timed_mutex mutex_;
  const ToolContext *context_ = nullptr;    ///< guarded by mutex_
  ToolClock::time_point statementDeadline_; ///< guarded by mutex_
  bool timedOut_ = false;                   ///< guarded by mutex_
  std::string denial_; ///< the authorizer's last refusal; guarded by mutex_
};

struct StatementDeleter {
  void operator()(sqlite3_stmt *statement) const {
    sqlite3_finalize(statement);
  }
};
using Statement = std::unique_ptr<sqlite3_stmt, StatementDeleter>;

absl::StatusOr<std::shared_ptr<SqliteDatabase>>
SqliteDatabase::open(const SqliteToolConfig &config) {
  std::shared_ptr<SqliteDatabase> database(new SqliteDatabase(config));
  int flags = config.readOnly ? SQLITE_OPEN_READONLY
                              : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  flags |= SQLITE_OPEN_FULLMUTEX;
  int rc = sqlite3_open_v2(config.path.c_str(), &database->db_, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string message =
        database->db_ ? sqlite3_errmsg(database->db_) : sqlite3_errstr(rc);
    return absl::FailedPreconditionError(absl::StrCat(
        "sqlite: cannot open database '", config.path, "': ", message));
  }
  sqlite3 *db = database->db_;
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, int(config.busyTimeout.count()));
  // Bounded statements and values; nothing outside this database file (no
  // ATTACH, which can create files anywhere; no extensions); no writes to
  // the schema tables.
  sqlite3_limit(db, SQLITE_LIMIT_LENGTH, config.maxValueBytes);
  for (auto [limit, value] : kSqliteLimits)
    sqlite3_limit(db, limit, value);
  sqlite3_enable_load_extension(db, 0);
  sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, nullptr);
  sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER, 0, nullptr);
  sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);
  sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, nullptr);
  // Temporary tables and sort runs in files, not memory (the authorizer
  // keeps it so).
  if (sqlite3_exec(db, "PRAGMA temp_store = FILE", nullptr, nullptr, nullptr) !=
      SQLITE_OK)
    return absl::InternalError(absl::StrCat(
        "sqlite: cannot configure '", config.path, "': ", sqlite3_errmsg(db)));
  sqlite3_set_authorizer(db, &SqliteDatabase::authorize, database.get());
  sqlite3_progress_handler(db, 1000, &SqliteDatabase::onProgress,
                           database.get());
  return database;
}

int SqliteDatabase::deny(std::string why) {
  denial_ = std::move(why);
  return SQLITE_DENY;
}

int SqliteDatabase::authorize(void *self, int action, const char *first,
                              const char *second, const char *, const char *) {
  auto *database = static_cast<SqliteDatabase *>(self);
  std::string_view a = first ? first : "", b = second ? second : "";
  switch (action) {
  case SQLITE_ATTACH:
  case SQLITE_DETACH:
    return database->deny(
        "ATTACH and DETACH are not allowed (the tools use one database)");
  case SQLITE_PRAGMA: {
    const AllowedPragma *pragma = findAllowedPragma(a);
    if (!pragma || (second && !pragma->takesName))
      return database->deny(absl::StrCat(
          "PRAGMA ", toAbsl(a), " is not allowed",
          second ? " with a value" : "",
          " (only read-only PRAGMAs that describe the schema are)"));
    return SQLITE_OK;
  }
  case SQLITE_READ:
    // The table-valued form of a PRAGMA ("SELECT * FROM pragma_x").
    if (absl::StartsWithIgnoreCase(toAbsl(a), "pragma_") &&
        !findAllowedPragma(a.substr(7)))
      return database->deny(absl::StrCat(
          "reading ", toAbsl(a), ": PRAGMA ", toAbsl(a.substr(7)),
          " is not allowed (only read-only PRAGMAs that describe the "
          "schema are)"));
    return SQLITE_OK;
  case SQLITE_FUNCTION:
    for (std::string_view denied : kDeniedFunctions)
      if (absl::EqualsIgnoreCase(toAbsl(b), toAbsl(denied)))
        return database->deny(
            absl::StrCat("function ", toAbsl(b), "() is not allowed"));
    return SQLITE_OK;
  default:
    return SQLITE_OK;
  }
}

int SqliteDatabase::onProgress(void *self) {
  auto *database = static_cast<SqliteDatabase *>(self);
  if (!database->context_)
    return 0;
  if (database->context_->shouldStop() ||
      ToolClock::now() >= database->statementDeadline_) {
    database->timedOut_ = true;
    return 1;
  }
  return 0;
}

absl::StatusOr<std::unique_lock<std::timed_mutex>>
SqliteDatabase::begin(const ToolContext &context) {
  std::unique_lock<std::timed_mutex> lock(mutex_, std::defer_lock);
  if (context.hasDeadline()) {
    if (!lock.try_lock_until(context.deadline))
      return absl::DeadlineExceededError(
          "sqlite: the database stayed busy with other calls until the "
          "deadline");
  } else {
    lock.lock();
  }
  context_ = &context;
  timedOut_ = false;
  denial_.clear();
  statementDeadline_ =
      std::min(context.deadline, ToolClock::now() + config_.statementTimeout);
  return lock;
}

absl::Status SqliteDatabase::error(int code, std::string_view what) const {
  std::string message =
      absl::StrCat("sqlite: ", toAbsl(what), ": ", sqlite3_errmsg(db_));
  // The authorizer refused something this call prepared (SQLite reports a
  // refused function as a plain SQLITE_ERROR).
  if (!denial_.empty())
    return absl::PermissionDeniedError(absl::StrCat(message, ": ", denial_));
  switch (code & 0xff) {
  case SQLITE_INTERRUPT:
    return absl::DeadlineExceededError(
        absl::StrCat("sqlite: ", toAbsl(what),
                     ": interrupted at the deadline (statement timeout ",
                     config_.statementTimeout.count(), " ms)"));
  case SQLITE_BUSY:
  case SQLITE_LOCKED:
    return absl::UnavailableError(message);
  case SQLITE_AUTH:
  case SQLITE_PERM:
  case SQLITE_READONLY:
    return absl::PermissionDeniedError(message);
  case SQLITE_TOOBIG:
    return absl::ResourceExhaustedError(absl::StrCat(
        message, " (a value is at most ", config_.maxValueBytes,
        " bytes, the SQL text at most ",
        sqlite3_limit(db_, SQLITE_LIMIT_SQL_LENGTH, -1), " bytes)"));
  case SQLITE_CONSTRAINT:
  case SQLITE_MISMATCH:
  case SQLITE_RANGE:
  case SQLITE_ERROR:
    return absl::InvalidArgumentError(message);
  default:
    return absl::InternalError(message);
  }
}

absl::StatusOr<sqlite3_stmt *>
SqliteDatabase::prepareOne(const std::string &sql) const {
  sqlite3_stmt *raw = nullptr;
  const char *tail = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql.c_str(), int(sql.size()), &raw, &tail);
  Statement statement(raw);
  if (rc != SQLITE_OK)
    return error(rc, "prepare");
  if (!statement)
    return absl::InvalidArgumentError("sqlite: the SQL has no statement");
  // Anything but whitespace and comments after it is a second statement.
  sqlite3_stmt *next = nullptr;
  const char *end = sql.c_str() + sql.size();
  rc = sqlite3_prepare_v2(db_, tail, int(end - tail), &next, nullptr);
  sqlite3_finalize(next);
  if (rc != SQLITE_OK || next != nullptr)
    return absl::InvalidArgumentError(
        "sqlite: expected one statement; the SQL has more");
  return statement.release();
}

absl::Status SqliteDatabase::bind(sqlite3_stmt *statement,
                                  const json &params) const {
  int count = sqlite3_bind_parameter_count(statement);
  auto bindValue = [&](int index, const json &value,
                       const std::string &name) -> absl::Status {
    int rc;
    if (value.is_null()) {
      rc = sqlite3_bind_null(statement, index);
    } else if (value.is_boolean()) {
      rc = sqlite3_bind_int64(statement, index, value.get<bool>() ? 1 : 0);
    } else if (value.is_number_unsigned()) {
      uint64_t v = value.get<uint64_t>();
      if (v > uint64_t(std::numeric_limits<int64_t>::max()))
        return absl::InvalidArgumentError(absl::StrCat(
            "sqlite: parameter ", name, " is out of the 64-bit range"));
      rc = sqlite3_bind_int64(statement, index, int64_t(v));
    } else if (value.is_number_integer()) {
      rc = sqlite3_bind_int64(statement, index, value.get<int64_t>());
    } else if (value.is_number_float()) {
      rc = sqlite3_bind_double(statement, index, value.get<double>());
    } else {
      std::string text =
          value.is_string() ? value.get<std::string>() : dumpJson(value);
      rc = sqlite3_bind_text64(statement, index, text.data(), text.size(),
                               SQLITE_TRANSIENT, SQLITE_UTF8);
    }
    if (rc != SQLITE_OK)
      return error(rc, absl::StrCat("bind parameter ", name));
    return absl::OkStatus();
  };

  if (params.is_null()) {
    if (count > 0)
      return absl::InvalidArgumentError(
          absl::StrCat("sqlite: the statement has ", count,
                       " parameter(s) but no params were given"));
    return absl::OkStatus();
  }
  if (params.is_array()) {
    if (int(params.size()) != count)
      return absl::InvalidArgumentError(absl::StrCat(
          "sqlite: the statement has ", count, " parameter(s), params has ",
          params.size(), " value(s)"));
    for (int i = 0; i < count; ++i)
      if (absl::Status s = bindValue(i + 1, params[i], absl::StrCat(i + 1));
          !s.ok())
        return s;
    return absl::OkStatus();
  }
  if (!params.is_object())
    return absl::InvalidArgumentError(
        absl::StrCat("sqlite: params must be an array or an object, got ",
                     params.type_name()));
  std::set<int> bound;
  for (auto it = params.begin(); it != params.end(); ++it) {
    const std::string &key = it.key();
    int index = 0;
    if (!key.empty() && (key[0] == ':' || key[0] == '@' || key[0] == '$'))
      index = sqlite3_bind_parameter_index(statement, key.c_str());
    else
      for (const char *prefix : {":", "@", "$"})
        if (!index)
          index = sqlite3_bind_parameter_index(
              statement, absl::StrCat(prefix, key).c_str());
    if (index == 0)
      return absl::InvalidArgumentError(absl::StrCat(
          "sqlite: the statement has no parameter named '", key, "'"));
    if (absl::Status s = bindValue(index, *it, absl::StrCat("'", key, "'"));
        !s.ok())
      return s;
    bound.insert(index);
  }
  for (int i = 1; i <= count; ++i)
    if (!bound.count(i)) {
      const char *name = sqlite3_bind_parameter_name(statement, i);
      return absl::InvalidArgumentError(
          absl::StrCat("sqlite: parameter ", name ? name : absl::StrCat(i),
                       " has no value in params"));
    }
  return absl::OkStatus();
}

absl::StatusOr<json> SqliteDatabase::exec(const json &args,
                                          const ToolContext &context) {
  const std::string sql = args["sql"].get<std::string>();
  if (sql.find('\0') != std::string::npos)
    return absl::InvalidArgumentError("sqlite: the SQL contains a NUL byte");
  const json &params = args.contains("params") ? args["params"] : json();
  absl::StatusOr<std::unique_lock<std::timed_mutex>> lock = begin(context);
  if (!lock.ok())
    return lock.status();
  // The handler reads context_ only while this call holds the lock.
  struct Disarm {
    SqliteDatabase *db;
    ~Disarm() { db->context_ = nullptr; }
  } disarm{this};

  auto run = [&](sqlite3_stmt *statement, int64_t index) -> absl::Status {
    int rc;
    while ((rc = sqlite3_step(statement)) == SQLITE_ROW) {
    }
    if (rc != SQLITE_DONE)
      return error(rc, index > 1 ? absl::StrCat("statement ", index)
                                 : std::string("exec"));
    return absl::OkStatus();
  };
  int64_t changes = 0, statements = 0;
  if (!params.is_null()) {
    // With values: exactly one statement, checked before anything runs.
    absl::StatusOr<sqlite3_stmt *> prepared = prepareOne(sql);
    if (!prepared.ok())
      return prepared.status();
    Statement statement(*prepared);
    if (absl::Status s = bind(statement.get(), params); !s.ok())
      return s;
    if (absl::Status s = run(statement.get(), 1); !s.ok())
      return s;
    changes = sqlite3_changes64(db_);
    statements = 1;
  } else {
    // Statement by statement, as sqlite3_exec: those before a failing one
    // stay applied (use BEGIN/COMMIT in the SQL for all-or-nothing).
    const char *cursor = sql.c_str();
    const char *end = sql.c_str() + sql.size();
    while (cursor < end) {
      sqlite3_stmt *raw = nullptr;
      const char *tail = nullptr;
      int rc = sqlite3_prepare_v2(db_, cursor, int(end - cursor), &raw, &tail);
      Statement statement(raw);
      if (rc != SQLITE_OK)
        return error(rc, statements ? absl::StrCat("statement ", statements + 1)
                                    : std::string("prepare"));
      if (tail <= cursor)
        break; // no progress (cannot happen without NUL bytes; be safe)
      cursor = tail;
      if (!statement)
        continue; // whitespace or a comment
      ++statements;
      if (absl::Status s = bind(statement.get(), params); !s.ok())
        return s;
      if (absl::Status s = run(statement.get(), statements); !s.ok())
        return s;
      changes += sqlite3_changes64(db_);
    }
  }
  if (statements == 0)
    return absl::InvalidArgumentError("sqlite: the SQL has no statement");
  return json{{"changes", changes},
              {"last_insert_rowid", sqlite3_last_insert_rowid(db_)},
              {"statements", statements}};
}

absl::StatusOr<json> SqliteDatabase::query(const json &args,
                                           const ToolContext &context) {
  const std::string sql = args["sql"].get<std::string>();
  if (sql.find('\0') != std::string::npos)
    return absl::InvalidArgumentError("sqlite: the SQL contains a NUL byte");
  const json &params = args.contains("params") ? args["params"] : json();
  int64_t maxRows = config_.maxRows;
  if (args.contains("max_rows")) {
    int64_t requested = args["max_rows"].get<int64_t>();
    if (requested < 0)
      return absl::InvalidArgumentError("sqlite: max_rows must be >= 0");
    maxRows = std::min(maxRows, requested);
  }
  absl::StatusOr<std::unique_lock<std::timed_mutex>> lock = begin(context);
  if (!lock.ok())
    return lock.status();
  struct Disarm {
    SqliteDatabase *db;
    ~Disarm() { db->context_ = nullptr; }
  } disarm{this};

  absl::StatusOr<sqlite3_stmt *> prepared = prepareOne(sql);
  if (!prepared.ok())
    return prepared.status();
  Statement statement(*prepared);
  if (!sqlite3_stmt_readonly(statement.get()))
    return absl::InvalidArgumentError(
        "sqlite.query runs read-only statements; use sqlite.exec to change "
        "the database");
  if (absl::Status s = bind(statement.get(), params); !s.ok())
    return s;

  int columnCount = sqlite3_column_count(statement.get());
  json columns = json::array();
  for (int i = 0; i < columnCount; ++i) {
    const char *name = sqlite3_column_name(statement.get(), i);
    columns.push_back(name ? name : "");
  }
  json rows = json::array();
  bool truncated = false;
  size_t resultBytes = 0;
  auto count = [&](size_t bytes) -> absl::Status {
    resultBytes += bytes;
    if (resultBytes > config_.maxResultBytes)
      return absl::ResourceExhaustedError(absl::StrCat(
          "sqlite.query: the result is over the limit of ",
          config_.maxResultBytes,
          " bytes (maxResultBytes); select fewer rows or columns, or pass "
          "max_rows"));
    return absl::OkStatus();
  };
  sqlite3_stmt *current = statement.get();
  int rc;
  while ((rc = sqlite3_step(current)) == SQLITE_ROW) {
    if (int64_t(rows.size()) >= maxRows) {
      truncated = true;
      break;
    }
    json row = json::object();
    for (int i = 0; i < columnCount; ++i) {
      const std::string &name = columns[i].get_ref<const std::string &>();
      int type = sqlite3_column_type(current, i);
      // Sized before anything is copied out.
      size_t bytes = name.size();
      if (type == SQLITE_TEXT)
        bytes += size_t(sqlite3_column_bytes(current, i));
      else if (type == SQLITE_BLOB)
        bytes += (size_t(sqlite3_column_bytes(current, i)) + 2) / 3 * 4;
      else
        bytes += 8;
      if (absl::Status status = count(bytes); !status.ok())
        return status;
      switch (type) {
      case SQLITE_INTEGER:
        row[name] = int64_t(sqlite3_column_int64(current, i));
        break;
      case SQLITE_FLOAT:
        row[name] = sqlite3_column_double(current, i);
        break;
      case SQLITE_TEXT: {
        auto *text =
            reinterpret_cast<const char *>(sqlite3_column_text(current, i));
        row[name] = std::string(text, sqlite3_column_bytes(current, i));
        break;
      }
      case SQLITE_BLOB: {
        auto *data = static_cast<const char *>(sqlite3_column_blob(current, i));
        int size = sqlite3_column_bytes(current, i);
        row[name] = {
            {"blob_base64", absl::Base64Escape(absl::string_view(data, size))}};
        break;
      }
      default:
        row[name] = nullptr;
        break;
      }
    }
    rows.push_back(std::move(row));
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return error(rc, "query");
  return json{{"columns", std::move(columns)},
              {"rows", std::move(rows)},
              {"truncated", truncated}};
}

//===----------------------------------------------------------------------===//
// Files
//===----------------------------------------------------------------------===//

absl::StatusOr<bool> isBase64(const json &args) {
  std::string encoding = args["encoding"].get<std::string>();
  if (encoding == "utf8")
    return false;
  if (encoding == "base64")
    return true;
  return absl::InvalidArgumentError(absl::StrCat(
      "encoding must be \"utf8\" or \"base64\", got \"", encoding, "\""));
}

absl::StatusOr<json> readFileTool(const Sandbox &sandbox,
                                  const FileToolConfig &config,
                                  const json &args) {
  std::string path = args["path"].get<std::string>();
  absl::StatusOr<bool> base64 = isBase64(args);
  if (!base64.ok())
    return base64.status();
  absl::StatusOr<std::string> content =
      sandbox.readFile(path, config.maxReadBytes);
  if (!content.ok())
    return absl::Status(
        content.status().code(),
        absl::StrCat("file.read: ", content.status().message()));
  json result = {{"path", path}, {"bytes", content->size()}};
  if (*base64) {
    result["content"] = absl::Base64Escape(*content);
    result["encoding"] = "base64";
  } else {
    if (!utf8::isValid(*content))
      return absl::InvalidArgumentError(absl::StrCat(
          "file.read: '", path,
          "' is not valid UTF-8; read it with encoding \"base64\""));
    result["content"] = std::move(*content);
    result["encoding"] = "utf8";
  }
  return result;
}

absl::StatusOr<json> writeFileTool(const Sandbox &sandbox,
                                   const FileToolConfig &config,
                                   const json &args) {
  std::string path = args["path"].get<std::string>();
  absl::StatusOr<bool> base64 = isBase64(args);
  if (!base64.ok())
    return base64.status();
  std::string content = args["content"].get<std::string>();
  if (*base64) {
    std::string decoded;
    if (!absl::Base64Unescape(content, &decoded))
      return absl::InvalidArgumentError(
          "file.write: content is not valid base64");
    content = std::move(decoded);
  }
  if (content.size() > config.maxWriteBytes)
    return absl::ResourceExhaustedError(absl::StrCat(
        "file.write: ", content.size(), " bytes is over the write limit of ",
        config.maxWriteBytes, " bytes"));
  absl::Status status =
      sandbox.writeFile(path, content, args["append"].get<bool>(),
                        args["create_dirs"].get<bool>());
  if (!status.ok())
    return absl::Status(status.code(),
                        absl::StrCat("file.write: ", status.message()));
  return json{{"path", path}, {"bytes", content.size()}};
}

//===----------------------------------------------------------------------===//
// http.get
//===----------------------------------------------------------------------===//

absl::StatusOr<json> httpGetTool(const HttpGetConfig &config, const json &args,
                                 const ToolContext &context) {
  HttpRequestSpec spec;
  spec.method = "GET";
  spec.url = args["url"].get<std::string>();
  spec.allowedHosts = config.allowedHosts;
  spec.maxResponseBytes = config.maxResponseBytes;
  spec.timeout = config.timeout;
  if (args.contains("headers")) {
    const json &headers = args["headers"];
    if (!headers.is_object())
      return absl::InvalidArgumentError(
          "http.get: headers must be an object of name -> string");
    for (auto it = headers.begin(); it != headers.end(); ++it) {
      if (!it->is_string())
        return absl::InvalidArgumentError(
            absl::StrCat("http.get: header '", it.key(), "' must be a string"));
      spec.headers.emplace_back(it.key(), it->get<std::string>());
    }
  }
  absl::StatusOr<HttpResponse> response = sendHttpRequest(spec, context);
  if (!response.ok())
    return absl::Status(
        response.status().code(),
        absl::StrCat("http.get: ", response.status().message()));
  json headers = json::object();
  for (const auto &[name, value] : response->headers)
    headers[name] = value;
  json result = {{"status", response->status}, {"headers", std::move(headers)}};
  if (utf8::isValid(response->body))
    result["body"] = std::move(response->body);
  else
    result["body_base64"] = absl::Base64Escape(response->body);
  return result;
}

} // namespace

absl::Status registerSqliteTools(ToolRegistry &registry,
                                 const SqliteToolConfig &config) {
  absl::StatusOr<std::shared_ptr<SqliteDatabase>> database =
      SqliteDatabase::open(config);
  if (!database.ok())
    return database.status();
  std::shared_ptr<SqliteDatabase> db = *database;
  if (absl::Status s =
          registry.add(sqliteExecSignature(),
                       [db](const json &args, const ToolContext &context) {
                         return db->exec(args, context);
                       });
      !s.ok())
    return s;
  return registry.add(sqliteQuerySignature(),
                      [db](const json &args, const ToolContext &context) {
                        return db->query(args, context);
                      });
}

absl::Status registerFileTools(ToolRegistry &registry,
                               const FileToolConfig &config) {
  absl::StatusOr<std::shared_ptr<Sandbox>> opened = Sandbox::open(
      config.sandboxDir, {config.maxFileBytes, config.maxSandboxBytes});
  if (!opened.ok())
    return opened.status();
  std::shared_ptr<Sandbox> sandbox = *opened;
  if (absl::Status s = registry.add(
          fileReadSignature(),
          [sandbox, config](const json &args, const ToolContext &) {
            return readFileTool(*sandbox, config, args);
          });
      !s.ok())
    return s;
  if (!config.allowWrite)
    return absl::OkStatus();
  return registry.add(fileWriteSignature(),
                      [sandbox, config](const json &args, const ToolContext &) {
                        return writeFileTool(*sandbox, config, args);
                      });
}

absl::Status registerHttpGetTool(ToolRegistry &registry,
                                 const HttpGetConfig &config) {
  return registry.add(httpGetSignature(),
                      [config](const json &args, const ToolContext &context) {
                        return httpGetTool(config, args, context);
                      });
}

absl::Status registerBuiltinTools(ToolRegistry &registry,
                                  const BuiltinToolsConfig &config) {
  if (config.sqlite)
    if (absl::Status s = registerSqliteTools(registry, *config.sqlite); !s.ok())
      return s;
  if (config.files)
    if (absl::Status s = registerFileTools(registry, *config.files); !s.ok())
      return s;
  if (config.http)
    if (absl::Status s = registerHttpGetTool(registry, *config.http); !s.ok())
      return s;
  return absl::OkStatus();
}

std::vector<ToolSignature> builtinToolSignatures() {
  return {fileReadSignature(), fileWriteSignature(), httpGetSignature(),
          sqliteExecSignature(), sqliteQuerySignature()};
}

} // namespace treni
