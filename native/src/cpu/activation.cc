#include "cpu/activation.h"

#include <cmath>

namespace hs::cpu {

void ReluInPlace(float* x, size_t n) {
  for (size_t i = 0; i < n; ++i) x[i] = x[i] > 0.f ? x[i] : 0.f;
}

void SiluMulInPlace(float* g, const float* u, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const float z = g[i];
    g[i] = z / (1.f + std::exp(-z)) * u[i];
  }
}

}  // namespace hs::cpu
