// out[i] = in[index[i]] for rows of `cols` values: fp32 (each sequence's last token of the residual
// stream, before the final norm) and fp16 (its attention output, for the last layer's compact rows).
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace hs::cuda {

void LaunchGatherRows(const float* in, const int* index, float* out, int rows, int cols, cudaStream_t stream);
void LaunchGatherRows(const __half* in, const int* index, __half* out, int rows, int cols, cudaStream_t stream);

}  // namespace hs::cuda
