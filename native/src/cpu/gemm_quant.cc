// gemm_nt_q: the blocked GEMM over quantised weights (issue 14). A reference-quality path, not a
// fused kernel: B is dequantised one panel of rows at a time into a per-thread buffer that stays in
// L2, and the panel is multiplied with gemm_nt's own kernel (caller thread, no nested pool). The
// cost over f32 is one pass over the panel's codes per GEMM, which for decode (small M) replaces
// the 4-byte weight read with a 1- or 0.5-byte one plus the dequantise arithmetic.
#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/gemm.h"

namespace hs::cpu {
namespace {

// f32 elements of one dequantised panel (256 KiB): with A's K-slice it fits a 512 KiB-1 MiB L2.
constexpr int64_t kPanelFloats = 64 * 1024;
// Panels are a multiple of this many rows (a multiple of every kernel's NR: 4, 6, 12).
constexpr int kPanelRowQuantum = 12;
// At least this many rows a panel even for a long K: gemm_nt re-packs A (K x 16 floats) for every
// panel at decode batch sizes, which costs as much as dequantising 16 rows.
constexpr int kMinPanelRows = 96;
// Below this many weight elements the pool's wake-up costs more than a second core saves.
constexpr int64_t kMinParallelElems = 1 << 16;

int PanelRows(int N, int K) {
  const int64_t rows =
      std::max<int64_t>(kMinPanelRows, kPanelFloats / std::max(K, 1) / kPanelRowQuantum * kPanelRowQuantum);
  return (int)std::min<int64_t>(rows, N);
}

void RunPanels(int M, int K, const float* A, int lda, const QuantView& B, float* C, int ldc, float beta,
               const float* bias, int rows, int p0, int p1) {
  static thread_local std::vector<float> panel;
  for (int p = p0; p < p1; ++p) {
    const int n0 = p * rows, n1 = std::min<int>((int)B.rows, n0 + rows);
    panel.resize((size_t)(n1 - n0) * K);
    DequantizeRows(B, n0, n1, panel.data());
    gemm_nt(M, n1 - n0, K, A, lda, panel.data(), K, C + n0, ldc, beta, bias ? bias + n0 : nullptr, nullptr);
  }
}

}  // namespace

void gemm_nt_q(int M, int N, int K, const float* A, int lda, const QuantView& B, float* C, int ldc, float beta,
               const float* bias, ThreadPool* pool) {
  if (B.format == WeightFormat::Native) throw std::invalid_argument("gemm_nt_q: B is not quantised");
  if (B.rows != N || B.cols != K)
    throw std::invalid_argument("gemm_nt_q: B is [" + std::to_string(B.rows) + ", " + std::to_string(B.cols) +
                                "], expected [" + std::to_string(N) + ", " + std::to_string(K) + "]");
  if (M < 0 || N < 0 || K < 0 || lda < K || ldc < N || (M > 0 && N > 0 && (!C || (K > 0 && (!A || !B.codes)))))
    return gemm_nt(M, N, K, A, lda, nullptr, K, C, ldc, beta, bias, nullptr);  // raises gemm_nt's own error
  if (M == 0 || N == 0) return;
  const int rows = PanelRows(N, K);
  const int panels = (N + rows - 1) / rows;
  const int threads = pool ? pool->size() : 1;
  if (threads <= 1 || panels < 2 || (int64_t)N * K < kMinParallelElems)
    return RunPanels(M, K, A, lda, B, C, ldc, beta, bias, rows, 0, panels);
  // Dynamic split over panels, as gemm_nt splits over weight rows (see gemm.cc for why).
  std::atomic<int> next{0};
  pool->ParallelFor(threads, [&](int, int) {
    for (int p; (p = next.fetch_add(1, std::memory_order_relaxed)) < panels;)
      RunPanels(M, K, A, lda, B, C, ldc, beta, bias, rows, p, p + 1);
  });
}

}  // namespace hs::cpu
