// Factory of the CUDA backend (compiled only when HS_WITH_CUDA). The engine core calls these
// through native/src/addon/backend_factory.cc; nothing else includes CUDA headers.
#pragma once
#include <cstdint>
#include <memory>

#include "core/backend.h"
#include "cuda/host_model.h"

namespace hs::cuda {

struct CudaOptions {
  int device = 0;
  int64_t gpu_memory_bytes = 0;  // 0: use free memory minus a margin
  int resident_layers = -1;      // -1: as many as fit in the budget after buffers
  int numa_node = -1;            // the stage's host memory was bound to this NUMA node (Info says so)
};

// Pinned host allocation for weights and cache pools (cudaHostAlloc / cudaFreeHost).
void* PinnedAlloc(size_t bytes);
void PinnedFree(void* ptr);
// NUMA placement (issue 15; pipeline/numa.h). The node of a GPU's PCIe root (sysfs through its PCI
// bus id), -1 when the host says nothing.
int DeviceNumaNode(int device);
// Pinned host memory whose pages prefer `node` (-1: anywhere): an untouched mapping, bound, then
// registered (Portable|Mapped), so that its pages are faulted in on the node. Free with HostMapFree.
void* NodePinnedAlloc(size_t bytes, int node);
// Unpinned, untouched host memory: a placement binds parts of it to nodes, then pins it (PinHostMap).
void* HostMapAlloc(size_t bytes);
// Registers a whole HostMapAlloc mapping (Portable|Mapped); false when CUDA refuses.
bool PinHostMap(void* ptr);
// Frees NodePinnedAlloc / HostMapAlloc memory, pinned or not.
void HostMapFree(void* ptr);
// Device allocation for the GPU cache tier (cudaMalloc / cudaFree); null on failure.
void* DeviceAlloc(size_t bytes);
void DeviceFree(void* ptr);
bool DeviceAvailable();
// GPUs this process sees (CUDA_VISIBLE_DEVICES applies); 0 when there is no driver or device.
int DeviceCount();

// The engine's plain views of the weights (F16) and pools (F16), every layer; a pipeline stage
// takes its layers' slice (pipeline/cuda/cuda_stage.cc).
HostModel ModelView(const ModelConfig& cfg, const HostWeights& weights);
HostCache CacheView(const ModelConfig& cfg, CachePools& pools);

std::unique_ptr<Backend> MakeCudaBackend(const ModelConfig& cfg, const HostWeights& weights, CachePools& pools,
                                         const CudaOptions& opts);

struct CudaProbe {
  double gemm_flops = 0;
  double h2d_bytes_per_second = 0;
  double d2h_bytes_per_second = 0;
};
CudaProbe ProbeDevice(int device);

}  // namespace hs::cuda
