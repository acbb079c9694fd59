// Where one prefill layer's time goes (issue 10, acceptance 1): times each operation the CUDA
// engine's Compute runs for a prefill of B sequences × P prompt tokens of one preset (default
// OPT-13B, 128 × 512), with random fp16 data, each on its own after a warm-up, and next to it the
// variants worth considering or replaced (fp16 instead of fp32 residual output, whole-batch instead of
// chunked FFN GEMMs; the gather/scores/softmax/output ops the fused prompt attention of
// prefill_attention.cu replaced for head dims 64 and 128; cuBLAS against cuBLASLt for each GEMM: the
// engine takes cuBLASLt for QKV, out-projection and FFN up, cuBLAS for FFN down, whose bias rides in
// the out-projection's epilogue). inEngine says which ops the engine runs now. The engine's own
// kernels and GEMM wrappers are called, not copies of them. --reps 20 or more times each op under the
// card's sustained power limit, as the engine's 2.6 s prefill runs (a few reps run at boost clocks).
// Then the same for one decode step of the batch at --context cached tokens (default prompt + 16,
// the mean context of a 32-token generation), the cache in the GPU tier: the GEMMs at batch rows and
// the paged attention, with the bytes each must read and the HBM rate that gives.
// Usage: hs_prefill_parts_bench [--model opt-13b] [--batch 128] [--prompt 512] [--context 528] [--reps 3]
// One JSON line per operation ({"op", "ms", "tflops", "gbps"}: ms per layer, as the engine runs it),
// then a summary line per phase with the engine's sum per layer and × layers.
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "cuda/causal_softmax.cuh"
#include "cuda/cuda_check.h"
#include "cuda/gather_pages.cuh"
#include "cuda/gemm.h"
#include "cuda/norm.cuh"
#include "cuda/page_tier.h"
#include "cuda/paged_attention.cuh"
#include "cuda/prefill_attention.cuh"
#include "cuda/qkv_post.cuh"
#include "cuda/stream_timing.h"
#include "presets.h"

namespace {

using namespace hs;
using namespace hs::cuda;

__global__ void FillRandom(__half* p, size_t n, uint32_t seed, float amp) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n; i += size_t{gridDim.x} * blockDim.x) {
    uint32_t x = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    x ^= x >> 13;
    x *= 0x5bd1e995u;
    x ^= x >> 15;
    p[i] = __float2half(amp * (static_cast<float>(x & 0xffff) / 32768.f - 1.f));
  }
}

template <typename T>
T* DevAlloc(size_t elems) {
  T* p = nullptr;
  HS_CUDA_CHECK(cudaMalloc(&p, elems * sizeof(T)));
  return p;
}

__half* RandomHalf(size_t elems, uint32_t seed, float amp) {
  __half* p = DevAlloc<__half>(elems);
  FillRandom<<<1024, 256>>>(p, elems, seed, amp);
  return p;
}

void Print(const char* op, double ms, double flops, double bytes, bool in_engine) {
  std::printf("{\"op\":\"%s\",\"ms\":%.3f,\"tflops\":%.1f,\"gbps\":%.0f,\"inEngine\":%s}\n", op, ms,
              flops / (ms / 1e3) / 1e12, bytes / (ms / 1e3) / 1e9, in_engine ? "true" : "false");
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::string model = "opt-13b";
  int batch = 128, prompt = 512, reps = 3, context = -1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--model")
      model = argv[i + 1];
    else if (k == "--batch")
      batch = std::atoi(argv[i + 1]);
    else if (k == "--prompt")
      prompt = std::atoi(argv[i + 1]);
    else if (k == "--reps")
      reps = std::atoi(argv[i + 1]);
    else if (k == "--context")
      context = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "unknown flag %s\n", k.c_str());
      return 2;
    }
  }
  const ModelConfig c = cudatest::Preset(model);
  const bool llama = c.arch == Arch::LLAMA;
  const int h = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), f = c.ffn_size, hd = c.head_dim;
  const int rows = batch * prompt, ldqkv = q + 2 * kv, chunk = std::min(rows, 8192), bt = 16;
  const int f1 = (llama ? 2 : 1) * f;
  std::fprintf(stderr, "[parts] %s: %d rows (batch %d x prompt %d), hidden %d, ffn %d\n", model.c_str(), rows, batch,
               prompt, h, f);

  cudaStream_t s;
  HS_CUDA_CHECK(cudaStreamCreate(&s));
  cublasHandle_t blas;
  if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS) return 1;
  cublasSetStream(blas, s);
  LtGemm lt(s);

  // Weights and activations of one layer, as the engine's buffers hold them.
  __half* wqkv = RandomHalf(static_cast<size_t>(ldqkv) * h, 1, 0.02f);
  __half* wo = RandomHalf(static_cast<size_t>(h) * q, 2, 0.02f);
  __half* w1 = RandomHalf(static_cast<size_t>(f1) * h, 3, 0.02f);
  __half* w2 = RandomHalf(static_cast<size_t>(h) * f, 4, 0.02f);
  __half* vec = RandomHalf(static_cast<size_t>(ldqkv) + f1 + 4 * h, 5, 0.1f);
  __half* x = RandomHalf(static_cast<size_t>(rows) * h, 6, 1.f);
  __half* qkv = RandomHalf(static_cast<size_t>(rows) * ldqkv, 7, 1.f);
  __half* att = RandomHalf(static_cast<size_t>(rows) * q, 8, 1.f);
  __half* ffn = RandomHalf(static_cast<size_t>(rows) * f1, 9, 1.f);
  __half* y16 = DevAlloc<__half>(static_cast<size_t>(rows) * h);
  float* h_all = DevAlloc<float>(static_cast<size_t>(rows) * h);
  HS_CUDA_CHECK(cudaMemset(h_all, 0, static_cast<size_t>(rows) * h * 4));
  const int num_pages = rows / bt;
  __half* pages = DevAlloc<__half>(static_cast<size_t>(num_pages) * 2 * bt * kv);
  std::vector<int> hpos(rows), hpage(rows), hslot(rows), htable(num_pages);
  for (int r = 0; r < rows; ++r) {
    hpos[r] = r % prompt;
    hpage[r] = r / bt;
    hslot[r] = r % bt;
  }
  for (int p = 0; p < num_pages; ++p) htable[p] = p;
  int* meta = DevAlloc<int>(static_cast<size_t>(rows) * 3 + num_pages);
  HS_CUDA_CHECK(cudaMemcpy(meta, hpos.data(), rows * 4, cudaMemcpyHostToDevice));
  HS_CUDA_CHECK(cudaMemcpy(meta + rows, hpage.data(), rows * 4, cudaMemcpyHostToDevice));
  HS_CUDA_CHECK(cudaMemcpy(meta + 2 * rows, hslot.data(), rows * 4, cudaMemcpyHostToDevice));
  HS_CUDA_CHECK(cudaMemcpy(meta + 3 * rows, htable.data(), num_pages * 4, cudaMemcpyHostToDevice));
  const PageGeom geom{pages, bt, kv, nullptr};
  const size_t sc = static_cast<size_t>(c.num_heads) * prompt * prompt;
  float* scores = DevAlloc<float>(sc);
  __half* probs = DevAlloc<__half>(sc);
  __half* kg = DevAlloc<__half>(static_cast<size_t>(prompt) * kv);
  __half* vg = DevAlloc<__half>(static_cast<size_t>(prompt) * kv);
  HS_CUDA_CHECK(cudaDeviceSynchronize());
  const float scale = 1.f / std::sqrt(static_cast<float>(hd));
  const bool fused = PrefillAttentionSupports(hd);
  float* bias32 = DevAlloc<float>(static_cast<size_t>(h));  // the fp32 bias of the residual GEMMs' epilogue
  HS_CUDA_CHECK(cudaMemset(bias32, 0, static_cast<size_t>(h) * 4));
  const float* res_bias = llama ? nullptr : bias32;
  const double mm = 2.0 * rows;  // flops per (output column × reduction) of a rows-high GEMM

  double engine_ms = 0;
  auto op_bytes = [&](const char* name, double flops, double bytes, bool in_engine, const std::function<void()>& fn) {
    const double ms = MeanMsOnStream(s, reps, fn);
    if (in_engine) engine_ms += ms;
    Print(name, ms, flops, bytes, in_engine);
  };
  // fn(first row, rows) over the FFN's row chunks, as the engine's Compute loops over them.
  auto for_chunks = [&](const std::function<void(int, int)>& fn) {
    for (int r0 = 0; r0 < rows; r0 += chunk) fn(r0, std::min(chunk, rows - r0));
  };
  auto op = [&](const char* name, double flops, bool in_engine, const std::function<void()>& fn) {
    op_bytes(name, flops, 0, in_engine, fn);
  };
  {
    const int n = 8192;
    __half* a = RandomHalf(static_cast<size_t>(n) * n, 11, 1.f);
    __half* b = RandomHalf(static_cast<size_t>(n) * n, 12, 1.f);
    __half* o = DevAlloc<__half>(static_cast<size_t>(n) * n);
    op("gemm8192_random", 2.0 * n * n * n, false, [&] { Linear(blas, n, n, n, a, n, b, n, o, false, n); });
    cudaFree(a);
    cudaFree(b);
    cudaFree(o);
  }
  op("norm1", 0, true, [&] { LaunchNorm(h_all, x, rows, h, vec, llama ? nullptr : vec + h, 1e-5f, llama, s); });
  op("qkv_gemm_lt", mm * ldqkv * h, true, [&] { lt.LinearHalf(rows, ldqkv, h, x, h, wqkv, h, qkv, ldqkv); });
  op("qkv_gemm", mm * ldqkv * h, false, [&] { Linear(blas, rows, ldqkv, h, x, h, wqkv, h, qkv, false, ldqkv); });
  // In the FFN's row chunks: its chunked GEMMs ran 8-10% faster than whole ones under the power cap.
  op("qkv_gemm_lt_chunked", mm * ldqkv * h, false, [&] {
    for_chunks([&](int r0, int cr) {
      lt.LinearHalf(cr, ldqkv, h, x + static_cast<size_t>(r0) * h, h, wqkv, h, qkv + static_cast<size_t>(r0) * ldqkv,
                    ldqkv);
    });
  });
  op("qkv_post", 0, true, [&] {
    LaunchQkvPost(qkv, rows, ldqkv, q, hd, llama ? nullptr : vec + 4 * h, meta, meta + rows, meta + 2 * rows, geom,
                  llama, c.rope_theta, s);
  });
  const double attn_flops = 4.0 * batch * c.num_heads * double(prompt) * prompt * hd;
  op("attention_gather", 0, !fused, [&] {
    for (int b = 0; b < batch; ++b) LaunchGatherPages(meta + 3 * rows + b * (prompt / bt), prompt, geom, kg, vg, s);
  });
  op("attention_scores", attn_flops / 2, !fused, [&] {
    for (int b = 0; b < batch; ++b)
      AttentionScores(blas, prompt, prompt, c.num_heads, c.num_kv_heads, hd,
                      qkv + static_cast<size_t>(b) * prompt * ldqkv, ldqkv, kg, scale, scores);
  });
  op("attention_softmax", 0, !fused, [&] {
    for (int b = 0; b < batch; ++b) LaunchCausalSoftmax(scores, probs, c.num_heads, prompt, prompt, 0, s);
  });
  op("attention_output", attn_flops / 2, !fused, [&] {
    for (int b = 0; b < batch; ++b)
      AttentionOutput(blas, prompt, prompt, c.num_heads, c.num_kv_heads, hd, probs, vg,
                      att + static_cast<size_t>(b) * prompt * q, q);
  });
  // The fused kernel (prefill_attention.cu) over the same pages: all sequences in one launch, K/V read
  // from the pages, no score buffer. Effective TFLOP/s on the causal half (the GEMM ops above do the
  // full square); gbps: the Q, K/V and output bytes it must move at least.
  if (fused) {
    std::vector<int> fmeta(4 * static_cast<size_t>(batch));  // row0 | n_new | start | pt_off
    for (int b = 0; b < batch; ++b) {
      fmeta[b] = b * prompt;
      fmeta[batch + b] = prompt;
      fmeta[2 * batch + b] = 0;
      fmeta[3 * batch + b] = b * (prompt / bt);
    }
    int* dfmeta = DevAlloc<int>(fmeta.size());
    HS_CUDA_CHECK(cudaMemcpy(dfmeta, fmeta.data(), fmeta.size() * 4, cudaMemcpyHostToDevice));
    const PrefillSeqs fseqs{dfmeta, dfmeta + batch, dfmeta + 2 * batch, dfmeta + 3 * batch, meta + 3 * rows,
                            batch,  prompt};
    op_bytes("attention_fused", attn_flops / 2, 2.0 * rows * (2.0 * q + 2.0 * kv), true, [&] {
      LaunchPrefillAttention(qkv, ldqkv, att, q, c.num_heads, c.num_kv_heads, hd, scale, fseqs, geom, s);
    });
    cudaFree(dfmeta);
  }
  op("o_gemm_lt_bias_residual", mm * h * q, true,
     [&] { lt.LinearBiasAccumulate(rows, h, q, att, q, wo, q, res_bias, h_all, h); });
  op("o_gemm_lt_bias_residual_chunked", mm * h * q, false, [&] {
    for_chunks([&](int r0, int cr) {
      lt.LinearBiasAccumulate(cr, h, q, att + static_cast<size_t>(r0) * q, q, wo, q, res_bias,
                              h_all + static_cast<size_t>(r0) * h, h);
    });
  });
  op("o_gemm_f32_residual", mm * h * q, false,
     [&] { Linear(blas, rows, h, q, att, q, wo, q, h_all, true, h, 1.f, 1.f); });
  op("o_gemm_f16_out", mm * h * q, false, [&] { Linear(blas, rows, h, q, att, q, wo, q, y16, false, h); });
  op("norm2", 0, true,
     [&] { LaunchNorm(h_all, x, rows, h, vec, llama ? nullptr : vec + h, 1e-5f, llama, s, res_bias); });
  if (!llama)
    op("w1_gemm_lt_bias_relu_chunked", mm * f1 * h, true, [&] {
      for_chunks([&](int r0, int cr) {
        lt.LinearBiasRelu(cr, f1, h, x + static_cast<size_t>(r0) * h, h, w1, h, vec, ffn, f1);
      });
    });
  if (llama)
    op("w1_gemm_lt_chunked", mm * f1 * h, true, [&] {
      for_chunks([&](int r0, int cr) { lt.LinearHalf(cr, f1, h, x + static_cast<size_t>(r0) * h, h, w1, h, ffn, f1); });
    });
  op("w1_gemm_chunked", mm * f1 * h, false, [&] {
    for_chunks(
        [&](int r0, int cr) { Linear(blas, cr, f1, h, x + static_cast<size_t>(r0) * h, h, w1, h, ffn, false, f1); });
  });
  op("w1_gemm_whole", mm * f1 * h, false, [&] { Linear(blas, rows, f1, h, x, h, w1, h, ffn, false, f1); });
  op("w2_gemm_lt_bias_residual_chunked", mm * h * f, false, [&] {
    for_chunks([&](int r0, int cr) {
      lt.LinearBiasAccumulate(cr, h, f, ffn, f, w2, f, res_bias, h_all + static_cast<size_t>(r0) * h, h);
    });
  });
  op("w2_gemm_chunked_f32_residual", mm * h * f, true, [&] {
    for_chunks([&](int r0, int cr) {
      Linear(blas, cr, h, f, ffn, f, w2, f, h_all + static_cast<size_t>(r0) * h, true, h, 1.f, 1.f);
    });
  });
  op("w2_gemm_chunked_f16_out", mm * h * f, false, [&] {
    for_chunks(
        [&](int r0, int cr) { Linear(blas, cr, h, f, ffn, f, w2, f, y16 + static_cast<size_t>(r0) * h, false, h); });
  });
  op("w2_gemm_whole_f32_residual", mm * h * f, false,
     [&] { Linear(blas, rows, h, f, ffn, f, w2, f, h_all, true, h, 1.f, 1.f); });
  const double gemm_flops = mm * h * (double(ldqkv) + q + f1 + f);
  std::printf(
      "{\"summary\":\"prefill layer\",\"model\":\"%s\",\"rows\":%d,\"engineOpsMsPerLayer\":%.2f,\"layers\":%d,"
      "\"engineOpsSeconds\":%.3f,\"gemmFlopsPerLayer\":%.4g}\n",
      model.c_str(), rows, engine_ms, c.num_layers, engine_ms * c.num_layers / 1e3, gemm_flops);

  // ---- one decode step: batch rows, every sequence at `context` cached tokens in GPU-tier pages ----
  if (context < 0) context = prompt + 16;
  const int ctx_pages = (context + bt) / bt;  // the new token's slot included
  cudaFree(pages);
  __half* dev_pages = DevAlloc<__half>(static_cast<size_t>(batch) * ctx_pages * 2 * bt * kv);
  FillRandom<<<1024, 256>>>(dev_pages, static_cast<size_t>(batch) * ctx_pages * 2 * bt * kv, 13, 1.f);
  // Per row: its sequence, position, page-list offset, and the new token's page and slot.
  std::vector<int> dseq(batch), dpos(batch, context), doff(batch), dpage(batch), dslot(batch, context % bt);
  std::vector<int> dtable(static_cast<size_t>(batch) * ctx_pages);
  for (int b = 0; b < batch; ++b) {
    dseq[b] = b;
    doff[b] = b * ctx_pages;
    dpage[b] = kDevicePage + b * ctx_pages + context / bt;
    for (int p = 0; p < ctx_pages; ++p)
      dtable[static_cast<size_t>(b) * ctx_pages + p] = kDevicePage + b * ctx_pages + p;
  }
  int* dmeta = DevAlloc<int>(5 * static_cast<size_t>(batch) + dtable.size());
  HS_CUDA_CHECK(cudaMemcpy(dmeta, dseq.data(), batch * 4, cudaMemcpyHostToDevice));
  HS_CUDA_CHECK(cudaMemcpy(dmeta + batch, dpos.data(), batch * 4, cudaMemcpyHostToDevice));
  HS_CUDA_CHECK(cudaMemcpy(dmeta + 2 * batch, doff.data(), batch * 4, cudaMemcpyHostToDevice));
  HS_CUDA_CHECK(cudaMemcpy(dmeta + 3 * batch, dpage.data(), batch * 4, cudaMemcpyHostToDevice));
  HS_CUDA_CHECK(cudaMemcpy(dmeta + 4 * batch, dslot.data(), batch * 4, cudaMemcpyHostToDevice));
  HS_CUDA_CHECK(cudaMemcpy(dmeta + 5 * batch, dtable.data(), dtable.size() * 4, cudaMemcpyHostToDevice));
  const PageGeom dgeom{nullptr, bt, kv, dev_pages};
  const AttnRows rows_meta{dmeta, dmeta + batch, dmeta + 2 * batch, dmeta + 5 * batch};
  HS_CUDA_CHECK(cudaDeviceSynchronize());
  engine_ms = 0;
  const double dm = 2.0 * batch;
  const double wbytes = 2.0 * h * (double(ldqkv) + q + f1 + f);  // one layer's fp16 GEMM weights
  op_bytes("decode_qkv_gemm_lt", dm * ldqkv * h, 2.0 * ldqkv * h, true,
           [&] { lt.LinearHalf(batch, ldqkv, h, x, h, wqkv, h, qkv, ldqkv); });
  op_bytes("decode_qkv_gemm", dm * ldqkv * h, 2.0 * ldqkv * h, false,
           [&] { Linear(blas, batch, ldqkv, h, x, h, wqkv, h, qkv, false, ldqkv); });
  op_bytes("decode_paged_attention", 4.0 * batch * c.num_heads * double(context + 1) * hd,
           2.0 * 2 * batch * double(context + 1) * kv, true, [&] {
             LaunchPagedAttention(qkv, ldqkv, att, q, batch, c.num_heads, c.num_kv_heads, hd, scale, rows_meta, dgeom,
                                  s);
           });
  op_bytes("decode_o_gemm_lt_bias_residual", dm * h * q, 2.0 * h * q, true,
           [&] { lt.LinearBiasAccumulate(batch, h, q, att, q, wo, q, res_bias, h_all, h); });
  op_bytes("decode_o_gemm_f32_residual", dm * h * q, 2.0 * h * q, false,
           [&] { Linear(blas, batch, h, q, att, q, wo, q, h_all, true, h, 1.f, 1.f); });
  if (!llama)
    op_bytes("decode_w1_gemm_lt_bias_relu", dm * f1 * h, 2.0 * f1 * h, true,
             [&] { lt.LinearBiasRelu(batch, f1, h, x, h, w1, h, vec, ffn, f1); });
  if (llama)
    op_bytes("decode_w1_gemm_lt", dm * f1 * h, 2.0 * f1 * h, true,
             [&] { lt.LinearHalf(batch, f1, h, x, h, w1, h, ffn, f1); });
  op_bytes("decode_w1_gemm", dm * f1 * h, 2.0 * f1 * h, false,
           [&] { Linear(blas, batch, f1, h, x, h, w1, h, ffn, false, f1); });
  op_bytes("decode_w2_gemm_lt_bias_residual", dm * h * f, 2.0 * h * f, false,
           [&] { lt.LinearBiasAccumulate(batch, h, f, ffn, f, w2, f, res_bias, h_all, h); });
  op_bytes("decode_w2_gemm_f32_residual", dm * h * f, 2.0 * h * f, true,
           [&] { Linear(blas, batch, h, f, ffn, f, w2, f, h_all, true, h, 1.f, 1.f); });
  op("decode_small_kernels", 0, true, [&] {
    LaunchNorm(h_all, x, batch, h, vec, llama ? nullptr : vec + h, 1e-5f, llama, s);
    LaunchQkvPost(qkv, batch, ldqkv, q, hd, llama ? nullptr : vec + 4 * h, dmeta + batch, dmeta + 3 * batch,
                  dmeta + 4 * batch, dgeom, llama, c.rope_theta, s);
    LaunchNorm(h_all, x, batch, h, vec, llama ? nullptr : vec + h, 1e-5f, llama, s, res_bias);
  });
  const double cache_bytes = 2.0 * 2 * batch * double(context + 1) * kv;
  std::printf(
      "{\"summary\":\"decode step layer\",\"model\":\"%s\",\"batch\":%d,\"context\":%d,\"engineOpsMsPerLayer\":%.3f,"
      "\"layers\":%d,\"engineOpsSeconds\":%.4f,\"hbmBytesPerLayer\":%.4g,\"hbmBoundMsPerLayer@4.8TB/s\":%.3f}\n",
      model.c_str(), batch, context, engine_ms, c.num_layers, engine_ms * c.num_layers / 1e3, wbytes + cache_bytes,
      (wbytes + cache_bytes) / 4.8e12 * 1e3);
  return 0;
}
