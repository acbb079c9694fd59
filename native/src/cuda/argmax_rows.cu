#include "cuda/argmax_rows.cuh"

#include "cuda/cuda_check.h"

namespace hs::cuda {
namespace {

constexpr int kThreads = 256;

// (v, i) beats (best, bi) when larger, or equal with a lower index. Every candidate starts from
// (row[0], 0), so a NaN first logit beats nothing and is never beaten (comparisons with NaN are
// false): row 0, as the host's ArgMax gives.
__device__ __forceinline__ void Take(float v, int i, float& best, int& bi) {
  if (v > best || (v == best && i < bi)) {
    best = v;
    bi = i;
  }
}

__global__ void argmax_rows_kernel(const float* __restrict__ logits, int cols, int* __restrict__ out) {
  const float* row = logits + static_cast<size_t>(blockIdx.x) * cols;
  float best = row[0];
  int bi = 0;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) Take(row[c], c, best, bi);
  for (int o = 16; o > 0; o >>= 1)
    Take(__shfl_xor_sync(0xffffffffu, best, o), __shfl_xor_sync(0xffffffffu, bi, o), best, bi);
  __shared__ float warp_best[kThreads / 32];
  __shared__ int warp_index[kThreads / 32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    warp_best[warp] = best;
    warp_index[warp] = bi;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kThreads / 32; ++w) Take(warp_best[w], warp_index[w], best, bi);
    out[blockIdx.x] = bi;
  }
}

}  // namespace

void LaunchArgMaxRows(const float* logits, int rows, int cols, int* out, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  argmax_rows_kernel<<<rows, kThreads, 0, stream>>>(logits, cols, out);
  HS_KERNEL_CHECK();
}

}  // namespace hs::cuda
