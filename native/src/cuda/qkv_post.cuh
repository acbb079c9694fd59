// After the fused QKV GEMM of the new tokens: bias and RoPE on Q (in place) and K, and K/V written
// into each token's page slot, where attention and the cache store read them.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "cuda/page_tier.h"

namespace hs::cuda {

// Every kernel resolves a page index with page_ptr (page_tier.h: staging page or GPU-tier block).
struct PageGeom {
  __half* pages = nullptr;  // staging: [num_pages][2][block_tokens][kv_dim]
  int block_tokens = 16;
  int kv_dim = 0;
  __half* device_pages = nullptr;  // this layer's GPU-tier blocks, same page layout (null: no tier)
  __host__ __device__ size_t page_elems() const { return static_cast<size_t>(2) * block_tokens * kv_dim; }
  __host__ __device__ __half* page_ptr(int page) const {
    return page >= kDevicePage ? device_pages + static_cast<size_t>(page - kDevicePage) * page_elems()
                               : pages + static_cast<size_t>(page) * page_elems();
  }
};

// qkv: [rows, ld] with columns [q | k | v]; bqkv: [q_dim + 2 kv_dim] or null. Per row: position,
// page index and slot in the block.
void LaunchQkvPost(__half* qkv, int rows, int ld, int q_dim, int head_dim, const __half* bqkv, const int* pos,
                   const int* page, const int* slot, PageGeom geom, bool rope, float theta, cudaStream_t stream);

}  // namespace hs::cuda
