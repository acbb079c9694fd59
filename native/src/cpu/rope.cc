#include "cpu/rope.h"

#include <cmath>
#include <stdexcept>

namespace hs::cpu {

// Angles follow HF's float32 arithmetic (inv_freq and pos·inv_freq in float), then cos/sin of that
// float angle, so long positions round the same way as the reference.
RopeTable::RopeTable(int max_positions, int head_dim, float theta) : max_pos_(max_positions), half_(head_dim / 2) {
  if (head_dim % 2) throw std::invalid_argument("RoPE needs an even head dimension");
  cos_.resize((size_t)max_positions * half_);
  sin_.resize((size_t)max_positions * half_);
  std::vector<float> inv(half_);
  for (int i = 0; i < half_; ++i) inv[i] = (float)(1.0 / std::pow((double)theta, (double)(2 * i) / head_dim));
  for (int p = 0; p < max_positions; ++p)
    for (int i = 0; i < half_; ++i) {
      const float a = (float)p * inv[i];
      cos_[(size_t)p * half_ + i] = (float)std::cos((double)a);
      sin_[(size_t)p * half_ + i] = (float)std::sin((double)a);
    }
}

void ApplyRope(float* x, int num_heads, int head_dim, int pos, const RopeTable& t) {
  const int h2 = head_dim / 2;
  const float* c = t.cos_row(pos);
  const float* s = t.sin_row(pos);
  for (int h = 0; h < num_heads; ++h) {
    float* v = x + (size_t)h * head_dim;
    for (int i = 0; i < h2; ++i) {
      const float x1 = v[i], x2 = v[i + h2];
      v[i] = x1 * c[i] - x2 * s[i];
      v[i + h2] = x2 * c[i] + x1 * s[i];
    }
  }
}

}  // namespace hs::cpu
