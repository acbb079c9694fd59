#include "cuda/gather_rows.cuh"

#include "cuda/cuda_check.h"

namespace hs::cuda {
namespace {

template <typename T>
__global__ void gather_rows_kernel(const T* in, const int* index, T* out, int cols) {
  const T* src = in + static_cast<size_t>(index[blockIdx.x]) * cols;
  T* dst = out + static_cast<size_t>(blockIdx.x) * cols;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) dst[c] = src[c];
}

template <typename T>
void Launch(const T* in, const int* index, T* out, int rows, int cols, cudaStream_t stream) {
  if (rows <= 0) return;
  gather_rows_kernel<T><<<rows, 256, 0, stream>>>(in, index, out, cols);
  HS_KERNEL_CHECK();
}

}  // namespace

void LaunchGatherRows(const float* in, const int* index, float* out, int rows, int cols, cudaStream_t stream) {
  Launch(in, index, out, rows, cols, stream);
}

void LaunchGatherRows(const __half* in, const int* index, __half* out, int rows, int cols, cudaStream_t stream) {
  Launch(in, index, out, rows, cols, stream);
}

}  // namespace hs::cuda
