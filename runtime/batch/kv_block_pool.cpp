//===- kv_block_pool.cpp - paged KV blocks and their prefix cache ---------===//

#include "runtime/batch/kv_block_pool.h"

#include <algorithm>
#include <cassert>

namespace treni {
namespace {

/// splitmix64's finalizer: every input bit reaches every output bit, so a
/// chained block hash depends on every token of the prefix.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

} // namespace

KvBlockHash KvBlockPool::hashBlock(KvBlockHash parentHash,
                                   absl::Span<const int32_t> tokens) {
  uint64_t hash = mix(parentHash);
  for (int32_t token : tokens)
    hash = mix(hash ^ uint32_t(token));
  return hash;
}

KvBlockPool::KvBlockPool(int64_t numBlocks)
    : blocks_(std::max<int64_t>(numBlocks, 0)) {
  // Block 0 is handed out first: the stack holds the highest id at the bottom.
  freeList_.reserve(blocks_.size());
  for (int64_t block = numBlocks - 1; block >= 0; --block)
    freeList_.push_back(KvBlockId(block));
}

std::optional<KvBlockId> KvBlockPool::allocate() {
  KvBlockId block;
  if (!freeList_.empty()) {
    block = freeList_.back();
    freeList_.pop_back();
  } else if (!evictable_.empty()) {
    block = evictable_.front();
    evictable_.pop_front();
    uncache(block);
    ++evictions_;
  } else {
    return std::nullopt;
  }
  assert(blocks_[block].refCount == 0 && !blocks_[block].cached);
  blocks_[block].refCount = 1;
  ++usedBlocks_;
  return block;
}

void KvBlockPool::retain(KvBlockId block) {
  Block &entry = blocks_[block];
  if (entry.refCount == 0) {
    // Only a cached block can be picked up again once nobody holds it.
    assert(entry.cached && "retain of a free block");
    evictable_.erase(entry.evictablePos);
    ++usedBlocks_;
  }
  ++entry.refCount;
}

void KvBlockPool::release(KvBlockId block) {
  Block &entry = blocks_[block];
  assert(entry.refCount > 0 && "release of an unreferenced block");
  if (--entry.refCount > 0)
    return;
  --usedBlocks_;
  if (entry.cached)
    entry.evictablePos = evictable_.insert(evictable_.end(), block);
  else
    freeList_.push_back(block);
}

int32_t KvBlockPool::refCount(KvBlockId block) const {
  return blocks_[block].refCount;
}

bool KvBlockPool::isCached(KvBlockId block) const {
  return blocks_[block].cached;
}

KvPrefixMatch KvBlockPool::matchPrefix(absl::Span<const int32_t> tokens,
                                       int64_t maxBlocks) const {
  KvPrefixMatch match;
  int64_t limit =
      std::min<int64_t>(maxBlocks, int64_t(tokens.size()) / kKvBlockTokens);
  KvBlockHash parentHash = kRootHash;
  for (int64_t index = 0; index < limit; ++index) {
    absl::Span<const int32_t> blockTokens =
        tokens.subspan(index * kKvBlockTokens, kKvBlockTokens);
    KvBlockHash hash = hashBlock(parentHash, blockTokens);
    auto found = cache_.find(hash);
    if (found == cache_.end())
      break;
    const Block &entry = blocks_[found->second];
    if (entry.parentHash != parentHash ||
        !std::equal(entry.tokens.begin(), entry.tokens.end(),
                    blockTokens.begin(), blockTokens.end()))
      break; // a hash collision: a different block under the same key
    match.blocks.push_back(found->second);
    match.hashes.push_back(hash);
    parentHash = hash;
  }
  return match;
}

KvBlockHash KvBlockPool::cacheFullBlock(KvBlockId block, KvBlockHash parentHash,
                                        absl::Span<const int32_t> tokens) {
  assert(int64_t(tokens.size()) == kKvBlockTokens && "only full blocks");
  KvBlockHash hash = hashBlock(parentHash, tokens);
  Block &entry = blocks_[block];
  assert(entry.refCount > 0 && !entry.cached);
  // The same content computed twice (two sequences admitted before either
  // registered it): the first copy stays the cached one.
  if (!cache_.try_emplace(hash, block).second)
    return hash;
  entry.cached = true;
  entry.hash = hash;
  entry.parentHash = parentHash;
  entry.tokens.assign(tokens.begin(), tokens.end());
  return hash;
}

void KvBlockPool::uncache(KvBlockId block) {
  Block &entry = blocks_[block];
  cache_.erase(entry.hash);
  entry.cached = false;
  entry.tokens.clear();
  entry.tokens.shrink_to_fit();
}

void KvBlockPool::recordPrefixQuery(int64_t queryTokens, int64_t hitTokens) {
  ++prefixQueries_;
  prefixQueryTokens_ += queryTokens;
  prefixHitTokens_ += hitTokens;
}

KvPoolStats KvBlockPool::stats() const {
  KvPoolStats stats;
  stats.totalBlocks = numBlocks();
  stats.usedBlocks = usedBlocks_;
  stats.freeBlocks = int64_t(freeList_.size());
  stats.evictableBlocks = int64_t(evictable_.size());
  stats.cachedBlocks = int64_t(cache_.size());
  stats.evictions = evictions_;
  stats.prefixQueries = prefixQueries_;
  stats.prefixQueryTokens = prefixQueryTokens_;
  stats.prefixHitTokens = prefixHitTokens_;
  return stats;
}

} // namespace treni
