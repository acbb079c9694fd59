// Device helpers shared by several kernels (warp/block reductions, RoPE, vector access). Header-only.
#pragma once
#include <cuda_fp16.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace hs::cuda::dev {

// ---- vector access for the memory-bound elementwise kernels ----------------------------------------
// One 16-byte access per thread (8 fp16 or 4 fp32) is what keeps enough bytes in flight to saturate
// HBM; 2-byte scalar accesses reach a fraction of it. A vector path is only correct on aligned
// addresses, so every launcher (or kernel, per row) checks sizes and pointers with IsAligned and keeps
// a scalar path (V = 1) for the rest. The conversions are the scalar ones element by element
// (__half22float2 == __half2float per half, __floats2half2_rn == __float2half: both round to nearest
// even), so a vector path gives bit-identical results.

__host__ __device__ __forceinline__ bool IsAligned(const void* p, size_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

// The integer vector type of one access of V fp16 (2V bytes): a load or store of a struct of __half2
// would be split into 4-byte accesses, one of uint4/uint2 is a single 16/8-byte access.
template <int V>
struct HalfVecBits;
template <>
struct HalfVecBits<4> {
  using type = uint2;
};
template <>
struct HalfVecBits<8> {
  using type = uint4;
};

// f[0..V) = p[0..V) as floats. V in {1, 4, 8}; p aligned to 2V bytes.
template <int V>
__device__ __forceinline__ void LoadHalves(const __half* p, float (&f)[V]) {
  if constexpr (V == 1) {
    f[0] = __half2float(*p);
  } else {
    using Bits = typename HalfVecBits<V>::type;
    const Bits bits = *reinterpret_cast<const Bits*>(p);
    const __half2* h = reinterpret_cast<const __half2*>(&bits);
#pragma unroll
    for (int i = 0; i < V / 2; ++i) {
      const float2 t = __half22float2(h[i]);
      f[2 * i] = t.x;
      f[2 * i + 1] = t.y;
    }
  }
}

// p[0..V) = f[0..V) rounded to fp16. V in {1, 4, 8}; p aligned to 2V bytes.
template <int V>
__device__ __forceinline__ void StoreHalves(__half* p, const float (&f)[V]) {
  if constexpr (V == 1) {
    *p = __float2half(f[0]);
  } else {
    using Bits = typename HalfVecBits<V>::type;
    Bits bits;
    __half2* h = reinterpret_cast<__half2*>(&bits);
#pragma unroll
    for (int i = 0; i < V / 2; ++i) h[i] = __floats2half2_rn(f[2 * i], f[2 * i + 1]);
    *reinterpret_cast<Bits*>(p) = bits;
  }
}

// f[0..V) = p[0..V). V in {1, 4}; p aligned to 4V bytes.
template <int V>
__device__ __forceinline__ void LoadFloats(const float* p, float (&f)[V]) {
  if constexpr (V == 1) {
    f[0] = *p;
  } else {
    static_assert(V == 4, "fp32 vectors are float4");
    const float4 t = *reinterpret_cast<const float4*>(p);
    f[0] = t.x;
    f[1] = t.y;
    f[2] = t.z;
    f[3] = t.w;
  }
}

template <int V>
__device__ __forceinline__ void StoreFloats(float* p, const float (&f)[V]) {
  if constexpr (V == 1) {
    *p = f[0];
  } else {
    static_assert(V == 4, "fp32 vectors are float4");
    *reinterpret_cast<float4*>(p) = make_float4(f[0], f[1], f[2], f[3]);
  }
}

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
// The multiply-adds are spelled out as intrinsics: written as `a * c - b * s`, the compiler chooses
// per call site whether and how to fuse them into an FMA, so the same row could round differently in
// qkv_post and recompute_post (they must agree bit for bit), or after a loop is unrolled. These are
// the forms the plain expressions compiled to before (checked bit for bit on an H200).
__device__ __forceinline__ void RopePair(float& x1, float& x2, int i, int head_dim, int pos, float theta) {
  const float inv_freq = 1.f / powf(theta, (2.f * i) / head_dim);
  float s, c;
  sincosf(__fmul_rn(static_cast<float>(pos), inv_freq), &s, &c);
  const float a = x1, b = x2;
  x1 = __fmaf_rn(a, c, -__fmul_rn(b, s));
  x2 = __fmaf_rn(b, c, __fmul_rn(a, s));
}

}  // namespace hs::cuda::dev
