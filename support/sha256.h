//===- sha256.h - SHA-256 of a byte string ----------------------*- C++ -*-===//
//
// The NVRTC cubin cache keys and the tokenizer goldens' digests.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <string>
#include <string_view>

namespace treni {

/// Lower-case hex SHA-256 (FIPS 180-4) of `bytes`.
std::string sha256Hex(std::string_view bytes);

} // namespace treni
