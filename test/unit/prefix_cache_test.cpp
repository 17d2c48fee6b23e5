//===- prefix_cache_test.cpp - KV-cache reuse of a shared prompt prefix ---===//
//
// Tests the Generator's prefix caching on the CPU executor with the tiny
// Qwen2 fixture: the engine under test is wrapped so every prefill's start
// position and length are recorded (what was really prefilled, not what the
// Generator claims), and every result is compared with a second engine that
// always prefills whole prompts. Covered: a shared prefix, divergence in the
// middle, a prompt that is a prefix of the cached ids, a continuation of the
// generated text, reuse switched off, the cache invalidated by another
// caller, an engine error and a cancellation, the usage / awareness fields,
// an agent workflow whose two generate steps share a prefix, and the
// server's usage.prompt_tokens_details.cached_tokens.
//
//===----------------------------------------------------------------------===//

#include "runtime/serve/generation.h"

#include <algorithm>
#include <memory>

#include "httplib.h"
#include "nlohmann/json.hpp"
#include "runtime/agent/agent_compiler.h"
#include "runtime/agent/agent_executor.h"
#include "runtime/exec/engine_loader.h"
#include "runtime/serve/http_server.h"
#include "runtime/serve/loaded_model.h"
#include "runtime/serve/openai_api.h"
#include "runtime/text/chat_template.h"
#include "runtime/text/tokenizer.h"
#include "runtime/tools/tool_registry.h"
#include "test/unit/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace treni {
namespace {
using json = nlohmann::json;
using testing_util::fixtureDir;
using testing_util::relativeError;

/// Forwards to a real engine, recording each prefill's (start, length) and
/// counting decodes; can fail one decode.
class RecordingEngine : public Engine {
public:
  explicit RecordingEngine(Engine &inner) : inner_(inner) {}
  absl::StatusOr<std::vector<float>> lastLogits() override {
    return inner_.lastLogits();
  }
  int64_t vocabSize() const override { return inner_.vocabSize(); }
  int64_t maxSeq() const override { return inner_.maxSeq(); }

  struct Prefill {
    int64_t start, length;
  };
  std::vector<Prefill> prefills;
  int decodes = 0;
  int failDecode = -1; ///< the index of a decode to fail (-1: none)

protected:
  absl::StatusOr<SampleResult>
  doPrefill(absl::Span<const int32_t> ids, int64_t startPosition,
            const SamplingParams &params) override {
    prefills.push_back({startPosition, int64_t(ids.size())});
    return inner_.prefill(ids, startPosition, params);
  }
  absl::StatusOr<SampleResult> doDecode(int32_t id, int64_t position,
                                        const SamplingParams &params) override {
    if (decodes++ == failDecode)
      return absl::InternalError("injected decode failure");
    return inner_.decode(id, position, params);
  }

private:
  Engine &inner_;
};

/// What one generation gave: ids, logprobs, and the logits of its prefill
/// (read in the stream callback of the first token, before any decode).
struct Output {
  std::vector<int32_t> ids;
  std::vector<float> logprobs;
  std::vector<float> firstLogits;
  int64_t cached = -1;
  FinishReason finish = FinishReason::Length;
};

class PrefixCacheTest : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    EngineOptions options;
    options.maxSeq = 256;
    for (Engine **engine : {&engine_, &reference_}) {
      auto loaded = loadEngine(fixtureDir("qwen2"), options);
      ASSERT_TRUE(loaded.ok()) << loaded.status();
      *engine = std::move(*loaded).release();
    }
    auto tokenizer =
        Tokenizer::fromFile(fixtureDir("qwen2") + "/tokenizer.json");
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = std::move(*tokenizer).release();
  }
  static void TearDownTestSuite() {
    delete engine_;
    delete reference_;
    delete tokenizer_;
  }

  void SetUp() override {
    recorder_ = std::make_unique<RecordingEngine>(*engine_);
    generator_ = std::make_unique<Generator>(*recorder_, *tokenizer_,
                                             GeneratorOptions{256, {}});
    GeneratorOptions fresh{256, {}};
    fresh.prefixCache = false;
    fresh_ = std::make_unique<Generator>(*reference_, *tokenizer_, fresh);
  }

  std::vector<int32_t> ids(const std::string &text) {
    return tokenizer_->encode(text);
  }

  /// The ids the cache holds after generating `reply` for `prompt`: decode
  /// fed every generated token but the last. Checks the generator reports
  /// exactly those and returns them.
  std::vector<int32_t> expectCacheHolds(const std::vector<int32_t> &prompt,
                                        const std::vector<int32_t> &reply) {
    std::vector<int32_t> held = prompt;
    held.insert(held.end(), reply.begin(), reply.end() - 1);
    absl::Span<const int32_t> cached = generator_->cachedIds();
    EXPECT_EQ(std::vector<int32_t>(cached.begin(), cached.end()), held);
    return held;
  }

  static Output generate(Generator &generator,
                         const std::vector<int32_t> &prompt, int64_t maxTokens,
                         float temperature = 0, int cancelAfter = -1) {
    GenerationRequest request;
    request.promptIds = prompt;
    request.maxTokens = maxTokens;
    request.sampling.temperature = temperature;
    request.sampling.seed = 11;
    Output out;
    size_t seen = 0;
    auto result = generator.generate(
        request,
        [&](std::string_view, absl::Span<const GeneratedToken> tokens) {
          if (seen == 0 && !tokens.empty()) {
            auto logits = generator.engine().lastLogits();
            EXPECT_TRUE(logits.ok());
            if (logits.ok())
              out.firstLogits = *logits;
          }
          seen += tokens.size();
          return cancelAfter < 0 || int(seen) < cancelAfter;
        });
    EXPECT_TRUE(result.ok()) << result.status();
    if (!result.ok())
      return out;
    for (const GeneratedToken &token : result->tokens) {
      out.ids.push_back(token.id);
      out.logprobs.push_back(token.logprob);
    }
    out.cached = result->awareness.timing.cachedPromptTokens;
    out.finish = result->finishReason;
    return out;
  }

  /// `actual` (reusing a prefix) equals a whole-prompt prefill of `prompt`.
  void expectSameAsFresh(const Output &actual,
                         const std::vector<int32_t> &prompt, int64_t maxTokens,
                         float temperature = 0) {
    Output expected = generate(*fresh_, prompt, maxTokens, temperature);
    EXPECT_EQ(expected.cached, 0);
    EXPECT_EQ(actual.ids, expected.ids);
    ASSERT_EQ(actual.logprobs.size(), expected.logprobs.size());
    for (size_t i = 0; i < expected.logprobs.size(); ++i)
      EXPECT_NEAR(actual.logprobs[i], expected.logprobs[i], 1e-5)
          << "token " << i;
    ASSERT_EQ(actual.firstLogits.size(), expected.firstLogits.size());
    ASSERT_FALSE(expected.firstLogits.empty());
    EXPECT_LE(relativeError(actual.firstLogits, expected.firstLogits), 1e-6);
  }

  const RecordingEngine::Prefill &lastPrefill() const {
    return recorder_->prefills.back();
  }

  /// `out` reused the first `cached` tokens of `prompt`: the Generator
  /// reports them, and the engine's last prefill started there and covered
  /// the rest of the prompt.
  void expectPrefilledFrom(const Output &out,
                           const std::vector<int32_t> &prompt, int64_t cached) {
    EXPECT_EQ(out.cached, cached);
    EXPECT_EQ(lastPrefill().start, cached);
    EXPECT_EQ(lastPrefill().length, int64_t(prompt.size()) - cached);
  }

  static Engine *engine_;    ///< under test (through recorder_)
  static Engine *reference_; ///< whole prompts only (fresh_)
  static Tokenizer *tokenizer_;
  std::unique_ptr<RecordingEngine> recorder_;
  std::unique_ptr<Generator> generator_, fresh_;
};
Engine *PrefixCacheTest::engine_ = nullptr;
Engine *PrefixCacheTest::reference_ = nullptr;
Tokenizer *PrefixCacheTest::tokenizer_ = nullptr;

const char *kContext = "The compiler reads a model, fuses its layers into "
                       "kernels and writes a package that the runtime loads.";

TEST_F(PrefixCacheTest, SharedPrefixPrefillsOnlyTheSuffix) {
  std::vector<int32_t> first =
      ids(std::string(kContext) + " Question one: why?");
  std::vector<int32_t> second =
      ids(std::string(kContext) + " Question two: how fast is it?");
  size_t common = 0;
  while (common < std::min(first.size(), second.size()) &&
         first[common] == second[common])
    ++common;
  ASSERT_GT(common, 10u);
  ASSERT_LT(common, second.size());

  Output a = generate(*generator_, first, 6);
  ASSERT_EQ(recorder_->prefills.size(), 1u);
  expectPrefilledFrom(a, first, 0);
  expectSameAsFresh(a, first, 6);

  Output b = generate(*generator_, second, 6);
  ASSERT_EQ(recorder_->prefills.size(), 2u);
  expectPrefilledFrom(b, second, int64_t(common));
  expectSameAsFresh(b, second, 6);
}

TEST_F(PrefixCacheTest, DivergenceInTheMiddleReusesUpToIt) {
  std::vector<int32_t> first = ids(kContext);
  ASSERT_GT(first.size(), 12u);
  std::vector<int32_t> second = first;
  second[7] = second[7] == 100 ? 101 : 100; // differs at position 7 only
  generate(*generator_, first, 4);
  Output b = generate(*generator_, second, 4);
  expectPrefilledFrom(b, second, 7);
  expectSameAsFresh(b, second, 4);

  // Different from the first token on: nothing is reused.
  std::vector<int32_t> third = second;
  third[0] = third[0] == 100 ? 101 : 100;
  Output c = generate(*generator_, third, 4);
  expectPrefilledFrom(c, third, 0);
  expectSameAsFresh(c, third, 4);
}

TEST_F(PrefixCacheTest, APrefixOfTheCachedIdsStillPrefillsItsLastToken) {
  std::vector<int32_t> first = ids(kContext);
  generate(*generator_, first, 5);

  std::vector<int32_t> shorter(first.begin(), first.begin() + 9);
  Output b = generate(*generator_, shorter, 5);
  expectPrefilledFrom(b, shorter, 8);
  EXPECT_EQ(lastPrefill().length, 1);
  expectSameAsFresh(b, shorter, 5);

  // The very same prompt again: all but its last token are reused.
  Output again = generate(*generator_, shorter, 5);
  EXPECT_EQ(again.cached, 8);
  EXPECT_EQ(again.ids, b.ids);
  EXPECT_EQ(again.logprobs, b.logprobs);

  // A one-token prompt has nothing to reuse.
  std::vector<int32_t> one(first.begin(), first.begin() + 1);
  Output single = generate(*generator_, one, 3);
  expectPrefilledFrom(single, one, 0);
  expectSameAsFresh(single, one, 3);
}

TEST_F(PrefixCacheTest, ContinuingTheGeneratedTextReusesTheFedTokens) {
  // A chat turn: the next prompt is the previous prompt, the reply and more.
  std::vector<int32_t> first = ids(kContext);
  Output a = generate(*generator_, first, 6);
  ASSERT_EQ(a.ids.size(), 6u);
  std::vector<int32_t> held = expectCacheHolds(first, a.ids);

  std::vector<int32_t> next = first;
  next.insert(next.end(), a.ids.begin(), a.ids.end());
  std::vector<int32_t> more = ids(" And then?");
  next.insert(next.end(), more.begin(), more.end());
  Output b = generate(*generator_, next, 6);
  expectPrefilledFrom(b, next, int64_t(held.size()));
  expectSameAsFresh(b, next, 6);
}

TEST_F(PrefixCacheTest, ReuseOffPrefillsWholePromptsAndGivesTheSameOutput) {
  GeneratorOptions off{256, {}};
  off.prefixCache = false;
  Generator noCache(*recorder_, *tokenizer_, off);
  std::vector<int32_t> first = ids(std::string(kContext) + " One.");
  std::vector<int32_t> second = ids(std::string(kContext) + " Two, three.");
  for (float temperature : {0.0f, 0.8f}) {
    recorder_->prefills.clear();
    Output offA = generate(noCache, first, 6, temperature);
    Output offB = generate(noCache, second, 6, temperature);
    ASSERT_EQ(recorder_->prefills.size(), 2u);
    expectPrefilledFrom(offB, second, 0);
    EXPECT_TRUE(noCache.cachedIds().empty());

    Output onA = generate(*generator_, first, 6, temperature);
    Output onB = generate(*generator_, second, 6, temperature);
    EXPECT_GT(onB.cached, 10);
    // Seeded sampling restarts its stream at the prefill either way.
    EXPECT_EQ(onA.ids, offA.ids);
    EXPECT_EQ(onB.ids, offB.ids);
    for (size_t i = 0; i < onB.logprobs.size(); ++i)
      EXPECT_NEAR(onB.logprobs[i], offB.logprobs[i], 1e-5);
  }
}

TEST_F(PrefixCacheTest, AnotherCallerOnTheEngineInvalidatesTheCache) {
  std::vector<int32_t> first = ids(kContext);
  generate(*generator_, first, 4);
  ASSERT_FALSE(generator_->cachedIds().empty());

  // Another Generator over the same engine overwrites the cache rows...
  Generator other(*recorder_, *tokenizer_, GeneratorOptions{256, {}});
  std::vector<int32_t> unrelated = ids("Something else entirely, at length.");
  generate(other, unrelated, 4);
  EXPECT_TRUE(generator_->cachedIds().empty());
  // ...so the first Generator must not reuse what it had.
  Output b = generate(*generator_, first, 4);
  expectPrefilledFrom(b, first, 0);
  expectSameAsFresh(b, first, 4);

  // A direct engine call does the same.
  SamplingParams greedy;
  ASSERT_TRUE(recorder_->prefill(unrelated, greedy).ok());
  Output c = generate(*generator_, first, 4);
  EXPECT_EQ(c.cached, 0);
  expectSameAsFresh(c, first, 4);

  // And forgetCache() drops it on request.
  generator_->forgetCache();
  EXPECT_TRUE(generator_->cachedIds().empty());
  Output d = generate(*generator_, first, 4);
  EXPECT_EQ(d.cached, 0);
}

TEST_F(PrefixCacheTest, AnEngineErrorForgetsTheCache) {
  std::vector<int32_t> first = ids(kContext);
  generate(*generator_, first, 4);
  recorder_->decodes = 0;
  recorder_->failDecode = 1; // the second decode of the next generation
  GenerationRequest request;
  request.promptIds = first;
  request.maxTokens = 6;
  auto failed = generator_->generate(request);
  ASSERT_FALSE(failed.ok());
  EXPECT_THAT(std::string(failed.status().message()),
              testing::HasSubstr("injected decode failure"));
  EXPECT_TRUE(generator_->cachedIds().empty());

  recorder_->failDecode = -1;
  Output b = generate(*generator_, first, 6);
  expectPrefilledFrom(b, first, 0);
  expectSameAsFresh(b, first, 6);
}

TEST_F(PrefixCacheTest, ACancelledGenerationKeepsWhatItFed) {
  std::vector<int32_t> first = ids(kContext);
  Output a = generate(*generator_, first, 10, 0, /*cancelAfter=*/3);
  EXPECT_EQ(a.finish, FinishReason::Cancelled);
  ASSERT_EQ(a.ids.size(), 3u);
  std::vector<int32_t> held = expectCacheHolds(first, a.ids);

  std::vector<int32_t> next = first;
  next.insert(next.end(), a.ids.begin(), a.ids.end());
  Output b = generate(*generator_, next, 5);
  EXPECT_EQ(b.cached, int64_t(held.size()));
  expectSameAsFresh(b, next, 5);
}

TEST_F(PrefixCacheTest, UsageAndAwarenessReportTheCachedTokens) {
  std::vector<int32_t> first = ids(std::string(kContext) + " A.");
  std::vector<int32_t> second = ids(std::string(kContext) + " B?");
  GenerationRequest request;
  request.promptIds = first;
  request.maxTokens = 3;
  auto a = generator_->generate(request);
  ASSERT_TRUE(a.ok()) << a.status();
  request.promptIds = second;
  auto b = generator_->generate(request);
  ASSERT_TRUE(b.ok()) << b.status();
  int64_t cached = b->awareness.timing.cachedPromptTokens;
  EXPECT_GT(cached, 10);
  EXPECT_EQ(cached, lastPrefill().start);

  json usage = usageJson(*b);
  EXPECT_EQ(usage["prompt_tokens"], int64_t(second.size()));
  EXPECT_EQ(usage["prompt_tokens_details"]["cached_tokens"], cached);
  EXPECT_EQ(usageJson(*a)["prompt_tokens_details"]["cached_tokens"], 0);
  EXPECT_EQ(toJson(b->awareness)["timing"]["cached_prompt_tokens"], cached);
}

//===----------------------------------------------------------------------===//
// Agent workflows and the server
//===----------------------------------------------------------------------===//

TEST_F(PrefixCacheTest, AgentGenerateStepsSharingAPrefixReuseIt) {
  auto chat = ChatTemplate::fromTokenizerConfig(fixtureDir("qwen2") +
                                                "/tokenizer_config.json");
  ASSERT_TRUE(chat.ok()) << chat.status();
  const char *source = R"(
workflow w(q: string) -> json {
  generate "You are a careful assistant. Read the notes below and answer. Question: {q}" max_tokens 4 as a
  generate "You are a careful assistant. Read the notes below and answer. Summary of: {a.text}" max_tokens 4 as b
  return [a.text, b.text]
}
)";
  ToolRegistry tools;
  mlir::MLIRContext context;
  auto module = compileAgentSource(source, "share.agent", context,
                                   {.tools = tools.signatures()});
  ASSERT_TRUE(module.ok()) << module.status();

  auto runWith = [&](Generator &generator) {
    AgentExecutor executor(tools);
    executor.addModel({"qwen2", &generator, chat->get()});
    return executor.run(**module, "", json{{"q", "why"}});
  };
  auto reused = runWith(*generator_);
  ASSERT_TRUE(reused.ok()) << reused.status();
  std::vector<json> steps;
  for (const json &event : reused->trace)
    if (event["event"] == "step")
      steps.push_back(event);
  ASSERT_EQ(steps.size(), 2u);
  // agent-share-prefix grouped them; the second reuses the first's prefix.
  ASSERT_TRUE(steps[0].contains("prefix")) << steps[0].dump();
  EXPECT_EQ(steps[0]["prefix"]["group"], steps[1]["prefix"]["group"]);
  EXPECT_EQ(steps[0]["reused_tokens"], 0);
  EXPECT_EQ(steps[0]["reused"], false);
  int64_t reusedTokens = steps[1]["reused_tokens"].get<int64_t>();
  EXPECT_GT(reusedTokens, 10);
  EXPECT_EQ(steps[1]["reused"], true);
  EXPECT_EQ(steps[1]["prefix"]["reused"], true);
  EXPECT_EQ(steps[1]["prefix"]["reused_tokens"], reusedTokens);
  EXPECT_EQ(reusedTokens, lastPrefill().start);
  EXPECT_EQ(steps[1]["inputs"]["prompt_tokens"].get<int64_t>() - reusedTokens,
            lastPrefill().length);

  // The same workflow without reuse gives the same texts.
  auto plain = runWith(*fresh_);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->value, reused->value);
  for (const json &event : plain->trace)
    if (event["event"] == "step")
      EXPECT_EQ(event["reused_tokens"], 0);
}

TEST(PrefixCacheServerTest, CompletionsReportCachedTokens) {
  LoadOptions options;
  options.engine.maxSeq = 256;
  auto loaded = loadModel(fixtureDir("qwen2"), options);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  Generator generator(*loaded->engine, *loaded->tokenizer,
                      GeneratorOptions{256, loaded->eosIds});
  ServedModel served;
  served.name = "qwen2";
  served.tokenizer = loaded->tokenizer.get();
  served.chatTemplate = loaded->chatTemplate.get();
  served.maxSeq = 256;
  ServerOptions serverOptions;
  serverOptions.host = "127.0.0.1";
  serverOptions.port = 0;
  HttpServer server(generator, served, serverOptions);
  ASSERT_TRUE(server.start().ok());
  httplib::Client client("127.0.0.1", server.port());
  client.set_read_timeout(30, 0);
  auto complete = [&](const std::string &prompt) {
    auto res = client.Post("/v1/completions",
                           json{{"model", "qwen2"},
                                {"prompt", prompt},
                                {"max_tokens", 3},
                                {"temperature", 0}}
                               .dump(),
                           "application/json");
    EXPECT_TRUE(res);
    if (!res)
      return json();
    EXPECT_EQ(res->status, 200) << res->body;
    return json::parse(res->body, nullptr, false);
  };
  json a = complete(std::string(kContext) + " First.");
  json b = complete(std::string(kContext) + " Second!");
  server.stop();
  ASSERT_TRUE(a.is_object() && b.is_object());
  EXPECT_EQ(a["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  int64_t cached =
      b["usage"]["prompt_tokens_details"]["cached_tokens"].get<int64_t>();
  EXPECT_GT(cached, 10);
  EXPECT_LT(cached, b["usage"]["prompt_tokens"].get<int64_t>());
}

} // namespace
} // namespace treni
