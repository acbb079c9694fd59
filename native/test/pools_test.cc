// Cache pools and block tables: layout, exhaustion, double free, and randomised joins/leaves.
#include <map>
#include <random>
#include <set>

#include "core/block_plan.h"
#include "core/errors.h"
#include "test.h"
#include "test_util.h"

using namespace hs;

HS_TEST(pool_layout_is_layer_major) {
  const auto cfg = test::TinyLlama();  // kv_dim 16, hidden 32
  PoolConfig pc{4, 5, 3, DType::F32};
  CachePools p(cfg, pc);
  HS_CHECK_EQ(p.block_elems_per_layer(CacheKind::KV), (size_t)2 * 4 * 16);
  HS_CHECK_EQ(p.block_elems_per_layer(CacheKind::ACT), (size_t)4 * 32);
  HS_CHECK_EQ(p.block_bytes_all_layers(CacheKind::ACT), (size_t)4 * 32 * 4 * 2);
  // Blocks of one layer are contiguous; the next layer starts right after the last block.
  HS_CHECK(p.block_ptr(CacheKind::KV, 0, 1) - p.block_ptr(CacheKind::KV, 0, 0) == (ptrdiff_t)(2 * 4 * 16 * 4));
  HS_CHECK(p.layer_base(CacheKind::KV, 1) == p.block_ptr(CacheKind::KV, 0, 4) + 2 * 4 * 16 * 4);
  HS_CHECK(p.layer_base(CacheKind::ACT, 1) - p.layer_base(CacheKind::ACT, 0) == (ptrdiff_t)(3 * 4 * 32 * 4));
}

HS_TEST(pool_exhaustion_and_double_free) {
  const auto cfg = test::TinyOpt();
  CachePools p(cfg, PoolConfig{4, 2, 1, DType::F32});
  const int a = p.Allocate(CacheKind::KV), b = p.Allocate(CacheKind::KV);
  HS_CHECK(a != b && a >= 0 && b >= 0);
  HS_CHECK_EQ(p.Allocate(CacheKind::KV), -1);
  HS_CHECK_EQ(p.free_blocks(CacheKind::ACT), 1);
  p.Release(CacheKind::KV, a);
  HS_CHECK_THROWS(p.Release(CacheKind::KV, a), std::logic_error);
  HS_CHECK_THROWS(p.Release(CacheKind::KV, 7), std::logic_error);
  HS_CHECK_THROWS(p.Release(CacheKind::ACT, 0), std::logic_error);  // never allocated
  HS_CHECK_EQ(p.free_blocks(CacheKind::KV), 1);
}

HS_TEST(wanted_kind_spreads_act_blocks) {
  for (double f : {0.0, 0.25, 0.5, 0.75, 1.0, 0.3}) {
    int act = 0;
    for (int i = 0; i < 100; ++i) act += WantedKind(i, f) == CacheKind::ACT;
    HS_CHECK_EQ(act, (int)std::floor(100 * f + 1e-9));
  }
  HS_CHECK(WantedKind(0, 0.5) == CacheKind::KV && WantedKind(1, 0.5) == CacheKind::ACT &&
           WantedKind(2, 0.5) == CacheKind::KV);
}

HS_TEST(engine_block_kinds_follow_fraction_and_fall_back) {
  const auto cfg = test::TinyOpt();
  auto e = test::MakeCpuEngine(cfg, 6, 8, 0.5);
  const auto p = test::Prompt(16, 1, cfg.vocab_size);  // 4 blocks of 4
  const int64_t id = e->AddSequence(p.data(), 16, {});
  HS_CHECK_EQ(e->GetSequence(id).kv_blocks, 2);
  HS_CHECK_EQ(e->GetSequence(id).act_blocks, 2);
  // Per-sequence override; the wanted pool runs dry, so the rest falls back to KV.
  SequenceOptions o;
  o.act_fraction = 1.0;
  const int64_t id2 = e->AddSequence(p.data(), 16, o);
  const auto p3 = test::Prompt(12, 2, cfg.vocab_size);
  const int64_t id3 = e->AddSequence(p3.data(), 12, o);
  HS_CHECK_EQ(e->GetSequence(id2).act_blocks, 4);
  HS_CHECK_EQ(e->GetSequence(id3).act_blocks, 2);
  HS_CHECK_EQ(e->GetSequence(id3).kv_blocks, 1);
  // Both pools nearly empty: 3 KV left; a 16-token prompt needs 4.
  try {
    e->AddSequence(p.data(), 16, {});
    HS_CHECK(false);
  } catch (const RangeErrorEx& err) {
    HS_CHECK_EQ(std::string(err.what()), std::string("out of cache blocks: need 4 blocks, KV free 3, ACT free 0"));
  }
  e->SetActFraction(0);
  HS_CHECK_THROWS(e->SetActFraction(1.5), RangeErrorEx);
}

HS_TEST(randomised_joins_and_leaves_leak_nothing) {
  const auto cfg = test::TinyOpt();
  const int kv = 12, act = 6;
  auto e = test::MakeCpuEngine(cfg, kv, act, 0.4, 4);
  std::mt19937 rng(123);
  std::map<int64_t, int> live;  // id -> steps run
  int out_of_blocks = 0, rejected = 0;
  for (int iter = 0; iter < 200; ++iter) {
    const int op = rng() % 20;  // 35% join, 15% leave, 50% step
    if (op < 7 || live.empty()) {
      const int n = 1 + rng() % 14;
      const auto p = test::Prompt(n, iter, cfg.vocab_size);
      SequenceOptions o;
      if (rng() % 3 == 0) o.act_fraction = (rng() % 5) / 4.0;
      try {
        live[e->AddSequence(p.data(), n, o)] = 0;
      } catch (const RangeErrorEx&) {
        ++rejected;
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
      for (size_t i = 0; i < ids.size(); ++i) {
        if (r.status[i] == (int)SeqStatus::OutOfBlocks) {
          ++out_of_blocks;
          HS_CHECK_EQ(r.tokens[i], -1);
        } else {
          HS_CHECK(r.tokens[i] >= 0 && r.tokens[i] < cfg.vocab_size);
        }
      }
    }
    // Invariant: blocks held by live sequences + free blocks == totals, and no block is shared.
    int held_kv = 0, held_act = 0;
    for (auto& [id, _] : live) {
      const auto s = e->GetSequence(id);
      held_kv += s.kv_blocks;
      held_act += s.act_blocks;
      HS_CHECK(s.kv_blocks + s.act_blocks >= (s.cached_tokens + 3) / 4);
    }
    HS_CHECK_EQ(held_kv + e->pools().free_blocks(CacheKind::KV), kv);
    HS_CHECK_EQ(held_act + e->pools().free_blocks(CacheKind::ACT), act);
  }
  for (auto& [id, _] : live) e->RemoveSequence(id);
  HS_CHECK_EQ(e->pools().free_blocks(CacheKind::KV), kv);
  HS_CHECK_EQ(e->pools().free_blocks(CacheKind::ACT), act);
  HS_CHECK(rejected + out_of_blocks > 0);  // the test did reach exhaustion
  HS_CHECK_THROWS(e->RemoveSequence(99999), RangeErrorEx);
}
