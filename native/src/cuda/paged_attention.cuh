// Attention of new tokens over a sequence's paged K/V (decode, and short chunks of prefill).
// One thread block per (query row, head); its warps split the keys and merge their online-softmax
// partials at the end. Causal: row r attends positions 0..row_pos[r].
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "cuda/qkv_post.cuh"

namespace hs::cuda {

struct AttnRows {
  const int* row_seq = nullptr;     // mini-batch-local sequence of each row
  const int* row_pos = nullptr;     // position of each row's token
  const int* seq_pt_off = nullptr;  // per sequence: offset of its page list in page_table
  const int* page_table = nullptr;  // page index of each of a sequence's blocks, in order
};

constexpr int kMaxHeadDim = 256;

// q: [rows, ldq] (head h at column h*head_dim); out: [rows, ldo].
void LaunchPagedAttention(const __half* q, int ldq, __half* out, int ldo, int rows, int num_heads, int num_kv_heads,
                          int head_dim, float scale, AttnRows meta, PageGeom geom, cudaStream_t stream);

}  // namespace hs::cuda
