// Tests of the CPU sgemm (every kernel this CPU can run) and of the thread pool.
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "cpu/gemm.h"
#include "test.h"

namespace {

using hs::cpu::ThreadPool;

// Small deterministic generator (splitmix64) so failures reproduce.
struct Rng {
  uint64_t s;
  float Next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((z >> 40) * (1.0 / (1ull << 24))) * 2.f - 1.f;  // [-1, 1)
  }
};

// Restores the automatic kernel choice when a test ends (also on failure paths).
struct KernelScope {
  explicit KernelScope(const std::string& name) { hs::cpu::gemm_force_kernel(name.c_str()); }
  ~KernelScope() { hs::cpu::gemm_force_kernel(nullptr); }
};

struct Case {
  int M, N, K;
  int pad;  // extra elements per row: lda = K + pad, ldb = K + pad, ldc = N + pad
  float beta;
  bool bias;
};

// Runs gemm_nt and the reference on the same inputs; returns the number of mismatching elements.
// Elements of C outside the M x N window (the stride padding) must stay untouched.
int CompareOne(const Case& c, ThreadPool* pool, uint64_t seed) {
  Rng rng{seed};
  const int lda = c.K + c.pad, ldb = c.K + c.pad, ldc = c.N + c.pad;
  std::vector<float> A((size_t)c.M * lda), B((size_t)c.N * ldb), bias(c.N), C0((size_t)c.M * ldc);
  for (auto& x : A) x = rng.Next();
  for (auto& x : B) x = rng.Next();
  for (auto& x : bias) x = rng.Next();
  for (auto& x : C0) x = rng.Next();
  std::vector<float> got = C0, want = C0;
  hs::cpu::gemm_nt(c.M, c.N, c.K, A.data(), lda, B.data(), ldb, got.data(), ldc, c.beta, c.bias ? bias.data() : nullptr,
                   pool);
  hs::cpu::gemm_nt_reference(c.M, c.N, c.K, A.data(), lda, B.data(), ldb, want.data(), ldc, c.beta,
                             c.bias ? bias.data() : nullptr);
  int bad = 0;
  // fp32 sums of K products of values in [-1, 1): error grows ~ sqrt(K) * eps; 1e-5 * K is generous
  // for every summation order yet far below any indexing mistake (errors of order 1).
  const double tol = 1e-5 * (c.K + 1);
  for (int m = 0; m < c.M; ++m)
    for (int n = 0; n < ldc; ++n) {
      const size_t i = (size_t)m * ldc + n;
      const bool inside = n < c.N;
      const double diff = std::fabs((double)got[i] - (double)want[i]);
      if ((inside && !(diff <= tol)) || (!inside && got[i] != C0[i])) {
        if (bad < 3)
          std::fprintf(stderr, "    M=%d N=%d K=%d pad=%d beta=%g bias=%d: C[%d,%d] = %g, want %g\n", c.M, c.N, c.K,
                       c.pad, c.beta, c.bias, m, n, got[i], inside ? want[i] : C0[i]);
        ++bad;
      }
    }
  return bad;
}

// 12..16 rows take the AVX-512 small-M column kernel; the others the blocked dot kernel.
const int kSizes[] = {1, 3, 16, 17, 64, 129};

void CheckAllShapes(const std::string& kernel, ThreadPool* pool) {
  KernelScope scope(kernel);
  HS_CHECK_EQ(std::string(hs::cpu::gemm_kernel_name()), kernel);
  uint64_t seed = 1;
  for (int M : kSizes)
    for (int N : kSizes)
      for (int K : kSizes) {
        const Case c{M, N, K, (M + N + K) % 3 == 0 ? 5 : 0, (M + K) % 2 == 0 ? 1.f : 0.f, (N + K) % 2 == 1};
        HS_CHECK_EQ(CompareOne(c, pool, seed++), 0);
      }
}

// Shapes that cross the kernel's K blocking (K > 1024) and A row blocking (M > 128), that are
// split across threads over N (wide) or over M (narrow N, tall M), decode shapes from OPT-125m,
// and K = 0 (C = beta·C + bias).
const Case kLargeCases[] = {
    {16, 768, 768, 0, 0.f, true}, {1, 1000, 768, 0, 0.f, true},   {16, 96, 1500, 3, 1.f, false},
    {3, 101, 2057, 1, 1.f, true}, {200, 30, 65, 0, 0.f, false},   {130, 40, 1100, 2, 1.f, true},
    {40, 300, 768, 0, 0.f, true}, {5, 13, 0, 0, 1.f, true},       {13, 200, 777, 2, 1.f, true},
    {12, 50, 1, 0, 0.f, true},    {14, 1000, 768, 0, 0.f, false},
};

void CheckLarge(const std::string& kernel, ThreadPool* pool) {
  KernelScope scope(kernel);
  uint64_t seed = 1000;
  for (const Case& c : kLargeCases) HS_CHECK_EQ(CompareOne(c, pool, seed++), 0);
}

}  // namespace

HS_TEST(gemm_kernels_listed) {
  auto ks = hs::cpu::gemm_supported_kernels();
  HS_CHECK(!ks.empty());
  HS_CHECK_EQ(ks.back(), std::string("scalar"));
  HS_CHECK_THROWS(hs::cpu::gemm_force_kernel("sse9"), std::invalid_argument);
  hs::cpu::gemm_force_kernel(nullptr);
  // With no override the best kernel is chosen (unless the environment forces one).
  if (!std::getenv("HYBRIDSERVE_GEMM_KERNEL")) HS_CHECK_EQ(std::string(hs::cpu::gemm_kernel_name()), ks.front());
  std::fprintf(stderr, "    kernels on this CPU:");
  for (auto& k : ks) std::fprintf(stderr, " %s", k.c_str());
  std::fprintf(stderr, "\n");
}

HS_TEST(gemm_odd_shapes_every_kernel_one_thread) {
  for (const auto& k : hs::cpu::gemm_supported_kernels()) CheckAllShapes(k, nullptr);
}

HS_TEST(gemm_odd_shapes_every_kernel_pool) {
  ThreadPool pool(3);  // more threads than this machine's cores on purpose: odd splits
  for (const auto& k : hs::cpu::gemm_supported_kernels()) CheckAllShapes(k, &pool);
}

HS_TEST(gemm_blocked_and_split_shapes_every_kernel) {
  ThreadPool pool(2);
  for (const auto& k : hs::cpu::gemm_supported_kernels()) {
    CheckLarge(k, &pool);
    CheckLarge(k, nullptr);
  }
}

HS_TEST(gemm_rejects_bad_arguments) {
  std::vector<float> a(16), b(16), c(16);
  HS_CHECK_THROWS(hs::cpu::gemm_nt(-1, 2, 2, a.data(), 2, b.data(), 2, c.data(), 2, 0, nullptr, nullptr),
                  std::invalid_argument);
  HS_CHECK_THROWS(hs::cpu::gemm_nt(2, 2, 4, a.data(), 3, b.data(), 4, c.data(), 2, 0, nullptr, nullptr),
                  std::invalid_argument);
  HS_CHECK_THROWS(hs::cpu::gemm_nt(2, 2, 2, nullptr, 2, b.data(), 2, c.data(), 2, 0, nullptr, nullptr),
                  std::invalid_argument);
  // Empty products are fine and write nothing.
  hs::cpu::gemm_nt(0, 2, 2, nullptr, 2, nullptr, 2, nullptr, 2, 0, nullptr, nullptr);
}

HS_TEST(gemm_threadpool_covers_range_exactly_once) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    HS_CHECK_EQ(pool.size(), threads);
    for (int n : {0, 1, 2, 3, 7, 64, 1001}) {
      std::vector<std::atomic<int>> hits(n);
      for (int rep = 0; rep < 50; ++rep)
        pool.ParallelFor(n, [&](int b, int e) {
          for (int i = b; i < e; ++i) hits[i].fetch_add(1);
        });
      for (int i = 0; i < n; ++i) HS_CHECK_EQ(hits[i].load(), 50);
    }
  }
}

HS_TEST(gemm_threadpool_propagates_exceptions_and_survives) {
  ThreadPool pool(2);
  HS_CHECK_THROWS(pool.ParallelFor(10,
                                   [](int b, int) {
                                     if (b > 0) throw std::runtime_error("worker chunk failed");
                                   }),
                  std::runtime_error);
  HS_CHECK_THROWS(pool.ParallelFor(10,
                                   [](int b, int) {
                                     if (b == 0) throw std::runtime_error("caller chunk failed");
                                   }),
                  std::runtime_error);
  std::atomic<int> sum{0};
  pool.ParallelFor(100, [&](int b, int e) { sum += e - b; });
  HS_CHECK_EQ(sum.load(), 100);
}

HS_TEST(gemm_threadpool_nested_and_sleeping_workers) {
  ThreadPool pool(2);
  std::atomic<int> inner{0};
  // A nested call runs inline instead of deadlocking.
  pool.ParallelFor(4, [&](int b, int e) { pool.ParallelFor(e - b, [&](int ib, int ie) { inner += ie - ib; }); });
  HS_CHECK_EQ(inner.load(), 4);
  // Let the worker go past its spin phase onto the condvar, then check it still wakes.
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::atomic<int> sum{0};
  pool.ParallelFor(8, [&](int b, int e) { sum += e - b; });
  HS_CHECK_EQ(sum.load(), 8);
}

HS_TEST(gemm_peak_probe_is_positive) {
  ThreadPool pool(0);
  const double flops = hs::cpu::MeasurePeakGemmFlops(&pool, 128, 0.01);
  HS_CHECK(flops > 1e6);
  HS_CHECK_THROWS(hs::cpu::MeasurePeakGemmFlops(&pool, 0, 0.01), std::invalid_argument);
}
