// Stages in several processes on CPUs: the counterpart of pipeline/cuda/cuda_ranks.h with the
// socket transport (pipeline/socket_transport.h) in place of NCCL. One stage per process, rank r
// running layers SplitLayers(numLayers, world)[r], pools at the leader's sizes.
//   rank 0: MakeCpuLeader returns the Backend for the engine core;
//   rank r > 0: RunCpuRank serves its stage until the leader stops (or throws PeerLostError when
//           the group loses a rank).
// It makes `hybridserve serve --device cpu --world-size N` work, so that the whole pipeline over
// processes (rendezvous, plans, transports, a lost rank) runs in CI without GPUs.
#pragma once
#include <memory>

#include "core/backend.h"
#include "core/cache_pools.h"
#include "core/weights.h"
#include "pipeline/ranks.h"

namespace hs::pipeline {

// `weights` and `pools` hold at least rank 0's layers. threads <= 0: hardware concurrency.
std::unique_ptr<Backend> MakeCpuLeader(const ModelConfig& cfg, const HostWeights& weights, CachePools& pools,
                                       int threads, const RankOptions& r);
// `weights` may hold only this rank's layers; the pools are allocated at the leader's sizes.
void RunCpuRank(const ModelConfig& cfg, const HostWeights& weights, int threads, const RankOptions& r);

}  // namespace hs::pipeline
