#include "pipeline/ranks.h"

#include <cstring>
#include <stdexcept>

#include "pipeline/rendezvous.h"

namespace hs::pipeline {

std::string LeaderHost(const RankOptions& r) {
  std::string host;
  int port = 0;
  SplitHostPort(r.leader_address, &host, &port);
  return host;
}

void CheckRank(const ModelConfig& cfg, const RankOptions& r) {
  if (r.world_size < 2 || r.rank < 0 || r.rank >= r.world_size)
    throw std::invalid_argument("rank " + std::to_string(r.rank) + " of world size " + std::to_string(r.world_size) +
                                " is not a rank of a pipeline over processes");
  if (r.world_size > cfg.num_layers) throw std::invalid_argument("more pipeline ranks than layers");
}

uint64_t ModelKey(const ModelConfig& cfg, WeightFormat format) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a, 64 bits
  auto mix = [&h](uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xff;
      h *= 1099511628211ull;
    }
  };
  float eps = cfg.norm_eps, theta = cfg.rope_theta;
  uint32_t eps_bits, theta_bits;
  std::memcpy(&eps_bits, &eps, 4);
  std::memcpy(&theta_bits, &theta, 4);
  for (uint64_t v : {(uint64_t)cfg.arch, (uint64_t)cfg.vocab_size, (uint64_t)cfg.hidden_size, (uint64_t)cfg.num_layers,
                     (uint64_t)cfg.num_heads, (uint64_t)cfg.num_kv_heads, (uint64_t)cfg.head_dim,
                     (uint64_t)cfg.ffn_size, (uint64_t)cfg.max_positions, (uint64_t)eps_bits, (uint64_t)theta_bits,
                     (uint64_t)cfg.tie_embeddings, (uint64_t)format})
    mix(v);
  return h == 0 ? 1 : h;
}

namespace {
struct JoinSizes {
  int32_t block_tokens, kv_blocks, act_blocks;
};
}  // namespace

std::vector<uint8_t> EncodeJoin(const PoolConfig& leader, const std::vector<uint8_t>& tail) {
  const JoinSizes j{leader.block_tokens, leader.kv_blocks, leader.act_blocks};
  std::vector<uint8_t> v(sizeof j + tail.size());
  std::memcpy(v.data(), &j, sizeof j);
  if (!tail.empty()) std::memcpy(v.data() + sizeof j, tail.data(), tail.size());
  return v;
}

PoolConfig DecodeJoin(const std::vector<uint8_t>& blob, LayerRange mine, DType dtype, std::vector<uint8_t>* tail) {
  JoinSizes j;
  if (blob.size() < sizeof j) throw std::runtime_error("rendezvous: the leader's reply is not a pipeline join");
  std::memcpy(&j, blob.data(), sizeof j);
  if (j.block_tokens < 1 || j.kv_blocks < 0 || j.act_blocks < 0)
    throw std::runtime_error("rendezvous: the leader sent impossible pool sizes");
  tail->assign(blob.begin() + sizeof j, blob.end());
  return PoolConfig{j.block_tokens, j.kv_blocks, j.act_blocks, dtype, 0, mine.first, mine.last};
}

}  // namespace hs::pipeline
