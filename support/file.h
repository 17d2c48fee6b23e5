//===- file.h - reading files that come from outside -------------*- C++
//-*-===//
//
// A model directory, a chat template or a cached package is outside input:
// a path may name a FIFO (opening it for reading blocks until a writer
// comes), a device or a directory, or a file far larger than any real one.
// Every whole-file read goes through here: the file is opened without
// blocking, must be a regular file, and must fit the caller's bound.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"

namespace treni {

/// Opens `path` for reading without ever blocking (O_NONBLOCK, so a FIFO
/// cannot hang the caller) and checks it is a regular file. Returns the
/// descriptor (close-on-exec, blocking again) and sets `size`.
absl::StatusOr<int> openRegularFile(const std::string &path, size_t &size);

/// The whole of the regular file `path`, at most `maxBytes` long (an
/// error naming the bound otherwise).
absl::StatusOr<std::string> readRegularFile(const std::string &path,
                                            size_t maxBytes);

} // namespace treni
