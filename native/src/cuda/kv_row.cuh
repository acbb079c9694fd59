// Device helper: finish one token's K and V rows (bias, RoPE on K) and write them into its page.
// Shared by the new-token path (qkv_post) and the recompute-from-ACT path (recompute_post) so that
// both produce bit-identical K/V for the same input row.
#pragma once
#include <cuda_fp16.h>

#include "cuda/device_common.cuh"

namespace hs::cuda::dev {

// k_in/v_in: the projection outputs (kv_dim each). k_out/v_out: destination rows in the page.
__device__ __forceinline__ void WriteKvRow(const __half* k_in, const __half* v_in, const __half* bk, const __half* bv,
                                           __half* k_out, __half* v_out, int kv_dim, int head_dim, bool rope, int pos,
                                           float theta) {
  if (rope) {
    const int half_dim = head_dim / 2;
    for (int p = threadIdx.x; p < kv_dim / 2; p += blockDim.x) {
      const int head = p / half_dim, i = p % half_dim;
      const int a = head * head_dim + i, b = a + half_dim;
      float x1 = __half2float(k_in[a]) + (bk ? __half2float(bk[a]) : 0.f);
      float x2 = __half2float(k_in[b]) + (bk ? __half2float(bk[b]) : 0.f);
      RopePair(x1, x2, i, head_dim, pos, theta);
      k_out[a] = __float2half(x1);
      k_out[b] = __float2half(x2);
    }
  } else {
    for (int c = threadIdx.x; c < kv_dim; c += blockDim.x)
      k_out[c] = __float2half(__half2float(k_in[c]) + (bk ? __half2float(bk[c]) : 0.f));
  }
  for (int c = threadIdx.x; c < kv_dim; c += blockDim.x)
    v_out[c] = __float2half(__half2float(v_in[c]) + (bv ? __half2float(bv[c]) : 0.f));
}

}  // namespace hs::cuda::dev
