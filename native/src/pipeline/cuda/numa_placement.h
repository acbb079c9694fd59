// The CUDA side of NUMA placement (issue 15; the decisions are pipeline/numa.h's): which node each
// stage's GPU hangs off, and weights and cache pools whose pages are faulted in on those nodes
// before they are pinned (pinned pages never migrate). An empty placement means today's path:
// callers then allocate with cuda::PinnedAlloc as before.
#pragma once
#include <memory>
#include <vector>

#include "core/cache_pools.h"
#include "core/weights.h"
#include "pipeline/numa.h"

namespace hs::pipeline {

// `gpus` stages of a one-process pipeline on devices first_device.. (empty: nothing to place).
// Logs one line per stage on stderr when it places anything.
std::vector<numa::StagePlacement> GpuPlacement(int num_layers, int first_device, int gpus);
// Rank `rank` of a `world`-process pipeline, on `device`: its own layers near its GPU.
std::vector<numa::StagePlacement> RankPlacement(int num_layers, int device, int rank, int world);

// Weights stored as `dtype`, each tensor pinned on its stage's node (numa::TensorStage).
std::unique_ptr<HostWeights> PlacedWeights(const ModelConfig& cfg, const WeightSource& src, DType dtype,
                                           const std::vector<numa::StagePlacement>& placement);
// Pools whose host KV/ACT pools are bound stage by stage (numa::StageByteRanges), then pinned
// whole; the device tier from cuda::DeviceAlloc. Throws std::runtime_error when pinning fails.
std::unique_ptr<CachePools> PlacedPools(const ModelConfig& cfg, const PoolConfig& pc,
                                        const std::vector<numa::StagePlacement>& placement);

}  // namespace hs::pipeline
