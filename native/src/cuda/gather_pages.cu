#include "cuda/gather_pages.cuh"

#include <algorithm>

#include "cuda/cuda_check.h"
#include "cuda/device_common.cuh"

namespace hs::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kUnroll = 4;  // loads issued before their stores: more bytes in flight per thread

// One block per (token j, K or V: blockIdx.y). T is the unit copied: uint4 (8 fp16, 16 bytes) when
// kv_dim and the buffers allow, else __half. A plain bit copy either way.
template <typename T>
__global__ void gather_pages_kernel(const int* __restrict__ page_table, PageGeom geom, __half* __restrict__ k_out,
                                    __half* __restrict__ v_out) {
  constexpr int kElems = sizeof(T) / sizeof(__half);
  const int j = blockIdx.x;
  const int bt = geom.block_tokens, kv_dim = geom.kv_dim;
  const bool is_v = blockIdx.y == 1;
  // A page holds [K rows of the block | V rows of the block]; token j is row j % bt of each.
  const __half* src = geom.page_ptr(page_table[j / bt]) + (static_cast<size_t>(is_v ? bt : 0) + j % bt) * kv_dim;
  __half* dst = (is_v ? v_out : k_out) + static_cast<size_t>(j) * kv_dim;
  const T* s = reinterpret_cast<const T*>(src);
  T* d = reinterpret_cast<T*>(dst);
  const int units = kv_dim / kElems;
  for (int u0 = threadIdx.x; u0 < units; u0 += kUnroll * blockDim.x) {
    T tmp[kUnroll];
#pragma unroll
    for (int i = 0; i < kUnroll; ++i) {
      const int u = u0 + i * blockDim.x;
      if (u < units) tmp[i] = s[u];
    }
#pragma unroll
    for (int i = 0; i < kUnroll; ++i) {
      const int u = u0 + i * blockDim.x;
      if (u < units) d[u] = tmp[i];
    }
  }
}

template <typename T>
void Launch(const int* page_table, int ctx, PageGeom geom, __half* k_out, __half* v_out, cudaStream_t stream) {
  const int units = geom.kv_dim / static_cast<int>(sizeof(T) / sizeof(__half));
  const int threads = std::min(kThreads, (units + 31) / 32 * 32);
  gather_pages_kernel<T><<<dim3(ctx, 2), threads, 0, stream>>>(page_table, geom, k_out, v_out);
}

}  // namespace

void LaunchGatherPages(const int* page_table, int ctx, PageGeom geom, __half* k_out, __half* v_out,
                       cudaStream_t stream) {
  if (ctx <= 0 || geom.kv_dim <= 0) return;
  // Every row starts at a multiple of kv_dim elements from a page base, so kv_dim % 8 == 0 and
  // 16-byte-aligned bases make every row 16-byte aligned.
  const bool vec = geom.kv_dim % 8 == 0 && dev::IsAligned(geom.pages, 16) && dev::IsAligned(geom.device_pages, 16) &&
                   dev::IsAligned(k_out, 16) && dev::IsAligned(v_out, 16);
  if (vec) {
    Launch<uint4>(page_table, ctx, geom, k_out, v_out, stream);
  } else {
    Launch<__half>(page_table, ctx, geom, k_out, v_out, stream);
  }
  HS_KERNEL_CHECK();
}

}  // namespace hs::cuda
