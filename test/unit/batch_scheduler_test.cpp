//===- batch_scheduler_test.cpp - continuous batching scheduler -----------===//
//
// Tests the scheduler over a real KvBlockPool with a fake model runner that
// keeps, for every KV row of the pool, the token written there: each step's
// rows are written into the blocks the plan names and every row attention
// would read is checked to hold the sequence's own token, so a block shared
// by mistake, written while cached, evicted while held or reused too early
// shows up as a wrong row. The fake "model" samples a function of the
// sequence id and position only, so a preempted and recomputed sequence must
// generate exactly what it would have without preemption.
//
// Covered: configuration and request bounds; chunked prefill; decode rows
// first under the token budget; admission limits (max_num_seqs, blocks,
// first come first served); prefix sharing and its counters; the last
// prompt token always computed; preemption of the newest sequence and its
// recompute; cancellation (also mid-step); finish reasons; commit checks;
// an aborted step; and a seeded randomized run with the invariants checked
// after every step.
//
//===----------------------------------------------------------------------===//

#include "runtime/batch/scheduler.h"

#include <algorithm>
#include <functional>
#include <map>
#include <numeric>
#include <random>
#include <set>

#include "test/unit/kv_pool_checks.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace treni {
namespace {
using testing::ElementsAre;
using testing::HasSubstr;
using testing_util::expectPoolCountersConsistent;

/// The fake model's choice for token `index` of sequence `id`.
int32_t sampleFor(SequenceId id, int64_t index) {
  return int32_t((uint64_t(id) * 1000003u + uint64_t(index) * 7919u) % 50000u);
}

/// `count` tokens first, first + 1, ...
std::vector<int32_t> range(int32_t first, int64_t count) {
  std::vector<int32_t> tokens(count);
  std::iota(tokens.begin(), tokens.end(), first);
  return tokens;
}

std::vector<int32_t> concat(std::vector<int32_t> head,
                            const std::vector<int32_t> &tail) {
  head.insert(head.end(), tail.begin(), tail.end());
  return head;
}

/// What a sequence generates with no batching at all: sampled tokens until
/// `stopAt`, max new tokens or max_seq_len ends it.
struct Reference {
  std::vector<int32_t> generated;
  SequenceFinish reason;
};
Reference referenceRun(SequenceId id, int64_t promptLength,
                       int64_t maxNewTokens, int64_t maxSeqLen,
                       const std::function<bool(SequenceId, int64_t)> &stopAt) {
  Reference reference;
  for (int64_t index = promptLength;; ++index) {
    reference.generated.push_back(sampleFor(id, index));
    if (stopAt && stopAt(id, index)) {
      reference.reason = SequenceFinish::Stop;
      return reference;
    }
    if (int64_t(reference.generated.size()) >= maxNewTokens) {
      reference.reason = SequenceFinish::Length;
      return reference;
    }
    if (index >= maxSeqLen) {
      reference.reason = SequenceFinish::Context;
      return reference;
    }
  }
}

/// Stands in for the model runner: one token per KV row of the pool.
class FakeRunner {
public:
  explicit FakeRunner(const KvBlockPool &pool)
      : pool_(pool), rows_(pool.numBlocks() * kKvBlockTokens, -1) {}

  /// Computes `plan` (writes its rows, checks every row it reads) and
  /// samples its sampled rows.
  std::vector<SampledToken> run(const StepPlan &plan,
                                const Scheduler &scheduler) {
    std::vector<SampledToken> sampled;
    auto sample = [&](SequenceId id, int64_t lastPosition) {
      int64_t index = lastPosition + 1;
      sampled.push_back(
          {id, sampleFor(id, index), stopAt && stopAt(id, index)});
    };
    for (const DecodeRow &row : plan.decodes) {
      compute(scheduler, row.sequence, row.position,
              std::vector<int32_t>{row.token}, plan.blockTable(row.blockTable));
      sample(row.sequence, row.position);
    }
    for (const PrefillChunk &chunk : plan.prefills) {
      compute(scheduler, chunk.sequence, chunk.firstPosition, chunk.tokens,
              plan.blockTable(chunk.blockTable));
      if (chunk.samplesLast)
        sample(chunk.sequence,
               chunk.firstPosition + int64_t(chunk.tokens.size()) - 1);
    }
    return sampled;
  }

  /// Ends a sequence at token `index` (EOS or a stop string).
  std::function<bool(SequenceId, int64_t)> stopAt;

private:
  void compute(const Scheduler &scheduler, SequenceId id, int64_t first,
               const std::vector<int32_t> &tokens,
               absl::Span<const KvBlockId> table) {
    const Sequence *sequence = scheduler.find(id);
    ASSERT_NE(sequence, nullptr) << "sequence " << id;
    int64_t end = first + int64_t(tokens.size());
    ASSERT_EQ(int64_t(table.size()), kvBlocksFor(end)) << "sequence " << id;
    for (int64_t position = first; position < end; ++position) {
      KvBlockId block = table[position / kKvBlockTokens];
      EXPECT_EQ(tokens[position - first], sequence->tokens[position]);
      EXPECT_FALSE(pool_.isCached(block))
          << "sequence " << id << " writes cached block " << block;
      EXPECT_EQ(pool_.refCount(block), 1)
          << "sequence " << id << " writes shared block " << block;
      rows_[block * kKvBlockTokens + position % kKvBlockTokens] =
          tokens[position - first];
    }
    // Attention reads every row up to the last one computed.
    for (int64_t position = 0; position < end; ++position) {
      KvBlockId block = table[position / kKvBlockTokens];
      ASSERT_EQ(rows_[block * kKvBlockTokens + position % kKvBlockTokens],
                sequence->tokens[position])
          << "sequence " << id << " reads a wrong KV row at " << position;
    }
  }

  const KvBlockPool &pool_;
  std::vector<int32_t> rows_;
};

/// A pool, a scheduler over it and a fake runner.
struct Batch {
  Batch(const SchedulerConfig &config, int64_t numBlocks)
      : pool(numBlocks), scheduler(*Scheduler::create(config, pool)),
        runner(pool) {}

  /// Schedules, runs and commits one step; returns the plan.
  StepPlan step() {
    absl::StatusOr<StepPlan> plan = scheduler.schedule();
    EXPECT_TRUE(plan.ok()) << plan.status();
    std::vector<SampledToken> sampled = runner.run(*plan, scheduler);
    absl::StatusOr<std::vector<FinishedSequence>> done =
        scheduler.commit(*plan, sampled);
    EXPECT_TRUE(done.ok()) << done.status();
    for (FinishedSequence &sequence : *done)
      finished.emplace(sequence.id, std::move(sequence));
    expectPoolCountersConsistent(pool);
    return *std::move(plan);
  }
  /// Steps until nothing is held (at most `maxSteps`).
  void drain(int maxSteps = 10000) {
    for (int steps = 0; scheduler.hasWork() && steps < maxSteps; ++steps)
      step();
    EXPECT_FALSE(scheduler.hasWork());
  }

  KvBlockPool pool;
  Scheduler scheduler;
  FakeRunner runner;
  std::map<SequenceId, FinishedSequence> finished;
};

SchedulerConfig config(int64_t maxNumSeqs, int64_t maxBatchTokens,
                       int64_t prefillChunk, int64_t maxSeqLen) {
  return {maxNumSeqs, maxBatchTokens, prefillChunk, maxSeqLen};
}

//===----------------------------------------------------------------------===//
// Bounds
//===----------------------------------------------------------------------===//

// Tests that a configuration that could not schedule is refused with the
// setting named.
TEST(BatchScheduler, RejectsImpossibleConfigurations) {
  KvBlockPool pool(4);
  auto message = [&](const SchedulerConfig &bad) {
    absl::StatusOr<Scheduler> scheduler = Scheduler::create(bad, pool);
    EXPECT_EQ(scheduler.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(scheduler.status().message());
  };
  EXPECT_THAT(message(config(0, 16, 16, 64)), HasSubstr("max_num_seqs"));
  EXPECT_THAT(message(config(1, 0, 16, 64)), HasSubstr("max_batch_tokens"));
  EXPECT_THAT(message(config(1, 16, 0, 64)), HasSubstr("prefill_chunk"));
  EXPECT_THAT(message(config(1, 16, 16, -3)), HasSubstr("max_seq_len"));
  EXPECT_THAT(message(config(8, 4, 16, 64)),
              HasSubstr("max_batch_tokens (4) is below max_num_seqs (8)"));
  EXPECT_THAT(message(config(1, 16, 16, 257)),
              HasSubstr("holds 4 blocks of 64 tokens; one sequence of "
                        "max_seq_len 257 needs 5"));
  EXPECT_TRUE(Scheduler::create(config(1, 16, 16, 256), pool).ok());
}

// Tests that nonsense requests are refused with the problem named and leave
// nothing queued.
TEST(BatchScheduler, RejectsNonsenseRequests) {
  Batch batch(config(4, 64, 64, 128), 8);
  Scheduler &scheduler = batch.scheduler;
  auto expectInvalid = [](const absl::Status &status, const char *text) {
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(status.message(), HasSubstr(text));
  };
  expectInvalid(scheduler.add(1, {}, 4), "sequence 1: the prompt is empty");
  expectInvalid(scheduler.add(2, range(0, 128), 4),
                "the prompt has 128 tokens; max_seq_len is 128, so at most "
                "127 fit");
  expectInvalid(scheduler.add(3, range(0, 10), 0),
                "max new tokens must be >= 1, not 0");
  expectInvalid(scheduler.add(4, range(0, 10), -5),
                "max new tokens must be >= 1, not -5");
  expectInvalid(scheduler.add(5, {1, 2, -7}, 4),
                "prompt token 2 has the negative id -7");
  EXPECT_EQ(scheduler.numWaiting(), 0);

  ASSERT_TRUE(scheduler.add(6, range(0, 127), 4).ok());
  expectInvalid(scheduler.add(6, range(0, 3), 4),
                "sequence 6 is already queued or running");
  batch.step(); // running now: still a duplicate
  expectInvalid(scheduler.add(6, range(0, 3), 4), "already queued");
  EXPECT_EQ(scheduler.numRunning() + scheduler.numWaiting(), 1);
}

//===----------------------------------------------------------------------===//
// Steps
//===----------------------------------------------------------------------===//

// Tests that a prompt longer than the chunk is prefilled over several steps,
// only its last chunk sampled, then decoded one row a step until max new
// tokens, and that its full blocks end up in the prefix cache.
TEST(BatchScheduler, ChunksPromptThenDecodes) {
  Batch batch(config(4, 100, 64, 512), 16);
  ASSERT_TRUE(batch.scheduler.add(1, range(100, 150), 3).ok());

  struct Chunk {
    int64_t first, tokens, tableSize;
    bool samples;
  };
  for (Chunk expected : {Chunk{0, 64, 1, false}, Chunk{64, 64, 2, false},
                         Chunk{128, 22, 3, true}}) {
    StepPlan plan = batch.step();
    EXPECT_TRUE(plan.decodes.empty());
    ASSERT_EQ(plan.prefills.size(), 1u);
    const PrefillChunk &chunk = plan.prefills[0];
    EXPECT_EQ(chunk.firstPosition, expected.first);
    EXPECT_EQ(int64_t(chunk.tokens.size()), expected.tokens);
    EXPECT_EQ(chunk.blockTable.size, expected.tableSize);
    EXPECT_EQ(chunk.samplesLast, expected.samples);
  }
  for (int64_t position : {150, 151}) {
    StepPlan plan = batch.step();
    EXPECT_TRUE(plan.prefills.empty());
    ASSERT_EQ(plan.decodes.size(), 1u);
    EXPECT_EQ(plan.decodes[0].position, position);
    EXPECT_EQ(plan.decodes[0].token, sampleFor(1, position));
    EXPECT_EQ(plan.decodes[0].blockTable.size, 3);
  }
  ASSERT_EQ(batch.finished.count(1), 1u);
  const FinishedSequence &done = batch.finished.at(1);
  EXPECT_EQ(done.reason, SequenceFinish::Length);
  EXPECT_THAT(done.generated, ElementsAre(sampleFor(1, 150), sampleFor(1, 151),
                                          sampleFor(1, 152)));
  EXPECT_FALSE(batch.scheduler.hasWork());
  // Rows 0..151 were computed: two full blocks are cached, none is held.
  KvPoolStats stats = batch.pool.stats();
  EXPECT_EQ(stats.usedBlocks, 0);
  EXPECT_EQ(stats.cachedBlocks, 2);
  EXPECT_EQ(stats.evictableBlocks, 2);
}

// Tests that the decode rows of running sequences come first in every step
// and a long prompt takes only what is left of the token budget.
TEST(BatchScheduler, DecodesFirstThenPromptChunksWithinBudget) {
  Batch batch(config(4, 16, 64, 1024), 64);
  ASSERT_TRUE(batch.scheduler.add(1, range(0, 5), 100).ok());
  ASSERT_TRUE(batch.scheduler.add(2, range(50, 5), 100).ok());
  StepPlan first = batch.step();
  EXPECT_EQ(first.prefills.size(), 2u);
  ASSERT_TRUE(batch.scheduler.add(3, range(1000, 300), 2).ok());

  int64_t prefilled = 0, steps = 0;
  while (prefilled < 300) {
    StepPlan plan = batch.step();
    ++steps;
    EXPECT_LE(plan.numTokens(), 16);
    ASSERT_EQ(plan.decodes.size(), 2u) << "step " << steps;
    EXPECT_EQ(plan.decodes[0].sequence, 1);
    EXPECT_EQ(plan.decodes[1].sequence, 2);
    ASSERT_EQ(plan.prefills.size(), 1u);
    const PrefillChunk &chunk = plan.prefills[0];
    EXPECT_EQ(chunk.sequence, 3);
    EXPECT_EQ(chunk.firstPosition, prefilled);
    EXPECT_EQ(int64_t(chunk.tokens.size()),
              std::min<int64_t>(14, 300 - prefilled));
    prefilled += int64_t(chunk.tokens.size());
    EXPECT_EQ(chunk.samplesLast, prefilled == 300);
  }
  EXPECT_EQ(steps, 22); // 21 chunks of 14 tokens, then 6
  // Now three decode rows a step.
  EXPECT_EQ(batch.step().decodes.size(), 3u);
  EXPECT_EQ(batch.finished.count(3), 1u);
}

// Tests that no more than max_num_seqs run at once and the next waiting
// sequence is admitted as soon as one finishes.
TEST(BatchScheduler, AdmitsUpToMaxNumSeqs) {
  Batch batch(config(2, 64, 64, 256), 16);
  ASSERT_TRUE(batch.scheduler.add(1, range(0, 4), 1).ok());
  ASSERT_TRUE(batch.scheduler.add(2, range(10, 4), 5).ok());
  ASSERT_TRUE(batch.scheduler.add(3, range(20, 4), 5).ok());

  StepPlan plan = batch.step();
  ASSERT_EQ(plan.prefills.size(), 2u);
  EXPECT_EQ(plan.prefills[0].sequence, 1);
  EXPECT_EQ(plan.prefills[1].sequence, 2);
  EXPECT_EQ(batch.finished.count(1), 1u) << "one token, then length";
  EXPECT_EQ(batch.scheduler.numRunning(), 1);
  EXPECT_EQ(batch.scheduler.numWaiting(), 1);

  plan = batch.step();
  ASSERT_EQ(plan.decodes.size(), 1u);
  EXPECT_EQ(plan.decodes[0].sequence, 2);
  ASSERT_EQ(plan.prefills.size(), 1u);
  EXPECT_EQ(plan.prefills[0].sequence, 3);
  EXPECT_EQ(batch.scheduler.numRunning(), 2);
  batch.drain();
  EXPECT_EQ(batch.finished.size(), 3u);
}

// Tests that a sequence waits while the pool has no block for its first
// chunk, that the front of the queue is not overtaken by a smaller request,
// and that both are admitted once blocks come free.
TEST(BatchScheduler, AdmissionWaitsForBlocksFirstComeFirstServed) {
  Batch batch(config(4, 512, 256, 256), 4);
  ASSERT_TRUE(batch.scheduler.add(1, range(0, 200), 10).ok());  // 4 blocks
  ASSERT_TRUE(batch.scheduler.add(2, range(500, 100), 3).ok()); // 2 blocks
  ASSERT_TRUE(batch.scheduler.add(3, range(900, 10), 3).ok());  // 1 block
  for (int step = 0; step < 10; ++step) {
    StepPlan plan = batch.step();
    for (const PrefillChunk &chunk : plan.prefills)
      EXPECT_EQ(chunk.sequence, 1) << "step " << step;
    EXPECT_EQ(batch.scheduler.numWaiting(), 2) << "step " << step;
  }
  ASSERT_EQ(batch.finished.count(1), 1u);
  StepPlan plan = batch.step();
  ASSERT_EQ(plan.prefills.size(), 2u);
  EXPECT_EQ(plan.prefills[0].sequence, 2);
  EXPECT_EQ(plan.prefills[1].sequence, 3);
  batch.drain();
  EXPECT_EQ(batch.finished.size(), 3u);
}

//===----------------------------------------------------------------------===//
// Prefix cache
//===----------------------------------------------------------------------===//

// Tests that a second sequence whose prompt shares three full blocks with a
// running one holds the same three blocks (reference count 2), computes
// only its own tail into its own blocks, and is counted as a hit.
TEST(BatchScheduler, SharesCommonPrefixBlocks) {
  Batch batch(config(4, 512, 512, 1024), 32);
  std::vector<int32_t> common = range(0, 3 * kKvBlockTokens);
  ASSERT_TRUE(batch.scheduler.add(1, concat(common, range(5000, 20)), 50).ok());
  batch.step();
  ASSERT_TRUE(batch.scheduler.add(2, concat(common, range(7000, 30)), 50).ok());

  StepPlan plan = batch.step();
  ASSERT_EQ(plan.decodes.size(), 1u);
  ASSERT_EQ(plan.prefills.size(), 1u);
  const PrefillChunk &chunk = plan.prefills[0];
  EXPECT_EQ(chunk.sequence, 2);
  EXPECT_EQ(chunk.firstPosition, 3 * kKvBlockTokens);
  EXPECT_EQ(chunk.tokens.size(), 30u);
  EXPECT_TRUE(chunk.samplesLast);

  const Sequence *first = batch.scheduler.find(1);
  const Sequence *second = batch.scheduler.find(2);
  ASSERT_TRUE(first && second);
  ASSERT_EQ(first->blockTable.size(), 4u);
  ASSERT_EQ(second->blockTable.size(), 4u);
  for (int index = 0; index < 3; ++index) {
    EXPECT_EQ(first->blockTable[index], second->blockTable[index]);
    EXPECT_EQ(batch.pool.refCount(first->blockTable[index]), 2);
  }
  EXPECT_NE(first->blockTable[3], second->blockTable[3]);
  EXPECT_EQ(batch.pool.refCount(second->blockTable[3]), 1);
  EXPECT_EQ(second->cachedPromptTokens, 3 * kKvBlockTokens);
  EXPECT_EQ(first->cachedPromptTokens, 0);

  KvPoolStats stats = batch.pool.stats();
  EXPECT_EQ(stats.prefixQueries, 2);
  EXPECT_EQ(stats.prefixQueryTokens, 212 + 222);
  EXPECT_EQ(stats.prefixHitTokens, 192);

  batch.drain();
  EXPECT_EQ(batch.finished.at(2).cachedPromptTokens, 192);
  EXPECT_EQ(batch.pool.stats().usedBlocks, 0);
  Reference reference = referenceRun(2, 222, 50, 1024, nullptr);
  EXPECT_EQ(batch.finished.at(2).generated, reference.generated);
}

// Tests that with prefix caching off the same common prefix is computed
// again into blocks of the second sequence's own, nothing is cached, and the
// tokens are the same.
TEST(BatchScheduler, PrefixCachingOffSharesNothing) {
  SchedulerConfig off = config(4, 512, 512, 1024);
  off.prefixCaching = false;
  Batch batch(off, 32);
  std::vector<int32_t> common = range(0, 3 * kKvBlockTokens);
  ASSERT_TRUE(batch.scheduler.add(1, concat(common, range(5000, 20)), 50).ok());
  batch.step();
  ASSERT_TRUE(batch.scheduler.add(2, concat(common, range(7000, 30)), 50).ok());
  StepPlan plan = batch.step();
  ASSERT_EQ(plan.prefills.size(), 1u);
  EXPECT_EQ(plan.prefills[0].firstPosition, 0);
  const Sequence *first = batch.scheduler.find(1);
  const Sequence *second = batch.scheduler.find(2);
  ASSERT_TRUE(first && second);
  for (KvBlockId block : first->blockTable)
    EXPECT_EQ(batch.pool.refCount(block), 1);
  EXPECT_EQ(second->cachedPromptTokens, 0);
  EXPECT_EQ(batch.pool.stats().cachedBlocks, 0);
  EXPECT_EQ(batch.pool.stats().prefixHitTokens, 0);
  batch.drain();
  EXPECT_EQ(batch.pool.stats().usedBlocks, 0);
  EXPECT_EQ(batch.pool.stats().evictableBlocks, 0);
  Reference reference = referenceRun(2, 222, 50, 1024, nullptr);
  EXPECT_EQ(batch.finished.at(2).generated, reference.generated);
}

// Tests that the last prompt token is always computed: a prompt whose
// blocks are all cached recomputes its last block into a fresh one, and a
// prompt one token past its cached blocks starts with a decode row.
TEST(BatchScheduler, AlwaysComputesTheLastPromptToken) {
  Batch batch(config(4, 512, 512, 1024), 16);
  std::vector<int32_t> prompt = range(0, 2 * kKvBlockTokens);
  ASSERT_TRUE(batch.scheduler.add(1, prompt, 1).ok());
  batch.step();
  ASSERT_EQ(batch.pool.stats().cachedBlocks, 2);

  ASSERT_TRUE(batch.scheduler.add(2, prompt, 1).ok());
  StepPlan plan = batch.step();
  ASSERT_EQ(plan.prefills.size(), 1u);
  EXPECT_EQ(plan.prefills[0].firstPosition, kKvBlockTokens);
  EXPECT_EQ(int64_t(plan.prefills[0].tokens.size()), kKvBlockTokens);
  EXPECT_EQ(batch.finished.at(2).cachedPromptTokens, kKvBlockTokens);

  ASSERT_TRUE(batch.scheduler.add(3, concat(prompt, {42}), 1).ok());
  plan = batch.step();
  EXPECT_TRUE(plan.prefills.empty());
  ASSERT_EQ(plan.decodes.size(), 1u);
  EXPECT_EQ(plan.decodes[0].position, 2 * kKvBlockTokens);
  EXPECT_EQ(plan.decodes[0].token, 42);
  EXPECT_EQ(batch.finished.at(3).cachedPromptTokens, 2 * kKvBlockTokens);
  EXPECT_THAT(batch.finished.at(3).generated,
              ElementsAre(sampleFor(3, 2 * kKvBlockTokens + 1)));
}

//===----------------------------------------------------------------------===//
// Preemption, cancellation, finishing
//===----------------------------------------------------------------------===//

// Tests that when a decode needs a block and none is left, the newest
// running sequence is preempted (blocks released, tokens kept, front of the
// queue), and that once readmitted it recomputes prompt + generated tokens
// and generates exactly what a run without preemption generates.
TEST(BatchScheduler, PreemptsNewestAndRecomputesSameTokens) {
  Batch batch(config(4, 256, 256, 256), 4);
  ASSERT_TRUE(batch.scheduler.add(1, range(0, 100), 100).ok());
  ASSERT_TRUE(batch.scheduler.add(2, range(3000, 100), 100).ok());
  ASSERT_TRUE(batch.scheduler.add(3, range(6000, 10), 5).ok()); // no block
  batch.step();
  EXPECT_EQ(batch.pool.stats().usedBlocks, 4);
  EXPECT_EQ(batch.scheduler.numWaiting(), 1);

  StepPlan plan;
  int steps = 0;
  do {
    plan = batch.step();
    ++steps;
  } while (plan.preempted.empty() && steps < 100);
  ASSERT_THAT(plan.preempted, ElementsAre(2));
  // Sequence 1 crossed into its third block at position 128.
  ASSERT_EQ(plan.decodes.size(), 1u);
  EXPECT_EQ(plan.decodes[0].sequence, 1);
  EXPECT_EQ(plan.decodes[0].position, 128);
  const Sequence *victim = batch.scheduler.find(2);
  ASSERT_NE(victim, nullptr);
  EXPECT_FALSE(victim->running);
  EXPECT_TRUE(victim->blockTable.empty());
  EXPECT_EQ(victim->numComputed, 0);
  EXPECT_EQ(victim->numTokens(), 129) << "generated tokens are kept";
  EXPECT_THAT(batch.scheduler.waiting(),
              ElementsAre(victim, batch.scheduler.find(3)))
      << "the preempted sequence goes first";
  EXPECT_EQ(batch.scheduler.numPreemptions(), 1);

  batch.drain();
  ASSERT_EQ(batch.finished.size(), 3u);
  for (SequenceId id : {1, 2}) {
    Reference reference = referenceRun(id, 100, 100, 256, nullptr);
    EXPECT_EQ(batch.finished.at(id).generated, reference.generated);
    EXPECT_EQ(batch.finished.at(id).reason, reference.reason);
  }
  EXPECT_GE(batch.finished.at(2).numPreemptions, 1);
  EXPECT_EQ(batch.finished.at(1).numPreemptions, 0);
}

// Tests that cancelling a running or waiting sequence releases its blocks
// at once, that a cancellation between schedule() and commit() drops that
// sequence's result, and that unknown ids are NotFound.
TEST(BatchScheduler, CancelReleasesBlocks) {
  Batch batch(config(2, 512, 512, 512), 16);
  ASSERT_TRUE(batch.scheduler.add(1, range(0, 150), 100).ok());
  ASSERT_TRUE(batch.scheduler.add(2, range(1000, 70), 100).ok());
  ASSERT_TRUE(batch.scheduler.add(3, range(2000, 10), 100).ok());
  batch.step();
  EXPECT_EQ(batch.pool.stats().usedBlocks, 5);

  ASSERT_TRUE(batch.scheduler.cancel(1).ok());
  EXPECT_EQ(batch.pool.stats().usedBlocks, 2);
  EXPECT_EQ(batch.scheduler.find(1), nullptr);
  ASSERT_TRUE(batch.scheduler.cancel(3).ok()); // waiting
  EXPECT_EQ(batch.scheduler.numWaiting(), 0);
  EXPECT_EQ(batch.scheduler.cancel(3).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(batch.scheduler.cancel(99).code(), absl::StatusCode::kNotFound);

  ASSERT_TRUE(batch.scheduler.add(4, range(3000, 10), 100).ok());
  absl::StatusOr<StepPlan> plan = batch.scheduler.schedule();
  ASSERT_TRUE(plan.ok());
  std::vector<SampledToken> sampled = batch.runner.run(*plan, batch.scheduler);
  ASSERT_EQ(sampled.size(), 2u);
  ASSERT_TRUE(batch.scheduler.cancel(2).ok()); // the client went away mid-step
  EXPECT_EQ(batch.pool.stats().usedBlocks, 1);
  ASSERT_TRUE(batch.scheduler.commit(*plan, sampled).ok());
  const Sequence *fourth = batch.scheduler.find(4);
  ASSERT_NE(fourth, nullptr);
  EXPECT_EQ(fourth->numGenerated(), 1);
  ASSERT_TRUE(batch.scheduler.cancel(4).ok());
  EXPECT_EQ(batch.pool.stats().usedBlocks, 0);
  EXPECT_FALSE(batch.scheduler.hasWork());
  expectPoolCountersConsistent(batch.pool);
}

// Tests the three finish reasons: the caller's stop (its token kept), max
// new tokens, and max_seq_len reached.
TEST(BatchScheduler, FinishReasons) {
  Batch batch(config(4, 512, 512, 70), 4);
  batch.runner.stopAt = [](SequenceId id, int64_t index) {
    return id == 1 && index == 13;
  };
  ASSERT_TRUE(batch.scheduler.add(1, range(0, 10), 100).ok());
  ASSERT_TRUE(batch.scheduler.add(2, range(0, 10), 2).ok());
  ASSERT_TRUE(batch.scheduler.add(3, range(0, 60), 100).ok());
  batch.drain();
  ASSERT_EQ(batch.finished.size(), 3u);
  EXPECT_EQ(batch.finished.at(1).reason, SequenceFinish::Stop);
  EXPECT_EQ(batch.finished.at(1).generated.size(), 4u);
  EXPECT_EQ(batch.finished.at(1).generated.back(), sampleFor(1, 13));
  EXPECT_EQ(batch.finished.at(2).reason, SequenceFinish::Length);
  EXPECT_EQ(batch.finished.at(2).generated.size(), 2u);
  // Tokens 60..70 are sampled; feeding token 70 would need position 70.
  EXPECT_EQ(batch.finished.at(3).reason, SequenceFinish::Context);
  EXPECT_EQ(batch.finished.at(3).generated.size(), 11u);
  EXPECT_STREQ(toString(SequenceFinish::Context), "context");
}

//===----------------------------------------------------------------------===//
// The step protocol
//===----------------------------------------------------------------------===//

// Tests that commit() refuses results that do not match the outstanding
// plan without changing anything, that a second schedule() must wait for the
// commit, and that a committed plan cannot be committed again.
TEST(BatchScheduler, CommitChecksTheOutstandingPlan) {
  Batch batch(config(4, 512, 512, 512), 8);
  ASSERT_TRUE(batch.scheduler.add(1, range(0, 10), 5).ok());
  ASSERT_TRUE(batch.scheduler.add(2, range(20, 10), 5).ok());
  absl::StatusOr<StepPlan> plan = batch.scheduler.schedule();
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(batch.scheduler.schedule().status().code(),
            absl::StatusCode::kFailedPrecondition);

  std::vector<SampledToken> good = {{1, 7}, {2, 8}};
  auto code = [&](std::vector<SampledToken> sampled) {
    return batch.scheduler.commit(*plan, sampled).status().code();
  };
  EXPECT_EQ(code({{1, 7}}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({{2, 7}, {1, 8}}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({{1, 7}, {2, -1}}), absl::StatusCode::kInvalidArgument);
  StepPlan stale = *plan;
  stale.step += 1;
  EXPECT_EQ(batch.scheduler.commit(stale, good).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(batch.scheduler.find(1)->numComputed, 0);
  EXPECT_EQ(batch.scheduler.find(1)->numTokens(), 10);

  ASSERT_TRUE(batch.scheduler.commit(*plan, good).ok());
  EXPECT_EQ(batch.scheduler.find(1)->numComputed, 10);
  EXPECT_EQ(batch.scheduler.find(1)->tokens.back(), 7);
  EXPECT_EQ(batch.scheduler.commit(*plan, good).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // An empty plan is committed like any other.
  Batch idle(config(1, 8, 8, 64), 1);
  absl::StatusOr<StepPlan> empty = idle.scheduler.schedule();
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
  EXPECT_TRUE(idle.scheduler.commit(*empty, {}).ok());
}

// Tests that an aborted step releases the blocks it allocated and that its
// work is scheduled again.
TEST(BatchScheduler, AbortedStepIsScheduledAgain) {
  Batch batch(config(4, 512, 512, 512), 8);
  ASSERT_TRUE(batch.scheduler.add(1, range(0, 100), 5).ok());
  absl::StatusOr<StepPlan> plan = batch.scheduler.schedule();
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(batch.pool.stats().usedBlocks, 2);
  ASSERT_TRUE(batch.scheduler.abortStep(*plan).ok());
  EXPECT_EQ(batch.pool.stats().usedBlocks, 0);
  EXPECT_EQ(batch.scheduler.abortStep(*plan).code(),
            absl::StatusCode::kFailedPrecondition);

  StepPlan again = batch.step();
  ASSERT_EQ(again.prefills.size(), 1u);
  EXPECT_EQ(again.prefills[0].firstPosition, 0);
  EXPECT_EQ(again.prefills[0].tokens, plan->prefills[0].tokens);
  batch.drain();
  EXPECT_EQ(batch.finished.at(1).generated,
            referenceRun(1, 100, 5, 512, nullptr).generated);
}

//===----------------------------------------------------------------------===//
// Randomized
//===----------------------------------------------------------------------===//

/// Every block is held by exactly as many tables as its reference count; a
/// block in two tables is a cached one; running tables cover exactly the
/// computed rows; waiting sequences hold nothing; every token list is its
/// prompt followed by the fake model's samples.
void expectInvariants(
    const Scheduler &scheduler, const KvBlockPool &pool,
    const std::map<SequenceId, std::vector<int32_t>> &prompts) {
  std::vector<int32_t> holders(pool.numBlocks(), 0);
  auto checkTokens = [&](const Sequence &sequence) {
    const std::vector<int32_t> &prompt = prompts.at(sequence.id);
    ASSERT_GE(sequence.tokens.size(), prompt.size());
    EXPECT_TRUE(
        std::equal(prompt.begin(), prompt.end(), sequence.tokens.begin()))
        << "sequence " << sequence.id << "'s prompt changed";
    for (int64_t index = sequence.promptLength; index < sequence.numTokens();
         ++index)
      EXPECT_EQ(sequence.tokens[index], sampleFor(sequence.id, index))
          << "sequence " << sequence.id << " token " << index;
    EXPECT_LE(sequence.numGenerated(), sequence.maxNewTokens);
  };
  for (const Sequence *sequence : scheduler.running()) {
    checkTokens(*sequence);
    EXPECT_TRUE(sequence->running);
    EXPECT_GE(sequence->numUncomputed(), 1);
    EXPECT_EQ(int64_t(sequence->blockTable.size()),
              kvBlocksFor(sequence->numComputed))
        << "sequence " << sequence->id;
    EXPECT_EQ(int64_t(sequence->blockHashes.size()),
              sequence->numComputed / kKvBlockTokens);
    std::vector<KvBlockId> sorted = sequence->blockTable;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end())
        << "sequence " << sequence->id << " holds a block twice";
    for (KvBlockId block : sequence->blockTable)
      ++holders[block];
  }
  EXPECT_LE(scheduler.numRunning(), scheduler.config().maxNumSeqs);
  for (const Sequence *sequence : scheduler.waiting()) {
    checkTokens(*sequence);
    EXPECT_FALSE(sequence->running);
    EXPECT_TRUE(sequence->blockTable.empty());
    EXPECT_EQ(sequence->numComputed, 0);
  }
  for (KvBlockId block = 0; block < pool.numBlocks(); ++block) {
    EXPECT_EQ(pool.refCount(block), holders[block]) << "block " << block;
    if (holders[block] > 1)
      EXPECT_TRUE(pool.isCached(block))
          << "private block " << block << " is in " << holders[block]
          << " tables";
  }
  expectPoolCountersConsistent(pool);
}

// Tests thousands of steps with random arrivals (prompts that often share
// prefixes), lengths, stops and cancellations (some mid-step) over a pool
// small enough to preempt and evict often, checking the invariants after
// every step; then that every sequence finished or was cancelled and that
// every finished one generated what it would have alone.
TEST(BatchScheduler, RandomizedStressKeepsInvariants) {
  const SchedulerConfig settings = config(6, 64, 32, 256);
  Batch batch(settings, 16);
  std::mt19937 random(20240515);
  auto uniform = [&](int64_t low, int64_t high) {
    return std::uniform_int_distribution<int64_t>(low, high)(random);
  };
  auto stopAt = [](SequenceId id, int64_t index) {
    return (uint64_t(id) * 2654435761u + uint64_t(index) * 40503u) % 97 == 0;
  };
  batch.runner.stopAt = stopAt;
  // A few shared prefixes of up to three full blocks each.
  std::vector<std::vector<int32_t>> prefixes;
  for (int index = 0; index < 4; ++index)
    prefixes.push_back(range(100000 * (index + 1), 3 * kKvBlockTokens));

  std::map<SequenceId, std::vector<int32_t>> prompts;
  std::map<SequenceId, int64_t> maxNew;
  std::set<SequenceId> cancelled;
  SequenceId nextId = 1;
  auto held = [&] {
    std::vector<SequenceId> ids;
    for (const Sequence *sequence : batch.scheduler.running())
      ids.push_back(sequence->id);
    for (const Sequence *sequence : batch.scheduler.waiting())
      ids.push_back(sequence->id);
    return ids;
  };
  auto cancelOne = [&] {
    std::vector<SequenceId> ids = held();
    if (ids.empty())
      return;
    SequenceId id = ids[uniform(0, int64_t(ids.size()) - 1)];
    ASSERT_TRUE(batch.scheduler.cancel(id).ok());
    cancelled.insert(id);
  };

  const int kArrivalSteps = 4000;
  for (int step = 0; step < kArrivalSteps || batch.scheduler.hasWork();
       ++step) {
    ASSERT_LT(step, kArrivalSteps + 20000) << "sequences never finish";
    if (step < kArrivalSteps && uniform(0, 9) < 3 && held().size() < 24) {
      std::vector<int32_t> prompt;
      if (uniform(0, 3) > 0) { // most prompts share a prefix
        const std::vector<int32_t> &prefix = prefixes[uniform(0, 3)];
        prompt.assign(prefix.begin(),
                      prefix.begin() + uniform(1, int64_t(prefix.size())));
      }
      for (int64_t tail = uniform(1, 60); tail > 0; --tail)
        prompt.push_back(int32_t(uniform(0, 30000)));
      prompt.resize(std::min<size_t>(prompt.size(), settings.maxSeqLen - 1));
      SequenceId id = nextId++;
      int64_t newTokens = uniform(1, 80);
      ASSERT_TRUE(batch.scheduler.add(id, prompt, newTokens).ok());
      prompts[id] = prompt;
      maxNew[id] = newTokens;
    }
    if (step < kArrivalSteps && uniform(0, 99) < 3)
      cancelOne();

    std::vector<SequenceId> decodeReady;
    for (const Sequence *sequence : batch.scheduler.running())
      if (sequence->numUncomputed() == 1)
        decodeReady.push_back(sequence->id);
    bool hadWork = batch.scheduler.hasWork();

    absl::StatusOr<StepPlan> plan = batch.scheduler.schedule();
    ASSERT_TRUE(plan.ok()) << plan.status();
    EXPECT_LE(plan->numTokens(), settings.maxBatchTokens);
    EXPECT_EQ(hadWork, !plan->empty()) << "step " << step;
    for (SequenceId id : decodeReady) {
      bool decoded =
          std::any_of(plan->decodes.begin(), plan->decodes.end(),
                      [&](const DecodeRow &row) { return row.sequence == id; });
      bool preempted =
          std::count(plan->preempted.begin(), plan->preempted.end(), id) > 0;
      EXPECT_TRUE(decoded != preempted)
          << "step " << step << ": sequence " << id << " was ready to decode";
    }
    std::vector<SampledToken> sampled =
        batch.runner.run(*plan, batch.scheduler);
    if (step < kArrivalSteps && uniform(0, 99) < 2)
      cancelOne(); // the client leaves while the step runs
    absl::StatusOr<std::vector<FinishedSequence>> done =
        batch.scheduler.commit(*plan, sampled);
    ASSERT_TRUE(done.ok()) << done.status();
    for (FinishedSequence &sequence : *done)
      batch.finished.emplace(sequence.id, std::move(sequence));

    expectInvariants(batch.scheduler, batch.pool, prompts);
    if (::testing::Test::HasFailure())
      FAIL() << "invariant broken after step " << step;
  }

  ASSERT_EQ(int64_t(batch.finished.size() + cancelled.size()), nextId - 1);
  for (const auto &[id, sequence] : batch.finished) {
    EXPECT_EQ(cancelled.count(id), 0u);
    Reference reference =
        referenceRun(id, int64_t(prompts.at(id).size()), maxNew.at(id),
                     settings.maxSeqLen, stopAt);
    EXPECT_EQ(sequence.generated, reference.generated) << "sequence " << id;
    EXPECT_EQ(sequence.reason, reference.reason) << "sequence " << id;
  }
  KvPoolStats stats = batch.pool.stats();
  EXPECT_EQ(stats.usedBlocks, 0);
  // The run exercised what it is meant to.
  EXPECT_GT(batch.scheduler.numPreemptions(), 10);
  EXPECT_GT(stats.evictions, 10);
  EXPECT_GT(stats.prefixHitTokens, 10 * kKvBlockTokens);
  EXPECT_GT(cancelled.size(), 10u);
  EXPECT_GT(batch.finished.size(), 100u);
}

} // namespace
} // namespace treni
