// Sampling: greedy, temperature frequencies vs softmax, top-k and top-p cuts, reproducibility.
#include <cmath>
#include <vector>

#include "core/sampler.h"
#include "test.h"

using namespace hs;

namespace {
const std::vector<float> kLogits = {1.0f, 3.0f, 2.5f, -1.0f, 0.0f, 2.9f};

std::vector<double> Frequencies(const SamplingParams& p, int draws) {
  Rng rng(p.seed);
  SamplerScratch s;
  std::vector<double> f(kLogits.size(), 0);
  for (int i = 0; i < draws; ++i) f[SampleToken(kLogits.data(), (int)kLogits.size(), p, rng, s)] += 1.0 / draws;
  return f;
}

std::vector<double> Softmax(double t, const std::vector<int>& keep) {
  std::vector<double> p(kLogits.size(), 0);
  double sum = 0;
  for (int i : keep) sum += p[i] = std::exp(kLogits[i] / t);
  for (double& x : p) x /= sum;
  return p;
}
}  // namespace

HS_TEST(sampler_greedy_and_ties) {
  Rng rng(1);
  SamplerScratch s;
  HS_CHECK_EQ(SampleToken(kLogits.data(), 6, {}, rng, s), 1);
  const float tie[3] = {2.f, 5.f, 5.f};
  HS_CHECK_EQ(ArgMax(tie, 3), 1);
}

// ArgMax runs two passes over lanes of 16: against the one-pass scan over rows of every length
// around the lane width, with ties, infinities and NaNs anywhere (a NaN first logit gives 0).
HS_TEST(argmax_matches_the_one_pass_scan) {
  auto scan = [](const std::vector<float>& v) {
    int best = 0;
    for (int i = 1; i < (int)v.size(); ++i)
      if (v[i] > v[best]) best = i;
    return best;
  };
  Rng rng(11);
  for (int n = 1; n <= 70; ++n)
    for (int trial = 0; trial < 40; ++trial) {
      std::vector<float> v(n);
      for (float& x : v) x = (float)(int)(rng.Uniform() * 6) - 3.f;  // few values: many ties
      const int k = (int)(rng.Uniform() * n);
      if (trial % 5 == 1) v[k] = INFINITY;
      if (trial % 5 == 2) v[k] = -INFINITY;
      if (trial % 5 == 3) v[k] = NAN;
      if (trial % 5 == 4) v[0] = NAN;
      HS_CHECK_EQ(ArgMax(v.data(), n), scan(v));
    }
}

HS_TEST(sampler_temperature_matches_softmax) {
  SamplingParams p;
  p.temperature = 0.7f;
  p.seed = 3;
  const auto f = Frequencies(p, 40000);
  const auto want = Softmax(0.7, {0, 1, 2, 3, 4, 5});
  for (size_t i = 0; i < f.size(); ++i) HS_CHECK(std::fabs(f[i] - want[i]) < 0.01);
}

HS_TEST(sampler_top_k_and_top_p_cut_the_tail) {
  SamplingParams p;
  p.temperature = 1.f;
  p.top_k = 2;
  p.seed = 4;
  auto f = Frequencies(p, 20000);
  auto want = Softmax(1.0, {1, 5});  // the two best logits: 3.0 and 2.9
  for (size_t i = 0; i < f.size(); ++i) HS_CHECK(std::fabs(f[i] - want[i]) < 0.015);
  // top-p 0.5: token 1 holds ~0.33, tokens 1+5 ~0.63 ≥ 0.5, so the nucleus is {1, 5}.
  p.top_k = 0;
  p.top_p = 0.5f;
  f = Frequencies(p, 20000);
  for (size_t i = 0; i < f.size(); ++i) HS_CHECK(std::fabs(f[i] - want[i]) < 0.015);
  // A tiny top-p keeps only the best token.
  p.top_p = 0.01f;
  f = Frequencies(p, 1000);
  HS_CHECK_NEAR(f[1], 1.0, 1e-9);
}

HS_TEST(sampler_is_reproducible_per_seed) {
  SamplingParams p;
  p.temperature = 1.2f;
  p.top_p = 0.9f;
  p.seed = 99;
  Rng a(p.seed), b(p.seed), c(p.seed + 1);
  SamplerScratch s;
  std::vector<int> x, y, z;
  for (int i = 0; i < 64; ++i) {
    x.push_back(SampleToken(kLogits.data(), 6, p, a, s));
    y.push_back(SampleToken(kLogits.data(), 6, p, b, s));
    z.push_back(SampleToken(kLogits.data(), 6, p, c, s));
  }
  HS_CHECK(x == y);
  HS_CHECK(x != z);
}

// ---- logit processors, each against a straightforward reference of vLLM's definition ----------
namespace {
constexpr int kVocab = 8;
const std::vector<float> kRow = {1.5f, -0.5f, 2.0f, 0.25f, -2.0f, 3.0f, 0.0f, 1.0f};
// prompt {2, 3, 2}, generated {5, 5, 7}
const std::vector<int32_t> kTokens = {2, 3, 2, 5, 5, 7};
const SeqTokens kSeq{kTokens.data(), (int)kTokens.size(), 3};

std::vector<float> Processed(const SamplingParams& p, SeqTokens seq = kSeq) {
  std::vector<float> row = kRow;
  SamplerScratch s;
  ProcessLogits(row.data(), kVocab, p, seq, s);
  // The scratch counts must be left zeroed for the next call.
  for (int32_t c : s.count) HS_CHECK_EQ(c, 0);
  return row;
}

int CountIn(const std::vector<int32_t>& v, int from, int to, int32_t t) {
  int c = 0;
  for (int i = from; i < to; ++i) c += v[i] == t;
  return c;
}
}  // namespace

HS_TEST(sampler_logit_bias_adds_per_token) {
  SamplingParams p;
  p.logit_bias = {{5, -100.f}, {1, 2.f}};
  const auto row = Processed(p);
  for (int t = 0; t < kVocab; ++t) HS_CHECK_NEAR(row[t], kRow[t] + (t == 5 ? -100.f : t == 1 ? 2.f : 0.f), 1e-6);
  // -100 bans the best token: greedy now picks the runner-up.
  Rng rng(0);
  SamplerScratch s;
  HS_CHECK_EQ(SampleNext(kRow.data(), kVocab, p, kSeq, rng, s), 2);
}

HS_TEST(sampler_presence_and_frequency_penalties_count_generated_tokens_only) {
  SamplingParams p;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  const auto row = Processed(p);
  for (int t = 0; t < kVocab; ++t) {
    const int c = CountIn(kTokens, 3, 6, t);  // prompt tokens (2, 3) are not penalised
    HS_CHECK_NEAR(row[t], kRow[t] - 0.25f * c - (c > 0 ? 0.5f : 0.f), 1e-6);
  }
}

HS_TEST(sampler_repetition_penalty_covers_prompt_and_output) {
  SamplingParams p;
  p.repetition_penalty = 2.f;
  const auto row = Processed(p);
  for (int t = 0; t < kVocab; ++t) {
    const bool seen = CountIn(kTokens, 0, 6, t) > 0;
    const float want = !seen ? kRow[t] : kRow[t] > 0 ? kRow[t] / 2.f : kRow[t] * 2.f;
    HS_CHECK_NEAR(row[t], want, 1e-6);
  }
}

HS_TEST(sampler_min_tokens_suppresses_stop_ids_until_reached) {
  SamplingParams p;
  p.stop_token_ids = {5, 0};
  p.min_tokens = 4;  // 3 generated so far: still suppressed
  auto row = Processed(p);
  for (int t = 0; t < kVocab; ++t) HS_CHECK(t == 5 || t == 0 ? std::isinf(row[t]) && row[t] < 0 : row[t] == kRow[t]);
  p.min_tokens = 3;  // reached: no effect
  row = Processed(p);
  for (int t = 0; t < kVocab; ++t) HS_CHECK_EQ(row[t], kRow[t]);
}

HS_TEST(sampler_min_p_keeps_tokens_above_a_fraction_of_the_best) {
  SamplingParams p;
  p.temperature = 1.f;
  p.min_p = 0.5f;
  p.seed = 11;
  // Reference: softmax, keep p >= 0.5 · p_max, renormalise. kLogits 3.0, 2.9, 2.5 pass (e^-0.5 = 0.61), 1.0 does not.
  std::vector<int> keep;
  for (int i = 0; i < (int)kLogits.size(); ++i)
    if (std::exp(kLogits[i] - 3.0) >= 0.5) keep.push_back(i);
  HS_CHECK_EQ((int)keep.size(), 3);
  const auto f = Frequencies(p, 30000);
  const auto want = Softmax(1.0, keep);
  for (size_t i = 0; i < f.size(); ++i) HS_CHECK(std::fabs(f[i] - want[i]) < 0.012);
}

HS_TEST(sampler_logprobs_are_log_softmax_of_the_raw_row) {
  SamplerScratch s;
  int32_t ids[3];
  float lps[3];
  const TokenLogprobs lp = ComputeLogprobs(kRow.data(), kVocab, 7, 3, ids, lps, s);
  double sum = 0;
  for (float x : kRow) sum += std::exp((double)x);
  HS_CHECK_NEAR(lp.logprob, kRow[7] - std::log(sum), 1e-6);
  HS_CHECK_EQ(lp.n, 3);
  const int want_ids[3] = {5, 2, 0};  // 3.0, 2.0, 1.5
  for (int i = 0; i < 3; ++i) {
    HS_CHECK_EQ(ids[i], want_ids[i]);
    HS_CHECK_NEAR(lps[i], kRow[want_ids[i]] - std::log(sum), 1e-6);
  }
}

HS_TEST(sampler_without_processors_does_not_copy_or_change_the_row) {
  SamplingParams p;
  p.temperature = 0.f;
  HS_CHECK(!p.processes_logits());
  Rng rng(0);
  SamplerScratch s;
  HS_CHECK_EQ(SampleNext(kRow.data(), kVocab, p, kSeq, rng, s), 5);
  HS_CHECK(s.row.empty());
}
