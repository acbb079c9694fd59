// Adds an fp16 bias vector to every row of the fp32 residual stream (after out_proj / fc2 GEMMs,
// which accumulate into the residual with beta = 1).
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace hs::cuda {

void LaunchAddBias(float* h, int rows, int cols, const __half* bias, cudaStream_t stream);

}  // namespace hs::cuda
