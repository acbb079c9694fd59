// Issue 14: int4 group-wise weights (groups of kInt4Group = 128 columns, float scale and uint8 zero
// point per group, two codes a byte, layout of core/quant.h) → fp16, for the weight-staging path.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace hs::cuda {

// out[r, c] = (nibble(r, c) − zeros[r, c/128]) · scales[r, c/128]; nibble(r, c) is byte
// codes[r·((cols+1)/2) + c/2], low nibble for even c. Scales/zeros: rows x ceil(cols/128). Device pointers.
void LaunchDequantInt4(const uint8_t* codes, const float* scales, const uint8_t* zeros, int64_t rows, int64_t cols,
                       __half* out, cudaStream_t stream);

}  // namespace hs::cuda
