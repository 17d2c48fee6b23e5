//===- cpu_paged_kv_test.cpp - paged KV cache against the contiguous one -===//
//
// The paged CPU executor runs a sequence's KV rows through its block table
// (runtime/exec/kv_pages.h). Only the cache addresses differ from the
// contiguous executor, never the arithmetic, so every test asks for
// bit-identical logits: a sequence on scattered blocks, two sequences
// interleaved in one pool, a sequence reusing another's prefix blocks. Bad
// tables are refused before anything runs.
//
//===----------------------------------------------------------------------===//

#include <algorithm>

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
using testing_util::makePaged;
using testing_util::messageOf;
using testing_util::usesTemplate;

using Logits = std::vector<float>;

std::vector<int32_t> concat(std::vector<int32_t> a,
                            const std::vector<int32_t> &b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

/// The logits of a prefill of `prompt`, then of a teacher-forced decode of
/// each of `decodes`, on a contiguous executor of its own.
std::vector<Logits> runAlone(const Plan &plan, const std::string &dir,
                             const std::vector<int32_t> &prompt,
                             const std::vector<int32_t> &decodes) {
  std::vector<Logits> rows;
  auto executor = CpuExecutor::create(plan, dir, 256);
  EXPECT_TRUE(executor.ok()) << executor.status();
  if (!executor.ok())
    return rows;
  auto logits = (*executor)->prefill(prompt, 0);
  EXPECT_TRUE(logits.ok()) << logits.status();
  rows.push_back(logits.value_or(Logits{}));
  for (size_t i = 0; i < decodes.size(); ++i) {
    logits = (*executor)->decode(decodes[i], prompt.size() + i);
    EXPECT_TRUE(logits.ok()) << logits.status();
    rows.push_back(logits.value_or(Logits{}));
  }
  return rows;
}

/// One sequence driven through a paged executor, step by step.
struct PagedSequence {
  std::vector<int32_t> prompt, decodes;
  std::vector<KvBlockId> table;
  size_t decoded = 0;

  Logits prefill(CpuExecutor &executor, int64_t start = 0) {
    std::vector<int32_t> rest(prompt.begin() + start, prompt.end());
    auto logits = executor.prefill(rest, start, table);
    EXPECT_TRUE(logits.ok()) << logits.status();
    return logits.value_or(Logits{});
  }
  Logits decodeNext(CpuExecutor &executor) {
    int64_t position = prompt.size() + decoded;
    auto logits = executor.decode(decodes[decoded++], position, table);
    EXPECT_TRUE(logits.ok()) << logits.status();
    return logits.value_or(Logits{});
  }
};

class PagedKvTest : public testing::TestWithParam<std::string> {
protected:
  std::string dir() const { return fixtureDir(GetParam()); }
};

// Tests that a sequence whose blocks are a scattered permutation of part of
// the pool gives the contiguous cache's logits bit for bit, over a prompt that
// spans several blocks and decode steps that cross into new ones; for the
// default plan (fused q/k/v + cache write, flash and split-KV decode
// attention) and the unfused one (cache_write, generic attention), at a small
// block size and at the pool's.
TEST_P(PagedKvTest, ScatteredBlocksMatchTheContiguousCache) {
  Plan fused = compileFixturePlan(dir());
  Plan unfused = compileFixturePlan(
      dir(), {"treni-fuse-qkv-split-bias", "treni-specialize-seq1-attention",
              "treni-specialize-flash-attention"});
  ASSERT_TRUE(usesTemplate(fused, "attention_seq1_partial"));
  ASSERT_FALSE(usesTemplate(fused, "cache_write"));
  ASSERT_TRUE(usesTemplate(unfused, "cache_write"));
  ASSERT_FALSE(usesTemplate(unfused, "attention_seq1_partial"));
  const int64_t poolBlocks = 11;
  for (const Plan *plan : {&fused, &unfused})
    for (int64_t blockTokens : {int64_t(4), kKvBlockTokens}) {
      SCOPED_TRACE(testing::Message()
                   << (plan == &fused ? "fused" : "unfused") << " plan, "
                   << blockTokens << "-row blocks");
      PagedSequence sequence{fixtureTokens(3 * blockTokens + 2, 1),
                             fixtureTokens(6, 2)};
      int64_t positions = sequence.prompt.size() + sequence.decodes.size();
      for (int64_t i = 0; i * blockTokens < positions; ++i)
        sequence.table.push_back(KvBlockId((3 + 7 * i) % poolBlocks));
      ASSERT_EQ(int64_t(sequence.table.size()),
                (positions + blockTokens - 1) / blockTokens);
      std::vector<Logits> expected =
          runAlone(*plan, dir(), sequence.prompt, sequence.decodes);
      auto executor = makePaged(*plan, dir(), poolBlocks, blockTokens);
      ASSERT_TRUE(executor);

      EXPECT_EQ(sequence.prefill(*executor), expected[0]) << "prefill";
      for (size_t step = 1; step < expected.size(); ++step)
        EXPECT_EQ(sequence.decodeNext(*executor), expected[step])
            << "decode " << step;

      // The table is what addresses the rows: swap one written block for
      // one never written and the last decode reads other rows.
      std::vector<KvBlockId> wrong = sequence.table;
      for (KvBlockId block = 0; block < poolBlocks; ++block)
        if (std::find(wrong.begin(), wrong.end(), block) == wrong.end()) {
          wrong[1] = block;
          break;
        }
      ASSERT_NE(wrong, sequence.table);
      auto logits =
          executor->decode(sequence.decodes.back(), positions - 1, wrong);
      ASSERT_TRUE(logits.ok()) << logits.status();
      EXPECT_NE(*logits, expected.back());
    }
}

// Tests that two sequences on disjoint, interleaved blocks of one pool, their
// steps alternating, each give the logits they give alone: neither writes
// into the other's rows nor reads them.
TEST_P(PagedKvTest, InterleavedSequencesDoNotTouchEachOther) {
  Plan plan = compileFixturePlan(dir());
  PagedSequence a{fixtureTokens(10, 3), fixtureTokens(5, 4), {6, 1, 10, 3}};
  PagedSequence b{fixtureTokens(7, 5), fixtureTokens(5, 6), {2, 9, 4, 7}};
  std::vector<Logits> expectedA = runAlone(plan, dir(), a.prompt, a.decodes);
  std::vector<Logits> expectedB = runAlone(plan, dir(), b.prompt, b.decodes);
  ASSERT_NE(expectedA[0], expectedB[0]);
  auto executor = makePaged(plan, dir(), 12, 4);
  ASSERT_TRUE(executor);

  EXPECT_EQ(a.prefill(*executor), expectedA[0]) << "A prefill";
  EXPECT_EQ(b.prefill(*executor), expectedB[0]) << "B prefill";
  for (size_t step = 1; step <= a.decodes.size(); ++step) {
    EXPECT_EQ(a.decodeNext(*executor), expectedA[step]) << "A decode " << step;
    EXPECT_EQ(b.decodeNext(*executor), expectedB[step]) << "B decode " << step;
  }
}

// Tests that a sequence whose table starts with another's full prefix blocks
// and prefills only its own tokens after them gives the logits of computing
// everything itself, and that the owner of those blocks still decodes as if
// alone afterwards (nothing was written into them).
TEST_P(PagedKvTest, SharedPrefixBlocksGiveTheSameLogits) {
  Plan plan = compileFixturePlan(dir());
  const int64_t blockTokens = 4;
  std::vector<int32_t> prefix = fixtureTokens(2 * blockTokens, 7);
  PagedSequence a{
      concat(prefix, fixtureTokens(5, 8)), fixtureTokens(3, 9), {5, 2, 9, 0}};
  PagedSequence b{concat(prefix, fixtureTokens(6, 10)),
                  fixtureTokens(3, 11),
                  {5, 2, 7, 11, 3}};
  std::vector<Logits> expectedA = runAlone(plan, dir(), a.prompt, a.decodes);
  std::vector<Logits> expectedB = runAlone(plan, dir(), b.prompt, b.decodes);
  auto executor = makePaged(plan, dir(), 12, blockTokens);
  ASSERT_TRUE(executor);

  EXPECT_EQ(a.prefill(*executor), expectedA[0]) << "A prefill";
  EXPECT_EQ(a.decodeNext(*executor), expectedA[1]) << "A decode 1";
  EXPECT_EQ(b.prefill(*executor, prefix.size()), expectedB[0])
      << "B prefill after the shared prefix";
  for (size_t step = 1; step <= b.decodes.size(); ++step)
    EXPECT_EQ(b.decodeNext(*executor), expectedB[step]) << "B decode " << step;
  EXPECT_EQ(a.decodeNext(*executor), expectedA[2]) << "A decode 2";
  EXPECT_EQ(a.decodeNext(*executor), expectedA[3]) << "A decode 3";
}

INSTANTIATE_TEST_SUITE_P(Fixtures, PagedKvTest,
                         testing::Values("qwen2", "llama", "qwen3"));

// Tests that tables naming blocks outside the pool, naming a block twice or
// too short for the call's positions are refused with an InvalidArgument
// that says what is wrong, that calls in the wrong cache mode are refused,
// and that the executor still computes correct logits afterwards.
// Tests that a paged executor made from a contiguous one shares its weights
// (no second fp32 copy) and computes what a paged executor loaded from the
// checkpoint computes, bit for bit, also once the contiguous one is gone.
TEST_P(PagedKvTest, PagedSharingWeightsMatchesALoadedOne) {
  Plan plan = compileFixturePlan(dir());
  auto contiguous = testing_util::makeContiguous(plan, dir());
  ASSERT_TRUE(contiguous);
  auto shared = contiguous->createPagedSharingWeights(6, 4);
  ASSERT_TRUE(shared.ok()) << shared.status();
  auto loaded = makePaged(plan, dir(), 6, 4);
  ASSERT_TRUE(loaded);
  EXPECT_TRUE((*shared)->sharesWeightsWith(*contiguous));
  EXPECT_FALSE(loaded->sharesWeightsWith(*contiguous));
  EXPECT_EQ((*shared)->numBlocks(), 6);
  EXPECT_EQ((*shared)->maxSeq(), 24);
  EXPECT_EQ(contiguous->createPagedSharingWeights(0).status().code(),
            absl::StatusCode::kInvalidArgument);

  PagedSequence sequence{fixtureTokens(9, 3), fixtureTokens(3, 4), {5, 0, 3}};
  PagedSequence again = sequence;
  EXPECT_EQ(sequence.prefill(**shared), again.prefill(*loaded));
  contiguous.reset();
  for (int step = 0; step < 3; ++step)
    EXPECT_EQ(sequence.decodeNext(**shared), again.decodeNext(*loaded))
        << "decode " << step;
}

TEST(PagedKvErrorsTest, RejectsBadBlockTables) {
  std::string dir = fixtureDir("qwen2");
  Plan plan = compileFixturePlan(dir);
  auto executor = makePaged(plan, dir, 8, 4);
  ASSERT_TRUE(executor);
  EXPECT_EQ(executor->maxSeq(), 32);
  std::vector<int32_t> prompt = fixtureTokens(6, 12);
  auto refused = [&](absl::Span<const KvBlockId> table, int64_t start,
                     int64_t count) {
    std::vector<int32_t> ids(prompt.begin(), prompt.begin() + count);
    absl::Status status = executor->prefill(ids, start, table).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    return messageOf(status);
  };

  EXPECT_THAT(refused({1, 8}, 0, 6),
              HasSubstr("step row 0: block 8 (entry 1 of its table) is outside "
                        "the KV pool of 8 blocks"));
  EXPECT_THAT(refused({-1, 2}, 0, 6), HasSubstr("block -1 (entry 0"));
  EXPECT_THAT(refused({1}, 0, 6),
              HasSubstr("step row 4: position 4 is outside its block table (1 "
                        "blocks of 4 positions)"));
  EXPECT_THAT(refused({1, 2}, 3, 6),
              HasSubstr("step row 5: position 8 is outside its block table"));
  EXPECT_THAT(refused({}, 0, 1), HasSubstr("step row 0: position 0"));
  EXPECT_THAT(refused({3, 3}, 0, 6),
              HasSubstr("block 3 appears twice in the block table"));
  absl::Status decode = executor->decode(1, 8, {{1, 2}}).status();
  EXPECT_EQ(decode.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(messageOf(decode),
              HasSubstr("step row 0: position 8 is outside its block table"));

  // Positions past the pool fail the shared input check first.
  std::vector<KvBlockId> all = {0, 1, 2, 3, 4, 5, 6, 7};
  EXPECT_EQ(executor->decode(1, 32, all).status().code(),
            absl::StatusCode::kOutOfRange);

  // A paged executor needs tables; a contiguous one takes none.
  EXPECT_EQ(executor->prefill(prompt, 0).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(executor->decode(1, 0).status().code(),
            absl::StatusCode::kFailedPrecondition);
  auto contiguous = CpuExecutor::create(plan, dir, 16);
  ASSERT_TRUE(contiguous.ok());
  EXPECT_EQ((*contiguous)->prefill(prompt, 0, all).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*contiguous)->decode(1, 0, all).status().code(),
            absl::StatusCode::kFailedPrecondition);

  EXPECT_EQ(CpuExecutor::createPaged(plan, dir, 0, 4).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CpuExecutor::createPaged(plan, dir, 8, 0).status().code(),
            absl::StatusCode::kInvalidArgument);

  // The executor still works after the refusals.
  std::vector<Logits> expected = runAlone(plan, dir, prompt, {});
  auto logits = executor->prefill(prompt, 0, {{6, 0}});
  ASSERT_TRUE(logits.ok()) << logits.status();
  EXPECT_EQ(*logits, expected[0]);
}

} // namespace
} // namespace treni
