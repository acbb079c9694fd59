// Prefix caching: the block manager's reference counts and LRU, and the engine's sharing of cached
// prompt blocks (KV and ACT), copy-on-write of a fully cached prompt, and randomised churn.
#include <map>
#include <random>
#include <vector>

#include "core/block_manager.h"
#include "core/errors.h"
#include "test.h"
#include "test_util.h"

using namespace hs;

namespace {
std::vector<int32_t> Concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Greedy generation of `gen` tokens for each prompt, all in one batch; returns the tokens.
std::vector<std::vector<int32_t>> Generate(Engine& e, const std::vector<std::vector<int32_t>>& prompts, int gen,
                                           std::vector<int>* hits = nullptr) {
  std::vector<int64_t> ids;
  for (const auto& p : prompts) ids.push_back(e.AddSequence(p.data(), (int)p.size(), {}));
  if (hits)
    for (int64_t id : ids) hits->push_back(e.GetSequence(id).prefix_hit_tokens);
  std::vector<std::vector<int32_t>> out(prompts.size());
  for (int s = 0; s < gen; ++s) {
    const StepResult r = e.Step(ids);
    for (size_t i = 0; i < ids.size(); ++i) out[i].push_back(r.tokens[i]);
  }
  for (int64_t id : ids) e.RemoveSequence(id);
  return out;
}

double BlockChecksum(const CachePools& p, BlockRef b, int layers) {
  double sum = 0;
  const size_t n = p.block_elems_per_layer(b.kind);
  for (int l = 0; l < layers; ++l) {
    const float* f = reinterpret_cast<const float*>(p.block_ptr(b.kind, l, b.index));
    for (size_t i = 0; i < n; ++i) sum += f[i] * (double)(i % 7 + 1);
  }
  return sum;
}
}  // namespace

HS_TEST(block_manager_refcounts_idle_lru_and_eviction) {
  const auto cfg = test::TinyOpt();
  CachePools pools(cfg, PoolConfig{4, 3, 1, DType::F32});
  BlockManager m(pools, true);
  const int32_t toks[4] = {1, 2, 3, 4}, toks2[4] = {5, 6, 7, 8};
  const int32_t a = m.Allocate(PoolId::HostKv), b = m.Allocate(PoolId::HostKv);
  m.Publish(kRootBlockHash, toks, 4, {CacheKind::KV, a});
  const uint64_t ha = BlockChainHash(kRootBlockHash, toks, 4);
  m.Publish(ha, toks2, 4, {CacheKind::KV, b});
  HS_CHECK_EQ(m.cached(PoolId::HostKv), 2);
  // A lookup must match tokens and parent, not just land on a hash.
  HS_CHECK(m.Lookup(kRootBlockHash, toks, 4).has_value());
  HS_CHECK(!m.Lookup(kRootBlockHash, toks2, 4).has_value());
  HS_CHECK(!m.Lookup(ha, toks, 4).has_value());
  m.Share({CacheKind::KV, a});
  HS_CHECK_EQ(m.refs({CacheKind::KV, a}), 2);
  m.Release({CacheKind::KV, a});
  m.Release({CacheKind::KV, a});  // idle now, still cached
  HS_CHECK_EQ(m.idle_cached(PoolId::HostKv), 1);
  HS_CHECK_EQ(m.available(PoolId::HostKv), 2);  // one free + one idle
  HS_CHECK_THROWS(m.Release({CacheKind::KV, a}), std::logic_error);
  m.Release({CacheKind::KV, b});                 // idle after a: a is evicted first
  const int32_t c = m.Allocate(PoolId::HostKv);  // the free block
  const int32_t d = m.Allocate(PoolId::HostKv);  // evicts a (least recently released)
  HS_CHECK(c != a && c != b);
  HS_CHECK_EQ(d, a);
  HS_CHECK(!m.Lookup(kRootBlockHash, toks, 4).has_value());
  HS_CHECK_EQ(m.stats().evictions, 1);
  HS_CHECK_EQ(m.Allocate(PoolId::HostKv), b);  // evicts b
  HS_CHECK_EQ(m.Allocate(PoolId::HostKv), -1);
  // Sharing an idle block takes it off the idle list.
  const int32_t act = m.Allocate(PoolId::HostAct);
  m.Publish(kRootBlockHash, toks, 4, {CacheKind::ACT, act});
  m.Release({CacheKind::ACT, act});
  HS_CHECK_EQ(m.idle_cached(PoolId::HostAct), 1);
  m.Share(*m.Lookup(kRootBlockHash, toks, 4));
  HS_CHECK_EQ(m.idle_cached(PoolId::HostAct), 0);
  HS_CHECK_EQ(m.Allocate(PoolId::HostAct), -1);  // the referenced cached block is not evictable
}

HS_TEST(prefix_cache_off_publishes_nothing) {
  const auto cfg = test::TinyOpt();
  auto e = test::MakeCpuEngine(cfg, 64, 0, 0.0, 4, 7, 2, 0, false);
  const auto p = test::Prompt(20, 1, cfg.vocab_size);
  std::vector<int> hits;
  Generate(*e, {p, p}, 3, &hits);
  Generate(*e, {p}, 3, &hits);
  for (int h : hits) HS_CHECK_EQ(h, 0);
  HS_CHECK_EQ(e->blocks().cached(PoolId::HostKv), 0);
  HS_CHECK_EQ(e->pools().free_blocks(CacheKind::KV), 64);
}

HS_TEST(prefix_cache_shares_kv_and_act_blocks_with_identical_tokens) {
  const auto cfg = test::TinyLlama();
  for (double f : {0.0, 0.5, 1.0}) {
    auto off = test::MakeCpuEngine(cfg, 64, 64, f, 4, 7, 2, 0, false);
    auto on = test::MakeCpuEngine(cfg, 64, 64, f, 4, 7, 2, 0, true);
    const auto prefix = test::Prompt(18, 3, cfg.vocab_size);  // 4 full blocks + 2 tokens
    const auto a = Concat(prefix, test::Prompt(5, 4, cfg.vocab_size));
    const auto b = Concat(prefix, test::Prompt(9, 5, cfg.vocab_size));
    const auto want = Generate(*off, {a, b}, 6);
    // Warm the cache with `a`, then run a and b: both reuse the 4 full prefix blocks.
    Generate(*on, {a}, 6);
    std::vector<int> hits;
    const auto got = Generate(*on, {a, b}, 6, &hits);
    HS_CHECK(got == want);
    HS_CHECK_EQ(hits[0], 20);  // a: 23 tokens, 5 full blocks were published by the warm-up
    HS_CHECK_EQ(hits[1], 16);  // b: shares the 4 blocks of the common prefix
    if (f == 1.0) HS_CHECK(on->blocks().cached(PoolId::HostAct) > 0);
    if (f == 0.0) HS_CHECK_EQ(on->blocks().cached(PoolId::HostAct), 0);
    HS_CHECK(on->blocks().stats().hit_tokens == 36);
  }
}

HS_TEST(prefix_cache_fully_cached_prompt_copies_its_last_block) {
  const auto cfg = test::TinyOpt();
  auto off = test::MakeCpuEngine(cfg, 32, 0, 0.0, 4, 7, 2, 0, false);
  auto on = test::MakeCpuEngine(cfg, 32, 0, 0.0, 4, 7, 2, 0, true);
  const auto p = test::Prompt(16, 9, cfg.vocab_size);  // exactly 4 blocks
  const auto want = Generate(*off, {p}, 5);
  // Keep one holder of the cached blocks alive while a second identical prompt runs.
  const int64_t holder = on->AddSequence(p.data(), 16, {});
  on->Step({holder});
  const int free_before = on->blocks().available(PoolId::HostKv);
  // While the copy is alive, the first 3 blocks have two holders and the last block only one.
  const int64_t probe = on->AddSequence(p.data(), 16, {});
  uint64_t parent = kRootBlockHash;
  for (int b = 0; b < 4; ++b) {
    const auto hit = on->blocks().Lookup(parent, p.data() + b * 4, 4);
    HS_CHECK(hit.has_value());
    if (hit) HS_CHECK_EQ(on->blocks().refs(*hit), b < 3 ? 2 : 1);
    parent = BlockChainHash(parent, p.data() + b * 4, 4);
  }
  HS_CHECK_EQ(on->GetSequence(probe).kv_blocks, 4);
  on->RemoveSequence(probe);
  std::vector<int> hits;
  const auto got = Generate(*on, {p}, 5, &hits);
  HS_CHECK(got == want);
  HS_CHECK_EQ(hits[0], 15);  // all but the last token, which runs again in a private copy
  // The holder's blocks were never written by the second sequence: its next token is unchanged.
  auto ref = test::MakeCpuEngine(cfg, 32, 0, 0.0, 4, 7, 2, 0, false);
  const int64_t rid = ref->AddSequence(p.data(), 16, {});
  ref->Step({rid});
  HS_CHECK_EQ(on->Step({holder}).tokens[0], ref->Step({rid}).tokens[0]);
  HS_CHECK_EQ(on->blocks().available(PoolId::HostKv), free_before - 1);  // the holder's 5th block
  on->RemoveSequence(holder);
}

HS_TEST(prefix_cache_shared_block_content_is_never_written) {
  const auto cfg = test::TinyOpt();
  auto on = test::MakeCpuEngine(cfg, 40, 0, 0.0, 4, 7, 2, 0, true);
  const auto p = test::Prompt(12, 2, cfg.vocab_size);
  const int64_t a = on->AddSequence(p.data(), 12, {});
  on->Step({a});
  // a's 3 blocks are published; checksum them, then run many sharers (fully cached prompts: CoW).
  std::vector<double> sums;
  std::vector<BlockRef> table;
  for (int b = 0; b < 3; ++b) {
    auto hit =
        on->blocks().Lookup(b == 0 ? kRootBlockHash : BlockChainHash(kRootBlockHash, p.data(), 4), p.data() + b * 4, 4);
    if (b == 0) HS_CHECK(hit.has_value());
    if (hit) table.push_back(*hit);
  }
  for (const BlockRef& r : table) sums.push_back(BlockChecksum(on->pools(), r, cfg.num_layers));
  Generate(*on, {p, p, p}, 4);
  for (size_t i = 0; i < table.size(); ++i) HS_CHECK_EQ(BlockChecksum(on->pools(), table[i], cfg.num_layers), sums[i]);
  on->RemoveSequence(a);
}

HS_TEST(prefix_cache_random_churn_no_leak_or_double_free) {
  const auto cfg = test::TinyOpt();
  auto on = test::MakeCpuEngine(cfg, 24, 12, 0.5, 4, 7, 2, 0, true);
  std::mt19937 rng(42);
  const auto base = test::Prompt(40, 6, cfg.vocab_size);
  std::map<int64_t, int> live;  // id -> steps left
  int evictions_seen = 0;
  for (int it = 0; it < 400; ++it) {
    const int op = rng() % 3;
    if (op == 0 && live.size() < 5) {
      const int keep = 4 + rng() % 24;  // a shared head of random length, then a private tail
      auto prompt = std::vector<int32_t>(base.begin(), base.begin() + keep);
      const int tail = rng() % 6;
      for (int t = 0; t < tail; ++t) prompt.push_back((int32_t)(rng() % cfg.vocab_size));
      try {
        live[on->AddSequence(prompt.data(), (int)prompt.size(), {})] = 1 + rng() % 6;
      } catch (const RangeErrorEx&) {
      }
    } else if (!live.empty()) {
      std::vector<int64_t> ids;
      for (auto& kv : live) ids.push_back(kv.first);
      const StepResult r = on->Step(ids);
      for (size_t i = 0; i < ids.size(); ++i)
        if (r.status[i] != 0 || --live[ids[i]] <= 0) {
          on->RemoveSequence(ids[i]);
          live.erase(ids[i]);
        }
    }
    evictions_seen = (int)on->blocks().stats().evictions;
  }
  for (auto& kv : live) on->RemoveSequence(kv.first);
  HS_CHECK(evictions_seen > 0);
  HS_CHECK(on->blocks().stats().hit_tokens > 0);
  // Everything is idle or free: available covers the whole pools, and dropping the idle blocks
  // returns every block to its free list exactly once (a double free would throw).
  HS_CHECK_EQ(on->blocks().available(PoolId::HostKv), 24);
  HS_CHECK_EQ(on->blocks().available(PoolId::HostAct), 12);
  const_cast<BlockManager&>(on->blocks()).DropIdle();
  HS_CHECK_EQ(on->pools().free_blocks(CacheKind::KV), 24);
  HS_CHECK_EQ(on->pools().free_blocks(CacheKind::ACT), 12);
}

HS_TEST(prefix_cache_across_tiers_gives_identical_tokens) {
  const auto cfg = test::TinyOpt();
  for (int gpu : {0, 6, 64}) {
    auto off = test::MakeCpuEngine(cfg, 40, 40, 0.5, 4, 7, 2, gpu, false);
    auto on = test::MakeCpuEngine(cfg, 40, 40, 0.5, 4, 7, 2, gpu, true);
    const auto p = test::Prompt(16, 8, cfg.vocab_size);  // 4 full blocks: fully cached on the 2nd run
    const auto q = Concat(p, test::Prompt(6, 9, cfg.vocab_size));
    const auto want = Generate(*off, {p, q}, 5);
    Generate(*on, {p}, 5);
    std::vector<int> hits;
    const auto got = Generate(*on, {p, q}, 5, &hits);
    HS_CHECK(got == want);
    // A fully cached prompt whose last block is in the GPU tier runs that block again (no device
    // copy); a host last block is copied and only the last token runs.
    HS_CHECK(hits[0] == 15 || hits[0] == 12);
    if (gpu == 0) HS_CHECK_EQ(hits[0], 15);
    if (gpu == 64) HS_CHECK_EQ(hits[0], 12);
    HS_CHECK_EQ(hits[1], 16);
    HS_CHECK_EQ(on->blocks().available(PoolId::DeviceKv), gpu);
  }
}
