//===- cpu_batched_step_test.cpp - @step over rows of several sequences --===//
//
// CpuExecutor::step runs one engine step of continuous batching: rows of any
// sequences (decode rows and prefill chunks), each writing and reading its KV
// rows through its own block table, with logits for every row. Every CPU
// kernel computes a row from that row alone (and the KV rows it reads), so
// a row's logits must equal those of the same row computed by a prefill of
// its sequence alone on a contiguous executor, to rounding: @step's
// attention is the split-KV kind (treni-specialize-seq1-attention), which
// sums in another order than @prefill's (a relative error of 1e-5 at most).
// The order of a step's rows changes nothing, bit for bit. Bad steps are
// refused before anything runs.
//
//===----------------------------------------------------------------------===//

#include <algorithm>
#include <map>
#include <numeric>

#include "runtime/batch/scheduler.h"
#include "runtime/exec/cpu_executor.h"
#include "test/unit/fixture_plans.h"
#include "test/unit/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace treni {
namespace {
using testing::HasSubstr;
using testing_util::compileFixturePlan;
using testing_util::fixtureDir;
using testing_util::fixtureTokens;
using testing_util::makeContiguous;
using testing_util::makePaged;
using testing_util::messageOf;
using testing_util::relativeError;
using testing_util::usesTemplate;

using Logits = std::vector<float>;

/// The plan without the fusions that change @step's kernels: cache_write and
/// the generic attention instead of the fused q/k/v kernel.
const std::vector<std::string> kUnfused = {"treni-fuse-qkv-split-bias",
                                           "treni-specialize-seq1-attention",
                                           "treni-specialize-flash-attention"};

/// Row `row` of a step's rows x vocab logits.
Logits rowOf(const std::vector<float> &logits, int64_t row, int64_t vocab) {
  return Logits(logits.begin() + row * vocab,
                logits.begin() + (row + 1) * vocab);
}

/// A sequence computed alone on a contiguous executor of its own: the
/// reference each step row is compared with.
class Alone {
public:
  Alone(const Plan &plan, const std::string &dir)
      : executor_(makeContiguous(plan, dir)) {}

  /// The logits of position `position` of `tokens` (its rows before
  /// `chunkStart` computed by earlier calls, those from `chunkStart` on by
  /// this one): the last row of a prefill of tokens[chunkStart..position].
  /// Positions this reference has not computed yet before `chunkStart` (a
  /// prefix another sequence computed in the batch) are prefilled first.
  Logits logitsAt(const std::vector<int32_t> &tokens, int64_t chunkStart,
                  int64_t position) {
    if (computed_ < chunkStart) {
      std::vector<int32_t> gap(tokens.begin() + computed_,
                               tokens.begin() + chunkStart);
      EXPECT_TRUE(executor_->prefill(gap, computed_).ok());
    }
    std::vector<int32_t> chunk(tokens.begin() + chunkStart,
                               tokens.begin() + position + 1);
    auto logits = executor_->prefill(chunk, chunkStart);
    EXPECT_TRUE(logits.ok()) << logits.status();
    computed_ = std::max(computed_, position + 1);
    return logits.value_or(Logits{});
  }

private:
  std::unique_ptr<CpuExecutor> executor_;
  int64_t computed_ = 0;
};

/// One step's rows as CpuExecutor::step takes them.
struct StepRows {
  std::vector<int32_t> ids, positions, rowTables;
  std::vector<KvBlockId> blockTables;

  /// Appends rows for tokens[first, first + count) of a sequence whose
  /// table is `table` (appended once, shared by the rows).
  void add(const std::vector<int32_t> &tokens, int64_t first, int64_t count,
           const std::vector<KvBlockId> &table) {
    int32_t offset = int32_t(blockTables.size());
    blockTables.insert(blockTables.end(), table.begin(), table.end());
    for (int64_t p = first; p < first + count; ++p) {
      ids.push_back(tokens[p]);
      positions.push_back(int32_t(p));
      rowTables.push_back(offset);
    }
  }
  int64_t size() const { return int64_t(ids.size()); }
};

class BatchedStepTest : public testing::TestWithParam<std::string> {
protected:
  std::string dir() const { return fixtureDir(GetParam()); }
};

// Tests that six sequences of different prompt lengths, admitted at
// different steps and advanced together (prefill chunks of 1 to 4 tokens
// beside decode rows of the sequences already sampling, greedy tokens fed
// back), on blocks of 4 rows handed out in a scattered order as they grow,
// give every row the logits of its sequence computed alone (to rounding): the
// sampled rows and the inner rows of each chunk; for the default plan (fused
// q/k/v + cache write) and the unfused one (cache_write, generic attention).
TEST_P(BatchedStepTest, RowsMatchTheSequenceRunAlone) {
  Plan fused = compileFixturePlan(dir());
  Plan unfused = compileFixturePlan(dir(), kUnfused);
  ASSERT_TRUE(usesTemplate(unfused, "cache_write", "step"));
  ASSERT_FALSE(usesTemplate(fused, "cache_write", "step"));
  // The flash kernel is for one sequence: @step's rows each have the
  // split-KV one.
  ASSERT_TRUE(usesTemplate(fused, "attention_seq1_partial", "step"));
  ASSERT_FALSE(usesTemplate(fused, "attention_flash", "step"));
  const int64_t blockTokens = 4, poolBlocks = 48, newTokens = 5;
  const std::vector<int64_t> promptLengths = {1, 3, 7, 12, 18, 25};

  for (const Plan *plan : {&fused, &unfused}) {
    SCOPED_TRACE(plan == &fused ? "fused plan" : "unfused plan");
    auto executor = makePaged(*plan, dir(), poolBlocks, blockTokens);
    ASSERT_TRUE(executor);
    const int64_t vocab = executor->vocabSize();
    struct Sequence {
      std::vector<int32_t> tokens;
      int64_t promptLength, computed = 0, chunk, admittedAt;
      std::vector<KvBlockId> table;
      std::unique_ptr<Alone> alone;
      bool done() const {
        return int64_t(tokens.size()) >= promptLength + newTokens &&
               computed == int64_t(tokens.size());
      }
    };
    std::vector<Sequence> sequences;
    for (size_t s = 0; s < promptLengths.size(); ++s)
      sequences.push_back({fixtureTokens(promptLengths[s], int32_t(s + 20)),
                           promptLengths[s],
                           0,
                           int64_t(1 + s % 4),
                           int64_t(s / 2),
                           {},
                           std::make_unique<Alone>(*plan, dir())});
    int64_t nextBlock = 0, mixedSteps = 0, rowsChecked = 0;

    for (int64_t step = 0; step < 40; ++step) {
      // Decode rows first, then chunks, as StepPlan orders them.
      StepRows rows;
      struct Part {
        Sequence *sequence;
        int64_t first, count;
      };
      std::vector<Part> parts;
      bool decodes = false, chunks = false;
      for (bool decoding : {true, false})
        for (Sequence &sequence : sequences) {
          if (step < sequence.admittedAt || sequence.done())
            continue;
          int64_t left = int64_t(sequence.tokens.size()) - sequence.computed;
          bool isDecode = sequence.computed >= sequence.promptLength;
          if (isDecode != decoding)
            continue;
          int64_t count = isDecode ? 1 : std::min(sequence.chunk, left);
          // Blocks come from a scattered walk over the pool.
          while (int64_t(sequence.table.size()) * blockTokens <
                 sequence.computed + count)
            sequence.table.push_back(
                KvBlockId((nextBlock++ * 29 + 5) % poolBlocks));
          rows.add(sequence.tokens, sequence.computed, count, sequence.table);
          parts.push_back({&sequence, sequence.computed, count});
          (isDecode ? decodes : chunks) = true;
        }
      if (parts.empty())
        break;
      mixedSteps += decodes && chunks;
      auto logits = executor->step(rows.ids, rows.positions, rows.blockTables,
                                   rows.rowTables);
      ASSERT_TRUE(logits.ok()) << logits.status();
      ASSERT_EQ(int64_t(logits->size()), rows.size() * vocab);

      int64_t row = 0;
      for (const Part &part : parts) {
        Sequence &sequence = *part.sequence;
        Logits last;
        for (int64_t i = 0; i < part.count; ++i, ++row) {
          int64_t position = part.first + i;
          Logits expected =
              sequence.alone->logitsAt(sequence.tokens, part.first, position);
          last = rowOf(*logits, row, vocab);
          ASSERT_LE(relativeError(last, expected), 1e-5)
              << "step " << step << ", sequence of " << sequence.promptLength
              << " prompt tokens, position " << position;
          ++rowsChecked;
        }
        sequence.computed += part.count;
        if (sequence.computed == int64_t(sequence.tokens.size()) &&
            int64_t(sequence.tokens.size()) < sequence.promptLength + newTokens)
          sequence.tokens.push_back(argmax(last));
      }
    }
    for (const Sequence &sequence : sequences)
      EXPECT_TRUE(sequence.done())
          << "sequence of " << sequence.promptLength << " prompt tokens";
    EXPECT_GT(mixedSteps, 3) << "steps with decode rows and prefill chunks";
    EXPECT_GE(nextBlock, int64_t(sequences.size() * 2));
    EXPECT_GT(rowsChecked, 90);
  }
}

// Tests that the scheduler's step plans run as they are: decode rows, chunks
// and back-to-back block tables of 64-row blocks (two prompts share a full
// cached block, so one sequence's table starts with a block another
// sequence computed), and every row gives its sequence's logits computed
// alone; greedy tokens go back through commit() until every request ends.
TEST_P(BatchedStepTest, SchedulerPlansRunAsTheyAre) {
  Plan plan = compileFixturePlan(dir());
  const int64_t poolBlocks = 16;
  KvBlockPool pool(poolBlocks);
  SchedulerConfig config;
  config.maxNumSeqs = 4;
  config.maxBatchTokens = 40;
  config.prefillChunk = 24;
  config.maxSeqLen = 256;
  auto scheduler = Scheduler::create(config, pool);
  ASSERT_TRUE(scheduler.ok()) << scheduler.status();
  auto executor = makePaged(plan, dir(), poolBlocks, kKvBlockTokens);
  ASSERT_TRUE(executor);
  const int64_t vocab = executor->vocabSize();

  std::vector<int32_t> shared = fixtureTokens(kKvBlockTokens, 40);
  std::map<SequenceId, std::vector<int32_t>> prompts = {
      {1, fixtureTokens(70, 41)},
      {2, fixtureTokens(5, 42)},
      {3, fixtureTokens(130, 43)},
  };
  prompts[4] = shared;
  prompts[4].push_back(7);
  prompts[5] = shared;
  prompts[5].insert(prompts[5].end(), {9, 11, 13});
  std::map<SequenceId, std::vector<int32_t>> tokens = prompts;
  std::map<SequenceId, std::unique_ptr<Alone>> alone;
  for (const auto &[id, prompt] : prompts) {
    // Sequence 5 comes once sequence 4's first block is computed (and so
    // cached): it starts from that block.
    if (id != 5) {
      ASSERT_TRUE(scheduler->add(id, prompt, 4).ok());
    }
    alone[id] = std::make_unique<Alone>(plan, dir());
  }
  bool added5 = false;

  int64_t steps = 0, finished = 0;
  for (; scheduler->hasWork() && steps < 60; ++steps) {
    auto planned = scheduler->schedule();
    ASSERT_TRUE(planned.ok()) << planned.status();
    const StepPlan &step = *planned;
    StepRows rows;
    rows.blockTables = step.blockTables;
    for (const DecodeRow &decode : step.decodes) {
      rows.ids.push_back(decode.token);
      rows.positions.push_back(int32_t(decode.position));
      rows.rowTables.push_back(int32_t(decode.blockTable.offset));
    }
    for (const PrefillChunk &chunk : step.prefills)
      for (size_t i = 0; i < chunk.tokens.size(); ++i) {
        rows.ids.push_back(chunk.tokens[i]);
        rows.positions.push_back(int32_t(chunk.firstPosition + i));
        rows.rowTables.push_back(int32_t(chunk.blockTable.offset));
      }
    std::vector<SampledToken> sampled;
    if (rows.size() > 0) {
      auto logits = executor->step(rows.ids, rows.positions, rows.blockTables,
                                   rows.rowTables);
      ASSERT_TRUE(logits.ok()) << logits.status();
      int64_t row = 0;
      for (const DecodeRow &decode : step.decodes) {
        std::vector<int32_t> &sequence = tokens[decode.sequence];
        ASSERT_EQ(sequence.back(), decode.token);
        Logits got = rowOf(*logits, row++, vocab);
        ASSERT_LE(
            relativeError(got, alone[decode.sequence]->logitsAt(
                                   sequence, decode.position, decode.position)),
            1e-5)
            << "decode row of sequence " << decode.sequence;
        sampled.push_back({decode.sequence, argmax(got)});
      }
      for (const PrefillChunk &chunk : step.prefills) {
        const std::vector<int32_t> &sequence = tokens[chunk.sequence];
        Logits got;
        for (size_t i = 0; i < chunk.tokens.size(); ++i) {
          got = rowOf(*logits, row++, vocab);
          ASSERT_LE(relativeError(got, alone[chunk.sequence]->logitsAt(
                                           sequence, chunk.firstPosition,
                                           chunk.firstPosition + i)),
                    1e-5)
              << "chunk row " << i << " of sequence " << chunk.sequence;
        }
        if (chunk.samplesLast)
          sampled.push_back({chunk.sequence, argmax(got)});
      }
    }
    auto done = scheduler->commit(step, sampled);
    ASSERT_TRUE(done.ok()) << done.status();
    for (const SampledToken &token : sampled)
      tokens[token.sequence].push_back(token.token);
    finished += done->size();
    const Sequence *owner = scheduler->find(4);
    if (!added5 && (!owner || owner->numComputed >= kKvBlockTokens)) {
      ASSERT_TRUE(scheduler->add(5, prompts[5], 4).ok());
      added5 = true;
    }
  }
  EXPECT_EQ(finished, 5);
  EXPECT_EQ(pool.stats().prefixHitTokens, kKvBlockTokens)
      << "sequence 5 starts from sequence 4's block";
}

// Tests that a step of one row (a decode row) gives @decode's logits to
// rounding (split-KV attention sums in another order), over a prompt
// prefilled by steps, on scattered blocks.
TEST_P(BatchedStepTest, OneRowMatchesDecode) {
  Plan plan = compileFixturePlan(dir());
  ASSERT_TRUE(usesTemplate(plan, "attention_seq1_partial", "decode"));
  std::vector<int32_t> prompt = fixtureTokens(9, 50),
                       decodes = fixtureTokens(6, 51);
  auto reference = makeContiguous(plan, dir());
  auto executor = makePaged(plan, dir(), 8, 4);
  ASSERT_TRUE(reference && executor);
  std::vector<KvBlockId> table = {6, 2, 7, 0};
  StepRows rows;
  rows.add(prompt, 0, prompt.size(), table);
  auto chunk = executor->step(rows.ids, rows.positions, rows.blockTables,
                              rows.rowTables);
  ASSERT_TRUE(chunk.ok()) << chunk.status();
  auto prefill = reference->prefill(prompt, 0);
  ASSERT_TRUE(prefill.ok());
  EXPECT_LE(
      relativeError(rowOf(*chunk, prompt.size() - 1, executor->vocabSize()),
                    *prefill),
      1e-5);

  for (size_t i = 0; i < decodes.size(); ++i) {
    int32_t position = int32_t(prompt.size() + i);
    std::vector<int32_t> id = {decodes[i]}, positions = {position},
                         rowTables = {0};
    auto got = executor->step(id, positions, table, rowTables);
    auto expected = reference->decode(decodes[i], position);
    ASSERT_TRUE(got.ok() && expected.ok()) << got.status();
    EXPECT_LE(relativeError(*got, *expected), 1e-5) << "position " << position;
  }
}

// Tests that a step over a contiguous executor (all rows one sequence,
// position p in cache row p) gives each row the logits of a prefill ending at
// that row, and that a second step continues the sequence as a prefill
// chunk from there would.
TEST_P(BatchedStepTest, ContiguousRowsOfOneSequence) {
  Plan plan = compileFixturePlan(dir());
  std::vector<int32_t> ids = fixtureTokens(11, 60);
  const int64_t first = 8;
  auto executor = makeContiguous(plan, dir());
  auto reference = makeContiguous(plan, dir());
  ASSERT_TRUE(executor && reference);
  const int64_t vocab = executor->vocabSize();

  std::vector<int32_t> positions(first);
  std::iota(positions.begin(), positions.end(), 0);
  auto logits = executor->step({ids.data(), size_t(first)}, positions);
  ASSERT_TRUE(logits.ok()) << logits.status();
  ASSERT_EQ(int64_t(logits->size()), first * vocab);
  for (int64_t row = 0; row < first; ++row) {
    auto expected = reference->prefill({ids.data(), size_t(row + 1)}, 0);
    ASSERT_TRUE(expected.ok());
    EXPECT_LE(relativeError(rowOf(*logits, row, vocab), *expected), 1e-5)
        << "row " << row;
  }

  std::vector<int32_t> rest(ids.begin() + first, ids.end());
  std::vector<int32_t> restPositions(rest.size());
  std::iota(restPositions.begin(), restPositions.end(), int32_t(first));
  auto more = executor->step(rest, restPositions);
  auto expected = reference->prefill(rest, first);
  ASSERT_TRUE(more.ok() && expected.ok()) << more.status();
  EXPECT_LE(relativeError(rowOf(*more, rest.size() - 1, vocab), *expected),
            1e-5);
}

// Tests that the rows of a step may come in any order: a permutation of the
// rows (chunks of two sequences, decode rows of two more, every sequence's
// rows scattered) permutes the logits and changes nothing else.
TEST_P(BatchedStepTest, PermutingRowsPermutesLogits) {
  Plan plan = compileFixturePlan(dir());
  std::vector<std::vector<int32_t>> prompts = {
      fixtureTokens(6, 70), fixtureTokens(3, 71), fixtureTokens(9, 72),
      fixtureTokens(5, 73)};
  std::vector<std::vector<KvBlockId>> tables = {
      {3, 9}, {0}, {7, 1, 12}, {4, 10}};
  // Every prompt but its last `held` tokens is computed first; the step
  // then computes the rest: chunks of sequences 0 and 2, decode rows of 1
  // and 3.
  const std::vector<int64_t> held = {3, 1, 4, 1};
  auto executorA = makePaged(plan, dir(), 16, 4);
  auto executorB = makePaged(plan, dir(), 16, 4);
  ASSERT_TRUE(executorA && executorB);
  const int64_t vocab = executorA->vocabSize();
  StepRows before, rows;
  for (size_t s = 0; s < prompts.size(); ++s) {
    int64_t computed = prompts[s].size() - held[s];
    before.add(prompts[s], 0, computed, tables[s]);
    rows.add(prompts[s], computed, held[s], tables[s]);
  }
  for (CpuExecutor *executor : {executorA.get(), executorB.get()})
    ASSERT_TRUE(executor
                    ->step(before.ids, before.positions, before.blockTables,
                           before.rowTables)
                    .ok());
  auto logits = executorA->step(rows.ids, rows.positions, rows.blockTables,
                                rows.rowTables);
  ASSERT_TRUE(logits.ok()) << logits.status();

  // Reverse the rows, then interleave the halves.
  std::vector<int64_t> order(rows.size());
  std::iota(order.rbegin(), order.rend(), 0);
  std::vector<int64_t> permutation;
  for (size_t i = 0; i < order.size(); ++i)
    permutation.push_back(
        order[i % 2 ? (order.size() + 1) / 2 + i / 2 : i / 2]);
  std::vector<int64_t> sorted = permutation;
  std::sort(sorted.begin(), sorted.end());
  ASSERT_TRUE(std::equal(sorted.begin(), sorted.end(), order.rbegin()))
      << "a permutation";
  StepRows permuted;
  permuted.blockTables = rows.blockTables;
  for (int64_t row : permutation) {
    permuted.ids.push_back(rows.ids[row]);
    permuted.positions.push_back(rows.positions[row]);
    permuted.rowTables.push_back(rows.rowTables[row]);
  }
  auto permutedLogits =
      executorB->step(permuted.ids, permuted.positions, permuted.blockTables,
                      permuted.rowTables);
  ASSERT_TRUE(permutedLogits.ok()) << permutedLogits.status();
  for (size_t i = 0; i < permutation.size(); ++i)
    EXPECT_EQ(rowOf(*permutedLogits, i, vocab),
              rowOf(*logits, permutation[i], vocab))
        << "row " << i << " (row " << permutation[i] << " unpermuted)";
}

INSTANTIATE_TEST_SUITE_P(Fixtures, BatchedStepTest,
                         testing::Values("qwen2", "llama", "qwen3"));

// Tests that every malformed step is refused with an InvalidArgument saying
// what is wrong (row counts, positions, ids, table offsets, tables too short
// for their positions or naming blocks outside the pool or twice, two rows
// writing one cache row), that steps in the wrong cache mode and plans
// without @step are a FailedPrecondition, and that the executor still
// computes correct logits afterwards.
TEST(BatchedStepErrorsTest, RejectsBadSteps) {
  std::string dir = fixtureDir("qwen2");
  Plan plan = compileFixturePlan(dir);
  auto executor = makePaged(plan, dir, 8, 4); // positions 0..31
  ASSERT_TRUE(executor);
  ASSERT_EQ(executor->vocabSize(), 512);
  auto refused = [&](std::vector<int32_t> ids, std::vector<int32_t> positions,
                     std::vector<KvBlockId> tables,
                     std::vector<int32_t> rowTables) {
    absl::Status status =
        executor->step(ids, positions, tables, rowTables).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    return messageOf(status);
  };

  EXPECT_THAT(refused({1, 2}, {0}, {0}, {0, 0}),
              HasSubstr("a step has 2 token ids but 1 positions"));
  EXPECT_THAT(refused({}, {}, {0}, {}),
              HasSubstr("a step needs 1 to 65535 rows, not 0"));
  std::vector<int32_t> many(65536, 0);
  EXPECT_THAT(refused(many, many, {0}, many),
              HasSubstr("a step needs 1 to 65535 rows, not 65536"));
  EXPECT_THAT(refused({1, 2}, {0, -1}, {0}, {0, 0}),
              HasSubstr("step row 1: position -1 is outside the KV cache's "
                        "positions [0, 32)"));
  EXPECT_THAT(refused({1}, {32}, {0}, {0}),
              HasSubstr("step row 0: position 32 is outside"));
  EXPECT_THAT(refused({1, 512}, {0, 1}, {0}, {0, 0}),
              HasSubstr("step row 1: token id 512 is outside the vocabulary "
                        "[0, 512)"));
  EXPECT_THAT(refused({-1}, {0}, {0}, {0}), HasSubstr("token id -1"));
  EXPECT_THAT(refused({1, 2}, {0, 1}, {0}, {0}),
              HasSubstr("a step has 2 rows but 1 table offsets"));
  EXPECT_THAT(refused({1, 2}, {0, 0}, {0, 1}, {0, 2}),
              HasSubstr("step row 1: its table offset 2 is outside the "
                        "step's 2 block-table ids"));
  EXPECT_THAT(refused({1}, {0}, {0}, {-1}), HasSubstr("table offset -1"));
  EXPECT_THAT(refused({1}, {0}, {}, {0}), HasSubstr("table offset 0"));
  // Row 0's table ends where row 1's starts: one block, positions 0..3.
  EXPECT_THAT(refused({1, 2}, {4, 0}, {1, 2, 3}, {0, 1}),
              HasSubstr("step row 0: position 4 is outside its block table "
                        "(1 blocks of 4 positions)"));
  EXPECT_THAT(refused({1}, {5}, {1, 8}, {0}),
              HasSubstr("step row 0: block 8 (entry 1 of its table) is "
                        "outside the KV pool of 8 blocks"));
  EXPECT_THAT(refused({1}, {0}, {-1}, {0}), HasSubstr("block -1 (entry 0"));
  EXPECT_THAT(refused({1, 2}, {0, 5}, {1, 2, 3, 3}, {0, 2}),
              HasSubstr("step row 1: block 3 appears twice in the block table "
                        "(again at entry 1)"));
  // Two sequences whose tables both hold block 2 write its row 1.
  EXPECT_THAT(refused({1, 2}, {1, 1}, {2, 2}, {0, 1}),
              HasSubstr("step rows 0 and 1 both write KV cache row 9 "
                        "(position 1)"));

  // Cache modes, and a plan compiled without @step.
  std::vector<int32_t> one = {1}, zero = {0};
  EXPECT_EQ(executor->step(one, zero).status().code(),
            absl::StatusCode::kFailedPrecondition);
  auto contiguous = makeContiguous(plan, dir, 16);
  ASSERT_TRUE(contiguous);
  EXPECT_EQ(contiguous->step(one, zero, zero, zero).status().code(),
            absl::StatusCode::kFailedPrecondition);
  std::vector<int32_t> twoIds = {1, 2}, samePosition = {3, 3};
  absl::Status twice = contiguous->step(twoIds, samePosition).status();
  EXPECT_EQ(twice.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(messageOf(twice),
              HasSubstr("step rows 0 and 1 both write KV cache row 3"));
  Plan noStep = plan;
  std::erase_if(noStep.functions,
                [](const PlanFunction &f) { return f.name == "step"; });
  auto old = makeContiguous(noStep, dir, 16);
  ASSERT_TRUE(old);
  absl::Status missing = old->step(one, zero).status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(messageOf(missing), HasSubstr("no @step function"));
  EXPECT_TRUE(old->prefill(one, 0).ok()) << "prefill and decode still run";

  // The executor still works after the refusals.
  std::vector<int32_t> prompt = fixtureTokens(6, 80);
  auto reference = makeContiguous(plan, dir, 16);
  ASSERT_TRUE(reference);
  auto expected = reference->prefill(prompt, 0);
  std::vector<int32_t> positions(prompt.size());
  std::iota(positions.begin(), positions.end(), 0);
  std::vector<int32_t> rowTables(prompt.size(), 0);
  std::vector<KvBlockId> table = {6, 0};
  auto logits = executor->step(prompt, positions, table, rowTables);
  ASSERT_TRUE(logits.ok() && expected.ok()) << logits.status();
  EXPECT_LE(
      relativeError(rowOf(*logits, prompt.size() - 1, executor->vocabSize()),
                    *expected),
      1e-5);
}

} // namespace
} // namespace treni
