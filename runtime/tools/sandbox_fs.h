//===- sandbox_fs.h - file access confined to one directory -----*- C++ -*-===//
//
// What `file.read` / `file.write` stand on. A path is relative to the sandbox
// root and is refused when it is absolute, contains `..`, or crosses a
// symbolic link anywhere (the file itself or any directory on the way).
// The check is not a string check followed by open(): the path is walked
// one component at a time from a descriptor of the root, each opened with
// openat(O_NOFOLLOW), so a symlink swapped in between a check and the open
// cannot redirect it. Only regular files are read or written (no FIFOs or
// devices), never files with more than one hard link, and sizes are capped.
//
// A path names a file: one that ends in '/' or '/.' is refused, as is one
// that resolves to anything but a regular file.
//
// Writes are held to quotas (SandboxQuota): a file may not grow past
// maxFileBytes, nor the regular files under the root, together, past
// maxSandboxBytes. The second is measured at every write (a walk of the
// tree, without following links), so files put there by other means
// count too; writes through one Sandbox are serialized, so that two of
// them cannot both fit in the same room.
//
// Errors: PermissionDenied for what the sandbox refuses, NotFound for what
// does not exist, ResourceExhausted for size limits and quotas,
// InvalidArgument for a malformed path; each message names the path.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace treni {

/// What writes may make a sandbox hold (bytes).
struct SandboxQuota {
  uint64_t maxFileBytes = uint64_t(16) << 20; ///< one file, after a write
  /// Every regular file under the root together; the largest uint64_t
  /// turns the measurement off.
  uint64_t maxSandboxBytes = uint64_t(256) << 20;
};

class Sandbox {
public:
  /// `root` must be an existing directory (it may itself be reached through
  /// a symlink: the root is trusted configuration, the paths are not).
  static absl::StatusOr<std::shared_ptr<Sandbox>> open(const std::string &root,
                                                       SandboxQuota quota = {});
  ~Sandbox();
  Sandbox(const Sandbox &) = delete;
  Sandbox &operator=(const Sandbox &) = delete;

  const std::string &root() const { return root_; }

  /// The file's bytes; ResourceExhausted when it is over `maxBytes`.
  absl::StatusOr<std::string> readFile(std::string_view path,
                                       size_t maxBytes) const;
  /// Writes (or appends) `content`; `createDirs` makes missing directories
  /// on the way (inside the sandbox). ResourceExhausted, before anything is
  /// written, when the file or the sandbox would go over its quota.
  absl::Status writeFile(std::string_view path, std::string_view content,
                         bool append, bool createDirs) const;

  /// The bytes of every regular file under the root (symbolic links are
  /// not followed; directories that cannot be read count nothing).
  uint64_t usedBytes() const;

  /// The path's components after the purely lexical checks (no file system
  /// access): not empty, relative, no `..`, no NUL; `.` and empty components
  /// dropped.
  static absl::StatusOr<std::vector<std::string>>
  splitPath(std::string_view path);

private:
  Sandbox(std::string root, int rootFd, SandboxQuota quota)
      : root_(std::move(root)), rootFd_(rootFd), quota_(quota) {}
  /// A descriptor of the directory the first `count` components name,
  /// each opened with O_NOFOLLOW from the one before.
  absl::StatusOr<int> openDirectory(const std::vector<std::string> &components,
                                    size_t count, bool createDirs) const;

  std::string root_;
  int rootFd_;
  SandboxQuota quota_;
  mutable std::mutex writeMutex_;
};

} // namespace treni
