// The blocked NT sgemm body, written once over a "vector traits" type V and compiled once per ISA
// (gemm_avx512.cc, gemm_avx2.cc, gemm_scalar.cc include this file after selecting their target).
// Private to native/src/cpu: only gemm.cc and the gemm_*.cc kernel files include it.
// A kernel file includes the standard headers below BEFORE switching its target and this header
// AFTER, and the templates live in an anonymous namespace: no function compiled for AVX-512 can be
// merged by the linker with a generic copy and run on a CPU without it.
//
// Why a dot-product (K-vectorised) kernel rather than the classic packed outer-product one:
// B is [N, K] row-major (PyTorch Linear weights), so a row of B is contiguous along K. Vectorising
// along K lets the kernel read the weights in place, as one sequential stream, with no packing
// pass. That matters most for decode (M = 1..64), where every weight is touched once per step and
// a packing pass would double the memory traffic. An MR x NR register tile reuses each loaded A
// vector NR times and each B vector MR times, which keeps the FMA units busy once M >= MR.
//
// V must provide: R (register type), W (lanes), zero(), load(p), load_tail(p, n) (first n lanes,
// rest zero, never touching memory past p + n), fma(a, b, c) = a*b + c, hsum(r), hsum4(r0..r3)
// (four horizontal sums at once) and prefetch(p).
#pragma once
#include <algorithm>
#include <array>
#include <cstddef>
#include <utility>

namespace hs::cpu::detail {

struct GemmArgs {
  int M, N, K;
  const float* A;
  size_t lda;
  const float* B;
  size_t ldb;
  float* C;
  size_t ldc;
  float beta;
  const float* bias;
  // Small-M path only: A transposed and zero-padded to kSmallM columns, at[k * kSmallM + m].
  const float* at = nullptr;
};

// Decode batches of up to kSmallM rows use the AVX-512 "column" kernel (GemmSmallMAvx512): one
// zmm holds a column of A^T (all rows at one k), so each weight element is a single broadcast FMA
// and no horizontal sums are needed.
constexpr int kSmallM = 16, kSmallNr = 12;
void GemmSmallMAvx512(const GemmArgs& g, int n0, int n1);

// One output tile's inputs. `first` is true for the first K block: the tile then applies beta and
// bias; later K blocks add their partial sums into C. `pf` (may be null) is a later weight panel
// (NR rows), prefetched while this tile computes so the weight stream from memory overlaps compute
// instead of stalling that panel's first tile.
struct TileArgs {
  int kc;
  const float* A;
  size_t lda;
  const float* B;
  size_t ldb;
  float* C;
  size_t ldc;
  const float* pf;
  bool first;
  float beta;
  const float* bias;  // already offset to this tile's first column, or null
};

// Per-ISA entry points (gemm_avx512.cc, gemm_avx2.cc, gemm_scalar.cc): compute rows [m0, m1) x
// columns [n0, n1) of C on the calling thread. The x86 ones exist only on x86-64 builds.
void GemmRangeAvx512(const GemmArgs& g, int m0, int m1, int n0, int n1);
void GemmRangeAvx2(const GemmArgs& g, int m0, int m1, int n0, int n1);
void GemmRangeScalar(const GemmArgs& g, int m0, int m1, int n0, int n1);
// Tile shapes (rows of A x rows of B per register tile), for the threading split in gemm.cc.
constexpr int kAvx512Mr = 4, kAvx512Nr = 6;
constexpr int kAvx2Mr = 3, kAvx2Nr = 4;
constexpr int kScalarMr = 4, kScalarNr = 4;

namespace {

template <class V, int MR, int NR>
struct Tile {
  static void Run(const TileArgs& t) {
    using R = typename V::R;
    constexpr int W = V::W;
    R acc[MR][NR];
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) acc[i][j] = V::zero();
    const float* a_row[MR];
    const float* b_row[NR];
    for (int i = 0; i < MR; ++i) a_row[i] = t.A + i * t.lda;
    for (int j = 0; j < NR; ++j) b_row[j] = t.B + j * t.ldb;
    int k = 0;
    if (t.pf) {
      // One cache line of each next-panel row per 64 bytes of K consumed here (NR is a constant,
      // so this unrolls; a runtime row count in this loop measured much slower).
      for (; k + W <= t.kc; k += W) {
        if (k % (64 / sizeof(float)) == 0)
          for (int j = 0; j < NR; ++j) V::prefetch(t.pf + j * t.ldb + k);
        Step(acc, a_row, b_row, k);
      }
    } else {
      for (; k + W <= t.kc; k += W) Step(acc, a_row, b_row, k);
    }
    if (k < t.kc) {
      const int n = t.kc - k;
      R a[MR];
      for (int i = 0; i < MR; ++i) a[i] = V::load_tail(a_row[i] + k, n);
      for (int j = 0; j < NR; ++j) {
        R b = V::load_tail(b_row[j] + k, n);
        for (int i = 0; i < MR; ++i) acc[i][j] = V::fma(a[i], b, acc[i][j]);
      }
    }
    for (int i = 0; i < MR; ++i) {
      float s[NR];
      Reduce(acc[i], s);
      float* c = t.C + i * t.ldc;
      for (int j = 0; j < NR; ++j) {
        float v = s[j];
        if (t.first) {
          if (t.bias) v += t.bias[j];
          if (t.beta != 0.f) v += (t.beta == 1.f ? c[j] : t.beta * c[j]);
        } else {
          v += c[j];
        }
        c[j] = v;
      }
    }
  }

 private:
  using R = typename V::R;
  static inline __attribute__((always_inline)) void Step(R (&acc)[MR][NR], const float* const (&a_row)[MR],
                                                         const float* const (&b_row)[NR], int k) {
    R a[MR];
    for (int i = 0; i < MR; ++i) a[i] = V::load(a_row[i] + k);
    for (int j = 0; j < NR; ++j) {
      R b = V::load(b_row[j] + k);
      for (int i = 0; i < MR; ++i) acc[i][j] = V::fma(a[i], b, acc[i][j]);
    }
  }
  static inline __attribute__((always_inline)) void Reduce(R (&acc)[NR], float (&s)[NR]) {
    int j = 0;
    for (; j + 4 <= NR; j += 4) V::hsum4(acc[j], acc[j + 1], acc[j + 2], acc[j + 3], s + j);
    for (; j < NR; ++j) s[j] = V::hsum(acc[j]);
  }
};

using TileFn = void (*)(const TileArgs&);

template <class V, int MRMAX, int NRMAX>
struct TileTable {
  template <int MR, size_t... J>
  static constexpr std::array<TileFn, NRMAX> Row(std::index_sequence<J...>) {
    return {&Tile<V, MR, int(J) + 1>::Run...};
  }
  template <size_t... I>
  static constexpr std::array<std::array<TileFn, NRMAX>, MRMAX> Make(std::index_sequence<I...>) {
    return {Row<int(I) + 1>(std::make_index_sequence<NRMAX>())...};
  }
  // fns[mr - 1][nr - 1] computes an mr x nr tile.
  static constexpr std::array<std::array<TileFn, NRMAX>, MRMAX> fns = Make(std::make_index_sequence<MRMAX>());
};

// K is split into blocks of at most kMaxKc so an MR x kc slice of A and an NR x kc weight panel
// stay in L1 while a tile runs; blocks are equal-sized (multiples of the vector width) to avoid
// a tiny last block.
constexpr int kMaxKc = 1024;
// Rows of A processed per pass over the weight panels: MC x kc of A stays in L2 while the
// thread's weight panels stream past it once.
constexpr int kMc = 128;

inline int KBlock(int K, int W) {
  if (K <= kMaxKc) return K;
  int blocks = (K + kMaxKc - 1) / kMaxKc;
  int kc = (K + blocks - 1) / blocks;
  return (kc + W - 1) / W * W;
}

// Computes rows [m0, m1) x columns [n0, n1) of C on the calling thread.
template <class V, int MR, int NR>
void GemmRange(const GemmArgs& g, int m0, int m1, int n0, int n1) {
  constexpr auto& fns = TileTable<V, MR, NR>::fns;
  const int kc_max = KBlock(g.K, V::W);
  int k0 = 0;
  do {
    const int kc = std::min(kc_max, g.K - k0);
    const bool first = k0 == 0;
    for (int mb = m0; mb < m1; mb += kMc) {
      const int me = std::min(m1, mb + kMc);
      for (int n = n0; n < n1; n += NR) {
        const int nr = std::min(NR, n1 - n);
        // Only the first m-block prefetches, and it prefetches the panel after next: the first
        // m-block is the one reading its panel from memory (the later ones find it in L1), and two
        // panels of lead hide memory latency even at M = 1. (Spreading the prefetches over all
        // m-blocks, or a one-panel lead, measured slower on the 2-core EPYC.)
        const float* next = n + 3 * NR <= n1 ? g.B + (size_t)(n + 2 * NR) * g.ldb + k0 : nullptr;
        for (int m = mb; m < me; m += MR) {
          const int mr = std::min(MR, me - m);
          TileArgs t{kc,
                     g.A + (size_t)m * g.lda + k0,
                     g.lda,
                     g.B + (size_t)n * g.ldb + k0,
                     g.ldb,
                     g.C + (size_t)m * g.ldc + n,
                     g.ldc,
                     m == mb && nr == NR ? next : nullptr,
                     first,
                     g.beta,
                     g.bias ? g.bias + n : nullptr};
          fns[mr - 1][nr - 1](t);
        }
      }
    }
    k0 += kc;
  } while (k0 < g.K);
}

}  // namespace
}  // namespace hs::cpu::detail
