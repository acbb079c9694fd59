#include "core/cache_pools.h"

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace hs {

namespace {
void* DefaultAlloc(size_t bytes) { return std::malloc(bytes); }
void DefaultFree(void* p) { std::free(p); }
const char* KindName(CacheKind k) { return k == CacheKind::KV ? "KV" : "ACT"; }
}  // namespace

CachePools::CachePools(const ModelConfig& cfg, const PoolConfig& pc, AllocFn alloc, FreeFn release)
    : cfg_(cfg), pc_(pc), release_(release ? release : DefaultFree) {
  if (pc.block_tokens <= 0) throw std::invalid_argument("blockTokens must be positive");
  if (pc.kv_blocks < 0 || pc.act_blocks < 0) throw std::invalid_argument("block counts must be >= 0");
  if (!alloc) alloc = DefaultAlloc;
  const size_t kv_bytes = (size_t)cfg.num_layers * pc.kv_blocks * block_elems_per_layer(CacheKind::KV) * dtype_size(pc.dtype);
  const size_t act_bytes = (size_t)cfg.num_layers * pc.act_blocks * block_elems_per_layer(CacheKind::ACT) * dtype_size(pc.dtype);
  // Zero-sized pools still get a non-null base so that pointer arithmetic stays defined.
  kv_ = static_cast<uint8_t*>(alloc(kv_bytes ? kv_bytes : 64));
  act_ = static_cast<uint8_t*>(alloc(act_bytes ? act_bytes : 64));
  if (!kv_ || !act_) {
    if (kv_) release_(kv_);
    if (act_) release_(act_);
    throw std::runtime_error("cannot allocate cache pools (" + std::to_string(kv_bytes + act_bytes) + " bytes)");
  }
  // Free lists are stacks popped from the back: push in reverse so block 0 is handed out first.
  for (int i = pc.kv_blocks - 1; i >= 0; --i) free_kv_.push_back(i);
  for (int i = pc.act_blocks - 1; i >= 0; --i) free_act_.push_back(i);
  used_kv_.assign(pc.kv_blocks, 0);
  used_act_.assign(pc.act_blocks, 0);
}

CachePools::~CachePools() {
  release_(kv_);
  release_(act_);
}

int32_t CachePools::Allocate(CacheKind kind) {
  auto& fl = kind == CacheKind::KV ? free_kv_ : free_act_;
  auto& used = kind == CacheKind::KV ? used_kv_ : used_act_;
  if (fl.empty()) return -1;
  int32_t id = fl.back();
  fl.pop_back();
  used[id] = 1;
  return id;
}

void CachePools::Release(CacheKind kind, int32_t index) {
  auto& fl = kind == CacheKind::KV ? free_kv_ : free_act_;
  auto& used = kind == CacheKind::KV ? used_kv_ : used_act_;
  if (index < 0 || index >= (int32_t)used.size())
    throw std::logic_error(std::string("release of out-of-range ") + KindName(kind) + " block " + std::to_string(index));
  if (!used[index])
    throw std::logic_error(std::string("double free of ") + KindName(kind) + " block " + std::to_string(index));
  used[index] = 0;
  fl.push_back(index);
}

int CachePools::free_blocks(CacheKind kind) const {
  return (int)(kind == CacheKind::KV ? free_kv_.size() : free_act_.size());
}

int CachePools::total_blocks(CacheKind kind) const { return kind == CacheKind::KV ? pc_.kv_blocks : pc_.act_blocks; }

void CachePools::CopyBlock(CacheKind kind, int32_t src, int32_t dst) {
  const size_t bytes = block_elems_per_layer(kind) * dtype_size(pc_.dtype);
  for (int l = 0; l < cfg_.num_layers; ++l) std::memcpy(block_ptr(kind, l, dst), block_ptr(kind, l, src), bytes);
}

size_t CachePools::block_elems_per_layer(CacheKind kind) const {
  return kind == CacheKind::KV ? (size_t)2 * pc_.block_tokens * cfg_.kv_dim() : (size_t)pc_.block_tokens * cfg_.hidden_size;
}

size_t CachePools::block_bytes_all_layers(CacheKind kind) const {
  return block_elems_per_layer(kind) * dtype_size(pc_.dtype) * cfg_.num_layers;
}

uint8_t* CachePools::layer_base(CacheKind kind, int layer) const {
  const size_t per_layer = (size_t)total_blocks(kind) * block_elems_per_layer(kind) * dtype_size(pc_.dtype);
  return (kind == CacheKind::KV ? kv_ : act_) + per_layer * layer;
}

uint8_t* CachePools::block_ptr(CacheKind kind, int layer, int32_t index) const {
  return layer_base(kind, layer) + (size_t)index * block_elems_per_layer(kind) * dtype_size(pc_.dtype);
}

}  // namespace hs
