#include "pipeline/cuda/cuda_stage.h"

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "cuda/engine.h"
#include "pipeline/cuda/nccl_transport.h"
#include "pipeline/pipeline_backend.h"

namespace hs::pipeline {
namespace {

template <class T>
std::vector<T> Slice(const std::vector<T>& v, LayerRange r) {
  return std::vector<T>(v.begin() + r.first, v.begin() + r.last);
}

class CudaStage : public Stage {
 public:
  CudaStage(const ModelConfig& cfg, cuda::HostModel model, cuda::HostCache cache, LayerRange range,
            const cuda::EngineOptions& eo, int numa_node)
      : cfg_(cfg), range_(range), device_(eo.device), numa_node_(numa_node), engine_(model, cache, eo) {}
  // The engine's streams, events and buffers belong to its device: free them from there.
  ~CudaStage() override { cudaSetDevice(device_); }
  LayerRange layers() const override { return range_; }
  bool last() const override { return range_.last == cfg_.num_layers; }
  size_t hidden_bytes(int tokens) const override { return sizeof(float) * (size_t)tokens * cfg_.hidden_size; }
  void* hidden_in(int tokens) override { return engine_.HiddenBuffer(tokens); }
  const void* hidden_out() const override { return out_; }
  void RunStage(const BatchPlan& plan, float* logits, StepCounters& counters) override {
    engine_.Forward(plan, logits, counters);
    out_ = engine_.HiddenBuffer(PlanTokens(plan));  // sized by Forward already: no reallocation
  }
  void* stream() override { return engine_.compute_stream(); }
  BackendInfo Info() const override {
    const std::string name = engine_.device_name();
    return {"cuda", numa_node_ < 0 ? name : name + " (host memory on NUMA node " + std::to_string(numa_node_) + ")"};
  }

 private:
  ModelConfig cfg_;
  LayerRange range_;
  int device_;
  int numa_node_;  // -1: not placed
  cuda::CudaEngine engine_;
  const float* out_ = nullptr;
};

}  // namespace

std::unique_ptr<Stage> MakeCudaStage(const ModelConfig& cfg, const HostWeights& weights, CachePools& pools,
                                     LayerRange range, const cuda::CudaOptions& o) {
  if (range.first < 0 || range.last > cfg.num_layers || range.count() <= 0)
    throw std::invalid_argument("cuda stage: layer range outside the model");
  const bool whole = range.first == 0 && range.last == cfg.num_layers;
  if (!whole && pools.total_device_blocks() > 0)
    throw std::invalid_argument("the GPU cache tier is not supported with more than one pipeline stage yet");
  cuda::HostModel m = cuda::ModelView(cfg, weights);
  m.layers = Slice(m.layers, range);
  m.cfg.num_layers = range.count();
  cuda::HostCache c = cuda::CacheView(cfg, pools);
  c.kv_layer_base = Slice(c.kv_layer_base, range);
  c.act_layer_base = Slice(c.act_layer_base, range);
  c.gpu_kv_layer_base = Slice(c.gpu_kv_layer_base, range);
  cuda::EngineOptions eo{o.device, o.gpu_memory_bytes, o.resident_layers};
  eo.embed = range.first == 0;
  eo.head = range.last == cfg.num_layers;
  return std::make_unique<CudaStage>(cfg, std::move(m), std::move(c), range, eo, o.numa_node);
}

std::unique_ptr<Backend> MakeCudaPipeline(const ModelConfig& cfg, const HostWeights& weights, CachePools& pools,
                                          const cuda::CudaOptions& o, int gpus,
                                          const std::vector<numa::StagePlacement>& placement) {
  int visible = 0;
  if (cudaGetDeviceCount(&visible) != cudaSuccess) visible = 0;
  if (o.device + gpus > visible)
    throw std::invalid_argument("gpus " + std::to_string(gpus) + " from device " + std::to_string(o.device) +
                                " needs more CUDA devices than the " + std::to_string(visible) + " visible");
  const std::vector<LayerRange> split = SplitLayers(cfg.num_layers, gpus);
  std::vector<int> devices;
  std::vector<std::unique_ptr<Stage>> stages;
  for (int s = 0; s < gpus; ++s) {
    cuda::CudaOptions so = o;
    so.device = o.device + s;
    if ((size_t)s < placement.size()) so.numa_node = placement[s].node;
    devices.push_back(so.device);
    stages.push_back(MakeCudaStage(cfg, weights, pools, split[s], so));
  }
  auto endpoints = NcclLocalEndpoints(devices);
  cudaSetDevice(o.device);  // building the stages moved the caller's current device
  return std::make_unique<PipelineBackend>(std::move(stages), std::move(endpoints));
}

}  // namespace hs::pipeline
