// Pure decisions about a sequence's block table (no pools, no state).
#pragma once
#include <cmath>

#include "core/types.h"

namespace hs {

// Block i of a sequence is ACT when floor((i+1)·f) > floor(i·f): over any run of blocks the ACT
// share tracks f and ACT blocks are spread evenly (f = 0.5 → KV, ACT, KV, ACT, ...).
inline CacheKind WantedKind(int block_index, double act_fraction) {
  if (act_fraction <= 0) return CacheKind::KV;
  if (act_fraction >= 1) return CacheKind::ACT;
  const double a = std::floor((block_index + 1) * act_fraction + 1e-9);
  const double b = std::floor(block_index * act_fraction + 1e-9);
  return a > b ? CacheKind::ACT : CacheKind::KV;
}

// Where a sequence's next block goes: the device tier (always KV) while it has a free block, else
// the host tier, with the planned KV:ACT mix applied over the sequence's host blocks only (so the
// host share tracks f however many blocks went to the device).
struct BlockChoice {
  Tier tier;
  CacheKind kind;
};
inline BlockChoice NextBlock(int host_blocks_so_far, double act_fraction, bool device_has_room) {
  if (device_has_room) return {Tier::Device, CacheKind::KV};
  return {Tier::Host, WantedKind(host_blocks_so_far, act_fraction)};
}

inline CacheKind OtherKind(CacheKind k) { return k == CacheKind::KV ? CacheKind::ACT : CacheKind::KV; }

// Blocks needed to hold `tokens` positions.
inline int BlocksFor(int tokens, int block_tokens) { return (tokens + block_tokens - 1) / block_tokens; }

}  // namespace hs
