// Single-precision GEMM for the CPU backend, and the thread pool it runs on.
// Layout follows PyTorch Linear weights: B is [N, K] row-major ("NT" GEMM), so C = A·Bᵀ.
#pragma once
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "core/quant.h"

namespace hs::cpu {

class ThreadPool;

// C[M,N] = beta·C + A[M,K] · B[N,K]ᵀ (+ bias[N] if bias != nullptr).
// lda/ldb/ldc are row strides in elements. beta is 0 or 1. Runs on `pool` (nullptr = caller thread).
// Throws std::invalid_argument for negative sizes, strides smaller than a row, or null pointers
// where data is needed.
void gemm_nt(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc, float beta,
             const float* bias, ThreadPool* pool);

// The same product over a quantised B (core/quant.h, B.rows = N, B.cols = K): each thread
// dequantises a panel of B's rows into an L2-sized f32 buffer and runs gemm_nt's kernel on it,
// so the f32 path (gemm_nt) is untouched and the weights stream from memory in their small form.
// Throws std::invalid_argument like gemm_nt, and when B's shape is not [N, K] or B is not quantised.
void gemm_nt_q(int M, int N, int K, const float* A, int lda, const QuantView& B, float* C, int ldc, float beta,
               const float* bias, ThreadPool* pool);

// The plain triple loop, kept as the reference for tests.
void gemm_nt_reference(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
                       float beta, const float* bias);

// Which kernel gemm_nt dispatches to on this machine ("avx512", "avx2", "scalar").
// The environment variable HYBRIDSERVE_GEMM_KERNEL (one of those names) forces a kernel at start-up,
// when this CPU can run it (otherwise a warning goes to stderr and the automatic choice stays).
const char* gemm_kernel_name();

// The kernels this CPU can run, best first; always ends with "scalar".
std::vector<std::string> gemm_supported_kernels();

// Forces gemm_nt onto the named kernel (tests and benchmarks of each path). nullptr, "" or "auto"
// restores the automatic choice. Throws std::invalid_argument for an unknown name or a kernel this
// CPU cannot run. Not meant to be called while other threads are inside gemm_nt.
void gemm_force_kernel(const char* name);

// A fixed set of worker threads. ParallelFor splits [0, n) into contiguous chunks, one per thread
// (the calling thread runs the first chunk), and returns when all are done. Idle workers spin for
// a few tens of microseconds (back-to-back GEMMs of a decode step) and then sleep on a condvar.
// An exception thrown by fn on any thread is rethrown by ParallelFor once every chunk has finished.
// One ParallelFor at a time per pool: a nested call, or one made while another thread's call is
// running, is not parallelised but runs fn(0, n) on its own calling thread.
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

// Measures this machine's sgemm rate (FLOP/s) with gemm_nt on a large square problem: one warm-up
// run, then total FLOPs / total time over at least min_seconds (a sustained rate, not a best case).
double MeasurePeakGemmFlops(ThreadPool* pool, int size = 1024, double min_seconds = 0.5);

}  // namespace hs::cpu
