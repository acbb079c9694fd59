#include "pipeline/cuda/cuda_ranks.h"

#include <cstring>
#include <stdexcept>
#include <string>

#include "pipeline/cuda/cuda_stage.h"
#include "pipeline/cuda/nccl_transport.h"
#include "pipeline/cuda/numa_placement.h"
#include "pipeline/remote.h"
#include "pipeline/socket_transport.h"

namespace hs::pipeline {
namespace {

// The transport part of the rendezvous reply: the activations' NCCL id and the port of the
// leader's data listener, where the last rank sends its logits over TCP. Not a second NCCL
// communicator: the leader's collector would wait in an NCCL kernel on rank 0's GPU while its stage
// thread drives the other communicator on the same GPU, which NCCL's docs warn can deadlock (its
// kernels block until the peer's data arrives, and a CUDA call that synchronises the device waits
// for them). The first 2-process run on two H200, with two communicators, hung (and so did a lost
// rank's abort). The logits are host memory at both ends anyway.
struct JoinTail {
  NcclId acts;
  uint16_t logits_port = 0;
};

std::vector<uint8_t> EncodeTail(const JoinTail& t) {
  std::vector<uint8_t> v(sizeof t);
  std::memcpy(v.data(), &t, sizeof t);
  return v;
}

JoinTail DecodeTail(const std::vector<uint8_t>& tail) {
  JoinTail t;
  if (tail.size() != sizeof t) throw std::runtime_error("rendezvous: the leader's reply is not a GPU pipeline join");
  std::memcpy(&t, tail.data(), sizeof t);
  if (t.logits_port == 0) throw std::runtime_error("rendezvous: the leader's reply has no logits port");
  return t;
}

}  // namespace

std::unique_ptr<Backend> MakeCudaLeader(const ModelConfig& cfg, const HostWeights& weights, CachePools& pools,
                                        const cuda::CudaOptions& o, const RankOptions& r) {
  CheckRank(cfg, r);
  if (r.rank != 0) throw std::invalid_argument("the leader is rank 0");
  const LayerRange mine = SplitLayers(cfg.num_layers, r.world_size)[0];
  auto stage = MakeCudaStage(cfg, weights, pools, mine, o);  // before the rendezvous: fail early, alone
  DataListener data;                                         // the last rank's logits come here
  auto link = LeaderLink::Listen(r.leader_address, r.world_size, GroupCheck{ModelKey(cfg, weights.format()), r.token});
  const JoinTail tail{NcclNewUniqueId(), static_cast<uint16_t>(data.port())};
  link->AcceptRanks(EncodeJoin(pools.config(), EncodeTail(tail)), r.timeout_s);
  auto tr = NcclRankEndpoint(tail.acts, 0, r.world_size, o.device);
  auto remote = RemoteRanksWithSocketLogits(std::move(link), data, r, cfg.vocab_size);
  return LeaderBackend(std::move(stage), std::move(tr), std::move(remote));
}

void RunCudaRank(const ModelConfig& cfg, const HostWeights& weights, const cuda::CudaOptions& o, const RankOptions& r,
                 const std::vector<numa::StagePlacement>& placement) {
  CheckRank(cfg, r);
  if (r.rank == 0) throw std::invalid_argument("rank 0 leads: use MakeCudaLeader");
  std::vector<uint8_t> blob, tail;
  auto link = WorkerLink::Connect(r.leader_address, r.rank, r.world_size, r.timeout_s, &blob, 0,
                                  GroupCheck{ModelKey(cfg, weights.format()), r.token});
  const LayerRange mine = SplitLayers(cfg.num_layers, r.world_size)[r.rank];
  // Only this rank's layers' cache (the block ids are the leader's).
  const PoolConfig pc = DecodeJoin(blob, mine, DType::F16, &tail);
  const JoinTail j = DecodeTail(tail);
  std::unique_ptr<CachePools> pools = placement.empty()
                                          ? std::make_unique<CachePools>(cfg, pc, cuda::PinnedAlloc, cuda::PinnedFree)
                                          : PlacedPools(cfg, pc, placement);
  cuda::CudaOptions so = o;
  if (!placement.empty()) so.numa_node = placement[0].node;
  auto stage = MakeCudaStage(cfg, weights, *pools, mine, so);
  auto tr = NcclRankEndpoint(j.acts, r.rank, r.world_size, o.device);
  std::unique_ptr<LogitsChannel> out;
  if (stage->last()) out = DialSocketLogits(LeaderHost(r), j.logits_port, r);
  ServeRank(*stage, *tr, *link, out.get(), cfg.vocab_size);
}

}  // namespace hs::pipeline
