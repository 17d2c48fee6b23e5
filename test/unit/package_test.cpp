//===- package_test.cpp - AOT packages and the engine loader (CPU) -------===//

#include <filesystem>
#include <fstream>

#include "codegen/mlir/Compiler.h"
#include "frontends/safetensors/model_dir.h"
#include "nlohmann/json.hpp"
#include "runtime/exec/cpu_executor.h"
#include "runtime/exec/engine_loader.h"
#include "runtime/exec/package.h"
#include "test/unit/test_util.h"
#include "gtest/gtest.h"

namespace treni {
namespace {
using testing_util::fixtureDir;
namespace fs = std::filesystem;

Package makePackage() {
  mlir::MLIRContext context;
  auto compiled = compileModelDir(context, fixtureDir("qwen3"), {});
  EXPECT_TRUE(compiled.ok()) << compiled.status();
  Package package;
  package.plan = compiled->plan;
  package.modelDir = fixtureDir("qwen3");
  package.arch = "sm_90";
  package.sources["k1"] = "extern \"C\" __global__ void k1() {}";
  package.sources["k2"] = "extern \"C\" __global__ void k2() {}";
  package.cubins["k1"] = std::string("\x7f"
                                     "ELF\0\1\2binary",
                                     13);
  return package;
}

std::string tempPath(const std::string &name) {
  return (fs::path(testing::TempDir()) / name).string();
}

TEST(PackageTest, RoundTrips) {
  Package package = makePackage();
  std::string path = tempPath("roundtrip.treni");
  ASSERT_TRUE(writePackage(path, package).ok());
  EXPECT_TRUE(isPackageFile(path));
  auto read = readPackage(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_TRUE(*read == package);
  EXPECT_EQ(read->cubins.at("k1").size(), 13u);
  EXPECT_EQ(read->cubins.count("k2"), 0u);
}

TEST(PackageTest, RejectsCorruptFiles) {
  Package package = makePackage();
  std::string path = tempPath("corrupt.treni");
  ASSERT_TRUE(writePackage(path, package).ok());
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto writeBytes = [&](const std::string &content) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << content;
  };
  // Truncated inside the cubins.
  writeBytes(bytes.substr(0, bytes.size() - 4));
  auto read = readPackage(path);
  ASSERT_FALSE(read.ok());
  EXPECT_NE(read.status().message().find("beyond the end"), std::string::npos)
      << read.status();
  // Truncated inside the manifest.
  writeBytes(bytes.substr(0, 40));
  EXPECT_FALSE(readPackage(path).ok());
  // Wrong magic.
  writeBytes("NOTAPKG!" + bytes.substr(8));
  read = readPackage(path);
  ASSERT_FALSE(read.ok());
  EXPECT_NE(read.status().message().find("bad magic"), std::string::npos);
  EXPECT_FALSE(isPackageFile(path));
  // A manifest length pointing past the end.
  std::string lying = bytes;
  lying[15] = '\x7f';
  writeBytes(lying);
  EXPECT_FALSE(readPackage(path).ok());
  EXPECT_FALSE(readPackage(tempPath("missing.treni")).ok());
}

TEST(EngineTest, CpuEngineRunsAPackageWithoutMlir) {
  Package package = makePackage();
  std::string path = tempPath("cpu.treni");
  ASSERT_TRUE(writePackage(path, package).ok());
  EngineOptions options;
  options.maxSeq = 64;
  auto fromPackage = loadEngine(path, options);
  ASSERT_TRUE(fromPackage.ok()) << fromPackage.status();
  EXPECT_FALSE((*fromPackage)->stats().ranMlir);
  auto fromDir = loadEngine(fixtureDir("qwen3"), options);
  ASSERT_TRUE(fromDir.ok()) << fromDir.status();
  EXPECT_TRUE((*fromDir)->stats().ranMlir);

  // Greedy generation agrees with the goldens' argmax at the prompt's end.
  std::ifstream in(fixtureDir("qwen3") + "/golden.json");
  nlohmann::json golden = nlohmann::json::parse(in);
  auto prompt = golden["prompt_ids"].get<std::vector<int32_t>>();
  auto row = golden["logits"][prompt.size() - 1].get<std::vector<float>>();
  int32_t expected = std::max_element(row.begin(), row.end()) - row.begin();
  SamplingParams greedy;
  auto a = (*fromPackage)->prefill(prompt, greedy);
  auto b = (*fromDir)->prefill(prompt, greedy);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->token, expected);
  EXPECT_EQ(b->token, expected);
  EXPECT_LT(a->logprob, 0.0f);
  EXPECT_GT(a->entropy, 0.0f);
}

// Tests that a load handed an opened model directory reads nothing of it
// again: with config.json and the safetensors gone from disk after the open
// (the mapping stays valid), the engine still compiles, loads its weights
// and gives the same logits as a load of the intact directory.
TEST(EngineTest, LoadUsesTheModelDirectoryItWasHanded) {
  fs::path dir = fs::path(tempPath("opened-once"));
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const char *file : {"config.json", "model.safetensors"})
    fs::copy_file(fs::path(fixtureDir("qwen2")) / file, dir / file);
  auto opened = openModelDir(dir.string());
  ASSERT_TRUE(opened.ok()) << opened.status();
  fs::remove(dir / "config.json");
  fs::remove(dir / "model.safetensors");

  EngineOptions options;
  options.maxSeq = 64;
  EXPECT_FALSE(loadEngine(dir.string(), options).ok()); // nothing on disk
  options.modelDir = *opened;
  auto handed = loadEngine(dir.string(), options);
  ASSERT_TRUE(handed.ok()) << handed.status();
  options.modelDir = nullptr;
  auto intact = loadEngine(fixtureDir("qwen2"), options);
  ASSERT_TRUE(intact.ok()) << intact.status();

  std::vector<int32_t> prompt = {1, 2, 3, 4};
  SamplingParams greedy;
  ASSERT_TRUE((*handed)->prefill(prompt, greedy).ok());
  ASSERT_TRUE((*intact)->prefill(prompt, greedy).ok());
  auto a = (*handed)->lastLogits();
  auto b = (*intact)->lastLogits();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
}

// Tests chunked prefill: a 13-token prompt prefilled in chunks of 5 (three
// chunks, each attending to the cache rows the ones before wrote) gives the
// logits of the whole prompt at once, and so do the decode steps after it
// (they read every cache row the chunks wrote). Also: a chunk of 0 tokens is
// refused, and an automatic --max-seq on the CPU is 4096 capped by the
// model's max_position_embeddings.
TEST(EngineTest, ChunkedPrefillMatchesWholePrompt) {
  std::vector<int32_t> prompt = {5, 17, 3, 99, 42, 7, 1, 64, 12, 8, 30, 2, 77};
  SamplingParams greedy;
  std::vector<std::vector<float>> logits[2];
  for (int64_t chunk : {int64_t(2048), int64_t(5)}) {
    EngineOptions options;
    options.prefillChunk = chunk;
    auto engine = loadEngine(fixtureDir("qwen2"), options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    auto first = (*engine)->prefill(prompt, greedy);
    ASSERT_TRUE(first.ok()) << first.status();
    auto &out = logits[chunk == 5];
    out.push_back(*(*engine)->lastLogits());
    int32_t token = first->token;
    for (int64_t position = prompt.size(); position < 16; ++position) {
      auto next = (*engine)->decode(token, position, greedy);
      ASSERT_TRUE(next.ok()) << next.status();
      out.push_back(*(*engine)->lastLogits());
      token = next->token;
    }
  }
  ASSERT_EQ(logits[0].size(), logits[1].size());
  for (size_t i = 0; i < logits[0].size(); ++i) {
    EXPECT_LE(testing_util::relativeError(logits[1][i], logits[0][i]), 1e-6)
        << "position " << prompt.size() - 1 + i;
    EXPECT_EQ(argmax(logits[1][i]), argmax(logits[0][i]));
  }

  EngineOptions zero;
  zero.prefillChunk = 0;
  auto refused = loadEngine(fixtureDir("qwen2"), zero);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("prefill chunk"), std::string::npos)
      << refused.status();
  EngineOptions automatic;
  automatic.maxSeq = 0;
  auto engine = loadEngine(fixtureDir("qwen2"), automatic);
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto dir = openModelDir(fixtureDir("qwen2"));
  ASSERT_TRUE(dir.ok());
  EXPECT_EQ((*engine)->maxSeq(),
            std::min<int64_t>(4096, (*dir)->config.maxPositionEmbeddings));
}

TEST(EngineTest, GpuWithoutADeviceIsAClearError) {
  // CI machines have no GPU; on a GPU machine this test is skipped.
  EngineOptions options;
  options.device = Device::Gpu;
  options.cacheDir = tempPath("cache");
  auto engine = loadEngine(fixtureDir("qwen2"), options);
  if (engine.ok())
    GTEST_SKIP() << "a GPU is present";
  EXPECT_NE(engine.status().message().find("CUDA"), std::string::npos)
      << engine.status();
}

} // namespace
} // namespace treni
