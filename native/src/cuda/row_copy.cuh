// Copies fp16 rows between arbitrary places, one thread block per row: used to write new tokens'
// K/V or ACT rows straight into the pinned (mapped) host pools. One kernel replaces thousands of
// tiny cudaMemcpyAsync calls (a 10 KB row each), and its writes go over PCIe as large posted writes.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cstdint>

namespace hs::cuda {

// dst_base + dst_off[i] <- src_base + src_off[i], row_elems elements each (offsets in elements).
void LaunchRowCopy(const __half* src_base, const int64_t* src_off, __half* dst_base, const int64_t* dst_off, int rows,
                   int row_elems, cudaStream_t stream);

}  // namespace hs::cuda
