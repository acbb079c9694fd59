// ProbeDevice: what the planner needs to know about this GPU and its link: pinned H2D/D2H
// bandwidth (256 MiB copies) and the fp16 GEMM rate with fp32 accumulation (the recompute GEMM's
// precision), each timed with CUDA events after a warm-up.
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_check.h"
#include "cuda/gemm.h"
#include "cuda/stream_timing.h"

namespace hs::cuda {
namespace {

// Bytes per second of `reps` copies of `bytes`.
double CopyRate(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s, int reps) {
  const double ms = MeanMsOnStream(s, reps, [&] { HS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, s)); });
  return static_cast<double>(bytes) / (ms / 1e3);
}

}  // namespace

CudaProbe ProbeDevice(int device) {
  HS_CUDA_CHECK(cudaSetDevice(device));
  CudaProbe r;
  cudaStream_t s;
  HS_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  const size_t bytes = size_t{256} << 20;
  void* host = PinnedAlloc(bytes);
  void* dev = nullptr;
  if (!host) throw std::runtime_error("probe: cannot allocate pinned memory");
  HS_CUDA_CHECK(cudaMalloc(&dev, bytes));
  r.h2d_bytes_per_second = CopyRate(dev, host, bytes, cudaMemcpyHostToDevice, s, 8);
  r.d2h_bytes_per_second = CopyRate(host, dev, bytes, cudaMemcpyDeviceToHost, s, 8);
  HS_CUDA_CHECK(cudaFree(dev));
  PinnedFree(host);

  const int n = 8192;
  __half *a = nullptr, *b = nullptr, *c = nullptr;
  HS_CUDA_CHECK(cudaMalloc(&a, size_t{2} * n * n));
  HS_CUDA_CHECK(cudaMalloc(&b, size_t{2} * n * n));
  HS_CUDA_CHECK(cudaMalloc(&c, size_t{2} * n * n));
  HS_CUDA_CHECK(cudaMemsetAsync(a, 0x11, size_t{2} * n * n, s));  // small finite fp16 values
  HS_CUDA_CHECK(cudaMemsetAsync(b, 0x11, size_t{2} * n * n, s));
  cublasHandle_t h;
  if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("probe: cublasCreate failed");
  cublasSetStream(h, s);
  const double ms = MeanMsOnStream(s, 10, [&] { Linear(h, n, n, n, a, n, b, n, c, false, n); });
  r.gemm_flops = 2.0 * n * n * static_cast<double>(n) / (ms / 1e3);
  cublasDestroy(h);
  cudaFree(a);
  cudaFree(b);
  cudaFree(c);
  cudaStreamDestroy(s);
  return r;
}

}  // namespace hs::cuda
