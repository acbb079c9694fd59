// One way to time GPU work: CUDA events around `reps` runs on one stream, after one untimed run
// (first-call costs: cuBLAS heuristics, lazy module loads, clocks ramping up). Used by the device
// probe (copy and GEMM rates the planner reads) and by the prefill-parts benchmark.
#pragma once
#include <cuda_runtime.h>

#include <functional>

namespace hs::cuda {

// Mean milliseconds of one run of `op`, which must enqueue its work on `stream`.
double MeanMsOnStream(cudaStream_t stream, int reps, const std::function<void()>& op);

}  // namespace hs::cuda
