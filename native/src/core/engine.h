// The engine core: sequences, their block tables over the cache tiers, continuous batching and
// sampling. It owns the weights, pools and backend, and calls Backend::Forward once per step.
//
// Threading: every method except RunStep runs on one "owner" thread (Node's main thread). A step
// is PrepareStep (owner: allocates blocks, builds the plan) → RunStep (any thread: forward pass
// and sampling; touches only the plan's sequences' RNGs and the step buffers) → FinishStep
// (owner: appends tokens, counters, deferred removals). Sequences may be added or removed while a
// step runs; removing one that is in the step is deferred until FinishStep.
//
// Steps in flight: up to kMaxSlots steps, one per slot, may be prepared and run at once on disjoint
// sequence sets (a sequence is in at most one step). Their RunSteps may run on different threads;
// the backend's Forward runs concurrently when it says so (a pipeline: step g on stage s while step
// g+1 is on stage s-1), else one at a time. Block allocation stays on the owner thread.
#pragma once
#include <array>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/block_manager.h"
#include "core/cache_pools.h"
#include "core/sequence.h"
#include "core/weights.h"

namespace hs {

enum class SeqStatus : int32_t { Ok = 0, OutOfBlocks = 1 };

struct SequenceOptions {
  SamplingParams sampling;
  double act_fraction = -1;  // < 0: the engine's fraction at each block allocation
  int prompt_tokens = -1;    // how many of the tokens are the prompt (< 0: all); the rest count as generated
};

struct SequenceInfo {
  int64_t id = 0;
  int length = 0;
  int cached_tokens = 0;
  int prefix_hit_tokens = 0;  // prompt tokens whose cache came from the prefix cache
  int kv_blocks = 0;          // host tier
  int act_blocks = 0;         // host tier
  int gpu_kv_blocks = 0;      // device tier
};

struct StepResult {
  std::vector<int32_t> tokens;  // per id passed; -1 when not Ok
  std::vector<int32_t> status;
  std::vector<float> logits;  // [n, vocab] when asked (zeros for rows that did not run)
  // When a sequence in the step asked for logprobs (top_n >= 0): the sampled token's logprob per
  // id (NaN where none) and top_n (id, logprob) pairs per id, padded with -1 / NaN.
  int top_n = -1;
  std::vector<float> logprobs;
  std::vector<int32_t> top_ids;
  std::vector<float> top_logprobs;
  StepCounters counters;
};

struct EngineParts {
  std::unique_ptr<HostWeights> weights;
  std::unique_ptr<CachePools> pools;
  std::unique_ptr<Backend> backend;
};

class Engine {
 public:
  // `prefix_caching`: reuse the cache of full blocks shared with earlier prompts (BlockManager).
  Engine(const ModelConfig& cfg, EngineParts parts, double act_fraction, bool prefix_caching = false);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const ModelConfig& config() const { return cfg_; }
  const CachePools& pools() const { return *parts_.pools; }
  const BlockManager& blocks() const { return *blocks_; }
  const HostWeights& weights() const { return *parts_.weights; }
  BackendInfo backend_info() const { return parts_.backend->Info(); }
  const StepCounters& totals() const { return totals_; }
  static constexpr int kMaxSlots = 8;
  bool busy() const;  // any slot
  bool busy(int slot) const { return jobs_.at(slot).busy; }

  // Reserves blocks for the prompt. Throws RangeErrorEx for an empty list, ids outside the vocab,
  // a prompt longer than maxPositions, a fraction outside [0, 1], or too few free blocks.
  int64_t AddSequence(const int32_t* tokens, int n, const SequenceOptions& opts);
  void RemoveSequence(int64_t id);  // RangeErrorEx for an unknown id
  SequenceInfo GetSequence(int64_t id) const;
  size_t num_sequences() const { return seqs_.size(); }

  void SetActFraction(double f);  // RangeErrorEx outside [0, 1]
  double act_fraction() const { return act_fraction_; }

  // Steps are split into mini-batches of at most this many staged tokens (core/mini_batches.h), the
  // size the plan's GPU memory was laid out for; 0 (the default): one mini-batch per step.
  // RangeErrorEx when negative.
  void SetMiniBatchTokens(int tokens);
  int mini_batch_tokens() const { return mini_batch_tokens_; }

  // The three phases of one step in `slot` (see the header comment), and all three at once in slot
  // 0. PrepareStep throws BusyError when the slot is busy, RangeErrorEx for a slot outside
  // [0, kMaxSlots) or a sequence that is in another slot's step.
  void PrepareStep(const int64_t* ids, int n, bool want_logits, int slot = 0);
  void RunStep(int slot = 0);
  StepResult FinishStep(bool ran_ok, int slot = 0);
  StepResult Step(const std::vector<int64_t>& ids, bool want_logits = false);

 private:
  Sequence& Find(int64_t id);
  const Sequence& Find(int64_t id) const;
  // Grows the block table to cover `positions` (device tier first, then host KV/ACT); false (table
  // unchanged beyond what fit) if every pool is empty.
  bool EnsureBlocks(Sequence& s, int positions);
  void ReleaseBlocks(Sequence& s);
  // Shares the longest cached prefix of s's prompt (copy-on-write for a fully cached prompt).
  void AttachCachedPrefix(Sequence& s, int matched_blocks);
  int MatchCachedPrefix(const int32_t* tokens, int n, int* idle_matched) const;
  // Publishes s's blocks that became full since the last call, extending its hash chain.
  void PublishFullBlocks(Sequence& s);
  double FractionOf(const Sequence& s) const { return s.act_fraction >= 0 ? s.act_fraction : act_fraction_; }

  ModelConfig cfg_;
  EngineParts parts_;
  std::unique_ptr<BlockManager> blocks_;
  double act_fraction_;
  int mini_batch_tokens_ = 0;
  int64_t next_id_ = 1;
  std::map<int64_t, std::unique_ptr<Sequence>> seqs_;
  StepCounters totals_;
  std::mutex forward_mu_;  // serialises Forward for backends that are not concurrent

  // The steps in flight, one per slot; buffers are reused across steps.
  struct Job {
    bool busy = false;
    std::vector<int64_t> ids;
    std::vector<Sequence*> run;    // sequences that run, in plan order
    std::vector<int> run_index;    // their index in ids
    std::vector<int32_t> status;   // per id
    std::vector<int32_t> sampled;  // per run sequence
    BatchPlan plan;
    std::vector<float> logits;  // [run, vocab]
    bool want_logits = false;
    StepCounters counters;
    SamplerScratch sampler;
    int top_n = -1;                // logprob columns this step (-1: none asked)
    std::vector<float> logprob;    // per run sequence
    std::vector<int32_t> top_ids;  // [run, top_n]
    std::vector<float> top_lps;    // [run, top_n]
  };
  std::array<Job, kMaxSlots> jobs_;
};

}  // namespace hs
