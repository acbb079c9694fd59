// AVX2 + FMA instantiation of the blocked sgemm (see gemm_kernel.h), for x86-64 CPUs without
// AVX-512. Compiled through a target pragma; gemm.cc dispatches here only when the CPU has both.
#if defined(__x86_64__)
#include <algorithm>
#include <array>
#include <cstddef>
#include <utility>

#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

#include "cpu/gemm_kernel.h"

namespace hs::cpu::detail {
namespace {

struct V256 {
  using R = __m256;
  static constexpr int W = 8;
  static inline R zero() { return _mm256_setzero_ps(); }
  static inline R load(const float* p) { return _mm256_loadu_ps(p); }
  // maskload never touches masked-off lanes, so this is safe at the very end of an allocation.
  static inline R load_tail(const float* p, int n) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx));
  }
  static inline R fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  static inline __m128 fold(R x) { return _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1)); }
  static inline float hsum(R x) {
    __m128 s = fold(x);
    s = _mm_hadd_ps(s, s);
    s = _mm_hadd_ps(s, s);
    return _mm_cvtss_f32(s);
  }
  static inline void hsum4(R a, R b, R c, R d, float* out) {
    __m128 s01 = _mm_hadd_ps(fold(a), fold(b)), s23 = _mm_hadd_ps(fold(c), fold(d));
    _mm_storeu_ps(out, _mm_hadd_ps(s01, s23));
  }
  static inline void prefetch(const float* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0); }
};

}  // namespace

void GemmRangeAvx2(const GemmArgs& g, int m0, int m1, int n0, int n1) {
  GemmRange<V256, kAvx2Mr, kAvx2Nr>(g, m0, m1, n0, n1);
}

}  // namespace hs::cpu::detail

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif  // __x86_64__
