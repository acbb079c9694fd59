#include "cuda/prefill_attention.cuh"

#include <cuda_pipeline.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>

#include "cuda/cuda_check.h"
#include "cuda/device_common.cuh"

namespace hs::cuda {
namespace {

constexpr int kBlockQ = 64;  // query rows per block
constexpr int kBlockK = 64;  // keys per tile
constexpr int kWarps = kBlockQ / 16;
constexpr int kThreads = 32 * kWarps;
constexpr int kPad = 8;  // halves after each shared row: rows 16 bytes apart mod 128, so that the
                         // 8 row addresses of one ldmatrix hit 8 different bank groups

template <int HD>
constexpr int kStride = HD + kPad;  // shared row stride in halves (a multiple of 8: rows stay 16-byte aligned)

// Q tile, then K tiles [2], then V tiles [2].
template <int HD>
constexpr size_t kSmemBytes = static_cast<size_t>(kBlockQ + 4 * kBlockK) * kStride<HD> * sizeof(__half);

// ---- warp-level primitives (PTX ISA: ldmatrix, mma.m16n8k16 with .f16 inputs and .f32 accumulators) ----
// Fragment layouts, lane = 4 * g + t (g = lane >> 2, t = lane & 3):
//   A (16 × 16, row-major), 4 regs: a0 = (row g, cols 2t, 2t+1), a1 = (row g+8, cols 2t, 2t+1),
//     a2 = (row g, cols 2t+8, 2t+9), a3 = (row g+8, cols 2t+8, 2t+9);
//   B (16 × 8, "col"), 2 regs: b0 = (rows 2t, 2t+1, col g), b1 = (rows 2t+8, 2t+9, col g);
//   C/D (16 × 8, fp32), 4 regs: c0, c1 = (row g, cols 2t, 2t+1), c2, c3 = (row g+8, cols 2t, 2t+1).
// In each 32-bit register the lower-indexed element sits in the low half.
// ldmatrix .x4: lanes 8i..8i+7 give the addresses of the 8 rows of matrix i; register i of lane L
// receives (row L/4, cols 2(L%4), 2(L%4)+1) of matrix i, or with .trans (rows 2(L%4), 2(L%4)+1 of
// column L/4), i.e. the matrix as if stored column-major.

__device__ __forceinline__ uint32_t SharedAddr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void LdMatrixX4(uint32_t (&r)[4], const __half* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SharedAddr(p)));
}

__device__ __forceinline__ void LdMatrixX4Trans(uint32_t (&r)[4], const __half* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SharedAddr(p)));
}

// d += A · B for one 16 × 8 × 16 step.
__device__ __forceinline__ void Mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats as one fp16x2 register: lo in the low half (the lower-indexed element).
__device__ __forceinline__ uint32_t PackHalf2(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  uint32_t r;
  memcpy(&r, &h, sizeof(r));
  return r;
}

__device__ __forceinline__ void ZeroChunk(__half* dst) { *reinterpret_cast<uint4*>(dst) = make_uint4(0, 0, 0, 0); }

// ---- the kernel -------------------------------------------------------------------------------------
// Block (x, y, z) = (query tile, counted from the last: the longest causal rows start first; head;
// sequence). scale_log2 = softmax scale · log2(e): the softmax runs in base 2 (exp2f).
template <int HD>
__global__ void __launch_bounds__(kThreads, 2)
    prefill_attention_kernel(const __half* __restrict__ q, int ldq, __half* __restrict__ out, int ldo, int group,
                             float scale_log2, PrefillSeqs seqs, PageGeom geom) {
  constexpr int S = kStride<HD>;
  constexpr int kChunks = HD / 8;         // 16-byte chunks per row
  constexpr int kKSteps = HD / 16;        // k steps of Q·Kᵀ
  constexpr int kOTiles = HD / 8;         // n8 tiles of O (16 × HD per warp)
  constexpr int kSTiles = kBlockK / 8;    // n8 tiles of S (16 × kBlockK per warp)
  constexpr int kPvSteps = kBlockK / 16;  // k steps of P·V
  extern __shared__ __align__(16) unsigned char prefill_smem[];
  __half* sq = reinterpret_cast<__half*>(prefill_smem);
  __half* sk = sq + kBlockQ * S;      // [2][kBlockK][S]
  __half* sv = sk + 2 * kBlockK * S;  // [2][kBlockK][S]

  const int seq = blockIdx.z, head = blockIdx.y;
  const int n = seqs.n_new[seq];
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kBlockQ;
  if (q0 >= n) return;  // the whole block: nothing below has synchronised yet
  const int start = seqs.start[seq];
  const int row0 = seqs.row0[seq];
  const int* pt = seqs.page_table + seqs.pt_off[seq];
  const int kvh = head / group;
  const int rows = min(kBlockQ, n - q0);  // valid query rows of this tile
  const int kv_end = start + q0 + rows;   // keys [0, kv_end) are seen by some row of the tile
  const int n_tiles = (kv_end + kBlockK - 1) / kBlockK;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int bt = geom.block_tokens;
  const size_t kv_dim = static_cast<size_t>(geom.kv_dim);

  // Q tile; rows past the sequence's new tokens are zeros (their results are never written).
  {
    const __half* qb = q + static_cast<size_t>(row0 + q0) * ldq + head * HD;
#pragma unroll
    for (int i = 0; i < kBlockQ * kChunks / kThreads; ++i) {
      const int c = tid + i * kThreads;
      const int r = c / kChunks, col = (c % kChunks) * 8;
      __half* dst = sq + r * S + col;
      if (r < rows)
        __pipeline_memcpy_async(dst, qb + static_cast<size_t>(r) * ldq + col, 16);
      else
        ZeroChunk(dst);
    }
  }
  // K and V rows of key tile kt into buffer buf. Key j: row j % bt of page pt[j / bt] (K rows, then V
  // rows, kv_dim wide), head kvh at column kvh * HD. Rows past kv_end are zeros, so that a masked
  // probability (exactly 0) never meets a NaN of stale shared memory in P·V. A thread copies one
  // 16-byte column chunk of rows r0, r0 + kRowStep, ...; its (block, slot) position advances without
  // a division per row.
  auto load_kv = [&](int kt, int buf) {
    constexpr int kRowStep = kThreads / kChunks;
    __half* dk = sk + buf * kBlockK * S;
    __half* dv = sv + buf * kBlockK * S;
    const int col = (tid % kChunks) * 8, r0 = tid / kChunks;
    int j = kt * kBlockK + r0;
    int blk = j / bt, slot = j - blk * bt;
#pragma unroll
    for (int i = 0; i < kBlockK / kRowStep; ++i) {
      const int r = r0 + i * kRowStep;
      if (j < kv_end) {
        const __half* src = geom.page_ptr(pt[blk]) + static_cast<size_t>(slot) * kv_dim + kvh * HD + col;
        __pipeline_memcpy_async(dk + r * S + col, src, 16);
        __pipeline_memcpy_async(dv + r * S + col, src + static_cast<size_t>(bt) * kv_dim, 16);
      } else {
        ZeroChunk(dk + r * S + col);
        ZeroChunk(dv + r * S + col);
      }
      j += kRowStep;
      for (slot += kRowStep; slot >= bt; slot -= bt) ++blk;
    }
  };
  load_kv(0, 0);
  __pipeline_commit();  // group 0: Q and key tile 0

  const int g = lane >> 2, t = lane & 3;
  // This thread's two rows: warp * 16 + g and + 8, at positions pos_lo and pos_lo + 8.
  const int pos_lo = start + q0 + warp * 16 + g;
  const int warp_first = start + q0 + warp * 16;  // position of the warp's first row
  const int warp_last = warp_first + 15;          // ... and of its last (rows past n included)
  const bool warp_active = warp * 16 < rows;      // a warp with no valid row only helps load
  uint32_t qf[kKSteps][4];
  float o[kOTiles][4];
#pragma unroll
  for (int d = 0; d < kOTiles; ++d) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY};  // running max of each row (base-2 scaled scores)
  float l[2] = {0.f, 0.f};              // running sum of this thread's columns (the quad sums at the end)

  for (int kt = 0; kt < n_tiles; ++kt) {
    const int buf = kt & 1;
    if (kt + 1 < n_tiles) {
      load_kv(kt + 1, buf ^ 1);  // the buffer read in iteration kt - 1 (freed by its closing barrier)
      __pipeline_commit();
      __pipeline_wait_prior(1);  // everything but the tile just issued has landed
    } else {
      __pipeline_wait_prior(0);
    }
    __syncthreads();
    const int kbase = kt * kBlockK;
    if (kt == 0 && warp_active) {
#pragma unroll
      for (int kk = 0; kk < kKSteps; ++kk) {
        const int i = lane >> 3;  // matrix i: rows +8 for i = 1, 3; cols +8 for i = 2, 3 (a0..a3)
        LdMatrixX4(qf[kk], sq + (warp * 16 + (lane & 7) + (i & 1) * 8) * S + kk * 16 + (i >> 1) * 8);
      }
    }
    if (warp_active && kbase <= warp_last) {  // else every key of the tile is past the warp's rows
      const __half* tk = sk + buf * kBlockK * S;
      const __half* tv = sv + buf * kBlockK * S;
      // S = Q · Kᵀ: B (hd × keys) is K stored [key][hd], i.e. column-major B: plain ldmatrix of K rows.
      float s[kSTiles][4];
#pragma unroll
      for (int j = 0; j < kSTiles; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < kKSteps; ++kk) {
#pragma unroll
        for (int np = 0; np < kSTiles / 2; ++np) {
          // Matrices: (keys +0, hd +0) b0 of tile 2np, (keys +0, hd +8) b1 of 2np, (keys +8, hd +0) b0
          // of 2np+1, (keys +8, hd +8) b1 of 2np+1.
          const int i = lane >> 3;
          uint32_t b[4];
          LdMatrixX4(b, tk + (np * 16 + (lane & 7) + (i >> 1) * 8) * S + kk * 16 + (i & 1) * 8);
          Mma16816(s[2 * np], qf[kk], b[0], b[1]);
          Mma16816(s[2 * np + 1], qf[kk], b[2], b[3]);
        }
      }
      // Scale, mask, and the online softmax update. s[j][e]: row g + 8 (e >> 1), key kbase + 8j + 2t + (e & 1).
      const bool need_mask = kbase + kBlockK - 1 > warp_first;  // some key of the tile past some row
      float mx[2] = {m[0], m[1]};
#pragma unroll
      for (int j = 0; j < kSTiles; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float v = s[j][e] * scale_log2;
          if (need_mask && kbase + 8 * j + 2 * t + (e & 1) > pos_lo + 8 * (e >> 1)) v = -INFINITY;
          s[j][e] = v;
          mx[e >> 1] = fmaxf(mx[e >> 1], v);
        }
      }
      float base[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        // The 4 lanes of a quad (same g) hold the row's 64 columns between them.
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
        // A row with no visible key so far keeps max -inf: subtract 0 instead (exp2(-inf) = 0, never
        // -inf - -inf = NaN). Every row sees key 0 in tile 0, so this is a guard only.
        base[r] = mx[r] == -INFINITY ? 0.f : mx[r];
        const float corr = exp2f(m[r] - base[r]);  // 0 while m[r] is -inf
        m[r] = mx[r];
        l[r] *= corr;
#pragma unroll
        for (int d = 0; d < kOTiles; ++d) {
          o[d][2 * r] *= corr;
          o[d][2 * r + 1] *= corr;
        }
      }
#pragma unroll
      for (int j = 0; j < kSTiles; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float p = exp2f(s[j][e] - base[e >> 1]);
          s[j][e] = p;
          l[e >> 1] += p;
        }
      }
      // O += P · V. The S accumulators of n8 tiles 2kk, 2kk+1 are exactly the A fragment of keys
      // 16kk..16kk+15: a0 = tile 2kk (row g), a1 = tile 2kk (row g+8), a2 = tile 2kk+1 (row g),
      // a3 = tile 2kk+1 (row g+8). B (keys × hd) is V stored [key][hd], i.e. row-major B: ldmatrix.trans.
#pragma unroll
      for (int kk = 0; kk < kPvSteps; ++kk) {
        uint32_t a[4];
        a[0] = PackHalf2(s[2 * kk][0], s[2 * kk][1]);
        a[1] = PackHalf2(s[2 * kk][2], s[2 * kk][3]);
        a[2] = PackHalf2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
        a[3] = PackHalf2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
        for (int dp = 0; dp < kOTiles / 2; ++dp) {
          // Matrices: (keys +0, hd +0) b0 of tile 2dp, (keys +8, hd +0) b1 of 2dp, (keys +0, hd +8) b0
          // of 2dp+1, (keys +8, hd +8) b1 of 2dp+1.
          const int i = lane >> 3;
          uint32_t b[4];
          LdMatrixX4Trans(b, tv + (kk * 16 + (lane & 7) + (i & 1) * 8) * S + dp * 16 + (i >> 1) * 8);
          Mma16816(o[2 * dp], a, b[0], b[1]);
          Mma16816(o[2 * dp + 1], a, b[2], b[3]);
        }
      }
    }
    __syncthreads();  // buffer buf is refilled by the next iteration's copy
  }

  // O / sum, fp16, rows of the sequence's new tokens only.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    const int qr = warp * 16 + g + 8 * r;  // row within the tile
    if (qr < rows) {
      const float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
      __half* orow = out + static_cast<size_t>(row0 + q0 + qr) * ldo + head * HD + 2 * t;
#pragma unroll
      for (int d = 0; d < kOTiles; ++d)
        *reinterpret_cast<__half2*>(orow + 8 * d) = __floats2half2_rn(o[d][2 * r] * inv, o[d][2 * r + 1] * inv);
    }
  }
}

template <int HD>
void Launch(dim3 grid, const __half* q, int ldq, __half* out, int ldo, int group, float scale_log2,
            const PrefillSeqs& seqs, const PageGeom& geom, cudaStream_t stream) {
  // Above the 48 KiB default (hd 128: 85 KiB, two blocks per SM). Set on every launch: the attribute
  // belongs to the current device, and an engine may drive several.
  HS_CUDA_CHECK(cudaFuncSetAttribute(prefill_attention_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(kSmemBytes<HD>)));
  prefill_attention_kernel<HD>
      <<<grid, kThreads, kSmemBytes<HD>, stream>>>(q, ldq, out, ldo, group, scale_log2, seqs, geom);
}

}  // namespace

bool PrefillAttentionSupports(int head_dim) { return head_dim == 64 || head_dim == 128; }

void LaunchPrefillAttention(const __half* q, int ldq, __half* out, int ldo, int num_heads, int num_kv_heads,
                            int head_dim, float scale, PrefillSeqs seqs, PageGeom geom, cudaStream_t stream) {
  if (seqs.count <= 0 || seqs.max_new <= 0) return;
  if (!PrefillAttentionSupports(head_dim)) throw std::invalid_argument("prefill attention: head_dim not 64 or 128");
  if (num_kv_heads <= 0 || num_heads % num_kv_heads != 0)
    throw std::invalid_argument("prefill attention: heads not a multiple of kv heads");
  if (seqs.count > 65535 || num_heads > 65535) throw std::invalid_argument("prefill attention: grid too large");
  // 16-byte copies of Q and K/V rows: every row offset is a multiple of 8 halves from an aligned base.
  const bool aligned = ldq % 8 == 0 && geom.kv_dim % 8 == 0 && dev::IsAligned(q, 16) &&
                       dev::IsAligned(geom.pages, 16) && dev::IsAligned(geom.device_pages, 16) && ldo % 2 == 0 &&
                       dev::IsAligned(out, 4);
  if (!aligned) throw std::invalid_argument("prefill attention: q, out or pages not aligned");
  const int group = num_heads / num_kv_heads;
  const float scale_log2 = scale * 1.4426950408889634f;  // log2(e)
  const dim3 grid((seqs.max_new + kBlockQ - 1) / kBlockQ, num_heads, seqs.count);
  if (head_dim == 128)
    Launch<128>(grid, q, ldq, out, ldo, group, scale_log2, seqs, geom, stream);
  else
    Launch<64>(grid, q, ldq, out, ldo, group, scale_log2, seqs, geom, stream);
  HS_KERNEL_CHECK();
}

}  // namespace hs::cuda
