// Plain data shared by the engine core and its backends. No Node, no CUDA.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace hs {

enum class Arch { OPT, LLAMA };
enum class DType : uint8_t { F32 = 0, F16 = 1, BF16 = 2 };
enum class CacheKind : uint8_t { KV = 0, ACT = 1 };

inline size_t dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }

struct ModelConfig {
  Arch arch = Arch::OPT;
  int vocab_size = 0;
  int hidden_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int ffn_size = 0;
  int max_positions = 0;
  float norm_eps = 1e-5f;
  float rope_theta = 10000.f;
  bool tie_embeddings = true;

  // Only meaningful once ConfigProductsProblem() returned "" (the products fit an int).
  int q_dim() const { return num_heads * head_dim; }
  int kv_dim() const { return num_kv_heads * head_dim; }
};

// The backends size rows and offsets with int arithmetic on these widths (q_dim, kv_dim, the
// fused QKV row, the gated FFN row). Each field may be a valid int while a product is not; this
// names the first product that does not fit in an int32 (computed in 64 bits), or returns "".
std::string ConfigProductsProblem(const ModelConfig& c);

// One block of a sequence's block table. A block index addresses the same slot in every layer.
// Where a cache block's storage lives. Host blocks sit in pinned host memory and cross PCIe every
// step that reads them; device blocks sit in GPU memory (HBM) and are read in place. Device-tier
// blocks are always KV: recomputing K/V from ACT saves nothing for a block that never moves.
enum class Tier : uint8_t { Host = 0, Device = 1 };

// One block of a sequence's block table. A block index addresses the same slot in every layer of
// its tier's pool (host KV, host ACT or device KV), so (tier, kind, index) names the storage.
struct BlockRef {
  CacheKind kind;
  int32_t index;
  Tier tier = Tier::Host;
};

// What one step did. Summed into the engine's totals.
struct StepCounters {
  int64_t steps = 0;
  int64_t prefill_tokens = 0;
  int64_t decode_tokens = 0;
  int64_t weight_bytes_h2d = 0;
  int64_t kv_bytes_h2d = 0;
  int64_t act_bytes_h2d = 0;
  int64_t kv_bytes_d2h = 0;
  int64_t act_bytes_d2h = 0;
  double transfer_seconds = 0;
  double compute_seconds = 0;
  double recompute_seconds = 0;
  double idle_seconds = 0;
  double wall_seconds = 0;
  int64_t recomputed_tokens = 0;

  StepCounters& operator+=(const StepCounters& o);
};

}  // namespace hs
