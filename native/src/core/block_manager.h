// Block lifetimes over the cache pools: reference counts, and the prefix cache.
//
// A block is either free (in its pool's free list), referenced (by one or more sequences' block
// tables), or idle-cached: unreferenced, but holding the cache of a full block of tokens that a
// later prompt may reuse. Idle-cached blocks stay allocated until a pool runs dry; then the least
// recently released one is evicted (forgotten and handed out again).
//
// The prefix cache is content-addressed like vLLM's automatic prefix caching: a full block is
// named by a chain hash of every token up to its end, so two prompts share block i only if they
// agree on all tokens of blocks 0..i. Each entry also stores its own tokens and its parent's hash,
// and a lookup compares them, so a hash collision can never hand out the wrong cache. KV and ACT
// blocks are shared alike: a block's kind says how its cache is stored, and both hold the same
// information for the same tokens.
//
// Sharing is read-only. A sequence never writes into a block that another holds: it only writes
// past its cached prefix, and a shared block is full by construction. The one exception, a prompt
// whose every block is cached (its last token must still run to produce logits), is handled by the
// engine with copy-on-write (Engine::AddSequence).
#pragma once
#include <cstdint>
#include <list>
#include <optional>
#include <unordered_map>
#include <vector>

#include "core/cache_pools.h"
#include "core/types.h"

namespace hs {

// The three pools a block can come from: host KV, host ACT, device (GPU) KV.
enum class PoolId : int { HostKv = 0, HostAct = 1, DeviceKv = 2 };
constexpr int kNumPools = 3;
inline PoolId PoolOf(const BlockRef& b) {
  return b.tier == Tier::Device ? PoolId::DeviceKv : b.kind == CacheKind::KV ? PoolId::HostKv : PoolId::HostAct;
}
inline BlockRef RefOf(PoolId p, int32_t index) {
  return p == PoolId::DeviceKv ? BlockRef{CacheKind::KV, index, Tier::Device}
                               : BlockRef{p == PoolId::HostKv ? CacheKind::KV : CacheKind::ACT, index, Tier::Host};
}
inline PoolId HostPool(CacheKind k) { return k == CacheKind::KV ? PoolId::HostKv : PoolId::HostAct; }

// Chain hash of one full block: mixes the parent block's hash with this block's token ids.
uint64_t BlockChainHash(uint64_t parent, const int32_t* tokens, int n);
// The parent hash of a sequence's first block.
constexpr uint64_t kRootBlockHash = 0x9e3779b97f4a7c15ull;

struct PrefixCacheStats {
  int64_t query_tokens = 0;  // prompt tokens looked up
  int64_t hit_tokens = 0;    // of those, found in the cache
  int64_t evictions = 0;     // idle-cached blocks handed out again
};

class BlockManager {
 public:
  BlockManager(CachePools& pools, bool prefix_caching);

  bool prefix_caching() const { return prefix_caching_; }

  // A fresh block of pool `p` with one reference, evicting the least recently used idle-cached
  // block of that pool when it is dry; -1 when neither exists.
  int32_t Allocate(PoolId p);
  // Adds a reference to a block found by Lookup (taking it off the idle list if it was idle).
  void Share(BlockRef b);
  // Drops one reference. At zero the block goes back to its pool, or, if it is in the prefix
  // cache, onto the idle list. Throws std::logic_error for a block with no references.
  void Release(BlockRef b);

  // The cached block whose content is `tokens` after the prefix named by `parent`, if any.
  std::optional<BlockRef> Lookup(uint64_t parent, const int32_t* tokens, int n) const;
  // Registers a referenced, full block's content under its chain hash (a no-op when caching is
  // off, or when that content is already cached in another block: the first copy stays canonical).
  void Publish(uint64_t parent, const int32_t* tokens, int n, BlockRef b);

  // Blocks a new sequence could get: free ones plus idle-cached ones (which are evictable).
  int available(PoolId p) const;
  int idle_cached(PoolId p) const;
  int cached(PoolId p) const;
  int refs(BlockRef b) const;
  // Forgets every idle-cached block (returning it to its pool); referenced cached blocks stay.
  void DropIdle();

  PrefixCacheStats& stats() { return stats_; }
  const PrefixCacheStats& stats() const { return stats_; }

 private:
  struct Entry {
    uint64_t hash = 0;
    uint64_t parent = 0;
    std::vector<int32_t> tokens;
  };
  struct Slot {
    int32_t refs = 0;
    bool cached = false;
    Entry entry;
    std::list<BlockRef>::iterator idle_pos;
    bool idle = false;
  };

  Slot& SlotOf(BlockRef b);
  const Slot& SlotOf(BlockRef b) const;
  void Forget(BlockRef b);  // removes a cached block's entry (its slot keeps its references)

  CachePools& pools_;
  bool prefix_caching_;
  std::vector<Slot> slots_[kNumPools];  // per pool, by block index
  std::unordered_map<uint64_t, BlockRef> by_hash_;
  std::list<BlockRef> idle_[kNumPools];  // least recently released at the front
  int cached_count_[kNumPools] = {0, 0, 0};
  PrefixCacheStats stats_;
};

}  // namespace hs
