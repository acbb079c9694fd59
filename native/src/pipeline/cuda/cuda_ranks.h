// Stages in several processes on GPUs: one stage (one GPU) per process, rank r running layers
// SplitLayers(numLayers, world)[r]. Every rank holds pools of the leader's sizes (sent over the
// rendezvous, so the leader's block indices address the same slots everywhere) and touches only
// its layers' regions.
//   rank 0: MakeCudaLeader returns the Backend for the engine core (its stage, the rendezvous link
//           and the logits collector);
//   rank r > 0: RunCudaRank serves its stage until the leader stops.
// The rendezvous hands out the pool sizes, the NCCL id of the communicator that carries the
// activations (rank r to r+1) and the leader's data port: the last rank's logits go to the leader
// over TCP (pipeline/socket_transport.h), one NCCL communicator per process (cuda_ranks.cc says why).
#pragma once
#include <memory>
#include <string>

#include "core/backend.h"
#include "core/cache_pools.h"
#include "core/weights.h"
#include "cuda/cuda_backend.h"
#include "pipeline/numa.h"
#include "pipeline/ranks.h"

namespace hs::pipeline {

std::unique_ptr<Backend> MakeCudaLeader(const ModelConfig& cfg, const HostWeights& weights, CachePools& pools,
                                        const cuda::CudaOptions& o, const RankOptions& r);
// `weights` may hold only this rank's layers (WeightSource::first_layer/last_layer); the pools
// (pinned, its layers only) are allocated at the leader's sizes once it has joined, near the rank's
// GPU when `placement` (pipeline/cuda/numa_placement.h RankPlacement) is not empty.
void RunCudaRank(const ModelConfig& cfg, const HostWeights& weights, const cuda::CudaOptions& o, const RankOptions& r,
                 const std::vector<numa::StagePlacement>& placement = {});

}  // namespace hs::pipeline
