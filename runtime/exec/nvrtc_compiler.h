//===- nvrtc_compiler.h - CUDA C++ -> cubin, cached on disk -----*- C++ -*-===//
//
// NVRTC compiles generated kernel sources for the GPU that is present (it
// needs no GPU itself, so CI compiles every kernel too). Cubins are cached on
// disk under <cacheDir>/cubin/, keyed by the SHA-256 of source, arch, NVRTC
// version and options: a second load of the same model compiles nothing.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "support/sha256.h" // sha256Hex: the cache key

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace treni {

/// NVRTC's version, e.g. "13.0".
std::string nvrtcVersion();

/// The target kernels are compiled for on a device of compute capability
/// major.minor: "sm_XY", and Hopper's "sm_90a", whose arch-specific features
/// (wgmma, which attention_flash uses) a cubin for exactly that
/// architecture may use.
std::string nvrtcTargetFor(int major, int minor);

/// Thread-safe: concurrent calls (and concurrent processes sharing the cache
/// directory) are fine.
class KernelCompiler {
public:
  /// `cacheDir`: on-disk cache directory; "" disables the disk cache.
  explicit KernelCompiler(std::string cacheDir);

  /// $TRENI_CACHE_DIR, else $HOME/.cache/treni, else "" (no disk cache).
  static std::string defaultCacheDir();

  /// NVRTC options used for `arch` ("sm_90"): part of the cache key.
  static std::vector<std::string> options(const std::string &arch);

  /// Cubin for `source` compiled for `arch` ("sm_80", "sm_90"): from the cache
  /// when present and intact, else compiled by NVRTC and stored (written to a
  /// temporary file, then renamed). A corrupt or short cache file is ignored
  /// and replaced. NVRTC failures name the call and carry the program log.
  absl::StatusOr<std::string> cubin(const std::string &source,
                                    const std::string &arch);

  /// Where the cubin of (source, arch) is or would be cached ("" when the
  /// disk cache is disabled).
  std::string cachePath(const std::string &source,
                        const std::string &arch) const;

  const std::string &cacheDir() const { return cacheDir_; }
  /// NVRTC compilations run by this compiler (successful or not).
  int64_t compiles() const { return compiles_; }
  /// Cubins served from the disk cache.
  int64_t cacheHits() const { return cacheHits_; }

private:
  std::string cacheDir_;
  std::atomic<int64_t> compiles_{0};
  std::atomic<int64_t> cacheHits_{0};
};

} // namespace treni
