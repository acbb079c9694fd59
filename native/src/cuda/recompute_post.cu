#include "cuda/recompute_post.cuh"

#include "cuda/cuda_check.h"
#include "cuda/kv_row.cuh"

namespace hs::cuda {
namespace {

__global__ void recompute_post_kernel(const __half* kv, int head_dim, const __half* bk, const __half* bv,
                                      const int* slot_page, const int* slot_pos0, const int* slot_valid, PageGeom geom,
                                      bool rope, float theta) {
  const int r = blockIdx.x;
  const int s = r / geom.block_tokens, t = r % geom.block_tokens;
  if (t >= slot_valid[s]) return;
  const int kv_dim = geom.kv_dim;
  const __half* in = kv + static_cast<size_t>(r) * 2 * kv_dim;
  __half* base = geom.page_ptr(slot_page[s]);
  __half* k_out = base + static_cast<size_t>(t) * kv_dim;
  __half* v_out = k_out + static_cast<size_t>(geom.block_tokens) * kv_dim;
  dev::WriteKvRow(in, in + kv_dim, bk, bv, k_out, v_out, kv_dim, head_dim, rope, slot_pos0[s] + t, theta);
}

}  // namespace

void LaunchRecomputePost(const __half* kv, int act_slots, int head_dim, const __half* bk, const __half* bv,
                         const int* slot_page, const int* slot_pos0, const int* slot_valid, PageGeom geom, bool rope,
                         float theta, cudaStream_t stream) {
  if (act_slots <= 0) return;
  recompute_post_kernel<<<act_slots * geom.block_tokens, 128, 0, stream>>>(kv, head_dim, bk, bv, slot_page, slot_pos0,
                                                                           slot_valid, geom, rope, theta);
  HS_KERNEL_CHECK();
}

}  // namespace hs::cuda
