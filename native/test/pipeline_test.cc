// Issue 15: the pipeline's parts. The layer split, the loopback transport (FIFO per pair of ranks,
// size checks, close), the PipelineBackend over CPU stages (same logits as one backend, steps in
// flight from several threads, a failing step that leaves the pipeline usable) and the engine's
// step slots.
#include <atomic>
#include <cstring>
#include <thread>

#include "core/errors.h"
#include "pipeline/cpu_pipeline.h"
#include "pipeline/layer_split.h"
#include "pipeline/loopback_transport.h"
#include "test.h"
#include "test_util.h"

using namespace hs;
using namespace hs::pipeline;

HS_TEST(pipeline_split_layers_tiles_evenly) {
  const auto s = SplitLayers(7, 3);
  HS_CHECK_EQ(s.size(), (size_t)3);
  HS_CHECK_EQ(s[0].first, 0);
  HS_CHECK_EQ(s[0].last, 3);
  HS_CHECK_EQ(s[1].first, 3);
  HS_CHECK_EQ(s[1].last, 5);
  HS_CHECK_EQ(s[2].first, 5);
  HS_CHECK_EQ(s[2].last, 7);
  for (int layers = 1; layers <= 9; ++layers)
    for (int st = 1; st <= layers; ++st) {
      const auto r = SplitLayers(layers, st);
      int at = 0, lo = layers, hi = 0;
      for (const auto& x : r) {
        HS_CHECK_EQ(x.first, at);
        lo = std::min(lo, x.count());
        hi = std::max(hi, x.count());
        at = x.last;
      }
      HS_CHECK_EQ(at, layers);
      HS_CHECK(hi - lo <= 1 && lo >= 1);
    }
  bool threw = false;
  try {
    SplitLayers(2, 3);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  HS_CHECK(threw);
}

HS_TEST(pipeline_loopback_fifo_per_pair) {
  LoopbackHub hub(3);
  auto a = hub.Endpoint(0), b = hub.Endpoint(1), c = hub.Endpoint(2);
  HS_CHECK_EQ(b->rank(), 1);
  HS_CHECK_EQ(c->world_size(), 3);
  // A receiver that starts first blocks until the sender's messages arrive, in order.
  std::vector<int> got;
  std::thread rx([&] {
    for (int i = 0; i < 100; ++i) {
      int v = -1;
      b->Recv(0, &v, sizeof v);
      got.push_back(v);
    }
  });
  for (int i = 0; i < 100; ++i) a->Send(1, &i, sizeof i);
  rx.join();
  bool ordered = got.size() == 100;
  for (int i = 0; i < (int)got.size(); ++i) ordered = ordered && got[i] == i;
  HS_CHECK(ordered);
  // Pairs are independent: 2→1 does not see 0→1's messages and vice versa.
  int x = 7, y = 9, r = 0;
  a->Send(1, &x, sizeof x);
  c->Send(1, &y, sizeof y);
  b->Recv(2, &r, sizeof r);
  HS_CHECK_EQ(r, 9);
  b->Recv(0, &r, sizeof r);
  HS_CHECK_EQ(r, 7);
}

HS_TEST(pipeline_loopback_size_mismatch_and_close) {
  LoopbackHub hub(2);
  auto a = hub.Endpoint(0), b = hub.Endpoint(1);
  int64_t v = 1;
  a->Send(1, &v, sizeof v);
  int32_t small = 0;
  bool threw = false;
  try {
    b->Recv(0, &small, sizeof small);
  } catch (const std::logic_error&) {
    threw = true;
  }
  HS_CHECK(threw);
  threw = false;
  try {
    a->Send(0, &v, sizeof v);  // to itself
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  HS_CHECK(threw);
  // Close wakes a blocked receiver with an error.
  std::atomic<bool> woke{false};
  std::thread rx([&] {
    try {
      b->Recv(0, &v, sizeof v);
    } catch (const std::runtime_error&) {
      woke = true;
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  hub.Close();
  rx.join();
  HS_CHECK(woke.load());
}

namespace {

ModelConfig FiveLayers(ModelConfig c) {
  c.num_layers = 5;
  return c;
}

std::unique_ptr<Engine> MakePipelineEngine(const ModelConfig& cfg, int stages, double fraction) {
  EngineParts parts = test::TinyParts(cfg);
  parts.backend = MakeCpuPipeline(cfg, *parts.weights, *parts.pools, 2, stages);
  return std::make_unique<Engine>(cfg, std::move(parts), fraction);
}

// Greedy tokens and last-step logits of a batch of three prompts, `steps` steps of the whole batch.
std::vector<int32_t> RunBatch(Engine& e, int steps, std::vector<float>* last_logits) {
  const int vocab = e.config().vocab_size;
  std::vector<int64_t> ids;
  for (int i = 0; i < 3; ++i) {
    const auto p = test::Prompt(3 + 4 * i, i + 1, vocab);
    ids.push_back(e.AddSequence(p.data(), (int)p.size(), {}));
  }
  std::vector<int32_t> out;
  for (int s = 0; s < steps; ++s) {
    auto r = e.Step(ids, true);
    out.insert(out.end(), r.tokens.begin(), r.tokens.end());
    *last_logits = r.logits;
  }
  for (int64_t id : ids) e.RemoveSequence(id);
  return out;
}

void CheckStagesMatchOne(const ModelConfig& cfg) {
  std::vector<float> ref_logits, logits;
  auto one = test::MakeCpuEngine(cfg, 64, 64, 0.5);
  const auto ref = RunBatch(*one, 5, &ref_logits);
  for (int stages : {2, 3, 5}) {
    auto e = MakePipelineEngine(cfg, stages, 0.5);
    HS_CHECK(RunBatch(*e, 5, &logits) == ref);
    HS_CHECK(test::RelError(logits.data(), ref_logits.data(), logits.size()) < 1e-6);
    HS_CHECK_EQ(e->totals().weight_bytes_h2d, one->totals().weight_bytes_h2d);
    HS_CHECK_EQ(e->totals().recomputed_tokens, one->totals().recomputed_tokens);
  }
}

}  // namespace

HS_TEST(pipeline_stages_match_one_backend_opt) { CheckStagesMatchOne(FiveLayers(test::TinyOpt())); }
HS_TEST(pipeline_stages_match_one_backend_llama) { CheckStagesMatchOne(FiveLayers(test::TinyLlama(2))); }

// Two slots stepped from two threads at once give the tokens each group gets alone.
HS_TEST(pipeline_steps_in_flight_from_two_threads) {
  const ModelConfig cfg = FiveLayers(test::TinyOpt());
  auto e = MakePipelineEngine(cfg, 3, 0.5);
  std::vector<int64_t> g0, g1;
  for (int i = 0; i < 4; ++i) {
    const auto p = test::Prompt(2 + 3 * i, i + 5, cfg.vocab_size);
    (i % 2 ? g1 : g0).push_back(e->AddSequence(p.data(), (int)p.size(), {}));
  }
  std::vector<int32_t> t0, t1;
  for (int s = 0; s < 6; ++s) {
    e->PrepareStep(g0.data(), (int)g0.size(), false, 0);
    e->PrepareStep(g1.data(), (int)g1.size(), false, 1);
    HS_CHECK(e->busy(0) && e->busy(1) && e->busy());
    std::thread th([&] { e->RunStep(1); });
    e->RunStep(0);
    th.join();
    auto r0 = e->FinishStep(true, 0), r1 = e->FinishStep(true, 1);
    t0.insert(t0.end(), r0.tokens.begin(), r0.tokens.end());
    t1.insert(t1.end(), r1.tokens.begin(), r1.tokens.end());
  }
  HS_CHECK(!e->busy());
  // The same groups, one at a time, on a single-stage engine.
  auto one = test::MakeCpuEngine(cfg, 64, 64, 0.5);
  std::vector<int64_t> h0, h1;
  for (int i = 0; i < 4; ++i) {
    const auto p = test::Prompt(2 + 3 * i, i + 5, cfg.vocab_size);
    (i % 2 ? h1 : h0).push_back(one->AddSequence(p.data(), (int)p.size(), {}));
  }
  std::vector<int32_t> u0, u1;
  for (int s = 0; s < 6; ++s) {
    auto r0 = one->Step(h0), r1 = one->Step(h1);
    u0.insert(u0.end(), r0.tokens.begin(), r0.tokens.end());
    u1.insert(u1.end(), r1.tokens.begin(), r1.tokens.end());
  }
  HS_CHECK(t0 == u0);
  HS_CHECK(t1 == u1);
}

HS_TEST(pipeline_slots_refuse_busy_slot_and_shared_sequence) {
  const ModelConfig cfg = FiveLayers(test::TinyOpt());
  auto e = MakePipelineEngine(cfg, 2, 0);
  const auto p = test::Prompt(5, 1, cfg.vocab_size);
  const int64_t a = e->AddSequence(p.data(), (int)p.size(), {});
  const int64_t b = e->AddSequence(p.data(), (int)p.size(), {});
  e->PrepareStep(&a, 1, false, 2);
  bool busy = false, shared = false, range = false;
  try {
    e->PrepareStep(&b, 1, false, 2);
  } catch (const BusyError&) {
    busy = true;
  }
  try {
    e->PrepareStep(&a, 1, false, 3);
  } catch (const RangeErrorEx&) {
    shared = true;
  }
  try {
    e->PrepareStep(&b, 1, false, Engine::kMaxSlots);
  } catch (const RangeErrorEx&) {
    range = true;
  }
  HS_CHECK(busy && shared && range);
  HS_CHECK(!e->busy(3));
  e->RunStep(2);
  HS_CHECK_EQ(e->FinishStep(true, 2).tokens.size(), (size_t)1);
}

// A step that fails in the first stage fails as a whole, with the first stage's error, and the
// later stages stay in step: the next step runs and gives the single-backend logits.
HS_TEST(pipeline_failed_step_leaves_pipeline_usable) {
  const ModelConfig cfg = FiveLayers(test::TinyLlama(2));
  WeightSource src;
  src.seed = 7;
  PoolConfig pc;
  pc.block_tokens = 4;
  pc.kv_blocks = 4;
  HostWeights w(cfg, src, DType::F32);
  CachePools pools(cfg, pc);
  auto pipe = MakeCpuPipeline(cfg, w, pools, 1, 3);
  cpu::CpuBackend one(cfg, w, pools, 1);
  const int32_t tokens[3] = {5, 6, 7};
  const BlockRef block{CacheKind::KV, pools.Allocate(CacheKind::KV), Tier::Host};
  BatchPlan bad;
  bad.seqs.push_back({1, tokens, 3, 0, &block, 0});  // no block covers the tokens
  StepCounters c;
  std::vector<float> logits(cfg.vocab_size), ref(cfg.vocab_size);
  std::string msg;
  try {
    pipe->Forward(bad, logits.data(), c);
  } catch (const std::logic_error& e) {
    msg = e.what();
  }
  HS_CHECK(msg.find("does not cover") != std::string::npos);
  BatchPlan good;
  good.seqs.push_back({1, tokens, 3, 0, &block, 1});
  pipe->Forward(good, logits.data(), c);
  one.Forward(good, ref.data(), c);
  HS_CHECK(test::RelError(logits.data(), ref.data(), ref.size()) < 1e-6);
}
