// The fp32 CPU backend: runs OPT or Llama over a BatchPlan, reading and writing the cache pools
// directly (the device tier is emulated in host memory; only host-tier blocks count as PCIe bytes) (KV rows as cached;
// K/V of ACT-cached positions recomputed from ACT rows with one GEMM per layer over every ACT token of the step).
// It is also a pipeline Stage: built for a layer range, it runs only those layers, taking the hidden
// state from the previous stage (unless it is the first) and handing it on (unless it is the last).
#pragma once
#include <memory>
#include <vector>

#include "core/backend.h"
#include "cpu/attention.h"
#include "cpu/gemm.h"
#include "cpu/rope.h"
#include "pipeline/stage.h"

namespace hs::cpu {

class CpuBackend : public Backend, public pipeline::Stage {
 public:
  // `weights` and `pools` must outlive the backend and be F32. threads <= 0: hardware concurrency.
  CpuBackend(const ModelConfig& cfg, const HostWeights& weights, CachePools& pools, int threads);
  // A stage of layers [range.first, range.last) (std::invalid_argument for an empty or outside range).
  CpuBackend(const ModelConfig& cfg, const HostWeights& weights, CachePools& pools, int threads,
             pipeline::LayerRange range);
  ~CpuBackend() override;
  void Forward(const BatchPlan& plan, float* logits, StepCounters& counters) override;
  BackendInfo Info() const override;

  // pipeline::Stage: the hidden state is h_ itself (F32 rows), so nothing is copied on either side.
  pipeline::LayerRange layers() const override { return range_; }
  bool last() const override { return range_.last == cfg_.num_layers; }
  size_t hidden_bytes(int tokens) const override { return sizeof(float) * (size_t)tokens * cfg_.hidden_size; }
  void* hidden_in(int tokens) override;
  const void* hidden_out() const override { return h_.data(); }
  void RunStage(const BatchPlan& plan, float* logits, StepCounters& counters) override;
  ThreadPool* pool() { return pool_.get(); }

 private:
  // A GEMM weight: f32 rows, or (weightDtype fp8/int8/int4) a quantised matrix.
  struct Matrix {
    const float* f32 = nullptr;
    QuantView q;
  };
  struct LayerWeights {
    const float *attn_norm_w = nullptr, *attn_norm_b = nullptr;
    Matrix wq, wk, wv, wo;
    const float *bq = nullptr, *bk = nullptr, *bv = nullptr, *bo = nullptr;
    const float *ffn_norm_w = nullptr, *ffn_norm_b = nullptr;
    Matrix w1, w2;  // OPT
    const float *b1 = nullptr, *b2 = nullptr;
    Matrix wg, wu, wd;  // Llama
  };
  // Where a cached (past) position's K/V comes from, resolved once per step.
  struct PastRow {
    BlockRef block;   // host KV, host ACT or device KV (the emulated device tier: read in place)
    int32_t offset;   // row within the block
    int32_t act_row;  // row in the recompute buffers when kind == ACT
  };

  void LoadLayers(const HostWeights& w);
  // C[M,N] = beta·C + A·Wᵀ (+ bias): gemm_nt or, for a quantised W, gemm_nt_q (one branch per GEMM).
  void Linear(int M, int N, int K, const float* A, const Matrix& w, float* C, float beta, const float* bias);
  void Norm(const float* x, float* out, int rows, const float* w, const float* b) const;
  void Ffn(int T, const LayerWeights& lw);
  template <class T>
  static void Reserve(std::vector<T>& v, size_t n) {
    if (v.size() < n) v.resize(n);
  }

  ModelConfig cfg_;
  pipeline::LayerRange range_;
  CachePools& pools_;
  std::unique_ptr<ThreadPool> pool_;
  std::vector<LayerWeights> layers_;
  const float *embed_ = nullptr, *pos_embed_ = nullptr, *final_w_ = nullptr, *final_b_ = nullptr, *lm_head_ = nullptr;
  RopeTable rope_;
  int64_t weight_bytes_per_forward_ = 0;

  // Step scratch, grown on demand and reused (no per-token allocation in the hot path).
  std::vector<float> h_, x_, q_, k_, v_, attn_, ff_, ff2_, act_in_, kr_, vr_, last_;
  std::vector<int32_t> tok_pos_;
  std::vector<BlockRef> tok_block_;
  std::vector<PastRow> past_;  // per sequence, positions [0, start)
  std::vector<int> past_off_, tok_off_;
  std::vector<const float*> kptr_, vptr_;
  std::vector<AttnSeq> attn_seqs_;
  AttnScratch attn_scratch_;
};

}  // namespace hs::cpu
