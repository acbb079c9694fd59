// LayerNorm (OPT) and RMSNorm (Llama) over rows of the fp32 residual stream, fp16 output.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace hs::cuda {

// out[r] = norm(in[r]) * w (+ b). rms: RMSNorm (b ignored), else LayerNorm. Row strides = cols.
void LaunchNorm(const float* in, __half* out, int rows, int cols, const __half* w, const __half* b, float eps, bool rms,
                cudaStream_t stream);

}  // namespace hs::cuda
