#include "cuda/embed.cuh"

#include "cuda/cuda_check.h"

namespace hs::cuda {
namespace {

__global__ void embed_kernel(const int* __restrict__ tokens, const int* __restrict__ positions,
                             const __half* __restrict__ embed, const __half* __restrict__ pos_embed, int pos_offset,
                             float* __restrict__ h, int cols) {
  const int r = blockIdx.x;
  const __half* e = embed + static_cast<size_t>(tokens[r]) * cols;
  const __half* p = pos_embed ? pos_embed + static_cast<size_t>(positions[r] + pos_offset) * cols : nullptr;
  float* out = h + static_cast<size_t>(r) * cols;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    float v = __half2float(e[c]);
    if (p) v += __half2float(p[c]);
    out[c] = v;
  }
}

}  // namespace

void LaunchEmbed(const int* tokens, const int* positions, const __half* embed, const __half* pos_embed, int pos_offset,
                 float* h, int rows, int cols, cudaStream_t stream) {
  if (rows <= 0) return;
  embed_kernel<<<rows, 256, 0, stream>>>(tokens, positions, embed, pos_embed, pos_offset, h, cols);
  HS_KERNEL_CHECK();
}

}  // namespace hs::cuda
