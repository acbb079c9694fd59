#include "cuda/dequant_int8.cuh"

#include <algorithm>

#include "cuda/cuda_check.h"

namespace hs::cuda {
namespace {

__global__ void dequant_int8_kernel(const int8_t* codes, const float* scales, size_t total, int64_t cols, __half* out) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    out[i] = __float2half(static_cast<float>(codes[i]) * scales[i / cols]);
}

}  // namespace

void LaunchDequantInt8(const int8_t* codes, const float* scales, int64_t rows, int64_t cols, __half* out,
                       cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  const size_t total = static_cast<size_t>(rows) * cols;
  const int blocks = static_cast<int>(std::min<size_t>((total + 255) / 256, 65535));
  dequant_int8_kernel<<<blocks, 256, 0, stream>>>(codes, scales, total, cols, out);
  HS_KERNEL_CHECK();
}

}  // namespace hs::cuda
