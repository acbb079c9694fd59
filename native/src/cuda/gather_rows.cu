#include "cuda/gather_rows.cuh"

#include "cuda/cuda_check.h"

namespace hs::cuda {
namespace {

__global__ void gather_rows_kernel(const float* in, const int* index, float* out, int cols) {
  const float* src = in + static_cast<size_t>(index[blockIdx.x]) * cols;
  float* dst = out + static_cast<size_t>(blockIdx.x) * cols;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) dst[c] = src[c];
}

}  // namespace

void LaunchGatherRows(const float* in, const int* index, float* out, int rows, int cols, cudaStream_t stream) {
  if (rows <= 0) return;
  gather_rows_kernel<<<rows, 256, 0, stream>>>(in, index, out, cols);
  HS_KERNEL_CHECK();
}

}  // namespace hs::cuda
