#include "cuda/bias_relu.cuh"

#include "cuda/cuda_check.h"
#include "cuda/device_common.cuh"

namespace hs::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kRowsPerThread = 4;  // each thread reuses its bias values over a few rows

// 2D layout instead of a flat index: x covers the columns (V per thread), y the rows, so no per-element
// `i % cols` and the bias is loaded once per thread. V = 8 (16-byte accesses) when cols and pointers
// allow, else V = 1.
template <int V>
__global__ void bias_relu_kernel(__half* __restrict__ y, int rows, int cols, const __half* __restrict__ bias) {
  const int c = (blockIdx.x * blockDim.x + threadIdx.x) * V;  // first of this thread's V columns
  if (c >= cols) return;
  float b[V];
#pragma unroll
  for (int t = 0; t < V; ++t) b[t] = 0.f;  // no bias: + 0.f, as before (turns -0 into +0)
  if (bias) dev::LoadHalves<V>(bias + c, b);
  for (int r = blockIdx.y * blockDim.y + threadIdx.y; r < rows; r += gridDim.y * blockDim.y) {
    __half* p = y + static_cast<size_t>(r) * cols + c;
    float v[V];
    dev::LoadHalves<V>(p, v);
#pragma unroll
    for (int t = 0; t < V; ++t) v[t] = fmaxf(v[t] + b[t], 0.f);
    dev::StoreHalves<V>(p, v);
  }
}

template <int V>
void Launch(__half* y, int rows, int cols, const __half* bias, cudaStream_t stream) {
  const dev::RowGrid g = dev::RowBiasGrid(cols / V, rows, kThreads, kRowsPerThread);
  bias_relu_kernel<V><<<g.grid, g.block, 0, stream>>>(y, rows, cols, bias);
}

}  // namespace

void LaunchBiasRelu(__half* y, int rows, int cols, const __half* bias, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  if (cols % 8 == 0 && dev::IsAligned(y, 16) && (!bias || dev::IsAligned(bias, 16))) {
    Launch<8>(y, rows, cols, bias, stream);
  } else {
    Launch<1>(y, rows, cols, bias, stream);
  }
  HS_KERNEL_CHECK();
}

}  // namespace hs::cuda
