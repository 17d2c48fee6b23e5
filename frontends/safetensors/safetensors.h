//===- safetensors.h - mmap reader for safetensors checkpoints --*- C++ -*-===//
//
// Reads `model.safetensors` or a sharded checkpoint
// (`model.safetensors.index.json`
// + shards) by mmap. Every tensor's header entry is validated strictly: dtype,
// shape, offsets inside the file, byte span == shape x dtype size, no overlap,
// no duplicate names. Errors name the file, the tensor and the problem.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include <nlohmann/json_fwd.hpp>

namespace treni {

/// Element types a checkpoint tensor may have. Anything else is rejected with
/// "unsupported dtype X in tensor Y".
enum class DType { BF16, F16, F32 };

/// "BF16", "F16", "F32" (the safetensors spelling).
std::string_view dtypeName(DType dtype);
/// Size of one element in bytes.
int64_t dtypeSize(DType dtype);
/// Parses the safetensors spelling; fails for anything but BF16/F16/F32.
absl::StatusOr<DType> parseDType(std::string_view name);

/// One tensor of a checkpoint.
struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::string file;        ///< Path of the file that holds it.
  uint64_t fileOffset = 0; ///< Absolute byte offset of the data in `file`.
  uint64_t byteSize = 0;   ///< shape product x dtypeSize.
  int64_t numElements() const;
};

/// Parses and validates a safetensors header. `bytes` is the whole file (or at
/// least the 8-byte length prefix plus the header); `fileSize` is the size of
/// the whole file so data offsets can be checked. `fileName` is used in errors
/// and stored in TensorInfo::file. Never crashes on any input: this is the
/// libFuzzer entry point. The `__metadata__` entry is accepted and ignored
/// (it must be an object of strings).
absl::StatusOr<std::vector<TensorInfo>>
parseSafetensorsHeader(std::string_view fileName,
                       absl::Span<const uint8_t> bytes, uint64_t fileSize);

/// Parses `model.safetensors.index.json` text: tensor name -> shard file name.
/// Shard names must be plain file names (no '/', no ".."); a tensor listed
/// twice, an empty or missing `weight_map` are errors naming `fileName`.
absl::StatusOr<std::map<std::string, std::string, std::less<>>>
parseSafetensorsIndex(std::string_view json, std::string_view fileName);

/// Parses JSON text without exceptions and rejects duplicate object keys,
/// which nlohmann::json would silently collapse to the last one. The error
/// says what is wrong and where; callers prefix the file name.
absl::StatusOr<nlohmann::json> parseStrictJson(std::string_view text);

/// "[4, 8]"; "[]" for a scalar.
std::string formatShape(absl::Span<const int64_t> shape);

/// "a string \"64\"", "an object", ... for error messages about JSON values.
std::string describeJson(const nlohmann::json &value);

/// A read-only memory map of one file. Move-only.
class MappedFile {
public:
  static absl::StatusOr<MappedFile> open(const std::string &path);
  MappedFile() = default;
  MappedFile(MappedFile &&other) noexcept;
  MappedFile &operator=(MappedFile &&other) noexcept;
  MappedFile(const MappedFile &) = delete;
  MappedFile &operator=(const MappedFile &) = delete;
  ~MappedFile();

  absl::Span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::string &path() const { return path_; }

private:
  std::string path_;
  const uint8_t *data_ = nullptr;
  size_t size_ = 0;
};

/// A checkpoint directory: one `model.safetensors`, or shards listed by
/// `model.safetensors.index.json` (every shard is opened and validated; a
/// tensor listed in the index but missing from its shard, or present in a
/// shard but not the index, or in two shards, is an error).
class Checkpoint {
public:
  static absl::StatusOr<std::unique_ptr<Checkpoint>>
  open(const std::string &dir);

  /// nullptr when absent.
  const TensorInfo *find(std::string_view name) const;
  /// The raw bytes of a tensor (in its own dtype), inside the mmap.
  absl::Span<const uint8_t> data(const TensorInfo &tensor) const;
  /// All tensors, sorted by name.
  const std::map<std::string, TensorInfo, std::less<>> &tensors() const {
    return tensors_;
  }
  const std::string &dir() const { return dir_; }
  /// Sum of all tensor byte sizes.
  uint64_t totalBytes() const;

private:
  std::string dir_;
  std::map<std::string, MappedFile> files_; ///< path -> mapping
  std::map<std::string, TensorInfo, std::less<>> tensors_;
};

/// Converts `count` elements of `dtype` at `src` to fp32 (bf16/f16 exactly).
void convertToF32(DType dtype, const uint8_t *src, float *dst, int64_t count);
float bf16ToF32(uint16_t bits);
float f16ToF32(uint16_t bits);
uint16_t f32ToBf16(float value); ///< round to nearest even
uint16_t f32ToF16(float value);  ///< round to nearest even

} // namespace treni
