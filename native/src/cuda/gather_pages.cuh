// Copies one sequence's paged K and V into contiguous [ctx, kv_dim] buffers, so that prefill
// attention can run as two strided-batched GEMMs.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "cuda/qkv_post.cuh"

namespace hs::cuda {

// page_table: this sequence's pages, in block order (device pointer).
void LaunchGatherPages(const int* page_table, int ctx, PageGeom geom, __half* k_out, __half* v_out,
                       cudaStream_t stream);

}  // namespace hs::cuda
