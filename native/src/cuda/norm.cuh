// LayerNorm (OPT) and RMSNorm (Llama) over rows of the fp32 residual stream, fp16 output.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace hs::cuda {

// out[r] = norm(in[r] - shift) * w (+ b). rms: RMSNorm (b ignored), else LayerNorm. Row strides =
// cols. shift (fp32 [cols], may be null: none) lets a caller normalise a row to which a bias was
// added ahead of time (the engine's FFN-down bias rides in the out-projection's epilogue).
void LaunchNorm(const float* in, __half* out, int rows, int cols, const __half* w, const __half* b, float eps, bool rms,
                cudaStream_t stream, const float* shift = nullptr);

}  // namespace hs::cuda
