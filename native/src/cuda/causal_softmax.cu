#include "cuda/causal_softmax.cuh"

#include "cuda/cuda_check.h"
#include "cuda/device_common.cuh"

namespace hs::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;   // rows per block on the warp path
constexpr int kMaxLaneElems = 64;   // scores a lane holds in registers: rows up to 32 × 64 = 2048 columns
constexpr int kBlockThreads = 256;  // fallback: one block per row

// Warp path: one warp per row, the row's scores held in registers (lane `l` holds the V-wide groups
// l, l + 32, ...: K groups of V), so each score is read from global memory once and exp'd once;
// no shared memory or block barriers. V = 4 (float4 loads, 8-byte fp16 stores) when ctx and the
// pointers allow, else V = 1. Needs ctx <= 32 * K * V (the launcher's choice).
template <int V, int K>
__global__ void causal_softmax_warp_kernel(const float* __restrict__ scores, __half* __restrict__ probs, int rows,
                                           int n, int ctx, int start) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32;
  if (row >= rows) return;                          // the whole warp leaves: nothing below syncs the block
  const int limit = min(start + row % n + 1, ctx);  // columns [0, limit) are kept
  const float* s = scores + static_cast<size_t>(row) * ctx;
  __half* p = probs + static_cast<size_t>(row) * ctx;
  float e[K][V];
  float mx = -INFINITY;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    // First column of group k. V divides ctx, so a group that starts inside the row ends inside it.
    const int c0 = (lane + 32 * k) * V;
    if (c0 < limit) {
      dev::LoadFloats<V>(s + c0, e[k]);
#pragma unroll
      for (int t = 0; t < V; ++t) {
        if (c0 + t >= limit) e[k][t] = -INFINITY;
        mx = fmaxf(mx, e[k][t]);
      }
    }
  }
  mx = dev::WarpMax(mx);
  float sum = 0.f;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int c0 = (lane + 32 * k) * V;
#pragma unroll
    for (int t = 0; t < V; ++t) {
      e[k][t] = c0 + t < limit ? __expf(e[k][t] - mx) : 0.f;
      sum += e[k][t];
    }
  }
  sum = dev::WarpSum(sum);
  const float inv = 1.f / sum;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int c0 = (lane + 32 * k) * V;
    if (c0 < ctx) {
      float o[V];
#pragma unroll
      for (int t = 0; t < V; ++t) o[t] = c0 + t < limit ? e[k][t] * inv : 0.f;  // masked columns: 0
      dev::StoreHalves<V>(p + c0, o);
    }
  }
}

// Rows longer than the warp path holds (long prompts): one block per row, the row read three times.
__global__ void causal_softmax_block_kernel(const float* __restrict__ scores, __half* __restrict__ probs, int n,
                                            int ctx, int start) {
  __shared__ float scratch[32];
  const int row = blockIdx.x;
  const int limit = min(start + row % n + 1, ctx);  // columns [0, limit)
  const float* s = scores + static_cast<size_t>(row) * ctx;
  __half* p = probs + static_cast<size_t>(row) * ctx;
  float mx = -INFINITY;
  for (int c = threadIdx.x; c < limit; c += blockDim.x) mx = fmaxf(mx, s[c]);
  mx = dev::BlockMax(mx, scratch);
  float sum = 0.f;
  for (int c = threadIdx.x; c < limit; c += blockDim.x) sum += __expf(s[c] - mx);
  sum = dev::BlockSum(sum, scratch);
  const float inv = 1.f / sum;
  for (int c = threadIdx.x; c < ctx; c += blockDim.x) p[c] = __float2half(c < limit ? __expf(s[c] - mx) * inv : 0.f);
}

// Launches the smallest K (a power of two) with 32 * K * V >= ctx, so that short rows spend no
// registers on groups they do not have; the caller ensures ctx <= 32 * kMaxLaneElems.
template <int V, int K = 1>
void LaunchWarp(const float* scores, __half* probs, int rows, int n, int ctx, int start, cudaStream_t stream) {
  const int blocks = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if constexpr (K * V <= kMaxLaneElems) {
    if (32 * K * V >= ctx) {
      causal_softmax_warp_kernel<V, K><<<blocks, 32 * kWarpsPerBlock, 0, stream>>>(scores, probs, rows, n, ctx, start);
    } else {
      LaunchWarp<V, 2 * K>(scores, probs, rows, n, ctx, start, stream);
    }
  }
}

}  // namespace

void LaunchCausalSoftmax(const float* scores, __half* probs, int heads, int n, int ctx, int start,
                         cudaStream_t stream) {
  const int rows = heads * n;
  if (rows <= 0 || ctx <= 0) return;
  if (ctx <= 32 * kMaxLaneElems) {
    if (ctx % 4 == 0 && dev::IsAligned(scores, 16) && dev::IsAligned(probs, 8)) {
      LaunchWarp<4>(scores, probs, rows, n, ctx, start, stream);
    } else {
      LaunchWarp<1>(scores, probs, rows, n, ctx, start, stream);
    }
  } else {
    causal_softmax_block_kernel<<<rows, kBlockThreads, 0, stream>>>(scores, probs, n, ctx, start);
  }
  HS_KERNEL_CHECK();
}

}  // namespace hs::cuda
