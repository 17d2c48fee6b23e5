//===- embeddings_route_test.cpp - POST /v1/embeddings without HTTP ------===//
//
// The route's work over a CPU engine of the qwen3 fixture: the OpenAI input
// forms (a string, strings, token ids, arrays of token ids), base64 and
// dimensions, against the Embedder's own vectors; and every refusal a 4xx
// naming the problem.
//
//===----------------------------------------------------------------------===//

#include "runtime/serve/embeddings_route.h"

#include <cstring>

#include "absl/strings/escaping.h"
#include "nlohmann/json.hpp"
#include "runtime/exec/engine_loader.h"
#include "test/unit/test_util.h"
#include "gtest/gtest.h"

namespace treni {
namespace {
using nlohmann::json;
using testing_util::fixtureDir;

class EmbeddingsRouteTest : public ::testing::Test {
protected:
  void SetUp() override {
    EngineOptions options;
    options.maxSeq = 256;
    auto engine = loadEngine(fixtureDir("qwen3"), options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
    auto tokenizer =
        Tokenizer::fromFile(fixtureDir("qwen3") + "/tokenizer.json");
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = std::move(*tokenizer);
    auto runner = engine_->createStepRunner(4, 64);
    ASSERT_TRUE(runner.ok()) << runner.status();
    runner_ = std::move(*runner);
    embedder_ = std::make_unique<Embedder>(*runner_, Pooling::LastToken, 64);
    limits_.maxSeq = 256;
    limits_.modelNames = {"emb"};
    work_ =
        embeddingsWork(*embedder_, *tokenizer_, limits_, engine_->vocabSize());
  }
  ApiResult<std::string> call(const json &body) {
    std::atomic<bool> cancel{false};
    return work_(body.dump(), cancel,
                 std::chrono::steady_clock::now() + std::chrono::seconds(60));
  }
  json ok(const json &body) {
    auto answer = call(body);
    EXPECT_TRUE(std::holds_alternative<std::string>(answer))
        << std::get<ApiError>(answer).message;
    return std::holds_alternative<std::string>(answer)
               ? json::parse(std::get<std::string>(answer))
               : json();
  }
  ApiError refused(const json &body) {
    auto answer = call(body);
    EXPECT_TRUE(std::holds_alternative<ApiError>(answer)) << body.dump();
    return std::holds_alternative<ApiError>(answer) ? std::get<ApiError>(answer)
                                                    : ApiError{};
  }

  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<StepRunner> runner_;
  std::unique_ptr<Embedder> embedder_;
  ApiLimits limits_;
  HttpServer::JsonWork work_;
};

TEST_F(EmbeddingsRouteTest, EveryInputFormGivesTheEmbeddersVectors) {
  const std::string texts[] = {"hello world", "a rather longer sentence"};
  std::vector<std::vector<int32_t>> tokens = {tokenizer_->encode(texts[0]),
                                              tokenizer_->encode(texts[1])};
  auto want = embedder_->embed(tokens);
  ASSERT_TRUE(want.ok()) << want.status();

  json strings = ok({{"model", "emb"}, {"input", {texts[0], texts[1]}}});
  ASSERT_EQ(strings["object"], "list");
  ASSERT_EQ(strings["data"].size(), 2u);
  EXPECT_EQ(strings["model"], "emb");
  EXPECT_EQ(strings["usage"]["prompt_tokens"],
            tokens[0].size() + tokens[1].size());
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(strings["data"][i]["index"], i);
    EXPECT_EQ(strings["data"][i]["object"], "embedding");
    std::vector<float> got = strings["data"][i]["embedding"];
    ASSERT_EQ(got.size(), (*want)[i].size());
    for (size_t d = 0; d < got.size(); ++d)
      EXPECT_FLOAT_EQ(got[d], (*want)[i][d]);
  }
  json single = ok({{"model", "emb"}, {"input", texts[1]}});
  EXPECT_EQ(single["data"][0]["embedding"], strings["data"][1]["embedding"]);
  json ids = ok({{"model", "emb"}, {"input", tokens[0]}});
  EXPECT_EQ(ids["data"][0]["embedding"], strings["data"][0]["embedding"]);
  json idLists = ok({{"model", "emb"}, {"input", tokens}});
  EXPECT_EQ(idLists["data"], strings["data"]);

  // base64: little-endian float32 bytes of the same vector.
  json encoded = ok(
      {{"model", "emb"}, {"input", texts[0]}, {"encoding_format", "base64"}});
  std::string bytes;
  ASSERT_TRUE(absl::Base64Unescape(
      encoded["data"][0]["embedding"].get<std::string>(), &bytes));
  ASSERT_EQ(bytes.size(), (*want)[0].size() * 4);
  for (size_t d = 0; d < (*want)[0].size(); ++d) {
    uint32_t bits = 0;
    for (int b = 0; b < 4; ++b)
      bits |= uint32_t(uint8_t(bytes[d * 4 + b])) << (8 * b);
    float value;
    std::memcpy(&value, &bits, 4);
    EXPECT_EQ(value, (*want)[0][d]);
  }

  // dimensions: the first N values, normalised again.
  json short8 = ok({{"model", "emb"}, {"input", texts[0]}, {"dimensions", 8}});
  std::vector<float> got = short8["data"][0]["embedding"];
  ASSERT_EQ(got.size(), 8u);
  double norm = 0, scale = 0;
  for (int d = 0; d < 8; ++d) {
    norm += double(got[d]) * got[d];
    scale += double((*want)[0][d]) * (*want)[0][d];
  }
  EXPECT_NEAR(norm, 1.0, 1e-5);
  for (int d = 0; d < 8; ++d)
    EXPECT_NEAR(got[d], (*want)[0][d] / std::sqrt(scale), 1e-5);
}

TEST_F(EmbeddingsRouteTest, BadRequestsAreFourHundredsNamingTheProblem) {
  EXPECT_EQ(refused({{"model", "emb"}}).message, "'input' is required");
  EXPECT_EQ(refused({{"model", "emb"}, {"input", ""}}).message,
            "'input' must not be empty");
  EXPECT_EQ(refused({{"model", "emb"}, {"input", json::array()}}).message,
            "'input' must not be an empty array");
  EXPECT_EQ(refused({{"model", "emb"}, {"input", {"a", ""}}}).message,
            "'input[1]' must not be empty");
  EXPECT_EQ(refused({{"model", "emb"}, {"input", {1, -2}}}).message,
            "'input' holds an invalid token id");
  EXPECT_EQ(
      refused({{"model", "emb"}, {"input", {{1}, json::array()}}}).message,
      "'input[1]' must not be empty");
  EXPECT_EQ(refused({{"model", "emb"}, {"input", {{"a", 1}}}}).code,
            "invalid_type");
  EXPECT_EQ(refused({{"model", "emb"}, {"input", 5}}).code, "invalid_type");
  EXPECT_EQ(refused({{"model", "emb"}, {"input", {100000}}}).message,
            "input 0: token id 100000 is outside the vocabulary of 512");
  EXPECT_EQ(
      refused({{"model", "emb"}, {"input", std::vector<int32_t>(257, 1)}}).code,
      "context_length_exceeded");
  EXPECT_EQ(
      refused({{"model", "emb"}, {"input", "a"}, {"dimensions", 65}}).message,
      "'dimensions' must be at most 64 (the model's), not 65");
  EXPECT_EQ(
      refused({{"model", "emb"}, {"input", "a"}, {"dimensions", 0}}).param,
      "dimensions");
  EXPECT_EQ(
      refused({{"model", "emb"}, {"input", "a"}, {"encoding_format", "int8"}})
          .param,
      "encoding_format");
  ApiError unknown = refused({{"model", "other"}, {"input", "a"}});
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(unknown.code, "model_not_found");
  std::vector<std::string> many(kMaxEmbeddingInputs + 1, "a");
  EXPECT_EQ(refused({{"model", "emb"}, {"input", many}}).message,
            "'input' holds 2049 inputs; at most 2048 per request");

  // A cancelled request stops before its first step.
  std::atomic<bool> cancel{true};
  auto cancelled =
      work_(json({{"model", "emb"}, {"input", "a"}}).dump(), cancel,
            std::chrono::steady_clock::now() + std::chrono::seconds(60));
  ASSERT_TRUE(std::holds_alternative<ApiError>(cancelled));
  EXPECT_EQ(std::get<ApiError>(cancelled).status, 499);
  std::atomic<bool> live{false};
  auto late = work_(json({{"model", "emb"}, {"input", "a"}}).dump(), live,
                    std::chrono::steady_clock::now() - std::chrono::seconds(1));
  ASSERT_TRUE(std::holds_alternative<ApiError>(late));
  EXPECT_EQ(std::get<ApiError>(late).status, 504);
}

} // namespace
} // namespace treni
