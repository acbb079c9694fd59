#include "cuda/gather_pages.cuh"

#include "cuda/cuda_check.h"

namespace hs::cuda {
namespace {

__global__ void gather_pages_kernel(const int* page_table, PageGeom geom, __half* k_out, __half* v_out) {
  const int j = blockIdx.x;
  const int bt = geom.block_tokens, kv_dim = geom.kv_dim;
  const __half* kp = geom.page_ptr(page_table[j / bt]) + static_cast<size_t>(j % bt) * kv_dim;
  const __half* vp = kp + static_cast<size_t>(bt) * kv_dim;
  __half* ko = k_out + static_cast<size_t>(j) * kv_dim;
  __half* vo = v_out + static_cast<size_t>(j) * kv_dim;
  for (int c = threadIdx.x; c < kv_dim; c += blockDim.x) {
    ko[c] = kp[c];
    vo[c] = vp[c];
  }
}

}  // namespace

void LaunchGatherPages(const int* page_table, int ctx, PageGeom geom, __half* k_out, __half* v_out,
                       cudaStream_t stream) {
  if (ctx <= 0) return;
  gather_pages_kernel<<<ctx, 256, 0, stream>>>(page_table, geom, k_out, v_out);
  HS_KERNEL_CHECK();
}

}  // namespace hs::cuda
