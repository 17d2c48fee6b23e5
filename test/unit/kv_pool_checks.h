//===- kv_pool_checks.h - invariants of a KvBlockPool for tests -*- C++ -*-===//
#pragma once

#include "runtime/batch/kv_block_pool.h"
#include "gtest/gtest.h"

namespace treni::testing_util {

/// The stats' block counters add up (used + free + evictable == total) and
/// agree with a walk over every block's reference count and cache flag.
inline void expectPoolCountersConsistent(const KvBlockPool &pool) {
  KvPoolStats stats = pool.stats();
  int64_t used = 0, evictable = 0, cached = 0;
  for (KvBlockId block = 0; block < pool.numBlocks(); ++block) {
    used += pool.refCount(block) > 0;
    evictable += pool.refCount(block) == 0 && pool.isCached(block);
    cached += pool.isCached(block);
  }
  EXPECT_EQ(stats.usedBlocks, used);
  EXPECT_EQ(stats.evictableBlocks, evictable);
  EXPECT_EQ(stats.cachedBlocks, cached);
  EXPECT_EQ(stats.usedBlocks + stats.freeBlocks + stats.evictableBlocks,
            stats.totalBlocks);
  EXPECT_EQ(pool.numAllocatable(), stats.freeBlocks + stats.evictableBlocks);
}

} // namespace treni::testing_util
