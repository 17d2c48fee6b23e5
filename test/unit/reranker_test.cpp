//===- reranker_test.cpp - rerank scores and POST /v1/rerank -------------===//
//
// The Reranker over a CPU step runner of the qwen3 fixture (its tokenizer has
// no "yes"/"no" tokens, so two ids stand in): every score must equal
// Qwen3-Reranker's rule applied to the engine's own single-sequence logits
// of the same prompt, with small steps and a small pool so prompts go chunk
// by chunk and wait for blocks. Then the route: ordering, top_n,
// return_documents, document objects, and every refusal.
//
//===----------------------------------------------------------------------===//

#include "runtime/serve/reranker.h"

#include <cmath>

#include "nlohmann/json.hpp"
#include "runtime/exec/engine_loader.h"
#include "runtime/serve/embeddings_route.h"
#include "test/unit/test_util.h"
#include "gtest/gtest.h"

namespace treni {
namespace {
using nlohmann::json;
using testing_util::fixtureDir;

class RerankerTest : public ::testing::Test {
protected:
  void SetUp() override {
    EngineOptions options;
    options.maxSeq = 512;
    auto engine = loadEngine(fixtureDir("qwen3"), options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
    auto tokenizer =
        Tokenizer::fromFile(fixtureDir("qwen3") + "/tokenizer.json");
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = std::move(*tokenizer);
    auto runner = engine_->createStepRunner(8, 48);
    ASSERT_TRUE(runner.ok()) << runner.status();
    runner_ = std::move(*runner);
    reranker_ = std::make_unique<Reranker>(*runner_, *tokenizer_,
                                           RerankTokens{17, 42}, 48);
  }
  /// The rule on the engine's own logits of the pair's prompt.
  double reference(const std::string &query, const std::string &document) {
    std::vector<int32_t> ids = tokenizer_->encode(
        rerankPrompt(kDefaultRerankInstruction, query, document), false);
    EXPECT_TRUE(engine_->prefill(ids, SamplingParams()).ok());
    auto logits = engine_->lastLogits();
    EXPECT_TRUE(logits.ok());
    return 1.0 / (1.0 + std::exp(double((*logits)[42]) - (*logits)[17]));
  }
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<StepRunner> runner_;
  std::unique_ptr<Reranker> reranker_;
};

TEST_F(RerankerTest, ScoresFollowTheYesNoRuleOnEachPromptAlone) {
  const std::string query = "which animal purrs";
  std::vector<std::string> documents = {
      "cats purr",
      "a much longer document about engines, turbines, gears "
      "and the many ways machines turn heat into motion",
      "dogs bark", ""};
  auto got = reranker_->score(query, documents);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->scores.size(), documents.size());
  int64_t tokens = 0;
  for (size_t i = 0; i < documents.size(); ++i) {
    EXPECT_NEAR(got->scores[i], reference(query, documents[i]), 1e-5)
        << "document " << i;
    EXPECT_GT(got->scores[i], 0.0);
    EXPECT_LT(got->scores[i], 1.0);
    tokens += int64_t(tokenizer_
                          ->encode(rerankPrompt(kDefaultRerankInstruction,
                                                query, documents[i]),
                                   false)
                          .size());
  }
  EXPECT_EQ(got->tokens, tokens);
  EXPECT_NE(got->scores[0], got->scores[2]); // the documents matter
  // A document too long for the pool (8 blocks of 64) is refused by index.
  std::vector<std::string> huge = {"fine", std::string(4000, 'x')};
  auto refused = reranker_->score(query, huge);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("document 1 makes a prompt"),
            std::string::npos);
  EXPECT_EQ(rerankTokens(*tokenizer_).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(RerankerTest, RouteSortsCutsAndRefuses) {
  ApiLimits limits;
  limits.modelNames = {"rr"};
  HttpServer::JsonWork work = rerankWork(*reranker_, limits);
  auto call = [&](const json &body) {
    std::atomic<bool> cancel{false};
    return work(body.dump(), cancel,
                std::chrono::steady_clock::now() + std::chrono::seconds(60));
  };
  std::vector<std::string> documents = {"cats purr", "dogs bark",
                                        "fish swim quietly"};
  auto scores = reranker_->score("purring", documents);
  ASSERT_TRUE(scores.ok());
  auto answer = call(
      {{"model", "rr"},
       {"query", "purring"},
       {"documents", {documents[0], {{"text", documents[1]}}, documents[2]}},
       {"top_n", 2}});
  ASSERT_TRUE(std::holds_alternative<std::string>(answer))
      << std::get<ApiError>(answer).message;
  json body = json::parse(std::get<std::string>(answer));
  EXPECT_EQ(body["model"], "rr");
  ASSERT_EQ(body["results"].size(), 2u);
  EXPECT_EQ(body["usage"]["total_tokens"], scores->tokens);
  double previous = 2;
  for (const json &result : body["results"]) {
    size_t index = result["index"];
    EXPECT_NEAR(result["relevance_score"].get<double>(), scores->scores[index],
                1e-12);
    EXPECT_EQ(result["document"]["text"], documents[index]);
    EXPECT_LE(result["relevance_score"].get<double>(), previous);
    previous = result["relevance_score"];
  }
  auto bare = call({{"model", "rr"},
                    {"query", "purring"},
                    {"documents", documents},
                    {"return_documents", false}});
  json all = json::parse(std::get<std::string>(bare));
  ASSERT_EQ(all["results"].size(), 3u);
  EXPECT_FALSE(all["results"][0].contains("document"));

  auto refused = [&](const json &body) {
    auto result = call(body);
    EXPECT_TRUE(std::holds_alternative<ApiError>(result)) << body.dump();
    return std::holds_alternative<ApiError>(result) ? std::get<ApiError>(result)
                                                    : ApiError{};
  };
  EXPECT_EQ(refused({{"model", "rr"}, {"documents", documents}}).message,
            "'query' is required");
  EXPECT_EQ(refused({{"model", "rr"}, {"query", ""}, {"documents", documents}})
                .message,
            "'query' must not be empty");
  EXPECT_EQ(
      refused({{"model", "rr"}, {"query", "q"}, {"documents", json::array()}})
          .message,
      "'documents' must not be empty");
  EXPECT_EQ(
      refused({{"model", "rr"}, {"query", "q"}, {"documents", {1, 2}}}).code,
      "invalid_type");
  EXPECT_EQ(refused({{"model", "rr"},
                     {"query", "q"},
                     {"documents", documents},
                     {"top_n", 0}})
                .param,
            "top_n");
  EXPECT_EQ(refused({{"model", "rr"},
                     {"query", "q"},
                     {"documents", std::vector<std::string>(1025, "d")}})
                .message,
            "'documents' holds 1025 documents; at most 1024 per request");
  EXPECT_EQ(refused({{"model", "x"}, {"query", "q"}, {"documents", documents}})
                .status,
            404);
}

} // namespace
} // namespace treni
