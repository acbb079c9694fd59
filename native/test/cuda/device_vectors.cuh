// CUDA test helpers: fp16-exact random data, and host vectors to and from device memory. Shared by the
// kernel and GEMM tests (hs_cuda_tests); memory is plain cudaMalloc, freed by the caller.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "cuda/cuda_check.h"

namespace hs::cudatest {

// n values uniform in [-scale, scale], each exactly representable in fp16 (a kernel reading them as
// halves sees the values the float64 references use).
inline std::vector<float> Rand(size_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = __half2float(__float2half(u(g)));
  return v;
}

template <class T>
T* ToDev(const std::vector<T>& v) {
  T* d = nullptr;
  HS_CUDA_CHECK(cudaMalloc(&d, std::max<size_t>(v.size(), 1) * sizeof(T)));
  HS_CUDA_CHECK(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

inline __half* ToDevHalf(const std::vector<float>& v) {
  std::vector<__half> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = __float2half(v[i]);
  return ToDev(h);
}

template <class T>
std::vector<T> FromDev(const T* d, size_t n) {
  std::vector<T> h(n);
  HS_CUDA_CHECK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}

inline std::vector<float> FromDevHalf(const __half* d, size_t n) {
  const std::vector<__half> h = FromDev(d, n);
  std::vector<float> f(n);
  for (size_t i = 0; i < n; ++i) f[i] = __half2float(h[i]);
  return f;
}

}  // namespace hs::cudatest
