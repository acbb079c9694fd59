// Issue 14: fp8 e4m3 weights (per-output-channel float scale, layout of core/quant.h) → fp16, for
// the weight-staging path on cards without an FP8 GEMM (and as the reference for one that has it).
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace hs::cuda {

// out[r, c] = e4m3(codes[r·cols + c]) · scales[r], rows x cols, row-major. Device pointers.
void LaunchDequantFp8(const uint8_t* codes, const float* scales, int64_t rows, int64_t cols, __half* out,
                      cudaStream_t stream);

}  // namespace hs::cuda
