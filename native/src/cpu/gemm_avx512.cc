// AVX-512 instantiation of the blocked sgemm (see gemm_kernel.h). Compiled for AVX-512 through a
// target pragma rather than -mavx512f so the library still loads and runs on any x86-64; gemm.cc
// only calls in here after __builtin_cpu_supports says the CPU has it.
#if defined(__x86_64__)
#include <algorithm>
#include <array>
#include <cstddef>
#include <utility>

#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512vl,avx2,fma")
#endif

#include "cpu/gemm_kernel.h"

namespace hs::cpu::detail {
namespace {

struct V512 {
  using R = __m512;
  static constexpr int W = 16;
  static inline R zero() { return _mm512_setzero_ps(); }
  static inline R load(const float* p) { return _mm512_loadu_ps(p); }
  // Masked lanes are never read, so this is safe at the very end of an allocation.
  static inline R load_tail(const float* p, int n) { return _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), p); }
  static inline R fma(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  // Folds 512 -> 128 bits. (maskz extracts rather than casts or _mm512_reduce_add_ps: GCC 12 warns about
  // their use of an undefined register.)
  static inline __m128 fold(R x) {
    __m256 y = _mm256_add_ps(_mm512_maskz_extractf32x8_ps(0xff, x, 0), _mm512_maskz_extractf32x8_ps(0xff, x, 1));
    return _mm_add_ps(_mm256_castps256_ps128(y), _mm256_extractf128_ps(y, 1));
  }
  static inline float hsum(R x) {
    __m128 s = fold(x);
    s = _mm_hadd_ps(s, s);
    s = _mm_hadd_ps(s, s);
    return _mm_cvtss_f32(s);
  }
  // Four horizontal sums at once: fold each, then one transpose-add.
  static inline void hsum4(R a, R b, R c, R d, float* out) {
    __m128 x0 = fold(a), x1 = fold(b), x2 = fold(c), x3 = fold(d);
    __m128 s01 = _mm_hadd_ps(x0, x1), s23 = _mm_hadd_ps(x2, x3);
    _mm_storeu_ps(out, _mm_hadd_ps(s01, s23));
  }
  static inline void prefetch(const float* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0); }
};

}  // namespace

void GemmRangeAvx512(const GemmArgs& g, int m0, int m1, int n0, int n1) {
  GemmRange<V512, kAvx512Mr, kAvx512Nr>(g, m0, m1, n0, n1);
}

namespace {

// NR weight rows x all (<= 16) rows of A, over the whole K: acc[j] = C[0..15, n + j].
template <int NR>
void SmallMTile(const GemmArgs& g, int n) {
  __m512 acc[NR];
#pragma GCC unroll 32
  for (int j = 0; j < NR; ++j) acc[j] = _mm512_setzero_ps();
  const float* b = g.B + (size_t)n * g.ldb;
  const size_t ldb = g.ldb;
  for (int k = 0; k < g.K; ++k) {
    if ((k & 15) == 0) {
      // Each row's cache line 1 KiB ahead of use: NR rows stream at once.
#pragma GCC unroll 32
      for (int j = 0; j < NR; ++j) _mm_prefetch(reinterpret_cast<const char*>(b + j * ldb + k + 256), _MM_HINT_T0);
    }
    const __m512 a = _mm512_loadu_ps(g.at + (size_t)k * kSmallM);
#pragma GCC unroll 32
    for (int j = 0; j < NR; ++j) acc[j] = _mm512_fmadd_ps(a, _mm512_set1_ps(b[j * ldb + k]), acc[j]);
  }
  alignas(64) float tmp[NR][kSmallM];
#pragma GCC unroll 32
  for (int j = 0; j < NR; ++j) _mm512_store_ps(tmp[j], acc[j]);
  for (int m = 0; m < g.M; ++m) {
    float* c = g.C + (size_t)m * g.ldc + n;
    for (int j = 0; j < NR; ++j) {
      float v = tmp[j][m];
      if (g.bias) v += g.bias[n + j];
      if (g.beta != 0.f) v += (g.beta == 1.f ? c[j] : g.beta * c[j]);
      c[j] = v;
    }
  }
}

template <size_t... J>
constexpr std::array<void (*)(const GemmArgs&, int), kSmallNr> SmallMTable(std::index_sequence<J...>) {
  return {&SmallMTile<int(J) + 1>...};
}

}  // namespace

void GemmSmallMAvx512(const GemmArgs& g, int n0, int n1) {
  static constexpr auto fns = SmallMTable(std::make_index_sequence<kSmallNr>());
  for (int n = n0; n < n1; n += kSmallNr) fns[std::min(kSmallNr, n1 - n) - 1](g, n);
}

}  // namespace hs::cpu::detail

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif  // __x86_64__
