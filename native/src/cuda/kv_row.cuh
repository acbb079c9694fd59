// Device helpers: finish one token's K and V rows (bias, RoPE on K) and write them into its page.
// Shared by the new-token path (qkv_post, which also finishes Q with BiasRopeRow) and the
// recompute-from-ACT path (recompute_post), so that both produce bit-identical K/V for the same
// input row. Each element gets the same float operations on the vector and the scalar path, so which
// path a row takes (alignment) never changes its values.
#pragma once
#include <cuda_fp16.h>

#include "cuda/device_common.cuh"

namespace hs::cuda::dev {

// out[c] = in[c] + bias[c] (bias may be null: + 0.f), V columns per access. V = 8 needs dim % 8 == 0
// and 16-byte-aligned pointers.
template <int V>
__device__ __forceinline__ void BiasRowV(const __half* in, const __half* bias, __half* out, int dim) {
  for (int c = threadIdx.x * V; c < dim; c += blockDim.x * V) {
    float x[V], b[V];
    LoadHalves<V>(in + c, x);
#pragma unroll
    for (int t = 0; t < V; ++t) b[t] = 0.f;
    if (bias) LoadHalves<V>(bias + c, b);
#pragma unroll
    for (int t = 0; t < V; ++t) x[t] += b[t];
    StoreHalves<V>(out + c, x);
  }
}

// Bias, then RoPE on each head's pairs (i, i + head_dim/2). A thread takes V consecutive pair indices
// of one head and loads V values at a and V at b. V = 8 needs head_dim % 16 == 0 (so V pairs never
// straddle a head and a, b are multiples of 8), dim % 16 == 0 and 16-byte-aligned pointers.
template <int V>
__device__ __forceinline__ void BiasRopeRowV(const __half* in, const __half* bias, __half* out, int dim, int head_dim,
                                             int pos, float theta) {
  const int half_dim = head_dim / 2;
  for (int p0 = threadIdx.x * V; p0 < dim / 2; p0 += blockDim.x * V) {
    const int head = p0 / half_dim, i0 = p0 % half_dim;
    const int a = head * head_dim + i0, b = a + half_dim;
    float x1[V], x2[V], b1[V], b2[V];
    LoadHalves<V>(in + a, x1);
    LoadHalves<V>(in + b, x2);
#pragma unroll
    for (int t = 0; t < V; ++t) b1[t] = b2[t] = 0.f;
    if (bias) {
      LoadHalves<V>(bias + a, b1);
      LoadHalves<V>(bias + b, b2);
    }
#pragma unroll
    for (int t = 0; t < V; ++t) {
      x1[t] += b1[t];
      x2[t] += b2[t];
      RopePair(x1[t], x2[t], i0 + t, head_dim, pos, theta);
    }
    StoreHalves<V>(out + a, x1);
    StoreHalves<V>(out + b, x2);
  }
}

// One row of dim values: bias (+ RoPE when rope). out may equal in (qkv_post's Q in place: each
// thread reads its values before it writes them, and no two threads share one).
__device__ __forceinline__ void BiasRopeRow(const __half* in, const __half* bias, __half* out, int dim, int head_dim,
                                            bool rope, int pos, float theta) {
  const bool aligned = IsAligned(in, 16) && IsAligned(out, 16) && IsAligned(bias, 16);  // null bias: aligned
  if (rope) {
    if (aligned && head_dim % 16 == 0 && dim % 16 == 0) {
      BiasRopeRowV<8>(in, bias, out, dim, head_dim, pos, theta);
    } else {
      BiasRopeRowV<1>(in, bias, out, dim, head_dim, pos, theta);
    }
  } else {
    if (aligned && dim % 8 == 0) {
      BiasRowV<8>(in, bias, out, dim);
    } else {
      BiasRowV<1>(in, bias, out, dim);
    }
  }
}

// k_in/v_in: the projection outputs (kv_dim each). k_out/v_out: destination rows in the page.
__device__ __forceinline__ void WriteKvRow(const __half* k_in, const __half* v_in, const __half* bk, const __half* bv,
                                           __half* k_out, __half* v_out, int kv_dim, int head_dim, bool rope, int pos,
                                           float theta) {
  BiasRopeRow(k_in, bk, k_out, kv_dim, head_dim, rope, pos, theta);
  BiasRopeRow(v_in, bv, v_out, kv_dim, head_dim, false, pos, theta);
}

}  // namespace hs::cuda::dev
