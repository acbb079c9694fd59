// Model weights in host memory, by canonical name (see native/README.md for the names and shapes).
// Filled either from a deterministic synthetic generator or from safetensors files whose byte
// ranges were validated in TypeScript; each tensor is read and converted once, straight into its
// final buffer (no second copy of the model in RAM).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/quant.h"
#include "core/types.h"

namespace hs {

struct TensorRef {  // a tensor in a safetensors file
  std::string name;
  std::string path;
  uint64_t offset = 0;
  uint64_t byte_length = 0;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
};

struct WeightSource {
  bool synthetic = true;
  uint64_t seed = 0;
  std::vector<TensorRef> tensors;  // when !synthetic
  // Storage of the decoder layers' projection matrices (QuantizedTensor names them); every other
  // tensor (embeddings, positions, norms, biases, lm_head) keeps the store dtype.
  WeightFormat format = WeightFormat::Native;
  // The decoder layers to load, [first_layer, last_layer) (-1: to the end): a pipeline rank in its
  // own process loads only its stage's (issue 15). Embeddings, norms and the head always load.
  int first_layer = 0;
  int last_layer = -1;
};

// True for the tensors a quantised format applies to: the GEMM weights of a decoder layer.
bool QuantizedTensor(const std::string& name);

struct HostTensor {
  std::vector<int64_t> shape;
  DType dtype = DType::F32;
  uint8_t* data = nullptr;  // owned by HostWeights
  size_t bytes = 0;
  // Not Native: `data` holds the quantised layout of core/quant.h (codes, scales, zeros), and
  // f32()/f16() must not be used; quant() views it.
  WeightFormat format = WeightFormat::Native;
  size_t numel() const;
  bool quantized() const { return format != WeightFormat::Native; }
  QuantView quant() const { return ViewQuantized(format, shape[0], shape[1], data); }
  const float* f32() const { return reinterpret_cast<const float*>(data); }
  const uint16_t* f16() const { return reinterpret_cast<const uint16_t*>(data); }
};

class HostWeights {
 public:
  using AllocFn = void* (*)(size_t bytes);
  using FreeFn = void (*)(void* ptr);
  // Loads every tensor the config needs, stored as `dtype` (F32 for CPU, F16 for CUDA), the layer
  // GEMM weights in src.format (quantised once, from F32 values, through a one-tensor scratch).
  // Throws std::invalid_argument with a readable message for missing/mis-shaped tensors.
  HostWeights(const ModelConfig& cfg, const WeightSource& src, DType dtype, AllocFn alloc = nullptr,
              FreeFn release = nullptr);
  // The same with storage that depends on the tensor: `alloc` gets its canonical name (a pipeline
  // pins each tensor near its stage's GPU, pipeline/cuda/numa_placement.h); null is a failure.
  using NamedAllocFn = std::function<void*(const std::string& name, size_t bytes)>;
  HostWeights(const ModelConfig& cfg, const WeightSource& src, DType dtype, const NamedAllocFn& alloc, FreeFn release);
  ~HostWeights();
  HostWeights(const HostWeights&) = delete;
  HostWeights& operator=(const HostWeights&) = delete;

  const HostTensor& get(const std::string& name) const;        // throws if absent
  const HostTensor* find(const std::string& name) const;       // nullptr if absent
  static std::string layer_name(int layer, const char* leaf);  // "layers.<i>.<leaf>"
  size_t total_bytes() const { return total_bytes_; }
  DType dtype() const { return dtype_; }
  WeightFormat format() const { return format_; }

 private:
  DType dtype_;
  WeightFormat format_;
  FreeFn release_;
  size_t total_bytes_ = 0;
  std::map<std::string, HostTensor> tensors_;
};

// The canonical tensor list for a config: name and shape of every tensor the engine needs.
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  bool optional = false;  // e.g. lm_head.weight when embeddings are tied
};
std::vector<TensorSpec> RequiredTensors(const ModelConfig& cfg);

}  // namespace hs
