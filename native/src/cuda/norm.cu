#include "cuda/norm.cuh"

#include "cuda/cuda_check.h"
#include "cuda/device_common.cuh"

namespace hs::cuda {
namespace {

constexpr int kMaxThreads = 256;
// float4s per thread that the register path holds: 256 × 16 × 4 = 16384 columns (hidden 9216 needs
// 9). Wider rows take the scalar kernel.
constexpr int kMaxVecs = 16;

// One output element, the same float operations in both kernels.
__device__ __forceinline__ float NormElem(float x, float mean, float rstd, float w, float b, bool add_b) {
  float v = (x - mean) * rstd * w;
  if (add_b) v += b;
  return v;
}

// Register path: one block per row, each thread holds kVecs float4 of the row, so the row is read
// from global memory once (float4 loads) instead of three times (mean, variance, output); the fp16
// output and weights move 4 at a time (8 bytes). Needs cols % 4 == 0 and aligned pointers, and
// blockDim.x * kVecs * 4 >= cols (the launcher's choice).
template <int kVecs>
__global__ void norm_vec_kernel(const float* __restrict__ in, __half* __restrict__ out, int cols,
                                const __half* __restrict__ w, const __half* __restrict__ b, float eps, bool rms,
                                const float* __restrict__ shift) {
  __shared__ float scratch[32];
  const int nvec = cols / 4;
  const float* x = in + static_cast<size_t>(blockIdx.x) * cols;
  __half* y = out + static_cast<size_t>(blockIdx.x) * cols;
  float v[kVecs][4];
  float s = 0.f;
#pragma unroll
  for (int k = 0; k < kVecs; ++k) {
    const int j = threadIdx.x + k * blockDim.x;  // float4 index in the row
    if (j < nvec) {
      dev::LoadFloats<4>(x + 4 * j, v[k]);
      if (shift) {
        float sh[4];
        dev::LoadFloats<4>(shift + 4 * j, sh);
#pragma unroll
        for (int t = 0; t < 4; ++t) v[k][t] -= sh[t];
      }
      s += (v[k][0] + v[k][1]) + (v[k][2] + v[k][3]);
    }
  }
  float mean = 0.f;
  if (!rms) mean = dev::BlockSum(s, scratch) / cols;
  float ss = 0.f;
#pragma unroll
  for (int k = 0; k < kVecs; ++k) {
    if (threadIdx.x + k * blockDim.x < nvec) {
#pragma unroll
      for (int t = 0; t < 4; ++t) {
        const float d = v[k][t] - mean;
        ss += d * d;
      }
    }
  }
  const float rstd = rsqrtf(dev::BlockSum(ss, scratch) / cols + eps);
  const bool add_b = !rms && b;
#pragma unroll
  for (int k = 0; k < kVecs; ++k) {
    const int j = threadIdx.x + k * blockDim.x;
    if (j < nvec) {
      float wv[4], bv[4] = {0.f, 0.f, 0.f, 0.f}, o[4];
      dev::LoadHalves<4>(w + 4 * j, wv);
      if (add_b) dev::LoadHalves<4>(b + 4 * j, bv);
#pragma unroll
      for (int t = 0; t < 4; ++t) o[t] = NormElem(v[k][t], mean, rstd, wv[t], bv[t], add_b);
      dev::StoreHalves<4>(y + 4 * j, o);
    }
  }
}

// Any cols and alignment (and rows wider than the register path holds): one block per row, the row
// read three times.
__global__ void norm_scalar_kernel(const float* __restrict__ in, __half* __restrict__ out, int cols,
                                   const __half* __restrict__ w, const __half* __restrict__ b, float eps, bool rms,
                                   const float* __restrict__ shift) {
  __shared__ float scratch[32];
  const float* x = in + static_cast<size_t>(blockIdx.x) * cols;
  __half* y = out + static_cast<size_t>(blockIdx.x) * cols;
  auto at = [&](int c) { return shift ? x[c] - shift[c] : x[c]; };
  float mean = 0.f;
  if (!rms) {
    float s = 0.f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) s += at(c);
    mean = dev::BlockSum(s, scratch) / cols;
  }
  float ss = 0.f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    const float d = at(c) - mean;
    ss += d * d;
  }
  const float rstd = rsqrtf(dev::BlockSum(ss, scratch) / cols + eps);
  const bool add_b = !rms && b;
  for (int c = threadIdx.x; c < cols; c += blockDim.x)
    y[c] = __float2half(NormElem(at(c), mean, rstd, __half2float(w[c]), add_b ? __half2float(b[c]) : 0.f, add_b));
}

// Instantiates the register kernel for exactly `vecs` float4 per thread (1..kMaxVecs), so that no
// registers are spent on float4s a row does not have.
template <int K>
void LaunchVec(int vecs, int rows, int threads, const float* in, __half* out, int cols, const __half* w,
               const __half* b, float eps, bool rms, const float* shift, cudaStream_t stream) {
  if constexpr (K <= kMaxVecs) {
    if (vecs == K) {
      norm_vec_kernel<K><<<rows, threads, 0, stream>>>(in, out, cols, w, b, eps, rms, shift);
    } else {
      LaunchVec<K + 1>(vecs, rows, threads, in, out, cols, w, b, eps, rms, shift, stream);
    }
  }
}

}  // namespace

void LaunchNorm(const float* in, __half* out, int rows, int cols, const __half* w, const __half* b, float eps, bool rms,
                cudaStream_t stream, const float* shift) {
  if (rows <= 0 || cols <= 0) return;
  const int nvec = cols / 4;
  const int vecs = (nvec + kMaxThreads - 1) / kMaxThreads;  // float4s per thread
  const bool aligned = cols % 4 == 0 && dev::IsAligned(in, 16) && dev::IsAligned(out, 8) && dev::IsAligned(w, 8) &&
                       (rms || !b || dev::IsAligned(b, 8)) && (!shift || dev::IsAligned(shift, 16));
  if (aligned && vecs <= kMaxVecs) {
    // Fewest threads (a multiple of 32, as BlockSum needs) with threads * vecs >= nvec: <= 256.
    const int threads = ((nvec + vecs - 1) / vecs + 31) / 32 * 32;
    LaunchVec<1>(vecs, rows, threads, in, out, cols, w, b, eps, rms, shift, stream);
  } else {
    norm_scalar_kernel<<<rows, kMaxThreads, 0, stream>>>(in, out, cols, w, b, eps, rms, shift);
  }
  HS_KERNEL_CHECK();
}

}  // namespace hs::cuda
