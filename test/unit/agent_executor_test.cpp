//===- agent_executor_test.cpp - agent IR run in-process ------------------===//
//
// Tests that the executor runs each op kind of the agent dialect as
// ir/AgentOps.td describes, on the CPU executor with the tiny Qwen2 fixture
// (random weights: its text means nothing, so the tests check structure,
// uncertainty plumbing and control flow, never wording), with tools of the
// test's own whose behaviour (failures, delays, state) is known: retries on
// tool failure and on uncertainty, fault injection recovered by retries,
// timeouts, concurrent hoisted calls, the trace's JSON shape, and clear
// errors with locations for bad workflows.
//
//===----------------------------------------------------------------------===//

#include "runtime/agent/agent_compiler.h"
#include "runtime/agent/agent_executor.h"
#include "runtime/agent/agent_http.h"

#include <atomic>
#include <chrono>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "httplib.h"
#include "runtime/exec/engine_loader.h"
#include "runtime/serve/generation.h"
#include "runtime/serve/http_server.h"
#include "runtime/serve/openai_api.h"
#include "runtime/text/chat_template.h"
#include "runtime/text/tokenizer.h"
#include "runtime/tools/tool_registry.h"
#include "test/unit/test_util.h"
#include "llvm/Support/raw_ostream.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace treni {
namespace {
using json = nlohmann::json;
using testing::HasSubstr;
using testing::Not;
using testing_util::fixtureDir;
using testing_util::messageOf;

ToolSignature signature(std::string name, std::vector<std::string> stringParams,
                        bool readOnly = false) {
  ToolSignature sig;
  sig.name = std::move(name);
  sig.description = "test tool";
  for (std::string &p : stringParams) {
    ToolParameter param;
    param.name = std::move(p);
    param.type = ToolType::String;
    sig.parameters.push_back(std::move(param));
  }
  sig.readOnly = readOnly;
  return sig;
}

class AgentExecutorTest : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    EngineOptions options;
    options.maxSeq = 512;
    auto engine = loadEngine(fixtureDir("qwen2"), options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine).release();
    auto tokenizer =
        Tokenizer::fromFile(fixtureDir("qwen2") + "/tokenizer.json");
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = std::move(*tokenizer).release();
    auto chat = ChatTemplate::fromTokenizerConfig(fixtureDir("qwen2") +
                                                  "/tokenizer_config.json");
    ASSERT_TRUE(chat.ok()) << chat.status();
    chat_ = std::move(*chat).release();
    generator_ = new Generator(*engine_, *tokenizer_, {512, {}});
  }
  static void TearDownTestSuite() {
    delete generator_;
    delete chat_;
    delete tokenizer_;
    delete engine_;
  }

  void SetUp() override {
    // echo(text) -> text; flaky(text) fails while `failures` > 0;
    // slow.a / slow.b (read-only) sleep `sleepMs`; counter() counts.
    ASSERT_TRUE(registry_
                    .add(signature("echo", {"text"}, true),
                         [](const json &args, const ToolContext &)
                             -> absl::StatusOr<json> { return args["text"]; })
                    .ok());
    ASSERT_TRUE(registry_
                    .add(signature("flaky", {"text"}),
                         [this](const json &args,
                                const ToolContext &) -> absl::StatusOr<json> {
                           if (failures_.fetch_sub(1) > 0)
                             return absl::UnavailableError("flaky is down");
                           return json{{"got", args["text"]}};
                         })
                    .ok());
    for (const char *name : {"slow.a", "slow.b"})
      ASSERT_TRUE(registry_
                      .add(signature(name, {"text"}, true),
                           // A timed-out attempt may outlive the test: it
                           // shares the delay instead of reading the fixture.
                           [sleepMs = sleepMs_](
                               const json &args,
                               const ToolContext &) -> absl::StatusOr<json> {
                             std::this_thread::sleep_for(
                                 std::chrono::milliseconds(sleepMs->load()));
                             return args["text"];
                           })
                      .ok());
  }

  /// Compiles `source` (the registry's signatures checked) and runs it.
  absl::StatusOr<AgentRunResult> run(const std::string &source,
                                     json args = json::object(),
                                     AgentExecutorOptions options = {},
                                     std::string workflow = "") {
    mlir::MLIRContext context;
    auto module = compileAgentSource(source, "test.agent", context,
                                     {.tools = registry_.signatures()});
    if (!module.ok())
      return module.status();
    options.backoffBase = std::chrono::milliseconds(1);
    AgentExecutor executor(registry_, options);
    executor.addModel({"qwen2", generator_, chat_});
    return executor.run(**module, workflow, args);
  }

  /// A BatchGenerator over a CPU step runner of the engine (null on an
  /// error, which the test reports).
  /// A runner that, until it has computed a step of two sequences, waits
  /// 5 ms before each step (2 s at most in all): a second generation that
  /// a loaded machine starts late still meets the first one's decode.
  class PacedRunner : public StepRunner {
  public:
    explicit PacedRunner(std::unique_ptr<StepRunner> inner)
        : inner_(std::move(inner)) {}
    absl::StatusOr<absl::Span<const float>> run(const StepPlan &plan) override {
      pace(plan);
      return inner_->run(plan);
    }
    absl::StatusOr<std::vector<SampleResult>>
    runSampled(const StepPlan &plan,
               absl::Span<const RowSampling> sampling) override {
      pace(plan);
      return inner_->runSampled(plan, sampling);
    }
    int64_t vocabSize() const override { return inner_->vocabSize(); }
    int64_t numBlocks() const override { return inner_->numBlocks(); }
    int64_t maxSeq() const override { return inner_->maxSeq(); }

  private:
    void pace(const StepPlan &plan) {
      if (plan.decodes.size() + plan.prefills.size() >= 2)
        shared_ = true;
      if (!shared_ && waits_ < 400) {
        ++waits_;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
    std::unique_ptr<StepRunner> inner_;
    bool shared_ = false;
    int waits_ = 0;
  };

  struct Batch {
    std::unique_ptr<StepRunner> runner;
    std::unique_ptr<BatchGenerator> generator;
  };
  Batch makeBatch(bool paced = false) {
    Batch batch;
    auto runner = engine_->createStepRunner(64, 2048);
    EXPECT_TRUE(runner.ok()) << runner.status();
    if (!runner.ok())
      return batch;
    batch.runner = std::move(*runner);
    if (paced)
      batch.runner = std::make_unique<PacedRunner>(std::move(batch.runner));
    BatchGeneratorOptions options;
    options.scheduler.maxSeqLen = 512;
    auto generator =
        BatchGenerator::create(*batch.runner, *tokenizer_, options);
    EXPECT_TRUE(generator.ok()) << generator.status();
    if (generator.ok())
      batch.generator = std::move(*generator);
    return batch;
  }

  static std::vector<json> events(const AgentRunResult &result,
                                  const std::string &kind) {
    std::vector<json> out;
    for (const json &e : result.trace)
      if (e["event"] == kind)
        out.push_back(e);
    return out;
  }

  static Engine *engine_;
  static Tokenizer *tokenizer_;
  static ChatTemplate *chat_;
  static Generator *generator_;
  ToolRegistry registry_;
  std::atomic<int> failures_{0};
  std::shared_ptr<std::atomic<int>> sleepMs_ =
      std::make_shared<std::atomic<int>>(0);
};
Engine *AgentExecutorTest::engine_ = nullptr;
Tokenizer *AgentExecutorTest::tokenizer_ = nullptr;
ChatTemplate *AgentExecutorTest::chat_ = nullptr;
Generator *AgentExecutorTest::generator_ = nullptr;

TEST_F(AgentExecutorTest, ValuesTemplatesConditionsAndIf) {
  const char *source = R"(
workflow w(name: string, n: int, x: float = 2.5, flag: bool = true, j: json = "[1, 2]") -> string {
  let t = "{name}|{n}|{x}|{flag}|{j}|{{lit}}"
  let m = matches(t, "^ada\\|3\\|")
  let v = json_valid("{j}")
  let w = json_valid("not json")
  if m and v and not w and n >= 3 and x > 2 and x < n and j == [1, 2] and name != "bob" {
    return "yes {t}"
  } else {
    return "no {t}"
  }
}
)";
  auto result = run(source, {{"name", "ada"}, {"n", "3"}});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->value, "yes ada|3|2.5|true|[1,2]|{lit}");
  auto other = run(source, {{"name", "bob"}, {"n", 3}, {"flag", false}});
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(other->value, "no bob|3|2.5|false|[1,2]|{lit}");
  EXPECT_EQ(other->steps, 0);
}

TEST_F(AgentExecutorTest, GenerateUsesTheChatTemplateAndReportsUncertainty) {
  const char *source = R"(
workflow g(q: string) -> json {
  generate "Question: {q}" max_tokens 6 as a
  return [a.text, a.tokens, a.perplexity, a.max_entropy, a.mean_entropy, a.low_confidence]
}
)";
  AgentExecutorOptions options;
  options.lowConfidenceThreshold = 0.999; // the fixture is peaked: catch some
  auto result = run(source, {{"q", "why"}}, options);
  ASSERT_TRUE(result.ok()) << result.status();

  // The same request made directly.
  auto rendered = chat_->render(
      json::array({{{"role", "user"}, {"content", "Question: why"}}}));
  ASSERT_TRUE(rendered.ok());
  GenerationRequest request;
  request.promptIds = tokenizer_->encode(*rendered, false);
  request.maxTokens = 6;
  request.lowConfidenceThreshold = 0.999;
  auto direct = generator_->generate(request);
  ASSERT_TRUE(direct.ok()) << direct.status();

  const json &v = result->value;
  EXPECT_EQ(v[0], direct->text);
  EXPECT_EQ(v[1], int64_t(direct->tokens.size()));
  EXPECT_DOUBLE_EQ(v[2].get<double>(), direct->awareness.perplexity);
  EXPECT_DOUBLE_EQ(v[3].get<double>(), direct->awareness.maxEntropy);
  EXPECT_DOUBLE_EQ(v[4].get<double>(), direct->awareness.meanEntropy);
  EXPECT_EQ(v[5], int64_t(direct->awareness.lowConfidencePositions.size()));

  auto steps = events(*result, "step");
  ASSERT_EQ(steps.size(), 1u);
  const json &step = steps[0];
  EXPECT_EQ(step["kind"], "generate");
  EXPECT_EQ(step["step"], "a");
  EXPECT_EQ(step["location"], "test.agent:3:3");
  EXPECT_EQ(step["inputs"]["chat_template"], true);
  EXPECT_EQ(step["inputs"]["prompt_tokens"], int64_t(request.promptIds.size()));
  const json &u = step["uncertainty"];
  EXPECT_EQ(u["low_confidence"], v[5]);
  ASSERT_EQ(u["uncertain"].size(),
            direct->awareness.lowConfidencePositions.size());
  for (const json &token : u["uncertain"]) {
    EXPECT_LT(token["prob"].get<double>(), 0.999);
    EXPECT_TRUE(token["alternatives"].is_array());
    EXPECT_FALSE(token["alternatives"].empty());
    EXPECT_TRUE(token.contains("entropy") && token.contains("index") &&
                token.contains("token"));
  }

  // Without the template the prompt is plain (and shorter).
  options.applyChatTemplate = false;
  auto raw = run(source, {{"q", "why"}}, options);
  ASSERT_TRUE(raw.ok()) << raw.status();
  auto rawStep = events(*raw, "step")[0];
  EXPECT_EQ(rawStep["inputs"]["chat_template"], false);
  EXPECT_EQ(rawStep["inputs"]["prompt_tokens"],
            int64_t(tokenizer_->encode("Question: why").size()));
}

TEST_F(AgentExecutorTest, RetryOnUncertaintySeesAttemptIndex) {
  const char *source = R"(
workflow r(limit: float) -> string {
  retry {
    generate "try {attempt.index}" max_tokens 3 as g
  } when g.max_entropy > limit max 3
  return "{g.tokens}"
}
)";
  // max_entropy of a random model is > 0: a limit of -1 always retries,
  // a huge one never does.
  auto always = run(source, {{"limit", -1.0}});
  ASSERT_TRUE(always.ok()) << always.status();
  auto steps = events(*always, "step");
  ASSERT_EQ(steps.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(steps[i]["attempt"], i);
    EXPECT_EQ(steps[i]["inputs"]["prompt"], "try " + std::to_string(i));
  }
  auto retries = events(*always, "retry");
  ASSERT_EQ(retries.size(), 3u);
  EXPECT_EQ(retries[0]["again"], true);
  EXPECT_EQ(retries[2]["again"], false); // max reached
  EXPECT_EQ(retries[2]["condition"], true);

  auto never = run(source, {{"limit", 1e9}});
  ASSERT_TRUE(never.ok()) << never.status();
  EXPECT_EQ(events(*never, "step").size(), 1u);
}

TEST_F(AgentExecutorTest, RetryOnToolFailureSeesThePreviousError) {
  const char *source = R"(
workflow f() -> string {
  retry {
    tool flaky(text: "x") as t
    let seen = "attempt {attempt.index} after '{attempt.previous.t.error}'"
  } when failed(t) max 4
  if ok(t) {
    return "{seen} -> {t.text}"
  }
  return "gave up: {t.error}"
}
)";
  failures_ = 2;
  auto result = run(source);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->value,
            "attempt 2 after 'unavailable: flaky is down' -> {\"got\":\"x\"}");
  EXPECT_EQ(result->toolFailures, 2);

  failures_ = 10;
  auto gaveUp = run(source);
  ASSERT_TRUE(gaveUp.ok()) << gaveUp.status();
  EXPECT_EQ(gaveUp->value, "gave up: unavailable: flaky is down");
  EXPECT_EQ(events(*gaveUp, "step").size(), 4u);
}

TEST_F(AgentExecutorTest, InjectedFaultsAreRecoveredByToolRetries) {
  // Every 2nd attempt fails: with one retry per call every call succeeds.
  // Each call reads the previous one's output, so none are hoisted into a
  // parallel group and the attempt order (and so which attempts fail) is fixed.
  FaultSpec spec;
  spec.failEvery = 2;
  registry_.faults().set("echo", spec);
  const char *source = R"(
workflow e() -> string {
  tool echo(text: "a") retries 1 as a
  tool echo(text: "{a.text}b") retries 1 as b
  tool echo(text: "{b.text}c") retries 1 as c
  tool echo(text: "{c.text}d") as d
  return "{c.text}|{d.ok}"
}
)";
  auto result = run(source);
  ASSERT_TRUE(result.ok()) << result.status();
  // Attempts: a1 ok, b1 fail, b2 ok, c1 fail(4), c2 ok, d1 fail(6).
  EXPECT_EQ(result->value, "abc|false");
  auto steps = events(*result, "step");
  ASSERT_EQ(steps.size(), 4u);
  EXPECT_EQ(steps[0]["retries"], 0);
  EXPECT_EQ(steps[1]["retries"], 1);
  EXPECT_EQ(steps[1]["attempts"][0]["ok"], false);
  EXPECT_THAT(steps[1]["attempts"][0]["error"].get<std::string>(),
              HasSubstr("injected"));
  EXPECT_THAT(steps[3]["error"].get<std::string>(), HasSubstr("injected"));
}

TEST_F(AgentExecutorTest, TimeoutFailsTheCallNotTheWorkflow) {
  *sleepMs_ = 2000;
  const char *source = R"(
workflow t() -> string {
  tool slow.a(text: "x") timeout 100ms as s
  return "{s.ok} {s.error}"
}
)";
  auto start = std::chrono::steady_clock::now();
  auto result = run(source);
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(result->value.get<std::string>(), HasSubstr("false timeout"));
  EXPECT_LT(seconds, 1.5); // did not wait for the 2 s tool
}

TEST_F(AgentExecutorTest, HoistedIndependentToolsOverlap) {
  *sleepMs_ = 400;
  const char *source = R"(
workflow p() -> string {
  tool slow.a(text: "a") as a
  tool slow.b(text: "b") as b
  return "{a.text}{b.text}"
}
)";
  auto result = run(source);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->value, "ab");
  auto steps = events(*result, "step");
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[0]["parallel"], true);
  // Each call takes >= 400 ms; they overlap when each starts before the
  // other ends (true however slow the machine, if they ran concurrently).
  double aStart = steps[0]["start_ms"], aEnd = steps[0]["end_ms"];
  double bStart = steps[1]["start_ms"], bEnd = steps[1]["end_ms"];
  EXPECT_LT(bStart, aEnd);
  EXPECT_LT(aStart, bEnd);
  EXPECT_GE(aEnd - aStart, 390);

  AgentExecutorOptions serial;
  serial.parallelTools = false;
  auto one = run(source, json::object(), serial);
  ASSERT_TRUE(one.ok()) << one.status();
  auto s = events(*one, "step");
  EXPECT_GE(s[1]["start_ms"].get<double>(), s[0]["end_ms"].get<double>());
}

TEST_F(AgentExecutorTest, TraceShape) {
  const char *source = R"(
workflow s(q: string) -> string {
  tool echo(text: q) timeout 1s retries 2 as e
  generate "{e.text}" max_tokens 2 as g
  return g.text
}
)";
  std::vector<json> streamed;
  mlir::MLIRContext context;
  auto module = compileAgentSource(source, "s.agent", context,
                                   {.tools = registry_.signatures()});
  ASSERT_TRUE(module.ok()) << module.status();
  AgentExecutor executor(registry_);
  executor.addModel({"qwen2", generator_, chat_});
  auto result = executor.run(**module, "s", {{"q", "hi"}},
                             [&](const json &e) { streamed.push_back(e); });
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(streamed.size(), result->trace.size());
  ASSERT_EQ(streamed.size(), 4u);
  EXPECT_EQ(streamed[0]["event"], "start");
  EXPECT_EQ(streamed[0]["args"], json({{"q", "hi"}}));
  const json &tool = streamed[1];
  for (const char *key : {"step", "kind", "location", "inputs", "outputs",
                          "latency_ms", "retries", "attempts", "t_ms"})
    EXPECT_TRUE(tool.contains(key)) << key;
  EXPECT_EQ(tool["inputs"], json({{"text", "hi"}}));
  EXPECT_EQ(tool["outputs"]["output"], "hi");
  const json &gen = streamed[2];
  for (const char *key : {"step", "kind", "location", "inputs", "outputs",
                          "uncertainty", "latency_ms", "model"})
    EXPECT_TRUE(gen.contains(key)) << key;
  for (const char *key : {"perplexity", "max_entropy", "mean_entropy",
                          "low_confidence", "uncertain"})
    EXPECT_TRUE(gen["uncertainty"].contains(key)) << key;
  EXPECT_EQ(streamed[3]["event"], "end");
  EXPECT_EQ(streamed[3]["value"], result->value);
  EXPECT_EQ(result->steps, 2);
  json whole = result->toJson("s");
  EXPECT_EQ(whole["trace"].size(), 4u);
  EXPECT_NO_THROW(whole.dump());
}

// Tests that what a hostile workflow can make the executor do is bounded:
// a format string that multiplies a large argument fails at the string
// limit (it built 10 GB before), nested retries with no step fail at the
// trace limit (every retry decision is an event), and cancellation is seen
// by a retry loop that runs no step at all.
TEST_F(AgentExecutorTest, HostileWorkflowsAreBounded) {
  std::string format;
  for (int i = 0; i < 100; ++i)
    format += "{q}";
  auto amplified = run("workflow w(q: string) -> string {\n  let s = \"" +
                           format + "\"\n  return s\n}\n",
                       {{"q", std::string(100000, 'x')}});
  ASSERT_FALSE(amplified.ok());
  EXPECT_THAT(messageOf(amplified.status()),
              HasSubstr("a format string built more than 1048576 bytes"));

  const char *nested = R"(
workflow w() {
  retry {
    retry {
    } when true max 1000
  } when true max 1000
}
)";
  auto loops = run(nested);
  ASSERT_FALSE(loops.ok());
  EXPECT_EQ(loops.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(messageOf(loops.status()),
              HasSubstr("limit of 10000 trace events"));

  std::atomic<bool> cancel{true};
  AgentExecutorOptions options;
  options.cancel = &cancel;
  auto cancelled = run(nested, json::object(), options);
  ASSERT_FALSE(cancelled.ok());
  EXPECT_EQ(cancelled.status().code(), absl::StatusCode::kCancelled);
}

TEST_F(AgentExecutorTest, BadWorkflowsGiveClearErrors) {
  // Syntax error: location and caret.
  auto parse = run("workflow w( {");
  ASSERT_FALSE(parse.ok());
  EXPECT_THAT(messageOf(parse.status()), HasSubstr("test.agent:1:"));
  EXPECT_THAT(messageOf(parse.status()), HasSubstr("^"));

  // Unknown tool: caught by agent-verify-tools against the registry.
  auto unknown = run("workflow w() {\n  tool nope.x(a: \"1\")\n}\n");
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(messageOf(unknown.status()), HasSubstr("test.agent:2:3"));
  EXPECT_THAT(messageOf(unknown.status()), HasSubstr("nope.x"));

  const char *needsArg = "workflow w(n: int) -> int {\n  return n\n}\n";
  auto missing = run(needsArg);
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(messageOf(missing.status()), HasSubstr("missing argument 'n'"));
  auto badType = run(needsArg, {{"n", "three"}});
  ASSERT_FALSE(badType.ok());
  EXPECT_THAT(messageOf(badType.status()), HasSubstr("expected an integer"));
  auto extra = run(needsArg, {{"n", 1}, {"m", 2}});
  ASSERT_FALSE(extra.ok());
  EXPECT_THAT(messageOf(extra.status()), HasSubstr("no parameter 'm'"));

  auto regex =
      run("workflow w() -> bool {\n  return matches(\"a\", \"(\")\n}\n");
  ASSERT_FALSE(regex.ok());
  EXPECT_THAT(messageOf(regex.status()), HasSubstr("test.agent:2:"));
  EXPECT_THAT(messageOf(regex.status()), HasSubstr("regular expression"));

  auto model =
      run("workflow w() {\n  generate \"x\" model \"other\" as g\n}\n");
  ASSERT_FALSE(model.ok());
  EXPECT_THAT(messageOf(model.status()), HasSubstr("test.agent:2:3: step 'g'"));
  EXPECT_THAT(messageOf(model.status()),
              HasSubstr("unknown model 'other' (loaded: qwen2)"));

  const char *two = "workflow a() {\n}\nworkflow b() -> int {\n  return 2\n}\n";
  auto ambiguous = run(two);
  ASSERT_FALSE(ambiguous.ok());
  EXPECT_THAT(messageOf(ambiguous.status()),
              HasSubstr("several workflows (a, b)"));
  auto chosen = run(two, json::object(), {}, "b");
  ASSERT_TRUE(chosen.ok()) << chosen.status();
  EXPECT_EQ(chosen->value, 2);
  auto none = run(two, json::object(), {}, "c");
  ASSERT_FALSE(none.ok());
  EXPECT_THAT(messageOf(none.status()), HasSubstr("no workflow 'c'"));

  // A prompt longer than the context is the generate step's error.
  std::string longPrompt(4000, 'a');
  auto tooLong =
      run("workflow w(p: string) {\n  generate \"{p} {p}\" as g\n}\n",
          {{"p", longPrompt}});
  ASSERT_FALSE(tooLong.ok());
  EXPECT_THAT(messageOf(tooLong.status()),
              HasSubstr("test.agent:2:3: step 'g'"));
}

/// The module compileAgentSource() gives for `source`, printed (or the
/// error message).
std::string compiled(const std::string &source,
                     const AgentCompileOptions &options) {
  mlir::MLIRContext context;
  auto module = compileAgentSource(source, "c.agent", context, options);
  if (!module.ok())
    return "error: " + messageOf(module.status());
  std::string text;
  llvm::raw_string_ostream os(text);
  (*module)->print(os);
  return text;
}

TEST(AgentCompiler, ChecksCallsAgainstSignaturesInMemory) {
  const char *source = "workflow w(q: string) {\n  tool kv.get(k: q) as a\n}\n";
  // No signatures at all: the call is left for the executor's registry.
  EXPECT_THAT(compiled(source, {}), HasSubstr("agent.tool \"kv.get\""));
  // An empty list checks: the tool is unknown.
  EXPECT_THAT(compiled(source, {.tools = std::vector<ToolSignature>{}}),
              HasSubstr("c.agent:2:3: error: unknown tool 'kv.get'"));
  std::vector<ToolSignature> tools = {signature("kv.get", {"key"})};
  std::string checked = compiled(source, {.tools = tools});
  EXPECT_THAT(
      checked,
      HasSubstr("c.agent:2:3: error: tool 'kv.get' has no argument 'k'"));
  EXPECT_THAT(checked,
              HasSubstr("tool 'kv.get' needs argument 'key' (string)"));
  // The registry export (what the server's route passes) reads the same.
  ToolRegistry registry;
  ASSERT_TRUE(registry
                  .add(tools[0],
                       [](const json &args, const ToolContext &) {
                         return absl::StatusOr<json>(args);
                       })
                  .ok());
  mlir::MLIRContext context;
  auto exported =
      compileAgentSource(source, "c.agent", context, registry.toJson());
  ASSERT_FALSE(exported.ok());
  EXPECT_EQ("error: " + messageOf(exported.status()), checked);
}

TEST(AgentCompiler, HoistingReadsReadonlyFromSignaturesInMemory) {
  // Two calls of one namespace overlap only when both tools are read-only.
  const char *source = "workflow w(q: string) {\n  tool kv.get(key: q) as a\n"
                       "  tool kv.scan(key: q) as b\n}\n";
  std::vector<ToolSignature> tools = {
      signature("kv.get", {"key"}, /*readOnly=*/true),
      signature("kv.scan", {"key"}, /*readOnly=*/true)};
  EXPECT_THAT(compiled(source, {.tools = tools}), HasSubstr("agent.parallel"));
  tools[1].readOnly = false;
  std::string serial = compiled(source, {.tools = tools});
  EXPECT_THAT(serial, HasSubstr("agent.tool \"kv.scan\""));
  EXPECT_THAT(serial, Not(HasSubstr("agent.parallel")));
}

std::string readFile(const std::string &path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

TEST_F(AgentExecutorTest, RefineLibraryWorkflowRefinesOnlyWhenUnsure) {
  std::string source = readFile(std::string(TRENI_SOURCE_DIR) +
                                "/agent_dsl/library/refine.agent");
  ASSERT_FALSE(source.empty());
  AgentExecutorOptions options;
  // Generous thresholds: one pass.
  auto sure = run(source,
                  {{"question", "What is 2+2?"},
                   {"max_perplexity", 1e9},
                   {"max_entropy", 1e9},
                   {"max_low_confidence", 1000000}},
                  options);
  ASSERT_TRUE(sure.ok()) << sure.status();
  auto sureSteps = events(*sure, "step");
  ASSERT_EQ(sureSteps.size(), 1u);
  EXPECT_EQ(sure->value, sureSteps[0]["outputs"]["text"]);

  // Entropy threshold below the first pass's: a refinement pass whose
  // prompt lists the first pass's uncertain tokens and alternatives.
  auto unsure = run(source,
                    {{"question", "What is 2+2?"},
                     {"max_perplexity", 1e9},
                     {"max_entropy", 0.0},
                     {"max_low_confidence", 1000000}},
                    options);
  ASSERT_TRUE(unsure.ok()) << unsure.status();
  auto steps = events(*unsure, "step");
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[1]["step"], "refined");
  std::string prompt = steps[1]["inputs"]["prompt"];
  EXPECT_THAT(prompt,
              HasSubstr(steps[0]["outputs"]["text"].get<std::string>()));
  EXPECT_THAT(prompt, HasSubstr(steps[0]["uncertainty"]["uncertain"].dump()));
  if (!steps[0]["uncertainty"]["uncertain"].empty())
    EXPECT_THAT(prompt, HasSubstr("\"alternatives\""));
  EXPECT_EQ(unsure->value, steps[1]["outputs"]["text"]);
}

/// The data of each `data: ` line of an SSE body.
std::vector<std::string> sseData(const std::string &body) {
  std::vector<std::string> out;
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("data: ", 0) == 0)
      out.push_back(line.substr(6));
  return out;
}

TEST_F(AgentExecutorTest, ServerStreamsAgentRunEvents) {
  ServerOptions options;
  options.host = "127.0.0.1";
  options.port = 0;
  ServedModel served;
  served.name = "qwen2";
  served.tokenizer = tokenizer_;
  served.chatTemplate = chat_;
  served.maxSeq = 512;
  HttpServer server(*generator_, served, options);
  addAgentRoute(server, *generator_, served, registry_);
  ASSERT_TRUE(server.start().ok());
  httplib::Client client("127.0.0.1", server.port());
  client.set_read_timeout(30, 0);

  json body = {{"source", "workflow w(q: string) -> string {\n"
                          "  tool echo(text: q) as e\n"
                          "  generate \"{e.text}\" max_tokens 2 as g\n"
                          "  return e.text\n}\n"},
               {"args", {{"q", "hello"}}}};
  auto res = client.Post("/v1/agent/run", body.dump(), "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_THAT(res->get_header_value("Content-Type"),
              HasSubstr("text/event-stream"));
  std::vector<std::string> data = sseData(res->body);
  ASSERT_EQ(data.size(), 5u) << res->body; // start, 2 steps, end, [DONE]
  EXPECT_EQ(json::parse(data[0])["event"], "start");
  EXPECT_EQ(json::parse(data[1])["step"], "e");
  EXPECT_EQ(json::parse(data[2])["kind"], "generate");
  json end = json::parse(data[3]);
  EXPECT_EQ(end["event"], "end");
  EXPECT_EQ(end["value"], "hello");
  EXPECT_EQ(data[4], "[DONE]");

  // Errors are events too: a compile error, then a run-time one.
  auto bad = client.Post("/v1/agent/run", json{{"source", "workflow ("}}.dump(),
                         "application/json");
  ASSERT_TRUE(bad);
  std::vector<std::string> badData = sseData(bad->body);
  ASSERT_EQ(badData.size(), 2u) << bad->body;
  json badEvent = json::parse(badData[0]);
  EXPECT_EQ(badEvent["event"], "error");
  EXPECT_THAT(badEvent["error"].get<std::string>(),
              HasSubstr("request.agent:1:"));
  auto missing = client.Post(
      "/v1/agent/run",
      json{{"source", "workflow w(n: int) -> int {\n  return n\n}\n"}}.dump(),
      "application/json");
  ASSERT_TRUE(missing);
  std::vector<std::string> missingData = sseData(missing->body);
  ASSERT_EQ(missingData.size(), 2u) << missing->body;
  EXPECT_THAT(missingData[0], HasSubstr("missing argument 'n'"));
  server.stop();
}

// Tests that independent generate steps of one workflow run as one
// agent.parallel group: on a BatchGenerator they decode in shared batch
// steps (the batch's largest step holds both sequences) and give what they
// give run one after another on the Generator, both traced as parallel;
// on the Generator (not concurrent) the group runs them in turn.
TEST_F(AgentExecutorTest, IndependentGenerationsShareTheBatch) {
  const std::string source =
      "workflow w(q: string) -> string {\n"
      "  generate \"Describe {q}.\" max_tokens 40 as a\n"
      "  generate \"Name three facts about {q}.\" max_tokens 40 as b\n"
      "  return \"{a.text}|{b.text}\"\n}\n";
  mlir::MLIRContext context;
  auto module = compileAgentSource(source, "test.agent", context,
                                   {.tools = registry_.signatures()});
  ASSERT_TRUE(module.ok()) << module.status();
  ASSERT_THAT(compiled(source, {.tools = registry_.signatures()}),
              HasSubstr("agent.parallel"));

  auto alone = run(source, {{"q", "rivers"}});
  ASSERT_TRUE(alone.ok()) << alone.status();
  std::vector<json> serialSteps = events(*alone, "step");
  ASSERT_EQ(serialSteps.size(), 2u);
  for (const json &step : serialSteps)
    EXPECT_EQ(step.value("parallel", false), true) << step.dump();

  Batch batch = makeBatch(/*paced=*/true);
  ASSERT_TRUE(batch.generator);
  AgentExecutor executor(registry_, {});
  executor.addModel({"qwen2", batch.generator.get(), chat_});
  auto batched = executor.run(**module, "", {{"q", "rivers"}});
  ASSERT_TRUE(batched.ok()) << batched.status();
  EXPECT_EQ(batched->value, alone->value);
  EXPECT_GE(batch.generator->stats().maxStepSequences, 2);
  for (const json &step : events(*batched, "step"))
    EXPECT_EQ(step.value("parallel", false), true) << step.dump();
}

// Tests that with a BatchGenerator the agent route runs workflows beside
// each other on the batch workers: six concurrent runs each end with the
// value the workflow gives on the Generator alone, and their generate steps
// shared batch steps.
TEST_F(AgentExecutorTest, ServerRunsWorkflowsConcurrentlyThroughTheBatch) {
  Batch batch = makeBatch();
  ASSERT_TRUE(batch.generator);
  ServerOptions options;
  options.host = "127.0.0.1";
  options.port = 0;
  options.maxNumSeqs = 8;
  ServedModel served;
  served.name = "qwen2";
  served.tokenizer = tokenizer_;
  served.chatTemplate = chat_;
  served.maxSeq = 512;
  HttpServer server(*generator_, served, options, batch.generator.get());
  addAgentRoute(server, *batch.generator, served, registry_);
  ASSERT_TRUE(server.start().ok());

  const std::string source =
      "workflow w(q: string) -> string {\n"
      "  tool echo(text: q) as e\n"
      "  generate \"Tell me about {e.text}\" max_tokens 200 as g\n"
      "  return g.text\n}\n";
  constexpr int kRuns = 6;
  std::vector<std::string> expected;
  for (int i = 0; i < kRuns; ++i) {
    auto alone = run(source, {{"q", "topic " + std::to_string(i * 11)}});
    ASSERT_TRUE(alone.ok()) << alone.status();
    expected.push_back(alone->value.get<std::string>());
  }
  std::vector<std::future<json>> ends;
  for (int i = 0; i < kRuns; ++i)
    ends.push_back(std::async(std::launch::async, [&, i] {
      httplib::Client client("127.0.0.1", server.port());
      client.set_read_timeout(60, 0);
      json body = {{"source", source},
                   {"args", {{"q", "topic " + std::to_string(i * 11)}}}};
      auto res = client.Post("/v1/agent/run", body.dump(), "application/json");
      if (!res || res->status != 200)
        return json{{"status", res ? res->status : -1}};
      std::vector<std::string> data = sseData(res->body);
      return data.size() >= 2 ? json::parse(data[data.size() - 2]) : json();
    }));
  for (int i = 0; i < kRuns; ++i) {
    json end = ends[i].get();
    EXPECT_EQ(end["event"], "end") << end.dump();
    EXPECT_EQ(end["value"], expected[i]) << "run " << i;
  }
  EXPECT_GT(batch.generator->stats().maxStepSequences, 1);
  server.stop();
}

} // namespace
} // namespace treni
