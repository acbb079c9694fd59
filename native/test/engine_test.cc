// Engine-level properties: the same tokens and logits at every ACT fraction, equal to no-cache
// recomputation; batched equals unbatched; sampling independent of batch mates; out of blocks.
#include <cstring>

#include "core/errors.h"
#include "test.h"
#include "test_util.h"

using namespace hs;

namespace {

struct Trace {
  std::vector<int32_t> tokens;
  std::vector<std::vector<float>> logits;  // per step
};

// Greedy generation of `steps` tokens for one prompt alone.
Trace Generate(Engine& e, const std::vector<int32_t>& prompt, int steps, const SequenceOptions& o = {}) {
  Trace t;
  const int64_t id = e.AddSequence(prompt.data(), (int)prompt.size(), o);
  for (int s = 0; s < steps; ++s) {
    auto r = e.Step({id}, true);
    t.tokens.push_back(r.tokens[0]);
    t.logits.push_back(r.logits);
  }
  e.RemoveSequence(id);
  return t;
}

void CheckInvariance(const ModelConfig& cfg) {
  const auto prompt = test::Prompt(11, 3, cfg.vocab_size);
  const int steps = 9;  // crosses several 4-token blocks
  auto kv_engine = test::MakeCpuEngine(cfg, 64, 64, 0.0);
  const Trace ref = Generate(*kv_engine, prompt, steps);
  for (double f : {0.25, 0.5, 0.75, 1.0}) {
    auto e = test::MakeCpuEngine(cfg, 64, 64, f);
    const Trace t = Generate(*e, prompt, steps);
    HS_CHECK(t.tokens == ref.tokens);
    for (int s = 0; s < steps; ++s)
      HS_CHECK(test::RelError(t.logits[s].data(), ref.logits[s].data(), cfg.vocab_size) < 1e-4);
    if (f > 0) HS_CHECK(e->totals().recomputed_tokens > 0);
  }
  // No-cache recomputation: a fresh sequence prefilling prompt + generated tokens gives the
  // logits of the corresponding step.
  std::vector<int32_t> all = prompt;
  for (int s = 0; s < steps; ++s) {
    auto e = test::MakeCpuEngine(cfg, 64, 64, 0.5);
    const int64_t id = e->AddSequence(all.data(), (int)all.size(), {});
    auto r = e->Step({id}, true);
    HS_CHECK_EQ(r.tokens[0], ref.tokens[s]);
    HS_CHECK(test::RelError(r.logits.data(), ref.logits[s].data(), cfg.vocab_size) < 1e-4);
    all.push_back(ref.tokens[s]);
  }
}

}  // namespace

HS_TEST(act_fraction_invariance_opt) { CheckInvariance(test::TinyOpt()); }
HS_TEST(act_fraction_invariance_llama_gqa) { CheckInvariance(test::TinyLlama(2)); }
HS_TEST(act_fraction_invariance_llama_mha) { CheckInvariance(test::TinyLlama(4)); }

HS_TEST(batched_equals_unbatched_with_joins) {
  for (const auto& cfg : {test::TinyOpt(), test::TinyLlama()}) {
    const int steps = 6;
    const int lens[4] = {3, 9, 1, 14};
    std::vector<Trace> alone;
    {
      auto e = test::MakeCpuEngine(cfg, 64, 64, 0.5);
      for (int i = 0; i < 4; ++i) alone.push_back(Generate(*e, test::Prompt(lens[i], i, cfg.vocab_size), steps));
    }
    // One engine, sequences 0,1 start together; 2 joins at step 2; 3 joins at step 4; 1 leaves early.
    auto e = test::MakeCpuEngine(cfg, 64, 64, 0.5);
    std::vector<int64_t> ids(4, -1);
    std::vector<Trace> got(4);
    auto add = [&](int i) {
      const auto p = test::Prompt(lens[i], i, cfg.vocab_size);
      ids[i] = e->AddSequence(p.data(), lens[i], {});
    };
    add(0);
    add(1);
    for (int step = 0; step < steps + 4; ++step) {
      if (step == 2) add(2);
      if (step == 4) add(3);
      std::vector<int64_t> run;
      std::vector<int> who;
      for (int i = 0; i < 4; ++i)
        if (ids[i] >= 0 && (int)got[i].tokens.size() < steps) {
          run.push_back(ids[i]);
          who.push_back(i);
        }
      if (run.empty()) break;
      auto r = e->Step(run, true);
      for (size_t k = 0; k < run.size(); ++k) {
        got[who[k]].tokens.push_back(r.tokens[k]);
        got[who[k]].logits.emplace_back(r.logits.begin() + k * cfg.vocab_size,
                                        r.logits.begin() + (k + 1) * cfg.vocab_size);
      }
      for (int i = 0; i < 4; ++i)
        if (ids[i] >= 0 && (int)got[i].tokens.size() == steps) {
          e->RemoveSequence(ids[i]);
          ids[i] = -2;  // done
        }
    }
    for (int i = 0; i < 4; ++i) {
      HS_CHECK(got[i].tokens == alone[i].tokens);
      for (int s = 0; s < steps; ++s)
        HS_CHECK(test::RelError(got[i].logits[s].data(), alone[i].logits[s].data(), cfg.vocab_size) < 1e-4);
    }
    HS_CHECK_EQ(e->pools().free_blocks(CacheKind::KV), 64);
    HS_CHECK_EQ(e->pools().free_blocks(CacheKind::ACT), 64);
  }
}

HS_TEST(sampling_depends_only_on_own_seed) {
  const auto cfg = test::TinyLlama();
  SequenceOptions o;
  o.sampling.temperature = 0.9f;
  o.sampling.top_k = 50;
  o.sampling.top_p = 0.95f;
  o.sampling.seed = 42;
  auto e = test::MakeCpuEngine(cfg, 64, 64, 0.25);
  const auto p = test::Prompt(5, 9, cfg.vocab_size);
  const Trace alone = Generate(*e, p, 8, o);
  // Same sequence next to a noisy neighbour with another seed.
  SequenceOptions other = o;
  other.sampling.seed = 7;
  const auto q = test::Prompt(7, 1, cfg.vocab_size);
  const int64_t a = e->AddSequence(p.data(), 5, o), b = e->AddSequence(q.data(), 7, other);
  std::vector<int32_t> mine, theirs;
  for (int s = 0; s < 8; ++s) {
    auto r = e->Step({b, a});
    theirs.push_back(r.tokens[0]);
    mine.push_back(r.tokens[1]);
  }
  HS_CHECK(mine == alone.tokens);
  // Not greedy: the sampled tokens are not all the argmax ones.
  const Trace greedy = Generate(*e, p, 8);
  HS_CHECK(greedy.tokens != alone.tokens);
}

namespace {
// The CPU backend, counting which entry point the core used.
class CountingBackend : public Backend {
 public:
  explicit CountingBackend(std::unique_ptr<Backend> inner) : inner_(std::move(inner)) {}
  void Forward(const BatchPlan& plan, float* logits, StepCounters& c) override {
    ++forward;
    inner_->Forward(plan, logits, c);
  }
  void ForwardGreedy(const BatchPlan& plan, int vocab, int32_t* tokens, std::vector<float>& scratch,
                     StepCounters& c) override {
    ++greedy;
    inner_->ForwardGreedy(plan, vocab, tokens, scratch, c);
  }
  BackendInfo Info() const override { return inner_->Info(); }
  int forward = 0, greedy = 0;

 private:
  std::unique_ptr<Backend> inner_;
};
}  // namespace

// A step whose sequences are all plain greedy and that asks for no logits goes through
// ForwardGreedy (where a GPU backend picks the tokens on the device); any logprobs, logit
// processing, temperature or a logits request keeps the logits path. Tokens agree either way.
HS_TEST(greedy_steps_let_the_backend_pick) {
  const auto cfg = test::TinyOpt();
  auto plain = test::MakeCpuEngine(cfg, 64, 64, 0.5);
  EngineParts parts;
  WeightSource src;
  src.synthetic = true;
  src.seed = 7;  // MakeCpuEngine's
  PoolConfig pc;
  pc.block_tokens = 4;
  pc.kv_blocks = pc.act_blocks = 64;
  parts.weights = std::make_unique<HostWeights>(cfg, src, DType::F32);
  parts.pools = std::make_unique<CachePools>(cfg, pc);
  auto owned =
      std::make_unique<CountingBackend>(std::make_unique<cpu::CpuBackend>(cfg, *parts.weights, *parts.pools, 2));
  CountingBackend* counting = owned.get();
  parts.backend = std::move(owned);
  auto e = std::make_unique<Engine>(cfg, std::move(parts), 0.5);
  const auto p = test::Prompt(6, 3, cfg.vocab_size);
  const int64_t a = e->AddSequence(p.data(), 6, {}), a2 = plain->AddSequence(p.data(), 6, {});
  for (int s = 0; s < 4; ++s) HS_CHECK(e->Step({a}).tokens == plain->Step({a2}, true).tokens);
  HS_CHECK_EQ(counting->greedy, 4);
  HS_CHECK_EQ(counting->forward, 0);
  e->Step({a}, true);  // logits asked
  SequenceOptions lp;
  lp.sampling.logprobs = 0;
  const int64_t b = e->AddSequence(p.data(), 6, lp);
  e->Step({a, b});  // one sequence wants logprobs
  SequenceOptions biased;
  biased.sampling.logit_bias = {{1, 0.5f}};
  const int64_t c = e->AddSequence(p.data(), 6, biased);
  e->Step({c});
  HS_CHECK_EQ(counting->greedy, 4);
  HS_CHECK_EQ(counting->forward, 3);
}

HS_TEST(out_of_blocks_is_a_status_not_a_crash) {
  const auto cfg = test::TinyOpt();
  auto e = test::MakeCpuEngine(cfg, 2, 1, 0.5, 4);
  const auto p = test::Prompt(4, 0, cfg.vocab_size);
  const int64_t a = e->AddSequence(p.data(), 4, {});  // 1 block
  const int64_t b = e->AddSequence(p.data(), 4, {});  // 1 block
  const int64_t c = e->AddSequence(p.data(), 4, {});  // last block
  auto r = e->Step({a, b, c});
  for (int i = 0; i < 3; ++i) HS_CHECK_EQ(r.status[i], (int)SeqStatus::Ok);
  // Each now holds 5 tokens: the next step needs a second block each and none is free.
  r = e->Step({a, b});
  HS_CHECK_EQ(r.status[0], (int)SeqStatus::OutOfBlocks);
  HS_CHECK_EQ(r.tokens[0], -1);
  e->RemoveSequence(c);
  r = e->Step({a, b});
  HS_CHECK_EQ(r.status[0], (int)SeqStatus::Ok);
  HS_CHECK_EQ(r.status[1], (int)SeqStatus::OutOfBlocks);
  HS_CHECK_EQ(e->GetSequence(b).cached_tokens, 4);  // did not advance
  HS_CHECK_THROWS(e->Step({a, a}), RangeErrorEx);
  HS_CHECK_THROWS(e->Step({12345}), RangeErrorEx);
  const int32_t bad[2] = {1, cfg.vocab_size};
  HS_CHECK_THROWS(e->AddSequence(bad, 2, {}), RangeErrorEx);
  HS_CHECK_THROWS(e->AddSequence(bad, 0, {}), RangeErrorEx);
}

HS_TEST(remove_during_step_is_deferred) {
  const auto cfg = test::TinyOpt();
  auto e = test::MakeCpuEngine(cfg, 8, 8, 0.5, 4);
  const auto p = test::Prompt(6, 0, cfg.vocab_size);
  const int64_t a = e->AddSequence(p.data(), 6, {});
  const int64_t ids[1] = {a};
  e->PrepareStep(ids, 1, false);
  HS_CHECK_THROWS(e->PrepareStep(ids, 1, false), BusyError);
  e->RemoveSequence(a);  // still in the step: blocks stay until FinishStep
  HS_CHECK_EQ(e->pools().free_blocks(CacheKind::KV) + e->pools().free_blocks(CacheKind::ACT), 14);
  e->RunStep();
  auto r = e->FinishStep(true);
  HS_CHECK_EQ(r.status[0], 0);
  HS_CHECK_EQ(e->pools().free_blocks(CacheKind::KV) + e->pools().free_blocks(CacheKind::ACT), 16);
  HS_CHECK_THROWS(e->GetSequence(a), RangeErrorEx);
}

HS_TEST(counters_count_bytes_by_kind) {
  const auto cfg = test::TinyLlama();  // kv_dim 16, hidden 32, 2 layers
  auto e = test::MakeCpuEngine(cfg, 16, 16, 0.5, 4);
  const auto p = test::Prompt(8, 0, cfg.vocab_size);  // blocks: KV, ACT
  const int64_t id = e->AddSequence(p.data(), 8, {});
  auto r = e->Step({id});
  HS_CHECK_EQ(r.counters.prefill_tokens, 8);
  HS_CHECK_EQ(r.counters.kv_bytes_d2h, 4 * 2 * 16 * 4 * 2);  // 4 tokens, K+V, fp32, 2 layers
  HS_CHECK_EQ(r.counters.act_bytes_d2h, 4 * 32 * 4 * 2);
  HS_CHECK_EQ(r.counters.recomputed_tokens, 0);
  r = e->Step({id});  // decode: 4 past KV tokens read, 4 past ACT tokens recomputed
  HS_CHECK_EQ(r.counters.decode_tokens, 1);
  HS_CHECK_EQ(r.counters.kv_bytes_h2d, 4 * 2 * 16 * 4 * 2);
  HS_CHECK_EQ(r.counters.act_bytes_h2d, 4 * 32 * 4 * 2);
  HS_CHECK_EQ(r.counters.recomputed_tokens, 4);
  HS_CHECK(r.counters.weight_bytes_h2d > 0 && r.counters.weight_bytes_h2d <= (int64_t)e->weights().total_bytes());
  HS_CHECK_EQ(e->totals().steps, 2);
}

HS_TEST(config_products_that_overflow_int_are_named) {
  ModelConfig c = test::TinyLlama(2);
  HS_CHECK(ConfigProductsProblem(c).empty());
  c.num_heads = 65536;
  c.num_kv_heads = 2;
  c.head_dim = 32768;  // 2^31: each field is a valid int, the product is not
  HS_CHECK(ConfigProductsProblem(c).find("numHeads x headDim") != std::string::npos);
  c = test::TinyLlama(2);
  c.ffn_size = 1 << 30;  // the gated row 2 x ffn overflows
  HS_CHECK(ConfigProductsProblem(c).find("ffnSize") != std::string::npos);
}
