//===- subprocess.h - a child process on pipes, with deadlines --*- C++ -*-===//
//
// A child started with posix_spawn, its stdin/stdout on non-blocking pipes
// and its stderr drained by a thread into a bounded buffer (the last N
// bytes), so a chatty child never blocks on a full pipe. The child leads its
// own process group: kill() takes down whatever it started too (a shell
// script's children), so nothing keeps the pipes open after it. Writes to a
// child that has exited report EPIPE without raising SIGPIPE in this
// process.
//
// The child does not inherit this process's environment, which holds the
// server's own secrets (API keys, tokens): only the variables named in
// `inheritEnv` (by default PATH, HOME, LANG, LC_*, TZ, TMPDIR) pass, plus
// the entries of `env`.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/tools/tool_context.h"

namespace treni {

/// PATH, HOME, LANG, LC_*, TZ, TMPDIR: what a tool needs to find programs,
/// write temporary files and format text, and nothing that could be a
/// credential.
std::vector<std::string> defaultInheritedEnv();

struct SubprocessOptions {
  std::vector<std::string> argv; ///< argv[0] is looked up in PATH
  /// Names of this process's environment variables the child gets; a name
  /// ending in '*' stands for every variable with that prefix ("LC_*").
  std::vector<std::string> inheritEnv = defaultInheritedEnv();
  /// "NAME=value" entries the child gets besides (over inherited ones).
  std::vector<std::string> env;
  std::string workingDir; ///< empty: this process's
  size_t stderrLimit = 64 * 1024;
};

/// The child's environment: the entries of `parent` (a NULL-terminated
/// "NAME=value" array, as `environ`) whose names `options.inheritEnv`
/// allows and `options.env` does not set, in their order, then
/// `options.env`.
std::vector<std::string> childEnvironment(const SubprocessOptions &options,
                                          char *const *parent);

class Subprocess {
public:
  /// Starts the child. NotFound / FailedPrecondition naming argv[0] when it
  /// cannot be started.
  static absl::StatusOr<std::unique_ptr<Subprocess>>
  spawn(const SubprocessOptions &options);
  /// Kills the child's process group and reaps it.
  ~Subprocess();
  Subprocess(const Subprocess &) = delete;
  Subprocess &operator=(const Subprocess &) = delete;

  pid_t pid() const { return pid_; }

  /// Writes all of `data` to the child's stdin. DeadlineExceeded at the
  /// deadline, Cancelled when `stop` says so, Unavailable when the child
  /// closed its stdin (exited).
  absl::Status writeAll(std::string_view data, ToolClock::time_point deadline,
                        const std::function<bool()> &stop);
  /// The next line of the child's stdout, without the newline. As writeAll,
  /// plus Unavailable at end of file and ResourceExhausted past `maxBytes`.
  absl::StatusOr<std::string> readLine(ToolClock::time_point deadline,
                                       const std::function<bool()> &stop,
                                       size_t maxBytes);

  /// SIGKILL to the child's process group (idempotent; nothing once reaped).
  void kill();
  /// How the child ended ("exited with status 3", "killed by signal 9"), or
  /// nullopt while it runs. With `wait`, blocks until it has ended.
  std::optional<std::string> exitDescription(bool wait);
  /// The last bytes (at most stderrLimit) the child wrote to stderr.
  std::string stderrTail() const;
  /// Waits (at most `limit`) until stderr is at end of file, so that
  /// stderrTail() has all a dead child wrote. True when it is.
  bool waitStderrClosed(std::chrono::milliseconds limit);

private:
  Subprocess() = default;
  void drainStderr();

  pid_t pid_ = -1;
  int stdinFd_ = -1, stdoutFd_ = -1, stderrFd_ = -1;
  bool reaped_ = false;
  std::optional<std::string> exit_;
  std::string pendingOutput_; ///< read from stdout, not yet returned

  size_t stderrLimit_ = 0;
  mutable std::mutex stderrMutex_;
  std::string stderrTail_;
  std::atomic<bool> stopDraining_{false};
  std::atomic<bool> stderrClosed_{false};
  std::thread stderrThread_;
};

} // namespace treni
