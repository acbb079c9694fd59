// Issue 14: int8 weight-only weights (per-output-channel float scale, layout of core/quant.h) →
// fp16, for the weight-staging path.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace hs::cuda {

// out[r, c] = int8(codes[r·cols + c]) · scales[r], rows x cols, row-major. Device pointers.
void LaunchDequantInt8(const int8_t* codes, const float* scales, int64_t rows, int64_t cols, __half* out,
                       cudaStream_t stream);

}  // namespace hs::cuda
