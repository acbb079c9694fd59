#include "pipeline/cpu_pipeline.h"

#include <algorithm>
#include <thread>

#include "cpu/cpu_backend.h"
#include "pipeline/layer_split.h"
#include "pipeline/loopback_transport.h"
#include "pipeline/pipeline_backend.h"

namespace hs::pipeline {

std::unique_ptr<Backend> MakeCpuPipeline(const ModelConfig& cfg, const HostWeights& weights, CachePools& pools,
                                         int threads, int stages) {
  const std::vector<LayerRange> split = SplitLayers(cfg.num_layers, stages);
  const int total = threads > 0 ? threads : (int)std::max(1u, std::thread::hardware_concurrency());
  const int per_stage = std::max(1, total / stages);
  auto hub = std::make_shared<LoopbackHub>(stages);
  std::vector<std::unique_ptr<Stage>> parts;
  std::vector<std::unique_ptr<Transport>> endpoints;
  for (int s = 0; s < stages; ++s) {
    parts.push_back(std::make_unique<cpu::CpuBackend>(cfg, weights, pools, per_stage, split[s]));
    endpoints.push_back(hub->Endpoint(s));
  }
  LoopbackHub* h = hub.get();
  return std::make_unique<PipelineBackend>(std::move(parts), std::move(endpoints), hub, [h] { h->Close(); });
}

}  // namespace hs::pipeline
