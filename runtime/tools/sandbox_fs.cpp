//===- sandbox_fs.cpp - file access confined to one directory -------------===//

#include "runtime/tools/sandbox_fs.h"

#include <cerrno>
#include <climits>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <limits>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/tools/tool_context.h"

namespace treni {

namespace {

/// Closes a descriptor on scope exit.
class UniqueFd {
public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(const UniqueFd &) = delete;
  UniqueFd &operator=(const UniqueFd &) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0)
      ::close(fd_);
    fd_ = fd;
  }

private:
  int fd_;
};

constexpr size_t kMaxPathBytes = 4096;

std::string quotePath(std::string_view path) {
  return absl::StrCat("'", toAbsl(path), "'");
}

/// Why openat() of `name` in `dir` failed, as a status naming `shown`.
absl::Status openError(int dir, const std::string &name,
                       const std::string &shown, int error) {
  struct stat st;
  if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
      S_ISLNK(st.st_mode))
    return absl::PermissionDeniedError(absl::StrCat(
        quotePath(shown), " is a symbolic link; the sandbox refuses symlinks"));
  switch (error) {
  case ENOENT:
    return absl::NotFoundError(
        absl::StrCat(quotePath(shown), " does not exist"));
  case ENOTDIR:
    return absl::InvalidArgumentError(
        absl::StrCat(quotePath(shown), " is not a directory"));
  case EISDIR:
    return absl::InvalidArgumentError(
        absl::StrCat(quotePath(shown), " is a directory"));
  case ELOOP:
    return absl::PermissionDeniedError(absl::StrCat(
        quotePath(shown), " is a symbolic link; the sandbox refuses symlinks"));
  case EACCES:
  case EPERM:
    return absl::PermissionDeniedError(
        absl::StrCat(quotePath(shown), ": permission denied"));
  case ENXIO:
    return absl::PermissionDeniedError(
        absl::StrCat(quotePath(shown), " is not a regular file"));
  default:
    return absl::InternalError(absl::StrCat("cannot open ", quotePath(shown),
                                            ": ", std::strerror(error)));
  }
}

/// Refuses what is not a single-link regular file.
absl::Status checkRegular(int fd, const std::string &shown) {
  struct stat st;
  if (::fstat(fd, &st) != 0)
    return absl::InternalError(absl::StrCat("cannot stat ", quotePath(shown),
                                            ": ", std::strerror(errno)));
  if (!S_ISREG(st.st_mode))
    return absl::PermissionDeniedError(
        absl::StrCat(quotePath(shown), " is not a regular file"));
  if (st.st_nlink > 1)
    return absl::PermissionDeniedError(
        absl::StrCat(quotePath(shown), " has ", st.st_nlink,
                     " hard links; the sandbox refuses hard-linked files"));
  return absl::OkStatus();
}

} // namespace

absl::StatusOr<std::shared_ptr<Sandbox>> Sandbox::open(const std::string &root,
                                                       SandboxQuota quota) {
  int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return absl::NotFoundError(
        absl::StrCat("sandbox directory '", root, "': ", std::strerror(errno)));
  return std::shared_ptr<Sandbox>(new Sandbox(root, fd, quota));
}

Sandbox::~Sandbox() {
  if (rootFd_ >= 0)
    ::close(rootFd_);
}

absl::StatusOr<std::vector<std::string>>
Sandbox::splitPath(std::string_view path) {
  if (path.empty())
    return absl::InvalidArgumentError("the path is empty");
  if (path.size() > kMaxPathBytes)
    return absl::InvalidArgumentError(absl::StrCat(
        "the path is ", path.size(), " bytes (at most ", kMaxPathBytes, ")"));
  if (path.find('\0') != std::string_view::npos)
    return absl::InvalidArgumentError("the path contains a NUL byte");
  if (path.front() == '/')
    return absl::PermissionDeniedError(absl::StrCat(
        quotePath(path),
        " is absolute; paths are relative to the sandbox directory"));
  std::vector<std::string> components;
  bool lastIsFile = false; // the last component names an entry, not "."
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos)
      end = path.size();
    std::string_view part = path.substr(start, end - start);
    if (part == "..")
      return absl::PermissionDeniedError(absl::StrCat(
          quotePath(path), " contains '..'; the sandbox refuses parent paths"));
    if (part.size() > NAME_MAX)
      return absl::InvalidArgumentError(
          absl::StrCat(quotePath(path), " has a component longer than ",
                       NAME_MAX, " bytes"));
    lastIsFile = !part.empty() && part != ".";
    if (lastIsFile)
      components.emplace_back(part);
    start = end + 1;
  }
  if (components.empty())
    return absl::InvalidArgumentError(absl::StrCat(
        quotePath(path), " names the sandbox directory, not a file"));
  // "a.txt/" is not a.txt: open() would refuse it as ENOTDIR, and so does
  // the sandbox, rather than read the file the slash was dropped from.
  if (!lastIsFile)
    return absl::InvalidArgumentError(absl::StrCat(
        quotePath(path), " ends in '/' or '/.', so it names a directory, not a "
                         "file"));
  return components;
}

absl::StatusOr<int>
Sandbox::openDirectory(const std::vector<std::string> &components, size_t count,
                       bool createDirs) const {
  UniqueFd dir(::dup(rootFd_));
  if (dir.get() < 0)
    return absl::InternalError(
        absl::StrCat("cannot use the sandbox: ", std::strerror(errno)));
  std::string shown;
  for (size_t i = 0; i < count; ++i) {
    const std::string &name = components[i];
    shown = shown.empty() ? name : absl::StrCat(shown, "/", name);
    constexpr int kFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    int next = ::openat(dir.get(), name.c_str(), kFlags);
    if (next < 0 && errno == ENOENT && createDirs) {
      if (::mkdirat(dir.get(), name.c_str(), 0755) != 0 && errno != EEXIST)
        return absl::InternalError(absl::StrCat(
            "cannot create ", quotePath(shown), ": ", std::strerror(errno)));
      next = ::openat(dir.get(), name.c_str(), kFlags);
    }
    if (next < 0)
      return openError(dir.get(), name, shown, errno);
    dir.reset(next);
  }
  return dir.release();
}

uint64_t Sandbox::usedBytes() const {
  // Depth first, one directory open at a time: each is reopened from the
  // root, component by component (O_NOFOLLOW), so a directory nested as
  // deep as a path allows costs no more than two descriptors.
  uint64_t total = 0;
  std::vector<std::vector<std::string>> pending = {{}};
  while (!pending.empty()) {
    std::vector<std::string> components = std::move(pending.back());
    pending.pop_back();
    absl::StatusOr<int> fd =
        openDirectory(components, components.size(), false);
    if (!fd.ok())
      continue; // gone, or not ours to read: nothing to count
    DIR *dir = ::fdopendir(*fd);
    if (!dir) {
      ::close(*fd);
      continue;
    }
    // The root's descriptor is a dup() of rootFd_, sharing its offset with
    // every earlier walk.
    ::rewinddir(dir);
    while (struct dirent *entry = ::readdir(dir)) {
      std::string_view name = entry->d_name;
      if (name == "." || name == "..")
        continue;
      struct stat st;
      if (::fstatat(::dirfd(dir), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        continue;
      if (S_ISREG(st.st_mode)) {
        total += uint64_t(st.st_size);
      } else if (S_ISDIR(st.st_mode)) {
        pending.push_back(components);
        pending.back().emplace_back(name);
      }
    }
    ::closedir(dir);
  }
  return total;
}

absl::StatusOr<std::string> Sandbox::readFile(std::string_view path,
                                              size_t maxBytes) const {
  absl::StatusOr<std::vector<std::string>> components = splitPath(path);
  if (!components.ok())
    return components.status();
  absl::StatusOr<int> parent =
      openDirectory(*components, components->size() - 1, false);
  if (!parent.ok())
    return parent.status();
  UniqueFd dir(*parent);
  std::string shown(path);
  // O_NONBLOCK: opening a FIFO must not wait for a writer.
  UniqueFd file(
      ::openat(dir.get(), components->back().c_str(),
               O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  if (file.get() < 0)
    return openError(dir.get(), components->back(), shown, errno);
  if (absl::Status status = checkRegular(file.get(), shown); !status.ok())
    return status;
  std::string content;
  char buffer[65536];
  while (true) {
    ssize_t n = ::read(file.get(), buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return absl::InternalError(absl::StrCat("cannot read ", quotePath(shown),
                                              ": ", std::strerror(errno)));
    if (n == 0)
      break;
    content.append(buffer, size_t(n));
    if (content.size() > maxBytes)
      return absl::ResourceExhaustedError(absl::StrCat(
          quotePath(shown), " is over the read limit of ", maxBytes, " bytes"));
  }
  return content;
}

absl::Status Sandbox::writeFile(std::string_view path, std::string_view content,
                                bool append, bool createDirs) const {
  absl::StatusOr<std::vector<std::string>> components = splitPath(path);
  if (!components.ok())
    return components.status();
  absl::StatusOr<int> parent =
      openDirectory(*components, components->size() - 1, createDirs);
  if (!parent.ok())
    return parent.status();
  UniqueFd dir(*parent);
  std::string shown(path);
  std::lock_guard<std::mutex> lock(writeMutex_);
  // The quotas, before anything is created. What the file holds now is
  // replaced, or kept and appended to.
  uint64_t oldSize = 0;
  struct stat st;
  if (::fstatat(dir.get(), components->back().c_str(), &st,
                AT_SYMLINK_NOFOLLOW) == 0 &&
      S_ISREG(st.st_mode))
    oldSize = uint64_t(st.st_size);
  uint64_t fileSize = (append ? oldSize : 0) + content.size();
  if (fileSize > quota_.maxFileBytes)
    return absl::ResourceExhaustedError(absl::StrCat(
        quotePath(shown), append ? " would grow to " : " would be ", fileSize,
        " bytes, over the per-file quota of ", quota_.maxFileBytes,
        " bytes (maxFileBytes)"));
  if (quota_.maxSandboxBytes != std::numeric_limits<uint64_t>::max()) {
    uint64_t used = usedBytes();
    uint64_t total =
        used - std::min(used, append ? 0 : oldSize) + content.size();
    if (total > quota_.maxSandboxBytes)
      return absl::ResourceExhaustedError(absl::StrCat(
          "the sandbox would hold ", total, " bytes, over its quota of ",
          quota_.maxSandboxBytes, " bytes (maxSandboxBytes)"));
  }
  // No O_TRUNC here: the file is truncated only once it is known to be a
  // regular file.
  UniqueFd file(::openat(dir.get(), components->back().c_str(),
                         O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK |
                             O_NOCTTY | O_CLOEXEC | (append ? O_APPEND : 0),
                         0644));
  if (file.get() < 0)
    return openError(dir.get(), components->back(), shown, errno);
  if (absl::Status status = checkRegular(file.get(), shown); !status.ok())
    return status;
  if (!append && ::ftruncate(file.get(), 0) != 0)
    return absl::InternalError(absl::StrCat(
        "cannot truncate ", quotePath(shown), ": ", std::strerror(errno)));
  size_t written = 0;
  while (written < content.size()) {
    ssize_t n =
        ::write(file.get(), content.data() + written, content.size() - written);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return absl::InternalError(absl::StrCat("cannot write ", quotePath(shown),
                                              ": ", std::strerror(errno)));
    written += size_t(n);
  }
  return absl::OkStatus();
}

} // namespace treni
