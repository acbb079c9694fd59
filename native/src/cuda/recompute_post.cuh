// After the K/V recompute GEMM over ACT blocks: bias and RoPE on K, rows written into the pages of
// the blocks they came from. Only the cached rows of each block (t < valid) are written, so the
// new tokens' slots (written by qkv_post) are never overwritten.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "cuda/qkv_post.cuh"

namespace hs::cuda {

// kv: [act_slots * block_tokens, 2 kv_dim] ([k | v] per row). Per ACT slot: destination page, the
// position of its first token and the number of valid cached rows.
void LaunchRecomputePost(const __half* kv, int act_slots, int head_dim, const __half* bk, const __half* bv,
                         const int* slot_page, const int* slot_pos0, const int* slot_valid, PageGeom geom, bool rope,
                         float theta, cudaStream_t stream);

}  // namespace hs::cuda
