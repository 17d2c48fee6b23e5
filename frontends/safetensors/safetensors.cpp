//===- safetensors.cpp - mmap reader for safetensors checkpoints ----------===//
//
// The header is untrusted input: it is parsed with a SAX builder that never
// throws and rejects duplicate keys, then every entry is checked against the
// file size before any offset is used. Every error names the file, the tensor
// and the problem.
//
//===----------------------------------------------------------------------===//

#include "frontends/safetensors/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <tuple>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "support/file.h"
#include <nlohmann/json.hpp>

namespace treni {
namespace {

using Json = nlohmann::json;

/// The reference implementation's limit; a larger header is not a checkpoint.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr uint64_t kLengthPrefixBytes = 8;

/// Debian's Abseil has its own string_view, which StrCat wants.
absl::string_view toAbsl(std::string_view text) {
  return {text.data(), text.size()};
}

//===----------------------------------------------------------------------===//
// Strict JSON parsing
//===----------------------------------------------------------------------===//

/// Why parseJson failed. `path` lists the keys of the objects enclosing the
/// duplicate (empty for a duplicate at the top level).
struct JsonError {
  bool duplicate = false;
  std::string message; ///< syntax error text, when !duplicate
  std::string key;     ///< the duplicated key
  std::vector<std::string> path;
};

/// Builds a DOM from SAX events, failing on the first duplicate object key.
/// Mirrors nlohmann's own DOM builder: only the innermost open container is
/// ever modified, so the pointers to its ancestors stay valid.
class StrictJsonBuilder : public nlohmann::json_sax<Json> {
public:
  explicit StrictJsonBuilder(JsonError &error) : error(error) {}

  Json result;

  bool null() override { return addValue(Json(nullptr)); }
  bool boolean(bool value) override { return addValue(Json(value)); }
  bool number_integer(number_integer_t value) override {
    return addValue(Json(value));
  }
  bool number_unsigned(number_unsigned_t value) override {
    return addValue(Json(value));
  }
  bool number_float(number_float_t value, const string_t &) override {
    // The lexer already rejects overflow; keep the DOM free of inf/nan anyway.
    if (!std::isfinite(value)) {
      error.message = "non-finite number";
      return false;
    }
    return addValue(Json(value));
  }
  bool string(string_t &value) override {
    return addValue(Json(std::move(value)));
  }
  bool binary(binary_t &) override {
    error.message = "binary values are not JSON";
    return false;
  }
  bool start_object(std::size_t) override {
    Json *object = addContainer(Json::object());
    return object != nullptr;
  }
  bool key(string_t &key) override {
    Json &object = *stack.back();
    if (object.contains(key)) {
      error.duplicate = true;
      error.key = key;
      for (size_t i = 0; i + 1 < keys.size(); ++i)
        error.path.push_back(keys[i]);
      return false;
    }
    keys.back() = std::move(key);
    return true;
  }
  bool end_object() override { return pop(); }
  bool start_array(std::size_t) override {
    Json *array = addContainer(Json::array());
    keys.back() = "[]"; // shown in the path of a duplicate inside it
    return array != nullptr;
  }
  bool end_array() override { return pop(); }
  bool parse_error(std::size_t, const std::string &,
                   const nlohmann::detail::exception &ex) override {
    std::string_view what = ex.what();
    // Drop the "[json.exception.parse_error.101] " prefix.
    if (!what.empty() && what.front() == '[') {
      size_t close = what.find("] ");
      if (close != std::string_view::npos)
        what.remove_prefix(close + 2);
    }
    error.message = std::string(what);
    return false;
  }

private:
  /// Inserts `value` into the innermost open container (or makes it the root)
  /// and returns where it now lives.
  Json *insert(Json &&value) {
    if (stack.empty()) {
      result = std::move(value);
      return &result;
    }
    Json &parent = *stack.back();
    if (parent.is_array()) {
      parent.push_back(std::move(value));
      return &parent.back();
    }
    Json &slot = parent[keys.back()];
    slot = std::move(value);
    return &slot;
  }
  bool addValue(Json &&value) {
    insert(std::move(value));
    return true;
  }
  Json *addContainer(Json &&value) {
    Json *container = insert(std::move(value));
    stack.push_back(container);
    keys.emplace_back();
    return container;
  }
  bool pop() {
    stack.pop_back();
    keys.pop_back();
    return true;
  }

  JsonError &error;
  std::vector<Json *> stack;
  /// The current key of each open container (unused for arrays).
  std::vector<std::string> keys;
};

/// Returns false and fills `error` on a syntax error or a duplicate key.
bool parseJson(std::string_view text, Json &out, JsonError &error) {
  // nlohmann's lexer takes a NUL byte for the end of the input and would
  // accept anything after it; JSON has no raw NUL anywhere.
  if (size_t nul = text.find('\0'); nul != std::string_view::npos) {
    error.message = absl::StrCat("NUL byte at offset ", nul);
    return false;
  }
  try {
    StrictJsonBuilder builder(error);
    bool ok = Json::sax_parse(text.begin(), text.end(), &builder,
                              nlohmann::json::input_format_t::json,
                              /*strict=*/true, /*ignore_comments=*/false);
    if (!ok) {
      if (!error.duplicate && error.message.empty())
        error.message = "malformed JSON";
      return false;
    }
    out = std::move(builder.result);
    return true;
  } catch (const std::exception &e) {
    error.duplicate = false;
    error.message = e.what();
    return false;
  }
}

/// Accepts a JSON integer >= 0 (not a float such as 4.0).
bool readNonNegativeInt(const Json &value, uint64_t &out) {
  if (value.is_number_unsigned()) {
    out = value.get<uint64_t>();
    return true;
  }
  if (value.is_number_integer()) {
    int64_t signedValue = value.get<int64_t>();
    if (signedValue < 0)
      return false;
    out = static_cast<uint64_t>(signedValue);
    return true;
  }
  return false;
}

std::string formatRange(uint64_t begin, uint64_t end) {
  return absl::StrCat("[", begin, ", ", end, ")");
}

//===----------------------------------------------------------------------===//
// Header validation
//===----------------------------------------------------------------------===//

absl::Status fileError(absl::StatusCode code, absl::string_view file,
                       absl::string_view message) {
  return absl::Status(code, absl::StrCat(file, ": ", message));
}

absl::Status tensorError(absl::StatusCode code, absl::string_view file,
                         absl::string_view tensor, absl::string_view message) {
  return absl::Status(code,
                      absl::StrCat(file, ": tensor '", tensor, "': ", message));
}

/// A validated entry plus its offsets relative to the data region.
struct ParsedEntry {
  TensorInfo info;
  uint64_t begin = 0;
  uint64_t end = 0;
};

absl::StatusOr<ParsedEntry> parseEntry(absl::string_view file,
                                       const std::string &name,
                                       const Json &entry, uint64_t dataStart,
                                       uint64_t dataSize) {
  constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;
  auto error = [&](absl::string_view message) {
    return tensorError(kInvalid, file, name, message);
  };
  if (name.empty())
    return fileError(kInvalid, file, "empty tensor name");
  if (!entry.is_object())
    return error(absl::StrCat("entry is ", describeJson(entry),
                              ", expected an object with dtype, shape and "
                              "data_offsets"));
  for (const auto &[key, value] : entry.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets")
      return error(absl::StrCat("unexpected key '", key,
                                "' (expected dtype, shape, data_offsets)"));
  }
  for (const char *key : {"dtype", "shape", "data_offsets"}) {
    if (!entry.contains(key))
      return error(absl::StrCat("missing '", key, "'"));
  }

  ParsedEntry parsed;
  TensorInfo &info = parsed.info;
  info.name = name;
  info.file = std::string(file);

  const Json &dtype = entry["dtype"];
  if (!dtype.is_string())
    return error(
        absl::StrCat("dtype is ", describeJson(dtype), ", expected a string"));
  const std::string &dtypeText = dtype.get_ref<const std::string &>();
  absl::StatusOr<DType> parsedDType = parseDType(dtypeText);
  if (!parsedDType.ok())
    return fileError(kInvalid, file,
                     absl::StrCat("unsupported dtype ", dtypeText,
                                  " in tensor ", name,
                                  " (supported: BF16, F16, F32)"));
  info.dtype = *parsedDType;

  const Json &shape = entry["shape"];
  if (!shape.is_array())
    return error(absl::StrCat("shape is ", describeJson(shape),
                              ", expected an array of non-negative integers"));
  int64_t numElements = 1;
  bool overflow = false;
  for (const Json &dim : shape) {
    uint64_t size = 0;
    if (!readNonNegativeInt(dim, size))
      return error(absl::StrCat("shape has ", describeJson(dim),
                                ", expected non-negative integers"));
    if (size > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return error(absl::StrCat("shape dimension ", size, " is too large"));
    info.shape.push_back(static_cast<int64_t>(size));
    overflow |= __builtin_mul_overflow(numElements, static_cast<int64_t>(size),
                                       &numElements);
  }
  int64_t byteSize = 0;
  if (overflow ||
      __builtin_mul_overflow(numElements, dtypeSize(info.dtype), &byteSize))
    return error(absl::StrCat("shape ", formatShape(info.shape), " x ",
                              toAbsl(dtypeName(info.dtype)),
                              " does not fit in 2^63 bytes"));
  info.byteSize = static_cast<uint64_t>(byteSize);

  const Json &offsets = entry["data_offsets"];
  uint64_t begin = 0, end = 0;
  if (!offsets.is_array() || offsets.size() != 2 ||
      !readNonNegativeInt(offsets[0], begin) ||
      !readNonNegativeInt(offsets[1], end))
    return error(absl::StrCat(
        "data_offsets is ", describeJson(offsets),
        (offsets.is_array() ? absl::StrCat(" of ", offsets.size()) : ""),
        ", expected [begin, end] with non-negative integers"));
  if (begin > end)
    return error(
        absl::StrCat("data_offsets ", formatRange(begin, end), " end < begin"));
  if (end > dataSize)
    return tensorError(absl::StatusCode::kDataLoss, file, name,
                       absl::StrCat("data_offsets ", formatRange(begin, end),
                                    " end beyond the data region of ", dataSize,
                                    " bytes (file truncated?)"));
  if (end - begin != info.byteSize)
    return error(absl::StrCat(
        "data_offsets ", formatRange(begin, end), " span ", end - begin,
        " bytes but shape ", formatShape(info.shape), " x ",
        toAbsl(dtypeName(info.dtype)), " needs ", info.byteSize));
  info.fileOffset = dataStart + begin;
  parsed.begin = begin;
  parsed.end = end;
  return parsed;
}

absl::StatusOr<std::vector<TensorInfo>>
parseHeaderImpl(absl::string_view file, absl::Span<const uint8_t> bytes,
                uint64_t fileSize) {
  constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;
  constexpr auto kDataLoss = absl::StatusCode::kDataLoss;
  if (bytes.size() > fileSize)
    return fileError(kInvalid, file,
                     absl::StrCat(bytes.size(),
                                  " bytes given but the file size is ",
                                  fileSize));
  if (fileSize < kLengthPrefixBytes)
    return fileError(kDataLoss, file,
                     absl::StrCat("file is ", fileSize,
                                  " bytes, too short for the 8-byte header "
                                  "length"));
  if (bytes.size() < kLengthPrefixBytes)
    return fileError(kInvalid, file,
                     absl::StrCat("only ", bytes.size(),
                                  " bytes given, need the 8-byte header "
                                  "length"));
  uint64_t headerSize = 0;
  for (int i = 7; i >= 0; --i)
    headerSize = (headerSize << 8) | bytes[i];
  if (headerSize == 0)
    return fileError(kInvalid, file, "header length is 0");
  if (headerSize > kMaxHeaderBytes)
    return fileError(kInvalid, file,
                     absl::StrCat("header length ", headerSize,
                                  " exceeds the limit of ", kMaxHeaderBytes,
                                  " bytes (not a safetensors file?)"));
  uint64_t afterPrefix = fileSize - kLengthPrefixBytes;
  if (headerSize > afterPrefix)
    return fileError(kDataLoss, file,
                     absl::StrCat("header length ", headerSize, " exceeds the ",
                                  afterPrefix,
                                  " bytes after the length prefix (file "
                                  "truncated?)"));
  if (headerSize > bytes.size() - kLengthPrefixBytes)
    return fileError(kInvalid, file,
                     absl::StrCat("only ", bytes.size() - kLengthPrefixBytes,
                                  " of the ", headerSize,
                                  " header bytes given"));

  std::string_view text(reinterpret_cast<const char *>(bytes.data()) +
                            kLengthPrefixBytes,
                        headerSize);
  Json header;
  JsonError jsonError;
  if (!parseJson(text, header, jsonError)) {
    if (!jsonError.duplicate)
      return fileError(
          kInvalid, file,
          absl::StrCat("header is not valid JSON: ", jsonError.message));
    if (jsonError.path.empty())
      return fileError(kInvalid, file,
                       absl::StrCat("duplicate tensor name '", jsonError.key,
                                    "' in the header"));
    if (jsonError.path.front() == "__metadata__")
      return fileError(
          kInvalid, file,
          absl::StrCat("duplicate key '", jsonError.key, "' in __metadata__"));
    return tensorError(kInvalid, file, jsonError.path.front(),
                       absl::StrCat("duplicate key '", jsonError.key, "'"));
  }
  if (!header.is_object())
    return fileError(kInvalid, file,
                     absl::StrCat("header is ", describeJson(header),
                                  ", expected a JSON object"));

  uint64_t dataStart = kLengthPrefixBytes + headerSize;
  uint64_t dataSize = fileSize - dataStart;
  std::vector<ParsedEntry> entries;
  for (const auto &[name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object())
        return fileError(kInvalid, file,
                         absl::StrCat("__metadata__ is ", describeJson(entry),
                                      ", expected an object of strings"));
      for (const auto &[key, value] : entry.items()) {
        if (!value.is_string())
          return fileError(kInvalid, file,
                           absl::StrCat("__metadata__ value of '", key, "' is ",
                                        describeJson(value),
                                        ", expected a string"));
      }
      continue;
    }
    absl::StatusOr<ParsedEntry> parsed =
        parseEntry(file, name, entry, dataStart, dataSize);
    if (!parsed.ok())
      return parsed.status();
    entries.push_back(*std::move(parsed));
  }

  // Overlap: sort by begin; every non-empty range must start at or after the
  // furthest end seen so far.
  std::vector<const ParsedEntry *> byOffset;
  for (const ParsedEntry &entry : entries)
    if (entry.end > entry.begin)
      byOffset.push_back(&entry);
  std::sort(byOffset.begin(), byOffset.end(),
            [](const ParsedEntry *a, const ParsedEntry *b) {
              return std::tie(a->begin, a->end, a->info.name) <
                     std::tie(b->begin, b->end, b->info.name);
            });
  const ParsedEntry *furthest = nullptr;
  for (const ParsedEntry *entry : byOffset) {
    if (furthest && entry->begin < furthest->end)
      return tensorError(
          kInvalid, file, entry->info.name,
          absl::StrCat("data_offsets ", formatRange(entry->begin, entry->end),
                       " overlap tensor '", furthest->info.name, "' at ",
                       formatRange(furthest->begin, furthest->end)));
    if (!furthest || entry->end > furthest->end)
      furthest = entry;
  }

  std::vector<TensorInfo> tensors;
  tensors.reserve(entries.size());
  for (ParsedEntry &entry : entries)
    tensors.push_back(std::move(entry.info));
  return tensors;
}

/// Reads `path` into `out` through a temporary mapping.
absl::Status readWholeFile(const std::string &path, std::string &out) {
  absl::StatusOr<MappedFile> file = MappedFile::open(path);
  if (!file.ok())
    return file.status();
  absl::Span<const uint8_t> bytes = file->bytes();
  out.assign(reinterpret_cast<const char *>(bytes.data()), bytes.size());
  return absl::OkStatus();
}

bool isPlainFileName(std::string_view name) {
  return !name.empty() && name.find('/') == std::string_view::npos &&
         name.find('\\') == std::string_view::npos &&
         name.find('\0') == std::string_view::npos &&
         name.find("..") == std::string_view::npos && name != ".";
}

std::string joinPath(const std::string &dir, std::string_view name) {
  return (std::filesystem::path(dir) / std::filesystem::path(name)).string();
}

bool pathExists(const std::string &path) {
  struct stat info;
  return ::stat(path.c_str(), &info) == 0;
}

} // namespace

//===----------------------------------------------------------------------===//
// DType and conversions
//===----------------------------------------------------------------------===//

std::string_view dtypeName(DType dtype) {
  switch (dtype) {
  case DType::BF16:
    return "BF16";
  case DType::F16:
    return "F16";
  case DType::F32:
    return "F32";
  }
  return "?";
}

int64_t dtypeSize(DType dtype) {
  switch (dtype) {
  case DType::BF16:
  case DType::F16:
    return 2;
  case DType::F32:
    return 4;
  }
  return 0;
}

absl::StatusOr<DType> parseDType(std::string_view name) {
  if (name == "BF16")
    return DType::BF16;
  if (name == "F16")
    return DType::F16;
  if (name == "F32")
    return DType::F32;
  return absl::InvalidArgumentError(absl::StrCat(
      "unsupported dtype ", toAbsl(name), " (supported: BF16, F16, F32)"));
}

int64_t TensorInfo::numElements() const {
  int64_t count = 1;
  for (int64_t dim : shape)
    count *= dim;
  return count;
}

std::string formatShape(absl::Span<const int64_t> shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

static float bitsToFloat(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

static uint32_t floatToBits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

float bf16ToF32(uint16_t bits) {
  return bitsToFloat(static_cast<uint32_t>(bits) << 16);
}

float f16ToF32(uint16_t bits) {
  uint32_t sign = static_cast<uint32_t>(bits & 0x8000) << 16;
  uint32_t exponent = (bits >> 10) & 0x1f;
  uint32_t mantissa = bits & 0x3ff;
  if (exponent == 0x1f) // inf / nan, payload kept
    return bitsToFloat(sign | 0x7f800000 | (mantissa << 13));
  if (exponent != 0)
    return bitsToFloat(sign | ((exponent + 127 - 15) << 23) | (mantissa << 13));
  if (mantissa == 0)
    return bitsToFloat(sign);
  // Subnormal: mantissa x 2^-24, exact in f32.
  float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
  return sign ? -magnitude : magnitude;
}

uint16_t f32ToBf16(float value) {
  uint32_t bits = floatToBits(value);
  if ((bits & 0x7fffffff) > 0x7f800000) // nan: truncate, force quiet
    return static_cast<uint16_t>((bits >> 16) | 0x0040);
  uint32_t roundingBias = 0x7fff + ((bits >> 16) & 1);
  return static_cast<uint16_t>((bits + roundingBias) >> 16);
}

uint16_t f32ToF16(float value) {
  uint32_t bits = floatToBits(value);
  uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000);
  uint32_t magnitude = bits & 0x7fffffff;
  if (magnitude > 0x7f800000) // nan: keep the top payload bits, force quiet
    return sign | 0x7e00 | ((magnitude >> 13) & 0x3ff);
  // 65520 is halfway between 65504 (max f16) and 65536; ties go to even,
  // which is infinity.
  if (magnitude >= 0x477ff000)
    return sign | 0x7c00;
  uint32_t exponent = magnitude >> 23;
  uint32_t mantissa = magnitude & 0x7fffff;
  uint32_t half;
  uint32_t shift;
  if (exponent >= 113) { // normal f16 (>= 2^-14)
    half = ((exponent - 112) << 10) | (mantissa >> 13);
    shift = 13;
    mantissa &= 0x1fff;
  } else { // subnormal f16 or zero: units of 2^-24
    if (exponent < 102)
      return sign;
    mantissa |= 0x800000;
    shift = 126 - exponent;
    half = mantissa >> shift;
    mantissa &= (1u << shift) - 1;
  }
  uint32_t halfway = 1u << (shift - 1);
  if (mantissa > halfway || (mantissa == halfway && (half & 1)))
    ++half; // may carry into the exponent, which is the right answer
  return sign | static_cast<uint16_t>(half);
}

void convertToF32(DType dtype, const uint8_t *src, float *dst, int64_t count) {
  if (count <= 0)
    return;
  switch (dtype) {
  case DType::F32:
    std::memcpy(dst, src, static_cast<size_t>(count) * sizeof(float));
    return;
  case DType::BF16:
  case DType::F16:
    for (int64_t i = 0; i < count; ++i) {
      uint16_t bits;
      std::memcpy(&bits, src + 2 * i, sizeof(bits));
      dst[i] = dtype == DType::BF16 ? bf16ToF32(bits) : f16ToF32(bits);
    }
    return;
  }
}

//===----------------------------------------------------------------------===//
// Parsing entry points
//===----------------------------------------------------------------------===//

absl::StatusOr<nlohmann::json> parseStrictJson(std::string_view text) {
  Json value;
  JsonError error;
  if (parseJson(text, value, error))
    return value;
  if (!error.duplicate)
    return absl::InvalidArgumentError(
        absl::StrCat("invalid JSON: ", error.message));
  if (error.path.empty())
    return absl::InvalidArgumentError(
        absl::StrCat("duplicate key '", error.key, "'"));
  return absl::InvalidArgumentError(
      absl::StrCat("duplicate key '", error.key, "' in '",
                   absl::StrJoin(error.path, "' / '"), "'"));
}

absl::StatusOr<std::vector<TensorInfo>>
parseSafetensorsHeader(std::string_view fileName,
                       absl::Span<const uint8_t> bytes, uint64_t fileSize) {
  try {
    return parseHeaderImpl(toAbsl(fileName), bytes, fileSize);
  } catch (const std::exception &e) {
    return absl::InternalError(absl::StrCat(
        toAbsl(fileName),
        ": unexpected error while parsing the header: ", e.what()));
  }
}

absl::StatusOr<std::map<std::string, std::string, std::less<>>>
parseSafetensorsIndex(std::string_view json, std::string_view fileName) {
  auto error = [&](absl::string_view message) {
    return absl::InvalidArgumentError(
        absl::StrCat(toAbsl(fileName), ": ", message));
  };
  try {
    Json index;
    JsonError jsonError;
    if (!parseJson(json, index, jsonError)) {
      if (!jsonError.duplicate)
        return error(absl::StrCat("invalid JSON: ", jsonError.message));
      if (jsonError.path.size() == 1 && jsonError.path[0] == "weight_map")
        return error(absl::StrCat("tensor '", jsonError.key,
                                  "' is listed twice in weight_map"));
      return error(absl::StrCat("duplicate key '", jsonError.key, "'"));
    }
    if (!index.is_object())
      return error(absl::StrCat("index is ", describeJson(index),
                                ", expected a JSON object"));
    if (index.contains("metadata") && !index["metadata"].is_object() &&
        !index["metadata"].is_null())
      return error(absl::StrCat("'metadata' is ",
                                describeJson(index["metadata"]),
                                ", expected an object"));
    if (!index.contains("weight_map"))
      return error("missing 'weight_map'");
    const Json &weightMap = index["weight_map"];
    if (!weightMap.is_object())
      return error(absl::StrCat("'weight_map' is ", describeJson(weightMap),
                                ", expected an object"));
    if (weightMap.empty())
      return error("'weight_map' is empty");
    std::map<std::string, std::string, std::less<>> result;
    for (const auto &[tensor, shard] : weightMap.items()) {
      if (tensor.empty())
        return error("empty tensor name in weight_map");
      if (!shard.is_string())
        return error(absl::StrCat("weight_map entry for tensor '", tensor,
                                  "' is ", describeJson(shard),
                                  ", expected a shard file name"));
      const std::string &shardName = shard.get_ref<const std::string &>();
      if (!isPlainFileName(shardName))
        return error(absl::StrCat("tensor '", tensor, "' maps to shard '",
                                  shardName,
                                  "', which is not a plain file name"));
      result.emplace(tensor, shardName);
    }
    return result;
  } catch (const std::exception &e) {
    return absl::InternalError(
        absl::StrCat(toAbsl(fileName),
                     ": unexpected error while parsing the index: ", e.what()));
  }
}

//===----------------------------------------------------------------------===//
// MappedFile
//===----------------------------------------------------------------------===//

absl::StatusOr<MappedFile> MappedFile::open(const std::string &path) {
  // A FIFO or device named model.safetensors must not block the loader.
  MappedFile file;
  absl::StatusOr<int> fd = openRegularFile(path, file.size_);
  if (!fd.ok())
    return fd.status();
  file.path_ = path;
  if (file.size_ > 0) {
    void *data = ::mmap(nullptr, file.size_, PROT_READ, MAP_PRIVATE, *fd, 0);
    if (data == MAP_FAILED) {
      int error = errno;
      ::close(*fd);
      file.size_ = 0;
      return absl::ErrnoToStatus(error, absl::StrCat("cannot mmap ", path));
    }
    file.data_ = static_cast<const uint8_t *>(data);
  }
  ::close(*fd);
  return file;
}

MappedFile::MappedFile(MappedFile &&other) noexcept
    : path_(std::move(other.path_)), data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

MappedFile &MappedFile::operator=(MappedFile &&other) noexcept {
  if (this != &other) {
    if (data_)
      ::munmap(const_cast<uint8_t *>(data_), size_);
    path_ = std::move(other.path_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (data_)
    ::munmap(const_cast<uint8_t *>(data_), size_);
}

//===----------------------------------------------------------------------===//
// Checkpoint
//===----------------------------------------------------------------------===//

absl::StatusOr<std::unique_ptr<Checkpoint>>
Checkpoint::open(const std::string &dir) {
  try {
    auto checkpoint = std::make_unique<Checkpoint>();
    checkpoint->dir_ = dir;

    // Maps, validates and records one file; returns its tensors.
    auto openFile = [&](const std::string &path)
        -> absl::StatusOr<std::vector<TensorInfo>> {
      absl::StatusOr<MappedFile> file = MappedFile::open(path);
      if (!file.ok())
        return file.status();
      absl::StatusOr<std::vector<TensorInfo>> tensors =
          parseSafetensorsHeader(path, file->bytes(), file->bytes().size());
      if (!tensors.ok())
        return tensors.status();
      checkpoint->files_.emplace(path, *std::move(file));
      return tensors;
    };

    std::string indexPath = joinPath(dir, "model.safetensors.index.json");
    std::string singlePath = joinPath(dir, "model.safetensors");
    if (!pathExists(indexPath)) {
      if (!pathExists(singlePath))
        return absl::NotFoundError(
            absl::StrCat("no checkpoint in ", dir,
                         ": neither model.safetensors nor "
                         "model.safetensors.index.json exists"));
      absl::StatusOr<std::vector<TensorInfo>> tensors = openFile(singlePath);
      if (!tensors.ok())
        return tensors.status();
      for (TensorInfo &tensor : *tensors) {
        std::string name = tensor.name;
        checkpoint->tensors_.emplace(std::move(name), std::move(tensor));
      }
      return checkpoint;
    }

    std::string indexText;
    if (absl::Status status = readWholeFile(indexPath, indexText); !status.ok())
      return status;
    absl::StatusOr<std::map<std::string, std::string, std::less<>>> weightMap =
        parseSafetensorsIndex(indexText, indexPath);
    if (!weightMap.ok())
      return weightMap.status();

    // shard -> one tensor it should hold, for the error when it is missing.
    std::map<std::string, std::string> shards;
    for (const auto &[tensor, shard] : *weightMap)
      shards.emplace(shard, tensor);
    // tensor -> shard that actually holds it.
    std::map<std::string, std::string, std::less<>> found;
    for (const auto &[shard, exampleTensor] : shards) {
      std::string path = joinPath(dir, shard);
      absl::StatusOr<std::vector<TensorInfo>> tensors = openFile(path);
      if (!tensors.ok()) {
        if (absl::IsNotFound(tensors.status()))
          return absl::NotFoundError(absl::StrCat(
              indexPath, ": shard '", shard, "' (holding tensor '",
              exampleTensor, "') is missing: ", tensors.status().message()));
        return tensors.status();
      }
      for (TensorInfo &tensor : *tensors) {
        auto listed = weightMap->find(tensor.name);
        if (listed == weightMap->end())
          return absl::InvalidArgumentError(
              absl::StrCat(path, ": tensor '", tensor.name,
                           "' is not listed in ", indexPath));
        auto [previous, inserted] = found.emplace(tensor.name, shard);
        if (!inserted)
          return absl::InvalidArgumentError(absl::StrCat(
              dir, ": tensor '", tensor.name, "' is in two shards: '",
              previous->second, "' and '", shard, "'"));
        if (listed->second != shard)
          return absl::InvalidArgumentError(absl::StrCat(
              path, ": tensor '", tensor.name, "' is in shard '", shard,
              "' but ", indexPath, " lists it in '", listed->second, "'"));
        std::string name = tensor.name;
        checkpoint->tensors_.emplace(std::move(name), std::move(tensor));
      }
    }
    for (const auto &[tensor, shard] : *weightMap) {
      if (!found.count(tensor))
        return absl::InvalidArgumentError(absl::StrCat(
            indexPath, ": tensor '", tensor, "' is listed in shard '", shard,
            "' but ", joinPath(dir, shard), " does not contain it"));
    }
    return checkpoint;
  } catch (const std::exception &e) {
    return absl::InternalError(absl::StrCat(
        dir, ": unexpected error while opening the checkpoint: ", e.what()));
  }
}

const TensorInfo *Checkpoint::find(std::string_view name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

absl::Span<const uint8_t> Checkpoint::data(const TensorInfo &tensor) const {
  auto it = files_.find(tensor.file);
  if (it == files_.end())
    return {};
  absl::Span<const uint8_t> bytes = it->second.bytes();
  if (tensor.fileOffset > bytes.size() ||
      tensor.byteSize > bytes.size() - tensor.fileOffset)
    return {};
  return bytes.subspan(tensor.fileOffset, tensor.byteSize);
}

uint64_t Checkpoint::totalBytes() const {
  uint64_t total = 0;
  for (const auto &[name, tensor] : tensors_)
    total += tensor.byteSize;
  return total;
}

/// "a string \"64\"", "an object", ... for error messages.
std::string describeJson(const nlohmann::json &value) {
  using Json = nlohmann::json;
  switch (value.type()) {
  case Json::value_t::null:
    return "null";
  case Json::value_t::object:
    return "an object";
  case Json::value_t::array:
    return "an array";
  case Json::value_t::boolean:
    return absl::StrCat("a boolean ", value.get<bool>() ? "true" : "false");
  case Json::value_t::string:
  case Json::value_t::number_integer:
  case Json::value_t::number_unsigned:
  case Json::value_t::number_float: {
    std::string text =
        value.dump(-1, ' ', false, Json::error_handler_t::replace);
    if (text.size() > 40)
      text = absl::StrCat(text.substr(0, 40), "...");
    return absl::StrCat(value.is_string() ? "a string " : "a number ", text);
  }
  default:
    return "an unsupported value";
  }
}

} // namespace treni
