// Llama FFN: out = silu(gate) * up, where each row of `gu` is [gate (ffn) | up (ffn)] (one fused GEMM).
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace hs::cuda {

void LaunchSiluMul(const __half* gu, __half* out, int rows, int ffn, cudaStream_t stream);

}  // namespace hs::cuda
