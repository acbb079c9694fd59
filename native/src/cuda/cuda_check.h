// Error checks for CUDA runtime and cuBLAS calls. Failures throw std::runtime_error so that the
// engine core can turn them into a rejected Promise instead of a crash.
#pragma once
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace hs::cuda {

[[noreturn]] inline void ThrowCuda(const char* what, const char* file, int line, const std::string& msg) {
  throw std::runtime_error(std::string("CUDA error in ") + what + " at " + file + ":" + std::to_string(line) + ": " +
                           msg);
}

}  // namespace hs::cuda

#define HS_CUDA_CHECK(expr)                                                                                    \
  do {                                                                                                         \
    cudaError_t hs_err_ = (expr);                                                                              \
    if (hs_err_ != cudaSuccess) ::hs::cuda::ThrowCuda(#expr, __FILE__, __LINE__, cudaGetErrorString(hs_err_)); \
  } while (0)

// After every kernel launch: catches bad launch configurations at the launch site.
#define HS_KERNEL_CHECK() HS_CUDA_CHECK(cudaGetLastError())
