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
