//===- kv_block_pool.h - paged KV blocks and their prefix cache -*- C++ -*-===//
//
// The KV cache of every sequence is a list of fixed-size blocks taken from one
// pool. A block is referenced by the block tables that hold it; a full block
// may also be registered in the prefix cache under a hash of its tokens
// chained with the hash of the block before it, so a later sequence whose
// prompt starts with the same tokens reuses the block instead of computing
// it again (vLLM's automatic prefix caching). A cached block nobody holds is
// kept until its memory is needed, evicted least recently released first.
//
// Every block is in exactly one of three states:
//   used       referenced by at least one block table (cached or not);
//   evictable  unreferenced but cached: its rows are still valid;
//   free       unreferenced and not cached.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/types/span.h"

namespace treni {

/// Token rows per KV block: the flash attention kernel's key tile, so one
/// tile is one block and costs one block-table read (docs/architecture.md).
inline constexpr int64_t kKvBlockTokens = 64;

/// A block's index in the pool; block tables are contiguous arrays of them,
/// as a kernel reads them.
using KvBlockId = int32_t;

/// The prefix-cache key of a full block: its tokens chained with the key of
/// the block before it, so the same tokens after another prefix differ.
using KvBlockHash = uint64_t;

/// The blocks a sequence of `tokens` tokens needs.
inline int64_t kvBlocksFor(int64_t tokens) {
  return (tokens + kKvBlockTokens - 1) / kKvBlockTokens;
}

/// Counters for /metrics and usage; used + free + evictable == total.
struct KvPoolStats {
  int64_t totalBlocks = 0;
  int64_t usedBlocks = 0;        ///< referenced by a block table
  int64_t freeBlocks = 0;        ///< unreferenced and not cached
  int64_t evictableBlocks = 0;   ///< unreferenced, cached, reusable
  int64_t cachedBlocks = 0;      ///< in the prefix cache (referenced or not)
  int64_t evictions = 0;         ///< cached blocks taken for new content
  int64_t prefixQueries = 0;     ///< prefix lookups that admitted a sequence
  int64_t prefixQueryTokens = 0; ///< tokens those lookups asked about
  int64_t prefixHitTokens = 0;   ///< tokens they found cached
};

/// The longest run of cached full blocks that starts a token list.
struct KvPrefixMatch {
  std::vector<KvBlockId> blocks; ///< not retained by the lookup
  std::vector<KvBlockHash> hashes;
};

/// One pool of KV blocks: allocation, reference counts and the prefix cache.
/// Pure bookkeeping (the memory itself is the executor's); not thread-safe:
/// its one owner is the scheduler.
class KvBlockPool {
public:
  /// A pool of `numBlocks` blocks (the GPU side sizes it to free memory).
  explicit KvBlockPool(int64_t numBlocks);

  int64_t numBlocks() const { return int64_t(blocks_.size()); }
  /// Blocks allocate() can hand out now: free ones, then evictable ones.
  int64_t numAllocatable() const {
    return int64_t(freeList_.size() + evictable_.size());
  }

  /// A block nobody holds, with one reference. A never-cached free block is
  /// preferred; otherwise the least recently released cached block is
  /// evicted from the prefix cache. Empty when every block is referenced.
  std::optional<KvBlockId> allocate();
  /// One more table holds `block` (a used block, or a cached one found by
  /// matchPrefix, which leaves the eviction queue).
  void retain(KvBlockId block);
  /// One table fewer holds `block`; at zero a cached block becomes the most
  /// recently released evictable one and an uncached block is free.
  void release(KvBlockId block);

  int32_t refCount(KvBlockId block) const;
  bool isCached(KvBlockId block) const;

  /// The cached full blocks that start `tokens`, at most `maxBlocks` of them
  /// (a block's hash matches and its stored parent hash and tokens are
  /// compared too). Changes nothing: the caller retains what it keeps.
  KvPrefixMatch matchPrefix(absl::Span<const int32_t> tokens,
                            int64_t maxBlocks) const;

  /// Registers `block`, whose kKvBlockTokens rows the caller holds and has
  /// computed for `tokens` after the block hashed `parentHash`. Returns the
  /// block's hash for chaining; when a block with that hash is already
  /// cached, `block` stays private (freed, not cached, on its last release).
  KvBlockHash cacheFullBlock(KvBlockId block, KvBlockHash parentHash,
                             absl::Span<const int32_t> tokens);

  /// Counts one admission's lookup: `queryTokens` asked, `hitTokens` found.
  void recordPrefixQuery(int64_t queryTokens, int64_t hitTokens);

  KvPoolStats stats() const;

  /// The parent hash of a sequence's first block.
  static constexpr KvBlockHash kRootHash = 0;
  /// The key of a full block of `tokens` after the block hashed `parentHash`.
  static KvBlockHash hashBlock(KvBlockHash parentHash,
                               absl::Span<const int32_t> tokens);

private:
  struct Block {
    int32_t refCount = 0;
    bool cached = false;
    KvBlockHash hash = 0;
    KvBlockHash parentHash = 0;
    std::vector<int32_t> tokens; ///< of a cached block, to rule out collisions
    std::list<KvBlockId>::iterator evictablePos; ///< when evictable
  };

  void uncache(KvBlockId block);

  std::vector<Block> blocks_;
  std::vector<KvBlockId> freeList_; ///< a stack: the last freed is reused first
  std::list<KvBlockId> evictable_;  ///< front: least recently released
  absl::flat_hash_map<KvBlockHash, KvBlockId> cache_;
  int64_t usedBlocks_ = 0;
  int64_t evictions_ = 0;
  int64_t prefixQueries_ = 0;
  int64_t prefixQueryTokens_ = 0;
  int64_t prefixHitTokens_ = 0;
};

} // namespace treni
