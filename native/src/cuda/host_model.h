// Plain host-side views of what the CUDA engine streams: fp16 (or quantised, issue 14) weights and
// the layer-major cache pools. No CUDA types here, so that the adapter (cuda_backend.cc) and test
// drivers can fill them from HostWeights/CachePools or from their own buffers.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/quant.h"
#include "core/types.h"

namespace hs::cuda {

using half_bits = uint16_t;  // fp16 bit pattern in host memory

// One quantised GEMM weight in pinned host memory: the whole buffer of core/quant.h's layout
// (q.codes is its first byte, `bytes` long). Empty (format Native) for an fp16 matrix.
struct HostQuant {
  QuantView q;
  size_t bytes = 0;
  bool empty() const { return q.format == WeightFormat::Native; }
};

// One decoder layer. Biases are null for Llama. OPT: w1/b1 = fc1, w2/b2 = fc2, w3 unused.
// Llama: w1 = gate_proj, w3 = up_proj, w2 = down_proj. Shapes follow PyTorch Linear: [out, in].
struct HostLayer {
  const half_bits* attn_norm_w = nullptr;  // [h]
  const half_bits* attn_norm_b = nullptr;  // [h] (OPT)
  const half_bits* wq = nullptr;           // [q_dim, h]
  const half_bits* wk = nullptr;           // [kv_dim, h]
  const half_bits* wv = nullptr;           // [kv_dim, h]
  const half_bits* wo = nullptr;           // [h, q_dim]
  const half_bits* bq = nullptr;
  const half_bits* bk = nullptr;
  const half_bits* bv = nullptr;
  const half_bits* bo = nullptr;
  const half_bits* ffn_norm_w = nullptr;
  const half_bits* ffn_norm_b = nullptr;
  const half_bits* w1 = nullptr;  // [ffn, h]
  const half_bits* b1 = nullptr;
  const half_bits* w2 = nullptr;  // [h, ffn]
  const half_bits* b2 = nullptr;
  const half_bits* w3 = nullptr;  // [ffn, h] (Llama up_proj)
  // Quantised layers (issue 14): the GEMM weights in their format instead of wq..w3 (left null);
  // norms and biases stay fp16 above. The engine dequantises them into the fp16 layer slot.
  HostQuant qq, qk, qv, qo, q1, q2, q3;
};

struct HostModel {
  ModelConfig cfg;
  const half_bits* embed = nullptr;      // [vocab, h]
  const half_bits* pos_embed = nullptr;  // OPT: [pos_rows, h], row = position + pos_offset
  int pos_rows = 0;
  int pos_offset = 0;
  const half_bits* final_norm_w = nullptr;
  const half_bits* final_norm_b = nullptr;  // OPT
  const half_bits* lm_head = nullptr;       // [vocab, h]; == embed when tied
  std::vector<HostLayer> layers;
};

// The host cache pools (fp16): per layer, the base of the KV region and of the ACT region.
//   kv block : [2 (K then V)][block_tokens][kv_dim]
//   act block: [block_tokens][hidden]
// Within one layer, block i starts at base + i * block_bytes (cache_pools.h).
struct HostCache {
  int block_tokens = 16;
  int kv_blocks = 0;
  int act_blocks = 0;
  std::vector<uint8_t*> kv_layer_base;
  std::vector<uint8_t*> act_layer_base;
  // The GPU cache tier (device memory, KV page layout): read and written in place, never streamed.
  int gpu_kv_blocks = 0;
  int64_t gpu_kv_bytes = 0;  // all layers, for the GPU memory budget
  std::vector<uint8_t*> gpu_kv_layer_base;
};

}  // namespace hs::cuda
