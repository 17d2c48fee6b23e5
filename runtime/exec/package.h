//===- package.h - AOT packages (plan + kernel sources + cubins) -*- C++
//-*-===//
//
// A `.treni` file is everything `treni run` needs besides the weights: the
// plan, every kernel's CUDA source and the cubins compiled for one GPU
// architecture. Loading one runs neither MLIR nor (when the architecture
// matches) NVRTC. Layout: "TRENIPKG" magic, u64 little-endian manifest size,
// manifest JSON, then the cubins back to back.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "codegen/Plan.h"

namespace treni {

inline constexpr int64_t kPackageVersion = 1;

struct Package {
  Plan plan;
  std::string modelDir; ///< where the safetensors are (absolute)
  std::string arch;     ///< cubins are for this architecture ("sm_90")
  std::map<std::string, std::string> sources; ///< entry -> CUDA source
  std::map<std::string, std::string> cubins;  ///< entry -> cubin
  bool operator==(const Package &) const = default;
};

absl::Status writePackage(const std::string &path, const Package &package);
/// Reads and validates a package; every failure names the file and problem.
absl::StatusOr<Package> readPackage(const std::string &path);
/// True when `path` starts with the package magic.
bool isPackageFile(const std::string &path);

} // namespace treni
