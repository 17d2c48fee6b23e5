//===- kv_block_pool_test.cpp - paged KV blocks and the prefix cache ------===//
//
// Tests the block pool alone: allocation order, reference counts, the three
// block states (used, free, evictable) and their counters, prefix lookups
// over chained block hashes, duplicate content, and the least recently
// released order in which unreferenced cached blocks are evicted (referenced
// blocks never are).
//
//===----------------------------------------------------------------------===//

#include "runtime/batch/kv_block_pool.h"

#include <numeric>

#include "test/unit/kv_pool_checks.h"
#include "gtest/gtest.h"

namespace treni {
namespace {
using testing_util::expectPoolCountersConsistent;

/// kKvBlockTokens distinct tokens starting at `first`: one full block.
std::vector<int32_t> blockOf(int32_t first) {
  std::vector<int32_t> tokens(kKvBlockTokens);
  std::iota(tokens.begin(), tokens.end(), first);
  return tokens;
}

/// The concatenation of blocks, plus `tail` trailing tokens.
std::vector<int32_t> concat(std::initializer_list<std::vector<int32_t>> parts,
                            int tail = 0) {
  std::vector<int32_t> tokens;
  for (const std::vector<int32_t> &part : parts)
    tokens.insert(tokens.end(), part.begin(), part.end());
  for (int index = 0; index < tail; ++index)
    tokens.push_back(900000 + index);
  return tokens;
}

// Tests that blocks come out in id order, that reference counts follow
// retain/release, that a released block is the next one handed out, and
// that an exhausted pool says so instead of handing out a held block.
TEST(KvBlockPool, AllocateRetainReleaseAndExhaustion) {
  KvBlockPool pool(3);
  EXPECT_EQ(pool.numAllocatable(), 3);
  EXPECT_EQ(pool.allocate(), 0);
  EXPECT_EQ(pool.allocate(), 1);
  EXPECT_EQ(pool.allocate(), 2);
  EXPECT_EQ(pool.allocate(), std::nullopt);
  EXPECT_EQ(pool.numAllocatable(), 0);
  EXPECT_EQ(pool.stats().usedBlocks, 3);

  pool.retain(1);
  EXPECT_EQ(pool.refCount(1), 2);
  pool.release(1);
  EXPECT_EQ(pool.refCount(1), 1);
  EXPECT_EQ(pool.allocate(), std::nullopt) << "block 1 is still held";
  pool.release(1);
  EXPECT_EQ(pool.refCount(1), 0);
  EXPECT_EQ(pool.stats().freeBlocks, 1);
  expectPoolCountersConsistent(pool);

  EXPECT_EQ(pool.allocate(), 1);
  EXPECT_EQ(pool.refCount(1), 1);
  for (KvBlockId block : {0, 1, 2})
    pool.release(block);
  KvPoolStats stats = pool.stats();
  EXPECT_EQ(stats.usedBlocks, 0);
  EXPECT_EQ(stats.freeBlocks, 3);
  EXPECT_EQ(stats.evictions, 0);
  expectPoolCountersConsistent(pool);
}

// Tests that an empty pool hands out nothing.
TEST(KvBlockPool, EmptyPool) {
  KvBlockPool pool(0);
  EXPECT_EQ(pool.numAllocatable(), 0);
  EXPECT_EQ(pool.allocate(), std::nullopt);
  EXPECT_EQ(pool.stats().totalBlocks, 0);
}

// Tests that cached full blocks are found from the start of a token list,
// block by block, up to the first block that differs, never past
// `maxBlocks`, and never for a trailing partial block.
TEST(KvBlockPool, MatchPrefixOfChainedBlocks) {
  KvBlockPool pool(8);
  std::vector<int32_t> a = blockOf(0), b = blockOf(1000), c = blockOf(2000);
  std::vector<int32_t> prompt = concat({a, b, c}, /*tail=*/10);
  KvBlockHash parent = KvBlockPool::kRootHash;
  std::vector<KvBlockId> blocks;
  for (int index = 0; index < 3; ++index) {
    KvBlockId block = *pool.allocate();
    parent = pool.cacheFullBlock(block, parent,
                                 absl::MakeConstSpan(prompt).subspan(
                                     index * kKvBlockTokens, kKvBlockTokens));
    blocks.push_back(block);
    EXPECT_TRUE(pool.isCached(block));
  }

  KvPrefixMatch match = pool.matchPrefix(prompt, /*maxBlocks=*/10);
  EXPECT_EQ(match.blocks, blocks);
  ASSERT_EQ(match.hashes.size(), 3u);
  EXPECT_EQ(match.hashes.back(), parent);
  EXPECT_EQ(pool.matchPrefix(prompt, 2).blocks,
            std::vector<KvBlockId>(blocks.begin(), blocks.begin() + 2));
  EXPECT_TRUE(pool.matchPrefix(prompt, 0).blocks.empty());

  // Divergence inside the second block: only the first matches.
  std::vector<int32_t> diverged = prompt;
  diverged[kKvBlockTokens + 5] = 77;
  EXPECT_EQ(pool.matchPrefix(diverged, 10).blocks,
            std::vector<KvBlockId>{blocks[0]});
  // The first 63 tokens of a block are not a full block: no match there.
  std::vector<int32_t> partial(prompt.begin(),
                               prompt.begin() + 2 * kKvBlockTokens - 1);
  EXPECT_EQ(pool.matchPrefix(partial, 10).blocks.size(), 1u);
  // Matching retains nothing.
  for (KvBlockId block : blocks)
    EXPECT_EQ(pool.refCount(block), 1);
  expectPoolCountersConsistent(pool);
}

// Tests that the hash of a block chains the block before it: the same
// tokens after another prefix are not a hit, while the block of that other
// prefix is.
TEST(KvBlockPool, SameTokensAfterDifferentPrefixAreNotAHit) {
  KvBlockPool pool(4);
  std::vector<int32_t> a = blockOf(0), b = blockOf(1000), c = blockOf(5000);
  KvBlockId blockA = *pool.allocate(), blockB = *pool.allocate();
  KvBlockHash hashA = pool.cacheFullBlock(blockA, KvBlockPool::kRootHash, a);
  KvBlockHash hashAB = pool.cacheFullBlock(blockB, hashA, b);
  KvBlockId blockC = *pool.allocate();
  KvBlockHash hashC = pool.cacheFullBlock(blockC, KvBlockPool::kRootHash, c);

  EXPECT_NE(KvBlockPool::hashBlock(hashC, b), hashAB);
  EXPECT_NE(KvBlockPool::hashBlock(KvBlockPool::kRootHash, b), hashAB);
  EXPECT_EQ(pool.matchPrefix(concat({a, b}), 4).blocks,
            (std::vector<KvBlockId>{blockA, blockB}));
  EXPECT_EQ(pool.matchPrefix(concat({c, b}), 4).blocks,
            std::vector<KvBlockId>{blockC});
  // b at the start of a list is not the cached "b after a" either.
  EXPECT_TRUE(pool.matchPrefix(concat({b, a}), 4).blocks.empty());
}

// Tests that content computed twice is cached once: the second copy keeps
// its hash for chaining but stays private and becomes free, not evictable,
// on its last release.
TEST(KvBlockPool, DuplicateContentStaysPrivate) {
  KvBlockPool pool(4);
  std::vector<int32_t> a = blockOf(0);
  KvBlockId first = *pool.allocate(), second = *pool.allocate();
  KvBlockHash hash1 = pool.cacheFullBlock(first, KvBlockPool::kRootHash, a);
  KvBlockHash hash2 = pool.cacheFullBlock(second, KvBlockPool::kRootHash, a);
  EXPECT_EQ(hash1, hash2);
  EXPECT_TRUE(pool.isCached(first));
  EXPECT_FALSE(pool.isCached(second));
  EXPECT_EQ(pool.matchPrefix(a, 1).blocks, std::vector<KvBlockId>{first});

  pool.release(second);
  pool.release(first);
  KvPoolStats stats = pool.stats();
  EXPECT_EQ(stats.freeBlocks, 3);
  EXPECT_EQ(stats.evictableBlocks, 1);
  EXPECT_EQ(stats.cachedBlocks, 1);
  expectPoolCountersConsistent(pool);
}

// Tests that free blocks are handed out before any cached one is evicted,
// that unreferenced cached blocks are then evicted least recently released
// first (a hit that is retained and released again moves to the back), and
// that a referenced cached block is never evicted.
TEST(KvBlockPool, EvictsLeastRecentlyReleasedAndNeverReferenced) {
  KvBlockPool pool(6);
  std::vector<std::vector<int32_t>> contents;
  for (int index = 0; index < 5; ++index) {
    contents.push_back(blockOf(10000 * (index + 1)));
    KvBlockId block = *pool.allocate();
    ASSERT_EQ(block, index);
    pool.cacheFullBlock(block, KvBlockPool::kRootHash, contents.back());
  }
  // Release order 3, 0, 4, 1; block 2 stays referenced. Block 5 is free.
  for (KvBlockId block : {3, 0, 4, 1})
    pool.release(block);
  EXPECT_EQ(pool.stats().evictableBlocks, 4);
  // A hit on block 0 takes it out of the queue; released again, it is the
  // most recent: the order is now 3, 4, 1, 0.
  ASSERT_EQ(pool.matchPrefix(contents[0], 1).blocks, std::vector<KvBlockId>{0});
  pool.retain(0);
  EXPECT_EQ(pool.stats().evictableBlocks, 3);
  pool.release(0);
  expectPoolCountersConsistent(pool);

  EXPECT_EQ(pool.allocate(), 5) << "the never-cached free block first";
  EXPECT_EQ(pool.stats().evictions, 0);
  for (KvBlockId expected : {3, 4, 1, 0}) {
    std::optional<KvBlockId> block = pool.allocate();
    ASSERT_EQ(block, expected);
    EXPECT_FALSE(pool.isCached(expected));
    EXPECT_TRUE(pool.matchPrefix(contents[expected], 1).blocks.empty())
        << "evicted content " << expected << " must not be found";
    expectPoolCountersConsistent(pool);
  }
  EXPECT_EQ(pool.allocate(), std::nullopt);
  EXPECT_EQ(pool.stats().evictions, 4);
  // The referenced block survived every eviction and is still a hit.
  EXPECT_TRUE(pool.isCached(2));
  EXPECT_EQ(pool.matchPrefix(contents[2], 1).blocks, std::vector<KvBlockId>{2});
}

// Tests the prefix-query counters that /metrics and cached_tokens read.
TEST(KvBlockPool, PrefixQueryCounters) {
  KvBlockPool pool(2);
  pool.recordPrefixQuery(100, 64);
  pool.recordPrefixQuery(30, 0);
  KvPoolStats stats = pool.stats();
  EXPECT_EQ(stats.prefixQueries, 2);
  EXPECT_EQ(stats.prefixQueryTokens, 130);
  EXPECT_EQ(stats.prefixHitTokens, 64);
}

} // namespace
} // namespace treni
