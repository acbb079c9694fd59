// Token sampling over one row of logits, per sequence. The row first goes through the logit
// processors (vLLM's order: min_tokens suppression, logit_bias, repetition/frequency/presence
// penalties), then greedy at temperature 0, else temperature → min_p → top-k → top-p, drawing
// from the sequence's own RNG (so a sequence's draws never depend on its batch mates).
// Logprobs are those of the raw logits (vLLM's default "raw_logprobs"): log_softmax(row).
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

namespace hs {

constexpr int kMaxLogprobs = 20;  // top-N alternatives per token, as vLLM's default max_logprobs

struct SamplingParams {
  float temperature = 0.f;  // 0: greedy
  int top_k = 0;            // 0: no cut
  float top_p = 1.f;        // 1: no cut
  float min_p = 0.f;        // 0: no cut; else drop tokens with p < min_p · p_max
  uint64_t seed = 0;
  float presence_penalty = 0.f;                       // subtracted once from tokens generated so far
  float frequency_penalty = 0.f;                      // subtracted per occurrence in the generated tokens
  float repetition_penalty = 1.f;                     // tokens in prompt or output: positive logits ÷, negative ×
  int min_tokens = 0;                                 // until this many are generated, stop ids cannot be sampled
  std::vector<int32_t> stop_token_ids;                // suppressed while below min_tokens (EOS included by the caller)
  std::vector<std::pair<int32_t, float>> logit_bias;  // added to the logit of each token id
  int logprobs = -1;                                  // -1: none; 0: the sampled token's only; N: also the top N

  // Greedy on the raw logits, no logprobs: the ArgMax of the row is all there is to sampling, so a
  // backend may pick it where the logits are (Backend::ForwardGreedy).
  bool plain_greedy() const { return temperature <= 0.f && !processes_logits() && logprobs < 0; }

  bool processes_logits() const {
    return presence_penalty != 0.f || frequency_penalty != 0.f || repetition_penalty != 1.f || min_tokens > 0 ||
           !logit_bias.empty();
  }
};

// The tokens a sequence holds when it samples: tokens[0, prompt_len) are its prompt (what vLLM's
// repetition penalty also counts), the rest were generated (what every penalty counts).
struct SeqTokens {
  const int32_t* tokens = nullptr;
  int length = 0;
  int prompt_len = 0;
  int generated() const { return length - prompt_len; }
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
  std::vector<float> row;      // processed copy of a logits row
  std::vector<int32_t> count;  // per-vocab occurrence counts, all zero between calls
  std::vector<int32_t> seen;   // ids whose count was touched
};

// Applies the logit processors of `p` to `row` in place (vocab entries), given the sequence's tokens.
void ProcessLogits(float* row, int vocab, const SamplingParams& p, const SeqTokens& seq, SamplerScratch& scratch);

// Samples from already processed logits (temperature, min_p, top-k, top-p).
int SampleToken(const float* logits, int vocab, const SamplingParams& p, Rng& rng, SamplerScratch& scratch);

// Processes a copy of `raw` when any processor is on, then samples. `raw` is left untouched.
int SampleNext(const float* raw, int vocab, const SamplingParams& p, const SeqTokens& seq, Rng& rng,
               SamplerScratch& scratch);

// Log-probabilities under log_softmax(raw): the chosen token's, and the top `n` (id, logprob)
// pairs in descending order (ids ascending on ties) written to top_ids / top_lps.
struct TokenLogprobs {
  float logprob = 0.f;
  int n = 0;
};
TokenLogprobs ComputeLogprobs(const float* raw, int vocab, int chosen, int n, int32_t* top_ids, float* top_lps,
                              SamplerScratch& scratch);

}  // namespace hs
