#include "cuda/causal_softmax.cuh"

#include "cuda/cuda_check.h"
#include "cuda/device_common.cuh"

namespace hs::cuda {
namespace {

__global__ void causal_softmax_kernel(const float* __restrict__ scores, __half* __restrict__ probs, int n, int ctx,
                                      int start) {
  __shared__ float scratch[32];
  const int row = blockIdx.x;
  const int i = row % n;
  const int limit = start + i + 1;  // columns [0, limit)
  const float* s = scores + static_cast<size_t>(row) * ctx;
  __half* p = probs + static_cast<size_t>(row) * ctx;
  float mx = -INFINITY;
  for (int c = threadIdx.x; c < limit; c += blockDim.x) mx = fmaxf(mx, s[c]);
  mx = dev::BlockMax(mx, scratch);
  float sum = 0.f;
  for (int c = threadIdx.x; c < limit; c += blockDim.x) sum += __expf(s[c] - mx);
  sum = dev::BlockSum(sum, scratch);
  const float inv = 1.f / sum;
  for (int c = threadIdx.x; c < ctx; c += blockDim.x) p[c] = __float2half(c < limit ? __expf(s[c] - mx) * inv : 0.f);
}

}  // namespace

void LaunchCausalSoftmax(const float* scores, __half* probs, int heads, int n, int ctx, int start,
                         cudaStream_t stream) {
  if (heads * n <= 0) return;
  causal_softmax_kernel<<<heads * n, 256, 0, stream>>>(scores, probs, n, ctx, start);
  HS_KERNEL_CHECK();
}

}  // namespace hs::cuda
