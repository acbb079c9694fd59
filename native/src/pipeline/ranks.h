// What every pipeline over processes shares, whatever moves its tensors (NCCL between GPUs,
// sockets between CPU stages): the rank options, their checks, and the rendezvous reply that
// carries the leader's pool sizes (so that block ids mean the same slots on every rank) followed
// by the transport's own bytes (NCCL ids, or the ranks' data addresses).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/cache_pools.h"
#include "core/quant.h"
#include "core/types.h"
#include "pipeline/layer_split.h"

namespace hs::pipeline {

struct RankOptions {
  int rank = 0;
  int world_size = 1;
  std::string leader_address;  // HOST:PORT
  double timeout_s = 600;      // for the rendezvous (pods of a group may start minutes apart)
  std::string token;           // the group's shared secret (pipeline/token.h); empty: not checked
};

// Throws std::invalid_argument unless 0 <= rank < world_size, 2 <= world_size <= numLayers.
void CheckRank(const ModelConfig& cfg, const RankOptions& r);

// The host of --leader-address: where every rank reaches the leader's data listener too.
std::string LeaderHost(const RankOptions& r);

// What the ranks of one group must agree on, as one number for the rendezvous hello: the model's
// shape and the weight format (the weights themselves are not compared). Never 0.
uint64_t ModelKey(const ModelConfig& cfg, WeightFormat format);

// The leader's reply: its pool sizes, then `tail`.
std::vector<uint8_t> EncodeJoin(const PoolConfig& leader, const std::vector<uint8_t>& tail);
// A rank's pools from the leader's reply (the leader's sizes, only the rank's layers, `dtype`);
// the bytes after the sizes go to *tail. Throws std::runtime_error on a reply that is not a join.
PoolConfig DecodeJoin(const std::vector<uint8_t>& blob, LayerRange mine, DType dtype, std::vector<uint8_t>* tail);

}  // namespace hs::pipeline
