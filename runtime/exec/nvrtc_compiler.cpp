//===- nvrtc_compiler.cpp - CUDA C++ -> cubin, cached on disk ------------===//
//
// A cache file is one header line followed by the cubin:
//
//   treni-cubin 1 <sha-256 of the cubin, hex> <cubin bytes>\n<cubin>
//
// so a truncated, corrupted or foreign file is detected and rebuilt rather
// than handed to the driver. Files are written under a unique temporary name
// and renamed into place, which is atomic on POSIX: a concurrent reader sees
// either no file or a whole one.
//
//===----------------------------------------------------------------------===//

#include "runtime/exec/nvrtc_compiler.h"
#include "support/sha256.h"

#include <array>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <thread>
#include <unistd.h>

#include <nvrtc.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "support/file.h"

namespace treni {
namespace {
namespace fs = std::filesystem;

/// "sm_90", "sm_90a", "sm_100f": a real architecture NVRTC can emit a cubin
/// for.
bool isRealArch(std::string_view arch) {
  if (!arch.starts_with("sm_"))
    return false;
  arch.remove_prefix(3);
  if (!arch.empty() && (arch.back() == 'a' || arch.back() == 'f'))
    arch.remove_suffix(1);
  return arch.size() >= 2 &&
         arch.find_first_not_of("0123456789") == std::string_view::npos;
}

constexpr std::string_view kMagic = "treni-cubin 1";

/// The NVRTC status of `call` as an error, with the program log when any.
absl::Status nvrtcError(const char *call, nvrtcResult result,
                        const std::string &arch, const std::string &source,
                        const std::string &log = "") {
  std::string firstLine = source.substr(0, source.find('\n'));
  return absl::InternalError(
      absl::StrCat(call, " failed for ", arch, ": ",
                   nvrtcGetErrorString(result), " (compiling `", firstLine,
                   "`)", log.empty() ? "" : "\nNVRTC log:\n", log));
}

/// The cubin inside a cache file's bytes, or nothing when the file is not
/// an intact cache file.
std::optional<std::string> parseCacheFile(const std::string &bytes) {
  size_t newline = bytes.find('\n');
  if (newline == std::string::npos)
    return std::nullopt;
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::string_view(bytes).substr(0, newline), ' ');
  uint64_t size = 0;
  if (fields.size() != 4 ||
      absl::StrCat(fields[0], " ", fields[1]) != std::string(kMagic) ||
      !absl::SimpleAtoi(fields[3], &size) || bytes.size() - newline - 1 != size)
    return std::nullopt;
  std::string cubin = bytes.substr(newline + 1);
  if (sha256Hex(cubin) != std::string(fields[2]))
    return std::nullopt;
  return cubin;
}

/// A cached cubin, or nullopt when there is none (or it is not a regular
/// file of a sane size: the cache is then simply missed).
std::optional<std::string> readFile(const std::string &path) {
  absl::StatusOr<std::string> bytes = readRegularFile(path, size_t{1} << 30);
  if (!bytes.ok())
    return std::nullopt;
  return std::move(*bytes);
}

/// Best effort: a cache that cannot be written only costs a recompile later.
void writeCacheFile(const std::string &path, const std::string &cubin) {
  static std::atomic<uint64_t> counter{0};
  std::error_code error;
  fs::create_directories(fs::path(path).parent_path(), error);
  std::string temporary = absl::StrCat(
      path, ".tmp.", ::getpid(), ".",
      std::hash<std::thread::id>()(std::this_thread::get_id()), ".", counter++);
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out << kMagic << " " << sha256Hex(cubin) << " " << cubin.size() << "\n"
        << cubin;
    out.close();
    if (!out) {
      fs::remove(temporary, error);
      return;
    }
  }
  fs::rename(temporary, path, error);
  if (error)
    fs::remove(temporary, error);
}

} // namespace

std::string nvrtcTargetFor(int major, int minor) {
  return absl::StrCat("sm_", major, minor, major == 9 && minor == 0 ? "a" : "");
}

std::string nvrtcVersion() {
  int major = 0, minor = 0;
  if (::nvrtcVersion(&major, &minor) != NVRTC_SUCCESS)
    return "unknown";
  return absl::StrCat(major, ".", minor);
}

KernelCompiler::KernelCompiler(std::string cacheDir)
    : cacheDir_(std::move(cacheDir)) {}

std::string KernelCompiler::defaultCacheDir() {
  if (const char *dir = std::getenv("TRENI_CACHE_DIR"); dir && *dir)
    return dir;
  if (const char *home = std::getenv("HOME"); home && *home)
    return absl::StrCat(home, "/.cache/treni");
  return "";
}

std::vector<std::string> KernelCompiler::options(const std::string &arch) {
  // No fast math: the kernels must match the CPU reference (full-precision
  // expf/sinf/cosf, IEEE division and square root, denormals kept).
  return {absl::StrCat("--gpu-architecture=", arch), "-std=c++17"};
}

std::string KernelCompiler::cachePath(const std::string &source,
                                      const std::string &arch) const {
  if (cacheDir_.empty())
    return "";
  std::string key = source + '\0' + arch + '\0' + nvrtcVersion() + '\0' +
                    absl::StrJoin(options(arch), " ");
  return absl::StrCat(cacheDir_, "/cubin/", sha256Hex(key), "-", arch,
                      ".cubin");
}

absl::StatusOr<std::string> KernelCompiler::cubin(const std::string &source,
                                                  const std::string &arch) {
  if (!isRealArch(arch))
    return absl::InvalidArgumentError(absl::StrCat(
        "GPU architecture '", arch, "' is not of the form sm_XY (e.g. sm_90)"));
  std::string path = cachePath(source, arch);
  if (!path.empty())
    if (std::optional<std::string> bytes = readFile(path))
      if (std::optional<std::string> cached = parseCacheFile(*bytes)) {
        ++cacheHits_;
        return std::move(*cached);
      }

  nvrtcProgram program;
  nvrtcResult result = nvrtcCreateProgram(
      &program, source.c_str(), "treni_kernel.cu", 0, nullptr, nullptr);
  if (result != NVRTC_SUCCESS)
    return nvrtcError("nvrtcCreateProgram", result, arch, source);
  struct Destroy {
    nvrtcProgram &program;
    ~Destroy() { nvrtcDestroyProgram(&program); }
  } destroy{program};

  std::vector<std::string> optionStrings = options(arch);
  std::vector<const char *> optionPointers;
  for (const std::string &option : optionStrings)
    optionPointers.push_back(option.c_str());
  ++compiles_;
  result = nvrtcCompileProgram(program, int(optionPointers.size()),
                               optionPointers.data());
  if (result != NVRTC_SUCCESS) {
    std::string log;
    size_t logSize = 0;
    if (nvrtcGetProgramLogSize(program, &logSize) == NVRTC_SUCCESS &&
        logSize > 1) {
      log.resize(logSize);
      if (nvrtcGetProgramLog(program, log.data()) != NVRTC_SUCCESS)
        log.clear();
      while (!log.empty() && (log.back() == '\0' || log.back() == '\n'))
        log.pop_back();
    }
    return nvrtcError("nvrtcCompileProgram", result, arch, source, log);
  }
  size_t size = 0;
  result = nvrtcGetCUBINSize(program, &size);
  if (result != NVRTC_SUCCESS)
    return nvrtcError("nvrtcGetCUBINSize", result, arch, source);
  std::string cubin(size, '\0');
  result = nvrtcGetCUBIN(program, cubin.data());
  if (result != NVRTC_SUCCESS)
    return nvrtcError("nvrtcGetCUBIN", result, arch, source);
  if (!path.empty())
    writeCacheFile(path, cubin);
  return cubin;
}

} // namespace treni
