#include "cuda/dequant_fp8.cuh"

#include <cuda_fp8.h>

#include <algorithm>

#include "cuda/cuda_check.h"

namespace hs::cuda {
namespace {

constexpr int kChunk = 16;  // codes per thread on the vector path: one 16-byte load, two 16-byte stores

// e4m3 → half is exact (every e4m3 value is an fp16 value); the scale is applied in fp32, as on the CPU.
__device__ __forceinline__ __half DequantOne(uint8_t code, float scale) {
  const __half w = __half(__nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(code), __NV_E4M3));
  return __float2half(__half2float(w) * scale);
}

// Vector path (cols % 16 == 0, 16-byte aligned codes and out): the dequantisation runs on its own
// stream next to the step's GEMMs once per streamed layer, so it must take few SM cycles: one row
// division per 16 codes instead of one 64-bit division per code, and wide loads and stores.
__global__ void dequant_fp8_vec_kernel(const uint4* codes, const float* scales, size_t chunks, uint32_t chunks_per_row,
                                       uint4* out) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < chunks;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float scale = scales[i / chunks_per_row];
    const uint4 packed = codes[i];
    const uint8_t* c = reinterpret_cast<const uint8_t*>(&packed);
    alignas(16) __half h[kChunk];
#pragma unroll
    for (int k = 0; k < kChunk; ++k) h[k] = DequantOne(c[k], scale);
    out[2 * i] = *reinterpret_cast<const uint4*>(h);
    out[2 * i + 1] = *reinterpret_cast<const uint4*>(h + 8);
  }
}

// Any shape or alignment: one code per thread, a block row per matrix row (no division at all).
__global__ void dequant_fp8_rows_kernel(const uint8_t* codes, const float* scales, int64_t rows, int64_t cols,
                                        __half* out) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float scale = scales[r];
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) out[r * cols + c] = DequantOne(codes[r * cols + c], scale);
  }
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

void LaunchDequantFp8(const uint8_t* codes, const float* scales, int64_t rows, int64_t cols, __half* out,
                      cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  if (cols % kChunk == 0 && Aligned16(codes) && Aligned16(out)) {
    const size_t chunks = static_cast<size_t>(rows) * (cols / kChunk);
    const int blocks = static_cast<int>(std::min<size_t>((chunks + 255) / 256, 65535));
    dequant_fp8_vec_kernel<<<blocks, 256, 0, stream>>>(reinterpret_cast<const uint4*>(codes), scales, chunks,
                                                       static_cast<uint32_t>(cols / kChunk),
                                                       reinterpret_cast<uint4*>(out));
  } else {
    const int blocks = static_cast<int>(std::min<int64_t>(rows, 65535));
    dequant_fp8_rows_kernel<<<blocks, 256, 0, stream>>>(codes, scales, rows, cols, out);
  }
  HS_KERNEL_CHECK();
}

}  // namespace hs::cuda
