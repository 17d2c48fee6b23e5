//===- builtin_tools.h - SQLite, sandboxed files, http.get ------*- C++ -*-===//
//
// The tools every agent gets, registered per registry with their own state:
//
//   sqlite.exec  {sql, params?}          -> {changes, last_insert_rowid,
//                                            statements}
//   sqlite.query {sql, params?, max_rows?} -> {columns, rows: [{col: v}],
//                                            truncated}
//   file.read    {path, encoding?}       -> {path, content, bytes, encoding}
//   file.write   {path, content, encoding?, append?, create_dirs?}
//                                        -> {path, bytes}
//   http.get     {url, headers?}         -> {status, headers, body |
//                                            body_base64}
//
// SQLite: one connection per registration (a file or ":memory:"), calls
// serialized on it. `params` (an array for `?`, or an object for named
// `:name` / `@name` / `$name` parameters) are always bound with
// sqlite3_bind_*; the SQL text is never built from values. A statement is
// interrupted (progress handler) at the call's deadline or the configured
// statement timeout; a locked database waits the busy timeout, then fails as
// "unavailable" (retryable). `sqlite.query` runs one read-only statement;
// `sqlite.exec` runs any, several only when no params are given.
//
// The SQL is the model's, so the connection is held in:
//  - sqlite3_limit: a string or blob at most maxValueBytes (randomblob(),
//    zeroblob(), printf() and bound values alike), SQL text at most 1 MiB,
//    no attached databases, 500 columns, expressions 100 deep, 100 terms
//    in a compound SELECT, ?1..?999, triggers nested 10 deep, LIKE
//    patterns of 1000 bytes, 32 function arguments, no worker threads;
//  - what sqlite.query returns: at most maxRows rows (more: truncated) and
//    maxResultBytes of values (more: a too_large error naming the limit);
//  - an authorizer: no ATTACH or DETACH (they reach other files); PRAGMA
//    only from a read-only allow-list (table_info and friends, user_version
//    and the like without a value), so no temp_store_directory,
//    writable_schema, journal_mode, ...; no fts3_tokenizer() (it returns a
//    code pointer, defeating ASLR, and with two arguments installs one),
//    load_extension() or the rtree debugging functions. A refused statement
//    fails as permission_denied, naming what was refused;
//  - SQLITE_DBCONFIG_DEFENSIVE (no writes to the schema or shadow tables),
//    untrusted schema, extension loading off, temporary tables in files
//    (PRAGMA temp_store = FILE), so memory stays within the page cache.
//
// Files: see sandbox_fs.h. Content is UTF-8 text, or base64 with
// `encoding: "base64"`. A write is at most maxWriteBytes, and the file and
// the sandbox are held to maxFileBytes and maxSandboxBytes.
//
// http.get: see tool_http_client.h (allowed hosts, loopback by default;
// Host, Content-Length and the hop-by-hop headers are refused).
//
//===----------------------------------------------------------------------===//
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "runtime/tools/sandbox_fs.h"
#include "runtime/tools/tool_http_client.h"
#include "runtime/tools/tool_registry.h"

namespace treni {

struct SqliteToolConfig {
  std::string path = ":memory:";
  bool readOnly = false;
  std::chrono::milliseconds busyTimeout{2000};
  std::chrono::milliseconds statementTimeout{10000};
  int64_t maxRows = 10000; ///< the most rows sqlite.query returns
  /// The largest string or blob (SQLITE_LIMIT_LENGTH).
  int maxValueBytes = 1 << 20;
  /// The most bytes of values sqlite.query returns: text as it is, blobs
  /// as their base64, 8 per number, plus the column names of each row.
  size_t maxResultBytes = size_t(4) << 20;
};

struct FileToolConfig {
  std::string sandboxDir; ///< must exist
  size_t maxReadBytes = size_t(1) << 20;
  size_t maxWriteBytes = size_t(1) << 20; ///< one file.write's content
  bool allowWrite = true; ///< false: file.write is not registered
  /// The largest a file may become through file.write (appends included).
  uint64_t maxFileBytes = SandboxQuota().maxFileBytes;
  /// What the regular files under the sandbox may hold together.
  uint64_t maxSandboxBytes = SandboxQuota().maxSandboxBytes;
};

struct HttpGetConfig {
  std::vector<std::string> allowedHosts = loopbackHosts();
  size_t maxResponseBytes = size_t(1) << 20;
  std::chrono::milliseconds timeout{10000};
};

/// Registers sqlite.exec and sqlite.query over one connection. Fails when
/// the database cannot be opened (the message names the path).
absl::Status registerSqliteTools(ToolRegistry &registry,
                                 const SqliteToolConfig &config);
/// Registers file.read (and file.write unless disabled). Fails when the
/// sandbox directory cannot be opened.
absl::Status registerFileTools(ToolRegistry &registry,
                               const FileToolConfig &config);
absl::Status registerHttpGetTool(ToolRegistry &registry,
                                 const HttpGetConfig &config);

struct BuiltinToolsConfig {
  std::optional<SqliteToolConfig> sqlite;
  std::optional<FileToolConfig> files;
  std::optional<HttpGetConfig> http;
};
/// The configured groups (absent ones are skipped).
absl::Status registerBuiltinTools(ToolRegistry &registry,
                                  const BuiltinToolsConfig &config);

/// The signatures of all built-ins, without opening anything (for the
/// compiler's tool verification and `tools` exports).
std::vector<ToolSignature> builtinToolSignatures();

} // namespace treni
