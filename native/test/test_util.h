// Shared helpers for the native tests: tiny model configs and a CPU engine factory.
#pragma once
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "core/engine.h"
#include "cpu/cpu_backend.h"

namespace hs::test {

inline ModelConfig TinyOpt() {
  ModelConfig c;
  c.arch = Arch::OPT;
  c.vocab_size = 503;
  c.hidden_size = 32;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 4;
  c.head_dim = 8;
  c.ffn_size = 64;
  c.max_positions = 256;
  c.tie_embeddings = true;
  return c;
}

inline ModelConfig TinyLlama(int kv_heads = 2) {
  ModelConfig c;
  c.arch = Arch::LLAMA;
  c.vocab_size = 409;
  c.hidden_size = 32;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = kv_heads;
  c.head_dim = 8;
  c.ffn_size = 88;
  c.max_positions = 256;
  c.tie_embeddings = false;
  return c;
}

// Synthetic f32 weights (seed 7, `format`) and 4-token pools of 64 KV and 64 ACT blocks: the parts
// of a tiny engine, for a test that brings its own backend over them.
inline EngineParts TinyParts(const ModelConfig& cfg, WeightFormat format = WeightFormat::Native) {
  EngineParts parts;
  WeightSource src;
  src.seed = 7;
  src.format = format;
  PoolConfig pc;
  pc.block_tokens = 4;
  pc.kv_blocks = 64;
  pc.act_blocks = 64;
  parts.weights = std::make_unique<HostWeights>(cfg, src, DType::F32);
  parts.pools = std::make_unique<CachePools>(cfg, pc);
  return parts;
}

inline std::unique_ptr<Engine> MakeCpuEngine(const ModelConfig& cfg, int kv_blocks, int act_blocks, double fraction,
                                             int block_tokens = 4, uint64_t seed = 7, int threads = 2,
                                             int gpu_kv_blocks = 0, bool prefix_caching = false) {
  EngineParts parts;
  WeightSource src;
  src.synthetic = true;
  src.seed = seed;
  PoolConfig pc;
  pc.block_tokens = block_tokens;
  pc.kv_blocks = kv_blocks;
  pc.act_blocks = act_blocks;
  pc.gpu_kv_blocks = gpu_kv_blocks;  // the CPU backend's emulated device tier
  parts.weights = std::make_unique<HostWeights>(cfg, src, DType::F32);
  parts.pools = std::make_unique<CachePools>(cfg, pc);
  parts.backend = std::make_unique<cpu::CpuBackend>(cfg, *parts.weights, *parts.pools, threads);
  return std::make_unique<Engine>(cfg, std::move(parts), fraction, prefix_caching);
}

// max|a - b| / max|b|: the relative error of a whole logits row.
inline double RelError(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    num = std::max(num, (double)std::fabs(a[i] - b[i]));
    den = std::max(den, (double)std::fabs(b[i]));
  }
  return den > 0 ? num / den : num;
}

inline std::vector<int32_t> Prompt(int n, int salt, int vocab) {
  std::vector<int32_t> p(n);
  for (int i = 0; i < n; ++i) p[i] = (int32_t)((i * 131 + salt * 977 + 11) % vocab);
  return p;
}

}  // namespace hs::test
