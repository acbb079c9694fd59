#include "cuda/paged_attention.cuh"

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

// The fast path for head_dim a multiple of 64 (64 … 256): 8 lanes share one key, each lane holding
// head_dim/8 contiguous dims (16-byte loads), so a warp works on 4 keys at once and a block of 4
// warps on 16; the dot product needs 3 shuffles instead of 5, and every load is a full 16-byte
// vector. Each 8-lane group keeps its own online softmax; the 16 groups merge through shared memory.
constexpr int kLanesPerKey = 8;
constexpr int kGroups = kWarps * 32 / kLanesPerKey;

template <int DPL>  // dims per lane: head_dim / 8
__global__ void paged_attention_vec_kernel(const __half* __restrict__ q, int ldq, __half* __restrict__ out, int ldo,
                                           int group, float scale, AttnRows meta, PageGeom geom) {
  constexpr int head_dim = DPL * kLanesPerKey;
  const int r = blockIdx.x, head = blockIdx.y;
  const int g = threadIdx.x / kLanesPerKey, gl = threadIdx.x % kLanesPerKey;
  const int kvh = head / group;
  const int seq = meta.row_seq[r];
  const int ctx = meta.row_pos[r] + 1;
  const int* pt = meta.page_table + meta.seq_pt_off[seq];
  const int bt = geom.block_tokens, kv_dim = geom.kv_dim;
  const int d0 = gl * DPL;

  float qv[DPL], acc[DPL];
  const __half* qrow = q + static_cast<size_t>(r) * ldq + head * head_dim + d0;
#pragma unroll
  for (int i = 0; i < DPL; i += 8) {
    const uint4 raw = *reinterpret_cast<const uint4*>(qrow + i);
    const __half2* h2 = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const float2 f = __half22float2(h2[k]);
      qv[i + 2 * k] = f.x * scale;
      qv[i + 2 * k + 1] = f.y * scale;
    }
  }
#pragma unroll
  for (int i = 0; i < DPL; ++i) acc[i] = 0.f;
  float m = -INFINITY, l = 0.f;
  // Every lane runs the same number of iterations (the shuffles below need the whole warp); a group
  // past the context computes on key 0 and discards the result.
  for (int base = 0; base < ctx; base += kGroups) {
    const int j = base + g;
    const bool valid = j < ctx;
    const int jj = valid ? j : 0;
    const __half* kp = geom.page_ptr(pt[jj / bt]) + static_cast<size_t>(jj % bt) * kv_dim + kvh * head_dim + d0;
    const __half* vp = kp + static_cast<size_t>(bt) * kv_dim;
    float dot = 0.f;
#pragma unroll
    for (int i = 0; i < DPL; i += 8) {
      const uint4 raw = *reinterpret_cast<const uint4*>(kp + i);
      const __half2* h2 = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const float2 f = __half22float2(h2[k]);
        dot += qv[i + 2 * k] * f.x + qv[i + 2 * k + 1] * f.y;
      }
    }
#pragma unroll
    for (int off = kLanesPerKey / 2; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
    if (!valid) continue;
    const float m_new = fmaxf(m, dot);
    const float corr = __expf(m - m_new);
    const float p = __expf(dot - m_new);
    l = l * corr + p;
#pragma unroll
    for (int i = 0; i < DPL; i += 8) {
      const uint4 raw = *reinterpret_cast<const uint4*>(vp + i);
      const __half2* h2 = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const float2 f = __half22float2(h2[k]);
        acc[i + 2 * k] = acc[i + 2 * k] * corr + p * f.x;
        acc[i + 2 * k + 1] = acc[i + 2 * k + 1] * corr + p * f.y;
      }
    }
    m = m_new;
  }
  __shared__ float sm_m[kGroups], sm_l[kGroups];
  __shared__ float sm_acc[kGroups][head_dim];
  if (gl == 0) {
    sm_m[g] = m;
    sm_l[g] = l;
  }
#pragma unroll
  for (int i = 0; i < DPL; ++i) sm_acc[g][d0 + i] = acc[i];
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

}  // namespace

void LaunchPagedAttention(const __half* q, int ldq, __half* out, int ldo, int rows, int num_heads, int num_kv_heads,
                          int head_dim, float scale, AttnRows meta, PageGeom geom, cudaStream_t stream) {
  if (rows <= 0) return;
  if (head_dim > kMaxHeadDim || num_heads % num_kv_heads != 0)
    throw std::invalid_argument("paged attention: head_dim > 256 or heads not a multiple of kv heads");
  dim3 grid(rows, num_heads);
  const int group = num_heads / num_kv_heads;
  // 16-byte loads need 16-byte aligned rows: every row offset is a multiple of head_dim elements.
  const bool aligned = ldq % 8 == 0 && geom.kv_dim % 8 == 0;
  if (aligned && head_dim == 64)
    paged_attention_vec_kernel<8><<<grid, 32 * kWarps, 0, stream>>>(q, ldq, out, ldo, group, scale, meta, geom);
  else if (aligned && head_dim == 128)
    paged_attention_vec_kernel<16><<<grid, 32 * kWarps, 0, stream>>>(q, ldq, out, ldo, group, scale, meta, geom);
  else if (aligned && head_dim == 256)
    paged_attention_vec_kernel<32><<<grid, 32 * kWarps, 0, stream>>>(q, ldq, out, ldo, group, scale, meta, geom);
  else
    paged_attention_kernel<<<grid, 32 * kWarps, 0, stream>>>(q, ldq, out, ldo, group, head_dim, scale, meta, geom);
  HS_KERNEL_CHECK();
}

}  // namespace hs::cuda
