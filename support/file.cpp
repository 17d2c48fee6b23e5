//===- file.cpp - reading files that come from outside --------------------===//

#include "support/file.h"

#include <cerrno>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace treni {

absl::StatusOr<int> openRegularFile(const std::string &path, size_t &size) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot open ", path));
  struct stat info;
  if (::fstat(fd, &info) != 0) {
    int error = errno;
    ::close(fd);
    return absl::ErrnoToStatus(error, absl::StrCat("cannot stat ", path));
  }
  if (!S_ISREG(info.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read ", path, ": not a regular file"));
  }
  // Reads of a regular file never block anyway; clear the flag so that
  // nothing downstream sees EAGAIN.
  int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0)
    ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  size = static_cast<size_t>(info.st_size);
  return fd;
}

absl::StatusOr<std::string> readRegularFile(const std::string &path,
                                            size_t maxBytes) {
  size_t size = 0;
  absl::StatusOr<int> fd = openRegularFile(path, size);
  if (!fd.ok())
    return fd.status();
  if (size > maxBytes) {
    ::close(*fd);
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is ", size, " bytes; the limit is ", maxBytes));
  }
  std::string bytes(size, '\0');
  size_t done = 0;
  while (done < size) {
    ssize_t got = ::read(*fd, bytes.data() + done, size - done);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0) {
      int error = got < 0 ? errno : EIO;
      ::close(*fd);
      return absl::ErrnoToStatus(error, absl::StrCat("cannot read ", path));
    }
    done += static_cast<size_t>(got);
  }
  ::close(*fd);
  return bytes;
}

} // namespace treni
