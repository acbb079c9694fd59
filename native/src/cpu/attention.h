// Causal multi-head / grouped-query attention over paged keys and values (fp32).
// Each sequence supplies per-position row pointers into wherever its K/V live (KV blocks of the
// host pool, rows recomputed from ACT, or this step's fresh rows), so nothing is copied.
#pragma once
#include <vector>

namespace hs::cpu {

class ThreadPool;

struct AttnSeq {
  int num_new = 0;  // query tokens at positions [start, start + num_new)
  int start = 0;
  const float* q = nullptr;         // [num_new, num_heads * head_dim]
  float* out = nullptr;             // [num_new, num_heads * head_dim]
  const float* const* k = nullptr;  // start + num_new pointers to rows [num_kv_heads * head_dim]
  const float* const* v = nullptr;
};

struct AttnShape {
  int num_heads = 0, num_kv_heads = 0, head_dim = 0;
  float scale = 1.f;  // applied to q·k (head_dim^-0.5)
};

// Reused between calls so that attention allocates nothing once warmed up.
struct AttnScratch {
  std::vector<std::vector<float>> scores;  // one per work chunk
};

// Parallel over (sequence, head) on `pool` (nullptr = caller thread).
void Attention(const AttnSeq* seqs, int num_seqs, const AttnShape& shape, ThreadPool* pool, AttnScratch& scratch);

}  // namespace hs::cpu
