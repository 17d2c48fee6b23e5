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
// Errors: PermissionDenied for what the sandbox refuses, NotFound for what
// does not exist, ResourceExhausted for size limits, InvalidArgument for a
// malformed path; each message names the path.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace treni {

class Sandbox {
public:
  /// `root` must be an existing directory (it may itself be reached through
  /// a symlink: the root is trusted configuration, the paths are not).
  static absl::StatusOr<std::shared_ptr<Sandbox>> open(const std::string &root);
  ~Sandbox();
  Sandbox(const Sandbox &) = delete;
  Sandbox &operator=(const Sandbox &) = delete;

  const std::string &root() const { return root_; }

  /// The file's bytes; ResourceExhausted when it is over `maxBytes`.
  absl::StatusOr<std::string> readFile(std::string_view path,
                                       size_t maxBytes) const;
  /// Writes (or appends) `content`; `createDirs` makes missing directories
  /// on the way (inside the sandbox).
  absl::Status writeFile(std::string_view path, std::string_view content,
                         bool append, bool createDirs) const;

  /// The path's components after the purely lexical checks (no file system
  /// access): not empty, relative, no `..`, no NUL; `.` and empty components
  /// dropped.
  static absl::StatusOr<std::vector<std::string>>
  splitPath(std::string_view path);

private:
  Sandbox(std::string root, int rootFd)
      : root_(std::move(root)), rootFd_(rootFd) {}
  /// A descriptor of the directory holding the last component.
  absl::StatusOr<int> openParent(const std::vector<std::string> &components,
                                 bool createDirs) const;

  std::string root_;
  int rootFd_;
};

} // namespace treni
