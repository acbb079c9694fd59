// Mini-batches of a step (core/mini_batches.h): what a sequence stages, the packing under a token
// limit, and the engine core handing the packed mini-batches to its backend.
#include <memory>
#include <vector>

#include "core/errors.h"
#include "core/mini_batches.h"
#include "cpu/cpu_backend.h"
#include "test.h"
#include "test_util.h"

using namespace hs;

namespace {

SeqPlan Seq(int start_pos, int num_new, const std::vector<BlockRef>& blocks) {
  SeqPlan s;
  s.start_pos = start_pos;
  s.num_new = num_new;
  s.blocks = blocks.data();
  s.num_blocks = static_cast<int>(blocks.size());
  return s;
}

// Wraps a backend and keeps the mini-batches of every plan it runs.
class RecordingBackend : public Backend {
 public:
  explicit RecordingBackend(std::unique_ptr<Backend> inner) : inner_(std::move(inner)) {}
  void Forward(const BatchPlan& plan, float* logits, StepCounters& c) override {
    seen.push_back(plan.mini_batches);
    inner_->Forward(plan, logits, c);
  }
  BackendInfo Info() const override { return inner_->Info(); }
  std::vector<std::vector<std::vector<int>>> seen;

 private:
  std::unique_ptr<Backend> inner_;
};

}  // namespace

HS_TEST(mini_batches_staged_tokens_count_host_tier_cache_and_new_tokens) {
  const BlockRef host{CacheKind::KV, 0}, act{CacheKind::ACT, 0}, dev{CacheKind::KV, 0, Tier::Device};
  // 4-token blocks, 10 cached positions: blocks 0 and 1 full, block 2 holds 2; one new token.
  const std::vector<BlockRef> all_host{host, act, host};
  HS_CHECK_EQ(StagedTokens(Seq(10, 1, all_host), 4), 11);
  const std::vector<BlockRef> first_on_gpu{dev, act, host};
  HS_CHECK_EQ(StagedTokens(Seq(10, 1, first_on_gpu), 4), 7);  // the GPU-tier block is read in place
  const std::vector<BlockRef> last_on_gpu{host, act, dev};
  HS_CHECK_EQ(StagedTokens(Seq(10, 1, last_on_gpu), 4), 9);
  HS_CHECK_EQ(StagedTokens(Seq(0, 12, all_host), 4), 12);  // a prefill stages its rows only
}

HS_TEST(mini_batches_pack_in_order_under_the_limit) {
  const std::vector<BlockRef> blocks(8, BlockRef{CacheKind::KV, 0});
  BatchPlan plan;
  for (int n : {10, 10, 10, 25, 3}) plan.seqs.push_back(Seq(0, n, blocks));
  const auto mb = PackMiniBatches(plan, 4, 20);
  HS_CHECK(mb == (std::vector<std::vector<int>>{{0, 1}, {2}, {3}, {4}}));  // 25 alone, over the limit
  HS_CHECK(PackMiniBatches(plan, 4, 0).empty());                           // no limit: one mini-batch
  HS_CHECK(PackMiniBatches(plan, 4, 58).empty());                          // everything fits one
  HS_CHECK(PackMiniBatches(plan, 4, 57).size() == 2);
  BatchPlan none;
  HS_CHECK(PackMiniBatches(none, 4, 10).empty());
}

HS_TEST(mini_batches_engine_splits_steps_and_keeps_the_tokens) {
  const ModelConfig cfg = test::TinyOpt();
  auto run = [&](int limit, std::vector<std::vector<std::vector<int>>>* seen) {
    // A recording backend around a CPU backend.
    EngineParts parts = test::TinyParts(cfg);
    auto rec =
        std::make_unique<RecordingBackend>(std::make_unique<cpu::CpuBackend>(cfg, *parts.weights, *parts.pools, 2));
    RecordingBackend* r = rec.get();
    parts.backend = std::move(rec);
    Engine engine(cfg, std::move(parts), 0.5);
    engine.SetMiniBatchTokens(limit);
    std::vector<int64_t> ids;
    for (int s = 0; s < 3; ++s) {
      const auto prompt = test::Prompt(9, 11 + s, cfg.vocab_size);
      ids.push_back(engine.AddSequence(prompt.data(), static_cast<int>(prompt.size()), {}));
    }
    std::vector<int32_t> tokens;
    for (int step = 0; step < 4; ++step) {
      const StepResult res = engine.Step(ids);
      tokens.insert(tokens.end(), res.tokens.begin(), res.tokens.end());
    }
    *seen = r->seen;
    return tokens;
  };
  std::vector<std::vector<std::vector<int>>> whole, split;
  const auto ref = run(0, &whole);
  const auto got = run(20, &split);
  // The CPU backend runs a step's mini-batches as one, so equal tokens say only that the split
  // drops or repeats no sequence; the CUDA tests check the zig-zag's numbers.
  HS_CHECK(got == ref);
  for (const auto& mb : whole) HS_CHECK(mb.empty());
  // Prefill: 9 new tokens each, two fit 20. Then 9 cached + 1 new = 10 each (two still fit), then
  // 11 each: one sequence per mini-batch.
  HS_CHECK(split.size() == 4u);
  HS_CHECK(split[0] == (std::vector<std::vector<int>>{{0, 1}, {2}}));
  HS_CHECK(split[1] == (std::vector<std::vector<int>>{{0, 1}, {2}}));
  HS_CHECK(split[2] == (std::vector<std::vector<int>>{{0}, {1}, {2}}));
  auto e = test::MakeCpuEngine(cfg, 8, 8, 0.0);
  HS_CHECK_THROWS(e->SetMiniBatchTokens(-1), RangeErrorEx);
}
