#include "core/sampler.h"

#include <algorithm>
#include <cmath>

#include "core/synthetic.h"

namespace hs {

Rng::Rng(uint64_t seed) {
  uint64_t z = seed;
  for (auto& s : s_) {
    z = splitmix64(z);
    s = z;
  }
}

static inline uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t Rng::Next() {
  const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = Rotl(s_[3], 45);
  return result;
}

double Rng::Uniform() { return (double)(Next() >> 11) * (1.0 / 9007199254740992.0); }

int ArgMax(const float* logits, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (logits[i] > logits[best]) best = i;
  return best;
}

int SampleToken(const float* logits, int vocab, const SamplingParams& p, Rng& rng, SamplerScratch& s) {
  if (p.temperature <= 0.f) return ArgMax(logits, vocab);
  const double inv_t = 1.0 / p.temperature;
  const float top = logits[ArgMax(logits, vocab)];
  const bool cut = (p.top_k > 0 && p.top_k < vocab) || p.top_p < 1.f;
  if (!cut) {  // plain temperature sampling: one pass, no sort
    double sum = 0;
    for (int i = 0; i < vocab; ++i) sum += std::exp((logits[i] - top) * inv_t);
    const double u = rng.Uniform() * sum;
    double acc = 0;
    for (int i = 0; i < vocab; ++i) {
      acc += std::exp((logits[i] - top) * inv_t);
      if (u < acc) return i;
    }
    return ArgMax(logits, vocab);
  }
  // Candidates: tokens within e^-30 of the best one's probability (the rest carry < vocab·1e-13 of
  // the mass and cannot change a top-k/top-p cut), sorted by logit, index ascending on ties.
  const float floor_logit = (float)(top - 30.0 * p.temperature);
  s.idx.clear();
  for (int i = 0; i < vocab; ++i)
    if (logits[i] >= floor_logit) s.idx.push_back(i);
  auto by_logit = [logits](int a, int b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  const int m = (int)s.idx.size();
  const int k = (p.top_k > 0 && p.top_k < m) ? p.top_k : m;
  std::partial_sort(s.idx.begin(), s.idx.begin() + k, s.idx.end(), by_logit);
  // Softmax over the k candidates at the given temperature (in double, max-subtracted).
  s.prob.resize(k);
  double sum = 0;
  for (int i = 0; i < k; ++i) {
    const double e = std::exp((logits[s.idx[i]] - top) * inv_t);
    s.prob[i] = (float)e;
    sum += e;
  }
  // Nucleus: the smallest prefix whose probability mass reaches top_p (at least one token).
  int n = k;
  if (p.top_p < 1.f) {
    double acc = 0;
    for (int i = 0; i < k; ++i) {
      acc += s.prob[i] / sum;
      if (acc >= p.top_p) {
        n = i + 1;
        break;
      }
    }
  }
  double mass = 0;
  for (int i = 0; i < n; ++i) mass += s.prob[i];
  const double u = rng.Uniform() * mass;
  double acc = 0;
  for (int i = 0; i < n; ++i) {
    acc += s.prob[i];
    if (u < acc) return s.idx[i];
  }
  return s.idx[n - 1];
}

}  // namespace hs
