// OPT FFN: in place y = relu(y + b) on the fp16 fc1 output.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace hs::cuda {

void LaunchBiasRelu(__half* y, int rows, int cols, const __half* bias, cudaStream_t stream);

}  // namespace hs::cuda
