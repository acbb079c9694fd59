// Placeholder GEMM (reference loops on one thread) until the tuned kernel lands.
#include "cpu/gemm.h"

#include <chrono>
#include <thread>
#include <vector>

namespace hs::cpu {

void gemm_nt_reference(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
                       float beta, const float* bias) {
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      float acc = 0;
      for (int k = 0; k < K; ++k) acc += A[(size_t)m * lda + k] * B[(size_t)n * ldb + k];
      if (bias) acc += bias[n];
      float& c = C[(size_t)m * ldc + n];
      c = beta != 0 ? c + acc : acc;
    }
}

void gemm_nt(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc, float beta,
             const float* bias, ThreadPool*) {
  gemm_nt_reference(M, N, K, A, lda, B, ldb, C, ldc, beta, bias);
}

const char* gemm_kernel_name() { return "scalar"; }

struct ThreadPool::Impl {
  int n;
};
ThreadPool::ThreadPool(int threads) : impl_(new Impl{threads > 0 ? threads : (int)std::thread::hardware_concurrency()}) {}
ThreadPool::~ThreadPool() { delete impl_; }
int ThreadPool::size() const { return impl_->n; }
void ThreadPool::ParallelFor(int n, const std::function<void(int, int)>& fn) { fn(0, n); }

double MeasurePeakGemmFlops(ThreadPool* pool, int size, double min_seconds) {
  std::vector<float> a((size_t)size * size, 1.f), b((size_t)size * size, 1.f), c((size_t)size * size);
  auto t0 = std::chrono::steady_clock::now();
  int reps = 0;
  double secs = 0;
  do {
    gemm_nt(size, size, size, a.data(), size, b.data(), size, c.data(), size, 0.f, nullptr, pool);
    ++reps;
    secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  } while (secs < min_seconds);
  return 2.0 * size * size * size * reps / secs;
}

}  // namespace hs::cpu
