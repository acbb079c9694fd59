#include "cpu/norm.h"

#include <cmath>
#include <cstddef>

namespace hs::cpu {

// Sums run in double: one pass over a row is cheap, and it keeps the result independent of how
// many rows share a step (the engine's batched-equals-unbatched property).
void LayerNorm(const float* x, float* out, int rows, int dim, const float* w, const float* b, float eps) {
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + (size_t)r * dim;
    float* o = out + (size_t)r * dim;
    double sum = 0;
    for (int i = 0; i < dim; ++i) sum += xr[i];
    const double mean = sum / dim;
    double var = 0;
    for (int i = 0; i < dim; ++i) {
      const double d = xr[i] - mean;
      var += d * d;
    }
    const float inv = (float)(1.0 / std::sqrt(var / dim + eps));
    const float m = (float)mean;
    for (int i = 0; i < dim; ++i) o[i] = (xr[i] - m) * inv * w[i] + (b ? b[i] : 0.f);
  }
}

void RmsNorm(const float* x, float* out, int rows, int dim, const float* w, float eps) {
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + (size_t)r * dim;
    float* o = out + (size_t)r * dim;
    double ss = 0;
    for (int i = 0; i < dim; ++i) ss += (double)xr[i] * xr[i];
    const float inv = (float)(1.0 / std::sqrt(ss / dim + eps));
    for (int i = 0; i < dim; ++i) o[i] = w[i] * (xr[i] * inv);
  }
}

}  // namespace hs::cpu
