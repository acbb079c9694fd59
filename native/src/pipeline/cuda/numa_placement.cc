#include "pipeline/cuda/numa_placement.h"

#include <cstdio>
#include <stdexcept>
#include <string>

#include "cuda/cuda_backend.h"

namespace hs::pipeline {
namespace {

std::vector<LayerRange> Ranges(const std::vector<numa::StagePlacement>& placement) {
  std::vector<LayerRange> out;
  for (const auto& p : placement) out.push_back(p.layers);
  return out;
}

// One line per placed stage ("stage 1: GPU 1 on NUMA node 1: ..."); `label` names stage or rank.
void LogPlacement(const std::vector<numa::StagePlacement>& placement, const std::vector<int>& devices,
                  const char* label, int first_index) {
  for (size_t i = 0; i < placement.size(); ++i) {
    if (placement[i].node >= 0)
      std::fprintf(stderr, "hybridserve: %s %d: GPU %d on NUMA node %d: pools and weights bound there\n", label,
                   first_index + (int)i, devices[i], placement[i].node);
    else
      std::fprintf(stderr, "hybridserve: %s %d: GPU %d has no NUMA node: pools and weights left unbound\n", label,
                   first_index + (int)i, devices[i]);
  }
}

}  // namespace

std::vector<numa::StagePlacement> GpuPlacement(int num_layers, int first_device, int gpus) {
  // Nothing to place (and no CUDA call, no error of its own: MakeCudaPipeline reports bad counts).
  const int host_nodes = numa::CountNumaNodes();
  if (gpus < 2 || gpus > num_layers || host_nodes < 2) return {};
  std::vector<int> devices, nodes;
  for (int s = 0; s < gpus; ++s) {
    devices.push_back(first_device + s);
    nodes.push_back(cuda::DeviceNumaNode(first_device + s));
  }
  auto placement = numa::PlanPlacement(SplitLayers(num_layers, gpus), nodes, host_nodes, gpus);
  LogPlacement(placement, devices, "stage", 0);
  return placement;
}

std::vector<numa::StagePlacement> RankPlacement(int num_layers, int device, int rank, int world) {
  const int host_nodes = numa::CountNumaNodes();
  if (world < 2 || world > num_layers || rank < 0 || rank >= world || host_nodes < 2) return {};
  const LayerRange mine = SplitLayers(num_layers, world)[rank];
  auto placement = numa::PlanPlacement({mine}, {cuda::DeviceNumaNode(device)}, host_nodes, world);
  LogPlacement(placement, {device}, "rank", rank);
  return placement;
}

std::unique_ptr<HostWeights> PlacedWeights(const ModelConfig& cfg, const WeightSource& src, DType dtype,
                                           const std::vector<numa::StagePlacement>& placement) {
  const std::vector<LayerRange> ranges = Ranges(placement);
  auto alloc = [&](const std::string& name, size_t bytes) {
    const int s = numa::TensorStage(name, ranges);
    return cuda::NodePinnedAlloc(bytes, s >= 0 ? placement[s].node : -1);
  };
  return std::make_unique<HostWeights>(cfg, src, dtype, alloc, cuda::HostMapFree);
}

std::unique_ptr<CachePools> PlacedPools(const ModelConfig& cfg, const PoolConfig& pc,
                                        const std::vector<numa::StagePlacement>& placement) {
  auto pools =
      std::make_unique<CachePools>(cfg, pc, cuda::HostMapAlloc, cuda::HostMapFree, cuda::DeviceAlloc, cuda::DeviceFree);
  const int first = pc.first_layer, held = (pc.last_layer < 0 ? cfg.num_layers : pc.last_layer) - first;
  const std::vector<LayerRange> ranges = Ranges(placement);
  for (CacheKind kind : {CacheKind::KV, CacheKind::ACT}) {
    uint8_t* base = pools->layer_base(kind, first);
    const size_t layer_bytes =
        pools->block_elems_per_layer(kind) * dtype_size(pc.dtype) * (size_t)pools->total_blocks(kind);
    const auto bytes = numa::StageByteRanges(layer_bytes, first, held, ranges, numa::PageSize());
    for (size_t s = 0; s < placement.size(); ++s)
      if (placement[s].node >= 0 && bytes[s].size() > 0)
        numa::PreferNodeOrWarn(base + bytes[s].begin, bytes[s].size(), placement[s].node);
    // Pinned whole, in one registration, so that the stages' engines find it pinned (EnsurePinned
    // would otherwise register each stage's span, and two spans can share a boundary page).
    if (!cuda::PinHostMap(base))
      throw std::runtime_error("cannot pin the cache pools (" + std::to_string(layer_bytes * held) + " bytes of " +
                               (kind == CacheKind::KV ? "KV" : "ACT") + ")");
  }
  return pools;
}

}  // namespace hs::pipeline
