// Greedy tokens on the GPU: out[r] = the index of the largest of logits[r, 0..cols), lowest index
// on ties, as core/sampler.h's ArgMax picks it (NaN never wins; a row whose first logit is NaN gives
// 0, as ArgMax does). A greedy step then copies one int per sequence to the host instead of a row of
// vocabulary logits (25.7 MB per OPT step at batch 128), and the host scans nothing.
#pragma once
#include <cuda_runtime.h>

namespace hs::cuda {

void LaunchArgMaxRows(const float* logits, int rows, int cols, int* out, cudaStream_t stream);

}  // namespace hs::cuda
