//===- support_test.cpp - the shared helpers in support/ ------------------===//

#include <filesystem>
#include <fstream>
#include <string>

#include <sys/stat.h>

#include "support/ascii.h"
#include "support/dtype.h"
#include "support/file.h"
#include "support/json.h"
#include "support/json_bounded.h"
#include "support/utf8.h"
#include "gtest/gtest.h"

namespace treni {
namespace {

std::string nestedArrays(int depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

// Tests that the depth scan counts arrays and objects but not brackets in
// strings, escaped quotes included.
TEST(JsonBounded, DepthIgnoresBracketsInStrings) {
  EXPECT_EQ(jsonNestingDepth("1", 64), 0);
  EXPECT_EQ(jsonNestingDepth(R"({"a": [1, {"b": []}]})", 64), 4);
  EXPECT_EQ(jsonNestingDepth(R"(["[[[[", "\"[[[["])", 64), 1);
  EXPECT_EQ(jsonNestingDepth(nestedArrays(100), 10), 11);
}

// Tests that a document deeper than the bound is refused before it is built,
// naming the bound, and one at the bound parses.
TEST(JsonBounded, RefusesDeepDocuments) {
  auto deep = parseJsonBounded(nestedArrays(20000));
  ASSERT_FALSE(deep.ok());
  EXPECT_NE(deep.status().message().find("deeper than 64"), std::string::npos)
      << deep.status();
  auto atLimit = parseJsonBounded(nestedArrays(64));
  ASSERT_TRUE(atLimit.ok()) << atLimit.status();
  EXPECT_EQ(jsonValueDepth(*atLimit), 64);
  EXPECT_FALSE(parseJsonBounded(nestedArrays(65)).ok());
  EXPECT_TRUE(parseJsonBounded(nestedArrays(65), 65).ok());
}

// Tests that invalid JSON is an error that names where it broke, and that
// the ordered variant keeps keys in document order.
TEST(JsonBounded, ErrorsAndKeyOrder) {
  auto bad = parseJsonBounded(R"({"a": })");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("line 1, column 7"), std::string::npos)
      << bad.status();
  EXPECT_EQ(bad.status().message().find("json.exception"), std::string::npos);
  auto ordered = parseOrderedJsonBounded(R"({"z": 1, "a": 2, "m": 3})");
  ASSERT_TRUE(ordered.ok());
  EXPECT_EQ(dumpJson(*ordered), R"({"z":1,"a":2,"m":3})");
  auto sorted = parseJsonBounded(R"({"z": 1, "a": 2, "m": 3})");
  ASSERT_TRUE(sorted.ok());
  EXPECT_EQ(dumpJson(*sorted), R"({"a":2,"m":3,"z":1})");
}

// Tests that a number too large for a double is an error rather than an
// escaping out_of_range exception, and that no message carries nlohmann's
// "[json.exception..." tag.
TEST(JsonBounded, NumberOverflowIsAnError) {
  auto huge = parseOrderedJsonBounded(R"({"t": 1e400})");
  ASSERT_FALSE(huge.ok());
  EXPECT_NE(huge.status().message().find("1e400"), std::string::npos)
      << huge.status();
  EXPECT_EQ(huge.status().message().find("json.exception"), std::string::npos)
      << huge.status();
  auto bad = parseJsonBounded("[1,");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message().find("json.exception"), std::string::npos)
      << bad.status();
}

// Tests that dumpJson replaces invalid UTF-8 instead of throwing.
TEST(Json, DumpReplacesInvalidUtf8) {
  nlohmann::json value = std::string("a\xff");
  EXPECT_EQ(dumpJson(value), "\"a\xEF\xBF\xBD\"");
}

// Tests the first-invalid-byte offset that request errors report.
TEST(Utf8, FirstInvalidOffset) {
  EXPECT_EQ(utf8::firstInvalid("plain"), std::string_view::npos);
  EXPECT_EQ(utf8::firstInvalid("ok \xC3\xA9 then \xC0\xAF"), 11u);
  EXPECT_EQ(utf8::firstInvalid("\xED\xA0\x80"), 0u); // a surrogate
  EXPECT_FALSE(utf8::isValid("\xF4\x90\x80\x80"));   // above U+10FFFF
}

// Tests that whole-file reads take regular files only, never block on a
// FIFO, and hold to their size bound.
TEST(File, RegularFilesOnlyAndBounded) {
  namespace fs = std::filesystem;
  fs::path dir = fs::path(::testing::TempDir()) / "treni_support_file";
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream((dir / "ok.txt").string()) << "hello";
  auto ok = readRegularFile((dir / "ok.txt").string(), 5);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok, "hello");
  auto tooBig = readRegularFile((dir / "ok.txt").string(), 4);
  ASSERT_FALSE(tooBig.ok());
  EXPECT_NE(tooBig.status().message().find("the limit is 4"),
            std::string::npos);
  ASSERT_EQ(::mkfifo((dir / "fifo").c_str(), 0600), 0);
  auto fifo = readRegularFile((dir / "fifo").string(), 1 << 20);
  ASSERT_FALSE(fifo.ok());
  EXPECT_NE(fifo.status().message().find("not a regular file"),
            std::string::npos);
  EXPECT_FALSE(readRegularFile(dir.string(), 1 << 20).ok());
  EXPECT_FALSE(readRegularFile((dir / "missing").string(), 1 << 20).ok());
}

TEST(Ascii, HexDigits) {
  EXPECT_EQ(hexDigitValue('0'), 0);
  EXPECT_EQ(hexDigitValue('a'), 10);
  EXPECT_EQ(hexDigitValue('F'), 15);
  EXPECT_EQ(hexDigitValue('g'), -1);
}

TEST(Dtype, BytesAndSpelling) {
  EXPECT_EQ(dtypeBytes("bf16"), 2);
  EXPECT_EQ(dtypeBytes("f16"), 2);
  EXPECT_EQ(dtypeBytes("f32"), 4);
  EXPECT_EQ(planDtypeOf("BF16"), "bf16");
  EXPECT_EQ(planDtypeOf("F16"), "f16");
  EXPECT_EQ(planDtypeOf("F32"), "f32");
}

} // namespace
} // namespace treni
