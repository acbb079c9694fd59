#include "cuda/gemm.h"

#include <cublasLt.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
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

// ---- cuBLASLt GEMMs with a fused epilogue ----------------------------------------------------------
//
// Same column-major mapping as Linear: row-major Y[M,N] = X[M,K]·W[N,K]ᵀ is column-major
// D = Yᵀ [N×M, ld ldy] = op_T(A) · B with A = W stored K×N (ld ldw) and B = X stored K×M (ld ldx).
// A cuBLASLt bias has one value per row of D, i.e. per output feature (column of Y): what the
// model's bias is. C = D (same pointer, same layout: the in-place form cuBLASLt supports).

namespace {

// The largest power of two (up to 256, cuBLASLt's default assumption) that divides the address:
// the heuristic must know how aligned each operand is, or it may pick a kernel that needs 256
// bytes (the default of CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*_BYTES) for a row-offset pointer.
uint32_t Alignment(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  if (a == 0) return 256;
  return static_cast<uint32_t>(std::min<uintptr_t>(256, a & (~a + 1)));
}

// One cached problem: descriptors and the algorithm the heuristic chose. The bias pointer is set
// on `op` before each call (a host-side attribute); its alignment is part of the key.
struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

void Destroy(Plan& p) {
  if (p.op) cublasLtMatmulDescDestroy(p.op);
  for (cublasLtMatrixLayout_t l : {p.a, p.b, p.d})
    if (l) cublasLtMatrixLayoutDestroy(l);
  p = Plan{};
}

// Byte alignments of the operands (see Alignment; bias 0 without a bias).
struct Alignments {
  uint32_t x, w, y, bias;
};

// M, N, K, ldx, ldw, ldy, epilogue, D type, bias type (-1: none), alignments of X, W, Y, bias.
using PlanKey = std::array<int64_t, 13>;

template <class T>
void SetAttr(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const T& v, const char* what) {
  Check(cublasLtMatmulDescSetAttribute(d, attr, &v, sizeof(v)), what);
}

std::string Describe(const char* what, int M, int N, int K, int ldx, int ldw, int ldy) {
  return std::string(what) + " M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K) +
         " ldx=" + std::to_string(ldx) + " ldw=" + std::to_string(ldw) + " ldy=" + std::to_string(ldy);
}

}  // namespace

struct LtGemm::Impl {
  // Distinct problems kept before the cache starts over: the engine's M follows each step's rows,
  // so over a long run the keys are many; a cleared entry only costs its heuristic query again.
  static constexpr size_t kMaxPlans = 1024;

  cudaStream_t stream = nullptr;
  cublasLtHandle_t lt = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  std::map<PlanKey, Plan> plans;

  ~Impl() {
    // Calls already queued on the stream may still use the workspace.
    if (lt) {
      cudaStreamSynchronize(stream);
      cudaGetLastError();  // a destructor reports nothing; leave no error behind for the next check
    }
    for (auto& kv : plans) Destroy(kv.second);
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (workspace) cudaFree(workspace);
    if (lt) cublasLtDestroy(lt);
  }

  template <class T>
  void SetPref(cublasLtMatmulPreferenceAttributes_t attr, const T& v, const char* what) {
    Check(cublasLtMatmulPreferenceSetAttribute(pref, attr, &v, sizeof(v)), what);
  }

  void ClearPlans() {
    for (auto& kv : plans) Destroy(kv.second);
    plans.clear();
  }

  // D (fp16 or fp32, [N×M] column-major, ld ldy) = epilogue(alpha · op_T(W) · X + beta · D + bias).
  void Run(const char* what, int M, int N, int K, const __half* X, int ldx, const __half* W, int ldw, const void* bias,
           cudaDataType_t bias_type, void* Y, cudaDataType_t y_type, int ldy, cublasLtEpilogue_t epilogue, float beta) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || ldx < K || ldw < K || ldy < N)
      throw std::invalid_argument("LtGemm: bad shape in " + Describe(what, M, N, K, ldx, ldw, ldy));
    const Alignments al{Alignment(X), Alignment(W), Alignment(Y), bias ? Alignment(bias) : 0u};
    const PlanKey key{M,
                      N,
                      K,
                      ldx,
                      ldw,
                      ldy,
                      static_cast<int64_t>(epilogue),
                      static_cast<int64_t>(y_type),
                      bias ? static_cast<int64_t>(bias_type) : -1,
                      al.x,
                      al.w,
                      al.y,
                      al.bias};
    auto it = plans.find(key);
    if (it == plans.end()) {
      if (plans.size() >= kMaxPlans) ClearPlans();
      it = plans.emplace(key, Build(what, M, N, K, ldx, ldw, ldy, bias, bias_type, y_type, epilogue, al)).first;
    }
    Plan& p = it->second;
    if (bias) SetAttr(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias, what);
    const float alpha = 1.f;
    Check(cublasLtMatmul(lt, p.op, &alpha, W, p.a, X, p.b, &beta, Y, p.d, Y, p.d, &p.algo, workspace, workspace_bytes,
                         stream),
          what);
  }

  Plan Build(const char* what, int M, int N, int K, int ldx, int ldw, int ldy, const void* bias,
             cudaDataType_t bias_type, cudaDataType_t y_type, cublasLtEpilogue_t epilogue, const Alignments& al) {
    Plan p;
    try {
      Check(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F), what);
      SetAttr(p.op, CUBLASLT_MATMUL_DESC_TRANSA, static_cast<int32_t>(CUBLAS_OP_T), what);
      SetAttr(p.op, CUBLASLT_MATMUL_DESC_TRANSB, static_cast<int32_t>(CUBLAS_OP_N), what);
      SetAttr(p.op, CUBLASLT_MATMUL_DESC_EPILOGUE, static_cast<uint32_t>(epilogue), what);
      if (bias) {
        // The heuristic reads the pointer's value (not the data) to know its alignment.
        SetAttr(p.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, static_cast<int32_t>(bias_type), what);
        SetAttr(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias, what);
      }
      Check(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_16F, K, N, ldw), what);
      Check(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_16F, K, M, ldx), what);
      Check(cublasLtMatrixLayoutCreate(&p.d, y_type, N, M, ldy), what);

      // A is W, B is X, C and D are Y.
      SetPref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, al.w, what);
      SetPref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, al.x, what);
      SetPref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, al.y, what);
      SetPref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, al.y, what);
      // An fp16 output keeps the fp32 accumulation: no split-K scheme that reduces partial sums in
      // the output type (INPLACE, OUTPUT_TYPE); partials in the compute type (fp32) are fine.
      const uint32_t schemes = y_type == CUDA_R_16F ? uint32_t{CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE}
                                                    : uint32_t{CUBLASLT_REDUCTION_SCHEME_MASK};
      SetPref(CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, schemes, what);

      cublasLtMatmulHeuristicResult_t result{};
      int found = 0;
      Check(cublasLtMatmulAlgoGetHeuristic(lt, p.op, p.a, p.b, p.d, p.d, pref, 1, &result, &found), what);
      if (found < 1 || result.state != CUBLAS_STATUS_SUCCESS)
        throw std::runtime_error("cuBLASLt: no algorithm for " + Describe(what, M, N, K, ldx, ldw, ldy) +
                                 " (alignments X " + std::to_string(al.x) + ", W " + std::to_string(al.w) + ", Y " +
                                 std::to_string(al.y) + ", bias " + std::to_string(al.bias) + " bytes)");
      p.algo = result.algo;
    } catch (...) {
      Destroy(p);
      throw;
    }
    return p;
  }
};

LtGemm::LtGemm(cudaStream_t stream, size_t workspace_bytes) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.stream = stream;
  Check(cublasLtCreate(&m.lt), "cublasLtCreate");
  Check(cublasLtMatmulPreferenceCreate(&m.pref), "cublasLtMatmulPreferenceCreate");
  if (workspace_bytes > 0) {
    const cudaError_t e = cudaMalloc(&m.workspace, workspace_bytes);
    if (e != cudaSuccess) {
      m.workspace = nullptr;
      throw std::runtime_error(std::string("LtGemm: cudaMalloc of the cuBLASLt workspace (") +
                               std::to_string(workspace_bytes >> 20) + " MiB) failed: " + cudaGetErrorString(e));
    }
  }
  m.workspace_bytes = workspace_bytes;
  m.SetPref(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, uint64_t{workspace_bytes}, "LtGemm workspace preference");
}

LtGemm::~LtGemm() = default;

void LtGemm::LinearBiasRelu(int M, int N, int K, const __half* X, int ldx, const __half* W, int ldw, const __half* bias,
                            __half* Y, int ldy) {
  impl_->Run("LinearBiasRelu", M, N, K, X, ldx, W, ldw, bias, CUDA_R_16F, Y, CUDA_R_16F, ldy,
             bias ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_RELU, 0.f);
}

void LtGemm::LinearHalf(int M, int N, int K, const __half* X, int ldx, const __half* W, int ldw, __half* Y, int ldy) {
  impl_->Run("LinearHalf", M, N, K, X, ldx, W, ldw, nullptr, CUDA_R_16F, Y, CUDA_R_16F, ldy, CUBLASLT_EPILOGUE_DEFAULT,
             0.f);
}

void LtGemm::LinearBiasAccumulate(int M, int N, int K, const __half* X, int ldx, const __half* W, int ldw,
                                  const float* bias, float* Y, int ldy) {
  impl_->Run("LinearBiasAccumulate", M, N, K, X, ldx, W, ldw, bias, CUDA_R_32F, Y, CUDA_R_32F, ldy,
             bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT, 1.f);
}

cudaStream_t LtGemm::stream() const { return impl_->stream; }
size_t LtGemm::cached_plans() const { return impl_->plans.size(); }

}  // namespace hs::cuda
