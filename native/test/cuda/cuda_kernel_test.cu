// Kernel-level tests of the CUDA backend: each launcher against a plain CPU reference, on odd
// shapes (head_dim 80, GQA, ragged contexts, partial blocks). fp16 storage: tolerances ~1e-2.
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "../test.h"
#include "core/quant.h"
#include "core/sampler.h"
#include "cuda/argmax_rows.cuh"
#include "cuda/causal_softmax.cuh"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_check.h"
#include "cuda/dequant_fp8.cuh"
#include "cuda/dequant_int4.cuh"
#include "cuda/dequant_int8.cuh"
#include "cuda/embed.cuh"
#include "cuda/gather_pages.cuh"
#include "cuda/gather_rows.cuh"
#include "cuda/gemm.h"
#include "cuda/norm.cuh"
#include "cuda/paged_attention.cuh"
#include "cuda/prefill_attention.cuh"
#include "cuda/qkv_post.cuh"
#include "cuda/recompute_post.cuh"
#include "cuda/row_copy.cuh"
#include "cuda/silu_mul.cuh"
#include "device_vectors.cuh"

namespace hs::cudatest {
namespace {

double MaxDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(static_cast<double>(a[i]) - b[i]);
    if (std::isnan(d)) return d;  // std::max would drop a NaN; the checks must see it
    m = std::max(m, d);
  }
  return m;
}

// out_off: elements by which the output pointer is moved off the allocation's alignment (1: the
// scalar path; the vector path needs 8-byte-aligned fp16 output).
// With a shift, each row is normalised after subtracting it (the engine's FFN-down bias, added to the
// residual ahead of time); the shift here is large against the rows, so ignoring it fails the check.
void CheckNorm(int rows, int cols, int out_off = 0) {
  auto x = Rand(static_cast<size_t>(rows) * cols, 1, 3.f), w = Rand(cols, 2), b = Rand(cols, 3),
       shift = Rand(cols, 4, 4.f);
  for (auto& v : x) v += 0.5f;  // a non-zero mean
  float *dx = ToDev(x), *dshift = ToDev(shift);
  __half *dw = ToDevHalf(w), *db = ToDevHalf(b), *dy = nullptr;
  HS_CUDA_CHECK(cudaMalloc(&dy, (static_cast<size_t>(rows) * cols + out_off) * 2));
  for (bool shifted : {false, true}) {
    std::vector<float> xs = x;  // what the norm must see
    if (shifted)
      for (size_t i = 0; i < xs.size(); ++i) xs[i] -= shift[i % cols];
    for (bool rms : {false, true}) {
      cuda::LaunchNorm(dx, dy + out_off, rows, cols, dw, db, 1e-5f, rms, 0, shifted ? dshift : nullptr);
      auto y = FromDevHalf(dy + out_off, static_cast<size_t>(rows) * cols);
      std::vector<float> ref(static_cast<size_t>(rows) * cols);
      for (int r = 0; r < rows; ++r) {
        const float* xr = &xs[static_cast<size_t>(r) * cols];
        double mean = 0, var = 0;
        if (!rms) {
          for (int c = 0; c < cols; ++c) mean += xr[c];
          mean /= cols;
        }
        for (int c = 0; c < cols; ++c) var += (xr[c] - mean) * (xr[c] - mean);
        const double rstd = 1.0 / std::sqrt(var / cols + 1e-5);
        for (int c = 0; c < cols; ++c)
          ref[static_cast<size_t>(r) * cols + c] = (xr[c] - mean) * rstd * w[c] + (rms ? 0 : b[c]);
      }
      HS_CHECK(MaxDiff(y, ref) < 1e-2);
    }
  }
  for (void* p : {(void*)dx, (void*)dshift, (void*)dw, (void*)db, (void*)dy}) cudaFree(p);
}

HS_TEST(kernel_norm_layer_and_rms) {
  CheckNorm(5, 771);      // odd cols: scalar path
  CheckNorm(5, 5120);     // register path, 5 float4 per thread
  CheckNorm(3, 64);       // register path, one warp
  CheckNorm(4, 9216);     // register path, 9 float4 per thread (opt-66b)
  CheckNorm(3, 1280);     // register path, 160 threads × 2
  CheckNorm(2, 16388);    // cols % 4 == 0 but wider than the register path holds: scalar path
  CheckNorm(3, 5120, 1);  // misaligned output: scalar path
}

HS_TEST(kernel_linear_matches_reference) {
  const int M = 37, N = 129, K = 200;
  auto x = Rand(M * K, 4), w = Rand(N * K, 5);
  __half *dx = ToDevHalf(x), *dw = ToDevHalf(w);
  float* dy = nullptr;
  HS_CUDA_CHECK(cudaMalloc(&dy, M * N * 4));
  cublasHandle_t h;
  cublasCreate(&h);
  cuda::Linear(h, M, N, K, dx, K, dw, K, dy, true, N);
  std::vector<float> y(M * N);
  HS_CUDA_CHECK(cudaMemcpy(y.data(), dy, M * N * 4, cudaMemcpyDeviceToHost));
  std::vector<float> ref(M * N);
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      double s = 0;
      for (int k = 0; k < K; ++k) s += x[m * K + k] * w[n * K + k];
      ref[m * N + n] = static_cast<float>(s);
    }
  HS_CHECK(MaxDiff(y, ref) < 1e-3);
  cublasDestroy(h);
  cudaFree(dx);
  cudaFree(dw);
  cudaFree(dy);
}

// Reference causal attention of query rows over contiguous K/V.
std::vector<float> RefAttention(const std::vector<float>& q, int n, int start, const std::vector<float>& k,
                                const std::vector<float>& v, int heads, int kv_heads, int hd) {
  const int q_dim = heads * hd, kv_dim = kv_heads * hd, group = heads / kv_heads;
  std::vector<float> out(static_cast<size_t>(n) * q_dim);
  for (int i = 0; i < n; ++i)
    for (int hh = 0; hh < heads; ++hh) {
      const int kvh = hh / group, ctx = start + i + 1;
      std::vector<double> s(ctx);
      double mx = -1e30;
      for (int j = 0; j < ctx; ++j) {
        double d = 0;
        for (int e = 0; e < hd; ++e) d += q[i * q_dim + hh * hd + e] * k[j * kv_dim + kvh * hd + e];
        s[j] = d / std::sqrt(static_cast<double>(hd));
        mx = std::max(mx, s[j]);
      }
      double sum = 0;
      for (auto& x : s) sum += (x = std::exp(x - mx));
      for (int e = 0; e < hd; ++e) {
        double o = 0;
        for (int j = 0; j < ctx; ++j) o += s[j] / sum * v[j * kv_dim + kvh * hd + e];
        out[i * q_dim + hh * hd + e] = static_cast<float>(o);
      }
    }
  return out;
}

// One sequence with `start` cached tokens and `n` new ones, its blocks scattered over pages in
// reverse order; paged kernel and GEMM path must both match the reference.
void CheckAttention(int heads, int kv_heads, int hd, int start, int n) {
  const int bt = 16, kv_dim = kv_heads * hd, q_dim = heads * hd, ctx = start + n;
  const int nblocks = (ctx + bt - 1) / bt, npages = nblocks + 2;
  auto q = Rand(static_cast<size_t>(n) * q_dim, 10), k = Rand(static_cast<size_t>(ctx) * kv_dim, 11),
       v = Rand(static_cast<size_t>(ctx) * kv_dim, 12);
  std::vector<int> table(nblocks);
  for (int b = 0; b < nblocks; ++b) table[b] = npages - 1 - b;
  const size_t page_elems = 2ull * bt * kv_dim;
  std::vector<float> pages(npages * page_elems, 0.f);
  for (int j = 0; j < ctx; ++j)
    for (int c = 0; c < kv_dim; ++c) {
      pages[table[j / bt] * page_elems + (j % bt) * kv_dim + c] = k[j * kv_dim + c];
      pages[table[j / bt] * page_elems + bt * kv_dim + (j % bt) * kv_dim + c] = v[j * kv_dim + c];
    }
  const auto ref = RefAttention(q, n, start, k, v, heads, kv_heads, hd);
  __half *dq = ToDevHalf(q), *dp = ToDevHalf(pages), *dout = nullptr;
  HS_CUDA_CHECK(cudaMalloc(&dout, static_cast<size_t>(n) * q_dim * 2));
  cuda::PageGeom geom{dp, bt, kv_dim};
  std::vector<int> row_seq(n, 0), row_pos(n), pt_off{0};
  for (int i = 0; i < n; ++i) row_pos[i] = start + i;
  int *d_rs = ToDev(row_seq), *d_rp = ToDev(row_pos), *d_off = ToDev(pt_off), *d_tab = ToDev(table);
  const float scale = 1.f / std::sqrt(static_cast<float>(hd));
  cuda::LaunchPagedAttention(dq, q_dim, dout, q_dim, n, heads, kv_heads, hd, scale, {d_rs, d_rp, d_off, d_tab}, geom,
                             0);
  HS_CHECK(MaxDiff(FromDevHalf(dout, static_cast<size_t>(n) * q_dim), ref) < 1e-2);
  // A page table spanning tiers: odd blocks come from a second buffer (the GPU tier) by kDevicePage + id.
  {
    std::vector<int> mixed = table;
    for (int b = 1; b < nblocks; b += 2) mixed[b] = cuda::kDevicePage + table[b];
    __half* dtier = ToDevHalf(pages);
    HS_CUDA_CHECK(cudaMemset(dp, 0xff, npages * page_elems * 2));  // staging copies of odd blocks now poison (NaN)
    for (int b = 0; b < nblocks; b += 2)
      HS_CUDA_CHECK(cudaMemcpy(dp + table[b] * page_elems, dtier + table[b] * page_elems, page_elems * 2,
                               cudaMemcpyDeviceToDevice));
    cuda::PageGeom tiers{dp, bt, kv_dim, dtier};
    int* d_mixed = ToDev(mixed);
    HS_CUDA_CHECK(cudaMemset(dout, 0, static_cast<size_t>(n) * q_dim * 2));
    cuda::LaunchPagedAttention(dq, q_dim, dout, q_dim, n, heads, kv_heads, hd, scale, {d_rs, d_rp, d_off, d_mixed},
                               tiers, 0);
    HS_CHECK(MaxDiff(FromDevHalf(dout, static_cast<size_t>(n) * q_dim), ref) < 1e-2);
    HS_CUDA_CHECK(
        cudaMemcpy(dp, dtier, npages * page_elems * 2, cudaMemcpyDeviceToDevice));  // restore for the GEMM path
    cudaFree(dtier);
    cudaFree(d_mixed);
  }
  // GEMM path.
  __half *kg, *vg, *probs;
  float* scores;
  HS_CUDA_CHECK(cudaMalloc(&kg, ctx * kv_dim * 2));
  HS_CUDA_CHECK(cudaMalloc(&vg, ctx * kv_dim * 2));
  HS_CUDA_CHECK(cudaMalloc(&scores, static_cast<size_t>(heads) * n * ctx * 4));
  HS_CUDA_CHECK(cudaMalloc(&probs, static_cast<size_t>(heads) * n * ctx * 2));
  HS_CUDA_CHECK(cudaMemset(dout, 0, static_cast<size_t>(n) * q_dim * 2));
  cublasHandle_t h;
  cublasCreate(&h);
  cuda::LaunchGatherPages(d_tab, ctx, geom, kg, vg, 0);
  cuda::AttentionScores(h, n, ctx, heads, kv_heads, hd, dq, q_dim, kg, scale, scores);
  cuda::LaunchCausalSoftmax(scores, probs, heads, n, ctx, start, 0);
  cuda::AttentionOutput(h, n, ctx, heads, kv_heads, hd, probs, vg, dout, q_dim);
  HS_CHECK(MaxDiff(FromDevHalf(dout, static_cast<size_t>(n) * q_dim), ref) < 1e-2);
  cublasDestroy(h);
  for (void* p : {(void*)dq, (void*)dp, (void*)dout, (void*)d_rs, (void*)d_rp, (void*)d_off, (void*)d_tab, (void*)kg,
                  (void*)vg, (void*)scores, (void*)probs})
    cudaFree(p);
}

HS_TEST(kernel_attention_decode_and_prefill) {
  CheckAttention(4, 4, 16, 37, 1);    // decode, partial last block
  CheckAttention(6, 2, 80, 50, 3);    // GQA, head_dim 80, short chunk
  CheckAttention(4, 4, 64, 0, 40);    // prefill from empty
  CheckAttention(8, 4, 128, 20, 25);  // chunked prefill over a cached prefix, GQA
  CheckAttention(4, 4, 128, 527, 1);  // decode at OPT-13B's head_dim over a 528-token context (vector path)
  CheckAttention(8, 2, 64, 300, 2);   // vector path, GQA, head_dim 64
  CheckAttention(2, 2, 256, 45, 1);   // vector path, head_dim 256
  CheckAttention(3, 3, 128, 2, 1);    // vector path, fewer keys than the 16 key groups (one iteration)
  CheckAttention(2, 1, 64, 95, 2);    // vector path, 96 and 97 keys: the ring's slots reused, GQA
}

// ---- fused prefill attention (prefill_attention.cu) -------------------------------------------------
// Several prompt sequences of one mini-batch in one launch, against the float64 reference from the
// same fp16 inputs. Rows: `gap` decode rows first (never written: they must keep their sentinel), then
// each sequence's new tokens; Q inside fused QKV rows (ldq = q_dim + 2 kv_dim) as the engine has it.
// Pages: a shuffled permutation of the page indices, every third block in the GPU tier (kDevicePage +
// i); every page slot that no table entry names (the unused copy in the other tier, spare pages, rows
// past a sequence's last key) is NaN, so a read of a wrong page or row shows as NaN.
// Tolerance 1e-2 · max(1, max |ref|): P enters P·V rounded to fp16 (2^-11 relative per weight) and
// the output is rounded to fp16, so a correct kernel is off by ~1e-3 of the output scale (a host
// emulation of the kernel gave 4e-4 on these cases), while a fragment, mask or page error is O(0.1).
// with_gemm_path: also run the old path (gather, scores, causal softmax, output) per sequence over
// the same pages; the two must agree within the same tolerance.
void CheckPrefillAttention(int heads, int kv_heads, int hd, const std::vector<int>& n_new,
                           const std::vector<int>& start, int bt = 16, float q_amp = 1.f, bool with_gemm_path = false) {
  const int nseq = static_cast<int>(n_new.size()), gap = 3;
  const int q_dim = heads * hd, kv_dim = kv_heads * hd, ldq = q_dim + 2 * kv_dim, ldo = q_dim;
  std::vector<int> row0(nseq), pt_off(nseq);
  int rows = gap, blocks = 0, max_new = 0, max_ctx = 0;
  for (int s = 0; s < nseq; ++s) {
    row0[s] = rows;
    rows += n_new[s];
    pt_off[s] = blocks;
    blocks += (start[s] + n_new[s] + bt - 1) / bt;
    max_new = std::max(max_new, n_new[s]);
    max_ctx = std::max(max_ctx, start[s] + n_new[s]);
  }
  const int npages = blocks + 3;
  std::vector<int> perm(npages);
  for (int i = 0; i < npages; ++i) perm[i] = i;
  std::mt19937 rng(static_cast<uint32_t>(7 * heads + hd + nseq));
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<int> table(blocks);
  for (int b = 0; b < blocks; ++b) table[b] = (b % 3 == 1 ? cuda::kDevicePage : 0) + perm[b];
  const size_t pe = 2ull * bt * kv_dim;
  std::vector<float> staging(npages * pe, NAN), tier(npages * pe, NAN);
  const auto q = Rand(static_cast<size_t>(rows) * ldq, 60, q_amp);
  std::vector<float> expect(static_cast<size_t>(rows) * ldo, 7.f);  // gap rows keep the sentinel
  double max_ref = 0;
  for (int s = 0; s < nseq; ++s) {
    const int ctx = start[s] + n_new[s];
    const auto k = Rand(static_cast<size_t>(ctx) * kv_dim, 61 + s), v = Rand(static_cast<size_t>(ctx) * kv_dim, 71 + s);
    for (int j = 0; j < ctx; ++j) {
      const int page = table[pt_off[s] + j / bt];
      std::vector<float>& dst = page >= cuda::kDevicePage ? tier : staging;
      const size_t base = static_cast<size_t>(page % cuda::kDevicePage) * pe;
      for (int c = 0; c < kv_dim; ++c) {
        dst[base + static_cast<size_t>(j % bt) * kv_dim + c] = k[static_cast<size_t>(j) * kv_dim + c];
        dst[base + static_cast<size_t>(bt + j % bt) * kv_dim + c] = v[static_cast<size_t>(j) * kv_dim + c];
      }
    }
    std::vector<float> qs(static_cast<size_t>(n_new[s]) * q_dim);  // this sequence's Q, contiguous
    for (int i = 0; i < n_new[s]; ++i)
      for (int c = 0; c < q_dim; ++c)
        qs[static_cast<size_t>(i) * q_dim + c] = q[static_cast<size_t>(row0[s] + i) * ldq + c];
    const auto ref = RefAttention(qs, n_new[s], start[s], k, v, heads, kv_heads, hd);
    for (int i = 0; i < n_new[s]; ++i)
      for (int c = 0; c < q_dim; ++c) {
        const float r = ref[static_cast<size_t>(i) * q_dim + c];
        expect[static_cast<size_t>(row0[s] + i) * ldo + c] = r;
        max_ref = std::max(max_ref, static_cast<double>(std::fabs(r)));
      }
  }
  const double tol = 1e-2 * std::max(1.0, max_ref);
  std::vector<int> meta;
  for (const std::vector<int>* v :
       std::initializer_list<const std::vector<int>*>{&row0, &n_new, &start, &pt_off, &table})
    meta.insert(meta.end(), v->begin(), v->end());
  int* dmeta = ToDev(meta);
  const cuda::PrefillSeqs seqs{dmeta, dmeta + nseq, dmeta + 2 * nseq, dmeta + 3 * nseq, dmeta + 4 * nseq,
                               nseq,  max_new};
  __half *dq = ToDevHalf(q), *dstage = ToDevHalf(staging), *dtier = ToDevHalf(tier);
  __half* dout = ToDevHalf(std::vector<float>(static_cast<size_t>(rows) * ldo, 7.f));
  const cuda::PageGeom geom{dstage, bt, kv_dim, dtier};
  const float scale = 1.f / std::sqrt(static_cast<float>(hd));
  cuda::LaunchPrefillAttention(dq, ldq, dout, ldo, heads, kv_heads, hd, scale, seqs, geom, 0);
  const auto got = FromDevHalf(dout, static_cast<size_t>(rows) * ldo);
  HS_CHECK(MaxDiff(got, expect) < tol);
  if (with_gemm_path) {
    __half *kg, *vg, *probs, *dold = ToDevHalf(std::vector<float>(static_cast<size_t>(rows) * ldo, 7.f));
    float* scores;
    HS_CUDA_CHECK(cudaMalloc(&kg, static_cast<size_t>(max_ctx) * kv_dim * 2));
    HS_CUDA_CHECK(cudaMalloc(&vg, static_cast<size_t>(max_ctx) * kv_dim * 2));
    HS_CUDA_CHECK(cudaMalloc(&scores, static_cast<size_t>(heads) * max_new * max_ctx * 4));
    HS_CUDA_CHECK(cudaMalloc(&probs, static_cast<size_t>(heads) * max_new * max_ctx * 2));
    cublasHandle_t h;
    cublasCreate(&h);
    for (int s = 0; s < nseq; ++s) {
      const int n = n_new[s], ctx = start[s] + n;
      if (n == 0) continue;
      cuda::LaunchGatherPages(dmeta + 4 * nseq + pt_off[s], ctx, geom, kg, vg, 0);
      cuda::AttentionScores(h, n, ctx, heads, kv_heads, hd, dq + static_cast<size_t>(row0[s]) * ldq, ldq, kg, scale,
                            scores);
      cuda::LaunchCausalSoftmax(scores, probs, heads, n, ctx, start[s], 0);
      cuda::AttentionOutput(h, n, ctx, heads, kv_heads, hd, probs, vg, dold + static_cast<size_t>(row0[s]) * ldo, ldo);
    }
    HS_CHECK(MaxDiff(FromDevHalf(dold, static_cast<size_t>(rows) * ldo), got) < tol);
    cublasDestroy(h);
    for (void* p : {(void*)kg, (void*)vg, (void*)probs, (void*)dold, (void*)scores}) cudaFree(p);
  }
  for (void* p : {(void*)dmeta, (void*)dq, (void*)dstage, (void*)dtier, (void*)dout}) cudaFree(p);
}

HS_TEST(kernel_prefill_attention_matches_reference) {
  // Short, mid and multi-tile prompts (1, 37, 130 new tokens; the last over 21 cached ones), GQA 4:1,
  // head_dim 128; the old gather + GEMM path over the same pages must agree.
  CheckPrefillAttention(8, 2, 128, {1, 37, 130}, {0, 0, 21}, 16, 1.f, true);
  CheckPrefillAttention(4, 4, 64, {1, 37, 130}, {0, 0, 21});  // MHA, head_dim 64
  // Starts on and off the 64-key tile grid, a long cached prefix (keys far past the query tile).
  CheckPrefillAttention(2, 1, 128, {64, 65, 200}, {64, 300, 5});
  CheckPrefillAttention(2, 2, 64, {3, 129, 17}, {200, 63, 1}, 8);         // 8-token blocks
  CheckPrefillAttention(2, 2, 128, {70}, {0}, 16, 6.f);                   // large scores: a sharp softmax
  CheckPrefillAttention(4, 2, 128, {0, 5, 0, 64}, {3, 0, 0, 1});          // sequences without new tokens
  CheckPrefillAttention(4, 4, 128, {512, 300}, {0, 700}, 16, 1.f, true);  // OPT-13B's prompt length
}

HS_TEST(kernel_prefill_attention_supports_head_dims) {
  HS_CHECK(cuda::PrefillAttentionSupports(64));
  HS_CHECK(cuda::PrefillAttentionSupports(128));
  HS_CHECK(!cuda::PrefillAttentionSupports(96));
  HS_CHECK(!cuda::PrefillAttentionSupports(80));
  HS_CHECK(!cuda::PrefillAttentionSupports(256));
  // The launcher refuses what it is not built for before touching memory (all pointers null here).
  const cuda::PrefillSeqs one{nullptr, nullptr, nullptr, nullptr, nullptr, 1, 1};
  HS_CHECK_THROWS(cuda::LaunchPrefillAttention(nullptr, 288, nullptr, 96, 1, 1, 96, 1.f, one, {nullptr, 16, 96}, 0),
                  std::invalid_argument);
  HS_CHECK_THROWS(cuda::LaunchPrefillAttention(nullptr, 132, nullptr, 64, 1, 1, 64, 1.f, one, {nullptr, 16, 64}, 0),
                  std::invalid_argument);  // ldq not a multiple of 8
}

// qkv_post (new tokens) and recompute_post (ACT rows) must give identical K/V for the same input;
// RoPE against the reference rotate-half formula. with_bias false: a null bias pointer (Llama).
void CheckQkvPost(int heads, int kv_heads, int hd, bool rope, bool with_bias) {
  const int q_dim = heads * hd, kv_dim = kv_heads * hd, bt = 16;
  const int rows = 3, ld = q_dim + 2 * kv_dim;
  auto qkv = Rand(rows * ld, 20), bias = Rand(ld, 21, 0.1f);
  if (!with_bias) bias.assign(ld, 0.f);  // the reference adds zeros
  std::vector<int> pos{0, 7, 33}, page{0, 0, 1}, slot{0, 7, 1};
  cuda::PageGeom geom{nullptr, bt, kv_dim};
  const size_t pe = geom.page_elems();
  HS_CUDA_CHECK(cudaMalloc(&geom.pages, 2 * pe * 2));
  HS_CUDA_CHECK(cudaMemset(geom.pages, 0, 2 * pe * 2));
  __half *dqkv = ToDevHalf(qkv), *dbias = ToDevHalf(bias);
  __half* db = with_bias ? dbias : nullptr;
  int *dpos = ToDev(pos), *dpage = ToDev(page), *dslot = ToDev(slot);
  cuda::LaunchQkvPost(dqkv, rows, ld, q_dim, hd, db, dpos, dpage, dslot, geom, rope, 10000.f, 0);
  auto out = FromDevHalf(dqkv, rows * ld);
  auto pg = FromDevHalf(geom.pages, 2 * pe);
  // Reference for q and k of row r.
  auto rope_ref = [&](const float* in, const float* b, int p, int dim, std::vector<float>& o) {
    o.resize(dim);
    for (int c = 0; c < dim; ++c) o[c] = in[c] + b[c];
    if (!rope) return;
    for (int hh = 0; hh < dim / hd; ++hh)
      for (int i = 0; i < hd / 2; ++i) {
        const double ang = p * std::pow(10000.0, -2.0 * i / hd);
        const float x1 = o[hh * hd + i], x2 = o[hh * hd + i + hd / 2];
        o[hh * hd + i] = static_cast<float>(x1 * std::cos(ang) - x2 * std::sin(ang));
        o[hh * hd + i + hd / 2] = static_cast<float>(x2 * std::cos(ang) + x1 * std::sin(ang));
      }
  };
  double err = 0;
  for (int r = 0; r < rows; ++r) {
    std::vector<float> rq, rk;
    rope_ref(&qkv[r * ld], &bias[0], pos[r], q_dim, rq);
    rope_ref(&qkv[r * ld + q_dim], &bias[q_dim], pos[r], kv_dim, rk);
    for (int c = 0; c < q_dim; ++c) err = std::max(err, static_cast<double>(std::fabs(out[r * ld + c] - rq[c])));
    for (int c = 0; c < kv_dim; ++c) {
      err = std::max(err, static_cast<double>(std::fabs(pg[page[r] * pe + slot[r] * kv_dim + c] - rk[c])));
      const float rv = qkv[r * ld + q_dim + kv_dim + c] + bias[q_dim + kv_dim + c];
      err = std::max(err, static_cast<double>(std::fabs(pg[page[r] * pe + bt * kv_dim + slot[r] * kv_dim + c] - rv)));
    }
  }
  HS_CHECK(err < 1e-2);
  // Recompute path: rows of [k|v] laid out as 2 ACT slots × 16 rows; slot 0 -> page 0 (valid 8),
  // slot 1 -> page 1 (valid 2). Rows 0 and 7 of slot 0 and row 1 of slot 1 hold the same inputs as above.
  std::vector<float> kvin(2 * bt * 2 * kv_dim, 0.f);
  const int at[3] = {0, 7, bt + 1};
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < 2 * kv_dim; ++c) kvin[at[r] * 2 * kv_dim + c] = qkv[r * ld + q_dim + c];
  __half* dkv = ToDevHalf(kvin);
  cuda::PageGeom g2 = geom;
  HS_CUDA_CHECK(cudaMalloc(&g2.pages, 2 * pe * 2));
  HS_CUDA_CHECK(cudaMemset(g2.pages, 0, 2 * pe * 2));
  std::vector<int> sp{0, 1}, sp0{0, 32}, sv{8, 2};
  int *dsp = ToDev(sp), *dsp0 = ToDev(sp0), *dsv = ToDev(sv);
  cuda::LaunchRecomputePost(dkv, 2, hd, db ? db + q_dim : nullptr, db ? db + q_dim + kv_dim : nullptr, dsp, dsp0, dsv,
                            g2, rope, 10000.f, 0);
  auto pg2 = FromDevHalf(g2.pages, 2 * pe);
  double diff = 0;
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < kv_dim; ++c) {
      const size_t o = page[r] * pe + slot[r] * kv_dim + c;
      diff = std::max(diff, static_cast<double>(std::fabs(pg[o] - pg2[o])));
      diff = std::max(diff, static_cast<double>(std::fabs(pg[o + bt * kv_dim] - pg2[o + bt * kv_dim])));
    }
  HS_CHECK(diff == 0.0);
  // Rows beyond `valid` stay untouched (slot 1 row 5 would be position 37).
  HS_CHECK(pg2[1 * pe + 5 * kv_dim] == 0.f);
  for (void* p : {(void*)geom.pages, (void*)g2.pages, (void*)dqkv, (void*)dbias, (void*)dpos, (void*)dpage,
                  (void*)dslot, (void*)dkv, (void*)dsp, (void*)dsp0, (void*)dsv})
    cudaFree(p);
}

HS_TEST(kernel_qkv_post_and_recompute_agree) {
  CheckQkvPost(4, 2, 16, true, true);    // RoPE, GQA, 16-byte path (head_dim % 16 == 0)
  CheckQkvPost(4, 2, 72, true, true);    // head_dim 72: RoPE pairs on the scalar path
  CheckQkvPost(4, 1, 128, true, false);  // Llama: no bias, GQA 4:1
  CheckQkvPost(4, 4, 16, false, true);   // OPT: bias only, 16-byte path
  CheckQkvPost(3, 3, 20, false, true);   // kv_dim 60 (not a multiple of 8): scalar path
  CheckQkvPost(2, 2, 16, false, false);  // neither bias nor RoPE: Q untouched, K/V copied
}

// Rows written by the row-copy kernel land in pinned host memory at the right offsets.
HS_TEST(kernel_row_copy_into_pinned_host) {
  const int rows = 4, elems = 40;
  auto src = Rand(rows * elems, 30);
  __half* dsrc = ToDevHalf(src);
  auto* host = static_cast<__half*>(cuda::PinnedAlloc(1000 * 2));
  std::memset(host, 0, 2000);
  std::vector<int64_t> so{0, 40, 80, 120}, dof{500, 0, 200, 43};  // 43: unaligned, scalar path
  int64_t *dso = ToDev(so), *ddo = ToDev(dof);
  cuda::LaunchRowCopy(dsrc, dso, host, ddo, rows, elems, 0);
  HS_CUDA_CHECK(cudaDeviceSynchronize());
  double err = 0;
  for (int r = 0; r < rows; ++r)
    for (int e = 0; e < elems; ++e)
      err = std::max(err, static_cast<double>(std::fabs(__half2float(host[dof[r] + e]) - src[so[r] + e])));
  HS_CHECK(err == 0.0);
  HS_CHECK(__half2float(host[499]) == 0.f);
  cuda::PinnedFree(host);
  cudaFree(dsrc);
  cudaFree(dso);
  cudaFree(ddo);
}

// ---- issue 17: a CPU reference for each small launcher (odd shapes: cols not a multiple of the block) ----

// Causal softmax against a float64 reference: row i of each head keeps columns [0, start + i],
// masked columns exactly 0. p_off: elements by which the output is moved off its alignment.
void CheckCausalSoftmax(int heads, int n, int ctx, int start, int p_off = 0) {
  const size_t m = static_cast<size_t>(heads) * n * ctx;
  auto sc = Rand(m, 50, 4.f);
  float* ds = ToDev(sc);
  __half* dp = nullptr;
  HS_CUDA_CHECK(cudaMalloc(&dp, (m + p_off) * 2));
  cuda::LaunchCausalSoftmax(ds, dp + p_off, heads, n, ctx, start, 0);
  const auto got = FromDevHalf(dp + p_off, m);
  std::vector<float> ref(m, 0.f);
  int nonzero_masked = 0;
  for (size_t row = 0; row < static_cast<size_t>(heads) * n; ++row) {
    const int limit = start + static_cast<int>(row % n) + 1;
    const float* s = &sc[row * ctx];
    double mx = -1e30, sum = 0;
    for (int c = 0; c < limit; ++c) mx = std::max(mx, static_cast<double>(s[c]));
    for (int c = 0; c < limit; ++c) sum += std::exp(s[c] - mx);
    for (int c = 0; c < limit; ++c) ref[row * ctx + c] = static_cast<float>(std::exp(s[c] - mx) / sum);
    for (int c = limit; c < ctx; ++c) nonzero_masked += got[row * ctx + c] != 0.f;
  }
  HS_CHECK(MaxDiff(got, ref) < 2e-3);
  HS_CHECK_EQ(nonzero_masked, 0);
  cudaFree(ds);
  cudaFree(dp);
}

HS_TEST(kernel_causal_softmax_matches_reference) {
  CheckCausalSoftmax(3, 37, 37, 0);       // ctx % 4 != 0: scalar warp path; limits not multiples of 32
  CheckCausalSoftmax(2, 20, 532, 512);    // float4 warp path over a cached prefix
  CheckCausalSoftmax(4, 1, 528, 527);     // decode: n = 1, start > 0
  CheckCausalSoftmax(2, 1, 1, 0);         // a single column
  CheckCausalSoftmax(2, 40, 1100, 1060);  // ctx > 1024: 16 float4 per lane
  CheckCausalSoftmax(2, 64, 2047, 1983);  // longest scalar warp path: 64 scores per lane
  CheckCausalSoftmax(2, 3, 2051, 2048);   // longer than the warp path holds: block per row
  CheckCausalSoftmax(1, 2, 8194, 8192);   // a long prompt's rows
  CheckCausalSoftmax(2, 9, 300, 291, 1);  // misaligned output: scalar warp path
}

// Paged K/V into contiguous buffers, blocks scattered over pages in reverse order, odd blocks from the
// GPU tier. out_off: elements by which the outputs are moved off their alignment.
void CheckGatherPages(int ctx, int kv_dim, int out_off = 0) {
  const int bt = 16, nblocks = (ctx + bt - 1) / bt, npages = nblocks + 2;
  const size_t pe = 2ull * bt * kv_dim;
  auto staging = Rand(npages * pe, 51), tier = Rand(npages * pe, 52);
  std::vector<int> table(nblocks);
  for (int b = 0; b < nblocks; ++b) table[b] = (b % 2 ? cuda::kDevicePage : 0) + npages - 1 - b;
  __half *dstage = ToDevHalf(staging), *dtier = ToDevHalf(tier), *dk = nullptr, *dv = nullptr;
  int* dtab = ToDev(table);
  const size_t n = static_cast<size_t>(ctx) * kv_dim;
  HS_CUDA_CHECK(cudaMalloc(&dk, (n + out_off) * 2));
  HS_CUDA_CHECK(cudaMalloc(&dv, (n + out_off) * 2));
  cuda::LaunchGatherPages(dtab, ctx, cuda::PageGeom{dstage, bt, kv_dim, dtier}, dk + out_off, dv + out_off, 0);
  std::vector<float> rk(n), rv(n);
  for (int j = 0; j < ctx; ++j) {
    const int b = j / bt;
    const std::vector<float>& src = b % 2 ? tier : staging;
    const size_t page = (npages - 1 - b) * pe;
    for (int c = 0; c < kv_dim; ++c) {
      rk[static_cast<size_t>(j) * kv_dim + c] = src[page + static_cast<size_t>(j % bt) * kv_dim + c];
      rv[static_cast<size_t>(j) * kv_dim + c] = src[page + static_cast<size_t>(bt + j % bt) * kv_dim + c];
    }
  }
  HS_CHECK(MaxDiff(FromDevHalf(dk + out_off, n), rk) == 0);
  HS_CHECK(MaxDiff(FromDevHalf(dv + out_off, n), rv) == 0);
  for (void* p : {(void*)dstage, (void*)dtier, (void*)dk, (void*)dv, (void*)dtab}) cudaFree(p);
}

HS_TEST(kernel_gather_pages_matches_reference) {
  CheckGatherPages(37, 40);     // 16-byte path, a partial last block
  CheckGatherPages(37, 12);     // kv_dim % 8 != 0: scalar path
  CheckGatherPages(20, 5120);   // opt-13b's kv_dim: 5 units per thread
  CheckGatherPages(37, 40, 1);  // misaligned outputs: scalar path
}

HS_TEST(kernel_embed_matches_reference) {
  const int vocab = 50, cols = 300, pos_rows = 40, offset = 2, rows = 6;
  auto e = Rand(static_cast<size_t>(vocab) * cols, 45), p = Rand(static_cast<size_t>(pos_rows) * cols, 46);
  const std::vector<int> tokens{0, 49, 7, 7, 13, 31}, positions{0, 1, 2, 37, 10, 5};
  int *dt = ToDev(tokens), *dp = ToDev(positions);
  __half *de = ToDevHalf(e), *dpe = ToDevHalf(p);
  float* dh = nullptr;
  HS_CUDA_CHECK(cudaMalloc(&dh, static_cast<size_t>(rows) * cols * 4));
  for (const bool learned : {true, false}) {  // OPT adds learned positions at an offset; Llama has none
    cuda::LaunchEmbed(dt, dp, de, learned ? dpe : nullptr, offset, dh, rows, cols, 0);
    std::vector<float> ref(static_cast<size_t>(rows) * cols);
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c)
        ref[static_cast<size_t>(r) * cols + c] =
            e[static_cast<size_t>(tokens[r]) * cols + c] +
            (learned ? p[static_cast<size_t>(positions[r] + offset) * cols + c] : 0.f);
    HS_CHECK(MaxDiff(FromDev(dh, ref.size()), ref) < 1e-6);
  }
  for (void* q : {(void*)dt, (void*)dp, (void*)de, (void*)dpe, (void*)dh}) cudaFree(q);
}

HS_TEST(kernel_gather_rows_matches_reference) {
  const int in_rows = 9, cols = 517;
  auto in = Rand(static_cast<size_t>(in_rows) * cols, 47);
  const std::vector<int> index{8, 0, 3, 3, 5};
  const int rows = static_cast<int>(index.size());
  float* din = ToDev(in);
  int* di = ToDev(index);
  float* dout = nullptr;
  HS_CUDA_CHECK(cudaMalloc(&dout, static_cast<size_t>(rows) * cols * 4));
  cuda::LaunchGatherRows(din, di, dout, rows, cols, 0);
  std::vector<float> ref;
  for (int r : index)
    ref.insert(ref.end(), in.begin() + static_cast<size_t>(r) * cols, in.begin() + static_cast<size_t>(r + 1) * cols);
  HS_CHECK(MaxDiff(FromDev(dout, ref.size()), ref) == 0);
  // fp16 rows (the last layer's attention output): the same rows, bit for bit.
  __half* din16 = ToDevHalf(in);
  __half* dout16 = nullptr;
  HS_CUDA_CHECK(cudaMalloc(&dout16, static_cast<size_t>(rows) * cols * 2));
  cuda::LaunchGatherRows(din16, di, dout16, rows, cols, 0);
  HS_CHECK(MaxDiff(FromDevHalf(dout16, ref.size()), ref) == 0);
  for (void* q : {(void*)din, (void*)di, (void*)dout, (void*)din16, (void*)dout16}) cudaFree(q);
}

// The GPU's greedy pick against the host's ArgMax: rows of vocabulary width and narrow ones, with
// ties (lowest index wins), infinities, NaNs, and a NaN first logit (0, as the host gives).
HS_TEST(kernel_argmax_rows_matches_host_argmax) {
  for (const int cols : {1, 7, 300, 50272}) {
    const int rows = 9;
    std::vector<float> v(static_cast<size_t>(rows) * cols);
    std::mt19937 rng(cols);
    for (float& x : v) x = static_cast<float>(rng() % 5);  // few values: ties everywhere
    auto at = [&](int r, int c) -> float& { return v[static_cast<size_t>(r) * cols + (c % cols)]; };
    at(1, cols - 1) = 9.f;  // the last column wins
    at(2, cols / 2) = INFINITY;
    at(3, cols / 3) = NAN;
    at(4, 0) = NAN;
    for (int c = 0; c < cols; ++c) at(5, c) = -INFINITY;
    at(6, cols - 1) = 7.f;  // a tie of two maxima: the lower index wins
    at(6, cols / 2) = 7.f;
    float* dv = ToDev(v);
    int* dout = nullptr;
    HS_CUDA_CHECK(cudaMalloc(&dout, rows * sizeof(int)));
    cuda::LaunchArgMaxRows(dv, rows, cols, dout, 0);
    std::vector<int> got(rows);
    HS_CUDA_CHECK(cudaMemcpy(got.data(), dout, rows * sizeof(int), cudaMemcpyDeviceToHost));
    for (int r = 0; r < rows; ++r) HS_CHECK_EQ(got[r], ArgMax(v.data() + static_cast<size_t>(r) * cols, cols));
    cudaFree(dv);
    cudaFree(dout);
  }
}

HS_TEST(kernel_silu_mul_matches_reference) {
  const int rows = 3, ffn = 777;
  auto gu = Rand(static_cast<size_t>(rows) * 2 * ffn, 48, 4.f);  // [rows][gate | up]
  __half* dgu = ToDevHalf(gu);
  __half* dout = nullptr;
  HS_CUDA_CHECK(cudaMalloc(&dout, static_cast<size_t>(rows) * ffn * 2));
  cuda::LaunchSiluMul(dgu, dout, rows, ffn, 0);
  std::vector<float> ref(static_cast<size_t>(rows) * ffn);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < ffn; ++c) {
      const double g = gu[static_cast<size_t>(r) * 2 * ffn + c], u = gu[static_cast<size_t>(r) * 2 * ffn + ffn + c];
      ref[static_cast<size_t>(r) * ffn + c] = static_cast<float>(g / (1 + std::exp(-g)) * u);
    }
  HS_CHECK(MaxDiff(FromDevHalf(dout, ref.size()), ref) < 2e-2);  // fp16 output of values up to ~16
  cudaFree(dgu);
  cudaFree(dout);
}

// ---- issue 14: quantised weights → fp16 (dequant_fp8/int8/int4.cu) ---------------------------
// Each kernel against the CPU's DequantizeRows (core/quant.cc) on one quantised buffer laid out as
// the loader stores it, then a GEMM on the dequantised fp16 weights against a float64 reference.

struct DeviceQuant {
  std::vector<uint8_t> host;  // the quantised buffer (codes | scales | zeros)
  uint8_t* dev = nullptr;
  QuantView view;  // host view
  ~DeviceQuant() { cudaFree(dev); }
};

void QuantizeToDevice(WeightFormat f, int64_t rows, int64_t cols, uint32_t seed, DeviceQuant& q) {
  auto w = Rand(rows * cols, seed, 0.5f);
  w[cols / 2] = 3.f;  // an outlier in row 0
  q.host.assign(QuantizedBytes(f, rows, cols), 0);
  Quantize(w.data(), rows, cols, f, q.host.data());
  q.view = ViewQuantized(f, rows, cols, q.host.data());
  q.dev = ToDev(q.host);
}

// Launches the format's kernel on the device copy of q; returns the fp16 weights on the device.
__half* DequantOnDevice(const DeviceQuant& q, int64_t rows, int64_t cols) {
  __half* out = nullptr;
  HS_CUDA_CHECK(cudaMalloc(&out, rows * cols * 2));
  const auto* scales = reinterpret_cast<const float*>(q.dev + ScalesOffset(q.view.format, rows, cols));
  switch (q.view.format) {
    case WeightFormat::FP8:
      cuda::LaunchDequantFp8(q.dev, scales, rows, cols, out, 0);
      break;
    case WeightFormat::INT8:
      cuda::LaunchDequantInt8(reinterpret_cast<const int8_t*>(q.dev), scales, rows, cols, out, 0);
      break;
    default:
      cuda::LaunchDequantInt4(q.dev, scales, q.dev + ZerosOffset(q.view.format, rows, cols), rows, cols, out, 0);
      break;
  }
  HS_CUDA_CHECK(cudaDeviceSynchronize());
  return out;
}

// Default shape odd: a half-filled int4 byte, a partial last group, fp8's per-element path; cols a
// multiple of 16 takes fp8's vector path.
void CheckDequant(WeightFormat f, int64_t rows = 37, int64_t cols = 301) {
  DeviceQuant q;
  QuantizeToDevice(f, rows, cols, 40 + static_cast<uint32_t>(f), q);
  __half* d = DequantOnDevice(q, rows, cols);
  const auto got = FromDevHalf(d, rows * cols);
  std::vector<float> want(rows * cols);
  DequantizeRows(q.view, 0, rows, want.data());
  int bad = 0;
  for (size_t i = 0; i < want.size(); ++i)  // the same fp32 product, then one rounding to fp16
    bad += got[i] != __half2float(__float2half(want[i]));
  HS_CHECK_EQ(bad, 0);
  cudaFree(d);
}

HS_TEST(kernel_dequant_fp8_matches_cpu) {
  CheckDequant(WeightFormat::FP8);
  CheckDequant(WeightFormat::FP8, 37, 320);
  CheckDequant(WeightFormat::FP8, 3, 16);
}
HS_TEST(kernel_dequant_int8_matches_cpu) { CheckDequant(WeightFormat::INT8); }
HS_TEST(kernel_dequant_int4_matches_cpu) { CheckDequant(WeightFormat::INT4); }

HS_TEST(kernel_dequant_gemm_matches_float64_reference) {
  const int M = 13, N = 200, K = 777;
  cublasHandle_t h;
  cublasCreate(&h);
  const auto x = Rand(M * K, 77, 1.f);
  __half* dx = ToDevHalf(x);
  float* dy = nullptr;
  HS_CUDA_CHECK(cudaMalloc(&dy, M * N * 4));
  for (WeightFormat f : {WeightFormat::FP8, WeightFormat::INT8, WeightFormat::INT4}) {
    DeviceQuant q;
    QuantizeToDevice(f, N, K, 60 + static_cast<uint32_t>(f), q);
    __half* dw = DequantOnDevice(q, N, K);
    cuda::Linear(h, M, N, K, dx, K, dw, K, dy, true, N);
    HS_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<float> y(M * N);
    HS_CUDA_CHECK(cudaMemcpy(y.data(), dy, y.size() * 4, cudaMemcpyDeviceToHost));
    std::vector<float> w(N * K);
    DequantizeRows(q.view, 0, N, w.data());
    double worst = 0;
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < N; ++n) {
        double ref = 0, mag = 0;  // float64 over the fp16-stored dequantised weights
        for (int k = 0; k < K; ++k) {
          const double wk = __half2float(__float2half(w[n * K + k]));
          ref += static_cast<double>(x[m * K + k]) * wk;
          mag += std::fabs(x[m * K + k] * wk);
        }
        worst = std::max(worst, std::fabs(y[m * N + n] - ref) / std::max(1.0, mag));
      }
    HS_CHECK(worst < 1e-5);  // fp32 accumulation only: any layout error is O(1)
    cudaFree(dw);
  }
  cudaFree(dx);
  cudaFree(dy);
  cublasDestroy(h);
}
// ---- end of issue 14 block -------------------------------------------------------------------

}  // namespace
}  // namespace hs::cudatest
