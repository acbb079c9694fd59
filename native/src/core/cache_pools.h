// Host cache pools of fixed-size blocks: one KV pool and one ACT pool. A block id addresses the
// same slot in every layer. Layout is layer-major, so one layer's blocks of a pool form one
// contiguous region that a GPU backend can stream with few large copies:
//   kv : [layer][block][2 (K then V)][block_tokens][kv_dim]
//   act: [layer][block][block_tokens][hidden]
// ACT holds the post-norm input of the QKV projection (the tensor multiplied by W_K and W_V).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/types.h"

namespace hs {

struct PoolConfig {
  int block_tokens = 16;
  int kv_blocks = 0;
  int act_blocks = 0;
  DType dtype = DType::F32;  // element type of the stored cache (F32 on CPU, F16 for CUDA)
};

class CachePools {
 public:
  // `alloc`/`release` let a backend supply pinned host memory; defaults use the C++ heap.
  using AllocFn = void* (*)(size_t bytes);
  using FreeFn = void (*)(void* ptr);
  CachePools(const ModelConfig& cfg, const PoolConfig& pc, AllocFn alloc = nullptr, FreeFn release = nullptr);
  ~CachePools();
  CachePools(const CachePools&) = delete;
  CachePools& operator=(const CachePools&) = delete;

  const PoolConfig& config() const { return pc_; }
  int block_tokens() const { return pc_.block_tokens; }

  // Allocation: returns -1 when the pool is empty (never throws for exhaustion).
  int32_t Allocate(CacheKind kind);
  // Releases a block; double free or an out-of-range id throws std::logic_error.
  void Release(CacheKind kind, int32_t index);
  int free_blocks(CacheKind kind) const;
  int total_blocks(CacheKind kind) const;

  // Copies one block's cache, every layer, into another block of the same kind (host memory).
  void CopyBlock(CacheKind kind, int32_t src, int32_t dst);

  // Elements of one block in one layer, and bytes of one block across all layers.
  size_t block_elems_per_layer(CacheKind kind) const;
  size_t block_bytes_all_layers(CacheKind kind) const;

  // Base of layer `layer`'s region of a pool, and of one block in it (typed as bytes).
  uint8_t* layer_base(CacheKind kind, int layer) const;
  uint8_t* block_ptr(CacheKind kind, int layer, int32_t index) const;

 private:
  ModelConfig cfg_;
  PoolConfig pc_;
  FreeFn release_;
  uint8_t* kv_ = nullptr;
  uint8_t* act_ = nullptr;
  std::vector<int32_t> free_kv_, free_act_;
  std::vector<uint8_t> used_kv_, used_act_;
};

}  // namespace hs
