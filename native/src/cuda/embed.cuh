// Token embedding (+ OPT's learned positions) into the fp32 residual stream.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace hs::cuda {

// h[r] = embed[tokens[r]] (+ pos_embed[positions[r] + pos_offset] when pos_embed != null).
void LaunchEmbed(const int* tokens, const int* positions, const __half* embed, const __half* pos_embed, int pos_offset,
                 float* h, int rows, int cols, cudaStream_t stream);

}  // namespace hs::cuda
