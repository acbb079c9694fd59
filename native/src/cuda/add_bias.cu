#include "cuda/add_bias.cuh"

#include <algorithm>

#include "cuda/cuda_check.h"

namespace hs::cuda {
namespace {

__global__ void add_bias_kernel(float* h, size_t total, int cols, const __half* bias) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    h[i] += __half2float(bias[i % cols]);
}

}  // namespace

void LaunchAddBias(float* h, int rows, int cols, const __half* bias, cudaStream_t stream) {
  if (rows <= 0 || !bias) return;
  const size_t total = static_cast<size_t>(rows) * cols;
  const int blocks = static_cast<int>(std::min<size_t>((total + 255) / 256, 65535));
  add_bias_kernel<<<blocks, 256, 0, stream>>>(h, total, cols, bias);
  HS_KERNEL_CHECK();
}

}  // namespace hs::cuda
