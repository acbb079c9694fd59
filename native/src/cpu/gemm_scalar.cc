// Portable instantiation of the blocked sgemm (see gemm_kernel.h): no intrinsics, so it builds on
// any architecture. The "vector" is eight independent float lanes, written as plain loops the
// compiler may vectorise with the baseline ISA (SSE2 on x86-64, NEON on arm64); eight partial sums
// per dot product also break the add dependency chain.
#include <algorithm>
#include <array>
#include <cstddef>
#include <utility>

#include "cpu/gemm_kernel.h"

namespace hs::cpu::detail {
namespace {

struct VScalar {
  struct R {
    float v[8];
  };
  static constexpr int W = 8;
  static inline R zero() { return R{}; }
  static inline R load(const float* p) {
    R r;
    for (int i = 0; i < W; ++i) r.v[i] = p[i];
    return r;
  }
  static inline R load_tail(const float* p, int n) {
    R r{};
    for (int i = 0; i < n; ++i) r.v[i] = p[i];
    return r;
  }
  static inline R fma(R a, R b, R c) {
    for (int i = 0; i < W; ++i) c.v[i] += a.v[i] * b.v[i];
    return c;
  }
  static inline float hsum(R x) {
    return ((x.v[0] + x.v[4]) + (x.v[1] + x.v[5])) + ((x.v[2] + x.v[6]) + (x.v[3] + x.v[7]));
  }
  static inline void hsum4(R a, R b, R c, R d, float* out) {
    out[0] = hsum(a);
    out[1] = hsum(b);
    out[2] = hsum(c);
    out[3] = hsum(d);
  }
  static inline void prefetch(const float* p) { __builtin_prefetch(p); }
};

}  // namespace

void GemmRangeScalar(const GemmArgs& g, int m0, int m1, int n0, int n1) {
  GemmRange<VScalar, kScalarMr, kScalarNr>(g, m0, m1, n0, n1);
}

}  // namespace hs::cpu::detail
