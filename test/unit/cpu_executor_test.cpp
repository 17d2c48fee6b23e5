//===- cpu_executor_test.cpp - CPU executor against transformers goldens -===//
//
// Each fixture's golden.json holds fp32 logits from transformers for the
// prompt followed by 8 teacher-forced tokens. The executor must match every
// position within a relative error of 1e-4, through three paths: prefill of
// the prompt (last row), teacher-forced decode steps after it, and a decode
// of every token from position 0 (which checks every prompt position too).
//
//===----------------------------------------------------------------------===//

#include <cmath>
#include <fstream>
#include <sstream>

#include "codegen/mlir/Compiler.h"
#include "frontends/safetensors/safetensors.h"
#include "nlohmann/json.hpp"
#include "runtime/exec/cpu_executor.h"
#include "test/unit/test_util.h"
#include "gtest/gtest.h"

namespace treni {
namespace {
using testing_util::fixtureDir;
using testing_util::relativeError;

struct Golden {
  std::vector<int32_t> prompt, decode;
  std::vector<std::vector<float>> logits;
};

Golden readGolden(const std::string &dir) {
  std::ifstream in(dir + "/golden.json");
  nlohmann::json json = nlohmann::json::parse(in);
  Golden golden;
  golden.prompt = json["prompt_ids"].get<std::vector<int32_t>>();
  golden.decode = json["decode_ids"].get<std::vector<int32_t>>();
  golden.logits = json["logits"].get<std::vector<std::vector<float>>>();
  return golden;
}

std::unique_ptr<CpuExecutor> makeExecutor(const std::string &dir,
                                          CompileOptions options = {}) {
  mlir::MLIRContext context;
  auto compiled = compileModelDir(context, dir, options);
  EXPECT_TRUE(compiled.ok()) << compiled.status();
  if (!compiled.ok())
    return nullptr;
  auto executor = CpuExecutor::create(compiled->plan, dir, 64);
  EXPECT_TRUE(executor.ok()) << executor.status();
  return executor.ok() ? std::move(*executor) : nullptr;
}

class GoldenTest : public testing::TestWithParam<std::string> {
protected:
  std::string dir() const { return fixtureDir(GetParam()); }
};

TEST_P(GoldenTest, PrefillThenTeacherForcedDecode) {
  Golden golden = readGolden(dir());
  auto executor = makeExecutor(dir());
  ASSERT_TRUE(executor);
  ASSERT_EQ(golden.logits.size(), golden.prompt.size() + golden.decode.size());
  ASSERT_EQ(golden.logits[0].size(), size_t(executor->vocabSize()));

  auto logits = executor->prefill(golden.prompt, 0);
  ASSERT_TRUE(logits.ok()) << logits.status();
  size_t row = golden.prompt.size() - 1;
  EXPECT_LE(relativeError(*logits, golden.logits[row]), 1e-4) << "prefill";
  EXPECT_EQ(argmax(*logits), argmax(golden.logits[row]));
  for (size_t step = 0; step < golden.decode.size(); ++step) {
    int64_t position = golden.prompt.size() + step;
    logits = executor->decode(golden.decode[step], position);
    ASSERT_TRUE(logits.ok()) << logits.status();
    EXPECT_LE(relativeError(*logits, golden.logits[position]), 1e-4)
        << "decode position " << position;
  }
}

TEST_P(GoldenTest, DecodeEveryPositionFromScratch) {
  Golden golden = readGolden(dir());
  auto executor = makeExecutor(dir());
  ASSERT_TRUE(executor);
  std::vector<int32_t> tokens = golden.prompt;
  tokens.insert(tokens.end(), golden.decode.begin(), golden.decode.end());
  for (size_t position = 0; position < tokens.size(); ++position) {
    auto logits = executor->decode(tokens[position], position);
    ASSERT_TRUE(logits.ok()) << logits.status();
    EXPECT_LE(relativeError(*logits, golden.logits[position]), 1e-4)
        << "position " << position;
  }
}

TEST_P(GoldenTest, PrefillInTwoChunksMatchesOne) {
  // A second prefill at a non-zero start extends the cache, as a chat turn
  // does.
  Golden golden = readGolden(dir());
  auto executor = makeExecutor(dir());
  ASSERT_TRUE(executor);
  std::vector<int32_t> head(golden.prompt.begin(), golden.prompt.begin() + 3);
  std::vector<int32_t> tail(golden.prompt.begin() + 3, golden.prompt.end());
  ASSERT_TRUE(executor->prefill(head, 0).ok());
  auto logits = executor->prefill(tail, head.size());
  ASSERT_TRUE(logits.ok()) << logits.status();
  EXPECT_LE(relativeError(*logits, golden.logits[golden.prompt.size() - 1]),
            1e-4);
}

// @embed's rows are the final-norm hidden states: through the fixture's own
// lm_head (or tied embeddings) they give transformers' logits at every
// position, in one call and in two chunks (the second attending to the
// first's K/V rows).
TEST_P(GoldenTest, EmbedRowsTimesTheHeadAreTheGoldenLogits) {
  Golden golden = readGolden(dir());
  auto executor = makeExecutor(dir());
  ASSERT_TRUE(executor);
  auto checkpoint = Checkpoint::open(dir());
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  const TensorInfo *head = (*checkpoint)->find("lm_head.weight");
  if (!head)
    head = (*checkpoint)->find("model.embed_tokens.weight");
  ASSERT_NE(head, nullptr);
  const int64_t vocab = executor->vocabSize(), hidden = executor->hiddenSize();
  ASSERT_EQ(head->numElements(), vocab * hidden);
  std::vector<float> weights(vocab * hidden);
  convertToF32(head->dtype, (*checkpoint)->data(*head).data(), weights.data(),
               vocab * hidden);
  std::vector<int32_t> tokens = golden.prompt;
  tokens.insert(tokens.end(), golden.decode.begin(), golden.decode.end());
  auto check = [&](const std::vector<float> &states, size_t first) {
    ASSERT_EQ(states.size() % hidden, 0u);
    for (size_t row = 0; row < states.size() / hidden; ++row) {
      std::vector<float> logits(vocab);
      for (int64_t v = 0; v < vocab; ++v)
        for (int64_t d = 0; d < hidden; ++d)
          logits[v] += states[row * hidden + d] * weights[v * hidden + d];
      EXPECT_LE(relativeError(logits, golden.logits[first + row]), 1e-4)
          << "position " << first + row;
    }
  };
  auto whole = executor->embed(tokens, 0);
  ASSERT_TRUE(whole.ok()) << whole.status();
  ASSERT_EQ(whole->size(), tokens.size() * hidden);
  check(*whole, 0);
  std::vector<int32_t> head3(tokens.begin(), tokens.begin() + 3),
      rest(tokens.begin() + 3, tokens.end());
  ASSERT_TRUE(executor->embed(head3, 0).ok());
  auto second = executor->embed(rest, 3);
  ASSERT_TRUE(second.ok()) << second.status();
  check(*second, 3);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GoldenTest,
                         testing::Values("qwen2", "llama", "qwen3"));

TEST(CpuExecutorTest, RejectsTokensOutsideTheVocabulary) {
  auto executor = makeExecutor(fixtureDir("qwen2"));
  ASSERT_TRUE(executor);
  auto logits = executor->prefill(std::vector<int32_t>{1, 512}, 0);
  ASSERT_FALSE(logits.ok());
  EXPECT_NE(
      logits.status().message().find("token id 512 is outside the vocabulary"),
      std::string::npos)
      << logits.status();
  EXPECT_FALSE(executor->decode(-1, 0).ok());
}

TEST(CpuExecutorTest, RejectsPositionsPastMaxSeq) {
  auto executor = makeExecutor(fixtureDir("qwen2"));
  ASSERT_TRUE(executor);
  auto logits = executor->decode(1, 64);
  ASSERT_FALSE(logits.ok());
  EXPECT_NE(logits.status().message().find("--max-seq 64"), std::string::npos)
      << logits.status();
  std::vector<int32_t> tooLong(65, 1);
  EXPECT_FALSE(executor->prefill(tooLong, 0).ok());
}

TEST(CpuExecutorTest, RejectsAPlanThatDoesNotMatchTheCheckpoint) {
  mlir::MLIRContext context;
  std::string dir = fixtureDir("qwen2");
  auto compiled = compileModelDir(context, dir, {});
  ASSERT_TRUE(compiled.ok()) << compiled.status();
  compiled->plan.weights[0].offset += 2;
  auto executor = CpuExecutor::create(compiled->plan, dir, 16);
  ASSERT_FALSE(executor.ok());
  EXPECT_NE(executor.status().message().find("differs from the plan"),
            std::string::npos)
      << executor.status();
}

TEST(CpuExecutorTest, RejectsAnUnknownKernel) {
  mlir::MLIRContext context;
  std::string dir = fixtureDir("qwen2");
  auto compiled = compileModelDir(context, dir, {});
  ASSERT_TRUE(compiled.ok());
  compiled->plan.functions[1].steps[1].templateName = "warp_drive";
  auto executor = CpuExecutor::create(compiled->plan, dir, 16);
  ASSERT_TRUE(executor.ok());
  auto logits = (*executor)->decode(1, 0);
  ASSERT_FALSE(logits.ok());
  EXPECT_NE(logits.status().message().find("no kernel 'warp_drive'"),
            std::string::npos)
      << logits.status();
}

} // namespace
} // namespace treni
