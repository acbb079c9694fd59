#include "cuda/add_bias.cuh"

#include "cuda/cuda_check.h"
#include "cuda/device_common.cuh"

namespace hs::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kRowsPerThread = 4;  // each thread reuses its bias values over a few rows

// 2D layout instead of a flat index: x covers the columns (V per thread), y the rows, so no per-element
// `i % cols` and the bias is loaded once per thread. V = 4 (float4, 16-byte accesses to the residual)
// when cols and pointers allow, else V = 1.
template <int V>
__global__ void add_bias_kernel(float* __restrict__ h, int rows, int cols, const __half* __restrict__ bias) {
  const int c = (blockIdx.x * blockDim.x + threadIdx.x) * V;  // first of this thread's V columns
  if (c >= cols) return;
  float b[V];
  dev::LoadHalves<V>(bias + c, b);
  for (int r = blockIdx.y * blockDim.y + threadIdx.y; r < rows; r += gridDim.y * blockDim.y) {
    float* p = h + static_cast<size_t>(r) * cols + c;
    float v[V];
    dev::LoadFloats<V>(p, v);
#pragma unroll
    for (int t = 0; t < V; ++t) v[t] += b[t];
    dev::StoreFloats<V>(p, v);
  }
}

template <int V>
void Launch(float* h, int rows, int cols, const __half* bias, cudaStream_t stream) {
  const dev::RowGrid g = dev::RowBiasGrid(cols / V, rows, kThreads, kRowsPerThread);
  add_bias_kernel<V><<<g.grid, g.block, 0, stream>>>(h, rows, cols, bias);
}

}  // namespace

void LaunchAddBias(float* h, int rows, int cols, const __half* bias, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0 || !bias) return;
  if (cols % 4 == 0 && dev::IsAligned(h, 16) && dev::IsAligned(bias, 8)) {
    Launch<4>(h, rows, cols, bias, stream);
  } else {
    Launch<1>(h, rows, cols, bias, stream);
  }
  HS_KERNEL_CHECK();
}

}  // namespace hs::cuda
