// Single-precision GEMM for the CPU backend, and the thread pool it runs on.
// Layout follows PyTorch Linear weights: B is [N, K] row-major ("NT" GEMM), so C = A·Bᵀ.
#pragma once
#include <cstddef>
#include <functional>

namespace hs::cpu {

class ThreadPool;

// C[M,N] = beta·C + A[M,K] · B[N,K]ᵀ (+ bias[N] if bias != nullptr).
// lda/ldb/ldc are row strides in elements. beta is 0 or 1. Runs on `pool` (nullptr = caller thread).
void gemm_nt(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
             float beta, const float* bias, ThreadPool* pool);

// The plain triple loop, kept as the reference for tests.
void gemm_nt_reference(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C,
                       int ldc, float beta, const float* bias);

// Which kernel gemm_nt dispatches to on this machine ("avx512", "avx2", "scalar").
const char* gemm_kernel_name();

// A fixed set of worker threads. ParallelFor splits [0, n) into contiguous chunks, one per thread,
// and returns when all are done. Not reentrant: one ParallelFor at a time per pool.
class ThreadPool {
 public:
  explicit ThreadPool(int threads);  // threads <= 0: hardware concurrency
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  int size() const;
  void ParallelFor(int n, const std::function<void(int begin, int end)>& fn);

 private:
  struct Impl;
  Impl* impl_;
};

// Measures this machine's sgemm rate (FLOP/s) with gemm_nt on a large square problem.
double MeasurePeakGemmFlops(ThreadPool* pool, int size = 1024, double min_seconds = 0.5);

}  // namespace hs::cpu
