#include "cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/gemm.h"

namespace hs::cpu {

namespace {

// x86-64 builds carry AVX-512 / AVX2 clones picked at load time (no -march needed); elsewhere
// the plain build. The loops are written so each clone vectorises them. Not under ThreadSanitizer:
// the clones' ifunc resolvers run before its runtime starts and would crash the process.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define HS_ATTN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define HS_ATTN_CLONES
#endif

// 8-float vectors (GCC/Clang vector extensions): each target clone maps them onto its own SIMD
// registers, which the auto-vectoriser failed to do for these loops.
// The helpers are always inlined into the clones, so the vector-argument ABI note (-Wpsabi) that
// GCC emits for them without AVX enabled does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float v8f __attribute__((vector_size(32)));
__attribute__((always_inline)) inline v8f Load8(const float* p) {
  v8f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
__attribute__((always_inline)) inline float Sum8(const v8f& v) {
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

// One (sequence, head): scores over the causal window, softmax, weighted sum of V.
// D > 0 fixes the head dimension at compile time (fully unrolled loops); D = 0 reads it.
template <int D>
HS_ATTN_CLONES void HeadAttention(const AttnSeq& s, int h, const AttnShape& sh, float* __restrict scores) {
  const int d = D > 0 ? D : sh.head_dim;
  const int kvh = h / (sh.num_heads / sh.num_kv_heads);
  const int qdim = sh.num_heads * d;
  const int d8 = d / 8 * 8;
  for (int i = 0; i < s.num_new; ++i) {
    const float* q = s.q + (size_t)i * qdim + (size_t)h * d;
    const int n = s.start + i + 1;  // causal: keys at positions 0..start+i
    float mx = -INFINITY;
    for (int j = 0; j < n; ++j) {
      const float* k = s.k[j] + (size_t)kvh * d;
      v8f acc = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int e = 0; e < d8; e += 8) acc += Load8(q + e) * Load8(k + e);
      float dot = Sum8(acc);
      for (int e = d8; e < d; ++e) dot += q[e] * k[e];
      scores[j] = dot * sh.scale;
      mx = std::max(mx, scores[j]);
    }
    float sum = 0.f;
    for (int j = 0; j < n; ++j) {
      scores[j] = std::exp(scores[j] - mx);
      sum += scores[j];
    }
    const float inv = 1.f / sum;
    for (int j = 0; j < n; ++j) scores[j] *= inv;
    // V in 16-wide column strips whose accumulators stay in registers across all keys.
    float* o = s.out + (size_t)i * qdim + (size_t)h * d;
    int e0 = 0;
    for (; e0 + 16 <= d; e0 += 16) {
      v8f a0 = {0, 0, 0, 0, 0, 0, 0, 0}, a1 = a0;
      for (int j = 0; j < n; ++j) {
        const float* v = s.v[j] + (size_t)kvh * d + e0;
        a0 += scores[j] * Load8(v);
        a1 += scores[j] * Load8(v + 8);
      }
      std::memcpy(o + e0, &a0, sizeof a0);
      std::memcpy(o + e0 + 8, &a1, sizeof a1);
    }
    for (int e = e0; e < d; ++e) {
      float a = 0.f;
      for (int j = 0; j < n; ++j) a += scores[j] * s.v[j][(size_t)kvh * d + e];
      o[e] = a;
    }
  }
}

}  // namespace

void Attention(const AttnSeq* seqs, int num_seqs, const AttnShape& sh, ThreadPool* pool, AttnScratch& scratch) {
  const int items = num_seqs * sh.num_heads;
  if (items == 0) return;
  int max_len = 0;
  for (int s = 0; s < num_seqs; ++s) max_len = std::max(max_len, seqs[s].start + seqs[s].num_new);
  // A few chunks per thread balance uneven sequence lengths; each chunk owns one scores buffer.
  const int threads = pool ? pool->size() : 1;
  const int chunks = std::min(items, std::max(1, threads * 4));
  if ((int)scratch.scores.size() < chunks) scratch.scores.resize(chunks);
  for (int c = 0; c < chunks; ++c)
    if ((int)scratch.scores[c].size() < max_len) scratch.scores[c].resize(max_len);
  auto run = [&](int cb, int ce) {
    for (int c = cb; c < ce; ++c) {
      const int ib = (int)((long)items * c / chunks), ie = (int)((long)items * (c + 1) / chunks);
      for (int it = ib; it < ie; ++it) {
        const AttnSeq& sq = seqs[it / sh.num_heads];
        const int h = it % sh.num_heads;
        float* sc = scratch.scores[c].data();
        switch (sh.head_dim) {
          case 64:
            HeadAttention<64>(sq, h, sh, sc);
            break;
          case 128:
            HeadAttention<128>(sq, h, sh, sc);
            break;
          case 16:
            HeadAttention<16>(sq, h, sh, sc);
            break;
          case 32:
            HeadAttention<32>(sq, h, sh, sc);
            break;
          default:
            HeadAttention<0>(sq, h, sh, sc);
            break;
        }
      }
    }
  };
  if (pool)
    pool->ParallelFor(chunks, run);
  else
    run(0, chunks);
}

}  // namespace hs::cpu
