// One pipeline stage: a contiguous layer range [first, last) of the model with its own backend
// instance (CPU: its own thread pool; CUDA: its own engine on its own device). The first stage
// embeds the plan's tokens, the last one runs the final norm and the LM head; between stages the
// hidden state [tokens, hidden] travels through a Transport. Every stage sees the same BatchPlan
// (the block tables are shared: the core allocates once) and touches only its layers' regions of
// the cache pools.
#pragma once
#include <cstddef>

#include "core/backend.h"
#include "pipeline/layer_split.h"

namespace hs::pipeline {

class Stage {
 public:
  virtual ~Stage() = default;
  virtual LayerRange layers() const = 0;
  bool first() const { return layers().first == 0; }
  virtual bool last() const = 0;
  // Bytes of the hidden state of `tokens` rows as it travels between stages.
  virtual size_t hidden_bytes(int tokens) const = 0;
  // The buffer that receives the previous stage's hidden state for a step of `tokens` rows (host
  // memory on the CPU, device memory on a GPU); Run reads it. Valid until the next call.
  virtual void* hidden_in(int tokens) = 0;
  // The hidden state Run left for the next stage (not for the last stage).
  virtual const void* hidden_out() const = 0;
  // Runs the stage's layers over the plan; the last stage writes each sequence's logits (see
  // Backend::Forward). Adds what it moved and its phase times to `counters`.
  virtual void RunStage(const BatchPlan& plan, float* logits, StepCounters& counters) = 0;
  // The device stream the hidden buffers are ordered on (null on the CPU).
  virtual void* stream() { return nullptr; }
  virtual BackendInfo Info() const = 0;
};

// Tokens a step runs (the rows of its hidden state).
inline int PlanTokens(const BatchPlan& plan) {
  int t = 0;
  for (const SeqPlan& s : plan.seqs) t += s.num_new;
  return t;
}

}  // namespace hs::pipeline
