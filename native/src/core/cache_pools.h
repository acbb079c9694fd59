// Cache pools of fixed-size blocks in two tiers: host KV and host ACT pools (pinned host memory,
// streamed to the GPU every step) and a device KV pool (GPU memory, read in place). A block id
// addresses the same slot in every layer of its pool. Layout is layer-major, so one layer's blocks
// of a pool form one contiguous region that a GPU backend can stream with few large copies:
//   kv : [layer][block][2 (K then V)][block_tokens][kv_dim]   (host KV and device KV alike)
//   act: [layer][block][block_tokens][hidden]
// ACT holds the post-norm input of the QKV projection (the tensor multiplied by W_K and W_V).
// The device pool's storage comes from `device_alloc`: cudaMalloc on the CUDA backend, the C++ heap
// by default (the CPU backend's emulated device, so that the tier logic runs and is tested in CI).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/types.h"

namespace hs {

struct PoolConfig {
  int block_tokens = 16;
  int kv_blocks = 0;         // host tier
  int act_blocks = 0;        // host tier
  DType dtype = DType::F32;  // element type of the stored cache (F32 on CPU, F16 for CUDA)
  int gpu_kv_blocks = 0;     // device tier (always KV); last, so that {bt, kv, act, dtype} still reads
  // The decoder layers whose cache this process holds, [first_layer, last_layer) (-1: to the end):
  // a pipeline rank in its own process holds only its stage's (issue 15); layer_base() of another
  // layer is null. Block ids are the same on every rank.
  int first_layer = 0;
  int last_layer = -1;
};

class CachePools {
 public:
  // `alloc`/`release` let a backend supply pinned host memory, `device_alloc`/`device_release` GPU
  // memory for the device tier; null uses the C++ heap.
  using AllocFn = void* (*)(size_t bytes);
  using FreeFn = void (*)(void* ptr);
  CachePools(const ModelConfig& cfg, const PoolConfig& pc, AllocFn alloc = nullptr, FreeFn release = nullptr,
             AllocFn device_alloc = nullptr, FreeFn device_release = nullptr);
  ~CachePools();
  CachePools(const CachePools&) = delete;
  CachePools& operator=(const CachePools&) = delete;

  const PoolConfig& config() const { return pc_; }
  int block_tokens() const { return pc_.block_tokens; }

  // Host-tier allocation: returns -1 when the pool is empty (never throws for exhaustion).
  int32_t Allocate(CacheKind kind);
  // Releases a host block; double free or an out-of-range id throws std::logic_error.
  void Release(CacheKind kind, int32_t index);
  int free_blocks(CacheKind kind) const;
  int total_blocks(CacheKind kind) const;

  // Device-tier (GPU KV) allocation, same contract as the host tier.
  int32_t AllocateDevice();
  void ReleaseDevice(int32_t index);
  int free_device_blocks() const;
  int total_device_blocks() const;

  // A block of either tier goes back to its own tier's free list.
  void Release(const BlockRef& b);

  // Copies one host block's cache, every layer, into another block of the same kind (host memory).
  void CopyBlock(CacheKind kind, int32_t src, int32_t dst);

  // Elements of one block in one layer, and bytes of one block across the layers held (device KV
  // blocks have the KV size).
  size_t block_elems_per_layer(CacheKind kind) const;
  size_t block_bytes_all_layers(CacheKind kind) const;

  // Base of layer `layer`'s region of a pool, and of one block in it (typed as bytes). Device-tier
  // addresses are device pointers on the CUDA backend.
  uint8_t* layer_base(CacheKind kind, int layer) const;
  uint8_t* device_layer_base(int layer) const;
  uint8_t* block_ptr(CacheKind kind, int layer, int32_t index) const;
  uint8_t* block_ptr(const BlockRef& b, int layer) const;

 private:
  // One pool: storage, a free list (a stack popped from the back) and a used flag per block.
  struct Pool {
    uint8_t* base = nullptr;
    int blocks = 0;
    size_t block_bytes = 0;  // per layer
    std::vector<int32_t> free;
    std::vector<uint8_t> used;
  };
  int32_t Take(Pool& p);
  void Give(Pool& p, int32_t index, const char* name);
  uint8_t* Base(const Pool& p, int layer) const { return p.base + p.block_bytes * p.blocks * (layer - first_layer_); }
  bool Holds(int layer) const { return layer >= first_layer_ && layer < first_layer_ + layers_; }

  ModelConfig cfg_;
  PoolConfig pc_;
  FreeFn release_, device_release_;
  int first_layer_ = 0, layers_ = 0;  // the layers held
  Pool kv_, act_, gpu_kv_;
};

}  // namespace hs
