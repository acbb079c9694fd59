// The cache-tier contract on the CPU backend's emulated device pool: new blocks fill the device
// tier first and then the host tier at the planned KV:ACT mix; blocks return to their own tier;
// greedy tokens do not depend on the split; only host-tier blocks count as PCIe bytes.
#include <map>
#include <random>

#include "core/block_plan.h"
#include "core/errors.h"
#include "test.h"
#include "test_util.h"

using namespace hs;

namespace {

// Greedy tokens of a batch of prompts of different lengths (crossing many 4-token blocks).
std::vector<std::vector<int32_t>> GenerateBatch(Engine& e, int steps) {
  const int lens[3] = {5, 13, 2};
  std::vector<int64_t> ids;
  for (int i = 0; i < 3; ++i) {
    const auto p = test::Prompt(lens[i], i, e.config().vocab_size);
    ids.push_back(e.AddSequence(p.data(), lens[i], {}));
  }
  std::vector<std::vector<int32_t>> out(3);
  for (int s = 0; s < steps; ++s) {
    const auto r = e.Step(ids);
    for (int i = 0; i < 3; ++i) {
      HS_CHECK_EQ(r.status[i], (int)SeqStatus::Ok);
      out[i].push_back(r.tokens[i]);
    }
  }
  for (int64_t id : ids) e.RemoveSequence(id);
  return out;
}

}  // namespace

HS_TEST(next_block_prefers_device_then_host_mix) {
  HS_CHECK(NextBlock(0, 1.0, true).tier == Tier::Device);
  HS_CHECK(NextBlock(0, 1.0, true).kind == CacheKind::KV);  // device blocks are always KV
  HS_CHECK(NextBlock(1, 0.5, false).tier == Tier::Host);
  HS_CHECK(NextBlock(0, 0.5, false).kind == CacheKind::KV);
  HS_CHECK(NextBlock(1, 0.5, false).kind == CacheKind::ACT);
}

HS_TEST(device_pool_contract) {
  const auto cfg = test::TinyOpt();
  PoolConfig pc;
  pc.block_tokens = 4;
  pc.kv_blocks = 2;
  pc.gpu_kv_blocks = 3;
  CachePools p(cfg, pc);
  HS_CHECK_EQ(p.total_device_blocks(), 3);
  const int32_t a = p.AllocateDevice(), b = p.AllocateDevice(), c = p.AllocateDevice();
  HS_CHECK(a == 0 && b == 1 && c == 2);
  HS_CHECK_EQ(p.AllocateDevice(), -1);
  HS_CHECK_EQ(p.free_blocks(CacheKind::KV), 2);  // the host tier is untouched
  // A device block and a host block with the same index are different storage.
  const int32_t h = p.Allocate(CacheKind::KV);
  HS_CHECK(p.block_ptr(BlockRef{CacheKind::KV, h, Tier::Device}, 1) !=
           p.block_ptr(BlockRef{CacheKind::KV, h, Tier::Host}, 1));
  HS_CHECK(p.block_ptr(BlockRef{CacheKind::KV, 2, Tier::Device}, 1) ==
           p.device_layer_base(1) + 2 * p.block_elems_per_layer(CacheKind::KV) * 4);
  p.Release(BlockRef{CacheKind::KV, b, Tier::Device});
  HS_CHECK_EQ(p.free_device_blocks(), 1);
  HS_CHECK_EQ(p.free_blocks(CacheKind::KV), 1);  // went back to its own tier
  HS_CHECK_THROWS(p.Release(BlockRef{CacheKind::KV, b, Tier::Device}), std::logic_error);
  HS_CHECK_THROWS(p.Release(BlockRef{CacheKind::ACT, a, Tier::Device}), std::logic_error);
  HS_CHECK_THROWS(p.ReleaseDevice(7), std::logic_error);
}

HS_TEST(engine_fills_device_tier_first_then_host_mix) {
  const auto cfg = test::TinyOpt();
  auto e = test::MakeCpuEngine(cfg, 8, 8, 0.5, 4, 7, 2, /*gpu_kv_blocks=*/3);
  const auto p = test::Prompt(28, 1, cfg.vocab_size);  // 7 blocks: 3 device, then host KV ACT KV ACT
  const int64_t id = e->AddSequence(p.data(), 28, {});
  const auto s = e->GetSequence(id);
  HS_CHECK_EQ(s.gpu_kv_blocks, 3);
  HS_CHECK_EQ(s.kv_blocks, 2);
  HS_CHECK_EQ(s.act_blocks, 2);
  HS_CHECK_EQ(e->pools().free_device_blocks(), 0);
  e->RemoveSequence(id);
  HS_CHECK_EQ(e->pools().free_device_blocks(), 3);
  HS_CHECK_EQ(e->pools().free_blocks(CacheKind::KV), 8);
  HS_CHECK_EQ(e->pools().free_blocks(CacheKind::ACT), 8);
}

// Acceptance 6 (CPU): greedy tokens identical for GPU tier 0%, 50%, 100% of the blocks × ACT 0, 0.5, 1.
HS_TEST(greedy_tokens_identical_for_every_tier_split) {
  for (const auto& cfg : {test::TinyOpt(), test::TinyLlama(2)}) {
    const int steps = 7;
    // Blocks the batch needs at the end: ceil((5+7)/4) + ceil((13+7)/4) + ceil((2+7)/4) = 3 + 5 + 3.
    const int total = 11;
    auto ref_engine = test::MakeCpuEngine(cfg, total, 0, 0.0);
    const auto ref = GenerateBatch(*ref_engine, steps);
    for (int gpu : {0, total / 2, total}) {
      for (double f : {0.0, 0.5, 1.0}) {
        const int host = total - gpu;
        auto e = test::MakeCpuEngine(cfg, host, host, f, 4, 7, 2, gpu);
        HS_CHECK(GenerateBatch(*e, steps) == ref);
        if (gpu == total) HS_CHECK_EQ(e->totals().recomputed_tokens, 0);  // nothing reached the host tier
        if (gpu < total && f > 0) HS_CHECK(e->totals().recomputed_tokens > 0);
      }
    }
  }
}

HS_TEST(only_host_tier_blocks_count_as_pcie_bytes) {
  const auto cfg = test::TinyLlama();  // kv_dim 16, hidden 32, 2 layers
  auto e = test::MakeCpuEngine(cfg, 16, 16, 0.5, 4, 7, 2, /*gpu_kv_blocks=*/1);
  const auto p = test::Prompt(12, 0, cfg.vocab_size);  // blocks: device KV, host KV, host ACT
  const int64_t id = e->AddSequence(p.data(), 12, {});
  auto r = e->Step({id});
  HS_CHECK_EQ(r.counters.kv_bytes_d2h, 4 * 2 * 16 * 4 * 2);  // the host KV block only
  HS_CHECK_EQ(r.counters.act_bytes_d2h, 4 * 32 * 4 * 2);
  r = e->Step({id});
  HS_CHECK_EQ(r.counters.kv_bytes_h2d, 4 * 2 * 16 * 4 * 2);
  HS_CHECK_EQ(r.counters.act_bytes_h2d, 4 * 32 * 4 * 2);
  HS_CHECK_EQ(r.counters.recomputed_tokens, 4);
  auto all_gpu = test::MakeCpuEngine(cfg, 0, 0, 0.5, 4, 7, 2, 8);
  const int64_t g = all_gpu->AddSequence(p.data(), 12, {});
  all_gpu->Step({g});
  r = all_gpu->Step({g});
  HS_CHECK_EQ(r.counters.kv_bytes_h2d + r.counters.act_bytes_h2d + r.counters.kv_bytes_d2h + r.counters.act_bytes_d2h,
              0);
}

// Acceptance 6: a randomised join/leave test across tiers finds no leak or double free.
HS_TEST(randomised_joins_and_leaves_across_tiers_leak_nothing) {
  const auto cfg = test::TinyOpt();
  const int gpu = 7, kv = 6, act = 5;
  auto e = test::MakeCpuEngine(cfg, kv, act, 0.5, 4, 7, 2, gpu);
  std::mt19937 rng(321);
  std::map<int64_t, int> live;
  int exhausted = 0, used_device = 0, used_host = 0;
  for (int iter = 0; iter < 300; ++iter) {
    const int op = rng() % 20;
    if (op < 7 || live.empty()) {
      const int n = 1 + rng() % 14;
      const auto p = test::Prompt(n, iter, cfg.vocab_size);
      SequenceOptions o;
      if (rng() % 3 == 0) o.act_fraction = (rng() % 3) / 2.0;
      try {
        live[e->AddSequence(p.data(), n, o)] = 0;
      } catch (const RangeErrorEx&) {
        ++exhausted;
      }
    } else if (op < 10) {
      auto it = live.begin();
      std::advance(it, rng() % live.size());
      e->RemoveSequence(it->first);
      live.erase(it);
    } else {
      std::vector<int64_t> ids;
      for (auto& [id, _] : live)
        if (rng() % 2) ids.push_back(id);
      if (ids.empty()) continue;
      const auto r = e->Step(ids);
      for (size_t i = 0; i < ids.size(); ++i) exhausted += r.status[i] == (int)SeqStatus::OutOfBlocks;
    }
    int held_gpu = 0, held_kv = 0, held_act = 0;
    for (auto& [id, _] : live) {
      const auto s = e->GetSequence(id);
      held_gpu += s.gpu_kv_blocks;
      held_kv += s.kv_blocks;
      held_act += s.act_blocks;
      HS_CHECK(s.gpu_kv_blocks + s.kv_blocks + s.act_blocks >= (s.cached_tokens + 3) / 4);
      used_device += s.gpu_kv_blocks > 0;
      used_host += s.kv_blocks + s.act_blocks > 0;
    }
    HS_CHECK_EQ(held_gpu + e->pools().free_device_blocks(), gpu);
    HS_CHECK_EQ(held_kv + e->pools().free_blocks(CacheKind::KV), kv);
    HS_CHECK_EQ(held_act + e->pools().free_blocks(CacheKind::ACT), act);
  }
  for (auto& [id, _] : live) e->RemoveSequence(id);
  HS_CHECK_EQ(e->pools().free_device_blocks(), gpu);
  HS_CHECK_EQ(e->pools().free_blocks(CacheKind::KV), kv);
  HS_CHECK_EQ(e->pools().free_blocks(CacheKind::ACT), act);
  HS_CHECK(exhausted > 0 && used_device > 0 && used_host > 0);  // the walk reached every tier and exhaustion
}
