// Token sampling over one row of logits: greedy at temperature 0, else temperature + top-k +
// top-p from the sequence's own RNG (so a sequence's draws never depend on its batch mates).
#pragma once
#include <cstdint>
#include <vector>

namespace hs {

struct SamplingParams {
  float temperature = 0.f;  // 0: greedy
  int top_k = 0;            // 0: no cut
  float top_p = 1.f;        // 1: no cut
  uint64_t seed = 0;
};

// xoshiro256** seeded through splitmix64: small, fast, and reproducible across platforms.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0);
  uint64_t Next();
  double Uniform();  // [0, 1)

 private:
  uint64_t s_[4];
};

// Index of the largest logit (lowest index on ties).
int ArgMax(const float* logits, int n);

// Reusable scratch so that sampling allocates nothing per token once warmed up.
struct SamplerScratch {
  std::vector<int> idx;
  std::vector<float> prob;
};

int SampleToken(const float* logits, int vocab, const SamplingParams& p, Rng& rng, SamplerScratch& scratch);

}  // namespace hs
