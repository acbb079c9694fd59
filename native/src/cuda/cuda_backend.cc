// The Backend adapter: maps HostWeights/CachePools (canonical names, core/weights.cc) onto the CUDA
// engine's plain views, plus pinned allocation and device discovery for the addon's factory.
#include "cuda/cuda_backend.h"

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "core/cache_pools.h"
#include "core/weights.h"
#include "cuda/engine.h"
#include "cuda/host_model.h"
#include "pipeline/numa.h"

namespace hs::cuda {

HostModel ModelView(const ModelConfig& cfg, const HostWeights& w) {
  if (w.dtype() != DType::F16) throw std::invalid_argument("cuda backend: weights must be stored as F16");
  auto opt = [&](const std::string& n) -> const half_bits* {
    const HostTensor* t = w.find(n);
    return t ? t->f16() : nullptr;
  };
  auto req = [&](const std::string& n) -> const half_bits* { return w.get(n).f16(); };
  // A GEMM weight: fp16 into `f16`, or (issue 14) the quantised buffer's view into `qv`.
  auto mat = [&](const std::string& n, const half_bits*& f16, HostQuant& qv) {
    const HostTensor& t = w.get(n);
    if (t.quantized())
      qv = HostQuant{t.quant(), t.bytes};
    else
      f16 = t.f16();
  };
  const bool is_opt = cfg.arch == Arch::OPT;
  HostModel m;
  m.cfg = cfg;
  m.embed = req("embed_tokens.weight");
  if (is_opt) {
    const HostTensor& pos = w.get("embed_positions.weight");
    m.pos_embed = pos.f16();
    m.pos_rows = static_cast<int>(pos.shape.at(0));
    m.pos_offset = m.pos_rows == cfg.max_positions + 2 ? 2 : 0;  // OPT's learned positions start at row 2
  }
  m.final_norm_w = req("final_norm.weight");
  m.final_norm_b = opt("final_norm.bias");
  m.lm_head = opt("lm_head.weight");
  if (!m.lm_head) m.lm_head = m.embed;
  for (int i = 0; i < cfg.num_layers; ++i) {
    if (!w.find(HostWeights::layer_name(i, "attn_norm.weight"))) {  // another pipeline rank's layer
      m.layers.emplace_back();
      continue;
    }
    auto L = [i](const char* leaf) { return HostWeights::layer_name(i, leaf); };
    HostLayer l;
    l.attn_norm_w = req(L("attn_norm.weight"));
    mat(L("q_proj.weight"), l.wq, l.qq);
    mat(L("k_proj.weight"), l.wk, l.qk);
    mat(L("v_proj.weight"), l.wv, l.qv);
    mat(L("o_proj.weight"), l.wo, l.qo);
    l.ffn_norm_w = req(L("ffn_norm.weight"));
    if (is_opt) {
      l.attn_norm_b = req(L("attn_norm.bias"));
      l.bq = req(L("q_proj.bias"));
      l.bk = req(L("k_proj.bias"));
      l.bv = req(L("v_proj.bias"));
      l.bo = req(L("o_proj.bias"));
      l.ffn_norm_b = req(L("ffn_norm.bias"));
      mat(L("fc1.weight"), l.w1, l.q1);
      l.b1 = req(L("fc1.bias"));
      mat(L("fc2.weight"), l.w2, l.q2);
      l.b2 = req(L("fc2.bias"));
    } else {
      mat(L("gate_proj.weight"), l.w1, l.q1);
      mat(L("up_proj.weight"), l.w3, l.q3);
      mat(L("down_proj.weight"), l.w2, l.q2);
    }
    m.layers.push_back(l);
  }
  return m;
}

HostCache CacheView(const ModelConfig& cfg, CachePools& p) {
  if (p.config().dtype != DType::F16) throw std::invalid_argument("cuda backend: cache pools must be F16");
  HostCache c;
  c.block_tokens = p.block_tokens();
  c.kv_blocks = p.total_blocks(CacheKind::KV);
  c.act_blocks = p.total_blocks(CacheKind::ACT);
  c.gpu_kv_blocks = p.total_device_blocks();
  c.gpu_kv_bytes =
      static_cast<int64_t>(c.gpu_kv_blocks) * static_cast<int64_t>(p.block_bytes_all_layers(CacheKind::KV));
  for (int l = 0; l < cfg.num_layers; ++l) {
    c.kv_layer_base.push_back(p.layer_base(CacheKind::KV, l));
    c.act_layer_base.push_back(p.layer_base(CacheKind::ACT, l));
    c.gpu_kv_layer_base.push_back(p.device_layer_base(l));
  }
  return c;
}

namespace {

class CudaBackend : public Backend {
 public:
  CudaBackend(const ModelConfig& cfg, const HostWeights& w, CachePools& pools, const CudaOptions& o)
      : engine_(ModelView(cfg, w), CacheView(cfg, pools),
                EngineOptions{o.device, o.gpu_memory_bytes, o.resident_layers}) {}
  void Forward(const BatchPlan& plan, float* logits, StepCounters& counters) override {
    engine_.Forward(plan, logits, counters);
  }
  void ForwardGreedy(const BatchPlan& plan, int, int32_t* tokens, std::vector<float>&,
                     StepCounters& counters) override {
    engine_.ForwardGreedy(plan, tokens, counters);
  }
  BackendInfo Info() const override { return BackendInfo{"cuda", engine_.device_name()}; }

 private:
  CudaEngine engine_;
};

}  // namespace

void* PinnedAlloc(size_t bytes) {
  void* p = nullptr;
  if (cudaHostAlloc(&p, bytes ? bytes : 64, cudaHostAllocPortable | cudaHostAllocMapped) != cudaSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  return p;
}

void PinnedFree(void* ptr) {
  if (ptr) cudaFreeHost(ptr);
}

int DeviceNumaNode(int device) {
  char bus_id[32] = {};
  if (cudaDeviceGetPCIBusId(bus_id, sizeof bus_id, device) != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  return pipeline::numa::ReadNumaNode(pipeline::numa::PciNumaNodePath(bus_id));
}

void* HostMapAlloc(size_t bytes) { return pipeline::numa::MapUntouched(bytes); }

bool PinHostMap(void* ptr) {
  if (cudaHostRegister(ptr, pipeline::numa::MappedBytes(ptr), cudaHostRegisterPortable | cudaHostRegisterMapped) ==
      cudaSuccess)
    return true;
  cudaGetLastError();
  return false;
}

void* NodePinnedAlloc(size_t bytes, int node) {
  void* p = HostMapAlloc(bytes);
  if (!p) return nullptr;
  if (node >= 0) pipeline::numa::PreferNodeOrWarn(p, pipeline::numa::MappedBytes(p), node);
  if (PinHostMap(p)) return p;
  pipeline::numa::Unmap(p);
  return nullptr;
}

void HostMapFree(void* ptr) {
  if (!ptr) return;
  if (cudaHostUnregister(ptr) != cudaSuccess) cudaGetLastError();  // never pinned (a failed placement)
  pipeline::numa::Unmap(ptr);
}

void* DeviceAlloc(size_t bytes) {
  void* p = nullptr;
  if (cudaMalloc(&p, bytes ? bytes : 64) != cudaSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  return p;
}

void DeviceFree(void* ptr) {
  if (ptr) cudaFree(ptr);
}

int DeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // no driver or no device: clear the sticky error, report none
    return 0;
  }
  return n;
}

bool DeviceAvailable() { return DeviceCount() > 0; }

std::unique_ptr<Backend> MakeCudaBackend(const ModelConfig& cfg, const HostWeights& weights, CachePools& pools,
                                         const CudaOptions& opts) {
  return std::make_unique<CudaBackend>(cfg, weights, pools, opts);
}

}  // namespace hs::cuda
