// Device helpers shared by several kernels (warp/block reductions, RoPE). Header-only, device code.
#pragma once
#include <cuda_fp16.h>

namespace hs::cuda::dev {

__device__ __forceinline__ float WarpSum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float WarpMax(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the whole block (blockDim.x a multiple of 32, <= 1024). `scratch` holds 32 floats.
__device__ __forceinline__ float BlockSum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = WarpSum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float t = lane < nwarps ? scratch[lane] : 0.f;
  return WarpSum(t);
}

__device__ __forceinline__ float BlockMax(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = WarpMax(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float t = lane < nwarps ? scratch[lane] : -INFINITY;
  return WarpMax(t);
}

// Rotary embedding as in Hugging Face Llama (rotate_half): dims i and i + head_dim/2 form a pair,
// rotated by pos * theta^(-2i/head_dim).
__device__ __forceinline__ void RopePair(float& x1, float& x2, int i, int head_dim, int pos, float theta) {
  const float inv_freq = 1.f / powf(theta, (2.f * i) / head_dim);
  float s, c;
  sincosf(pos * inv_freq, &s, &c);
  const float a = x1, b = x2;
  x1 = a * c - b * s;
  x2 = b * c + a * s;
}

}  // namespace hs::cuda::dev
