//===- subprocess.cpp - a child process on pipes, with deadlines ----------===//

#include "runtime/tools/subprocess.h"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"

extern char **environ;

namespace treni {

namespace {

void closeFd(int &fd) {
  if (fd >= 0)
    ::close(fd);
  fd = -1;
}

/// Milliseconds to wait in one poll(): up to the deadline, at most 50 ms so
/// that `stop` is checked regularly.
int pollSlice(ToolClock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - ToolClock::now());
  return int(std::clamp<int64_t>(left.count() + 1, 0, 50));
}

/// Blocks SIGPIPE in this thread for the scope, and swallows one raised by a
/// write to a closed pipe, so the process is not killed by it.
class SigpipeGuard {
public:
  SigpipeGuard() {
    sigemptyset(&pipeSet_);
    sigaddset(&pipeSet_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipeSet_, &old_);
  }
  ~SigpipeGuard() {
    if (raised_) {
      struct timespec zero = {0, 0};
      while (sigtimedwait(&pipeSet_, nullptr, &zero) > 0) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  void raised() { raised_ = true; }

private:
  sigset_t pipeSet_, old_;
  bool raised_ = false;
};

/// The name of a "NAME=value" entry (empty when it has no '=').
std::string_view entryName(std::string_view entry) {
  size_t equals = entry.find('=');
  return equals == std::string_view::npos ? std::string_view()
                                          : entry.substr(0, equals);
}

bool nameMatches(std::string_view name, std::string_view pattern) {
  if (!pattern.empty() && pattern.back() == '*')
    return name.substr(0, pattern.size() - 1) ==
           pattern.substr(0, pattern.size() - 1);
  return name == pattern;
}

} // namespace

std::vector<std::string> defaultInheritedEnv() {
  return {"PATH", "HOME", "LANG", "LC_*", "TZ", "TMPDIR"};
}

std::vector<std::string> childEnvironment(const SubprocessOptions &options,
                                          char *const *parent) {
  std::vector<std::string> result;
  for (char *const *entry = parent; entry && *entry; ++entry) {
    std::string_view name = entryName(*entry);
    if (name.empty())
      continue;
    bool allowed = std::any_of(
        options.inheritEnv.begin(), options.inheritEnv.end(),
        [&](const std::string &pattern) { return nameMatches(name, pattern); });
    bool overridden = std::any_of(
        options.env.begin(), options.env.end(),
        [&](const std::string &set) { return entryName(set) == name; });
    if (allowed && !overridden)
      result.emplace_back(*entry);
  }
  result.insert(result.end(), options.env.begin(), options.env.end());
  return result;
}

absl::StatusOr<std::unique_ptr<Subprocess>>
Subprocess::spawn(const SubprocessOptions &options) {
  if (options.argv.empty() || options.argv[0].empty())
    return absl::InvalidArgumentError("subprocess: empty command");
  int inPipe[2], outPipe[2], errPipe[2];
  if (::pipe2(inPipe, O_CLOEXEC) != 0)
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  if (::pipe2(outPipe, O_CLOEXEC) != 0) {
    ::close(inPipe[0]), ::close(inPipe[1]);
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  if (::pipe2(errPipe, O_CLOEXEC) != 0) {
    ::close(inPipe[0]), ::close(inPipe[1]);
    ::close(outPipe[0]), ::close(outPipe[1]);
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, inPipe[0], 0);
  posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2);
  if (!options.workingDir.empty())
    posix_spawn_file_actions_addchdir_np(&actions, options.workingDir.c_str());
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Its own process group; default signal handling and an empty mask (this
  // thread may have SIGPIPE blocked).
  sigset_t empty, all;
  sigemptyset(&empty);
  sigfillset(&all);
  sigdelset(&all, SIGKILL);
  sigdelset(&all, SIGSTOP);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP |
                                      POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);

  std::vector<char *> argv;
  for (const std::string &arg : options.argv)
    argv.push_back(const_cast<char *>(arg.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> environment = childEnvironment(options, environ);
  std::vector<char *> envp;
  for (std::string &entry : environment)
    envp.push_back(entry.data());
  envp.push_back(nullptr);
  pid_t pid = -1;
  int rc =
      ::posix_spawnp(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(inPipe[0]);
  ::close(outPipe[1]);
  ::close(errPipe[1]);
  if (rc != 0) {
    ::close(inPipe[1]);
    ::close(outPipe[0]);
    ::close(errPipe[0]);
    std::string message = absl::StrCat("cannot start '", options.argv[0],
                                       "': ", std::strerror(rc));
    if (rc == ENOENT)
      return absl::NotFoundError(message);
    return absl::FailedPreconditionError(message);
  }

  std::unique_ptr<Subprocess> process(new Subprocess());
  process->pid_ = pid;
  process->stdinFd_ = inPipe[1];
  process->stdoutFd_ = outPipe[0];
  process->stderrFd_ = errPipe[0];
  process->stderrLimit_ = options.stderrLimit;
  ::fcntl(process->stdinFd_, F_SETFL, O_NONBLOCK);
  ::fcntl(process->stdoutFd_, F_SETFL, O_NONBLOCK);
  ::fcntl(process->stderrFd_, F_SETFL, O_NONBLOCK);
  Subprocess *raw = process.get();
  process->stderrThread_ = std::thread([raw] { raw->drainStderr(); });
  return process;
}

Subprocess::~Subprocess() {
  kill();
  exitDescription(/*wait=*/true);
  stopDraining_ = true;
  if (stderrThread_.joinable())
    stderrThread_.join();
  closeFd(stdinFd_);
  closeFd(stdoutFd_);
  closeFd(stderrFd_);
}

bool Subprocess::waitStderrClosed(std::chrono::milliseconds limit) {
  ToolClock::time_point deadline = ToolClock::now() + limit;
  while (!stderrClosed_ && ToolClock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  return stderrClosed_;
}

void Subprocess::drainStderr() {
  struct MarkClosed {
    std::atomic<bool> &closed;
    ~MarkClosed() { closed = true; }
  } markClosed{stderrClosed_};
  char buffer[4096];
  while (!stopDraining_) {
    struct pollfd pfd = {stderrFd_, POLLIN, 0};
    int ready = ::poll(&pfd, 1, 50);
    if (ready < 0 && errno != EINTR)
      return;
    if (ready <= 0)
      continue;
    ssize_t n = ::read(stderrFd_, buffer, sizeof(buffer));
    if (n == 0)
      return; // every writer is gone
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR)
        continue;
      return;
    }
    std::lock_guard<std::mutex> lock(stderrMutex_);
    stderrTail_.append(buffer, size_t(n));
    if (stderrTail_.size() > stderrLimit_)
      stderrTail_.erase(0, stderrTail_.size() - stderrLimit_);
  }
}

std::string Subprocess::stderrTail() const {
  std::lock_guard<std::mutex> lock(stderrMutex_);
  return stderrTail_;
}

void Subprocess::kill() {
  if (reaped_ || pid_ <= 0)
    return;
  // The child is not reaped, so its pid (and group id) cannot have been
  // reused yet.
  ::kill(-pid_, SIGKILL);
  ::kill(pid_, SIGKILL);
}

std::optional<std::string> Subprocess::exitDescription(bool wait) {
  if (reaped_)
    return exit_;
  int status = 0;
  pid_t rc;
  do {
    rc = ::waitpid(pid_, &status, wait ? 0 : WNOHANG);
  } while (rc < 0 && errno == EINTR);
  if (rc == 0)
    return std::nullopt;
  reaped_ = true;
  if (rc < 0)
    exit_ = absl::StrCat("ended (waitpid: ", std::strerror(errno), ")");
  else if (WIFEXITED(status))
    exit_ = absl::StrCat("exited with status ", WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    exit_ = absl::StrCat("killed by signal ", WTERMSIG(status), " (",
                         strsignal(WTERMSIG(status)), ")");
  else
    exit_ = "ended";
  return exit_;
}

absl::Status Subprocess::writeAll(std::string_view data,
                                  ToolClock::time_point deadline,
                                  const std::function<bool()> &stop) {
  SigpipeGuard guard;
  size_t written = 0;
  while (written < data.size()) {
    ssize_t n = ::write(stdinFd_, data.data() + written, data.size() - written);
    if (n > 0) {
      written += size_t(n);
      continue;
    }
    if (n < 0 && errno == EPIPE) {
      guard.raised();
      return absl::UnavailableError("the process closed its stdin");
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR)
      return absl::UnavailableError(
          absl::StrCat("write to the process: ", std::strerror(errno)));
    if (stop && stop())
      return absl::CancelledError("cancelled while writing to the process");
    if (ToolClock::now() >= deadline)
      return absl::DeadlineExceededError(
          "the process did not read its input before the deadline");
    struct pollfd pfd = {stdinFd_, POLLOUT, 0};
    ::poll(&pfd, 1, pollSlice(deadline));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string>
Subprocess::readLine(ToolClock::time_point deadline,
                     const std::function<bool()> &stop, size_t maxBytes) {
  char buffer[65536];
  size_t scanned = 0; // pendingOutput_ has no newline before this
  while (true) {
    size_t newline = pendingOutput_.find('\n', scanned);
    scanned = pendingOutput_.size();
    size_t length =
        newline == std::string::npos ? pendingOutput_.size() : newline;
    if (length > maxBytes)
      return absl::ResourceExhaustedError(absl::StrCat(
          "the process wrote a line longer than ", maxBytes, " bytes"));
    if (newline != std::string::npos) {
      std::string line = pendingOutput_.substr(0, newline);
      pendingOutput_.erase(0, newline + 1);
      if (!line.empty() && line.back() == '\r')
        line.pop_back();
      return line;
    }
    ssize_t n = ::read(stdoutFd_, buffer, sizeof(buffer));
    if (n > 0) {
      pendingOutput_.append(buffer, size_t(n));
      continue;
    }
    if (n == 0)
      return absl::UnavailableError("the process closed its stdout");
    if (errno != EAGAIN && errno != EINTR)
      return absl::UnavailableError(
          absl::StrCat("read from the process: ", std::strerror(errno)));
    if (stop && stop())
      return absl::CancelledError("cancelled while waiting for the process");
    if (ToolClock::now() >= deadline)
      return absl::DeadlineExceededError(
          "the process did not answer before the deadline");
    struct pollfd pfd = {stdoutFd_, POLLIN, 0};
    ::poll(&pfd, 1, pollSlice(deadline));
  }
}

} // namespace treni
