//===- batch_generator_test.cpp - continuous batching end to end, CPU ----===//
//
// Tests that the BatchGenerator over the CPU step runner (the tiny Qwen2
// fixture on a paged CPU executor) gives every request what the
// single-sequence Generator gives it alone - the same tokens, text, logprobs
// and finish reason, greedy and seeded, with stops, constraints, shared
// prefixes and preemptions - while running them in shared steps, and that
// cancellation, deadlines, a full queue, a failing step and shutdown end the
// right requests and nothing else.
//
//===----------------------------------------------------------------------===//

#include "runtime/serve/batch_generator.h"

#include <atomic>
#include <chrono>
#include <thread>

#include "runtime/exec/engine_loader.h"
#include "runtime/serve/output_constraints.h"
#include "runtime/text/tokenizer.h"
#include "test/unit/test_util.h"
#include "gtest/gtest.h"

namespace treni {
namespace {
using testing_util::fixtureDir;

constexpr int64_t kMaxSeq = 256;

class BatchGeneratorTest : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    EngineOptions options;
    options.maxSeq = kMaxSeq;
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

  /// A runner over a pool of `blocks` blocks.
  std::unique_ptr<StepRunner> runner(int64_t blocks) {
    auto made = engine_->createStepRunner(blocks, 2048);
    EXPECT_TRUE(made.ok()) << made.status();
    return made.ok() ? std::move(*made) : nullptr;
  }
  std::unique_ptr<BatchGenerator> batch(StepRunner &runner,
                                        SchedulerConfig config = {},
                                        int64_t maxWaiting = 1024) {
    BatchGeneratorOptions options;
    options.scheduler = config;
    options.scheduler.maxSeqLen = kMaxSeq;
    options.maxWaiting = maxWaiting;
    auto made = BatchGenerator::create(runner, *tokenizer_, options);
    EXPECT_TRUE(made.ok()) << made.status();
    return made.ok() ? std::move(*made) : nullptr;
  }
  /// What the single-sequence Generator gives `request` (its prefix cache
  /// off, so each run starts from position 0).
  GenerationResult alone(const GenerationRequest &request) {
    GeneratorOptions options;
    options.maxSeq = kMaxSeq;
    options.prefixCache = false;
    Generator generator(*engine_, *tokenizer_, options);
    auto result = generator.generate(request);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : GenerationResult{};
  }
  /// Prompt `index`: lengths from 3 to ~150 tokens (over two 64-row blocks),
  /// the even ones sharing a long common start, no two alike.
  GenerationRequest request(int index, int64_t maxTokens = 12) {
    std::string text;
    if (index % 2 == 0)
      for (int i = 0; i < 12; ++i)
        text += "The compiler reads a model and writes kernels. ";
    for (int i = 0; i <= index % 16; ++i)
      text += "token " + std::to_string(i * 7 + index) + " ";
    GenerationRequest r;
    r.promptIds = tokenizer_->encode(text);
    r.maxTokens = maxTokens;
    if (index % 3 == 1) {
      r.sampling.temperature = 0.8f;
      r.sampling.topK = 20;
      r.sampling.seed = 100 + index;
    }
    r.sampling.numAlternatives = 2;
    return r;
  }

  /// Same tokens, text and finish reason; logprobs equal, or within
  /// `tolerance` where KV rows were recomputed by a prefill that the
  /// sequence alone computed by decode steps (rounding differs).
  static void expectSame(const GenerationResult &got,
                         const GenerationResult &want, int index,
                         float tolerance = 0) {
    ASSERT_EQ(got.tokens.size(), want.tokens.size()) << "request " << index;
    for (size_t i = 0; i < got.tokens.size(); ++i) {
      EXPECT_EQ(got.tokens[i].id, want.tokens[i].id)
          << "request " << index << " token " << i;
      if (tolerance == 0)
        EXPECT_EQ(got.tokens[i].logprob, want.tokens[i].logprob)
            << "request " << index << " token " << i;
      else
        EXPECT_NEAR(got.tokens[i].logprob, want.tokens[i].logprob, tolerance)
            << "request " << index << " token " << i;
      ASSERT_EQ(got.tokens[i].alternatives.size(),
                want.tokens[i].alternatives.size());
    }
    EXPECT_EQ(got.text, want.text) << "request " << index;
    EXPECT_EQ(got.finishReason, want.finishReason) << "request " << index;
  }

  /// Runs `requests` on `generator` from one thread each, all at once.
  static std::vector<absl::StatusOr<GenerationResult>>
  concurrently(BatchGenerator &generator,
               const std::vector<GenerationRequest> &requests) {
    std::vector<absl::StatusOr<GenerationResult>> results(
        requests.size(), absl::UnknownError("not run"));
    std::vector<std::thread> threads;
    for (size_t i = 0; i < requests.size(); ++i)
      threads.emplace_back(
          [&, i] { results[i] = generator.generate(requests[i]); });
    for (std::thread &thread : threads)
      thread.join();
    return results;
  }

  static Engine *engine_;
  static Tokenizer *tokenizer_;
};
Engine *BatchGeneratorTest::engine_ = nullptr;
Tokenizer *BatchGeneratorTest::tokenizer_ = nullptr;

// Tests that 64 requests at once - prompts of 3 to ~150 tokens, greedy
// and seeded sampling - each get exactly what they get alone (bit for bit:
// tokens, logprobs, text), and that the loop really ran them in shared
// steps.
// Tests that a runner asked for no particular pool size gets the CPU's
// default, four sequences of the engine's context.
TEST_F(BatchGeneratorTest, DefaultPoolHoldsFourContexts) {
  auto made = engine_->createStepRunner(0, 2048);
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ((*made)->numBlocks(), 4 * kvBlocksFor(kMaxSeq));
}

TEST_F(BatchGeneratorTest, ConcurrentRequestsMatchRunningAlone) {
  auto steps = runner(256);
  auto generator = batch(*steps);
  constexpr int kRequests = 64;
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < kRequests; ++i)
    requests.push_back(request(i));
  auto results = concurrently(*generator, requests);
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_TRUE(results[i].ok()) << results[i].status();
    expectSame(*results[i], alone(requests[i]), i);
  }
  BatchStats stats = generator->stats();
  EXPECT_GT(stats.maxStepSequences, 1);
  EXPECT_EQ(stats.running, 0);
  EXPECT_EQ(stats.waiting, 0);
  EXPECT_EQ(stats.kv.usedBlocks, 0);
}

// Tests that a prompt whose first full blocks another request computed
// reuses them (cached_tokens counts them) and still gets the same tokens.
TEST_F(BatchGeneratorTest, SharedPrefixIsReusedAndCounted) {
  auto steps = runner(64);
  auto generator = batch(*steps);
  GenerationRequest first = request(0);
  auto a = generator->generate(first);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->awareness.timing.cachedPromptTokens, 0);
  GenerationRequest second = request(2);
  ASSERT_GT(second.promptIds.size(), size_t(kKvBlockTokens));
  size_t common = 0;
  while (common < first.promptIds.size() &&
         first.promptIds[common] == second.promptIds[common])
    ++common;
  auto b = generator->generate(second);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->awareness.timing.cachedPromptTokens,
            int64_t(common / kKvBlockTokens) * kKvBlockTokens);
  EXPECT_GT(b->awareness.timing.cachedPromptTokens, 0);
  expectSame(*b, alone(second), 2);
}

// Tests that a pool too small for every sequence at once preempts and
// recomputes, and every request still gets its own tokens (logprobs to
// rounding: a preempted sequence's generated tokens get their KV rows from
// a prefill, not from the decode steps that made them alone).
TEST_F(BatchGeneratorTest, PreemptionKeepsResults) {
  // Each request needs 1-3 blocks; 6 blocks cannot hold eight at once.
  auto steps = runner(6);
  SchedulerConfig config;
  config.maxNumSeqs = 8;
  config.maxBatchTokens = 256;
  config.prefillChunk = 64;
  auto generator = batch(*steps, config);
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 8; ++i)
    requests.push_back(request(i, /*maxTokens=*/40));
  auto results = concurrently(*generator, requests);
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(results[i].ok()) << results[i].status();
    expectSame(*results[i], alone(requests[i]), i, 1e-5f);
  }
  EXPECT_GT(generator->stats().preemptions, 0);
}

// Tests stop strings, EOS, max_seq, streaming deltas and an output
// constraint through the batch loop against the Generator.
TEST_F(BatchGeneratorTest, StopsStreamsAndConstraintsMatchTheGenerator) {
  auto steps = runner(64);
  auto generator = batch(*steps);
  GenerationRequest base = request(3, 24);
  GenerationResult reference = alone(base);
  ASSERT_GT(reference.text.size(), 4u);

  GenerationRequest stopped = base;
  stopped.stop = {reference.text.substr(reference.text.size() / 2, 2)};
  std::string streamed;
  auto result = generator->generate(
      stopped, [&](std::string_view delta, absl::Span<const GeneratedToken>) {
        streamed += delta;
        return true;
      });
  ASSERT_TRUE(result.ok()) << result.status();
  expectSame(*result, alone(stopped), 3);
  EXPECT_EQ(result->finishReason, FinishReason::Stop);
  EXPECT_EQ(streamed, result->text);

  GenerationRequest longOne = base;
  longOne.maxTokens = 1000;
  longOne.promptIds.resize(kMaxSeq - 5, longOne.promptIds[0]);
  auto context = generator->generate(longOne);
  ASSERT_TRUE(context.ok()) << context.status();
  expectSame(*context, alone(longOne), 99);
  EXPECT_EQ(context->finishReason, FinishReason::Context);

  auto json = jsonObjectConstraint();
  GenerationRequest constrained = base;
  constrained.constraint = json.get();
  auto json2 = jsonObjectConstraint();
  GenerationRequest constrainedAlone = base;
  constrainedAlone.constraint = json2.get();
  auto c = generator->generate(constrained);
  ASSERT_TRUE(c.ok()) << c.status();
  expectSame(*c, alone(constrainedAlone), 100);
  EXPECT_EQ(c->text.front(), '{');
}

// Tests that a cancel flag, a stream callback that says stop and a deadline
// end their requests (Cancelled, Cancelled, Timeout) while another request
// sharing the steps finishes unharmed.
TEST_F(BatchGeneratorTest, CancellationAndDeadlines) {
  auto steps = runner(64);
  auto generator = batch(*steps);
  std::atomic<bool> cancel{false};
  GenerationRequest flagged = request(1, 200);
  flagged.cancel = &cancel;
  flagged.tokenDelay = std::chrono::milliseconds(2);
  GenerationRequest timed = request(2, 200);
  timed.deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(150);
  timed.tokenDelay = std::chrono::milliseconds(2);
  GenerationRequest streamedStop = request(4, 200);
  GenerationRequest normal = request(5, 30);

  absl::StatusOr<GenerationResult> a, b, c, d;
  int deltas = 0;
  std::thread ta([&] { a = generator->generate(flagged); });
  std::thread tb([&] { b = generator->generate(timed); });
  std::thread tc([&] {
    c = generator->generate(
        streamedStop, [&](std::string_view, absl::Span<const GeneratedToken>) {
          return ++deltas < 3;
        });
  });
  std::thread td([&] { d = generator->generate(normal); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  cancel = true;
  ta.join();
  tb.join();
  tc.join();
  td.join();
  ASSERT_TRUE(a.ok() && b.ok() && c.ok() && d.ok());
  EXPECT_EQ(a->finishReason, FinishReason::Cancelled);
  EXPECT_LT(a->tokens.size(), 200u);
  EXPECT_EQ(b->finishReason, FinishReason::Timeout);
  EXPECT_EQ(c->finishReason, FinishReason::Cancelled);
  EXPECT_EQ(c->tokens.size(), 3u);
  expectSame(*d, alone(normal), 5);
  EXPECT_EQ(generator->stats().kv.usedBlocks, 0);
}

// Tests that requests are checked before they queue, that a full waiting
// queue answers ResourceExhausted, and that max_tokens 0 computes nothing.
TEST_F(BatchGeneratorTest, RejectsBadRequestsAndAFullQueue) {
  auto steps = runner(64);
  SchedulerConfig config;
  config.maxNumSeqs = 1;
  auto generator = batch(*steps, config, /*maxWaiting=*/1);
  GenerationRequest bad = request(0);
  bad.promptIds.push_back(int32_t(steps->vocabSize()));
  EXPECT_TRUE(absl::IsInvalidArgument(generator->generate(bad).status()));
  GenerationRequest empty = request(0);
  empty.promptIds.clear();
  EXPECT_TRUE(absl::IsInvalidArgument(generator->generate(empty).status()));
  GenerationRequest none = request(0, 0);
  auto zero = generator->generate(none);
  ASSERT_TRUE(zero.ok());
  EXPECT_TRUE(zero->tokens.empty());
  EXPECT_EQ(zero->finishReason, FinishReason::Length);

  // One running (slow), one waiting: the third is turned away.
  std::atomic<bool> cancel{false};
  GenerationRequest slow = request(1, 200);
  slow.tokenDelay = std::chrono::milliseconds(5);
  slow.cancel = &cancel;
  GenerationRequest queued = request(3, 2);
  absl::StatusOr<GenerationResult> a, b;
  std::thread ta([&] { a = generator->generate(slow); });
  while (generator->stats().running < 1)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::thread tb([&] { b = generator->generate(queued); });
  while (generator->stats().waiting < 1)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  auto rejected = generator->generate(request(5, 2));
  EXPECT_TRUE(absl::IsResourceExhausted(rejected.status()))
      << rejected.status();
  cancel = true;
  ta.join();
  tb.join();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->finishReason, FinishReason::Cancelled);
  expectSame(*b, alone(queued), 3);
}

/// A runner that fails its `failAt`-th step and passes the rest on.
class FailingRunner : public StepRunner {
public:
  FailingRunner(StepRunner &inner, int failAt)
      : inner_(inner), failAt_(failAt) {}
  absl::StatusOr<absl::Span<const float>> run(const StepPlan &plan) override {
    if (++calls_ == failAt_)
      return absl::InternalError("injected step failure");
    return inner_.run(plan);
  }
  int64_t vocabSize() const override { return inner_.vocabSize(); }
  int64_t numBlocks() const override { return inner_.numBlocks(); }
  int64_t maxSeq() const override { return inner_.maxSeq(); }

private:
  StepRunner &inner_;
  int failAt_;
  int calls_ = 0;
};

// Tests that a failed step fails the requests it computed, releases their
// blocks, and that the generator goes on serving the next ones correctly.
TEST_F(BatchGeneratorTest, AFailedStepFailsItsRequestsOnly) {
  auto steps = runner(64);
  FailingRunner failing(*steps, /*failAt=*/3);
  auto generator = batch(failing);
  auto first = generator->generate(request(1, 10));
  EXPECT_EQ(first.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(generator->stats().kv.usedBlocks, 0);
  GenerationRequest next = request(2, 10);
  auto second = generator->generate(next);
  ASSERT_TRUE(second.ok()) << second.status();
  expectSame(*second, alone(next), 2);
}

// Tests that destroying the generator ends what runs as Cancelled.
TEST_F(BatchGeneratorTest, ShutdownCancelsRunningRequests) {
  auto steps = runner(64);
  auto generator = batch(*steps);
  GenerationRequest slow = request(1, 250);
  slow.tokenDelay = std::chrono::milliseconds(5);
  absl::StatusOr<GenerationResult> a;
  std::thread ta([&] { a = generator->generate(slow); });
  while (generator->stats().running < 1)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  generator.reset();
  ta.join();
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->finishReason, FinishReason::Cancelled);
}

} // namespace
} // namespace treni
