//===- generation_test.cpp - the generation loop on the CPU executor -----===//
//
// Tests that the Generator over the tiny Qwen2 fixture (random weights, its
// small byte-level BPE tokenizer) stops where it must (max_tokens, EOS, stop
// strings across token boundaries, max_seq), streams only complete UTF-8 and
// never a stop string, cancels and times out, follows output constraints, and
// that the awareness summary is the math it claims.
//
//===----------------------------------------------------------------------===//

#include "runtime/serve/generation.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include "nlohmann/json.hpp"
#include "runtime/exec/engine_loader.h"
#include "runtime/serve/loaded_model.h"
#include "runtime/serve/output_constraints.h"
#include "runtime/serve/progress.h"
#include "runtime/text/tokenizer.h"
#include "support/utf8.h"
#include "test/unit/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace treni {
namespace {
using testing_util::fixtureDir;
using testing_util::messageOf;

class GenerationTest : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    EngineOptions options;
    options.maxSeq = 256;
    auto engine = loadEngine(fixtureDir("qwen2"), options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine).release();
    auto tokenizer =
        Tokenizer::fromFile(fixtureDir("qwen2") + "/tokenizer.json");
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = std::move(*tokenizer).release();
  }
  static void TearDownTestSuite() {
    delete engine_;
    delete tokenizer_;
  }

  Generator generator(std::vector<int32_t> eos = {}, int64_t maxSeq = 256) {
    return Generator(*engine_, *tokenizer_, {maxSeq, std::move(eos)});
  }
  GenerationRequest request(int64_t maxTokens, float temperature = 0) {
    GenerationRequest r;
    r.promptIds = tokenizer_->encode("The compiler reads a model and");
    r.maxTokens = maxTokens;
    r.sampling.temperature = temperature;
    r.sampling.seed = 7;
    return r;
  }
  /// The ids greedy decoding gives, straight from the engine.
  std::vector<int32_t> engineGreedy(const std::vector<int32_t> &prompt,
                                    int count) {
    std::vector<int32_t> ids;
    SamplingParams params;
    auto sample = engine_->prefill(prompt, params);
    EXPECT_TRUE(sample.ok());
    for (int i = 0; i < count; ++i) {
      ids.push_back(sample->token);
      if (i + 1 < count)
        sample =
            engine_->decode(sample->token, int64_t(prompt.size()) + i, params);
    }
    return ids;
  }
  std::string decode(absl::Span<const int32_t> ids) {
    auto text = tokenizer_->decode(ids, /*skipSpecialTokens=*/true);
    EXPECT_TRUE(text.ok());
    return text.ok() ? *text : "";
  }

  static Engine *engine_;
  static Tokenizer *tokenizer_;
};
Engine *GenerationTest::engine_ = nullptr;
Tokenizer *GenerationTest::tokenizer_ = nullptr;

std::vector<int32_t> idsOf(const GenerationResult &result) {
  std::vector<int32_t> ids;
  for (const GeneratedToken &token : result.tokens)
    ids.push_back(token.id);
  return ids;
}

// Tests that max_tokens bounds the generation and the tokens are the
// engine's own greedy choices, with text equal to their decoding.
TEST_F(GenerationTest, MaxTokensAndGreedyIds) {
  Generator gen = generator();
  GenerationRequest r = request(12);
  auto result = gen.generate(r);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->finishReason, FinishReason::Length);
  ASSERT_EQ(result->tokens.size(), 12u);
  EXPECT_EQ(idsOf(*result), engineGreedy(r.promptIds, 12));
  EXPECT_EQ(result->text, decode(idsOf(*result)));
  EXPECT_EQ(result->awareness.timing.promptTokens, int64_t(r.promptIds.size()));
  EXPECT_EQ(result->awareness.timing.completionTokens, 12);
  for (const GeneratedToken &token : result->tokens) {
    EXPECT_LE(token.logprob, 0.0f);
    EXPECT_GE(token.entropy, 0.0f);
  }
}

// Tests that Engine::decodeStream feeds each step the token sampled before
// (the ids and results of a step-by-step loop, greedy and seeded sampling),
// stops when the callback says so, and refuses steps past the KV cache.
TEST_F(GenerationTest, DecodeStreamIsDecodeStepByStep) {
  std::vector<int32_t> prompt = request(1).promptIds;
  int64_t position = int64_t(prompt.size());
  for (float temperature : {0.0f, 0.9f}) {
    SamplingParams params;
    params.temperature = temperature;
    params.seed = 11;
    params.numAlternatives = 3;
    auto first = engine_->prefill(prompt, params);
    ASSERT_TRUE(first.ok()) << first.status();
    std::vector<SampleResult> stepwise;
    int32_t id = first->token;
    for (int i = 0; i < 10; ++i) {
      auto next = engine_->decode(id, position + i, params);
      ASSERT_TRUE(next.ok()) << next.status();
      stepwise.push_back(*next);
      id = next->token;
    }
    ASSERT_TRUE(engine_->prefill(prompt, params).ok());
    std::vector<SampleResult> streamed;
    absl::Status status = engine_->decodeStream(
        first->token, position, 10, params, [&](const SampleResult &result) {
          streamed.push_back(result);
          return true;
        });
    ASSERT_TRUE(status.ok()) << status;
    ASSERT_EQ(streamed.size(), stepwise.size());
    for (size_t i = 0; i < streamed.size(); ++i) {
      EXPECT_EQ(streamed[i].token, stepwise[i].token) << "T " << temperature;
      EXPECT_FLOAT_EQ(streamed[i].logprob, stepwise[i].logprob);
      ASSERT_EQ(streamed[i].alternatives.size(), 3u);
      EXPECT_EQ(streamed[i].alternatives[0].token,
                stepwise[i].alternatives[0].token);
    }
  }

  SamplingParams greedy;
  auto first = engine_->prefill(prompt, greedy);
  ASSERT_TRUE(first.ok());
  int calls = 0;
  ASSERT_TRUE(
      engine_
          ->decodeStream(first->token, position, 10, greedy,
                         [&](const SampleResult &) { return ++calls < 3; })
          .ok());
  EXPECT_EQ(calls, 3);
  calls = 0;
  ASSERT_TRUE(engine_
                  ->decodeStream(first->token, position, 0, greedy,
                                 [&](const SampleResult &) { return ++calls; })
                  .ok());
  EXPECT_EQ(calls, 0);
  // The fixture engine has 256 rows: 250..259 do not fit.
  absl::Status past =
      engine_->decodeStream(first->token, 250, 10, greedy,
                            [&](const SampleResult &) { return true; });
  EXPECT_FALSE(past.ok());
}

// Tests that the streamed deltas add up to the text and are each valid UTF-8,
// and that every token is handed to the callback exactly once.
TEST_F(GenerationTest, StreamsCompleteUtf8) {
  Generator gen = generator();
  GenerationRequest r = request(40, /*temperature=*/20.0f);
  std::string streamed;
  size_t tokens = 0;
  auto result = gen.generate(r, [&](std::string_view delta,
                                    absl::Span<const GeneratedToken> released) {
    EXPECT_TRUE(utf8::isValid(delta)) << "delta is not complete UTF-8";
    streamed += delta;
    tokens += released.size();
    return true;
  });
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(streamed, result->text);
  EXPECT_EQ(tokens, result->tokens.size());
}

// Tests that the same seed gives the same tokens and another seed (at
// temperature 1) other tokens.
TEST_F(GenerationTest, SeededSamplingIsReproducible) {
  Generator gen = generator();
  // Temperature 20: the random fixture puts nearly all its mass on repeating
  // the last token, so two seeds only differ on a flattened distribution.
  GenerationRequest r = request(24, 20.0f);
  auto a = gen.generate(r);
  auto b = gen.generate(r);
  r.sampling.seed = 8;
  auto c = gen.generate(r);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(idsOf(*a), idsOf(*b));
  EXPECT_NE(idsOf(*a), idsOf(*c));
}

// Tests that a stop string spanning two tokens ends the text right before it,
// that no streamed delta ever holds it (or any part past the cut), and that
// generation stops at the token that completed it.
TEST_F(GenerationTest, StopStringAcrossTokens) {
  Generator gen = generator();
  GenerationRequest r = request(40);
  auto full = gen.generate(r);
  ASSERT_TRUE(full.ok());
  std::vector<int32_t> ids = idsOf(*full);
  // Find a token boundary with text on both sides; the stop string is the
  // last two bytes before it and the first byte after it.
  std::string stop;
  for (size_t k = 1; k + 1 < ids.size() && stop.empty(); ++k) {
    std::string before = decode(absl::MakeConstSpan(ids).subspan(0, k));
    std::string after = decode(absl::MakeConstSpan(ids).subspan(0, k + 1));
    if (before.size() >= 2 && after.size() > before.size() &&
        utf8::isValid(before) &&
        static_cast<unsigned char>(before[before.size() - 2]) < 0x80 &&
        static_cast<unsigned char>(after[before.size()]) < 0x80)
      stop = before.substr(before.size() - 2) + after[before.size()];
  }
  ASSERT_FALSE(stop.empty())
      << "no boundary with ASCII text on both sides in: " << full->text;
  size_t cut = full->text.find(stop);
  ASSERT_NE(cut, std::string::npos);
  // The token that completes the first occurrence.
  size_t completing = 0;
  while (
      decode(absl::MakeConstSpan(ids).subspan(0, completing + 1)).find(stop) ==
      std::string::npos)
    ++completing;

  r.stop = {"zzzz-not-there", stop};
  std::string streamed;
  auto result = gen.generate(
      r, [&](std::string_view delta, absl::Span<const GeneratedToken>) {
        streamed += delta;
        EXPECT_EQ(streamed.find(stop), std::string::npos);
        return true;
      });
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->finishReason, FinishReason::Stop);
  EXPECT_EQ(result->matchedStop, stop);
  EXPECT_EQ(result->text, full->text.substr(0, cut));
  EXPECT_EQ(streamed, result->text);
  EXPECT_EQ(result->tokens.size(), completing + 1);
}

TEST(StopHoldback, LongestSuffixThatStartsAStop) {
  std::vector<std::string> stops = {"END", "</x>"};
  EXPECT_EQ(stopPrefixHoldback("abc", stops), 0u);
  EXPECT_EQ(stopPrefixHoldback("abcE", stops), 1u);
  EXPECT_EQ(stopPrefixHoldback("abcEN", stops), 2u);
  EXPECT_EQ(stopPrefixHoldback("abc</", stops), 2u);
  EXPECT_EQ(stopPrefixHoldback("EN", stops), 2u);
  // A full stop string is matched, not held: only proper prefixes count.
  EXPECT_EQ(stopPrefixHoldback("xEND", {std::string("END")}), 0u);
}

// Tests that an EOS id ends generation: the EOS token is counted but has no
// text; with ignoreEos it does not stop.
TEST_F(GenerationTest, StopsAtEos) {
  // Sampled (seeded, flattened) rather than greedy: greedy repeats one token.
  GenerationRequest r = request(10, 20.0f);
  auto free = generator().generate(r);
  ASSERT_TRUE(free.ok());
  std::vector<int32_t> greedy = idsOf(*free);
  // The first id that did not appear before (so it first shows up there).
  size_t at = 1;
  while (at < greedy.size() && std::find(greedy.begin(), greedy.begin() + at,
                                         greedy[at]) != greedy.begin() + at)
    ++at;
  ASSERT_LT(at, greedy.size()) << "the output repeats one token";
  Generator gen = generator({greedy[at]});
  auto result = gen.generate(r);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->finishReason, FinishReason::Eos);
  EXPECT_EQ(result->tokens.size(), at + 1);
  EXPECT_EQ(result->tokens.back().id, greedy[at]);
  EXPECT_EQ(result->text, decode(absl::MakeConstSpan(greedy).subspan(0, at)));

  r.ignoreEos = true;
  auto ignored = gen.generate(r);
  ASSERT_TRUE(ignored.ok());
  EXPECT_EQ(ignored->finishReason, FinishReason::Length);
  EXPECT_EQ(ignored->tokens.size(), 10u);
}

// Tests that the model's EOS ids come from tokenizer_config.json's eos_token.
TEST_F(GenerationTest, ReadsEosIdsFromTheConfig) {
  auto ids = readEosIds(fixtureDir("qwen2"), *tokenizer_);
  ASSERT_TRUE(ids.ok()) << ids.status();
  std::optional<int32_t> imEnd = tokenizer_->tokenToId("<|im_end|>");
  ASSERT_TRUE(imEnd.has_value());
  EXPECT_THAT(*ids, ::testing::Contains(*imEnd));
}

// Tests that a generation_config.json eos_token_id outside the tokenizer's
// vocabulary (10^12, or not an id) stops loading with an error naming the
// file, the key and the vocabulary size, instead of being dropped silently.
TEST_F(GenerationTest, RefusesEosIdsOutsideTheVocabulary) {
  std::string dir = ::testing::TempDir() + "/treni_eos_ids";
  std::filesystem::create_directories(dir);
  std::string outside =
      absl::StrCat("generation_config.json: 'eos_token_id' is 1000000000000, "
                   "outside the vocabulary of ",
                   tokenizer_->vocabSize(), " tokens");
  for (auto [eos, message] :
       {std::pair<std::string, std::string>{"1000000000000", outside},
        {"[\"a\"]", "generation_config.json: 'eos_token_id[0]' must be a "
                    "token id (an integer), got a string \"a\""}}) {
    std::ofstream(dir + "/generation_config.json")
        << "{\"eos_token_id\": " << eos << "}";
    auto ids = readEosIds(dir, *tokenizer_);
    ASSERT_FALSE(ids.ok()) << eos;
    EXPECT_THAT(messageOf(ids.status()), ::testing::HasSubstr(message));
  }
  std::filesystem::remove_all(dir);
}

// Tests that generation stops when the KV cache is full: with max_seq n + 3
// for an n-token prompt, tokens at positions n..n+2 are fed, so 4 are made.
TEST_F(GenerationTest, StopsAtMaxSeq) {
  GenerationRequest r = request(100);
  Generator gen = generator({}, int64_t(r.promptIds.size()) + 3);
  auto result = gen.generate(r);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->finishReason, FinishReason::Context);
  EXPECT_EQ(result->tokens.size(), 4u);
}

TEST_F(GenerationTest, RejectsBadRequests) {
  GenerationRequest r = request(4);
  Generator small = generator({}, int64_t(r.promptIds.size()));
  auto tooLong = small.generate(r);
  ASSERT_FALSE(tooLong.ok());
  EXPECT_THAT(messageOf(tooLong.status()), ::testing::HasSubstr("max_seq"));

  Generator gen = generator();
  GenerationRequest empty = r;
  empty.promptIds.clear();
  EXPECT_FALSE(gen.generate(empty).ok());
  GenerationRequest badId = r;
  badId.promptIds.push_back(100000);
  auto bad = gen.generate(badId);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(messageOf(bad.status()), ::testing::HasSubstr("100000"));
  GenerationRequest badTemperature = r;
  badTemperature.sampling.temperature = -1;
  EXPECT_FALSE(gen.generate(badTemperature).ok());
}

// Tests that the cancel flag, the callback and a past deadline all stop the
// loop before the next token.
TEST_F(GenerationTest, CancelsAndTimesOut) {
  Generator gen = generator();
  GenerationRequest r = request(50);
  std::atomic<bool> cancel{false};
  r.cancel = &cancel;
  int calls = 0;
  auto flagged =
      gen.generate(r, [&](std::string_view, absl::Span<const GeneratedToken>) {
        if (++calls == 3)
          cancel = true;
        return true;
      });
  ASSERT_TRUE(flagged.ok());
  EXPECT_EQ(flagged->finishReason, FinishReason::Cancelled);
  EXPECT_LT(flagged->tokens.size(), 6u);

  cancel = false;
  calls = 0;
  auto refused =
      gen.generate(r, [&](std::string_view, absl::Span<const GeneratedToken>) {
        return ++calls < 2;
      });
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(refused->finishReason, FinishReason::Cancelled);
  EXPECT_EQ(calls, 2); // never called again after refusing
  EXPECT_LT(refused->tokens.size(), 6u);

  cancel = true;
  auto before = gen.generate(r);
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(before->finishReason, FinishReason::Cancelled);
  EXPECT_TRUE(before->tokens.empty());

  cancel = false;
  r.deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(30);
  r.tokenDelay = std::chrono::milliseconds(10);
  auto late = gen.generate(r);
  ASSERT_TRUE(late.ok());
  EXPECT_EQ(late->finishReason, FinishReason::Timeout);
  EXPECT_GE(late->tokens.size(), 1u);
  EXPECT_LT(late->tokens.size(), 10u);
}

// Tests the awareness numbers against a hand computation.
TEST(Awareness, HandComputed) {
  std::vector<TokenUncertainty> tokens = {
      {-0.1f, 0.3f}, {-2.0f, 1.7f}, {-0.5f, 0.9f}, {-0.8f, 0.2f}};
  Awareness a = summarizeAwareness(tokens, 0.5);
  EXPECT_EQ(a.numTokens, 4);
  EXPECT_NEAR(a.meanLogprob, -(0.1 + 2.0 + 0.5 + 0.8) / 4, 1e-6);
  EXPECT_NEAR(a.perplexity, std::exp((0.1 + 2.0 + 0.5 + 0.8) / 4), 1e-6);
  EXPECT_NEAR(a.meanEntropy, (0.3 + 1.7 + 0.9 + 0.2) / 4, 1e-6);
  EXPECT_NEAR(a.maxEntropy, 1.7, 1e-6);
  EXPECT_EQ(a.maxEntropyPosition, 1);
  // exp(-2.0) = 0.135 and exp(-0.8) = 0.449 are under 0.5; exp(-0.5) = 0.607 is
  // not.
  EXPECT_THAT(a.lowConfidencePositions, ::testing::ElementsAre(1, 3));
  Awareness strict = summarizeAwareness(tokens, 0.95);
  EXPECT_EQ(strict.lowConfidencePositions.size(), 4u);
  Awareness none = summarizeAwareness({}, 0.5);
  EXPECT_EQ(none.perplexity, 1.0);
  EXPECT_TRUE(none.lowConfidencePositions.empty());

  nlohmann::json j = toJson(a);
  EXPECT_NEAR(j["perplexity"].get<double>(), a.perplexity, 1e-9);
  EXPECT_EQ(j["low_confidence"]["count"], 2);
  EXPECT_EQ(j["low_confidence"]["positions"], nlohmann::json({1, 3}));
}

// Tests that a generation's awareness is the summary of its own tokens.
TEST_F(GenerationTest, AwarenessOfAGeneration) {
  Generator gen = generator();
  GenerationRequest r = request(20, 20.0f);
  r.lowConfidenceThreshold = 0.3;
  auto result = gen.generate(r);
  ASSERT_TRUE(result.ok());
  double sum = 0, entropy = 0, maxEntropy = 0;
  std::vector<int64_t> low;
  for (size_t i = 0; i < result->tokens.size(); ++i) {
    sum += result->tokens[i].logprob;
    entropy += result->tokens[i].entropy;
    maxEntropy = std::max(maxEntropy, double(result->tokens[i].entropy));
    if (std::exp(result->tokens[i].logprob) < 0.3)
      low.push_back(int64_t(i));
  }
  const Awareness &a = result->awareness;
  EXPECT_NEAR(a.perplexity, std::exp(-sum / result->tokens.size()),
              1e-9 * a.perplexity);
  EXPECT_NEAR(a.meanEntropy, entropy / result->tokens.size(), 1e-6);
  EXPECT_NEAR(a.maxEntropy, maxEntropy, 1e-6);
  EXPECT_EQ(a.lowConfidencePositions, low);
  EXPECT_GT(a.timing.prefillSeconds, 0);
  EXPECT_GT(a.timing.decodeSeconds, 0);
}

//===----------------------------------------------------------------------===//
// Constraints
//===----------------------------------------------------------------------===//

bool feeds(OutputConstraint &c, std::string_view text) {
  return c.acceptAll(text);
}

TEST(JsonConstraint, AcceptsObjectsAndRefusesTheRest) {
  for (const char *valid :
       {"{}", "{\"a\": 1}",
        "{\"a\":[1,2.5e-3,-0,true,false,null,{\"b\":\"\\u00e9\\n\"}]}",
        "{ \"k\" : \"caf\xc3\xa9 \xf0\x9f\x98\x80\" }"}) {
    auto c = jsonObjectConstraint();
    EXPECT_TRUE(feeds(*c, valid)) << valid;
    EXPECT_TRUE(c->isComplete()) << valid;
    EXPECT_FALSE(c->allows(" ")) << "nothing may follow the object: " << valid;
  }
  for (const char *invalid :
       {"[]", " {}", "{a:1}", "{\"a\" 1}", "{\"a\":01}", "{\"a\":tru}",
        "{\"a\":1,}", "{\"a\":\"\x01\"}", "{\"a\":\"\\x\"}",
        "{\"a\":\"\\ud800\"}", "{\"a\":\"\xc0\"}", "{\"a\":1]", "{\"a\":-}"}) {
    auto c = jsonObjectConstraint();
    bool ok = feeds(*c, invalid) && c->isComplete();
    EXPECT_FALSE(ok) << invalid;
  }
  // At most 16 whitespace bytes in a row between tokens; any inside strings.
  auto spaces = jsonObjectConstraint();
  EXPECT_TRUE(spaces->allows("{" + std::string(16, ' ') + "\"a\":1}"));
  EXPECT_FALSE(spaces->allows("{" + std::string(17, ' ')));
  EXPECT_TRUE(spaces->allows("{\"" + std::string(40, ' ') + "\"" +
                             std::string(16, '\n') + ":" +
                             std::string(16, ' ') + "1}"));
  auto deep = jsonObjectConstraint(/*maxDepth=*/2);
  EXPECT_TRUE(deep->allows("{\"a\":[1]}"));
  EXPECT_FALSE(deep->allows("{\"a\":[["));
}

// Tests that completion() closes every prefix of valid JSON into valid JSON.
TEST(JsonConstraint, CompletionClosesEveryPrefix) {
  std::string text =
      "{\"name\": \"x\\u00e9\\\"y\", \"list\": [1, -2.5e+3, true, null, "
      "{\"deep\": \"\xe2\x82\xac\"}], \"f\": false}";
  for (size_t n = 0; n <= text.size(); ++n) {
    auto c = jsonObjectConstraint();
    ASSERT_TRUE(feeds(*c, text.substr(0, n)));
    std::string closed = text.substr(0, n) + c->completion();
    EXPECT_TRUE(feeds(*c, c->completion()) && c->isComplete()) << closed;
    nlohmann::json parsed = nlohmann::json::parse(closed, nullptr, false);
    EXPECT_FALSE(parsed.is_discarded()) << closed;
    EXPECT_TRUE(parsed.is_object()) << closed;
  }
}

TEST(SequenceConstraint, ChoiceLiteralThenObject) {
  std::vector<std::unique_ptr<OutputConstraint>> parts;
  parts.push_back(choiceConstraint({"get_weather\"", "get_time\""}));
  parts.push_back(literalConstraint(", \"arguments\": "));
  parts.push_back(jsonObjectConstraint());
  auto c = sequenceConstraint(std::move(parts));
  EXPECT_TRUE(c->allows("get_"));
  EXPECT_FALSE(c->allows("get_x"));
  EXPECT_TRUE(c->allows("get_time\", \"arg"));
  EXPECT_FALSE(c->allows("get_time\",\"arg"));
  EXPECT_EQ(c->completion(), "get_weather\", \"arguments\": {}");
  ASSERT_TRUE(c->acceptAll("get_time\", \"arguments\": {\"tz\": \"U"));
  EXPECT_EQ(c->completion(), "\"}");
  ASSERT_TRUE(c->acceptAll("TC\"}"));
  EXPECT_TRUE(c->isComplete());
}

// Tests constrained decoding on the random model: greedy and sampled outputs
// are one JSON object, closed by the server when max_tokens runs out.
TEST_F(GenerationTest, ConstrainedOutputIsAJsonObject) {
  Generator gen = generator();
  for (float temperature : {0.0f, 20.0f})
    for (int64_t maxTokens : {3, 40}) {
      auto constraint = jsonObjectConstraint();
      GenerationRequest r = request(maxTokens, temperature);
      r.constraint = constraint.get();
      auto result = gen.generate(r);
      ASSERT_TRUE(result.ok()) << result.status();
      nlohmann::json parsed =
          nlohmann::json::parse(result->text, nullptr, false);
      EXPECT_TRUE(parsed.is_object()) << result->text;
      EXPECT_LE(int64_t(result->tokens.size()), maxTokens);
      for (const GeneratedToken &token : result->tokens)
        EXPECT_LE(token.logprob, 0.0f);
    }
}

//===----------------------------------------------------------------------===//
// Progress
//===----------------------------------------------------------------------===//

// Tests that off a terminal, progress is plain lines: one per step and a
// final one with the total time; and that the bar fills with the steps.
TEST(Progress, PlainLinesOffATerminal) {
  std::FILE *out = std::tmpfile();
  ASSERT_NE(out, nullptr);
  {
    Progress progress("loading m", 3, out, /*interactive=*/false);
    EXPECT_FALSE(progress.interactive());
    progress.step("tokenizer");
    EXPECT_THAT(progress.line(), ::testing::HasSubstr("1/3 tokenizer"));
    progress.step("engine");
    EXPECT_THAT(progress.line(),
                ::testing::HasSubstr("[############            ] 2/3"));
    progress.finish("ok");
    progress.finish("twice"); // idempotent
  }
  std::rewind(out);
  std::string text;
  char buffer[256];
  while (std::fgets(buffer, sizeof(buffer), out))
    text += buffer;
  std::fclose(out);
  EXPECT_THAT(text,
              ::testing::MatchesRegex("loading m: tokenizer \\(1/3\\)\n"
                                      "loading m: engine \\(2/3\\)\n"
                                      "loading m: done in [0-9.]+ s - ok\n"));
  EXPECT_EQ(text.find('\r'), std::string::npos)
      << "no carriage returns in a log";
}

} // namespace
} // namespace treni
