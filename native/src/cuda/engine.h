// The CUDA engine: runs BatchPlans over weights and cache that live in pinned host memory.
//
// Schedule (DESIGN.md §3, FlexGen's zig-zag with an ACT path): for each layer l, every mini-batch k
// runs before layer l+1. Four streams, ordered by events:
//   weights : layer l+1's weights into one of three device slots while layer l computes
//   cache   : the next (layer, mini-batch) item's KV blocks and ACT blocks into one of three
//             cache buffer sets while the current item computes (copies of runs of consecutive blocks)
//   compute : norm, QKV GEMM, K/V recompute from ACT (cuBLAS), attention, out-proj, FFN
//   store   : the new tokens' cache rows written into the host pools by a row-copy kernel
// Layers [0, resident) stay on the GPU; the others stream. Phase times come from CUDA events.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "core/backend.h"
#include "cuda/host_model.h"

namespace hs::cuda {

struct EngineOptions {
  int device = 0;
  int64_t gpu_memory_bytes = 0;  // 0: free memory minus a margin
  int resident_layers = -1;      // -1: as many as fit after buffers (a quarter of the budget kept for work)
  // Pipeline stages (issue 15): the model's layers are the stage's range (HostModel::layers and the
  // HostCache layer bases hold only those). `embed`: the stage embeds the tokens (the first); else
  // the hidden state comes in through HiddenBuffer. `head`: the stage runs the final norm and LM
  // head (the last); else Forward writes no logits and leaves the hidden state in HiddenBuffer.
  bool embed = true;
  bool head = true;
};

class CudaEngine {
 public:
  CudaEngine(const HostModel& model, const HostCache& cache, const EngineOptions& opts);
  ~CudaEngine();
  CudaEngine(const CudaEngine&) = delete;
  CudaEngine& operator=(const CudaEngine&) = delete;

  // See Backend::Forward. Logits of each sequence's last new token go to logits[i * vocab].
  void Forward(const BatchPlan& plan, float* logits, StepCounters& counters);
  // See Backend::ForwardGreedy: the ArgMax runs on the GPU and only the tokens come back.
  void ForwardGreedy(const BatchPlan& plan, int32_t* tokens, StepCounters& counters);

  // The hidden state [rows, hidden] (fp32, device memory, rows in the step's mini-batch layout
  // order, the same on every stage for the same plan), grown to hold `rows`; and the stream the
  // engine computes on, to which transfers of that buffer are ordered.
  float* HiddenBuffer(int rows);
  void* compute_stream() const;

  std::string device_name() const;
  int resident_layers() const;
  int64_t device_bytes() const;  // GPU memory this engine holds now
  int64_t budget_bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hs::cuda
