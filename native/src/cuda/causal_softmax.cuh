// Row softmax of prefill attention scores with the causal mask: row i of each head (query at
// position start + i) keeps columns 0..start+i. fp32 scores in, fp16 probabilities out (masked
// columns written as 0, so the following P·V GEMM can run over all columns).
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace hs::cuda {

// scores/probs: [heads * n, ctx] row-major.
void LaunchCausalSoftmax(const float* scores, __half* probs, int heads, int n, int ctx, int start, cudaStream_t stream);

}  // namespace hs::cuda
