//===- external_tools.h - tools in another process or over HTTP -*- C++ -*-===//
//
// Two ways to plug in tools the runtime does not implement itself.
//
// A JSON-lines process: started once (posix_spawn), it reads one request per
// line on stdin and answers each with one line on stdout:
//   -> {"id": 7, "tool": "lookup", "args": {"key": "a"}}
//   <- {"id": 7, "ok": true, "result": {...}}
//   <- {"id": 7, "ok": false, "error": {"type": "not_found", "message": "..."}}
// Requests to one process are serialized. What can go wrong is detected and
// reported, and the process is replaced on the next call:
//  - it exits or crashes (EOF / EPIPE): "unavailable" (retryable), with its
//    exit status and the tail of its stderr;
//  - it does not answer by the deadline (the call's timeout, or
//    `defaultTimeout` when the call has none): its process group is killed,
//    "timeout";
//  - it answers with something else than a JSON object carrying our id:
//    killed, "protocol_error".
// Its stderr is kept in a bounded buffer (the last `stderrLimit` bytes).
//
// An HTTP endpoint: each call POSTs {"tool": name, "args": {...}} to a URL
// on an allowed host (loopback by default) and takes the same envelope back
// ({"ok": ..., "result" | "error"}); a body without "ok" is the result
// itself. 5xx and 429 are "unavailable" (retryable), other non-2xx statuses
// "tool_error".
//
// A process gets PATH, HOME, LANG, LC_*, TZ and TMPDIR from this process's
// environment, the variables its "inherit_env" names, and its "env"; the
// rest of the server's environment (its keys and tokens) stays behind.
//
// What comes back is bounded: an answer line is at most `maxResponseBytes`
// (a response body `maxResponseBytes`), and either is parsed with nesting
// at most kMaxJsonDepth (support/json_bounded.h) deep, else it is a
// protocol_error; the registry caps the result's size (tool_registry.h).
//
// Both can be configured from JSON (registerExternalToolsFromJson):
//   {"processes": [{"name": "kb", "command": ["python3", "kb.py"],
//                   "env": {"K": "V"}, "inherit_env": ["KB_HOME"],
//                   "cwd": "/srv", "timeout_ms": 30000,
//                   "stderr_limit": 65536, "tools": [<signature>, ...]}],
//    "endpoints": [{"url": "http://127.0.0.1:9000/tools", "timeout_ms": 5000,
//                   "allowed_hosts": ["127.0.0.1"], "tool": <signature>}]}
// where <signature> is ToolSignature::toJson()'s format.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/tools/subprocess.h"
#include "runtime/tools/tool_http_client.h"
#include "runtime/tools/tool_registry.h"

namespace treni {

struct ExternalProcessConfig {
  std::string name; ///< for messages ("external tool process 'kb'")
  SubprocessOptions process;
  std::vector<ToolSignature> tools; ///< the tools it serves
  /// Hang detection for calls without a timeout of their own.
  std::chrono::milliseconds defaultTimeout{30000};
  size_t maxResponseBytes = size_t(16) << 20;
};

/// One JSON-lines process (restarted as needed). Thread-safe.
class ExternalProcess {
public:
  explicit ExternalProcess(ExternalProcessConfig config);
  ~ExternalProcess();

  /// Starts the process if none is running.
  absl::Status start();
  /// One request/response; see the file comment for the failure modes.
  absl::StatusOr<nlohmann::json> call(const std::string &tool,
                                      const nlohmann::json &args,
                                      const ToolContext &context);
  /// Kills the running process (the next call starts a new one).
  void stop();

  const ExternalProcessConfig &config() const { return config_; }
  std::optional<pid_t> pid() const;
  int64_t starts() const;   ///< processes started so far
  int64_t restarts() const; ///< starts after the first
  /// The running (or last) process's stderr tail.
  std::string stderrTail() const;
  /// How the last process failed, "" if none did.
  std::string lastFailure() const;

private:
  /// With mutex_ held: ends the process, remembers why, returns `status`
  /// with the process's details added.
  absl::Status fail(absl::Status status, const std::string &tool,
                    ToolClock::time_point started);
  absl::Status startLocked();

  ExternalProcessConfig config_;
  mutable std::timed_mutex mutex_;
  std::unique_ptr<Subprocess> process_;
  int64_t nextId_ = 0;
  int64_t starts_ = 0;
  std::string lastStderr_, lastFailure_;
};

/// Starts the process and registers its tools. The handle reports restarts
/// and stderr; the tools keep the process alive as long as they are
/// registered.
absl::StatusOr<std::shared_ptr<ExternalProcess>>
registerExternalProcessTools(ToolRegistry &registry,
                             ExternalProcessConfig config);

struct HttpEndpointConfig {
  ToolSignature signature;
  std::string url;
  std::vector<std::string> allowedHosts = loopbackHosts();
  size_t maxResponseBytes = size_t(4) << 20;
  std::chrono::milliseconds timeout{30000};
};

/// Registers one tool answered by POSTs to `url`. The URL and its host are
/// checked now (InvalidArgument / PermissionDenied).
absl::Status registerHttpEndpointTool(ToolRegistry &registry,
                                      HttpEndpointConfig config);

/// Registers what a JSON configuration (see the file comment) declares.
/// Errors name the entry and the field; nothing is registered from a
/// configuration with an invalid entry, though processes already started
/// for earlier entries are stopped again.
absl::StatusOr<std::vector<std::shared_ptr<ExternalProcess>>>
registerExternalToolsFromJson(ToolRegistry &registry,
                              const nlohmann::json &config);

} // namespace treni
