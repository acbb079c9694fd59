#include "core/cache_pools.h"

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace hs {

namespace {
void* DefaultAlloc(size_t bytes) { return std::malloc(bytes); }
void DefaultFree(void* p) { std::free(p); }
}  // namespace

CachePools::CachePools(const ModelConfig& cfg, const PoolConfig& pc, AllocFn alloc, FreeFn release,
                       AllocFn device_alloc, FreeFn device_release)
    : cfg_(cfg),
      pc_(pc),
      release_(release ? release : DefaultFree),
      device_release_(device_release ? device_release : DefaultFree) {
  if (pc.block_tokens <= 0) throw std::invalid_argument("blockTokens must be positive");
  if (pc.kv_blocks < 0 || pc.act_blocks < 0 || pc.gpu_kv_blocks < 0)
    throw std::invalid_argument("block counts must be >= 0");
  first_layer_ = pc.first_layer;
  layers_ = (pc.last_layer < 0 ? cfg.num_layers : pc.last_layer) - pc.first_layer;
  if (first_layer_ < 0 || layers_ <= 0 || first_layer_ + layers_ > cfg.num_layers)
    throw std::invalid_argument("the cache pools' layer range is not inside the model");
  if (!alloc) alloc = DefaultAlloc;
  if (!device_alloc) device_alloc = DefaultAlloc;
  const size_t e = dtype_size(pc.dtype);
  kv_.blocks = pc.kv_blocks;
  act_.blocks = pc.act_blocks;
  gpu_kv_.blocks = pc.gpu_kv_blocks;
  kv_.block_bytes = gpu_kv_.block_bytes = block_elems_per_layer(CacheKind::KV) * e;
  act_.block_bytes = block_elems_per_layer(CacheKind::ACT) * e;
  auto bytes = [&](const Pool& p) { return (size_t)layers_ * p.blocks * p.block_bytes; };
  // Zero-sized pools still get a non-null base so that pointer arithmetic stays defined.
  kv_.base = static_cast<uint8_t*>(alloc(bytes(kv_) ? bytes(kv_) : 64));
  act_.base = static_cast<uint8_t*>(alloc(bytes(act_) ? bytes(act_) : 64));
  gpu_kv_.base = static_cast<uint8_t*>(device_alloc(bytes(gpu_kv_) ? bytes(gpu_kv_) : 64));
  if (!kv_.base || !act_.base || !gpu_kv_.base) {
    if (kv_.base) release_(kv_.base);
    if (act_.base) release_(act_.base);
    if (gpu_kv_.base) device_release_(gpu_kv_.base);
    throw std::runtime_error("cannot allocate cache pools (host " + std::to_string(bytes(kv_) + bytes(act_)) +
                             " bytes, device " + std::to_string(bytes(gpu_kv_)) + " bytes)");
  }
  for (Pool* p : {&kv_, &act_, &gpu_kv_}) {
    // Push in reverse so that block 0 is handed out first.
    for (int i = p->blocks - 1; i >= 0; --i) p->free.push_back(i);
    p->used.assign(p->blocks, 0);
  }
}

CachePools::~CachePools() {
  release_(kv_.base);
  release_(act_.base);
  device_release_(gpu_kv_.base);
}

int32_t CachePools::Take(Pool& p) {
  if (p.free.empty()) return -1;
  const int32_t id = p.free.back();
  p.free.pop_back();
  p.used[id] = 1;
  return id;
}

void CachePools::Give(Pool& p, int32_t index, const char* name) {
  if (index < 0 || index >= (int32_t)p.used.size())
    throw std::logic_error(std::string("release of out-of-range ") + name + " block " + std::to_string(index));
  if (!p.used[index]) throw std::logic_error(std::string("double free of ") + name + " block " + std::to_string(index));
  p.used[index] = 0;
  p.free.push_back(index);
}

int32_t CachePools::Allocate(CacheKind kind) { return Take(kind == CacheKind::KV ? kv_ : act_); }

void CachePools::Release(CacheKind kind, int32_t index) {
  Give(kind == CacheKind::KV ? kv_ : act_, index, kind == CacheKind::KV ? "KV" : "ACT");
}

int CachePools::free_blocks(CacheKind kind) const { return (int)(kind == CacheKind::KV ? kv_ : act_).free.size(); }
int CachePools::total_blocks(CacheKind kind) const { return (kind == CacheKind::KV ? kv_ : act_).blocks; }

int32_t CachePools::AllocateDevice() { return Take(gpu_kv_); }
void CachePools::ReleaseDevice(int32_t index) { Give(gpu_kv_, index, "GPU KV"); }
int CachePools::free_device_blocks() const { return (int)gpu_kv_.free.size(); }
int CachePools::total_device_blocks() const { return gpu_kv_.blocks; }

void CachePools::Release(const BlockRef& b) {
  if (b.tier == Tier::Device) {
    if (b.kind != CacheKind::KV) throw std::logic_error("a device-tier block must be KV");
    ReleaseDevice(b.index);
  } else {
    Release(b.kind, b.index);
  }
}

void CachePools::CopyBlock(CacheKind kind, int32_t src, int32_t dst) {
  const size_t bytes = block_elems_per_layer(kind) * dtype_size(pc_.dtype);
  for (int l = first_layer_; l < first_layer_ + layers_; ++l)
    std::memcpy(block_ptr(kind, l, dst), block_ptr(kind, l, src), bytes);
}

size_t CachePools::block_elems_per_layer(CacheKind kind) const {
  return kind == CacheKind::KV ? (size_t)2 * pc_.block_tokens * cfg_.kv_dim()
                               : (size_t)pc_.block_tokens * cfg_.hidden_size;
}

size_t CachePools::block_bytes_all_layers(CacheKind kind) const {
  return block_elems_per_layer(kind) * dtype_size(pc_.dtype) * layers_;
}

uint8_t* CachePools::layer_base(CacheKind kind, int layer) const {
  return Holds(layer) ? Base(kind == CacheKind::KV ? kv_ : act_, layer) : nullptr;
}
uint8_t* CachePools::device_layer_base(int layer) const { return Holds(layer) ? Base(gpu_kv_, layer) : nullptr; }

uint8_t* CachePools::block_ptr(CacheKind kind, int layer, int32_t index) const {
  const Pool& p = kind == CacheKind::KV ? kv_ : act_;
  return Base(p, layer) + (size_t)index * p.block_bytes;
}

uint8_t* CachePools::block_ptr(const BlockRef& b, int layer) const {
  if (b.tier == Tier::Host) return block_ptr(b.kind, layer, b.index);
  return Base(gpu_kv_, layer) + (size_t)b.index * gpu_kv_.block_bytes;
}

}  // namespace hs
