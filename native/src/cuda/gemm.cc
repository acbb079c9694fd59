#include "cuda/gemm.h"

#include <stdexcept>
#include <string>

namespace hs::cuda {
namespace {

void Check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string("cuBLAS error in ") + what + ": " + cublasGetStatusString(s));
}

}  // namespace

// Row-major Y[M,N] = X[M,K]·W[N,K]ᵀ is column-major Yᵀ[N,M] = op_T(W as K×N) · X as K×M.
void Linear(cublasHandle_t h, int M, int N, int K, const __half* X, int ldx, const __half* W, int ldw, void* Y,
            bool y_f32, int ldy, float alpha, float beta) {
  if (M <= 0 || N <= 0) return;
  Check(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, W, CUDA_R_16F, ldw, X, CUDA_R_16F, ldx, &beta, Y,
                     y_f32 ? CUDA_R_32F : CUDA_R_16F, ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "Linear");
}

// Column-major: S_hᵀ[ctx, n] = op_T(K_h as hd×ctx, ld kv_dim) · Q_h (hd×n, ld ldq).
// Batch over kv heads for each r in [0, group): query head = kvh*group + r.
void AttentionScores(cublasHandle_t h, int n, int ctx, int heads, int kv_heads, int head_dim, const __half* Q, int ldq,
                     const __half* K, float scale, float* scores) {
  const int group = heads / kv_heads;
  const int kv_dim = kv_heads * head_dim;
  const float beta = 0.f;
  for (int r = 0; r < group; ++r) {
    Check(cublasGemmStridedBatchedEx(
              h, CUBLAS_OP_T, CUBLAS_OP_N, ctx, n, head_dim, &scale, K, CUDA_R_16F, kv_dim, head_dim, Q + r * head_dim,
              CUDA_R_16F, ldq, static_cast<long long>(group) * head_dim, &beta,
              scores + static_cast<size_t>(r) * n * ctx, CUDA_R_32F, ctx, static_cast<long long>(group) * n * ctx,
              kv_heads, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
          "AttentionScores");
  }
}

// Column-major: O_h[hd, n] (ld ldo) = V_h (hd×ctx, ld kv_dim) · P_h (ctx×n, ld ctx).
void AttentionOutput(cublasHandle_t h, int n, int ctx, int heads, int kv_heads, int head_dim, const __half* probs,
                     const __half* V, __half* out, int ldo) {
  const int group = heads / kv_heads;
  const int kv_dim = kv_heads * head_dim;
  const float alpha = 1.f, beta = 0.f;
  for (int r = 0; r < group; ++r) {
    Check(cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, head_dim, n, ctx, &alpha, V, CUDA_R_16F, kv_dim,
                                     head_dim, probs + static_cast<size_t>(r) * n * ctx, CUDA_R_16F, ctx,
                                     static_cast<long long>(group) * n * ctx, &beta, out + r * head_dim, CUDA_R_16F,
                                     ldo, static_cast<long long>(group) * head_dim, kv_heads, CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT),
          "AttentionOutput");
  }
}

}  // namespace hs::cuda
