// A sequence's state in the engine: its tokens, how many are cached, and its block table.
#pragma once
#include <cstdint>
#include <vector>

#include "core/sampler.h"
#include "core/types.h"

namespace hs {

struct Sequence {
  int64_t id = 0;
  std::vector<int32_t> tokens;   // prompt + sampled tokens
  int cached = 0;                // tokens[0, cached) have their cache written
  int prompt_len = 0;            // tokens[0, prompt_len) are the prompt; the rest were generated
  std::vector<BlockRef> blocks;  // covers at least `cached` positions
  double act_fraction = -1;      // < 0: follow the engine's current fraction
  int prefix_hit_tokens = 0;     // prompt tokens whose cache came from the prefix cache
  int published_blocks = 0;      // blocks[0, published_blocks) are in the prefix cache's chain
  uint64_t chain_hash = 0;       // chain hash after the last published block
  SamplingParams sampling;
  Rng rng;
  bool in_step = false;  // part of the step now running
  bool remove_after_step = false;

  int length() const { return (int)tokens.size(); }
  // Host-tier blocks of one kind, and device-tier (GPU KV) blocks.
  int count_blocks(CacheKind k) const {
    int n = 0;
    for (const BlockRef& b : blocks) n += b.tier == Tier::Host && b.kind == k;
    return n;
  }
  int count_device_blocks() const {
    int n = 0;
    for (const BlockRef& b : blocks) n += b.tier == Tier::Device;
    return n;
  }
};

}  // namespace hs
