#include "core/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

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

// Two passes: the largest value over independent lanes (no loop-carried index, so the compiler
// vectorises it: ~2× the one-pass scan), then its first index. Lanes start at logits[0], so a NaN
// there is never beaten and matches nothing in the second pass: 0, as a one-pass scan gives.
int ArgMax(const float* logits, int n) {
  if (n <= 0) return 0;
  constexpr int kLanes = 16;
  float lane[kLanes];
  for (float& v : lane) v = logits[0];
  int i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) lane[j] = logits[i + j] > lane[j] ? logits[i + j] : lane[j];
  float best = lane[0];
  for (int j = 1; j < kLanes; ++j) best = lane[j] > best ? lane[j] : best;
  for (; i < n; ++i) best = logits[i] > best ? logits[i] : best;
  for (int k = 0; k < n; ++k)
    if (logits[k] == best) return k;
  return 0;
}

void ProcessLogits(float* row, int vocab, const SamplingParams& p, const SeqTokens& seq, SamplerScratch& s) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  if (seq.generated() < p.min_tokens)
    for (int32_t id : p.stop_token_ids)
      if (id >= 0 && id < vocab) row[id] = neg_inf;
  for (const auto& [id, bias] : p.logit_bias)
    if (id >= 0 && id < vocab) row[id] += bias;
  const bool repetition = p.repetition_penalty != 1.f;
  if (!repetition && p.frequency_penalty == 0.f && p.presence_penalty == 0.f) return;
  // Occurrences among the generated tokens in the low bits, presence in the prompt as a flag bit;
  // only the touched entries are visited and reset, so a step costs O(length), not O(vocab).
  constexpr int32_t kInPrompt = 1 << 30;
  if ((int)s.count.size() != vocab) s.count.assign(vocab, 0);
  s.seen.clear();
  auto touch = [&](int32_t t, int32_t add) {
    if (t < 0 || t >= vocab) return;
    if (s.count[t] == 0) s.seen.push_back(t);
    s.count[t] = add == kInPrompt ? (s.count[t] | kInPrompt) : s.count[t] + add;
  };
  if (repetition)
    for (int i = 0; i < seq.prompt_len; ++i) touch(seq.tokens[i], kInPrompt);
  for (int i = seq.prompt_len; i < seq.length; ++i) touch(seq.tokens[i], 1);
  for (int32_t t : s.seen) {
    const int32_t c = s.count[t] & ~kInPrompt;
    if (repetition) row[t] = row[t] > 0 ? row[t] / p.repetition_penalty : row[t] * p.repetition_penalty;
    row[t] -= p.frequency_penalty * (float)c + (c > 0 ? p.presence_penalty : 0.f);
    s.count[t] = 0;
  }
}

int SampleToken(const float* logits, int vocab, const SamplingParams& p, Rng& rng, SamplerScratch& s) {
  if (p.temperature <= 0.f) return ArgMax(logits, vocab);
  const double inv_t = 1.0 / p.temperature;
  const float top = logits[ArgMax(logits, vocab)];
  const bool cut = (p.top_k > 0 && p.top_k < vocab) || p.top_p < 1.f || p.min_p > 0.f;
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
  int k = (p.top_k > 0 && p.top_k < m) ? p.top_k : m;
  std::partial_sort(s.idx.begin(), s.idx.begin() + k, s.idx.end(), by_logit);
  // Softmax over the k candidates at the given temperature (in double, max-subtracted): prob[0] = 1.
  s.prob.resize(k);
  for (int i = 0; i < k; ++i) s.prob[i] = (float)std::exp((logits[s.idx[i]] - top) * inv_t);
  // min_p: keep the prefix whose probability is at least min_p times the best one's (vLLM's rule).
  if (p.min_p > 0.f) {
    int keep = 1;
    while (keep < k && s.prob[keep] >= p.min_p * s.prob[0]) ++keep;
    k = keep;
  }
  double sum = 0;
  for (int i = 0; i < k; ++i) sum += s.prob[i];
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

int SampleNext(const float* raw, int vocab, const SamplingParams& p, const SeqTokens& seq, Rng& rng,
               SamplerScratch& s) {
  if (!p.processes_logits()) return SampleToken(raw, vocab, p, rng, s);
  s.row.assign(raw, raw + vocab);
  ProcessLogits(s.row.data(), vocab, p, seq, s);
  return SampleToken(s.row.data(), vocab, p, rng, s);
}

TokenLogprobs ComputeLogprobs(const float* raw, int vocab, int chosen, int n, int32_t* top_ids, float* top_lps,
                              SamplerScratch& s) {
  const float top = raw[ArgMax(raw, vocab)];
  double sum = 0;
  for (int i = 0; i < vocab; ++i) sum += std::exp((double)raw[i] - top);
  const double lse = top + std::log(sum);
  TokenLogprobs out;
  out.logprob = (float)((double)raw[chosen] - lse);
  out.n = std::clamp(n, 0, std::min(vocab, kMaxLogprobs));
  if (out.n == 0) return out;
  s.idx.resize(vocab);
  for (int i = 0; i < vocab; ++i) s.idx[i] = i;
  auto by_logit = [raw](int a, int b) { return raw[a] > raw[b] || (raw[a] == raw[b] && a < b); };
  std::partial_sort(s.idx.begin(), s.idx.begin() + out.n, s.idx.end(), by_logit);
  for (int i = 0; i < out.n; ++i) {
    top_ids[i] = s.idx[i];
    top_lps[i] = (float)((double)raw[s.idx[i]] - lse);
  }
  return out;
}

}  // namespace hs
