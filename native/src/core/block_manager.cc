#include "core/block_manager.h"

#include <stdexcept>
#include <string>

namespace hs {

namespace {
int P(PoolId p) { return (int)p; }
int K(const BlockRef& b) { return (int)PoolOf(b); }
const char* PoolName(const BlockRef& b) {
  static const char* kNames[] = {"KV", "ACT", "GPU KV"};
  return kNames[K(b)];
}
constexpr PoolId kPools[] = {PoolId::HostKv, PoolId::HostAct, PoolId::DeviceKv};

uint64_t Mix(uint64_t h, uint64_t v) {
  // splitmix64 finaliser over (h ^ v): cheap, and every input bit reaches every output bit.
  uint64_t z = h ^ (v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2));
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
}  // namespace

uint64_t BlockChainHash(uint64_t parent, const int32_t* tokens, int n) {
  uint64_t h = Mix(parent, (uint64_t)n);
  for (int i = 0; i < n; ++i) h = Mix(h, (uint32_t)tokens[i]);
  return h;
}

BlockManager::BlockManager(CachePools& pools, bool prefix_caching) : pools_(pools), prefix_caching_(prefix_caching) {
  slots_[P(PoolId::HostKv)].resize(pools.total_blocks(CacheKind::KV));
  slots_[P(PoolId::HostAct)].resize(pools.total_blocks(CacheKind::ACT));
  slots_[P(PoolId::DeviceKv)].resize(pools.total_device_blocks());
}

BlockManager::Slot& BlockManager::SlotOf(BlockRef b) {
  auto& v = slots_[K(b)];
  if (b.index < 0 || b.index >= (int32_t)v.size())
    throw std::logic_error(std::string("out-of-range ") + PoolName(b) + " block " + std::to_string(b.index));
  return v[b.index];
}

const BlockManager::Slot& BlockManager::SlotOf(BlockRef b) const { return const_cast<BlockManager*>(this)->SlotOf(b); }

void BlockManager::Forget(BlockRef b) {
  Slot& s = SlotOf(b);
  if (!s.cached) return;
  by_hash_.erase(s.entry.hash);
  s.cached = false;
  s.entry = Entry{};
  --cached_count_[K(b)];
}

int32_t BlockManager::Allocate(PoolId p) {
  int32_t idx = p == PoolId::DeviceKv ? pools_.AllocateDevice()
                                      : pools_.Allocate(p == PoolId::HostKv ? CacheKind::KV : CacheKind::ACT);
  if (idx < 0) {
    auto& idle = idle_[P(p)];
    if (idle.empty()) return -1;
    const BlockRef victim = idle.front();
    idle.pop_front();
    Slot& s = SlotOf(victim);
    s.idle = false;
    Forget(victim);
    ++stats_.evictions;
    idx = victim.index;
  }
  Slot& s = SlotOf(RefOf(p, idx));
  s.refs = 1;
  return idx;
}

void BlockManager::Share(BlockRef b) {
  Slot& s = SlotOf(b);
  if (s.idle) {
    idle_[K(b)].erase(s.idle_pos);
    s.idle = false;
  } else if (s.refs <= 0) {
    throw std::logic_error(std::string("share of an unallocated ") + PoolName(b) + " block " + std::to_string(b.index));
  }
  ++s.refs;
}

void BlockManager::Release(BlockRef b) {
  Slot& s = SlotOf(b);
  if (s.refs <= 0)
    throw std::logic_error(std::string("release of unreferenced ") + PoolName(b) + " block " + std::to_string(b.index));
  if (--s.refs > 0) return;
  if (s.cached) {
    auto& idle = idle_[K(b)];
    s.idle_pos = idle.insert(idle.end(), b);
    s.idle = true;
  } else {
    pools_.Release(b);
  }
}

std::optional<BlockRef> BlockManager::Lookup(uint64_t parent, const int32_t* tokens, int n) const {
  if (!prefix_caching_) return std::nullopt;
  auto it = by_hash_.find(BlockChainHash(parent, tokens, n));
  if (it == by_hash_.end()) return std::nullopt;
  const Entry& e = SlotOf(it->second).entry;
  if (e.parent != parent || (int)e.tokens.size() != n) return std::nullopt;
  for (int i = 0; i < n; ++i)
    if (e.tokens[i] != tokens[i]) return std::nullopt;
  return it->second;
}

void BlockManager::Publish(uint64_t parent, const int32_t* tokens, int n, BlockRef b) {
  if (!prefix_caching_) return;
  Slot& s = SlotOf(b);
  if (s.cached || s.refs <= 0) return;
  const uint64_t h = BlockChainHash(parent, tokens, n);
  if (by_hash_.count(h)) return;
  s.cached = true;
  s.entry.hash = h;
  s.entry.parent = parent;
  s.entry.tokens.assign(tokens, tokens + n);
  by_hash_.emplace(h, b);
  ++cached_count_[K(b)];
}

int BlockManager::available(PoolId p) const {
  const int free = p == PoolId::DeviceKv ? pools_.free_device_blocks()
                                         : pools_.free_blocks(p == PoolId::HostKv ? CacheKind::KV : CacheKind::ACT);
  return free + idle_cached(p);
}
int BlockManager::idle_cached(PoolId p) const { return (int)idle_[P(p)].size(); }
int BlockManager::cached(PoolId p) const { return cached_count_[P(p)]; }
int BlockManager::refs(BlockRef b) const { return SlotOf(b).refs; }

void BlockManager::DropIdle() {
  for (PoolId p : kPools) {
    auto& idle = idle_[P(p)];
    while (!idle.empty()) {
      const BlockRef b = idle.front();
      idle.pop_front();
      SlotOf(b).idle = false;
      Forget(b);
      pools_.Release(b);
    }
  }
}

}  // namespace hs
