// Model dimensions of the presets the CUDA tests and the native benchmark use (the same numbers as
// model/presets.ts, which is the source of truth for the TypeScript side).
#pragma once
#include <stdexcept>
#include <string>

#include "core/types.h"

namespace hs::cudatest {

inline ModelConfig Opt(int h, int layers, int heads) {
  ModelConfig c;
  c.arch = Arch::OPT;
  c.vocab_size = 50272;
  c.hidden_size = h;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = heads;
  c.head_dim = h / heads;
  c.ffn_size = 4 * h;
  c.max_positions = 2048;
  c.tie_embeddings = true;
  return c;
}

inline ModelConfig Llama(int h, int layers, int heads, int kv_heads, int ffn, int vocab, int max_pos, float theta) {
  ModelConfig c;
  c.arch = Arch::LLAMA;
  c.vocab_size = vocab;
  c.hidden_size = h;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = h / heads;
  c.ffn_size = ffn;
  c.max_positions = max_pos;
  c.rope_theta = theta;
  c.tie_embeddings = false;
  return c;
}

inline ModelConfig Preset(const std::string& name) {
  if (name == "opt-tiny") return Opt(64, 2, 4);
  if (name == "opt-125m") return Opt(768, 12, 12);
  // Small models with the head dims of the real ones (128; 64 with GQA), so that the model tests run
  // the fused prompt attention (prefill_attention.cu is built for head dims 64 and 128 only).
  if (name == "opt-small-hd128") return Opt(512, 2, 4);
  if (name == "opt-1.3b") return Opt(2048, 24, 32);
  if (name == "opt-6.7b") return Opt(4096, 32, 32);
  if (name == "opt-13b") return Opt(5120, 40, 40);
  if (name == "opt-30b") return Opt(7168, 48, 56);
  if (name == "opt-66b") return Opt(9216, 64, 72);
  if (name == "llama-tiny") return Llama(64, 2, 4, 4, 176, 32000, 2048, 10000);
  if (name == "llama-tiny-gqa") return Llama(64, 2, 4, 2, 176, 32000, 2048, 10000);
  if (name == "llama-small-gqa-hd64") return Llama(256, 2, 4, 2, 704, 32000, 2048, 10000);
  if (name == "llama-7b") return Llama(4096, 32, 32, 32, 11008, 32000, 4096, 10000);
  if (name == "llama3-8b") return Llama(4096, 32, 32, 8, 14336, 128256, 8192, 500000);
  throw std::invalid_argument("unknown preset '" + name + "'");
}

}  // namespace hs::cudatest
