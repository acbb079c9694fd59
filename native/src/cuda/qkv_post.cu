#include "cuda/qkv_post.cuh"

#include "cuda/cuda_check.h"
#include "cuda/kv_row.cuh"

namespace hs::cuda {
namespace {

__global__ void qkv_post_kernel(__half* qkv, int ld, int q_dim, int head_dim, const __half* bqkv, const int* pos,
                                const int* page, const int* slot, PageGeom geom, bool rope, float theta) {
  const int r = blockIdx.x;
  const int kv_dim = geom.kv_dim;
  __half* row = qkv + static_cast<size_t>(r) * ld;
  const int p = pos[r];
  // Q in place.
  if (rope) {
    const int half_dim = head_dim / 2;
    for (int t = threadIdx.x; t < q_dim / 2; t += blockDim.x) {
      const int head = t / half_dim, i = t % half_dim;
      const int a = head * head_dim + i, b = a + half_dim;
      float x1 = __half2float(row[a]) + (bqkv ? __half2float(bqkv[a]) : 0.f);
      float x2 = __half2float(row[b]) + (bqkv ? __half2float(bqkv[b]) : 0.f);
      dev::RopePair(x1, x2, i, head_dim, p, theta);
      row[a] = __float2half(x1);
      row[b] = __float2half(x2);
    }
  } else if (bqkv) {
    for (int c = threadIdx.x; c < q_dim; c += blockDim.x)
      row[c] = __float2half(__half2float(row[c]) + __half2float(bqkv[c]));
  }
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
