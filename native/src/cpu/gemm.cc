// gemm_nt: argument checks, kernel dispatch and the split of the work over the thread pool.
// The kernels themselves are in gemm_avx512.cc / gemm_avx2.cc / gemm_scalar.cc (one blocked
// algorithm, gemm_kernel.h, compiled per ISA); the pool is in gemm_threadpool.cc.
#include "cpu/gemm.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/gemm_kernel.h"

namespace hs::cpu {
namespace {

using detail::GemmArgs;
using RangeFn = void (*)(const GemmArgs&, int, int, int, int);

struct Kernel {
  const char* name;
  RangeFn fn;
  int mr, nr;
};

const Kernel kScalar{"scalar", detail::GemmRangeScalar, detail::kScalarMr, detail::kScalarNr};
#if defined(__x86_64__)
const Kernel kAvx512{"avx512", detail::GemmRangeAvx512, detail::kAvx512Mr, detail::kAvx512Nr};
const Kernel kAvx2{"avx2", detail::GemmRangeAvx2, detail::kAvx2Mr, detail::kAvx2Nr};
#endif

// Kernels this CPU supports, best first (pure function of the CPU's feature bits).
std::vector<const Kernel*> Supported() {
  std::vector<const Kernel*> out;
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    out.push_back(&kAvx512);
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) out.push_back(&kAvx2);
#endif
  out.push_back(&kScalar);
  return out;
}

const Kernel* FindSupported(const char* name) {
  for (const Kernel* k : Supported())
    if (std::strcmp(k->name, name) == 0) return k;
  return nullptr;
}

const Kernel* AutoKernel() {
  const char* env = std::getenv("HYBRIDSERVE_GEMM_KERNEL");
  if (env && *env && std::strcmp(env, "auto") != 0) {
    if (const Kernel* k = FindSupported(env)) return k;
    std::fprintf(stderr, "hybridserve: HYBRIDSERVE_GEMM_KERNEL=%s is not a kernel this CPU can run; using %s\n", env,
                 Supported().front()->name);
  }
  return Supported().front();
}

std::atomic<const Kernel*>& Current() {
  static std::atomic<const Kernel*> k{AutoKernel()};
  return k;
}

// Below this many FLOPs the pool's wake-up costs more than a second core saves.
constexpr double kMinParallelFlops = 1 << 20;
// Work chunks per thread for the dynamic split (see gemm_nt): enough to even out a thread that
// falls behind, few enough that each chunk is a long sequential stream of weights.
constexpr int kChunksPerThread = 8;
// Smallest M for the small-M column kernel: below it too many of its 16 lanes are padding and the
// dot kernel measured faster (M = 8: 112 vs 103 GFLOP/s; M = 16: 75-86 vs 95-119 GFLOP/s).
constexpr int kSmallMMin = 12;

void CheckArgs(int M, int N, int K, const float* A, int lda, const float* B, int ldb, const float* C, int ldc) {
  auto fail = [](const std::string& what) { throw std::invalid_argument("gemm_nt: " + what); };
  if (M < 0 || N < 0 || K < 0)
    fail("negative size M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K));
  if (M == 0 || N == 0) return;
  if (lda < K || ldb < K || ldc < N)
    fail("stride smaller than a row (lda=" + std::to_string(lda) + " ldb=" + std::to_string(ldb) +
         " ldc=" + std::to_string(ldc) + " for K=" + std::to_string(K) + " N=" + std::to_string(N) + ")");
  if (!C || (K > 0 && (!A || !B))) fail("null matrix pointer");
}

}  // namespace

void gemm_nt_reference(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
                       float beta, const float* bias) {
  CheckArgs(M, N, K, A, lda, B, ldb, C, ldc);
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      double acc = 0;  // double: the reference should be more accurate than what it checks
      for (int k = 0; k < K; ++k) acc += (double)A[(size_t)m * lda + k] * B[(size_t)n * ldb + k];
      if (bias) acc += bias[n];
      float& c = C[(size_t)m * ldc + n];
      c = beta != 0 ? (float)(beta * c + acc) : (float)acc;
    }
}

void gemm_nt(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc, float beta,
             const float* bias, ThreadPool* pool) {
  CheckArgs(M, N, K, A, lda, B, ldb, C, ldc);
  if (M == 0 || N == 0) return;
  const Kernel& k = *Current().load(std::memory_order_relaxed);
  GemmArgs g{M, N, K, A, (size_t)lda, B, (size_t)ldb, C, (size_t)ldc, beta, bias};
  const int threads = pool ? pool->size() : 1;
#if defined(__x86_64__)
  if (&k == &kAvx512 && M >= kSmallMMin && M <= detail::kSmallM && K > 0) {
    // Decode batches: A^T packed once here (tiny: K x 16), then the column kernel over N.
    static thread_local std::vector<float> at;
    at.assign((size_t)K * detail::kSmallM, 0.f);
    for (int m = 0; m < M; ++m)
      for (int kk = 0; kk < K; ++kk) at[(size_t)kk * detail::kSmallM + m] = A[(size_t)m * lda + kk];
    g.at = at.data();
    const int panels = (N + detail::kSmallNr - 1) / detail::kSmallNr;
    if (threads <= 1 || 2.0 * M * N * K < kMinParallelFlops) {
      detail::GemmSmallMAvx512(g, 0, N);
      return;
    }
    const int chunks = std::min(panels, kChunksPerThread * threads);
    std::atomic<int> next{0};
    pool->ParallelFor(threads, [&](int, int) {
      for (int c; (c = next.fetch_add(1, std::memory_order_relaxed)) < chunks;) {
        const int b = (int)((long long)panels * c / chunks), e = (int)((long long)panels * (c + 1) / chunks);
        detail::GemmSmallMAvx512(g, b * detail::kSmallNr, std::min(N, e * detail::kSmallNr));
      }
    });
    return;
  }
#endif
  if (threads <= 1 || 2.0 * M * N * K < kMinParallelFlops) {
    k.fn(g, 0, M, 0, N);
    return;
  }
  // Split over N (weight rows) so each thread streams its own slices of the weights once. Only
  // when N is too narrow to give every thread a few panels, split over M instead. The split is
  // dynamic: the range is cut into kChunksPerThread x threads contiguous chunks that the threads
  // claim from a shared counter, so a thread that the OS (or a noisy neighbour on a shared VM)
  // holds back does not leave the others waiting at the end of every GEMM.
  const int n_panels = (N + k.nr - 1) / k.nr;
  const int m_blocks = (M + k.mr - 1) / k.mr;
  const bool split_n = n_panels >= 4 * threads || m_blocks < 2 * threads;
  const int units = split_n ? n_panels : m_blocks;
  const int chunks = std::min(units, kChunksPerThread * threads);
  std::atomic<int> next{0};
  pool->ParallelFor(threads, [&](int, int) {
    for (int c; (c = next.fetch_add(1, std::memory_order_relaxed)) < chunks;) {
      const int b = (int)((long long)units * c / chunks), e = (int)((long long)units * (c + 1) / chunks);
      if (split_n)
        k.fn(g, 0, M, b * k.nr, std::min(N, e * k.nr));
      else
        k.fn(g, b * k.mr, std::min(M, e * k.mr), 0, N);
    }
  });
}

const char* gemm_kernel_name() { return Current().load()->name; }

std::vector<std::string> gemm_supported_kernels() {
  std::vector<std::string> out;
  for (const Kernel* k : Supported()) out.push_back(k->name);
  return out;
}

void gemm_force_kernel(const char* name) {
  if (!name || !*name || std::strcmp(name, "auto") == 0) {
    Current().store(Supported().front());
    return;
  }
  const Kernel* k = FindSupported(name);
  if (!k) {
    std::string have;
    for (const Kernel* s : Supported()) have += std::string(have.empty() ? "" : ", ") + s->name;
    throw std::invalid_argument(std::string("gemm kernel '") + name +
                                "' is unknown or not supported by this CPU (supported: " + have + ")");
  }
  Current().store(k);
}

double MeasurePeakGemmFlops(ThreadPool* pool, int size, double min_seconds) {
  if (size <= 0) throw std::invalid_argument("MeasurePeakGemmFlops: size must be positive");
  // Deterministic small values: no denormals, finite sums for any size.
  std::vector<float> a((size_t)size * size), b((size_t)size * size), c((size_t)size * size);
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = (float)((i * 7 % 13) - 6) * 0.01f;
    b[i] = (float)((i * 5 % 11) - 5) * 0.01f;
  }
  // One untimed run warms caches, page tables and the pool's threads.
  gemm_nt(size, size, size, a.data(), size, b.data(), size, c.data(), size, 0.f, nullptr, pool);
  // The sustained rate over at least min_seconds (total FLOPs / total time), the same kind of
  // figure as a benchmark's tokens/s, so the two can be compared on a machine shared with others.
  const double flops = 2.0 * size * size * size;
  int reps = 0;
  double secs = 0;
  const auto t0 = std::chrono::steady_clock::now();
  do {
    gemm_nt(size, size, size, a.data(), size, b.data(), size, c.data(), size, 0.f, nullptr, pool);
    ++reps;
    secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  } while (secs < min_seconds);
  return flops * reps / secs;
}

}  // namespace hs::cpu
