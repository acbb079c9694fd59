#include "cuda/paged_attention.cuh"

#include <cuda_pipeline.h>

#include <stdexcept>

#include "cuda/cuda_check.h"
#include "cuda/device_common.cuh"

namespace hs::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kPerLane = kMaxHeadDim / 32;

__global__ void paged_attention_kernel(const __half* __restrict__ q, int ldq, __half* __restrict__ out, int ldo,
                                       int group, int head_dim, float scale, AttnRows meta, PageGeom geom) {
  const int r = blockIdx.x, head = blockIdx.y;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int kvh = head / group;
  const int seq = meta.row_seq[r];
  const int ctx = meta.row_pos[r] + 1;
  const int* pt = meta.page_table + meta.seq_pt_off[seq];
  const int bt = geom.block_tokens, kv_dim = geom.kv_dim;

  float qv[kPerLane], acc[kPerLane];
  const __half* qrow = q + static_cast<size_t>(r) * ldq + head * head_dim;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int d = lane + 32 * i;
    qv[i] = d < head_dim ? __half2float(qrow[d]) * scale : 0.f;
    acc[i] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  for (int j = warp; j < ctx; j += kWarps) {
    const __half* kp = geom.page_ptr(pt[j / bt]) + static_cast<size_t>(j % bt) * kv_dim + kvh * head_dim;
    const __half* vp = kp + static_cast<size_t>(bt) * kv_dim;
    float dot = 0.f;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < head_dim) dot += qv[i] * __half2float(kp[d]);
    }
    dot = dev::WarpSum(dot);
    const float m_new = fmaxf(m, dot);
    const float corr = __expf(m - m_new);
    const float p = __expf(dot - m_new);
    l = l * corr + p;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int d = lane + 32 * i;
      acc[i] = acc[i] * corr + (d < head_dim ? p * __half2float(vp[d]) : 0.f);
    }
    m = m_new;
  }
  __shared__ float sm_m[kWarps], sm_l[kWarps];
  __shared__ float sm_acc[kWarps][kMaxHeadDim];
  if (lane == 0) {
    sm_m[warp] = m;
    sm_l[warp] = l;
  }
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int d = lane + 32 * i;
    if (d < head_dim) sm_acc[warp][d] = acc[i];
  }
  __syncthreads();
  float gm = -INFINITY;
  for (int w = 0; w < kWarps; ++w) gm = fmaxf(gm, sm_m[w]);
  float gl = 0.f;
  for (int w = 0; w < kWarps; ++w) gl += sm_m[w] == -INFINITY ? 0.f : sm_l[w] * __expf(sm_m[w] - gm);
  __half* orow = out + static_cast<size_t>(r) * ldo + head * head_dim;
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float v = 0.f;
    for (int w = 0; w < kWarps; ++w)
      if (sm_m[w] != -INFINITY) v += sm_acc[w][d] * __expf(sm_m[w] - gm);
    orow[d] = __float2half(v / gl);
  }
}

// The fast path for head_dim a multiple of 64 (64 … 256): 8 lanes share one key, each holding
// head_dim/8 of its dims as 16-byte chunks, so a warp works on 4 keys at once and a block of 4 warps
// on 16; the dot product needs 3 shuffles instead of 5. Chunk c of lane gl holds dims
// 64c + 8gl … 64c + 8gl + 7: one copy instruction of the 8 lanes reads 128 contiguous bytes (with
// each lane's dims contiguous instead, an instruction touched every other 16 bytes of 256, and the
// copies below fetched each 32-byte sector twice: half the rate).
//
// The kernel reads the cache once and does little else, so its rate is the bytes it keeps in flight:
// each thread copies its K and V chunks of the next key into shared memory (cp.async) while it
// computes on the current one, a ring of kStages slots per thread. A thread reads back only what it
// copied itself, so no barrier guards the ring; the slot it refills was read into registers by the
// previous iteration. OPT-13B's decode attention (batch 128, context 528): 0.336 vs 0.367 ms per layer
// with the plain loads it replaced (4.1 vs 3.8 TB/s); at context 2,048: 1.24 vs 1.30 ms; 4 or 6
// slots ran no faster than 2 (hs_prefill_parts_bench; docs/performance.md, "Eighth session" and
// "Ninth session").
// Each 8-lane group keeps its own online softmax; the 16 groups merge through shared memory (the
// ring's space, once every thread is past its loop).
constexpr int kLanesPerKey = 8;
constexpr int kGroups = kWarps * 32 / kLanesPerKey;
constexpr int kVecThreads = kWarps * 32;
constexpr int kStages = 2;
constexpr int kChunkDims = 8 * kLanesPerKey;  // dims between a lane's consecutive chunks

template <int DPL>
constexpr size_t VecSmemBytes() {
  constexpr size_t ring = static_cast<size_t>(kStages) * 2 * (DPL / 8) * kVecThreads * sizeof(uint4);
  constexpr size_t partials = static_cast<size_t>(kGroups) * DPL * kLanesPerKey * sizeof(float);
  return ring > partials ? ring : partials;
}

template <int NC>  // 16-byte chunks
__device__ __forceinline__ void ChunksToFloats(const uint4 (&raw)[NC], float (&f)[8 * NC]) {
#pragma unroll
  for (int c = 0; c < NC; ++c) {
    const __half2* h2 = reinterpret_cast<const __half2*>(&raw[c]);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const float2 x = __half22float2(h2[k]);
      f[8 * c + 2 * k] = x.x;
      f[8 * c + 2 * k + 1] = x.y;
    }
  }
}

template <int DPL>  // dims per lane: head_dim / 8
__global__ void __launch_bounds__(kVecThreads)
    paged_attention_vec_kernel(const __half* __restrict__ q, int ldq, __half* __restrict__ out, int ldo, int group,
                               float scale, AttnRows meta, PageGeom geom) {
  constexpr int head_dim = DPL * kLanesPerKey;
  constexpr int NC = DPL / 8;  // chunks per lane of a K (or V) row
  extern __shared__ __align__(16) unsigned char paged_smem[];
  const int r = blockIdx.x, head = blockIdx.y;
  const int g = threadIdx.x / kLanesPerKey, gl = threadIdx.x % kLanesPerKey;
  const int kvh = head / group;
  const int seq = meta.row_seq[r];
  const int ctx = meta.row_pos[r] + 1;
  const int* pt = meta.page_table + meta.seq_pt_off[seq];
  const int bt = geom.block_tokens, kv_dim = geom.kv_dim;
  const size_t v_off = static_cast<size_t>(bt) * kv_dim;  // V rows follow the page's K rows
  const int d0 = 8 * gl;                                  // chunk c starts at d0 + c * kChunkDims
  const int iters = (ctx + kGroups - 1) / kGroups;

  float qv[DPL], acc[DPL];
  {
    uint4 raw[NC];
    const __half* qrow = q + static_cast<size_t>(r) * ldq + head * head_dim + d0;
#pragma unroll
    for (int c = 0; c < NC; ++c) raw[c] = *reinterpret_cast<const uint4*>(qrow + c * kChunkDims);
    ChunksToFloats<NC>(raw, qv);
  }
#pragma unroll
  for (int i = 0; i < DPL; ++i) {
    qv[i] *= scale;
    acc[i] = 0.f;
  }
  // Slot (stage, c) of this thread: K chunks c < NC, V chunks NC + c; consecutive threads'
  // 16-byte slots are adjacent (no bank conflicts).
  uint4* ring = reinterpret_cast<uint4*>(paged_smem);
  auto slot = [&](int stage, int c) { return ring + (stage * 2 * NC + c) * kVecThreads + threadIdx.x; };
  // Iteration it's key for this group (key 0 past the context: every lane runs every iteration,
  // since the shuffles below need the whole warp; such a result is discarded).
  auto prefetch = [&](int it) {
    if (it < iters) {
      const int j = it * kGroups + g;
      const int jj = j < ctx ? j : 0;
      const __half* kp = geom.page_ptr(pt[jj / bt]) + static_cast<size_t>(jj % bt) * kv_dim + kvh * head_dim + d0;
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        __pipeline_memcpy_async(slot(it % kStages, c), kp + c * kChunkDims, 16);
        __pipeline_memcpy_async(slot(it % kStages, NC + c), kp + v_off + c * kChunkDims, 16);
      }
    }
    __pipeline_commit();  // empty past the end: the wait below counts groups
  };
#pragma unroll
  for (int it = 0; it < kStages - 1; ++it) prefetch(it);

  float m = -INFINITY, l = 0.f;
  for (int it = 0; it < iters; ++it) {
    prefetch(it + kStages - 1);
    __pipeline_wait_prior(kStages - 1);  // iteration it's copies have landed
    uint4 kraw[NC], vraw[NC];
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      kraw[c] = *slot(it % kStages, c);
      vraw[c] = *slot(it % kStages, NC + c);
    }
    float kf[DPL];
    ChunksToFloats<NC>(kraw, kf);
    float dot = 0.f;
#pragma unroll
    for (int i = 0; i < DPL; ++i) dot += qv[i] * kf[i];
#pragma unroll
    for (int off = kLanesPerKey / 2; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
    if (it * kGroups + g >= ctx) continue;
    const float m_new = fmaxf(m, dot);
    const float corr = __expf(m - m_new);
    const float p = __expf(dot - m_new);
    l = l * corr + p;
    float vf[DPL];
    ChunksToFloats<NC>(vraw, vf);
#pragma unroll
    for (int i = 0; i < DPL; ++i) acc[i] = acc[i] * corr + p * vf[i];
    m = m_new;
  }
  __shared__ float sm_m[kGroups], sm_l[kGroups];
  float(*sm_acc)[head_dim] = reinterpret_cast<float(*)[head_dim]>(paged_smem);
  __syncthreads();  // the partials overlay the ring, which other threads may still be reading
  if (gl == 0) {
    sm_m[g] = m;
    sm_l[g] = l;
  }
#pragma unroll
  for (int c = 0; c < NC; ++c)
#pragma unroll
    for (int i = 0; i < 8; ++i) sm_acc[g][d0 + c * kChunkDims + i] = acc[8 * c + i];
  __syncthreads();
  float gm = -INFINITY;
  for (int w = 0; w < kGroups; ++w) gm = fmaxf(gm, sm_m[w]);
  float gsum = 0.f;
  for (int w = 0; w < kGroups; ++w) gsum += sm_m[w] == -INFINITY ? 0.f : sm_l[w] * __expf(sm_m[w] - gm);
  __half* orow = out + static_cast<size_t>(r) * ldo + head * head_dim;
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float v = 0.f;
    for (int w = 0; w < kGroups; ++w)
      if (sm_m[w] != -INFINITY) v += sm_acc[w][d] * __expf(sm_m[w] - gm);
    orow[d] = __float2half(v / gsum);
  }
}

template <int DPL>
void LaunchVec(dim3 grid, const __half* q, int ldq, __half* out, int ldo, int group, float scale, const AttnRows& meta,
               const PageGeom& geom, cudaStream_t stream) {
  static_assert(VecSmemBytes<DPL>() <= 48 * 1024, "within the default dynamic shared memory limit");
  paged_attention_vec_kernel<DPL>
      <<<grid, kVecThreads, VecSmemBytes<DPL>(), stream>>>(q, ldq, out, ldo, group, scale, meta, geom);
}

}  // namespace

void LaunchPagedAttention(const __half* q, int ldq, __half* out, int ldo, int rows, int num_heads, int num_kv_heads,
                          int head_dim, float scale, AttnRows meta, PageGeom geom, cudaStream_t stream) {
  if (rows <= 0) return;
  if (head_dim > kMaxHeadDim || num_heads % num_kv_heads != 0)
    throw std::invalid_argument("paged attention: head_dim > 256 or heads not a multiple of kv heads");
  dim3 grid(rows, num_heads);
  const int group = num_heads / num_kv_heads;
  // 16-byte copies need 16-byte aligned rows: every row offset is a multiple of head_dim elements
  // from an aligned base.
  const bool aligned = ldq % 8 == 0 && geom.kv_dim % 8 == 0 && dev::IsAligned(q, 16) &&
                       dev::IsAligned(geom.pages, 16) && dev::IsAligned(geom.device_pages, 16);
  if (aligned && head_dim == 64)
    LaunchVec<8>(grid, q, ldq, out, ldo, group, scale, meta, geom, stream);
  else if (aligned && head_dim == 128)
    LaunchVec<16>(grid, q, ldq, out, ldo, group, scale, meta, geom, stream);
  else if (aligned && head_dim == 256)
    LaunchVec<32>(grid, q, ldq, out, ldo, group, scale, meta, geom, stream);
  else
    paged_attention_kernel<<<grid, 32 * kWarps, 0, stream>>>(q, ldq, out, ldo, group, head_dim, scale, meta, geom);
  HS_KERNEL_CHECK();
}

}  // namespace hs::cuda
