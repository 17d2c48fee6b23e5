//===- default_model_test.cpp - the built-in default model ---------------===//
//
// Tests that the default model (test/fixtures/default, the small adder that
// bench/train_default_model.py trains) loads as `treni run` loads it: the
// CPU executor, the runtime tokenizer and chat template, the EOS ids. Its
// golden.json was recorded with transformers and `tokenizers` in the same
// run that trained it: the runtime must render each chat to the same text,
// encode it to the same prompt ids, and greedy decoding on the fp32 CPU
// executor must give the fp32 transformers model's output ids, whose text
// is the sum.
//
//===----------------------------------------------------------------------===//

#include <algorithm>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "runtime/serve/generation.h"
#include "runtime/text/chat_template.h"
#include "runtime/text/tokenizer.h"
#include "test/unit/test_util.h"
#include "gtest/gtest.h"

namespace treni {
namespace {
using testing_util::fixtureDir;
using Json = nlohmann::ordered_json;

/// Below this top-1 minus top-2 logit gap (in transformers' run) the CPU
/// executor's sums, in another order, may pick the other token.
constexpr double kNearTie = 1e-3;

class DefaultModelTest : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    std::ifstream in(fixtureDir("default") + "/golden.json");
    ASSERT_TRUE(in) << "test/fixtures/default/golden.json is missing";
    std::stringstream text;
    text << in.rdbuf();
    golden_ = new Json(Json::parse(text.str()));

    LoadOptions options;
    options.engine.maxSeq = 256;
    auto loaded = loadModel(fixtureDir("default"), options);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    model_ = new LoadedModel(std::move(*loaded));
  }
  static void TearDownTestSuite() {
    delete model_;
    delete golden_;
  }
  void SetUp() override {
    ASSERT_NE(model_, nullptr);
    ASSERT_NE(golden_, nullptr);
  }

  /// Greedy generation of at most 8 tokens, stopping at the model's EOS ids
  /// (what `treni run` does with the default sampling).
  GenerationResult generate(const std::vector<int32_t> &promptIds) {
    Generator generator(*model_->engine, *model_->tokenizer,
                        {256, model_->eosIds});
    GenerationRequest request;
    request.promptIds = promptIds;
    request.maxTokens = 8;
    auto result = generator.generate(request);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : GenerationResult{};
  }

  static LoadedModel *model_;
  static Json *golden_;
};
LoadedModel *DefaultModelTest::model_ = nullptr;
Json *DefaultModelTest::golden_ = nullptr;

// Tests that the fixture has what the default run needs: a chat template,
// <|im_end|> among the EOS ids, and a vocabulary of a few hundred tokens.
TEST_F(DefaultModelTest, LoadsWithChatTemplateAndEos) {
  ASSERT_NE(model_->chatTemplate, nullptr);
  std::optional<int32_t> imEnd = model_->tokenizer->tokenToId("<|im_end|>");
  ASSERT_TRUE(imEnd.has_value());
  EXPECT_EQ(*imEnd, (*golden_)["eos_ids"][0].get<int32_t>());
  EXPECT_NE(std::find(model_->eosIds.begin(), model_->eosIds.end(), *imEnd),
            model_->eosIds.end());
  EXPECT_GT(model_->tokenizer->vocabSize(), 256);
  EXPECT_LE(model_->tokenizer->vocabSize(), 512);
}

// Tests that every golden chat renders, encodes and decodes as transformers
// and `tokenizers` did, and that the answer is the sum.
TEST_F(DefaultModelTest, MatchesTransformersOnTheGoldenChats) {
  const Json &cases = (*golden_)["cases"];
  ASSERT_GE(cases.size(), 5u);
  for (const Json &c : cases) {
    std::string rendered = c["rendered"].get<std::string>();
    SCOPED_TRACE(rendered);
    auto text = model_->chatTemplate->render(c["messages"]);
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_EQ(*text, rendered);

    std::vector<int32_t> promptIds =
        model_->tokenizer->encode(rendered, /*addSpecialTokens=*/false);
    EXPECT_EQ(promptIds, c["prompt_ids"].get<std::vector<int32_t>>());

    GenerationResult result = generate(promptIds);
    std::vector<int32_t> outputIds;
    for (const GeneratedToken &token : result.tokens)
      outputIds.push_back(token.id);
    if (c["min_logit_margin"].get<double>() >= kNearTie) {
      EXPECT_EQ(outputIds, c["output_ids"].get<std::vector<int32_t>>());
    }
    // The text skips the special end token; a golden the model got wrong
    // is still checked through its ids.
    if (c["correct"].get<bool>()) {
      EXPECT_EQ(result.text, c["expected"].get<std::string>());
    }
  }
}

// Tests the default run's question end to end: the runtime's own template
// and tokenizer, and the answer 46 followed by the end token.
TEST_F(DefaultModelTest, AddsTwelveAndThirtyFour) {
  Json messages =
      Json::array({Json{{"role", "user"}, {"content", "What is 12 + 34?"}}});
  auto text = model_->chatTemplate->render(messages);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "<|im_start|>user\nWhat is 12 + 34?<|im_end|>\n"
                   "<|im_start|>assistant\n");
  GenerationResult result =
      generate(model_->tokenizer->encode(*text, /*addSpecialTokens=*/false));
  EXPECT_EQ(result.text, "46");
  EXPECT_EQ(result.finishReason, FinishReason::Eos);
}

} // namespace
} // namespace treni
