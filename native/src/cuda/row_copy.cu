#include "cuda/row_copy.cuh"

#include "cuda/cuda_check.h"

namespace hs::cuda {
namespace {

__global__ void row_copy_kernel(const __half* src_base, const int64_t* src_off, __half* dst_base,
                                const int64_t* dst_off, int row_elems) {
  const __half* src = src_base + src_off[blockIdx.x];
  __half* dst = dst_base + dst_off[blockIdx.x];
  const bool vec =
      ((reinterpret_cast<uintptr_t>(src) | reinterpret_cast<uintptr_t>(dst)) & 15) == 0 && (row_elems % 8) == 0;
  if (vec) {
    const uint4* s = reinterpret_cast<const uint4*>(src);
    uint4* d = reinterpret_cast<uint4*>(dst);
    for (int i = threadIdx.x; i < row_elems / 8; i += blockDim.x) d[i] = s[i];
  } else {
    for (int i = threadIdx.x; i < row_elems; i += blockDim.x) dst[i] = src[i];
  }
}

}  // namespace

void LaunchRowCopy(const __half* src_base, const int64_t* src_off, __half* dst_base, const int64_t* dst_off, int rows,
                   int row_elems, cudaStream_t stream) {
  if (rows <= 0) return;
  row_copy_kernel<<<rows, 128, 0, stream>>>(src_base, src_off, dst_base, dst_off, row_elems);
  HS_KERNEL_CHECK();
}

}  // namespace hs::cuda
