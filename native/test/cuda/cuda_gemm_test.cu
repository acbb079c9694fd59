// Tests of the cuBLASLt GEMMs with a fused epilogue (cuda/gemm.h LtGemm) against a float64 CPU
// reference computed from the same fp16 inputs (every input value is exactly representable in
// fp16, so the reference sees exactly what the GPU reads).
//
// Tolerances, checked as |got - ref| <= tol * max(1, |ref|):
//   fp16 output (LinearBiasRelu): 1e-3. The one rounding to fp16 is at most half an ulp, 2^-11 ≈
//     4.9e-4 relative (2^-12 absolute below 1); fp16 × fp16 products are exact in fp32 and the fp32
//     accumulation adds ~sqrt(K) · 2^-24 · max|partial sum| ≈ 1e-5 at K = 512.
//   fp32 output (LinearBiasAccumulate): 2e-4. Only the fp32 accumulation error is left: about
//     sqrt(K) · 2^-24 · max|partial sum| ≈ 1e-5 at K = 512 (|partial| ≲ 25 for these inputs), and
//     even a truncating accumulator, (K / 16) · 2^-23 · 25 ≈ 1e-4, stays below. An fp16 rounding
//     anywhere on the way (up to 2^-11 ≈ 4.9e-4 relative) would fail it.
// ReLU: wherever the reference pre-activation is below -1e-3 the output must be exactly 0.
// Columns of Y past N (ldy > N) must keep what was there. Named kernel_* so that gpu-run.sh's
// sanitize stage runs them under compute-sanitizer memcheck.
#include <cublasLt.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "../test.h"
#include "cuda/cuda_check.h"
#include "cuda/gemm.h"
#include "device_vectors.cuh"

namespace hs::cudatest {
namespace {

constexpr double kTolF16 = 1e-3, kTolF32 = 2e-4;

// G[m][n] = Σ_k X[m][k] · W[n][k] in float64 (X: [M, K], W: [N, K], both dense).
std::vector<double> RefGemm(const std::vector<float>& x, const std::vector<float>& w, int M, int N, int K) {
  std::vector<double> g(static_cast<size_t>(M) * N);
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      const float* xr = &x[static_cast<size_t>(m) * K];
      const float* wr = &w[static_cast<size_t>(n) * K];
      double s = 0;
      for (int k = 0; k < K; ++k) s += static_cast<double>(xr[k]) * wr[k];
      g[static_cast<size_t>(m) * N + n] = s;
    }
  return g;
}

bool Near(double got, double ref, double tol) { return std::fabs(got - ref) <= tol * std::fmax(1.0, std::fabs(ref)); }

struct Stream {
  cudaStream_t s = nullptr;
  Stream() { HS_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)); }  // as the engine's streams
  ~Stream() { cudaStreamDestroy(s); }
  void Sync() const { HS_CUDA_CHECK(cudaStreamSynchronize(s)); }
};

// fp16 Y = relu(X·Wᵀ + b) with ldy = N + 8 over a NaN-poisoned Y, with and without a bias.
void CheckBiasRelu(cuda::LtGemm& lt, const Stream& st, int M, int N, int K, uint32_t seed) {
  const auto x = Rand(static_cast<size_t>(M) * K, seed), w = Rand(static_cast<size_t>(N) * K, seed + 1),
             b = Rand(N, seed + 2, 2.f);
  const auto g = RefGemm(x, w, M, N, K);
  const int ldy = N + 8;
  const size_t y_elems = static_cast<size_t>(M) * ldy;
  __half *dx = ToDevHalf(x), *dw = ToDevHalf(w), *db = ToDevHalf(b), *dy = nullptr;
  HS_CUDA_CHECK(cudaMalloc(&dy, y_elems * 2));
  for (const bool with_bias : {true, false}) {
    HS_CUDA_CHECK(cudaMemset(dy, 0xff, y_elems * 2));  // fp16 0xffff: NaN, so unwritten or C-read shows
    lt.LinearBiasRelu(M, N, K, dx, K, dw, K, with_bias ? db : nullptr, dy, ldy);
    st.Sync();
    const auto y = FromDev(dy, y_elems);
    size_t bad = 0, not_zero = 0, negative = 0, pad_touched = 0;
    double worst = 0;
    for (int m = 0; m < M; ++m) {
      for (int n = 0; n < N; ++n) {
        const double pre = g[static_cast<size_t>(m) * N + n] + (with_bias ? b[n] : 0.f);
        const double ref = std::max(0.0, pre);
        const double got = __half2float(y[static_cast<size_t>(m) * ldy + n]);
        if (!Near(got, ref, kTolF16)) ++bad;
        worst = std::fmax(worst, std::fabs(got - ref) / std::fmax(1.0, std::fabs(ref)));
        if (pre < 0) ++negative;
        if (pre < -1e-3 && got != 0.0) ++not_zero;
      }
      for (int n = N; n < ldy; ++n) {
        uint16_t bits;
        std::memcpy(&bits, &y[static_cast<size_t>(m) * ldy + n], 2);
        pad_touched += bits != 0xffff;
      }
    }
    if (bad) std::fprintf(stderr, "  M=%d N=%d K=%d bias=%d: worst scaled error %.3g\n", M, N, K, with_bias, worst);
    HS_CHECK_EQ(bad, size_t{0});
    HS_CHECK_EQ(not_zero, size_t{0});
    HS_CHECK_EQ(pad_touched, size_t{0});
    HS_CHECK(negative > static_cast<size_t>(M) * N / 4);  // the ReLU had work to do
  }
  for (void* p : {(void*)dx, (void*)dw, (void*)db, (void*)dy}) cudaFree(p);
}

HS_TEST(kernel_lt_linear_bias_relu_matches_reference) {
  Stream st;
  cuda::LtGemm lt(st.s);
  CheckBiasRelu(lt, st, 37, 200, 72, 11);     // odd M, N not a multiple of the tiles
  CheckBiasRelu(lt, st, 512, 1024, 512, 21);  // tensor-core sized
  CheckBiasRelu(lt, st, 1, 200, 72, 31);      // a single row (decode-like)
}

// fp32 Y += X·Wᵀ + b over a non-zero Y (the residual stream), ldy = N + 4, with an fp32 bias and
// with none; then a second call on the result (beta = 1 twice, from the cached plan).
void CheckBiasAccumulate(cuda::LtGemm& lt, const Stream& st, int M, int N, int K, uint32_t seed) {
  const auto x = Rand(static_cast<size_t>(M) * K, seed), w = Rand(static_cast<size_t>(N) * K, seed + 1),
             b = Rand(N, seed + 2);
  const auto g = RefGemm(x, w, M, N, K);
  const int ldy = N + 4;
  const auto y0 = Rand(static_cast<size_t>(M) * ldy, seed + 3, 8.f);
  __half *dx = ToDevHalf(x), *dw = ToDevHalf(w);
  float* db = ToDev(b);  // fp32 copies of fp16 values, as the engine would keep them
  for (const bool with_bias : {true, false}) {
    float* dy = ToDev(y0);
    for (int calls = 1; calls <= 2; ++calls) {
      lt.LinearBiasAccumulate(M, N, K, dx, K, dw, K, with_bias ? db : nullptr, dy, ldy);
      st.Sync();
      const auto y = FromDev(dy, y0.size());
      size_t bad = 0, pad_touched = 0;
      double worst = 0;
      for (int m = 0; m < M; ++m) {
        for (int n = 0; n < N; ++n) {
          const size_t i = static_cast<size_t>(m) * ldy + n;
          const double ref = y0[i] + calls * (g[static_cast<size_t>(m) * N + n] + (with_bias ? b[n] : 0.f));
          if (!Near(y[i], ref, kTolF32)) ++bad;
          worst = std::fmax(worst, std::fabs(y[i] - ref) / std::fmax(1.0, std::fabs(ref)));
        }
        for (int n = N; n < ldy; ++n)
          pad_touched += y[static_cast<size_t>(m) * ldy + n] != y0[static_cast<size_t>(m) * ldy + n];
      }
      if (bad)
        std::fprintf(stderr, "  M=%d N=%d K=%d bias=%d call %d: worst scaled error %.3g\n", M, N, K, with_bias, calls,
                     worst);
      HS_CHECK_EQ(bad, size_t{0});
      HS_CHECK_EQ(pad_touched, size_t{0});
    }
    cudaFree(dy);
  }
  for (void* p : {(void*)dx, (void*)dw, (void*)db}) cudaFree(p);
}

HS_TEST(kernel_lt_linear_bias_accumulate_matches_reference) {
  Stream st;
  cuda::LtGemm lt(st.s);
  CheckBiasAccumulate(lt, st, 37, 200, 72, 41);
  CheckBiasAccumulate(lt, st, 512, 1024, 512, 51);
}

// The engine's FFN loop: one matrix in row chunks, so X and Y start at row offsets (16-byte, not
// 256-byte, aligned here) and the last chunk is shorter; the result must be the whole-matrix one.
// Also the plan cache: a repeated problem reuses its plan, a new shape, epilogue or alignment adds one.
HS_TEST(kernel_lt_linear_chunks_and_plan_cache) {
  const int M = 37, N = 200, K = 72, chunk = 13;  // chunks of 13, 13, 11 rows
  Stream st;
  cuda::LtGemm lt(st.s);
  const auto x = Rand(static_cast<size_t>(M) * K, 61), w = Rand(static_cast<size_t>(N) * K, 62), b = Rand(N, 63);
  const auto g = RefGemm(x, w, M, N, K);
  const auto y0 = Rand(static_cast<size_t>(M) * N, 64, 4.f);
  __half *dx = ToDevHalf(x), *dw = ToDevHalf(w), *db16 = ToDevHalf(b), *dy16 = nullptr;
  float *db = ToDev(b), *dy = ToDev(y0);
  HS_CUDA_CHECK(cudaMalloc(&dy16, static_cast<size_t>(M) * N * 2));
  for (int r0 = 0; r0 < M; r0 += chunk) {
    const int cr = std::min(chunk, M - r0);
    lt.LinearBiasAccumulate(cr, N, K, dx + static_cast<size_t>(r0) * K, K, dw, K, db, dy + static_cast<size_t>(r0) * N,
                            N);
    lt.LinearBiasRelu(cr, N, K, dx + static_cast<size_t>(r0) * K, K, dw, K, db16, dy16 + static_cast<size_t>(r0) * N,
                      N);
  }
  st.Sync();
  const auto y = FromDev(dy, y0.size());
  const auto y16 = FromDev(dy16, y0.size());
  size_t bad = 0, bad16 = 0;
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      const size_t i = static_cast<size_t>(m) * N + n;
      bad += !Near(y[i], y0[i] + g[i] + b[n], kTolF32);
      bad16 += !Near(__half2float(y16[i]), std::max(0.0, g[i] + b[n]), kTolF16);
    }
  HS_CHECK_EQ(bad, size_t{0});
  HS_CHECK_EQ(bad16, size_t{0});
  // Chunks at rows 0 (256-aligned), 13 and 26: the row offsets differ in alignment (X: 13 · 144 B
  // is 16-aligned, 26 · 144 B 32-aligned; Y: 13 · 800 B 32-aligned, ...) and the last chunk in M,
  // so each call was its own problem: 3 accumulate + 3 relu plans.
  const size_t plans = lt.cached_plans();
  HS_CHECK_EQ(plans, size_t{6});
  for (int i = 0; i < 3; ++i) lt.LinearBiasAccumulate(chunk, N, K, dx, K, dw, K, db, dy, N);  // repeats: cached
  HS_CHECK_EQ(lt.cached_plans(), plans);
  lt.LinearBiasAccumulate(chunk, N, K, dx, K, dw, K, nullptr, dy, N);  // another epilogue
  HS_CHECK_EQ(lt.cached_plans(), plans + 1);
  st.Sync();
  for (void* p : {(void*)dx, (void*)dw, (void*)db16, (void*)dy16, (void*)db, (void*)dy}) cudaFree(p);
}

HS_TEST(kernel_lt_linear_rejects_bad_shapes) {
  Stream st;
  cuda::LtGemm lt(st.s);
  __half* dx = nullptr;
  float* dy = nullptr;
  HS_CUDA_CHECK(cudaMalloc(&dx, 64 * 64 * 2));
  HS_CUDA_CHECK(cudaMalloc(&dy, 64 * 64 * 4));
  HS_CHECK_THROWS(lt.LinearBiasAccumulate(8, 8, 64, dx, 32, dx, 64, nullptr, dy, 8), std::invalid_argument);  // ldx < K
  HS_CHECK_THROWS(lt.LinearBiasRelu(8, 16, 64, dx, 64, dx, 64, nullptr, dx, 8), std::invalid_argument);       // ldy < N
  lt.LinearBiasAccumulate(0, 8, 64, dx, 64, dx, 64, nullptr, dy, 8);  // no rows: nothing to do
  HS_CHECK_EQ(lt.cached_plans(), size_t{0});
  st.Sync();
  cudaFree(dx);
  cudaFree(dy);
}

// fp16 Y = X·Wᵀ (LinearHalf: no epilogue) with ldy = N + 8 over a NaN-poisoned Y: every output
// within the fp16 tolerance, no pad column touched, and no C read (beta 0: a NaN read would show).
HS_TEST(kernel_lt_linear_half_matches_reference) {
  Stream st;
  cuda::LtGemm lt(st.s);
  for (const auto& [M, N, K] : {std::array<int, 3>{37, 200, 72}, {128, 768, 256}, {1, 200, 72}}) {
    const auto x = Rand(static_cast<size_t>(M) * K, 81 + M), w = Rand(static_cast<size_t>(N) * K, 82 + M);
    const auto g = RefGemm(x, w, M, N, K);
    const int ldy = N + 8;
    const size_t y_elems = static_cast<size_t>(M) * ldy;
    __half *dx = ToDevHalf(x), *dw = ToDevHalf(w), *dy = nullptr;
    HS_CUDA_CHECK(cudaMalloc(&dy, y_elems * 2));
    HS_CUDA_CHECK(cudaMemset(dy, 0xff, y_elems * 2));
    lt.LinearHalf(M, N, K, dx, K, dw, K, dy, ldy);
    st.Sync();
    const auto y = FromDev(dy, y_elems);
    size_t bad = 0, pad_touched = 0;
    for (int m = 0; m < M; ++m) {
      for (int n = 0; n < N; ++n)
        bad += !Near(__half2float(y[static_cast<size_t>(m) * ldy + n]), g[static_cast<size_t>(m) * N + n], kTolF16);
      for (int n = N; n < ldy; ++n) {
        uint16_t bits;
        std::memcpy(&bits, &y[static_cast<size_t>(m) * ldy + n], 2);
        pad_touched += bits != 0xffff;
      }
    }
    HS_CHECK_EQ(bad, size_t{0});
    HS_CHECK_EQ(pad_touched, size_t{0});
    for (void* p : {(void*)dx, (void*)dw, (void*)dy}) cudaFree(p);
  }
}

// Not a check of LtGemm: whether this cuBLASLt takes an fp16 bias with an fp32 D for fp16 A/B and
// CUBLAS_COMPUTE_32F. CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE documents the bias as D's type (fp16 only
// as an fp8-kernel exception), so LinearBiasAccumulate takes an fp32 bias; this prints what the
// library does and fails only if it accepts the combination and then computes it wrongly.
HS_TEST(kernel_lt_probe_fp16_bias_with_fp32_output) {
  const int M = 37, N = 200, K = 72;
  const auto x = Rand(static_cast<size_t>(M) * K, 71), w = Rand(static_cast<size_t>(N) * K, 72), b = Rand(N, 73);
  const auto g = RefGemm(x, w, M, N, K);
  __half *dx = ToDevHalf(x), *dw = ToDevHalf(w), *db = ToDevHalf(b);
  float* dy = nullptr;
  HS_CUDA_CHECK(cudaMalloc(&dy, static_cast<size_t>(M) * N * 4));
  HS_CUDA_CHECK(cudaMemset(dy, 0, static_cast<size_t>(M) * N * 4));
  cublasLtHandle_t lt = nullptr;
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, ld = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  HS_CHECK_EQ(cublasLtCreate(&lt), CUBLAS_STATUS_SUCCESS);
  HS_CHECK_EQ(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F), CUBLAS_STATUS_SUCCESS);
  const int32_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N, bias_type = CUDA_R_16F;
  const uint32_t epi = CUBLASLT_EPILOGUE_BIAS;
  cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta));
  cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb));
  cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi));
  const cublasStatus_t type_status =
      cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type));
  cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &db, sizeof(db));
  cublasLtMatrixLayoutCreate(&la, CUDA_R_16F, K, N, K);
  cublasLtMatrixLayoutCreate(&lb, CUDA_R_16F, K, M, K);
  cublasLtMatrixLayoutCreate(&ld, CUDA_R_32F, N, M, N);
  cublasLtMatmulPreferenceCreate(&pref);
  const uint64_t ws = 0;
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
  cublasLtMatmulHeuristicResult_t res{};
  int found = 0;
  const cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, ld, ld, pref, 1, &res, &found);
  const bool offered = type_status == CUBLAS_STATUS_SUCCESS && hs == CUBLAS_STATUS_SUCCESS && found > 0;
  bool ran = false;
  size_t bad = 0;
  if (offered) {
    const float alpha = 1.f, beta = 0.f;
    ran = cublasLtMatmul(lt, op, &alpha, dw, la, dx, lb, &beta, dy, ld, dy, ld, &res.algo, nullptr, 0, 0) ==
          CUBLAS_STATUS_SUCCESS;
    if (ran) {
      HS_CUDA_CHECK(cudaDeviceSynchronize());
      const auto y = FromDev(dy, static_cast<size_t>(M) * N);
      for (int m = 0; m < M; ++m)
        for (int n = 0; n < N; ++n) {
          const size_t i = static_cast<size_t>(m) * N + n;
          bad += !Near(y[i], g[i] + b[n], kTolF32);
        }
    }
  }
  std::printf("  probe: fp16 bias with fp32 D (fp16 A/B, COMPUTE_32F): %s (set type %s, heuristic %s, %d algos)%s\n",
              ran       ? "runs"
              : offered ? "offered but failed to run"
                        : "not offered",
              cublasGetStatusString(type_status), cublasGetStatusString(hs), found,
              ran ? (bad ? ", WRONG results" : ", results match") : "");
  HS_CHECK_EQ(bad, size_t{0});
  cublasLtMatmulPreferenceDestroy(pref);
  for (cublasLtMatrixLayout_t l : {la, lb, ld}) cublasLtMatrixLayoutDestroy(l);
  cublasLtMatmulDescDestroy(op);
  cublasLtDestroy(lt);
  for (void* p : {(void*)dx, (void*)dw, (void*)db, (void*)dy}) cudaFree(p);
}

}  // namespace
}  // namespace hs::cudatest
