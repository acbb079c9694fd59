#include "cuda/dequant_int4.cuh"

#include <algorithm>

#include "core/quant.h"
#include "cuda/cuda_check.h"

namespace hs::cuda {
namespace {

__global__ void dequant_int4_kernel(const uint8_t* codes, const float* scales, const uint8_t* zeros, size_t total,
                                    int64_t cols, __half* out) {
  const int64_t stride = (cols + 1) / 2, groups = (cols + kInt4Group - 1) / kInt4Group;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int64_t r = static_cast<int64_t>(i / cols), c = static_cast<int64_t>(i % cols);
    const int q = (codes[r * stride + c / 2] >> (4 * (c & 1))) & 0xf;
    const int64_t g = r * groups + c / kInt4Group;
    out[i] = __float2half(static_cast<float>(q - zeros[g]) * scales[g]);
  }
}

}  // namespace

void LaunchDequantInt4(const uint8_t* codes, const float* scales, const uint8_t* zeros, int64_t rows, int64_t cols,
                       __half* out, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  const size_t total = static_cast<size_t>(rows) * cols;
  const int blocks = static_cast<int>(std::min<size_t>((total + 255) / 256, 65535));
  dequant_int4_kernel<<<blocks, 256, 0, stream>>>(codes, scales, zeros, total, cols, out);
  HS_KERNEL_CHECK();
}

}  // namespace hs::cuda
