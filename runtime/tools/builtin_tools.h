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
// "unavailable" (retryable). ATTACH is disabled (it would reach other files)
// and so are extensions. `sqlite.query` runs one read-only statement;
// `sqlite.exec` runs any, several only when no params are given.
//
// Files: see sandbox_fs.h. Content is UTF-8 text, or base64 with
// `encoding: "base64"`.
//
// http.get: see tool_http_client.h (allowed hosts, loopback by default).
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
#include "runtime/tools/tool_http_client.h"
#include "runtime/tools/tool_registry.h"

namespace treni {

struct SqliteToolConfig {
  std::string path = ":memory:";
  bool readOnly = false;
  std::chrono::milliseconds busyTimeout{2000};
  std::chrono::milliseconds statementTimeout{10000};
  int64_t maxRows = 10000; ///< the most rows sqlite.query returns
};

struct FileToolConfig {
  std::string sandboxDir; ///< must exist
  size_t maxReadBytes = size_t(1) << 20;
  size_t maxWriteBytes = size_t(1) << 20;
  bool allowWrite = true; ///< false: file.write is not registered
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
