// ProbeDevice: what the planner needs to know about this GPU and its link: pinned H2D/D2H
// bandwidth (256 MiB copies) and the fp16 GEMM rate with fp32 accumulation (the recompute GEMM's
// precision), each timed with CUDA events after a warm-up.
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_check.h"
#include "cuda/gemm.h"

namespace hs::cuda {
namespace {

double TimeCopies(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s, int reps) {
  cudaEvent_t a, b;
  HS_CUDA_CHECK(cudaEventCreate(&a));
  HS_CUDA_CHECK(cudaEventCreate(&b));
  HS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, s));  // warm-up
  HS_CUDA_CHECK(cudaEventRecord(a, s));
  for (int i = 0; i < reps; ++i) HS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, s));
  HS_CUDA_CHECK(cudaEventRecord(b, s));
  HS_CUDA_CHECK(cudaEventSynchronize(b));
  float ms = 0;
  HS_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return static_cast<double>(bytes) * reps / (ms / 1e3);
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
  r.h2d_bytes_per_second = TimeCopies(dev, host, bytes, cudaMemcpyHostToDevice, s, 8);
  r.d2h_bytes_per_second = TimeCopies(host, dev, bytes, cudaMemcpyDeviceToHost, s, 8);
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
  Linear(h, n, n, n, a, n, b, n, c, false, n);
  cudaEvent_t e0, e1;
  HS_CUDA_CHECK(cudaEventCreate(&e0));
  HS_CUDA_CHECK(cudaEventCreate(&e1));
  const int reps = 10;
  HS_CUDA_CHECK(cudaEventRecord(e0, s));
  for (int i = 0; i < reps; ++i) Linear(h, n, n, n, a, n, b, n, c, false, n);
  HS_CUDA_CHECK(cudaEventRecord(e1, s));
  HS_CUDA_CHECK(cudaEventSynchronize(e1));
  float ms = 0;
  HS_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
  r.gemm_flops = 2.0 * n * n * static_cast<double>(n) * reps / (ms / 1e3);
  cublasDestroy(h);
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaFree(a);
  cudaFree(b);
  cudaFree(c);
  cudaStreamDestroy(s);
  return r;
}

}  // namespace hs::cuda
