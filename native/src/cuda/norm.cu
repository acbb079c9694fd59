#include "cuda/norm.cuh"

#include "cuda/cuda_check.h"
#include "cuda/device_common.cuh"

namespace hs::cuda {
namespace {

__global__ void norm_kernel(const float* __restrict__ in, __half* __restrict__ out, int cols,
                            const __half* __restrict__ w, const __half* __restrict__ b, float eps, bool rms) {
  __shared__ float scratch[32];
  const float* x = in + static_cast<size_t>(blockIdx.x) * cols;
  __half* y = out + static_cast<size_t>(blockIdx.x) * cols;
  float mean = 0.f;
  if (!rms) {
    float s = 0.f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) s += x[c];
    mean = dev::BlockSum(s, scratch) / cols;
  }
  float ss = 0.f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    const float d = x[c] - mean;
    ss += d * d;
  }
  const float rstd = rsqrtf(dev::BlockSum(ss, scratch) / cols + eps);
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    float v = (x[c] - mean) * rstd * __half2float(w[c]);
    if (!rms && b) v += __half2float(b[c]);
    y[c] = __float2half(v);
  }
}

}  // namespace

void LaunchNorm(const float* in, __half* out, int rows, int cols, const __half* w, const __half* b, float eps, bool rms,
                cudaStream_t stream) {
  if (rows <= 0) return;
  norm_kernel<<<rows, 256, 0, stream>>>(in, out, cols, w, b, eps, rms);
  HS_KERNEL_CHECK();
}

}  // namespace hs::cuda
