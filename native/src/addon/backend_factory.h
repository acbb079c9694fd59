// The one place that picks a backend: CPU always, CUDA when built with it (HS_WITH_CUDA).
// CUDA stores weights and pools as F16 in pinned host memory; CPU uses F32 on the heap.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/engine.h"

namespace hs::addon {

struct DeviceOptions {
  std::string device = "cpu";  // "cpu" | "cuda"
  int threads = 0;
  int64_t gpu_memory_bytes = 0;
  int resident_layers = -1;
  int stages = 1;  // cpu: pipeline stages in this process (a LoopbackTransport between them)
  int gpus = 1;    // cuda: pipeline stages, one per GPU (NCCL between them)
  // cuda: stages in several processes, one GPU each (pipeline/cuda/cuda_ranks.h); rank 0 leads.
  int rank = 0;
  int world_size = 1;
  std::string leader_address;
  std::string pipeline_token;  // a secret: compared at the rendezvous, never echoed
};

bool DeviceSupported(const std::string& device);  // built in and present
std::vector<std::string> AvailableDevices();

// Loads the weights, allocates the pools and builds the backend for `dev.device`.
EngineParts MakeEngineParts(const ModelConfig& cfg, const WeightSource& src, PoolConfig pools,
                            const DeviceOptions& dev);

// A rank > 0 of a pipeline over processes: loads the weights, joins the leader, runs its stage
// until the leader stops (blocks; call from a worker thread).
void RunRank(const ModelConfig& cfg, const WeightSource& src, const DeviceOptions& dev);

struct ProbeResult {
  double gemm_flops = 0, h2d_bytes_per_second = 0, d2h_bytes_per_second = 0;
};
ProbeResult ProbeDevice(const std::string& device, int threads);

}  // namespace hs::addon
