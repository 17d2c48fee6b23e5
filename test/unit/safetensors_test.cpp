//===- safetensors_test.cpp - safetensors reader tests --------------------===//
//
// Reads the three fixture checkpoints, checks the 16-bit float conversions
// bit for bit, and feeds the reader corrupt files written to a temporary
// directory: every error must say what is wrong, not merely fail.
//
//===----------------------------------------------------------------------===//

#include "frontends/safetensors/safetensors.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>

#include <sys/stat.h>

#include "test/unit/test_util.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace treni {
namespace {
using testing_util::fixtureDir;
using testing_util::messageOf;

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using Json = nlohmann::json;

/// A fresh, empty directory for the current test.
std::string freshTempDir() {
  const auto *info = ::testing::UnitTest::GetInstance()->current_test_info();
  fs::path dir =
      fs::path(::testing::TempDir()) /
      (std::string("treni_st_") + info->test_suite_name() + "_" + info->name());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

std::string readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void writeFile(const std::string &path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string lengthPrefix(uint64_t length) {
  std::string prefix(8, '\0');
  for (int i = 0; i < 8; ++i)
    prefix[i] = static_cast<char>((length >> (8 * i)) & 0xff);
  return prefix;
}

/// A safetensors file: length prefix, `header`, `dataSize` zero bytes.
std::string makeFile(std::string_view header, size_t dataSize) {
  return lengthPrefix(header.size()) + std::string(header) +
         std::string(dataSize, '\0');
}

absl::StatusOr<std::vector<TensorInfo>> parseBytes(std::string_view bytes) {
  absl::Span<const uint8_t> span(
      reinterpret_cast<const uint8_t *>(bytes.data()), bytes.size());
  return parseSafetensorsHeader("t.safetensors", span, bytes.size());
}

/// The error message of parsing `header` followed by `dataSize` bytes.
std::string headerError(std::string_view header, size_t dataSize = 64) {
  absl::StatusOr<std::vector<TensorInfo>> result =
      parseBytes(makeFile(header, dataSize));
  EXPECT_FALSE(result.ok()) << header;
  return result.ok() ? "<ok>" : messageOf(result.status());
}

uint32_t bitsOf(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

float floatOf(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

//===----------------------------------------------------------------------===//
// DType and conversions
//===----------------------------------------------------------------------===//

TEST(DTypeTest, NamesSizesAndParsing) {
  EXPECT_EQ(dtypeName(DType::BF16), "BF16");
  EXPECT_EQ(dtypeName(DType::F16), "F16");
  EXPECT_EQ(dtypeName(DType::F32), "F32");
  EXPECT_EQ(dtypeSize(DType::BF16), 2);
  EXPECT_EQ(dtypeSize(DType::F16), 2);
  EXPECT_EQ(dtypeSize(DType::F32), 4);
  for (DType dtype : {DType::BF16, DType::F16, DType::F32})
    EXPECT_EQ(*parseDType(dtypeName(dtype)), dtype);
  for (const char *name : {"I64", "F64", "bf16", "", "F8_E4M3"}) {
    absl::StatusOr<DType> parsed = parseDType(name);
    ASSERT_FALSE(parsed.ok()) << name;
    EXPECT_THAT(messageOf(parsed.status()),
                HasSubstr(std::string("unsupported dtype ") + name));
  }
  EXPECT_EQ(formatShape({4, 8}), "[4, 8]");
  EXPECT_EQ(formatShape({}), "[]");
}

TEST(ConversionTest, Bf16KnownBits) {
  EXPECT_EQ(bf16ToF32(0x3f80), 1.0f);
  EXPECT_EQ(bf16ToF32(0xc000), -2.0f);
  EXPECT_EQ(bf16ToF32(0x0001), std::ldexp(1.0f, -133));
  EXPECT_EQ(bf16ToF32(0x7f80), std::numeric_limits<float>::infinity());
  EXPECT_EQ(bf16ToF32(0xff80), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(bf16ToF32(0x7fc0)));
  EXPECT_EQ(bitsOf(bf16ToF32(0x8000)), 0x80000000u);

  EXPECT_EQ(f32ToBf16(1.0f), 0x3f80);
  EXPECT_EQ(f32ToBf16(-2.0f), 0xc000);
  // Round to nearest, ties to even.
  EXPECT_EQ(f32ToBf16(floatOf(0x3f808000)), 0x3f80); // tie, down to even
  EXPECT_EQ(f32ToBf16(floatOf(0x3f818000)), 0x3f82); // tie, up to even
  EXPECT_EQ(f32ToBf16(floatOf(0x3f808001)), 0x3f81); // above the tie
  EXPECT_EQ(f32ToBf16(floatOf(0x3f807fff)), 0x3f80); // below the tie
  EXPECT_EQ(f32ToBf16(floatOf(0x7f7fffff)), 0x7f80); // max float -> inf
  EXPECT_EQ(f32ToBf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(f32ToBf16(-0.0f), 0x8000);
  // NaN stays NaN, including a payload only in the low 16 bits.
  EXPECT_TRUE(std::isnan(bf16ToF32(f32ToBf16(floatOf(0x7f800001)))));
  EXPECT_TRUE(std::isnan(bf16ToF32(f32ToBf16(floatOf(0xffc00000)))));
}

TEST(ConversionTest, Bf16RoundTripsEveryValue) {
  for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
    float value = bf16ToF32(static_cast<uint16_t>(bits));
    if (std::isnan(value))
      EXPECT_TRUE(std::isnan(bf16ToF32(f32ToBf16(value)))) << bits;
    else
      EXPECT_EQ(f32ToBf16(value), bits) << bits;
  }
}

TEST(ConversionTest, F16KnownBits) {
  EXPECT_EQ(f16ToF32(0x3c00), 1.0f);
  EXPECT_EQ(f16ToF32(0xc000), -2.0f);
  EXPECT_EQ(f16ToF32(0x7bff), 65504.0f);
  EXPECT_EQ(f16ToF32(0x0400), std::ldexp(1.0f, -14)); // smallest normal
  EXPECT_EQ(f16ToF32(0x0001), std::ldexp(1.0f, -24)); // smallest subnormal
  EXPECT_EQ(f16ToF32(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(f16ToF32(0x8001), -std::ldexp(1.0f, -24));
  EXPECT_EQ(f16ToF32(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(f16ToF32(0xfc00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(f16ToF32(0x7e00)));
  EXPECT_TRUE(std::isnan(f16ToF32(0x7c01)));
  EXPECT_EQ(bitsOf(f16ToF32(0x8000)), 0x80000000u);

  EXPECT_EQ(f32ToF16(1.0f), 0x3c00);
  EXPECT_EQ(f32ToF16(65504.0f), 0x7bff);
  EXPECT_EQ(f32ToF16(65519.996f), 0x7bff);
  EXPECT_EQ(f32ToF16(65520.0f), 0x7c00); // tie rounds to even = inf
  EXPECT_EQ(f32ToF16(1e10f), 0x7c00);
  EXPECT_EQ(f32ToF16(-1e10f), 0xfc00);
  EXPECT_EQ(f32ToF16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);     // tie
  EXPECT_EQ(f32ToF16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02); // tie
  EXPECT_EQ(f32ToF16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(f32ToF16(std::ldexp(1.0f, -25)), 0x0000); // tie to even zero
  EXPECT_EQ(f32ToF16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(f32ToF16(std::ldexp(3.0f, -25)), 0x0002);    // 1.5 units: tie -> 2
  EXPECT_EQ(f32ToF16(std::ldexp(1023.5f, -24)), 0x0400); // carries to normal
  EXPECT_EQ(f32ToF16(1e-10f), 0x0000);
  EXPECT_EQ(f32ToF16(-1e-10f), 0x8000);
  EXPECT_EQ(f32ToF16(floatOf(1)), 0x0000); // f32 subnormal
  EXPECT_TRUE(std::isnan(f16ToF32(f32ToF16(floatOf(0x7f800001)))));
  EXPECT_TRUE(std::isnan(f16ToF32(f32ToF16(std::nanf("")))));
}

TEST(ConversionTest, F16RoundTripsEveryValue) {
  for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
    float value = f16ToF32(static_cast<uint16_t>(bits));
    if (std::isnan(value))
      EXPECT_TRUE(std::isnan(f16ToF32(f32ToF16(value)))) << bits;
    else
      EXPECT_EQ(f32ToF16(value), bits) << bits;
  }
}

#ifdef __FLT16_MAX__
// The compiler's _Float16 conversion rounds to nearest even: compare on
// random bit patterns, which cover every exponent including subnormals.
TEST(ConversionTest, F16MatchesCompilerOnRandomFloats) {
  std::mt19937 rng(1234);
  for (int i = 0; i < 1'000'000; ++i) {
    float value = floatOf(rng());
    if (std::isnan(value))
      continue;
    _Float16 reference = static_cast<_Float16>(value);
    uint16_t referenceBits;
    std::memcpy(&referenceBits, &reference, sizeof(referenceBits));
    ASSERT_EQ(f32ToF16(value), referenceBits) << std::hex << bitsOf(value);
    ASSERT_EQ(bitsOf(f16ToF32(referenceBits)),
              bitsOf(static_cast<float>(reference)));
  }
}
#endif

TEST(ConversionTest, ConvertToF32AllDTypes) {
  const uint16_t bf16[] = {0x3f80, 0xc000, 0x7f80};
  const uint16_t f16[] = {0x3c00, 0xc000, 0x0001};
  const float f32[] = {1.5f, -0.25f, 3.0f};
  float out[3];
  convertToF32(DType::BF16, reinterpret_cast<const uint8_t *>(bf16), out, 3);
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -2.0f);
  EXPECT_TRUE(std::isinf(out[2]));
  convertToF32(DType::F16, reinterpret_cast<const uint8_t *>(f16), out, 3);
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -2.0f);
  EXPECT_EQ(out[2], std::ldexp(1.0f, -24));
  convertToF32(DType::F32, reinterpret_cast<const uint8_t *>(f32), out, 3);
  EXPECT_EQ(out[0], 1.5f);
  EXPECT_EQ(out[1], -0.25f);
  EXPECT_EQ(out[2], 3.0f);
  // Unaligned source.
  uint8_t unaligned[7] = {0};
  std::memcpy(unaligned + 1, f16, 6);
  convertToF32(DType::F16, unaligned + 1, out, 3);
  EXPECT_EQ(out[0], 1.0f);
}

//===----------------------------------------------------------------------===//
// Fixtures
//===----------------------------------------------------------------------===//

/// Converts a tensor and checks every element is finite.
std::vector<float> convertChecked(const Checkpoint &checkpoint,
                                  const TensorInfo &tensor) {
  absl::Span<const uint8_t> bytes = checkpoint.data(tensor);
  EXPECT_EQ(bytes.size(), tensor.byteSize);
  std::vector<float> values(tensor.numElements());
  convertToF32(tensor.dtype, bytes.data(), values.data(), tensor.numElements());
  for (float value : values)
    EXPECT_TRUE(std::isfinite(value)) << tensor.name;
  return values;
}

TEST(FixtureTest, Qwen2SingleFileBf16) {
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint =
      Checkpoint::open(fixtureDir("qwen2"));
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  const Checkpoint &ckpt = **checkpoint;
  EXPECT_EQ(ckpt.tensors().size(), 26u);
  EXPECT_EQ(ckpt.totalBytes(), 238720u);
  for (const auto &[name, tensor] : ckpt.tensors()) {
    EXPECT_EQ(tensor.dtype, DType::BF16) << name;
    EXPECT_THAT(tensor.file, HasSubstr("qwen2/model.safetensors"));
  }
  const TensorInfo *embed = ckpt.find("model.embed_tokens.weight");
  ASSERT_NE(embed, nullptr);
  EXPECT_EQ(embed->shape, (std::vector<int64_t>{512, 64}));
  EXPECT_EQ(embed->fileOffset, 8u + 2672u);
  EXPECT_EQ(embed->byteSize, 512u * 64u * 2u);
  std::vector<float> values = convertChecked(ckpt, *embed);
  ASSERT_EQ(values.size(), 512u * 64u);
  EXPECT_EQ(values[0], -0.11181640625f);
  EXPECT_EQ(values[3], -0.8828125f);

  const TensorInfo *bias = ckpt.find("model.layers.1.self_attn.q_proj.bias");
  ASSERT_NE(bias, nullptr);
  EXPECT_EQ(bias->shape, (std::vector<int64_t>{64}));
  values = convertChecked(ckpt, *bias);
  EXPECT_EQ(values[0], -0.0203857421875f);
  EXPECT_EQ(values[1], 0.10546875f);
  EXPECT_EQ(values[2], -0.0517578125f);
  EXPECT_EQ(values[3], 0.0203857421875f);
  EXPECT_EQ(ckpt.find("lm_head.weight"), nullptr); // tied
  EXPECT_EQ(ckpt.find("__metadata__"), nullptr);
}

TEST(FixtureTest, LlamaShardedF32) {
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint =
      Checkpoint::open(fixtureDir("llama"));
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  const Checkpoint &ckpt = **checkpoint;
  EXPECT_EQ(ckpt.tensors().size(), 21u);
  EXPECT_EQ(ckpt.totalBytes(), 492800u); // index metadata total_size
  const TensorInfo *head = ckpt.find("lm_head.weight");
  ASSERT_NE(head, nullptr);
  EXPECT_THAT(head->file, HasSubstr("model-00006-of-00006.safetensors"));
  EXPECT_EQ(head->shape, (std::vector<int64_t>{384, 64}));
  const TensorInfo *norm = ckpt.find("model.norm.weight");
  ASSERT_NE(norm, nullptr);
  EXPECT_THAT(norm->file, HasSubstr("model-00005-of-00006.safetensors"));
  std::vector<float> values = convertChecked(ckpt, *norm);
  ASSERT_EQ(values.size(), 64u);
  EXPECT_EQ(bitsOf(values[0]), 0x3f85eda7u);
  EXPECT_EQ(bitsOf(values[3]), 0x3f6fb234u);
  for (const auto &[name, tensor] : ckpt.tensors()) {
    EXPECT_EQ(tensor.dtype, DType::F32) << name;
    convertChecked(ckpt, tensor);
  }
}

TEST(FixtureTest, Qwen3SingleFileF16) {
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint =
      Checkpoint::open(fixtureDir("qwen3"));
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  const Checkpoint &ckpt = **checkpoint;
  EXPECT_EQ(ckpt.tensors().size(), 24u);
  EXPECT_EQ(ckpt.totalBytes(), 263040u);
  const TensorInfo *kNorm = ckpt.find("model.layers.1.self_attn.k_norm.weight");
  ASSERT_NE(kNorm, nullptr);
  EXPECT_EQ(kNorm->dtype, DType::F16);
  EXPECT_EQ(kNorm->shape, (std::vector<int64_t>{32}));
  std::vector<float> values = convertChecked(ckpt, *kNorm);
  EXPECT_EQ(values[0], 0.98583984375f);
  EXPECT_EQ(values[1], 1.0322265625f);
  EXPECT_EQ(values[2], 0.96337890625f);
  EXPECT_EQ(values[3], 1.025390625f);
  for (const auto &[name, tensor] : ckpt.tensors())
    convertChecked(ckpt, tensor);
}

TEST(FixtureTest, DataOfForeignTensorIsEmpty) {
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint =
      Checkpoint::open(fixtureDir("qwen3"));
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  TensorInfo foreign;
  foreign.file = "/nonexistent";
  foreign.byteSize = 4;
  EXPECT_TRUE((*checkpoint)->data(foreign).empty());
  TensorInfo outOfRange = *(*checkpoint)->find("model.norm.weight");
  outOfRange.fileOffset = 1u << 30;
  EXPECT_TRUE((*checkpoint)->data(outOfRange).empty());
}

//===----------------------------------------------------------------------===//
// Header validation (in memory)
//===----------------------------------------------------------------------===//

TEST(HeaderTest, ParsesValidHeaderWithPaddingAndMetadata) {
  std::string header =
      R"({"__metadata__":{"format":"pt"},)"
      R"("b":{"dtype":"F32","shape":[2,2],"data_offsets":[8,24]},)"
      R"("a":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]},)"
      R"("s":{"dtype":"F16","shape":[],"data_offsets":[24,26]},)"
      R"("z":{"dtype":"F16","shape":[0,5],"data_offsets":[26,26]}})";
  header += "    ";
  absl::StatusOr<std::vector<TensorInfo>> tensors =
      parseBytes(makeFile(header, 26));
  ASSERT_TRUE(tensors.ok()) << tensors.status();
  ASSERT_EQ(tensors->size(), 4u);
  const TensorInfo &a = (*tensors)[0];
  EXPECT_EQ(a.name, "a");
  EXPECT_EQ(a.dtype, DType::BF16);
  EXPECT_EQ(a.fileOffset, 8u + header.size());
  EXPECT_EQ(a.byteSize, 8u);
  EXPECT_EQ(a.file, "t.safetensors");
  const TensorInfo &b = (*tensors)[1];
  EXPECT_EQ(b.fileOffset, 8u + header.size() + 8u);
  EXPECT_EQ(b.numElements(), 4);
  EXPECT_EQ((*tensors)[2].numElements(), 1); // scalar
  EXPECT_EQ((*tensors)[3].numElements(), 0);
  EXPECT_EQ((*tensors)[3].byteSize, 0u);
}

TEST(HeaderTest, EmptyObjectIsAnEmptyCheckpoint) {
  absl::StatusOr<std::vector<TensorInfo>> tensors =
      parseBytes(makeFile("{}", 0));
  ASSERT_TRUE(tensors.ok()) << tensors.status();
  EXPECT_TRUE(tensors->empty());
}

TEST(HeaderTest, FileShorterThanLengthPrefix) {
  absl::StatusOr<std::vector<TensorInfo>> result = parseBytes("abcde");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(messageOf(result.status()),
              HasSubstr("t.safetensors: file is 5 bytes, too short for the "
                        "8-byte header length"));
  EXPECT_FALSE(parseBytes("").ok());
}

TEST(HeaderTest, HeaderLengthZero) {
  EXPECT_THAT(headerError(""), HasSubstr("header length is 0"));
}

TEST(HeaderTest, HeaderLengthAbsurd) {
  std::string bytes = lengthPrefix(200'000'000) + "{}";
  absl::StatusOr<std::vector<TensorInfo>> result = parseBytes(bytes);
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(messageOf(result.status()),
              HasSubstr("header length 200000000 exceeds the limit of "
                        "100000000 bytes"));
  result = parseBytes(lengthPrefix(~uint64_t{0}) + "{}");
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(messageOf(result.status()), HasSubstr("exceeds the limit"));
}

TEST(HeaderTest, HeaderLengthBeyondFile) {
  std::string bytes = lengthPrefix(1000) + R"({"a":1})";
  absl::StatusOr<std::vector<TensorInfo>> result = parseBytes(bytes);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(messageOf(result.status()),
              HasSubstr("t.safetensors: header length 1000 exceeds the 7 "
                        "bytes after the length prefix"));
}

TEST(HeaderTest, OnlyPartOfTheHeaderGiven) {
  std::string bytes = makeFile("{}    ", 100);
  absl::Span<const uint8_t> span(
      reinterpret_cast<const uint8_t *>(bytes.data()), 10);
  absl::StatusOr<std::vector<TensorInfo>> result =
      parseSafetensorsHeader("t.safetensors", span, bytes.size());
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(messageOf(result.status()),
              HasSubstr("only 2 of the 6 header bytes given"));
  // The prefix plus the header is enough.
  span = absl::Span<const uint8_t>(
      reinterpret_cast<const uint8_t *>(bytes.data()), 14);
  EXPECT_TRUE(parseSafetensorsHeader("t.safetensors", span, bytes.size()).ok());
}

TEST(HeaderTest, GarbageJson) {
  EXPECT_THAT(headerError("{\"a\": [1, 2"),
              HasSubstr("t.safetensors: header is not valid JSON"));
  EXPECT_THAT(headerError("\x01\x02garbage\xff"),
              HasSubstr("header is not valid JSON"));
  EXPECT_THAT(headerError("{} trailing"),
              HasSubstr("header is not valid JSON"));
  EXPECT_THAT(headerError(std::string("{}\0\0", 4), 0),
              HasSubstr("not valid JSON"));
  EXPECT_THAT(headerError(R"({"a": NaN})"), HasSubstr("not valid JSON"));
  EXPECT_THAT(headerError(R"({"a": 1e999})"), HasSubstr("not valid JSON"));
  EXPECT_THAT(headerError("{\"\xff\": 1}"), HasSubstr("not valid JSON"));
}

TEST(HeaderTest, TopLevelNotAnObject) {
  EXPECT_THAT(headerError("[1, 2]"),
              HasSubstr("header is an array, expected a JSON object"));
  EXPECT_THAT(headerError("\"x\""), HasSubstr("expected a JSON object"));
}

TEST(HeaderTest, EntryNotAnObject) {
  EXPECT_THAT(headerError(R"({"w": [1, 2]})"),
              HasSubstr("t.safetensors: tensor 'w': entry is an array, "
                        "expected an object"));
}

TEST(HeaderTest, MissingAndExtraKeys) {
  EXPECT_THAT(headerError(R"({"w":{"dtype":"F32","shape":[1]}})"),
              HasSubstr("tensor 'w': missing 'data_offsets'"));
  EXPECT_THAT(headerError(R"({"w":{"shape":[1],"data_offsets":[0,4]}})"),
              HasSubstr("tensor 'w': missing 'dtype'"));
  EXPECT_THAT(
      headerError(
          R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})"),
      HasSubstr("tensor 'w': unexpected key 'x'"));
  EXPECT_THAT(
      headerError(R"({"":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})"),
      HasSubstr("empty tensor name"));
}

TEST(HeaderTest, DTypeNotAString) {
  EXPECT_THAT(
      headerError(R"({"w":{"dtype":7,"shape":[1],"data_offsets":[0,4]}})"),
      HasSubstr("tensor 'w': dtype is a number 7, expected a string"));
}

TEST(HeaderTest, UnsupportedDTypes) {
  for (const char *dtype :
       {"I64", "F64", "U8", "I8", "BOOL", "F8_E4M3", "F8_E5M2", "I32"}) {
    std::string header = std::string(R"({"x":{"dtype":")") + dtype +
                         R"(","shape":[1],"data_offsets":[0,8]}})";
    EXPECT_THAT(
        headerError(header),
        HasSubstr(std::string("unsupported dtype ") + dtype + " in tensor x"));
  }
  EXPECT_THAT(
      headerError(R"({"x":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})"),
      HasSubstr("t.safetensors: unsupported dtype I64 in tensor x"));
}

TEST(HeaderTest, BadShapes) {
  EXPECT_THAT(
      headerError(R"({"w":{"dtype":"F32","shape":"4","data_offsets":[0,16]}})"),
      HasSubstr("tensor 'w': shape is a string \"4\", expected an array"));
  EXPECT_THAT(
      headerError(
          R"({"w":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})"),
      HasSubstr("tensor 'w': shape has a number -4, expected non-negative "
                "integers"));
  EXPECT_THAT(
      headerError(
          R"({"w":{"dtype":"F32","shape":[4.0],"data_offsets":[0,16]}})"),
      HasSubstr("shape has a number 4.0"));
  EXPECT_THAT(
      headerError(
          R"({"w":{"dtype":"F32","shape":[[4]],"data_offsets":[0,16]}})"),
      HasSubstr("shape has an array"));
  EXPECT_THAT(
      headerError(R"({"w":{"dtype":"F32","shape":[18446744073709551615],)"
                  R"("data_offsets":[0,16]}})"),
      HasSubstr("shape dimension 18446744073709551615 is too large"));
}

TEST(HeaderTest, ShapeProductOverflow) {
  EXPECT_THAT(
      headerError(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],)"
                  R"("data_offsets":[0,16]}})"),
      HasSubstr("tensor 'w': shape [4294967296, 4294967296] x F32 does not "
                "fit in 2^63 bytes"));
  // The element count fits but the byte count does not.
  EXPECT_THAT(
      headerError(R"({"w":{"dtype":"F32","shape":[4611686018427387904],)"
                  R"("data_offsets":[0,16]}})"),
      HasSubstr("does not fit"));
  // A zero dimension after an overflow is still an overflow (no wrap trick).
  EXPECT_THAT(
      headerError(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,)"
                  R"(4294967296,0],"data_offsets":[0,0]}})"),
      HasSubstr("does not fit"));
}

TEST(HeaderTest, BadDataOffsets) {
  EXPECT_THAT(
      headerError(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}})"),
      HasSubstr("tensor 'w': data_offsets is an array of 1, expected "
                "[begin, end]"));
  EXPECT_THAT(
      headerError(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})"),
      HasSubstr("expected [begin, end] with non-negative integers"));
  EXPECT_THAT(
      headerError(
          R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4.5]}})"),
      HasSubstr("expected [begin, end]"));
  EXPECT_THAT(
      headerError(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":{}}})"),
      HasSubstr("data_offsets is an object"));
  EXPECT_THAT(
      headerError(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})"),
      HasSubstr("tensor 'w': data_offsets [8, 4) end < begin"));
}

TEST(HeaderTest, OffsetsBeyondFile) {
  absl::StatusOr<std::vector<TensorInfo>> result = parseBytes(makeFile(
      R"({"w":{"dtype":"F32","shape":[16],"data_offsets":[0,64]}})", 63));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(messageOf(result.status()),
              HasSubstr("t.safetensors: tensor 'w': data_offsets [0, 64) end "
                        "beyond the data region of 63 bytes"));
  EXPECT_THAT(headerError(R"({"w":{"dtype":"F32","shape":[0],)"
                          R"("data_offsets":[18446744073709551615,)"
                          R"(18446744073709551615]}})"),
              HasSubstr("end beyond the data region"));
}

TEST(HeaderTest, WrongByteSpan) {
  EXPECT_EQ(
      headerError(R"({"model.layers.0.mlp.up_proj.weight":{"dtype":"BF16",)"
                  R"("shape":[4,8],"data_offsets":[0,100]}})",
                  128),
      "t.safetensors: tensor 'model.layers.0.mlp.up_proj.weight': "
      "data_offsets [0, 100) span 100 bytes but shape [4, 8] x BF16 "
      "needs 64");
  EXPECT_THAT(
      headerError(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}})"),
      HasSubstr("span 8 bytes but shape [4] x F32 needs 16"));
}

TEST(HeaderTest, OverlappingTensors) {
  EXPECT_THAT(
      headerError(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                  R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})"),
      HasSubstr("t.safetensors: tensor 'b': data_offsets [8, 24) overlap "
                "tensor 'a' at [0, 16)"));
  // Contained inside a larger one that is not its direct predecessor.
  EXPECT_THAT(
      headerError(
          R"({"big":{"dtype":"F32","shape":[16],"data_offsets":[0,64]},)"
          R"("c":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},)"
          R"("d":{"dtype":"F32","shape":[1],"data_offsets":[40,44]}})"),
      HasSubstr("overlap tensor 'big'"));
  // Identical ranges.
  EXPECT_THAT(
      headerError(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                  R"("b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})"),
      HasSubstr("overlap"));
  // Adjacent ranges and empty tensors anywhere are fine.
  EXPECT_TRUE(
      parseBytes(
          makeFile(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                   R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},)"
                   R"("e":{"dtype":"F32","shape":[0],"data_offsets":[2,2]}})",
                   8))
          .ok());
}

TEST(HeaderTest, DuplicateNames) {
  EXPECT_THAT(
      headerError(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                  R"("x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})"),
      HasSubstr("t.safetensors: duplicate tensor name 'x'"));
  // Far apart, with other keys between them.
  EXPECT_THAT(
      headerError(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                  R"("y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},)"
                  R"("x":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})"),
      HasSubstr("duplicate tensor name 'x'"));
  EXPECT_THAT(headerError(R"({"x":{"dtype":"F32","dtype":"F16","shape":[1],)"
                          R"("data_offsets":[0,4]}})"),
              HasSubstr("tensor 'x': duplicate key 'dtype'"));
  EXPECT_THAT(headerError(R"({"__metadata__":{"a":"1","a":"2"}})"),
              HasSubstr("duplicate key 'a' in __metadata__"));
  // Escapes spell the same key differently.
  EXPECT_THAT(
      headerError(
          R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
          R"("\u0078":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})"),
      HasSubstr("duplicate tensor name 'x'"));
}

TEST(HeaderTest, BadMetadata) {
  EXPECT_THAT(headerError(R"({"__metadata__":{"format":1}})"),
              HasSubstr("__metadata__ value of 'format' is a number 1, "
                        "expected a string"));
  EXPECT_THAT(headerError(R"({"__metadata__":"pt"})"),
              HasSubstr("__metadata__ is a string \"pt\", expected an "
                        "object"));
}

TEST(HeaderTest, SizeLargerThanBytesIsConsistent) {
  std::string bytes = makeFile("{}", 0);
  absl::Span<const uint8_t> span(
      reinterpret_cast<const uint8_t *>(bytes.data()), bytes.size());
  absl::StatusOr<std::vector<TensorInfo>> result =
      parseSafetensorsHeader("t.safetensors", span, 4);
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(messageOf(result.status()),
              HasSubstr("10 bytes given but the file size is 4"));
}

TEST(StrictJsonTest, DuplicatesAndSyntax) {
  EXPECT_TRUE(parseStrictJson(R"({"a":{"b":1},"c":[{"b":1},{"b":2}]})").ok());
  absl::StatusOr<nlohmann::json> result = parseStrictJson(R"({"a":1,"a":2})");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(messageOf(result.status()), "duplicate key 'a'");
  result = parseStrictJson(R"({"a":{"b":{"c":1,"c":1}}})");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(messageOf(result.status()), "duplicate key 'c' in 'a' / 'b'");
  result = parseStrictJson(R"({"a":[{"c":1,"c":1}]})");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(messageOf(result.status()), "duplicate key 'c' in 'a' / '[]'");
  result = parseStrictJson("[1, 2");
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(messageOf(result.status()), HasSubstr("invalid JSON: "));
  EXPECT_THAT(messageOf(result.status()), HasSubstr("parse error"));
  result = parseStrictJson("");
  ASSERT_FALSE(result.ok());
  // Deep nesting must neither overflow the stack nor be slow.
  std::string deep = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_TRUE(parseStrictJson(deep).ok());
}

//===----------------------------------------------------------------------===//
// Files and checkpoints
//===----------------------------------------------------------------------===//

TEST(MappedFileTest, Errors) {
  std::string dir = freshTempDir();
  absl::StatusOr<MappedFile> missing = MappedFile::open(dir + "/nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(messageOf(missing.status()),
              HasSubstr("cannot open " + dir + "/nope"));
  EXPECT_THAT(messageOf(missing.status()), HasSubstr("No such file"));
  absl::StatusOr<MappedFile> directory = MappedFile::open(dir);
  ASSERT_FALSE(directory.ok());
  EXPECT_THAT(messageOf(directory.status()), HasSubstr("not a regular file"));
}

// Tests that a FIFO named model.safetensors is refused at once: opening it
// for reading used to block the loader until a writer came, i.e. forever.
TEST(CheckpointTest, FifoIsRefusedWithoutBlocking) {
  std::string dir = freshTempDir();
  ASSERT_EQ(::mkfifo((dir + "/model.safetensors").c_str(), 0600), 0);
  auto checkpoint = Checkpoint::open(dir);
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_THAT(messageOf(checkpoint.status()), HasSubstr("not a regular file"));
}

TEST(MappedFileTest, MapsAndMoves) {
  std::string dir = freshTempDir();
  writeFile(dir + "/f", "hello");
  writeFile(dir + "/empty", "");
  absl::StatusOr<MappedFile> file = MappedFile::open(dir + "/f");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->bytes().size(), 5u);
  EXPECT_EQ(file->bytes()[0], 'h');
  MappedFile moved = *std::move(file);
  EXPECT_EQ(moved.bytes().size(), 5u);
  EXPECT_EQ(moved.path(), dir + "/f");
  MappedFile assigned;
  assigned = std::move(moved);
  EXPECT_EQ(assigned.bytes()[4], 'o');
  EXPECT_TRUE(moved.bytes().empty());
  absl::StatusOr<MappedFile> empty = MappedFile::open(dir + "/empty");
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(empty->bytes().empty());
}

TEST(CheckpointTest, NoCheckpoint) {
  std::string dir = freshTempDir();
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint =
      Checkpoint::open(dir);
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_EQ(checkpoint.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(messageOf(checkpoint.status()),
              HasSubstr("no checkpoint in " + dir));
  EXPECT_FALSE(Checkpoint::open(dir + "/does/not/exist").ok());
}

TEST(CheckpointTest, EmptyFile) {
  std::string dir = freshTempDir();
  writeFile(dir + "/model.safetensors", "");
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint =
      Checkpoint::open(dir);
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_THAT(messageOf(checkpoint.status()),
              HasSubstr(dir + "/model.safetensors: file is 0 bytes"));
}

/// Copies a fixture's model.safetensors cut to `size` bytes into a new dir.
std::string truncatedQwen2(size_t size) {
  std::string bytes = readFile(fixtureDir("qwen2") + "/model.safetensors");
  std::string dir = freshTempDir();
  writeFile(dir + "/model.safetensors",
            std::string_view(bytes).substr(0, size));
  return dir;
}

TEST(CheckpointTest, TruncatedInsideHeader) {
  std::string dir = truncatedQwen2(8 + 100);
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint =
      Checkpoint::open(dir);
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_EQ(checkpoint.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(messageOf(checkpoint.status()),
              HasSubstr(dir + "/model.safetensors: header length 2672 exceeds "
                              "the 100 bytes after the length prefix"));
}

TEST(CheckpointTest, TruncatedInsideData) {
  std::string dir = truncatedQwen2(8 + 2672 + 1000);
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint =
      Checkpoint::open(dir);
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_EQ(checkpoint.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(messageOf(checkpoint.status()),
              HasSubstr(dir + "/model.safetensors: tensor "
                              "'model.embed_tokens.weight': data_offsets "
                              "[0, 65536) end beyond the data region of 1000 "
                              "bytes"));
}

TEST(CheckpointTest, TruncatedLastByte) {
  std::string bytes = readFile(fixtureDir("qwen2") + "/model.safetensors");
  std::string dir = truncatedQwen2(bytes.size() - 1);
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint =
      Checkpoint::open(dir);
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_THAT(messageOf(checkpoint.status()),
              HasSubstr("tensor 'model.norm.weight': data_offsets "
                        "[238592, 238720) end beyond the data region"));
}

/// A copy of the sharded Llama fixture; returns the new directory.
std::string copyLlama() {
  std::string dir = freshTempDir();
  for (const auto &entry : fs::directory_iterator(fixtureDir("llama")))
    fs::copy_file(entry.path(), fs::path(dir) / entry.path().filename());
  return dir;
}

Json readIndex(const std::string &dir) {
  return Json::parse(readFile(dir + "/model.safetensors.index.json"));
}

void writeIndex(const std::string &dir, const Json &index) {
  writeFile(dir + "/model.safetensors.index.json", index.dump(2));
}

std::string openError(const std::string &dir) {
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint =
      Checkpoint::open(dir);
  EXPECT_FALSE(checkpoint.ok()) << dir;
  return checkpoint.ok() ? "<ok>" : messageOf(checkpoint.status());
}

TEST(ShardedTest, CopyOpens) {
  std::string dir = copyLlama();
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint =
      Checkpoint::open(dir + "/"); // trailing slash is fine
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_EQ((*checkpoint)->tensors().size(), 21u);
}

TEST(ShardedTest, MissingShard) {
  std::string dir = copyLlama();
  fs::remove(dir + "/model-00003-of-00006.safetensors");
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint =
      Checkpoint::open(dir);
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_EQ(checkpoint.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(messageOf(checkpoint.status()),
              HasSubstr("model.safetensors.index.json: shard "
                        "'model-00003-of-00006.safetensors' (holding tensor "
                        "'model.layers.0.input_layernorm.weight') is missing"));
}

TEST(ShardedTest, TensorInWrongShard) {
  std::string dir = copyLlama();
  Json index = readIndex(dir);
  index["weight_map"]["model.norm.weight"] = "model-00001-of-00006.safetensors";
  writeIndex(dir, index);
  std::string message = openError(dir);
  EXPECT_THAT(message, HasSubstr("model-00005-of-00006.safetensors: tensor "
                                 "'model.norm.weight' is in shard "
                                 "'model-00005-of-00006.safetensors' but "));
  EXPECT_THAT(message, HasSubstr("lists it in "
                                 "'model-00001-of-00006.safetensors'"));
}

TEST(ShardedTest, TensorMissingFromItsShard) {
  std::string dir = copyLlama();
  Json index = readIndex(dir);
  index["weight_map"]["model.extra.weight"] =
      "model-00002-of-00006.safetensors";
  writeIndex(dir, index);
  EXPECT_THAT(openError(dir),
              HasSubstr("tensor 'model.extra.weight' is listed in shard "
                        "'model-00002-of-00006.safetensors' but " +
                        dir +
                        "/model-00002-of-00006.safetensors does not contain "
                        "it"));
}

TEST(ShardedTest, TensorNotInIndex) {
  std::string dir = copyLlama();
  Json index = readIndex(dir);
  index["weight_map"].erase("model.layers.0.mlp.up_proj.weight");
  writeIndex(dir, index);
  EXPECT_THAT(openError(dir),
              HasSubstr("model-00003-of-00006.safetensors: tensor "
                        "'model.layers.0.mlp.up_proj.weight' is not listed "
                        "in " +
                        dir + "/model.safetensors.index.json"));
}

TEST(ShardedTest, TensorInTwoShards) {
  std::string dir = freshTempDir();
  std::string entry = R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})";
  writeFile(dir + "/a.safetensors", makeFile("{\"x\":" + entry + "}", 4));
  writeFile(dir + "/b.safetensors", makeFile("{\"x\":" + entry + "}", 4));
  // b is listed (for y), so its copy of x is a second copy.
  writeFile(dir + "/b.safetensors",
            makeFile("{\"x\":" + entry +
                         R"(,"y":{"dtype":"F32","shape":[1],)"
                         R"("data_offsets":[4,8]}})",
                     8));
  writeIndex(dir, Json{{"weight_map",
                        {{"x", "a.safetensors"}, {"y", "b.safetensors"}}}});
  EXPECT_THAT(openError(dir),
              HasSubstr("tensor 'x' is in two shards: 'a.safetensors' and "
                        "'b.safetensors'"));
}

TEST(ShardedTest, ShardNameNotPlain) {
  std::string dir = copyLlama();
  for (const char *name : {"../model-00001-of-00006.safetensors",
                           "sub/x.safetensors", "..", "/etc/passwd", ""}) {
    Json index = readIndex(dir);
    index["weight_map"]["model.norm.weight"] = name;
    writeIndex(dir, index);
    EXPECT_THAT(openError(dir), HasSubstr("which is not a plain file name"))
        << name;
  }
}

TEST(ShardedTest, BadIndexJson) {
  std::string dir = copyLlama();
  std::string index = dir + "/model.safetensors.index.json";
  writeFile(index, "{not json");
  EXPECT_THAT(openError(dir), HasSubstr(index + ": invalid JSON"));
  writeFile(index, R"({"metadata": {}})");
  EXPECT_THAT(openError(dir), HasSubstr("missing 'weight_map'"));
  writeFile(index, R"({"weight_map": {}})");
  EXPECT_THAT(openError(dir), HasSubstr("'weight_map' is empty"));
  writeFile(index, R"({"weight_map": {"a": 3}})");
  EXPECT_THAT(openError(dir),
              HasSubstr("weight_map entry for tensor 'a' is a number 3"));
  writeFile(index, R"({"weight_map": {"a": "x.safetensors",)"
                   R"( "a": "y.safetensors"}})");
  EXPECT_THAT(openError(dir),
              HasSubstr("tensor 'a' is listed twice in weight_map"));
  writeFile(index, R"([1])");
  EXPECT_THAT(openError(dir), HasSubstr("expected a JSON object"));
}

TEST(ShardedTest, CorruptShardNamesTheShard) {
  std::string dir = copyLlama();
  std::string shard = dir + "/model-00004-of-00006.safetensors";
  std::string bytes = readFile(shard);
  writeFile(shard, std::string_view(bytes).substr(0, bytes.size() - 10));
  EXPECT_THAT(openError(dir),
              HasSubstr(shard + ": tensor 'model.layers.1.self_attn.o_proj."
                                "weight': data_offsets [65536, 81920) end "
                                "beyond the data region of 81910 bytes"));
}

//===----------------------------------------------------------------------===//
// Random garbage
//===----------------------------------------------------------------------===//

/// Any result is acceptable as long as it is consistent: a parsed tensor lies
/// inside the file.
void expectConsistent(const absl::StatusOr<std::vector<TensorInfo>> &result,
                      size_t fileSize) {
  if (!result.ok()) {
    EXPECT_FALSE(result.status().message().empty());
    return;
  }
  for (const TensorInfo &tensor : *result) {
    EXPECT_LE(tensor.fileOffset, fileSize);
    EXPECT_LE(tensor.byteSize, fileSize - tensor.fileOffset);
    EXPECT_EQ(static_cast<uint64_t>(tensor.numElements()) *
                  dtypeSize(tensor.dtype),
              tensor.byteSize);
  }
}

TEST(GarbageTest, RandomBytesAreRejected) {
  std::mt19937_64 rng(20240601);
  for (int i = 0; i < 3000; ++i) {
    std::string bytes(rng() % 600, '\0');
    for (char &byte : bytes)
      byte = static_cast<char>(rng());
    // Half of them with a plausible length prefix so the JSON path is hit.
    if (i % 2 && bytes.size() >= 8) {
      uint64_t length = rng() % (bytes.size() - 7);
      std::string prefix = lengthPrefix(length);
      bytes.replace(0, 8, prefix);
    }
    absl::StatusOr<std::vector<TensorInfo>> result = parseBytes(bytes);
    EXPECT_FALSE(result.ok()) << "input " << i;
  }
}

TEST(GarbageTest, MutatedHeadersNeverCrash) {
  std::string header =
      R"({"__metadata__":{"format":"pt"},)"
      R"("a":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]},)"
      R"("b":{"dtype":"F32","shape":[3],"data_offsets":[12,24]},)"
      R"("c":{"dtype":"F16","shape":[],"data_offsets":[24,26]}})";
  std::string valid = makeFile(header, 26);
  ASSERT_TRUE(parseBytes(valid).ok());
  const char interesting[] = "{}[]\",:0123456789-e. \\u\xff";
  std::mt19937_64 rng(7);
  int rejected = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string bytes = valid;
    int mutations = 1 + static_cast<int>(rng() % 4);
    for (int m = 0; m < mutations; ++m) {
      size_t at = rng() % bytes.size();
      switch (rng() % 4) {
      case 0:
        bytes[at] = static_cast<char>(rng());
        break;
      case 1:
        bytes[at] = interesting[rng() % (sizeof(interesting) - 1)];
        break;
      case 2:
        bytes.erase(at, 1);
        break;
      default:
        bytes.insert(at, 1, interesting[rng() % (sizeof(interesting) - 1)]);
        break;
      }
    }
    absl::StatusOr<std::vector<TensorInfo>> result = parseBytes(bytes);
    expectConsistent(result, bytes.size());
    rejected += !result.ok();
  }
  EXPECT_GT(rejected, 10000);
}

TEST(GarbageTest, RandomFilesThroughCheckpointOpen) {
  std::string dir = freshTempDir();
  std::mt19937_64 rng(99);
  for (int i = 0; i < 200; ++i) {
    std::string bytes(rng() % 300, '\0');
    for (char &byte : bytes)
      byte = static_cast<char>(rng());
    writeFile(dir + "/model.safetensors", bytes);
    absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint =
        Checkpoint::open(dir);
    ASSERT_FALSE(checkpoint.ok()) << "input " << i;
    EXPECT_THAT(messageOf(checkpoint.status()),
                HasSubstr(dir + "/model.safetensors: "));
  }
}

} // namespace
} // namespace treni
