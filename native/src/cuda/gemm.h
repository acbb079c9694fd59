// cuBLAS GEMMs of the engine: fp16 inputs, fp32 accumulation (CUBLAS_COMPUTE_32F), fp16 or fp32
// output. Row-major views throughout; the column-major mapping lives only in gemm.cc.
// Linear and the attention GEMMs go through cuBLAS; LtGemm's GEMMs with a fused bias (and ReLU)
// epilogue go through cuBLASLt (link both: CUDA::cublas and CUDA::cublasLt, -lcublas -lcublasLt).
#pragma once
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <memory>

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

// GEMMs with the bias (and ReLU) folded into the cuBLASLt epilogue, so that no separate bias kernel
// reads and writes the output again. Same row-major view as Linear: Y[M,N] from X[M,K] and W[N,K],
// fp16 inputs, fp32 accumulation; the bias has one value per output feature (column of Y).
//
// One LtGemm per compute stream: it owns a cuBLASLt handle, a device workspace used by every call
// in stream order (so calls from another stream would race on it) and a cache of the algorithm the
// heuristic chose per problem (shapes, leading dimensions, pointer alignments, epilogue, types), so
// the heuristic runs once per distinct problem. Every cublasLtMatmul gets the stream explicitly.
// Not thread-safe (like a cublasHandle_t bound to one stream): one host thread issues its calls.
// Create it with the stream's device current; destroy it before the stream.
// Errors: std::runtime_error (cuBLASLt status string, or no algorithm for a problem);
// std::invalid_argument for a shape or leading dimension that cannot be right.
class LtGemm {
 public:
  // The cuBLAS guide (cublasSetWorkspace) recommends 32 MiB of workspace on Hopper, 4 MiB before
  // it. The heuristic only offers algorithms whose scratch fits (CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES),
  // so a small workspace drops the split-K / stream-K kernels that help when the output has few
  // tiles (decode-sized M). 32 MiB sits inside what the planner keeps back for the CUDA context and
  // cuBLAS (gpuReserveBytes, at least 1 GiB) and is not counted in the engine's own budget.
  static constexpr size_t kDefaultWorkspaceBytes = size_t{32} << 20;

  explicit LtGemm(cudaStream_t stream, size_t workspace_bytes = kDefaultWorkspaceBytes);
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  // fp16 Y[M,N] = relu(X[M,K] · W[N,K]ᵀ + b), b fp16 [N] (CUBLASLT_EPILOGUE_RELU_BIAS; the bias is
  // added to the fp32 accumulator before ReLU and the one rounding to fp16). bias == nullptr:
  // Y = relu(X · Wᵀ) (CUBLASLT_EPILOGUE_RELU), ReLU alone.
  void LinearBiasRelu(int M, int N, int K, const __half* X, int ldx, const __half* W, int ldw, const __half* bias,
                      __half* Y, int ldy);

  // fp16 Y[M,N] = X[M,K] · W[N,K]ᵀ: a plain projection (CUBLASLT_EPILOGUE_DEFAULT), for the GEMMs
  // whose bias comes later (QKV: with RoPE and the cache write) or that have none. Through cuBLASLt
  // rather than Linear because its choice ran the OPT-13B prefill's QKV GEMM 2-4% faster on the H200.
  void LinearHalf(int M, int N, int K, const __half* X, int ldx, const __half* W, int ldw, __half* Y, int ldy);

  // fp32 Y[M,N] += X[M,K] · W[N,K]ᵀ + b (beta = 1, in place: C = D = Y; CUBLASLT_EPILOGUE_BIAS).
  // The bias is fp32 [N]: with fp32 D, cuBLASLt takes a bias of D's type (CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE
  // documents fp16 only as an fp8-kernel exception), so the caller keeps an fp32 copy of an fp16 bias.
  // bias == nullptr: Y += X · Wᵀ, as Linear(..., y_f32, ldy, 1, 1).
  void LinearBiasAccumulate(int M, int N, int K, const __half* X, int ldx, const __half* W, int ldw, const float* bias,
                            float* Y, int ldy);

  cudaStream_t stream() const;
  // Problems whose algorithm is cached (each one heuristic query); for tests and logs.
  size_t cached_plans() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hs::cuda
