#include "cuda/bias_relu.cuh"

#include <algorithm>

#include "cuda/cuda_check.h"

namespace hs::cuda {
namespace {

__global__ void bias_relu_kernel(__half* y, size_t total, int cols, const __half* bias) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    float v = __half2float(y[i]) + (bias ? __half2float(bias[i % cols]) : 0.f);
    y[i] = __float2half(fmaxf(v, 0.f));
  }
}

}  // namespace

void LaunchBiasRelu(__half* y, int rows, int cols, const __half* bias, cudaStream_t stream) {
  if (rows <= 0) return;
  const size_t total = static_cast<size_t>(rows) * cols;
  const int blocks = static_cast<int>(std::min<size_t>((total + 255) / 256, 65535));
  bias_relu_kernel<<<blocks, 256, 0, stream>>>(y, total, cols, bias);
  HS_KERNEL_CHECK();
}

}  // namespace hs::cuda
