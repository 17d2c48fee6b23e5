//===- package.cpp - AOT packages ----------------------------------------===//

#include "runtime/exec/package.h"

#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "support/file.h"
#include "support/status.h"

namespace treni {
namespace {
constexpr char kMagic[8] = {'T', 'R', 'E', 'N', 'I', 'P', 'K', 'G'};
constexpr uint64_t kMaxManifest = 1ull << 30;

absl::Status packageError(const std::string &path, const std::string &what) {
  return absl::DataLossError(
      absl::StrCat(path, ": not a valid treni package: ", what));
}
} // namespace

bool isPackageFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  char magic[8] = {};
  return in.read(magic, 8) && std::memcmp(magic, kMagic, 8) == 0;
}

absl::Status writePackage(const std::string &path, const Package &package) {
  nlohmann::json manifest;
  manifest["version"] = kPackageVersion;
  manifest["model_dir"] = package.modelDir;
  manifest["arch"] = package.arch;
  manifest["plan"] = serializePlan(package.plan);
  nlohmann::json kernels = nlohmann::json::array();
  uint64_t offset = 0;
  for (const auto &[entry, source] : package.sources) {
    nlohmann::json kernel = {{"entry", entry}, {"source", source}};
    if (auto it = package.cubins.find(entry); it != package.cubins.end()) {
      kernel["cubin_offset"] = offset;
      kernel["cubin_size"] = it->second.size();
      offset += it->second.size();
    }
    kernels.push_back(kernel);
  }
  for (const auto &[entry, cubin] : package.cubins)
    if (!package.sources.count(entry))
      return absl::InvalidArgumentError(
          absl::StrCat("package: cubin '", entry, "' has no source"));
  manifest["kernels"] = kernels;
  std::string text = manifest.dump();

  // Write to a temporary name and rename, so a crash never leaves a torn file.
  std::string temp = absl::StrCat(path, ".tmp.", ::getpid());
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    uint64_t size = text.size();
    unsigned char length[8];
    for (int i = 0; i < 8; ++i)
      length[i] = (size >> (8 * i)) & 0xff;
    out.write(kMagic, 8);
    out.write(reinterpret_cast<const char *>(length), 8);
    out.write(text.data(), text.size());
    for (const auto &[entry, source] : package.sources)
      if (auto it = package.cubins.find(entry); it != package.cubins.end())
        out.write(it->second.data(), it->second.size());
    if (!out.flush())
      return absl::UnavailableError(absl::StrCat("cannot write ", temp));
  }
  std::error_code error;
  std::filesystem::rename(temp, path, error);
  if (error)
    return absl::UnavailableError(absl::StrCat("cannot rename ", temp, " to ",
                                               path, ": ", error.message()));
  return absl::OkStatus();
}

absl::StatusOr<Package> readPackage(const std::string &path) {
  TRENI_ASSIGN_OR_RETURN(std::string bytes,
                         readRegularFile(path, size_t{16} << 30));
  if (bytes.size() < 16 || std::memcmp(bytes.data(), kMagic, 8) != 0)
    return packageError(path, "bad magic");
  uint64_t size = 0;
  for (int i = 0; i < 8; ++i)
    size |= uint64_t(static_cast<unsigned char>(bytes[8 + i])) << (8 * i);
  if (size > kMaxManifest || size > bytes.size() - 16)
    return packageError(path, "manifest size beyond the end of the file");
  nlohmann::json manifest =
      nlohmann::json::parse(bytes.substr(16, size), nullptr, false);
  if (manifest.is_discarded() || !manifest.is_object())
    return packageError(path, "manifest is not a JSON object");
  Package package;
  try {
    if (manifest.at("version").get<int64_t>() != kPackageVersion)
      return packageError(path, absl::StrCat("version ",
                                             manifest.at("version").dump(),
                                             " is not ", kPackageVersion));
    package.modelDir = manifest.at("model_dir").get<std::string>();
    package.arch = manifest.at("arch").get<std::string>();
    TRENI_ASSIGN_OR_RETURN(package.plan,
                           parsePlan(manifest.at("plan").get<std::string>()));
    uint64_t blobs = 16 + size;
    for (const auto &kernel : manifest.at("kernels")) {
      std::string entry = kernel.at("entry").get<std::string>();
      package.sources[entry] = kernel.at("source").get<std::string>();
      if (kernel.contains("cubin_offset")) {
        uint64_t offset = kernel.at("cubin_offset").get<uint64_t>();
        uint64_t length = kernel.at("cubin_size").get<uint64_t>();
        if (offset > bytes.size() - blobs ||
            length > bytes.size() - blobs - offset)
          return packageError(
              path, absl::StrCat("cubin of '", entry,
                                 "' lies beyond the end of the file"));
        package.cubins[entry] = bytes.substr(blobs + offset, length);
      }
    }
  } catch (const nlohmann::json::exception &e) {
    return packageError(path, e.what());
  }
  return package;
}

} // namespace treni
