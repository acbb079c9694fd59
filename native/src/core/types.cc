#include "core/types.h"

#include <limits>

namespace hs {

StepCounters& StepCounters::operator+=(const StepCounters& o) {
  steps += o.steps;
  prefill_tokens += o.prefill_tokens;
  decode_tokens += o.decode_tokens;
  weight_bytes_h2d += o.weight_bytes_h2d;
  kv_bytes_h2d += o.kv_bytes_h2d;
  act_bytes_h2d += o.act_bytes_h2d;
  kv_bytes_d2h += o.kv_bytes_d2h;
  act_bytes_d2h += o.act_bytes_d2h;
  transfer_seconds += o.transfer_seconds;
  compute_seconds += o.compute_seconds;
  recompute_seconds += o.recompute_seconds;
  idle_seconds += o.idle_seconds;
  wall_seconds += o.wall_seconds;
  recomputed_tokens += o.recomputed_tokens;
  return *this;
}

std::string ConfigProductsProblem(const ModelConfig& c) {
  constexpr int64_t kIntMax = std::numeric_limits<int32_t>::max();
  const int64_t h = c.hidden_size, heads = c.num_heads, kv_heads = c.num_kv_heads, d = c.head_dim, f = c.ffn_size;
  const int64_t q = heads * d, kv = kv_heads * d;
  struct Product {
    const char* what;
    int64_t value;
  };
  const Product products[] = {
      {"numHeads x headDim", q},
      {"numKvHeads x headDim", kv},
      {"numHeads x headDim + 2 x numKvHeads x headDim (the fused QKV row)", q + 2 * kv},
      {"2 x ffnSize (the gated FFN row)", 2 * f},
      {"4 x hiddenSize", 4 * h},
  };
  for (const Product& p : products) {
    if (p.value > kIntMax)
      return std::string(p.what) + " = " + std::to_string(p.value) + " exceeds " + std::to_string(kIntMax);
  }
  return "";
}

}  // namespace hs
