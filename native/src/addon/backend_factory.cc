#include "addon/backend_factory.h"

#include <stdexcept>

#include "cpu/cpu_backend.h"
#include "cpu/gemm.h"
#include "pipeline/cpu_pipeline.h"
#include "pipeline/cpu_ranks.h"
#include "pipeline/layer_split.h"
#ifdef HS_WITH_CUDA
#include "cuda/cuda_backend.h"
#endif
#ifdef HS_WITH_NCCL
#include "pipeline/cuda/cuda_ranks.h"
#include "pipeline/cuda/cuda_stage.h"
#include "pipeline/cuda/numa_placement.h"
#endif

namespace hs::addon {

bool DeviceSupported(const std::string& device) {
  if (device == "cpu") return true;
#ifdef HS_WITH_CUDA
  if (device == "cuda") return hs::cuda::DeviceAvailable();
#endif
  return false;
}

std::vector<std::string> AvailableDevices() {
  std::vector<std::string> out{"cpu"};
  if (DeviceSupported("cuda")) out.push_back("cuda");
  return out;
}

static pipeline::RankOptions RankOf(const DeviceOptions& dev) {
  pipeline::RankOptions r;
  r.rank = dev.rank;
  r.world_size = dev.world_size;
  r.leader_address = dev.leader_address;
  r.token = dev.pipeline_token;
  return r;
}

// This rank's slice of the checkpoint (a rank of a pipeline over processes loads only its layers).
static WeightSource RankWeights(const ModelConfig& cfg, const WeightSource& src, const DeviceOptions& dev) {
  WeightSource mine = src;
  const pipeline::LayerRange r = pipeline::SplitLayers(cfg.num_layers, dev.world_size)[dev.rank];
  mine.first_layer = r.first;
  mine.last_layer = r.last;
  return mine;
}

EngineParts MakeEngineParts(const ModelConfig& cfg, const WeightSource& source, PoolConfig pc,
                            const DeviceOptions& dev) {
  EngineParts parts;
  if (dev.world_size > 1 && dev.rank != 0)
    throw std::invalid_argument("rank " + std::to_string(dev.rank) +
                                " serves its stage (runRank); only rank 0 has an engine");
  // Rank 0 of stages over processes holds only its stage's layers.
  const WeightSource src = dev.world_size > 1 ? RankWeights(cfg, source, dev) : source;
  if (dev.world_size > 1) {
    pc.first_layer = src.first_layer;
    pc.last_layer = src.last_layer;
  }
  if (dev.device == "cpu") {
    pc.dtype = DType::F32;
    parts.weights = std::make_unique<HostWeights>(cfg, src, DType::F32);
    parts.pools = std::make_unique<CachePools>(cfg, pc);
    if (dev.world_size > 1)
      parts.backend = pipeline::MakeCpuLeader(cfg, *parts.weights, *parts.pools, dev.threads, RankOf(dev));
    else if (dev.stages > 1)
      parts.backend = pipeline::MakeCpuPipeline(cfg, *parts.weights, *parts.pools, dev.threads, dev.stages);
    else
      parts.backend = std::make_unique<cpu::CpuBackend>(cfg, *parts.weights, *parts.pools, dev.threads);
    return parts;
  }
#ifdef HS_WITH_CUDA
  if (dev.device == "cuda") {
    if (!hs::cuda::DeviceAvailable())
      throw std::invalid_argument("device 'cuda' requested but no CUDA GPU is available");
    pc.dtype = DType::F16;
    hs::cuda::CudaOptions o;
    o.gpu_memory_bytes = dev.gpu_memory_bytes;
    o.resident_layers = dev.resident_layers;
#ifdef HS_WITH_NCCL
    // A pipeline's stages keep their host memory near their GPUs (issue 15); empty: today's path.
    const auto placement = dev.world_size > 1 ? pipeline::RankPlacement(cfg.num_layers, o.device, 0, dev.world_size)
                           : dev.gpus > 1     ? pipeline::GpuPlacement(cfg.num_layers, o.device, dev.gpus)
                                              : std::vector<pipeline::numa::StagePlacement>{};
    if (!placement.empty()) {
      parts.weights = pipeline::PlacedWeights(cfg, src, DType::F16, placement);
      parts.pools = pipeline::PlacedPools(cfg, pc, placement);
    }
#endif
    if (!parts.weights) {
      parts.weights = std::make_unique<HostWeights>(cfg, src, DType::F16, hs::cuda::PinnedAlloc, hs::cuda::PinnedFree);
      parts.pools = std::make_unique<CachePools>(cfg, pc, hs::cuda::PinnedAlloc, hs::cuda::PinnedFree,
                                                 hs::cuda::DeviceAlloc, hs::cuda::DeviceFree);
    }
    if (dev.gpus > 1 || dev.world_size > 1) {
#ifdef HS_WITH_NCCL
      if (dev.world_size > 1) {
        if (!placement.empty()) o.numa_node = placement[0].node;
        parts.backend = pipeline::MakeCudaLeader(cfg, *parts.weights, *parts.pools, o, RankOf(dev));
      } else {
        parts.backend = pipeline::MakeCudaPipeline(cfg, *parts.weights, *parts.pools, o, dev.gpus, placement);
      }
#else
      throw std::invalid_argument("a pipeline over GPUs (gpus > 1 or worldSize > 1) needs a build with NCCL");
#endif
    } else {
      parts.backend = hs::cuda::MakeCudaBackend(cfg, *parts.weights, *parts.pools, o);
    }
    return parts;
  }
#endif
  throw std::invalid_argument("device '" + dev.device + "' is not available in this build (available: cpu" +
                              std::string(DeviceSupported("cuda") ? ", cuda" : "") + ")");
}

void RunRank(const ModelConfig& cfg, const WeightSource& src, const DeviceOptions& dev) {
  if (dev.world_size < 2 || dev.rank < 1) throw std::invalid_argument("runRank is for ranks 1.. of worldSize > 1");
  const WeightSource mine = RankWeights(cfg, src, dev);  // only this rank's layers
  if (dev.device == "cpu") {
    HostWeights w(cfg, mine, DType::F32);
    pipeline::RunCpuRank(cfg, w, dev.threads, RankOf(dev));
    return;
  }
#ifdef HS_WITH_NCCL
  if (dev.device == "cuda" && hs::cuda::DeviceAvailable()) {
    hs::cuda::CudaOptions o;
    o.gpu_memory_bytes = dev.gpu_memory_bytes;
    o.resident_layers = dev.resident_layers;
    // This rank's weights and pools near its GPU (issue 15); empty: today's path.
    const auto placement = pipeline::RankPlacement(cfg.num_layers, o.device, dev.rank, dev.world_size);
    std::unique_ptr<HostWeights> w =
        placement.empty()
            ? std::make_unique<HostWeights>(cfg, mine, DType::F16, hs::cuda::PinnedAlloc, hs::cuda::PinnedFree)
            : pipeline::PlacedWeights(cfg, mine, DType::F16, placement);
    pipeline::RunCudaRank(cfg, *w, o, RankOf(dev), placement);
    return;
  }
#endif
  throw std::invalid_argument("stages in several processes run on cpu, or on cuda in a build with NCCL");
}

ProbeResult ProbeDevice(const std::string& device, int threads) {
  ProbeResult r;
  if (device == "cpu") {
    cpu::ThreadPool pool(threads);
    r.gemm_flops = cpu::MeasurePeakGemmFlops(&pool);
    return r;
  }
#ifdef HS_WITH_CUDA
  if (device == "cuda" && hs::cuda::DeviceAvailable()) {
    const auto p = hs::cuda::ProbeDevice(0);
    r.gemm_flops = p.gemm_flops;
    r.h2d_bytes_per_second = p.h2d_bytes_per_second;
    r.d2h_bytes_per_second = p.d2h_bytes_per_second;
    return r;
  }
#endif
  throw std::invalid_argument("device '" + device + "' is not available in this build");
}

}  // namespace hs::addon
