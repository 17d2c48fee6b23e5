//===- dtype.h - element types as the plan spells them ----------*- C++ -*-===//
//
// A plan names element types in lower case ("bf16", "f16", "f32", "i32");
// safetensors headers in upper case ("BF16", "F16", "F32"). Both executors,
// the engine loader and codegen convert between them here.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace treni {

/// Bytes per element of a plan dtype: 2 for bf16/f16, 4 otherwise.
inline int64_t dtypeBytes(std::string_view planDtype) {
  return planDtype == "bf16" || planDtype == "f16" ? 2 : 4;
}

/// The plan spelling of a safetensors float dtype ("BF16" -> "bf16"); any
/// other float type is computed in f32.
inline std::string planDtypeOf(std::string_view safetensorsDtype) {
  if (safetensorsDtype == "BF16")
    return "bf16";
  if (safetensorsDtype == "F16")
    return "f16";
  return "f32";
}

} // namespace treni
