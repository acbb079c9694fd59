#include "pipeline/ranks.h"

#include <cstring>
#include <stdexcept>

namespace hs::pipeline {

void CheckRank(const ModelConfig& cfg, const RankOptions& r) {
  if (r.world_size < 2 || r.rank < 0 || r.rank >= r.world_size)
    throw std::invalid_argument("rank " + std::to_string(r.rank) + " of world size " + std::to_string(r.world_size) +
                                " is not a rank of a pipeline over processes");
  if (r.world_size > cfg.num_layers) throw std::invalid_argument("more pipeline ranks than layers");
}

namespace {
struct JoinSizes {
  int32_t block_tokens, kv_blocks, act_blocks;
};
}  // namespace

std::vector<uint8_t> EncodeJoin(const PoolConfig& leader, const std::vector<uint8_t>& tail) {
  const JoinSizes j{leader.block_tokens, leader.kv_blocks, leader.act_blocks};
  std::vector<uint8_t> v(sizeof j);
  std::memcpy(v.data(), &j, sizeof j);
  v.insert(v.end(), tail.begin(), tail.end());
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
