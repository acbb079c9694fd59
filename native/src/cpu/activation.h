// Element-wise FFN activations: OPT's ReLU and Llama's SwiGLU gate (silu(g) * u).
#pragma once
#include <cstddef>

namespace hs::cpu {

void ReluInPlace(float* x, size_t n);
// g[i] = silu(g[i]) * u[i], silu(z) = z / (1 + exp(-z)).
void SiluMulInPlace(float* g, const float* u, size_t n);

}  // namespace hs::cpu
