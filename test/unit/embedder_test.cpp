//===- embedder_test.cpp - pooled embeddings against one-input references ===//
//
// The Embedder batches many inputs into steps of a CPU step runner (small
// steps and a small pool, so long inputs go chunk by chunk and inputs wait
// for blocks); every vector must equal the one computed from a contiguous
// executor's @embed of that input alone, pooled and normalised here.
//
//===----------------------------------------------------------------------===//

#include "runtime/serve/embedder.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "codegen/mlir/Compiler.h"
#include "runtime/exec/cpu_executor.h"
#include "runtime/exec/engine_loader.h"
#include "test/unit/test_util.h"
#include "gtest/gtest.h"

namespace treni {
namespace {
using testing_util::fixtureDir;

constexpr int64_t kMaxSeq = 256;

/// `input`'s vector from a contiguous executor, pooled and normalised.
std::vector<float> reference(CpuExecutor &executor,
                             const std::vector<int32_t> &input, Pooling pooling,
                             int64_t dimensions) {
  auto rows = executor.embed(input, 0);
  EXPECT_TRUE(rows.ok()) << rows.status();
  if (!rows.ok())
    return {};
  const int64_t hidden = executor.hiddenSize(), count = int64_t(input.size());
  std::vector<float> vector(hidden);
  for (int64_t d = 0; d < hidden; ++d) {
    double value = 0;
    if (pooling == Pooling::LastToken)
      value = (*rows)[(count - 1) * hidden + d];
    else if (pooling == Pooling::Cls)
      value = (*rows)[d];
    else {
      for (int64_t r = 0; r < count; ++r)
        value += (*rows)[r * hidden + d];
      value /= double(count);
    }
    vector[d] = float(value);
  }
  if (dimensions > 0)
    vector.resize(dimensions);
  double norm = 0;
  for (float v : vector)
    norm += double(v) * v;
  for (float &v : vector)
    v = float(v / std::sqrt(norm));
  return vector;
}

class EmbedderTest : public ::testing::TestWithParam<Pooling> {
protected:
  void SetUp() override {
    EngineOptions options;
    options.maxSeq = kMaxSeq;
    auto engine = loadEngine(fixtureDir("qwen3"), options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
    mlir::MLIRContext context;
    auto compiled = compileModelDir(context, fixtureDir("qwen3"), {});
    ASSERT_TRUE(compiled.ok()) << compiled.status();
    auto executor =
        CpuExecutor::create(compiled->plan, fixtureDir("qwen3"), kMaxSeq);
    ASSERT_TRUE(executor.ok()) << executor.status();
    reference_ = std::move(*executor);
  }
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<CpuExecutor> reference_;
};

TEST_P(EmbedderTest, BatchedChunkedInputsEqualEachInputAlone) {
  // A pool of 4 blocks (256 positions) and steps of 48 rows: the 130- and
  // 200-token inputs take several steps, and inputs wait for blocks.
  auto runner = engine_->createStepRunner(4, 48);
  ASSERT_TRUE(runner.ok()) << runner.status();
  Embedder embedder(**runner, GetParam(), 48);
  ASSERT_EQ(embedder.hiddenSize(), reference_->hiddenSize());
  EXPECT_EQ(embedder.maxInputTokens(), kMaxSeq);
  std::vector<std::vector<int32_t>> inputs;
  for (int length : {1, 5, 130, 64, 200, 65, 3})
    inputs.push_back([&] {
      std::vector<int32_t> tokens;
      for (int i = 0; i < length; ++i)
        tokens.push_back(int32_t((i * 31 + length * 7 + 3) % 384));
      return tokens;
    }());
  for (int64_t dimensions : {int64_t(0), int64_t(16)}) {
    auto vectors = embedder.embed(inputs, dimensions);
    ASSERT_TRUE(vectors.ok()) << vectors.status();
    ASSERT_EQ(vectors->size(), inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i) {
      std::vector<float> want =
          reference(*reference_, inputs[i], GetParam(), dimensions);
      ASSERT_EQ((*vectors)[i].size(), want.size()) << "input " << i;
      double norm = 0;
      for (size_t d = 0; d < want.size(); ++d) {
        EXPECT_NEAR((*vectors)[i][d], want[d], 1e-5)
            << "input " << i << " value " << d;
        norm += double((*vectors)[i][d]) * (*vectors)[i][d];
      }
      EXPECT_NEAR(norm, 1.0, 1e-5);
    }
  }
  // 568 tokens in steps of at most 48 rows: at least 12 steps per call.
  EXPECT_GE(embedder.steps(), 2 * 12);
  // Distinct inputs give distinct vectors (the pooling reads real rows).
  auto again = embedder.embed(inputs);
  ASSERT_TRUE(again.ok());
  EXPECT_NE((*again)[0], (*again)[1]);
}

TEST_P(EmbedderTest, RefusesBadInputsAndHonoursCancellation) {
  auto runner = engine_->createStepRunner(4, 48);
  ASSERT_TRUE(runner.ok()) << runner.status();
  Embedder embedder(**runner, GetParam(), 48);
  std::vector<std::vector<int32_t>> empty = {{1, 2}, {}};
  auto refused = embedder.embed(empty);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(refused.status().message(),
            "input 1 has 0 tokens; an input takes 1 to 256");
  std::vector<std::vector<int32_t>> tooLong = {std::vector<int32_t>(257, 1)};
  EXPECT_EQ(embedder.embed(tooLong).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<std::vector<int32_t>> fine = {{1, 2, 3}};
  EXPECT_EQ(embedder.embed(fine, 1000).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::atomic<bool> cancel{true};
  EXPECT_EQ(embedder.embed(fine, 0, &cancel).status().code(),
            absl::StatusCode::kCancelled);
  EXPECT_EQ(
      embedder
          .embed(fine, 0, nullptr,
                 std::chrono::steady_clock::now() - std::chrono::seconds(1))
          .status()
          .code(),
      absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(embedder.steps(), 0);
}

INSTANTIATE_TEST_SUITE_P(Poolings, EmbedderTest,
                         ::testing::Values(Pooling::LastToken, Pooling::Mean,
                                           Pooling::Cls),
                         [](const auto &info) {
                           return std::string(poolingName(info.param));
                         });

/// A model directory with only the given sentence-transformers files.
std::string poolingDir(const std::string &modules, const std::string &config) {
  static int counter = 0;
  std::filesystem::path dir = std::filesystem::temp_directory_path() /
                              ("treni_pooling_" + std::to_string(getpid()) +
                               "_" + std::to_string(counter++));
  std::filesystem::create_directories(dir / "1_Pooling");
  if (!modules.empty())
    std::ofstream(dir / "modules.json") << modules;
  if (!config.empty())
    std::ofstream(dir / "1_Pooling" / "config.json") << config;
  return dir.string();
}

TEST(PoolingConfigTest, ReadsSentenceTransformersModules) {
  const std::string modules =
      R"([{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
          {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
          {"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}])";
  auto last = poolingDir(modules, R"({"word_embedding_dimension": 64,
      "pooling_mode_cls_token": false, "pooling_mode_mean_tokens": false,
      "pooling_mode_lasttoken": true})");
  EXPECT_EQ(*readPooling(last), Pooling::LastToken);
  EXPECT_TRUE(declaresEmbeddingModel(last));
  auto mean = poolingDir(modules, R"({"pooling_mode_mean_tokens": true})");
  EXPECT_EQ(*readPooling(mean), Pooling::Mean);
  auto cls = poolingDir(modules, R"({"pooling_mode_cls_token": true})");
  EXPECT_EQ(*readPooling(cls), Pooling::Cls);
  // No modules.json: a decoder's last token; not declared an embedding model.
  auto none = poolingDir("", "");
  EXPECT_EQ(*readPooling(none), Pooling::LastToken);
  EXPECT_FALSE(declaresEmbeddingModel(none));
  EXPECT_FALSE(declaresEmbeddingModel(fixtureDir("qwen3")));

  auto max = poolingDir(modules, R"({"pooling_mode_max_tokens": true})");
  EXPECT_EQ(readPooling(max).status().message(),
            max + "/1_Pooling/config.json: pooling_mode_max_tokens is not "
                  "supported (last token, mean or CLS pooling)");
  auto two = poolingDir(modules, R"({"pooling_mode_mean_tokens": true,
      "pooling_mode_lasttoken": true})");
  EXPECT_FALSE(readPooling(two).ok());
  auto missing = poolingDir(modules, "");
  EXPECT_FALSE(readPooling(missing).ok());
  auto broken = poolingDir("[{", "");
  EXPECT_FALSE(readPooling(broken).ok());
  auto outside = poolingDir(
      R"([{"path":"../x","type":"sentence_transformers.models.Pooling"}])", "");
  EXPECT_EQ(readPooling(outside).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_NE(readPooling(outside).status().message().find(
                "leaves the model directory"),
            std::string::npos);
  for (const std::string &dir :
       {last, mean, cls, none, max, two, missing, broken, outside})
    std::filesystem::remove_all(dir);
}

} // namespace
} // namespace treni
