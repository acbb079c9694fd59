// The contract between the engine core (sequences, block tables, pools, sampling) and a compute
// backend (CPU or CUDA). A backend is mechanism only: it runs the model for a planned batch and
// reads/writes the host cache pools; it owns no policy and no sequence state.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/cache_pools.h"
#include "core/sampler.h"
#include "core/types.h"
#include "core/weights.h"

namespace hs {

// One sequence's share of a step: `num_new` tokens at positions [start_pos, start_pos + num_new),
// whose cache goes into `blocks` (a block table that covers every position < start_pos + num_new).
// Positions < start_pos are already cached, each as KV or ACT per its block's kind.
struct SeqPlan {
  int64_t id = 0;
  const int32_t* tokens = nullptr;
  int num_new = 0;
  int start_pos = 0;
  const BlockRef* blocks = nullptr;
  int num_blocks = 0;
};

struct BatchPlan {
  std::vector<SeqPlan> seqs;
  // Mini-batches for the zig-zag schedule (indices into seqs); empty means one mini-batch of all.
  std::vector<std::vector<int>> mini_batches;
};

struct BackendInfo {
  std::string device;       // "cpu" | "cuda"
  std::string device_name;  // e.g. "x86_64 (16 threads, avx512)" or "NVIDIA H100 80GB HBM3"
};

class Backend {
 public:
  virtual ~Backend() = default;
  // Runs the model over each sequence's new tokens, writes their cache into the host pools (as KV
  // or ACT per block kind) and writes the logits of each sequence's LAST new token into
  // logits[i * vocab_size] (i = index in plan.seqs). Adds what it did to `counters`.
  // Throws std::runtime_error on device failure.
  //
  // Who counts what (each figure has one owner, so nothing is counted twice):
  //  - the core (Engine::PrepareStep/RunStep) counts steps, prefill_tokens, decode_tokens and
  //    wall_seconds (it sets wall_seconds to the step's wall time, sampling included; a backend
  //    leaves these four alone);
  //  - the backend counts what only it sees: bytes moved by kind and direction (*_bytes_*), the
  //    phase times (transfer/compute/recompute/idle_seconds) and recomputed_tokens.
  // test/integration/engine-contract.test.ts checks the token counts on every device.
  virtual void Forward(const BatchPlan& plan, float* logits, StepCounters& counters) = 0;
  // A greedy step (every sequence SamplingParams::plain_greedy, no logits asked): like Forward, but
  // only each sequence's ArgMax token (core/sampler.h's: lowest index on ties) goes to tokens[i].
  // This default runs Forward into `scratch` (grown to seqs × vocab) and picks on the host; a
  // backend whose logits live in device memory overrides it, so that one int per sequence crosses
  // to the host instead of a row of vocabulary logits.
  virtual void ForwardGreedy(const BatchPlan& plan, int vocab, int32_t* tokens, std::vector<float>& scratch,
                             StepCounters& counters) {
    const size_t need = plan.seqs.size() * static_cast<size_t>(vocab);
    if (scratch.size() < need) scratch.resize(need);
    Forward(plan, scratch.data(), counters);
    for (size_t i = 0; i < plan.seqs.size(); ++i)
      tokens[i] = ArgMax(scratch.data() + i * static_cast<size_t>(vocab), vocab);
  }
  virtual BackendInfo Info() const = 0;
  // True when Forward may be called from several threads at once, for steps on disjoint sequences
  // (pipeline/pipeline_backend.h); otherwise the engine core runs one Forward at a time.
  virtual bool concurrent_forward() const { return false; }
};

}  // namespace hs
