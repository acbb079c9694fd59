// cuBLAS GEMMs of the engine: fp16 inputs, fp32 accumulation (CUBLAS_COMPUTE_32F), fp16 or fp32
// output. Row-major views throughout; the column-major mapping lives only in gemm.cc.
#pragma once
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace hs::cuda {

// Y[M,N] = alpha * X[M,K] · W[N,K]ᵀ + beta * Y. X, W fp16 (row strides ldx, ldw); Y fp16 or fp32
// (row stride ldy). beta 0 or 1 (1: accumulate into the fp32 residual stream).
void Linear(cublasHandle_t h, int M, int N, int K, const __half* X, int ldx, const __half* W, int ldw, void* Y,
            bool y_f32, int ldy, float alpha = 1.f, float beta = 0.f);

// Prefill attention for one sequence, as strided-batched GEMMs over heads (GQA handled by looping
// over the query heads that share one K/V head).
//   scores[h][i][j] = scale * Q[i, h] · K[j, kvh(h)]      (fp32, [heads, n, ctx])
//   out[i, h]       = Σ_j probs[h][i][j] · V[j, kvh(h)]    (fp16)
// Q: [n, ldq] with head h at column h*head_dim; K, V: [ctx, kv_dim]; out: [n, ldo].
void AttentionScores(cublasHandle_t h, int n, int ctx, int heads, int kv_heads, int head_dim, const __half* Q, int ldq,
                     const __half* K, float scale, float* scores);
void AttentionOutput(cublasHandle_t h, int n, int ctx, int heads, int kv_heads, int head_dim, const __half* probs,
                     const __half* V, __half* out, int ldo);

}  // namespace hs::cuda
