// Rotary position embedding in Hugging Face's rotate_half convention: within each head, element i
// pairs with i + d/2, rotated by angle pos · inv_freq[i], inv_freq[i] = theta^(-2i/d).
#pragma once
#include <cstddef>
#include <vector>

namespace hs::cpu {

class RopeTable {
 public:
  RopeTable() = default;
  RopeTable(int max_positions, int head_dim, float theta);
  int half() const { return half_; }
  const float* cos_row(int pos) const { return cos_.data() + (size_t)pos * half_; }
  const float* sin_row(int pos) const { return sin_.data() + (size_t)pos * half_; }
  int max_positions() const { return max_pos_; }

 private:
  int max_pos_ = 0, half_ = 0;
  std::vector<float> cos_, sin_;
};

// Rotates every head of one token's row x[num_heads * head_dim] in place for position `pos`.
void ApplyRope(float* x, int num_heads, int head_dim, int pos, const RopeTable& t);

}  // namespace hs::cpu
