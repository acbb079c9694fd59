// out[i] = in[index[i]] for fp32 rows (picks each sequence's last token before the final norm).
#pragma once
#include <cuda_runtime.h>

namespace hs::cuda {

void LaunchGatherRows(const float* in, const int* index, float* out, int rows, int cols, cudaStream_t stream);

}  // namespace hs::cuda
