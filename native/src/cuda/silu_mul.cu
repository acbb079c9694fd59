#include "cuda/silu_mul.cuh"

#include <algorithm>

#include "cuda/cuda_check.h"

namespace hs::cuda {
namespace {

__global__ void silu_mul_kernel(const __half* gu, __half* out, size_t total, int ffn) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const size_t r = i / ffn, c = i % ffn;
    const float g = __half2float(gu[r * 2 * ffn + c]);
    const float u = __half2float(gu[r * 2 * ffn + ffn + c]);
    out[i] = __float2half(g / (1.f + __expf(-g)) * u);
  }
}

}  // namespace

void LaunchSiluMul(const __half* gu, __half* out, int rows, int ffn, cudaStream_t stream) {
  if (rows <= 0) return;
  const size_t total = static_cast<size_t>(rows) * ffn;
  const int blocks = static_cast<int>(std::min<size_t>((total + 255) / 256, 65535));
  silu_mul_kernel<<<blocks, 256, 0, stream>>>(gu, out, total, ffn);
  HS_KERNEL_CHECK();
}

}  // namespace hs::cuda
