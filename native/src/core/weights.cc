#include "core/weights.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "core/half.h"
#include "core/synthetic.h"

namespace hs {

size_t HostTensor::numel() const {
  size_t n = 1;
  for (int64_t d : shape) n *= (size_t)d;
  return n;
}

std::string HostWeights::layer_name(int layer, const char* leaf) {
  return "layers." + std::to_string(layer) + "." + leaf;
}

std::vector<TensorSpec> RequiredTensors(const ModelConfig& c) {
  const int64_t h = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), f = c.ffn_size, v = c.vocab_size;
  const bool opt = c.arch == Arch::OPT;
  std::vector<TensorSpec> out;
  out.push_back({"embed_tokens.weight", {v, h}});
  if (opt) out.push_back({"embed_positions.weight", {(int64_t)c.max_positions + 2, h}});
  out.push_back({"final_norm.weight", {h}});
  if (opt) out.push_back({"final_norm.bias", {h}});
  out.push_back({"lm_head.weight", {v, h}, c.tie_embeddings});
  for (int i = 0; i < c.num_layers; ++i) {
    auto L = [i](const char* leaf) { return HostWeights::layer_name(i, leaf); };
    out.push_back({L("attn_norm.weight"), {h}});
    if (opt) out.push_back({L("attn_norm.bias"), {h}});
    out.push_back({L("q_proj.weight"), {q, h}});
    out.push_back({L("k_proj.weight"), {kv, h}});
    out.push_back({L("v_proj.weight"), {kv, h}});
    out.push_back({L("o_proj.weight"), {h, q}});
    if (opt) {
      out.push_back({L("q_proj.bias"), {q}});
      out.push_back({L("k_proj.bias"), {kv}});
      out.push_back({L("v_proj.bias"), {kv}});
      out.push_back({L("o_proj.bias"), {h}});
    }
    out.push_back({L("ffn_norm.weight"), {h}});
    if (opt) {
      out.push_back({L("ffn_norm.bias"), {h}});
      out.push_back({L("fc1.weight"), {f, h}});
      out.push_back({L("fc1.bias"), {f}});
      out.push_back({L("fc2.weight"), {h, f}});
      out.push_back({L("fc2.bias"), {h}});
    } else {
      out.push_back({L("gate_proj.weight"), {f, h}});
      out.push_back({L("up_proj.weight"), {f, h}});
      out.push_back({L("down_proj.weight"), {h, f}});
    }
  }
  return out;
}

namespace {

bool EndsWith(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

std::string ShapeStr(const std::vector<int64_t>& s) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << ']';
  return os.str();
}

const char* DTypeName(DType t) { return t == DType::F32 ? "F32" : t == DType::F16 ? "F16" : "BF16"; }

void* DefaultAlloc(size_t bytes) { return std::aligned_alloc(64, (bytes + 63) / 64 * 64); }
void DefaultFree(void* p) { std::free(p); }

// Runs fn(begin, end) over [0, n) on up to hardware-concurrency threads when n is large.
template <class Fn>
void ParallelRange(size_t n, Fn fn) {
  const size_t kMinPerThread = 1 << 20;
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  threads = (unsigned)std::min<size_t>(threads, std::max<size_t>(1, n / kMinPerThread));
  if (threads <= 1) return fn(size_t{0}, n);
  std::vector<std::thread> pool;
  const size_t chunk = (n + threads - 1) / threads;
  for (unsigned t = 0; t < threads; ++t) {
    const size_t b = std::min(n, t * chunk), e = std::min(n, b + chunk);
    pool.emplace_back([=] { fn(b, e); });
  }
  for (auto& th : pool) th.join();
}

void FillSynthetic(HostTensor& t, const std::string& name, uint64_t seed) {
  const int64_t rows = t.shape.size() > 1 ? t.shape[0] : 1;
  const int64_t cols = t.shape.back();
  const SyntheticLaw law = SyntheticLawFor(name, rows, cols);
  const uint64_t key = TensorKey(seed, name);
  const size_t n = t.numel();
  const bool f32 = t.dtype == DType::F32;
  ParallelRange(n, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) {
      const float v = law.center + law.scale * UniformAt(key, i);
      if (f32)
        reinterpret_cast<float*>(t.data)[i] = v;
      else
        reinterpret_cast<uint16_t*>(t.data)[i] = f32_to_f16(v);
    }
  });
}

// Reads exactly `len` bytes at `off`; throws on a short read (truncated file) or an I/O error.
void PreadAll(int fd, const std::string& path, uint8_t* dst, size_t len, uint64_t off) {
  while (len > 0) {
    const ssize_t r = ::pread(fd, dst, std::min<size_t>(len, 1u << 30), (off_t)off);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw std::invalid_argument("cannot read " + path + ": " + std::strerror(errno));
    }
    if (r == 0)
      throw std::invalid_argument("file " + path + " is truncated (read past its end at byte " + std::to_string(off) +
                                  ")");
    dst += r;
    len -= (size_t)r;
    off += (uint64_t)r;
  }
}

void ConvertChunk(const uint8_t* src, DType from, uint8_t* dst, DType to, size_t n) {
  if (to == DType::F32) {
    float* d = reinterpret_cast<float*>(dst);
    const uint16_t* s = reinterpret_cast<const uint16_t*>(src);
    if (from == DType::F16)
      for (size_t i = 0; i < n; ++i) d[i] = f16_to_f32(s[i]);
    else
      for (size_t i = 0; i < n; ++i) d[i] = bf16_to_f32(s[i]);
  } else {  // to F16
    uint16_t* d = reinterpret_cast<uint16_t*>(dst);
    if (from == DType::F32) {
      const float* s = reinterpret_cast<const float*>(src);
      for (size_t i = 0; i < n; ++i) d[i] = f32_to_f16(s[i]);
    } else {  // BF16
      const uint16_t* s = reinterpret_cast<const uint16_t*>(src);
      for (size_t i = 0; i < n; ++i) d[i] = f32_to_f16(bf16_to_f32(s[i]));
    }
  }
}

// Reads one tensor straight into its final buffer, converting through a bounded scratch chunk
// when the file dtype differs from the store dtype (never a second full copy).
void ReadTensor(int fd, const TensorRef& ref, HostTensor& t) {
  if (ref.dtype == t.dtype) return PreadAll(fd, ref.path, t.data, t.bytes, ref.offset);
  const size_t n = t.numel(), in_size = dtype_size(ref.dtype), out_size = dtype_size(t.dtype);
  const size_t chunk = 1 << 20;
  std::vector<uint8_t> scratch(std::min(n, chunk) * in_size);
  for (size_t i = 0; i < n; i += chunk) {
    const size_t m = std::min(chunk, n - i);
    PreadAll(fd, ref.path, scratch.data(), m * in_size, ref.offset + i * in_size);
    ConvertChunk(scratch.data(), ref.dtype, t.data + i * out_size, t.dtype, m);
  }
}

struct FdCache {
  std::map<std::string, int> fds;
  ~FdCache() {
    for (auto& [_, fd] : fds) ::close(fd);
  }
  int Open(const std::string& path) {
    auto it = fds.find(path);
    if (it != fds.end()) return it->second;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::invalid_argument("cannot open " + path + ": " + std::strerror(errno));
    fds[path] = fd;
    return fd;
  }
};

// Fills a quantised tensor: its F32 values go through a scratch of one tensor, then Quantize.
void LoadQuantized(HostTensor& t, const std::string& name, const WeightSource& src, const TensorRef* ref,
                   FdCache& files) {
  std::vector<float> scratch(t.numel());
  HostTensor f32 = t;
  f32.dtype = DType::F32;
  f32.format = WeightFormat::Native;
  f32.data = reinterpret_cast<uint8_t*>(scratch.data());
  f32.bytes = scratch.size() * sizeof(float);
  if (src.synthetic)
    FillSynthetic(f32, name, src.seed);
  else
    ReadTensor(files.Open(ref->path), *ref, f32);
  Quantize(scratch.data(), t.shape[0], t.shape[1], t.format, t.data);
}

}  // namespace

// Whether `name` is a tensor this source loads: every non-layer tensor, and layers in its range.
static bool InLayerRange(const std::string& name, const WeightSource& src) {
  if (src.first_layer == 0 && src.last_layer < 0) return true;
  if (name.compare(0, 7, "layers.") != 0) return true;
  const int layer = std::atoi(name.c_str() + 7);
  return layer >= src.first_layer && (src.last_layer < 0 || layer < src.last_layer);
}

bool QuantizedTensor(const std::string& name) {
  static const char* kLeaves[] = {".q_proj.weight",    ".k_proj.weight",  ".v_proj.weight",
                                  ".o_proj.weight",    ".fc1.weight",     ".fc2.weight",
                                  ".gate_proj.weight", ".up_proj.weight", ".down_proj.weight"};
  if (name.compare(0, 7, "layers.") != 0) return false;
  for (const char* leaf : kLeaves)
    if (EndsWith(name, leaf)) return true;
  return false;
}

// Scales keep activations O(1) through pre-norm layers and logits varied: projections feeding
// attention/FFN draw U(±sqrt(3/in)) (unit-variance outputs, so attention is far from uniform),
// projections back into the residual stream U(±1/sqrt(in)), norm weights ~1, biases small.
SyntheticLaw SyntheticLawFor(const std::string& name, int64_t rows, int64_t cols) {
  (void)rows;
  const float in = (float)cols;
  if (EndsWith(name, "norm.weight")) return {1.f, 0.1f};
  if (EndsWith(name, ".bias")) return {0.f, 0.02f};
  if (name == "embed_tokens.weight" || name == "lm_head.weight") return {0.f, 1.5f / std::sqrt(in)};
  if (name == "embed_positions.weight") return {0.f, 0.5f / std::sqrt(in)};
  return {0.f, std::sqrt(3.f / in)};
}

HostWeights::HostWeights(const ModelConfig& cfg, const WeightSource& src, DType dtype, AllocFn alloc, FreeFn release)
    : HostWeights(cfg, src, dtype,
                  NamedAllocFn([alloc = alloc ? alloc : DefaultAlloc](const std::string&, size_t bytes) {
                    return alloc(bytes);
                  }),
                  release) {}

HostWeights::HostWeights(const ModelConfig& cfg, const WeightSource& src, DType dtype, const NamedAllocFn& alloc,
                         FreeFn release)
    : dtype_(dtype), format_(src.format), release_(release ? release : DefaultFree) {
  if (dtype == DType::BF16) throw std::invalid_argument("weights cannot be stored as BF16 (use F32 or F16)");
  std::map<std::string, const TensorRef*> refs;
  if (!src.synthetic) {
    for (const auto& r : src.tensors) {
      if (!refs.emplace(r.name, &r).second) throw std::invalid_argument("tensor '" + r.name + "' is listed twice");
    }
  }
  const auto specs = RequiredTensors(cfg);
  std::map<std::string, bool> known;
  for (const auto& s : specs) known[s.name] = true;
  for (const auto& [name, _] : refs)
    if (!known.count(name))
      throw std::invalid_argument("unexpected tensor '" + name + "' (not used by this architecture)");

  FdCache files;
  try {
    for (const auto& spec : specs) {
      if (!InLayerRange(spec.name, src)) continue;  // another pipeline rank's layer
      const TensorRef* ref = nullptr;
      if (src.synthetic) {
        if (spec.optional) continue;  // e.g. lm_head when tied: the engine uses embed_tokens
      } else {
        auto it = refs.find(spec.name);
        if (it == refs.end()) {
          if (spec.optional) continue;
          throw std::invalid_argument("missing tensor '" + spec.name + "' (expected shape " + ShapeStr(spec.shape) +
                                      ")");
        }
        ref = it->second;
        if (ref->shape != spec.shape)
          throw std::invalid_argument("tensor '" + spec.name + "' has shape " + ShapeStr(ref->shape) + ", expected " +
                                      ShapeStr(spec.shape));
        size_t numel = 1;
        for (int64_t d : spec.shape) numel *= (size_t)d;
        if (ref->byte_length != numel * dtype_size(ref->dtype))
          throw std::invalid_argument("tensor '" + spec.name + "' has " + std::to_string(ref->byte_length) +
                                      " bytes, expected " + std::to_string(numel * dtype_size(ref->dtype)) + " for " +
                                      DTypeName(ref->dtype) + " " + ShapeStr(spec.shape));
      }
      HostTensor t;
      t.shape = spec.shape;
      t.dtype = dtype;
      t.format = src.format != WeightFormat::Native && QuantizedTensor(spec.name) ? src.format : WeightFormat::Native;
      t.bytes = t.quantized() ? QuantizedBytes(t.format, t.shape[0], t.shape[1]) : t.numel() * dtype_size(dtype);
      t.data = static_cast<uint8_t*>(alloc(spec.name, t.bytes));
      if (!t.data)
        throw std::runtime_error("cannot allocate " + std::to_string(t.bytes) + " bytes for '" + spec.name + "'");
      tensors_[spec.name] = t;  // owned from here on: the destructor path frees it on a later throw
      total_bytes_ += t.bytes;
      if (t.quantized())
        LoadQuantized(tensors_[spec.name], spec.name, src, ref, files);
      else if (src.synthetic)
        FillSynthetic(tensors_[spec.name], spec.name, src.seed);
      else
        ReadTensor(files.Open(ref->path), *ref, tensors_[spec.name]);
    }
  } catch (...) {
    for (auto& [_, t] : tensors_) release_(t.data);
    throw;
  }
}

HostWeights::~HostWeights() {
  for (auto& [_, t] : tensors_) release_(t.data);
}

const HostTensor& HostWeights::get(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw std::invalid_argument("weights have no tensor '" + name + "'");
  return it->second;
}

const HostTensor* HostWeights::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

}  // namespace hs
