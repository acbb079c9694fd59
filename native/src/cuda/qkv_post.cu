#include "cuda/qkv_post.cuh"

#include "cuda/cuda_check.h"
#include "cuda/kv_row.cuh"

namespace hs::cuda {
namespace {

// One block per row. Q is finished in place and K/V written to the row's page slot by the same
// helpers as recompute_post (kv_row.cuh), which take 16-byte accesses where the row allows.
__global__ void qkv_post_kernel(__half* qkv, int ld, int q_dim, int head_dim, const __half* bqkv, const int* pos,
                                const int* page, const int* slot, PageGeom geom, bool rope, float theta) {
  const int r = blockIdx.x;
  const int kv_dim = geom.kv_dim;
  __half* row = qkv + static_cast<size_t>(r) * ld;
  const int p = pos[r];
  // Q in place; with neither bias nor RoPE it stays as the GEMM wrote it.
  if (rope || bqkv) dev::BiasRopeRow(row, bqkv, row, q_dim, head_dim, rope, p, theta);
  __half* base = geom.page_ptr(page[r]);
  __half* k_out = base + static_cast<size_t>(slot[r]) * kv_dim;
  __half* v_out = k_out + static_cast<size_t>(geom.block_tokens) * kv_dim;
  dev::WriteKvRow(row + q_dim, row + q_dim + kv_dim, bqkv ? bqkv + q_dim : nullptr,
                  bqkv ? bqkv + q_dim + kv_dim : nullptr, k_out, v_out, kv_dim, head_dim, rope, p, theta);
}

}  // namespace

void LaunchQkvPost(__half* qkv, int rows, int ld, int q_dim, int head_dim, const __half* bqkv, const int* pos,
                   const int* page, const int* slot, PageGeom geom, bool rope, float theta, cudaStream_t stream) {
  if (rows <= 0) return;
  qkv_post_kernel<<<rows, 128, 0, stream>>>(qkv, ld, q_dim, head_dim, bqkv, pos, page, slot, geom, rope, theta);
  HS_KERNEL_CHECK();
}

}  // namespace hs::cuda
