// A pipeline stage on one GPU: a CudaEngine over the stage's layers (their weights and their slice
// of the layer-major host pools), on its own device; the hidden state stays in device memory
// (CudaEngine::HiddenBuffer), so NCCL moves it GPU to GPU.
#pragma once
#include <memory>

#include "core/cache_pools.h"
#include "core/weights.h"
#include "cuda/cuda_backend.h"
#include "pipeline/numa.h"
#include "pipeline/stage.h"

namespace hs::pipeline {

// `o.device` is the stage's GPU. The GPU cache tier is not split by stage yet: pools with device
// blocks are refused (std::invalid_argument) when the pipeline has more than one stage.
std::unique_ptr<Stage> MakeCudaStage(const ModelConfig& cfg, const HostWeights& weights, CachePools& pools,
                                     LayerRange range, const cuda::CudaOptions& o);

// `gpus` stages on devices 0..gpus-1 in this process, joined by NCCL (ncclCommInitAll). `placement`
// (GpuPlacement, when the weights and pools were placed by it) only labels each stage's Info.
std::unique_ptr<Backend> MakeCudaPipeline(const ModelConfig& cfg, const HostWeights& weights, CachePools& pools,
                                          const cuda::CudaOptions& o, int gpus,
                                          const std::vector<numa::StagePlacement>& placement = {});

}  // namespace hs::pipeline
