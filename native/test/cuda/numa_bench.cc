// Does NUMA placement matter on this host? (issue 15; run by `scripts/gpu-run.sh numa`.)
//  1. Each GPU's NUMA node (sysfs through its PCI bus id) and the host's node count.
//  2. Per GPU, pinned H2D GB/s of a 1 GiB buffer placed on each host node (near = the GPU's node).
//  3. All GPUs copying at once: every buffer near its own GPU vs every buffer on node 0 (what a
//     pipeline gets without placement when the loader runs on socket 0).
//  4. The placement itself on a tiny 2-stage model: PlacedPools/PlacedWeights put each stage's
//     pool range and tensors on the node asked for (the GPUs' nodes, or node 0 on a one-node host)
//     and leave the pools pinned; and a 2-GPU pipeline over placed weights and pools (the addon's
//     path) gives the 1-GPU engine's logits over unplaced ones. Exits non-zero if a check fails.
// One JSON line per measurement on stdout; prose on stderr.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "../test_util.h"
#include "cuda/cuda_backend.h"
#include "pipeline/cuda/cuda_stage.h"
#include "pipeline/cuda/numa_placement.h"
#include "pipeline/numa.h"

using namespace hs;
namespace numa = hs::pipeline::numa;

namespace {

constexpr size_t kBytes = size_t{1} << 30;
constexpr int kReps = 5;

bool Ok(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return true;
  std::fprintf(stderr, "numa_bench: %s: %s\n", what, cudaGetErrorString(e));
  return false;
}

// GB/s of kReps copies of `bytes` from `host` to a device buffer on `device` (after one warm-up).
double H2D(int device, const void* host, size_t bytes) {
  cudaSetDevice(device);
  void* d = nullptr;
  cudaStream_t s;
  cudaEvent_t a, b;
  if (!Ok(cudaMalloc(&d, bytes), "cudaMalloc")) return 0;
  cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  cudaMemcpyAsync(d, host, bytes, cudaMemcpyHostToDevice, s);
  cudaEventRecord(a, s);
  for (int i = 0; i < kReps; ++i) cudaMemcpyAsync(d, host, bytes, cudaMemcpyHostToDevice, s);
  cudaEventRecord(b, s);
  float ms = 0;
  const bool ok = Ok(cudaEventSynchronize(b), "copy") && Ok(cudaEventElapsedTime(&ms, a, b), "timing");
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  cudaStreamDestroy(s);
  cudaFree(d);
  return ok && ms > 0 ? (double)bytes * kReps / (ms * 1e-3) / 1e9 : 0;
}

int FirstPageNode(void* p) {
  std::memset(p, 0, 64);  // already faulted in by the registration; make sure
  return numa::NodeOfPage(p);
}

// 3: every GPU at once, buffer i on host node nodes[i]; returns each GPU's GB/s.
std::vector<double> Concurrent(const std::vector<int>& nodes) {
  const int n = (int)nodes.size();
  std::vector<void*> bufs(n);
  for (int i = 0; i < n; ++i) bufs[i] = cuda::NodePinnedAlloc(kBytes, nodes[i]);
  std::vector<double> gbps(n, 0);
  std::vector<std::thread> th;
  for (int i = 0; i < n; ++i)
    if (bufs[i]) th.emplace_back([&, i] { gbps[i] = H2D(i, bufs[i], kBytes); });
  for (auto& t : th) t.join();
  for (void* b : bufs) cuda::HostMapFree(b);
  return gbps;
}

// The tests' tiny OPT, wider and deeper: 6 layers to split over the stages, hidden 256.
ModelConfig TinyOpt() {
  ModelConfig c = test::TinyOpt();
  c.hidden_size = 256;
  c.num_layers = 6;
  c.head_dim = 64;
  c.ffn_size = 512;
  return c;
}

// Logits of a prefill of 3 sequences then 6 greedy decode steps (ACT every other block).
std::vector<float> Run(const ModelConfig& cfg, Backend& be) {
  constexpr int kBt = 16, kSteps = 6;
  std::vector<std::vector<int32_t>> toks;
  std::vector<std::vector<BlockRef>> tables;
  int next[2] = {0, 0};
  uint32_t seed = 12345;
  for (int n : {5, 19, 40}) {
    std::vector<int32_t> t;
    for (int i = 0; i < n; ++i)
      t.push_back(static_cast<int32_t>(((seed = seed * 1664525u + 1013904223u) >> 8) % cfg.vocab_size));
    toks.push_back(t);
    std::vector<BlockRef> tab;
    for (int b = 0; b * kBt < n + kSteps; ++b) {
      const CacheKind k = b % 2 ? CacheKind::ACT : CacheKind::KV;
      tab.push_back({k, next[b % 2]++});
    }
    tables.push_back(tab);
  }
  std::vector<float> all;
  std::vector<int> cached(toks.size(), 0);
  for (int step = 0; step < kSteps; ++step) {
    BatchPlan plan;
    for (size_t s = 0; s < toks.size(); ++s) {
      SeqPlan sp;
      sp.id = (int64_t)s;
      sp.start_pos = cached[s];
      sp.num_new = (int)toks[s].size() - cached[s];
      sp.tokens = toks[s].data() + cached[s];
      sp.blocks = tables[s].data();
      sp.num_blocks = (int)tables[s].size();
      plan.seqs.push_back(sp);
    }
    std::vector<float> logits(toks.size() * cfg.vocab_size);
    StepCounters c;
    be.Forward(plan, logits.data(), c);
    for (size_t s = 0; s < toks.size(); ++s) {
      cached[s] = (int)toks[s].size();
      const float* l = logits.data() + s * cfg.vocab_size;
      toks[s].push_back((int32_t)(std::max_element(l, l + cfg.vocab_size) - l));
    }
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

// max |logit difference| of the 2-GPU pipeline over placed memory vs 1 GPU over cudaHostAlloc; -1 on error.
double PlacedPipelineDiff(const ModelConfig& cfg, const std::vector<numa::StagePlacement>& placement) {
  try {
    WeightSource src;
    src.seed = 7;
    const PoolConfig pc{16, 64, 64, DType::F16};
    cuda::CudaOptions o;
    o.resident_layers = 0;  // streamed from the placed host memory
    HostWeights w1(cfg, src, DType::F16, cuda::PinnedAlloc, cuda::PinnedFree);
    CachePools p1(cfg, pc, cuda::PinnedAlloc, cuda::PinnedFree, cuda::DeviceAlloc, cuda::DeviceFree);
    std::vector<float> a = Run(cfg, *cuda::MakeCudaBackend(cfg, w1, p1, o));
    auto w2 = pipeline::PlacedWeights(cfg, src, DType::F16, placement);
    auto p2 = pipeline::PlacedPools(cfg, pc, placement);
    auto be = pipeline::MakeCudaPipeline(cfg, *w2, *p2, o, 2, placement);
    std::fprintf(stderr, "  placed pipeline: %s\n", be->Info().device_name.c_str());
    std::vector<float> b = Run(cfg, *be);
    double d = a.size() == b.size() ? 0 : 1e9;
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) d = std::max(d, (double)std::fabs(a[i] - b[i]));
    return d;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "  placed pipeline failed: %s\n", e.what());
    return -1;
  }
}

// 4: the placement on a 2-stage split of a tiny model.
int CheckPlacement(const std::vector<int>& gpu_nodes) {
  const ModelConfig cfg = TinyOpt();
  const auto split = pipeline::SplitLayers(cfg.num_layers, 2);
  std::vector<numa::StagePlacement> placement;
  for (int s = 0; s < 2; ++s)
    placement.push_back({split[s], gpu_nodes.size() > (size_t)s && gpu_nodes[s] >= 0 ? gpu_nodes[s] : 0});
  int bad = 0;
  auto check = [&](bool ok, const std::string& what) {
    if (!ok) ++bad;
    std::fprintf(stderr, "  %s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  };
  WeightSource src;
  src.seed = 7;
  auto w = pipeline::PlacedWeights(cfg, src, DType::F16, placement);
  for (const char* name : {"embed_tokens.weight", "layers.0.fc1.weight", "layers.5.fc1.weight", "final_norm.weight"}) {
    const int s = numa::TensorStage(name, {split[0], split[1]});
    const void* p = w->get(name).data;
    check(numa::PreferredNodeAt(p) == placement[s].node && numa::NodeOfPage(p) == placement[s].node,
          std::string(name) + " on node " + std::to_string(placement[s].node) + " (page on " +
              std::to_string(numa::NodeOfPage(p)) + ")");
  }
  PoolConfig pc{16, 64, 32, DType::F16};
  auto pools = pipeline::PlacedPools(cfg, pc, placement);
  for (CacheKind kind : {CacheKind::KV, CacheKind::ACT})
    for (int s = 0; s < 2; ++s) {
      // A page wholly inside the stage's layers: the middle of its layers' span.
      uint8_t* lo = pools->layer_base(kind, split[s].first);
      uint8_t* hi =
          pools->layer_base(kind, split[s].last - 1) + (pools->layer_base(kind, 1) - pools->layer_base(kind, 0));
      uint8_t* mid = lo + (hi - lo) / 2;
      cudaPointerAttributes attr{};
      const bool pinned = cudaPointerGetAttributes(&attr, mid) == cudaSuccess && attr.type == cudaMemoryTypeHost;
      check(pinned && numa::PreferredNodeAt(mid) == placement[s].node && numa::NodeOfPage(mid) == placement[s].node,
            std::string(kind == CacheKind::KV ? "KV" : "ACT") + " pool, stage " + std::to_string(s) + ": pinned " +
                (pinned ? "yes" : "no") + ", node " + std::to_string(numa::NodeOfPage(mid)));
    }
  if (int gpus = 0; cudaGetDeviceCount(&gpus) == cudaSuccess && gpus >= 2) {
    const double d = PlacedPipelineDiff(cfg, placement);
    check(d >= 0 && d <= 1e-3, "2-GPU pipeline over placed memory vs 1 GPU: max|diff| " + std::to_string(d));
  }
  std::printf("{\"numaPlacementCheck\":%s,\"failed\":%d}\n", bad ? "false" : "true", bad);
  return bad;
}

}  // namespace

int main() {
  int gpus = 0;
  if (!Ok(cudaGetDeviceCount(&gpus), "cudaGetDeviceCount") || gpus < 1) return 1;
  const int host_nodes = numa::CountNumaNodes();
  std::vector<int> gpu_nodes;
  for (int g = 0; g < gpus; ++g) {
    char bus[32] = {};
    cudaDeviceGetPCIBusId(bus, sizeof bus, g);
    gpu_nodes.push_back(cuda::DeviceNumaNode(g));
    std::printf("{\"gpu\":%d,\"pciBusId\":\"%s\",\"numaNode\":%d,\"hostNumaNodes\":%d}\n", g, bus, gpu_nodes[g],
                host_nodes);
  }
  std::fflush(stdout);
  for (int g = 0; g < gpus; ++g)
    for (int h = 0; h < std::max(host_nodes, 1); ++h) {
      void* buf = cuda::NodePinnedAlloc(kBytes, h);
      if (!buf) {
        std::fprintf(stderr, "numa_bench: cannot pin 1 GiB on node %d\n", h);
        continue;
      }
      const int page_node = FirstPageNode(buf);
      const double gbps = H2D(g, buf, kBytes);
      cuda::HostMapFree(buf);
      std::printf("{\"gpu\":%d,\"gpuNode\":%d,\"hostNode\":%d,\"pageNode\":%d,\"near\":%s,\"h2dGBps\":%.2f}\n", g,
                  gpu_nodes[g], h, page_node, h == gpu_nodes[g] ? "true" : "false", gbps);
      std::fflush(stdout);
    }
  if (gpus > 1) {
    std::vector<int> near(gpu_nodes), node0(gpus, 0);
    for (int& n : near) n = n < 0 ? 0 : n;
    const auto a = Concurrent(near), b = Concurrent(node0);
    for (int g = 0; g < gpus; ++g)
      std::printf("{\"concurrent\":true,\"gpu\":%d,\"nearNode\":%d,\"h2dGBpsNear\":%.2f,\"h2dGBpsAllOnNode0\":%.2f}\n",
                  g, near[g], a[g], b[g]);
  }
  std::fprintf(stderr, "numa_bench: placement check (2 stages of a tiny OPT)\n");
  return CheckPlacement(gpu_nodes) ? 1 : 0;
}
