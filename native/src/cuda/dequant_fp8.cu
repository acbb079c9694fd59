#include "cuda/dequant_fp8.cuh"

#include <cuda_fp8.h>

#include <algorithm>

#include "cuda/cuda_check.h"

namespace hs::cuda {
namespace {

__global__ void dequant_fp8_kernel(const uint8_t* codes, const float* scales, size_t total, int64_t cols, __half* out) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    // e4m3 → half is exact (every e4m3 value is an fp16 value); the scale is applied in fp32.
    const __half w = __half(__nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(codes[i]), __NV_E4M3));
    out[i] = __float2half(__half2float(w) * scales[i / cols]);
  }
}

}  // namespace

void LaunchDequantFp8(const uint8_t* codes, const float* scales, int64_t rows, int64_t cols, __half* out,
                      cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  const size_t total = static_cast<size_t>(rows) * cols;
  const int blocks = static_cast<int>(std::min<size_t>((total + 255) / 256, 65535));
  dequant_fp8_kernel<<<blocks, 256, 0, stream>>>(codes, scales, total, cols, out);
  HS_KERNEL_CHECK();
}

}  // namespace hs::cuda
