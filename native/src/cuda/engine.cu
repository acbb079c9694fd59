#include "cuda/engine.h"

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/half.h"
#include "cuda/argmax_rows.cuh"
#include "cuda/batch_layout.h"
#include "cuda/causal_softmax.cuh"
#include "cuda/cuda_check.h"
#include "cuda/dequant_fp8.cuh"
#include "cuda/dequant_int4.cuh"
#include "cuda/dequant_int8.cuh"
#include "cuda/embed.cuh"
#include "cuda/gather_pages.cuh"
#include "cuda/gather_rows.cuh"
#include "cuda/gemm.h"
#include "cuda/norm.cuh"
#include "cuda/paged_attention.cuh"
#include "cuda/prefill_attention.cuh"
#include "cuda/qkv_post.cuh"
#include "cuda/recompute_post.cuh"
#include "cuda/row_copy.cuh"
#include "cuda/silu_mul.cuh"

namespace hs::cuda {
namespace {

constexpr int kFfnChunkRows = 8192;  // bounds the FFN scratch for large prefills
constexpr size_t kAlignElems = 128;  // 256-byte alignment of tensors inside a layer slot
constexpr int64_t kGiB = int64_t{1} << 30;
// Pipeline depth: three weight slots and three cache buffer sets, so that loading layer l+1 waits
// only for layer l-2's compute and loading item i+1 only for item i-2's compute and store; with
// two, a late compute of the previous layer left PCIe idle (measured: ~10% of a step).
constexpr int kSlots = 3;
constexpr int kSets = 3;

size_t AlignUp(size_t x) { return (x + kAlignElems - 1) / kAlignElems * kAlignElems; }

// Where each tensor of a layer sits in a device layer slot (element offsets). Q, K and V weights
// are adjacent so that the new tokens' QKV is one GEMM and the recompute's [W_K; W_V] another;
// Llama's gate and up projections are adjacent for the same reason.
struct SlotLayout {
  size_t norm1_w, norm1_b, wqkv, bqkv, wo, bo, norm2_w, norm2_b, w1, b1, w2, b2, total;
};

SlotLayout MakeSlotLayout(const ModelConfig& c) {
  const size_t h = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), f = c.ffn_size;
  const bool llama = c.arch == Arch::LLAMA;
  SlotLayout s{};
  size_t o = 0;
  auto take = [&](size_t n) {
    const size_t r = o;
    o = AlignUp(o + n);
    return r;
  };
  s.norm1_w = take(h);
  s.norm1_b = take(h);
  s.wqkv = take((q + 2 * kv) * h);
  s.bqkv = take(q + 2 * kv);
  s.wo = take(h * q);
  s.bo = take(h);
  s.norm2_w = take(h);
  s.norm2_b = take(h);
  s.w1 = take((llama ? 2 : 1) * f * h);
  s.b1 = take(f);
  s.w2 = take(h * f);
  s.b2 = take(h);
  s.total = o;
  return s;
}

// One tensor of a layer. fp16 tensors are copied as they are; a quantised GEMM weight (issue 14)
// travels as its quantised buffer (`bytes` of core/quant.h's layout) into the layer's raw area at
// byte `raw` (a stream slot's staging area, or a resident layer's device copy) and is then
// dequantised into the fp16 slot at `dst`, so the GEMMs read the same slot layout either way.
struct Copy {
  size_t dst;  // element offset in the slot
  const void* src;
  size_t bytes;  // host bytes: elems * 2 for fp16, QuantizedBytes for a quantised weight
  size_t raw;    // byte offset in the layer's raw area (256-byte aligned: the scales are floats)
  WeightFormat format;
  int64_t rows, cols;  // quantised weights only
  bool quantized() const { return format != WeightFormat::Native; }
};

struct LayerCopyList {
  std::vector<Copy> v;
  size_t raw_bytes = 0;  // size of the raw area that holds every tensor of the layer
  bool quantized = false;
};

LayerCopyList LayerCopies(const ModelConfig& c, const SlotLayout& s, const HostLayer& w) {
  const size_t h = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), f = c.ffn_size;
  LayerCopyList out;
  auto put = [&](Copy cp) {
    cp.raw = out.raw_bytes;
    out.raw_bytes = (out.raw_bytes + cp.bytes + 255) / 256 * 256;
    out.quantized = out.quantized || cp.quantized();
    out.v.push_back(cp);
  };
  auto add = [&](size_t dst, const half_bits* src, size_t n) {
    if (src) put({dst, src, n * 2, 0, WeightFormat::Native, 0, 0});
  };
  // A GEMM weight [rows, cols]: fp16, or quantised when the adapter handed its buffer.
  auto mat = [&](size_t dst, const half_bits* src, const HostQuant& hq, size_t rows, size_t cols) {
    if (hq.empty()) return add(dst, src, rows * cols);
    if (hq.q.rows != static_cast<int64_t>(rows) || hq.q.cols != static_cast<int64_t>(cols) ||
        hq.bytes != QuantizedBytes(hq.q.format, hq.q.rows, hq.q.cols))
      throw std::invalid_argument("cuda backend: a quantised weight's shape does not match the model config");
    put({dst, hq.q.codes, hq.bytes, 0, hq.q.format, hq.q.rows, hq.q.cols});
  };
  add(s.norm1_w, w.attn_norm_w, h);
  add(s.norm1_b, w.attn_norm_b, h);
  mat(s.wqkv, w.wq, w.qq, q, h);
  mat(s.wqkv + q * h, w.wk, w.qk, kv, h);
  mat(s.wqkv + (q + kv) * h, w.wv, w.qv, kv, h);
  add(s.bqkv, w.bq, q);
  add(s.bqkv + q, w.bk, kv);
  add(s.bqkv + q + kv, w.bv, kv);
  mat(s.wo, w.wo, w.qo, h, q);
  add(s.bo, w.bo, h);
  add(s.norm2_w, w.ffn_norm_w, h);
  add(s.norm2_b, w.ffn_norm_b, h);
  mat(s.w1, w.w1, w.q1, f, h);
  mat(s.w1 + f * h, w.w3, w.q3, f, h);
  add(s.b1, w.b1, f);
  mat(s.w2, w.w2, w.q2, h, f);
  add(s.b2, w.b2, h);
  return out;
}

// Dequantises one weight from its raw buffer (device) into the fp16 slot.
void LaunchDequant(const Copy& cp, const uint8_t* raw, __half* slot, cudaStream_t st) {
  const uint8_t* b = raw + cp.raw;
  const auto* scales = reinterpret_cast<const float*>(b + ScalesOffset(cp.format, cp.rows, cp.cols));
  __half* out = slot + cp.dst;
  switch (cp.format) {
    case WeightFormat::FP8:
      LaunchDequantFp8(b, scales, cp.rows, cp.cols, out, st);
      break;
    case WeightFormat::INT8:
      LaunchDequantInt8(reinterpret_cast<const int8_t*>(b), scales, cp.rows, cp.cols, out, st);
      break;
    case WeightFormat::INT4:
      LaunchDequantInt4(b, scales, b + ZerosOffset(cp.format, cp.rows, cp.cols), cp.rows, cp.cols, out, st);
      break;
    case WeightFormat::Native:
      break;
  }
}

enum Phase { kTransfer = 0, kCompute = 1, kRecompute = 2 };

struct Interval {
  cudaEvent_t a, b;
  Phase phase;
};

// Length of the union of [a, b) intervals.
double UnionLength(std::vector<std::pair<double, double>> v) {
  std::sort(v.begin(), v.end());
  double total = 0, cur_a = 0, cur_b = -1;
  for (auto [a, b] : v) {
    if (b <= a) continue;
    if (a > cur_b) {
      if (cur_b > cur_a) total += cur_b - cur_a;
      cur_a = a;
      cur_b = b;
    } else {
      cur_b = std::max(cur_b, b);
    }
  }
  if (cur_b > cur_a) total += cur_b - cur_a;
  return total;
}

struct Buf {
  void* p = nullptr;
  size_t bytes = 0;
  template <class T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

// A pinned host buffer kept across steps (grown, never shrunk): a step's results come back at link
// rate, and no step pays for a fresh allocation and its page faults (25 MB of OPT-13B logits at batch
// 128).
template <class T>
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  ~PinnedBuffer() {
    if (p_) cudaFreeHost(p_);
  }
  // n elements from device memory, after the stream's earlier work; waits for them.
  const T* CopyFromDevice(const void* device, size_t n, cudaStream_t stream) {
    if (n_ < n) {
      if (p_) HS_CUDA_CHECK(cudaFreeHost(p_));
      p_ = nullptr;
      n_ = 0;
      HS_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&p_), n * sizeof(T)));
      n_ = n;
    }
    HS_CUDA_CHECK(cudaMemcpyAsync(p_, device, n * sizeof(T), cudaMemcpyDeviceToHost, stream));
    HS_CUDA_CHECK(cudaStreamSynchronize(stream));
    return p_;
  }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

// Device-side metadata of one mini-batch (pointers into the step's metadata buffers).
struct MbDev {
  int *tokens, *pos, *page, *slot, *row_seq, *seq_pt_off, *page_table, *act_page, *act_pos0, *act_valid, *last_row;
  int64_t *kv_src, *kv_dst, *act_src, *act_dst;
  int row_base;
  int seq_base;  // the mini-batch's first sequence among the step's (its rows of last_h, logits)
  // The prompt sequences (rows past paged_rows), for the fused prefill attention.
  int *pf_row0, *pf_new, *pf_start, *pf_pt_off;
  int pf_count, pf_max_new;
};

}  // namespace

struct CudaEngine::Impl {
  HostModel m;
  HostCache c;
  EngineOptions opt;
  ModelConfig cfg;
  SlotLayout sl;
  bool llama, has_bias;
  int L, h, q, kv, hd, ffn, bt;
  float scale;
  // Prompt attention runs as one fused launch (prefill_attention.cu) for the head dims it is built for
  // (64, 128: every real preset); else GemmPrefillAttention and its score buffers.
  bool fused_prefill = false;
  // GEMMs with their bias (and ReLU) in the epilogue (cuBLASLt). The biases that land on the fp32
  // residual stream are fp32 (cuBLASLt documents the bias in the output's type), and both ride in
  // the out-projection's epilogue: bias_res32 = out-proj bias + FFN-down bias. FFN down then runs as
  // a plain cuBLAS GEMM accumulating into the residual, with no bias pass of its own (cuBLASLt's
  // choice for that shape ran 11-18% slower on the H200: docs/performance.md, seventh session), and
  // the norm between them subtracts bias_down32 (norm.cuh's shift), so that it sees the residual
  // without the bias FFN down has not added yet. Null where a layer has no bias.
  std::unique_ptr<LtGemm> lt;
  std::vector<const float*> bias_res32, bias_down32;

  // s_dq dequantises quantised weights (issue 14) after s_w copied them, so that the next layer's
  // copy need not wait for the previous layer's dequantisation.
  cudaStream_t s_w = nullptr, s_c = nullptr, s_st = nullptr, s_x = nullptr, s_dq = nullptr;
  cublasHandle_t blas = nullptr;
  int64_t budget = 0, held = 0;
  int resident = 0;
  // Quantised weights: every layer computes from a stream slot, resident ones dequantised there from
  // their quantised device copy; staged0 is the first layer that goes through the slots.
  bool quant = false;
  int staged0 = 0;
  std::string name;

  __half *embed_d = nullptr, *pos_d = nullptr, *fnorm_w = nullptr, *fnorm_b = nullptr, *lm_head_d = nullptr;
  std::vector<__half*> resident_slot;
  __half* stream_slot[kSlots] = {};
  std::vector<LayerCopyList> copies;
  std::vector<int64_t> layer_bytes;    // host bytes of a layer (quantised bytes for quantised weights)
  std::vector<uint8_t*> resident_raw;  // quantised resident layers' raw areas
  uint8_t* stage_raw[kSlots] = {};     // per slot: the streamed layer's quantised buffers
  size_t max_raw = 0;
  std::vector<void*> device_allocs;
  std::vector<void*> registered;

  cudaEvent_t ev_w_ready[kSlots], ev_slot_free[kSlots], ev_raw[kSlots], ev_load[kSets], ev_comp[kSets], ev_store[kSets],
      ev_start, ev_end, ev_join[4];
  bool first_prefetched = false;
  std::vector<cudaEvent_t> tev;
  size_t tev_used = 0;
  std::vector<Interval> ivs;

  Buf h_all, pages[kSets], act_stage[kSets], xset[kSets], qkv, attn, x2, rkv, ffn_buf, scores, probs, kg, vg, last_h,
      last_x, logits_d, tokens_d, meta_i, meta_l;
  PinnedBuffer<float> logits_h;  // a step's logits rows
  PinnedBuffer<int> tokens_h;    // a greedy step's tokens (one int per sequence)

  // ---- memory ------------------------------------------------------------------------------------
  void* Alloc(size_t bytes) {
    if (held + static_cast<int64_t>(bytes) > budget)
      throw std::runtime_error("cuda backend: GPU memory budget exceeded (need " +
                               std::to_string((held + bytes) >> 20) + " MiB, budget " + std::to_string(budget >> 20) +
                               " MiB); lower the batch or raise --gpu-memory");
    void* p = nullptr;
    HS_CUDA_CHECK(cudaMalloc(&p, bytes));
    held += bytes;
    return p;
  }
  void Ensure(Buf& b, size_t bytes) {
    if (bytes == 0 || b.bytes >= bytes) return;
    if (b.p) {
      HS_CUDA_CHECK(cudaFree(b.p));
      held -= b.bytes;
      b = Buf{};
    }
    b.p = Alloc(bytes);
    b.bytes = bytes;
  }
  __half* Upload(const half_bits* src, size_t elems) {
    auto* d = static_cast<__half*>(Alloc(elems * 2));
    device_allocs.push_back(d);
    HS_CUDA_CHECK(cudaMemcpy(d, src, elems * 2, cudaMemcpyHostToDevice));
    return d;
  }
  // The sum of fp16 host vectors (null ones left out) as fp32 on the device; null if all are null.
  const float* UploadF32(std::initializer_list<const half_bits*> srcs, size_t elems) {
    std::vector<float> f(elems, 0.f);
    bool any = false;
    for (const half_bits* src : srcs) {
      if (!src) continue;
      any = true;
      for (size_t i = 0; i < elems; ++i) f[i] += f16_to_f32(src[i]);
    }
    if (!any) return nullptr;
    auto* d = static_cast<float*>(Alloc(elems * 4));
    device_allocs.push_back(d);
    HS_CUDA_CHECK(cudaMemcpy(d, f.data(), elems * 4, cudaMemcpyHostToDevice));
    return d;
  }
  int SlotIndex(int l) const { return (l - staged0) % kSlots; }
  __half* Slot(int l) const { return l < staged0 ? resident_slot[l] : stream_slot[SlotIndex(l)]; }

  // Pools must be page-locked and mapped: loads are async copies and stores are kernel writes.
  void EnsurePinned(uint8_t* lo, uint8_t* hi) {
    if (!lo || hi <= lo) return;
    cudaPointerAttributes attr{};
    if (cudaPointerGetAttributes(&attr, lo) == cudaSuccess && attr.type == cudaMemoryTypeHost) return;
    cudaGetLastError();
    const uintptr_t page = 4096;
    auto a = reinterpret_cast<uintptr_t>(lo) & ~(page - 1);
    auto b = (reinterpret_cast<uintptr_t>(hi) + page - 1) & ~(page - 1);
    HS_CUDA_CHECK(
        cudaHostRegister(reinterpret_cast<void*>(a), b - a, cudaHostRegisterPortable | cudaHostRegisterMapped));
    registered.push_back(reinterpret_cast<void*>(a));
  }

  // ---- timing ------------------------------------------------------------------------------------
  cudaEvent_t Mark(cudaStream_t s) {
    if (tev_used == tev.size()) {
      cudaEvent_t e;
      HS_CUDA_CHECK(cudaEventCreate(&e));
      tev.push_back(e);
    }
    cudaEvent_t e = tev[tev_used++];
    HS_CUDA_CHECK(cudaEventRecord(e, s));
    return e;
  }

  Impl(const HostModel& model, const HostCache& cache, const EngineOptions& o)
      : m(model), c(cache), opt(o), cfg(model.cfg) {
    sl = MakeSlotLayout(cfg);
    llama = cfg.arch == Arch::LLAMA;
    L = cfg.num_layers;
    h = cfg.hidden_size;
    q = cfg.q_dim();
    kv = cfg.kv_dim();
    hd = cfg.head_dim;
    ffn = cfg.ffn_size;
    bt = c.block_tokens;
    scale = 1.f / std::sqrt(static_cast<float>(hd));
    fused_prefill = PrefillAttentionSupports(hd);
    if (static_cast<int>(m.layers.size()) != L) throw std::invalid_argument("cuda backend: layer count mismatch");
    has_bias = L > 0 && m.layers[0].bq != nullptr;
    if (hd > kMaxHeadDim) throw std::invalid_argument("cuda backend: head_dim > 256 is not supported");
    if (static_cast<int>(c.kv_layer_base.size()) != L || static_cast<int>(c.act_layer_base.size()) != L)
      throw std::invalid_argument("cuda backend: cache pool layer count mismatch");

    HS_CUDA_CHECK(cudaSetDevice(opt.device));
    cudaDeviceProp prop{};
    HS_CUDA_CHECK(cudaGetDeviceProperties(&prop, opt.device));
    name = prop.name;
    for (cudaStream_t* s : {&s_w, &s_c, &s_st, &s_x, &s_dq})
      HS_CUDA_CHECK(cudaStreamCreateWithFlags(s, cudaStreamNonBlocking));
    if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cuda backend: cublasCreate failed");
    cublasSetStream(blas, s_x);
    lt = std::make_unique<LtGemm>(s_x);
    for (int i = 0; i < kSlots; ++i)
      for (cudaEvent_t* e : {&ev_w_ready[i], &ev_slot_free[i], &ev_raw[i]})
        HS_CUDA_CHECK(cudaEventCreateWithFlags(e, cudaEventDisableTiming));
    for (int i = 0; i < kSets; ++i)
      for (cudaEvent_t* e : {&ev_load[i], &ev_comp[i], &ev_store[i]})
        HS_CUDA_CHECK(cudaEventCreateWithFlags(e, cudaEventDisableTiming));
    for (cudaEvent_t& e : ev_join) HS_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    HS_CUDA_CHECK(cudaEventCreate(&ev_start));
    HS_CUDA_CHECK(cudaEventCreate(&ev_end));

    size_t free_b = 0, total_b = 0;
    HS_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    const int64_t usable = static_cast<int64_t>(free_b) - kGiB / 2;
    // The GPU cache tier was allocated with the pools (free memory already excludes it); a given cap covers it too.
    if (static_cast<int>(c.gpu_kv_layer_base.size()) !=
        (c.gpu_kv_blocks > 0 ? L : static_cast<int>(c.gpu_kv_layer_base.size())))
      throw std::invalid_argument("cuda backend: GPU cache tier layer count mismatch");
    budget =
        opt.gpu_memory_bytes > 0 ? std::min<int64_t>(opt.gpu_memory_bytes - c.gpu_kv_bytes, usable) : usable - kGiB / 2;
    if (budget <= 0)
      throw std::invalid_argument("cuda backend: the GPU cache tier (" + std::to_string(c.gpu_kv_bytes >> 20) +
                                  " MiB) leaves nothing of the GPU memory cap for weights and buffers");

    bias_res32.assign(L, nullptr);
    bias_down32.assign(L, nullptr);
    for (int l = 0; l < L; ++l) {
      bias_res32[l] = UploadF32({m.layers[l].bo, m.layers[l].b2}, h);
      bias_down32[l] = UploadF32({m.layers[l].b2}, h);
    }
    // Globals stay resident: embeddings, positions, final norm, lm_head (each on the stage that uses it).
    const bool tied = m.lm_head == nullptr || m.lm_head == m.embed;
    if (opt.embed || (opt.head && tied)) embed_d = Upload(m.embed, static_cast<size_t>(cfg.vocab_size) * h);
    if (opt.embed && m.pos_embed) pos_d = Upload(m.pos_embed, static_cast<size_t>(m.pos_rows) * h);
    if (opt.head) {
      fnorm_w = Upload(m.final_norm_w, h);
      if (m.final_norm_b) fnorm_b = Upload(m.final_norm_b, h);
      lm_head_d = tied ? embed_d : Upload(m.lm_head, static_cast<size_t>(cfg.vocab_size) * h);
    }

    for (int l = 0; l < L; ++l) {
      copies.push_back(LayerCopies(cfg, sl, m.layers[l]));
      int64_t b = 0;
      for (const Copy& cp : copies.back().v) b += cp.bytes;
      layer_bytes.push_back(b);
      quant = quant || copies.back().quantized;
      max_raw = std::max(max_raw, copies.back().raw_bytes);
    }
    PlaceLayers();

    const CacheGeometry g = Geometry();
    uint8_t *kv_lo = nullptr, *kv_hi = nullptr, *act_lo = nullptr, *act_hi = nullptr;
    for (int l = 0; l < L; ++l) {
      uint8_t* kb = c.kv_layer_base[l];
      uint8_t* ab = c.act_layer_base[l];
      if (kb && c.kv_blocks > 0) {
        kv_lo = kv_lo ? std::min(kv_lo, kb) : kb;
        kv_hi = std::max(kv_hi, kb + c.kv_blocks * g.page_elems() * 2);
      }
      if (ab && c.act_blocks > 0) {
        act_lo = act_lo ? std::min(act_lo, ab) : ab;
        act_hi = std::max(act_hi, ab + c.act_blocks * g.act_block_elems() * 2);
      }
    }
    EnsurePinned(kv_lo, kv_hi);
    EnsurePinned(act_lo, act_hi);
  }

  ~Impl() {
    if (s_x) cudaDeviceSynchronize();
    for (Buf* b : {&h_all, &qkv, &attn, &x2, &rkv, &ffn_buf, &scores, &probs, &kg, &vg, &last_h, &last_x, &logits_d,
                   &tokens_d, &meta_i, &meta_l})
      if (b->p) cudaFree(b->p);
    for (int s = 0; s < kSets; ++s)
      for (Buf* b : {&pages[s], &act_stage[s], &xset[s]})
        if (b->p) cudaFree(b->p);
    for (void* p : device_allocs) cudaFree(p);
    for (void* p : registered) cudaHostUnregister(p);
    for (cudaEvent_t e : tev) cudaEventDestroy(e);
    for (int i = 0; i < kSlots; ++i)
      for (cudaEvent_t e : {ev_w_ready[i], ev_slot_free[i], ev_raw[i]}) cudaEventDestroy(e);
    for (int i = 0; i < kSets; ++i)
      for (cudaEvent_t e : {ev_load[i], ev_comp[i], ev_store[i]}) cudaEventDestroy(e);
    for (cudaEvent_t e : ev_join) cudaEventDestroy(e);
    cudaEventDestroy(ev_start);
    cudaEventDestroy(ev_end);
    lt.reset();  // before its stream goes
    if (blas) cublasDestroy(blas);
    for (cudaStream_t s : {s_w, s_c, s_st, s_x, s_dq})
      if (s) cudaStreamDestroy(s);
  }

  // Resident layers and the stream slots. fp16: a resident layer lives in its own fp16 slot.
  // Quantised (issue 14): a resident layer stays quantised (its raw area, as planning counts it) and
  // is dequantised into a stream slot when used, so every layer goes through the slots. The slots are
  // counted by planning/engine-workspace.ts engineLayerBufferBytes.
  void PlaceLayers() {
    const int64_t slot_bytes = static_cast<int64_t>(sl.total) * 2;
    const int64_t per_layer = quant ? static_cast<int64_t>(max_raw) : slot_bytes;
    const int64_t buffers = quant ? kSlots * (slot_bytes + static_cast<int64_t>(max_raw)) : kSlots * slot_bytes;
    if (opt.resident_layers >= 0) {
      resident = std::min(opt.resident_layers, L);
    } else {
      const int64_t avail = budget - held - budget / 4;
      const int64_t all = L * per_layer + (quant ? kSlots * slot_bytes : 0);
      resident = avail >= all ? L : static_cast<int>(std::max<int64_t>(0, (avail - buffers) / per_layer));
    }
    staged0 = quant ? 0 : resident;
    for (int l = 0; l < resident; ++l) {
      if (quant) {
        auto* d = static_cast<uint8_t*>(Alloc(copies[l].raw_bytes));
        device_allocs.push_back(d);
        resident_raw.push_back(d);
        for (const Copy& cp : copies[l].v)
          HS_CUDA_CHECK(cudaMemcpy(d + cp.raw, cp.src, cp.bytes, cudaMemcpyHostToDevice));
        continue;
      }
      auto* d = static_cast<__half*>(Alloc(slot_bytes));
      device_allocs.push_back(d);
      resident_slot.push_back(d);
      for (const Copy& cp : copies[l].v)
        HS_CUDA_CHECK(cudaMemcpy(d + cp.dst, cp.src, cp.bytes, cudaMemcpyHostToDevice));
    }
    if (staged0 < L)
      for (auto& s : stream_slot) {
        s = static_cast<__half*>(Alloc(slot_bytes));
        device_allocs.push_back(s);
      }
    if (quant && resident < L)
      for (auto& s : stage_raw) {
        s = static_cast<uint8_t*>(Alloc(max_raw));
        device_allocs.push_back(s);
      }
  }

  CacheGeometry Geometry() const { return CacheGeometry{bt, h, kv}; }
  __half* DevicePages(int l) const {
    return c.gpu_kv_blocks > 0 ? reinterpret_cast<__half*>(c.gpu_kv_layer_base[l]) : nullptr;
  }

  // ---- weights -------------------------------------------------------------------------------------
  // Layer l into its stream slot: a streamed layer's bytes over PCIe (quantised weights into the
  // slot's staging area), then, for quantised layers, the dequantisation on s_dq (a resident one's
  // from its device copy) before the slot's ready event.
  void LoadWeights(int l, bool timed, StepCounters& ctr) {
    const int slot = SlotIndex(l);
    const bool on_host = l >= resident;
    __half* dst = stream_slot[slot];
    HS_CUDA_CHECK(cudaStreamWaitEvent(s_w, ev_slot_free[slot], 0));
    if (on_host) {
      cudaEvent_t a = timed ? Mark(s_w) : nullptr;
      for (const Copy& cp : copies[l].v)
        HS_CUDA_CHECK(cudaMemcpyAsync(
            cp.quantized() ? static_cast<void*>(stage_raw[slot] + cp.raw) : static_cast<void*>(dst + cp.dst), cp.src,
            cp.bytes, cudaMemcpyHostToDevice, s_w));
      if (timed) ivs.push_back({a, Mark(s_w), kTransfer});
      ctr.weight_bytes_h2d += layer_bytes[l];
    }
    if (!quant) {
      HS_CUDA_CHECK(cudaEventRecord(ev_w_ready[slot], s_w));
      return;
    }
    HS_CUDA_CHECK(cudaEventRecord(ev_raw[slot], s_w));
    HS_CUDA_CHECK(cudaStreamWaitEvent(s_dq, ev_raw[slot], 0));
    cudaEvent_t a = timed ? Mark(s_dq) : nullptr;
    const uint8_t* raw = on_host ? stage_raw[slot] : resident_raw[l];
    for (const Copy& cp : copies[l].v) {
      if (cp.quantized())
        LaunchDequant(cp, raw, dst, s_dq);
      else if (!on_host)
        HS_CUDA_CHECK(cudaMemcpyAsync(dst + cp.dst, raw + cp.raw, cp.bytes, cudaMemcpyDeviceToDevice, s_dq));
    }
    if (timed) ivs.push_back({a, Mark(s_dq), kCompute});
    HS_CUDA_CHECK(cudaEventRecord(ev_w_ready[slot], s_dq));
  }

  // ---- cache loads -------------------------------------------------------------------------------
  void LoadCache(int l, const MiniBatchLayout& mb, int set, StepCounters& ctr) {
    HS_CUDA_CHECK(cudaStreamWaitEvent(s_c, ev_comp[set], 0));
    HS_CUDA_CHECK(cudaStreamWaitEvent(s_c, ev_store[set], 0));
    if (!mb.kv_runs.empty() || !mb.act_runs.empty()) {
      const CacheGeometry g = Geometry();
      const size_t kv_block = g.page_elems() * 2, act_block = g.act_block_elems() * 2;
      cudaEvent_t a = Mark(s_c);
      for (const CopyRun& r : mb.kv_runs) {
        HS_CUDA_CHECK(cudaMemcpyAsync(pages[set].as<uint8_t>() + r.dst_first * kv_block,
                                      c.kv_layer_base[l] + r.host_first * kv_block, r.count * kv_block,
                                      cudaMemcpyHostToDevice, s_c));
        ctr.kv_bytes_h2d += r.count * kv_block;
      }
      for (const CopyRun& r : mb.act_runs) {
        HS_CUDA_CHECK(cudaMemcpyAsync(act_stage[set].as<uint8_t>() + r.dst_first * act_block,
                                      c.act_layer_base[l] + r.host_first * act_block, r.count * act_block,
                                      cudaMemcpyHostToDevice, s_c));
        ctr.act_bytes_h2d += r.count * act_block;
      }
      ivs.push_back({a, Mark(s_c), kTransfer});
    }
    HS_CUDA_CHECK(cudaEventRecord(ev_load[set], s_c));
  }

  // ---- one (layer, mini-batch) item on the compute stream ------------------------------------------
  // The prompt sequences' attention for head dims the fused kernel is not built for: per sequence, its
  // K/V gathered from the pages, then scores, causal softmax and output as batched GEMMs.
  void GemmPrefillAttention(const MiniBatchLayout& mb, const MbDev& d, const PageGeom& geom, __half* att) {
    const int ldqkv = q + 2 * kv;
    for (size_t s = 0; s < mb.seqs.size(); ++s) {
      const int row0 = mb.seq_row0[s], n = mb.seq_new[s];
      if (row0 < mb.paged_rows) continue;
      const int ctx = mb.seq_start[s] + n;
      LaunchGatherPages(d.page_table + mb.seq_pt_off[s], ctx, geom, kg.as<__half>(), vg.as<__half>(), s_x);
      AttentionScores(blas, n, ctx, cfg.num_heads, cfg.num_kv_heads, hd,
                      qkv.as<__half>() + static_cast<size_t>(row0) * ldqkv, ldqkv, kg.as<__half>(), scale,
                      scores.as<float>());
      LaunchCausalSoftmax(scores.as<float>(), probs.as<__half>(), cfg.num_heads, n, ctx, mb.seq_start[s], s_x);
      AttentionOutput(blas, n, ctx, cfg.num_heads, cfg.num_kv_heads, hd, probs.as<__half>(), vg.as<__half>(),
                      att + static_cast<size_t>(row0) * q, q);
    }
  }

  // The rows a layer's out-projection and FFN run on: all of the mini-batch's, in place in the
  // residual stream; or, in the last layer of the stage with the LM head, each sequence's last row,
  // gathered (see Compute).
  struct Tail {
    int rows;
    const __half* att;
    float* res;
  };
  bool LastRowsOnly(int l) const { return opt.head && L > 0 && l == L - 1; }
  Tail LayerTail(int l, const MiniBatchLayout& mb, const MbDev& d, float* hmb, const __half* att) {
    if (!LastRowsOnly(l)) return {mb.rows, att, hmb};
    const int n = static_cast<int>(mb.seqs.size());
    float* res = last_h.as<float>() + static_cast<size_t>(d.seq_base) * h;
    LaunchGatherRows(hmb, d.last_row, res, n, h, s_x);
    LaunchGatherRows(att, d.last_row, qkv.as<__half>(), n, q, s_x);
    return {n, qkv.as<__half>(), res};
  }

  void Compute(int l, const MiniBatchLayout& mb, const MbDev& d, int set) {
    const __half* W = Slot(l);
    const int rows = mb.rows, ldqkv = q + 2 * kv;
    float* hmb = h_all.as<float>() + static_cast<size_t>(d.row_base) * h;
    __half* x = xset[set].as<__half>();
    const PageGeom geom{pages[set].as<__half>(), bt, kv, DevicePages(l)};
    const __half* bqkv = has_bias ? W + sl.bqkv : nullptr;

    cudaEvent_t e0 = Mark(s_x);
    LaunchNorm(hmb, x, rows, h, W + sl.norm1_w, llama ? nullptr : W + sl.norm1_b, cfg.norm_eps, llama, s_x);
    lt->LinearHalf(rows, ldqkv, h, x, h, W + sl.wqkv, h, qkv.as<__half>(), ldqkv);
    cudaEvent_t e1 = Mark(s_x);
    if (mb.act_slots > 0) {  // K/V of ACT-cached tokens: [A] · [W_K; W_V]ᵀ, then bias/RoPE into pages
      lt->LinearHalf(mb.act_slots * bt, 2 * kv, h, act_stage[set].as<__half>(), h,
                     W + sl.wqkv + static_cast<size_t>(q) * h, h, rkv.as<__half>(), 2 * kv);
      LaunchRecomputePost(rkv.as<__half>(), mb.act_slots, hd, bqkv ? bqkv + q : nullptr, bqkv ? bqkv + q + kv : nullptr,
                          d.act_page, d.act_pos0, d.act_valid, geom, llama, cfg.rope_theta, s_x);
    }
    cudaEvent_t e2 = Mark(s_x);
    LaunchQkvPost(qkv.as<__half>(), rows, ldqkv, q, hd, bqkv, d.pos, d.page, d.slot, geom, llama, cfg.rope_theta, s_x);
    __half* att = attn.as<__half>();
    if (mb.paged_rows > 0)
      LaunchPagedAttention(qkv.as<__half>(), ldqkv, att, q, mb.paged_rows, cfg.num_heads, cfg.num_kv_heads, hd, scale,
                           AttnRows{d.row_seq, d.pos, d.seq_pt_off, d.page_table}, geom, s_x);
    if (fused_prefill) {
      if (d.pf_count > 0)
        LaunchPrefillAttention(
            qkv.as<__half>(), ldqkv, att, q, cfg.num_heads, cfg.num_kv_heads, hd, scale,
            PrefillSeqs{d.pf_row0, d.pf_new, d.pf_start, d.pf_pt_off, d.page_table, d.pf_count, d.pf_max_new}, geom,
            s_x);
    } else {
      GemmPrefillAttention(mb, d, geom, att);
    }
    // Past the attention, a token's row only feeds its own next layer. So in the model's last layer,
    // on the stage that runs the LM head, only each sequence's last row matters (its logits): those
    // rows go on compactly (residual into last_h, where the head reads them; attention output into
    // the qkv buffer, free once attention has read it) and the other rows' out-projection and FFN
    // are skipped — 3/4 of one layer's GEMMs, ~1.7% of an OPT-13B prefill's.
    const Tail t = LayerTail(l, mb, d, hmb, att);
    lt->LinearBiasAccumulate(t.rows, h, q, t.att, q, W + sl.wo, q, bias_res32[l], t.res, h);
    __half* xn = x2.as<__half>();
    LaunchNorm(t.res, xn, t.rows, h, W + sl.norm2_w, llama ? nullptr : W + sl.norm2_b, cfg.norm_eps, llama, s_x,
               bias_down32[l]);
    const int chunk = std::min(t.rows, kFfnChunkRows);
    __half* fb = ffn_buf.as<__half>();
    for (int r0 = 0; r0 < t.rows; r0 += chunk) {
      const int cr = std::min(chunk, t.rows - r0);
      const __half* xin = xn + static_cast<size_t>(r0) * h;
      float* hout = t.res + static_cast<size_t>(r0) * h;
      if (llama) {
        __half* act = fb + static_cast<size_t>(chunk) * 2 * ffn;
        lt->LinearHalf(cr, 2 * ffn, h, xin, h, W + sl.w1, h, fb, 2 * ffn);
        LaunchSiluMul(fb, act, cr, ffn, s_x);
        Linear(blas, cr, h, ffn, act, ffn, W + sl.w2, ffn, hout, true, h, 1.f, 1.f);
      } else {
        lt->LinearBiasRelu(cr, ffn, h, xin, h, W + sl.w1, h, has_bias ? W + sl.b1 : nullptr, fb, ffn);
        Linear(blas, cr, h, ffn, fb, ffn, W + sl.w2, ffn, hout, true, h, 1.f, 1.f);
      }
    }
    cudaEvent_t e3 = Mark(s_x);
    ivs.push_back({e0, e1, kCompute});
    ivs.push_back({e1, e2, kRecompute});
    ivs.push_back({e2, e3, kCompute});
    HS_CUDA_CHECK(cudaEventRecord(ev_comp[set], s_x));
  }

  // ---- stores: new tokens' cache rows into the host pools ------------------------------------------
  void Store(int l, const MiniBatchLayout& mb, const MbDev& d, int set, StepCounters& ctr) {
    HS_CUDA_CHECK(cudaStreamWaitEvent(s_st, ev_comp[set], 0));
    const int nkv = static_cast<int>(mb.kv_store_src.size()), nact = static_cast<int>(mb.act_store_src.size());
    if (nkv + nact > 0) {
      cudaEvent_t a = Mark(s_st);
      LaunchRowCopy(pages[set].as<__half>(), d.kv_src, reinterpret_cast<__half*>(c.kv_layer_base[l]), d.kv_dst, nkv, kv,
                    s_st);
      LaunchRowCopy(xset[set].as<__half>(), d.act_src, reinterpret_cast<__half*>(c.act_layer_base[l]), d.act_dst, nact,
                    h, s_st);
      ivs.push_back({a, Mark(s_st), kTransfer});
      ctr.kv_bytes_d2h += int64_t{nkv} * kv * 2;
      ctr.act_bytes_d2h += int64_t{nact} * h * 2;
    }
    HS_CUDA_CHECK(cudaEventRecord(ev_store[set], s_st));
  }

  // ---- the parts of a step ---------------------------------------------------------------------------
  // Checks tokens and positions, grows the step's device buffers for these layouts, and counts the
  // metadata elements (ni ints, nl int64s) that PackMetadata will lay out. The planner counts these
  // buffers (planning/engine-workspace.ts) to lay out a GPU budget: keep the two in step.
  void SizeWorkspace(const std::vector<MiniBatchLayout>& lay, size_t nseq, size_t& ni, size_t& nl) {
    const CacheGeometry g = Geometry();
    size_t total_rows = 0, max_rows = 0, max_pages = 0, max_act = 0, max_scores = 0, max_ctx = 0;
    ni = 0;
    nl = 0;
    for (const auto& mb : lay) {
      for (size_t r = 0; r < mb.tokens.size(); ++r) {
        if (mb.tokens[r] < 0 || mb.tokens[r] >= cfg.vocab_size)
          throw std::invalid_argument("cuda backend: token id " + std::to_string(mb.tokens[r]) + " out of range");
        if (m.pos_embed && mb.pos[r] + m.pos_offset >= m.pos_rows)
          throw std::invalid_argument("cuda backend: position " + std::to_string(mb.pos[r]) + " beyond max positions");
      }
      total_rows += mb.rows;
      max_rows = std::max<size_t>(max_rows, mb.rows);
      max_pages = std::max<size_t>(max_pages, mb.pages);
      max_act = std::max<size_t>(max_act, mb.act_slots);
      for (size_t s = 0; s < mb.seqs.size(); ++s)
        if (!fused_prefill && mb.seq_row0[s] >= mb.paged_rows) {
          const size_t ctx = mb.seq_start[s] + mb.seq_new[s];
          max_scores = std::max(max_scores, static_cast<size_t>(cfg.num_heads) * mb.seq_new[s] * ctx);
          max_ctx = std::max(max_ctx, ctx);
        }
      ni += 5 * mb.rows + 6 * mb.seqs.size() + mb.page_table.size() + 3 * mb.act_slots;
      nl += mb.kv_store_src.size() * 2 + mb.act_store_src.size() * 2;
    }
    const int chunk = static_cast<int>(std::min<size_t>(max_rows, kFfnChunkRows));
    Ensure(h_all, total_rows * h * 4);
    for (int s = 0; s < kSets; ++s) {
      Ensure(pages[s], max_pages * g.page_elems() * 2);
      Ensure(act_stage[s], max_act * g.act_block_elems() * 2);
      Ensure(xset[s], max_rows * h * 2);
    }
    Ensure(qkv, max_rows * (q + 2 * kv) * 2);
    Ensure(attn, max_rows * q * 2);
    Ensure(x2, max_rows * h * 2);
    Ensure(rkv, max_act * bt * 2 * kv * 2);
    Ensure(ffn_buf, static_cast<size_t>(chunk) * ffn * (llama ? 3 : 1) * 2);
    Ensure(scores, max_scores * 4);
    Ensure(probs, max_scores * 2);
    Ensure(kg, max_ctx * kv * 2);
    Ensure(vg, max_ctx * kv * 2);
    Ensure(last_h, nseq * h * 4);
    Ensure(last_x, nseq * h * 2);
    Ensure(logits_d, nseq * static_cast<size_t>(cfg.vocab_size) * 4);
    Ensure(tokens_d, nseq * 4);
    Ensure(meta_i, ni * 4);
    Ensure(meta_l, std::max<size_t>(nl, 1) * 8);
  }

  // Lays out every mini-batch's metadata (host copies in hi/hl, device pointers into meta_i/meta_l).
  std::vector<MbDev> PackMetadata(const std::vector<MiniBatchLayout>& lay, size_t ni, size_t nl, std::vector<int>& hi,
                                  std::vector<int64_t>& hl) {
    hi.reserve(ni);
    hl.reserve(nl);
    std::vector<MbDev> dev(lay.size());
    int row_base = 0, seq_base = 0;
    int* bi = meta_i.as<int>();
    int64_t* bl = meta_l.as<int64_t>();
    auto put = [&](const std::vector<int>& v) {
      int* p = bi + hi.size();
      hi.insert(hi.end(), v.begin(), v.end());
      return p;
    };
    auto putl = [&](const std::vector<int64_t>& v) {
      int64_t* p = bl + hl.size();
      hl.insert(hl.end(), v.begin(), v.end());
      return p;
    };
    for (size_t k = 0; k < lay.size(); ++k) {
      const auto& mb = lay[k];
      MbDev& d = dev[k];
      d.tokens = put(mb.tokens);
      d.pos = put(mb.pos);
      d.page = put(mb.page);
      d.slot = put(mb.slot);
      d.row_seq = put(mb.row_seq);
      d.seq_pt_off = put(mb.seq_pt_off);
      d.page_table = put(mb.page_table);
      d.act_page = put(mb.act_slot_page);
      d.act_pos0 = put(mb.act_slot_pos0);
      d.act_valid = put(mb.act_slot_valid);
      d.last_row = put(mb.last_row);
      d.kv_src = putl(mb.kv_store_src);
      d.kv_dst = putl(mb.kv_store_dst);
      d.act_src = putl(mb.act_store_src);
      d.act_dst = putl(mb.act_store_dst);
      d.row_base = row_base;
      row_base += mb.rows;
      d.seq_base = seq_base;
      seq_base += static_cast<int>(mb.seqs.size());
      std::vector<int> pf_row0, pf_new, pf_start, pf_pt_off;  // the prompt sequences
      for (size_t s = 0; s < mb.seqs.size(); ++s)
        if (mb.seq_row0[s] >= mb.paged_rows) {
          pf_row0.push_back(mb.seq_row0[s]);
          pf_new.push_back(mb.seq_new[s]);
          pf_start.push_back(mb.seq_start[s]);
          pf_pt_off.push_back(mb.seq_pt_off[s]);
        }
      d.pf_row0 = put(pf_row0);
      d.pf_new = put(pf_new);
      d.pf_start = put(pf_start);
      d.pf_pt_off = put(pf_pt_off);
      d.pf_count = static_cast<int>(pf_row0.size());
      d.pf_max_new = pf_new.empty() ? 0 : *std::max_element(pf_new.begin(), pf_new.end());
    }
    return dev;
  }

  // Embedding, the zig-zag over (layer, mini-batch) items with triple-buffered weights and cache, and
  // the logits of each sequence's last token (and, for a greedy step, its ArgMax token); returns
  // when the step's work has finished on the GPU.
  void RunPipeline(const std::vector<MiniBatchLayout>& lay, const std::vector<MbDev>& dev, size_t nseq, bool greedy,
                   StepCounters& ctr) {
    if (opt.embed) {  // a later pipeline stage received h_all instead
      cudaEvent_t a = Mark(s_x);
      for (size_t k = 0; k < lay.size(); ++k)
        LaunchEmbed(dev[k].tokens, dev[k].pos, embed_d, pos_d, m.pos_offset,
                    h_all.as<float>() + static_cast<size_t>(dev[k].row_base) * h, lay[k].rows, h, s_x);
      ivs.push_back({a, Mark(s_x), kCompute});
    }

    // Zig-zag over (layer, mini-batch) items with triple-buffered weights and cache.
    const int K = static_cast<int>(lay.size());
    const int items = L * K;
    if (staged0 < L && !first_prefetched) LoadWeights(staged0, true, ctr);
    first_prefetched = false;
    if (items > 0) LoadCache(0, lay[0], 0, ctr);
    for (int i = 0; i < items; ++i) {
      const int l = i / K, k = i % K, set = i % kSets;
      if (k == 0) {
        if (l + 1 < L && l + 1 > staged0) LoadWeights(l + 1, true, ctr);
        if (l >= staged0) HS_CUDA_CHECK(cudaStreamWaitEvent(s_x, ev_w_ready[SlotIndex(l)], 0));
      }
      if (i + 1 < items) LoadCache((i + 1) / K, lay[(i + 1) % K], (i + 1) % kSets, ctr);
      HS_CUDA_CHECK(cudaStreamWaitEvent(s_x, ev_load[set], 0));
      Compute(l, lay[k], dev[k], set);
      Store(l, lay[k], dev[k], set, ctr);
      if (k == K - 1 && l >= staged0) HS_CUDA_CHECK(cudaEventRecord(ev_slot_free[SlotIndex(l)], s_x));
    }

    // Logits of each sequence's last token (the last pipeline stage).
    if (opt.head) {
      cudaEvent_t a = Mark(s_x);
      if (!LastRowsOnly(L - 1))  // a stage without layers: the last rows are still in h_all
        for (size_t k = 0; k < lay.size(); ++k)
          LaunchGatherRows(h_all.as<float>() + static_cast<size_t>(dev[k].row_base) * h, dev[k].last_row,
                           last_h.as<float>() + static_cast<size_t>(dev[k].seq_base) * h,
                           static_cast<int>(lay[k].seqs.size()), h, s_x);
      LaunchNorm(last_h.as<float>(), last_x.as<__half>(), static_cast<int>(nseq), h, fnorm_w, fnorm_b, cfg.norm_eps,
                 llama, s_x);
      Linear(blas, static_cast<int>(nseq), cfg.vocab_size, h, last_x.as<__half>(), h, lm_head_d, h, logits_d.p, true,
             cfg.vocab_size);
      if (greedy)
        LaunchArgMaxRows(logits_d.as<float>(), static_cast<int>(nseq), cfg.vocab_size, tokens_d.as<int>(), s_x);
      ivs.push_back({a, Mark(s_x), kCompute});
    }
    HS_CUDA_CHECK(cudaEventRecord(ev_join[0], s_st));
    HS_CUDA_CHECK(cudaEventRecord(ev_join[1], s_c));
    HS_CUDA_CHECK(cudaEventRecord(ev_join[2], s_w));
    HS_CUDA_CHECK(cudaEventRecord(ev_join[3], s_dq));
    for (cudaEvent_t e : ev_join) HS_CUDA_CHECK(cudaStreamWaitEvent(s_x, e, 0));
    HS_CUDA_CHECK(cudaEventRecord(ev_end, s_x));
    HS_CUDA_CHECK(cudaEventSynchronize(ev_end));
    HS_CUDA_CHECK(cudaGetLastError());
  }

  // Logits rows back to the host, in BatchPlan order.
  void CopyLogits(const std::vector<MiniBatchLayout>& lay, size_t nseq, float* logits) {
    const size_t vocab = static_cast<size_t>(cfg.vocab_size);
    const float* host = logits_h.CopyFromDevice(logits_d.p, nseq * vocab, s_x);
    size_t off = 0;
    for (const auto& mb : lay)
      for (int pi : mb.last_plan_index)
        std::memcpy(logits + static_cast<size_t>(pi) * vocab, host + off++ * vocab, vocab * 4);
  }

  // A greedy step's tokens back to the host (one int per sequence), in BatchPlan order.
  void CopyTokens(const std::vector<MiniBatchLayout>& lay, size_t nseq, int32_t* tokens) {
    const int* host = tokens_h.CopyFromDevice(tokens_d.p, nseq, s_x);
    size_t off = 0;
    for (const auto& mb : lay)
      for (int pi : mb.last_plan_index) tokens[pi] = host[off++];
  }

  // Phase times from the step's events (ms relative to the step start) and the token counts.
  void AccountPhases(const std::vector<MiniBatchLayout>& lay, StepCounters& ctr) {
    std::vector<std::pair<double, double>> by[3], busy;
    for (const Interval& iv : ivs) {
      float a = 0, b = 0;
      HS_CUDA_CHECK(cudaEventElapsedTime(&a, ev_start, iv.a));
      HS_CUDA_CHECK(cudaEventElapsedTime(&b, ev_start, iv.b));
      by[iv.phase].push_back({a, b});
      if (iv.phase != kTransfer) busy.push_back({a, b});
    }
    float wall_ms = 0;
    HS_CUDA_CHECK(cudaEventElapsedTime(&wall_ms, ev_start, ev_end));
    const double busy_ms = UnionLength(busy);
    ctr.transfer_seconds += UnionLength(by[kTransfer]) / 1e3;
    ctr.compute_seconds += UnionLength(by[kCompute]) / 1e3;
    ctr.recompute_seconds += UnionLength(by[kRecompute]) / 1e3;
    ctr.idle_seconds += std::max(0.0, wall_ms - busy_ms) / 1e3;
    // Steps and prefill/decode tokens are the core's to count (core/backend.h), not the backend's.
    // Tokens, not token-layers: the first pipeline stage counts them, once per step.
    if (opt.embed)
      for (const auto& mb : lay) ctr.recomputed_tokens += mb.recomputed_tokens;
  }

  // Writes logits (when non-null) or, for a greedy step, each sequence's ArgMax token into `tokens`.
  void Forward(const BatchPlan& plan, float* logits, int32_t* tokens, StepCounters& ctr) {
    const auto t_start = std::chrono::steady_clock::now();
    if (plan.seqs.empty()) return;
    HS_CUDA_CHECK(cudaSetDevice(opt.device));
    const CacheGeometry g = Geometry();
    const auto mbs = MiniBatchesOf(plan);
    std::vector<int> seen(plan.seqs.size(), 0);
    for (const auto& mbi : mbs)
      for (int i : mbi) {
        if (i < 0 || i >= static_cast<int>(plan.seqs.size()) || seen[i]++)
          throw std::invalid_argument("cuda backend: mini-batches must list each sequence exactly once");
      }
    for (size_t i = 0; i < seen.size(); ++i)
      if (!seen[i]) throw std::invalid_argument("cuda backend: a sequence is in no mini-batch");
    std::vector<MiniBatchLayout> lay;
    for (const auto& mbi : mbs) lay.push_back(BuildLayout(plan, mbi, g, c.kv_blocks, c.act_blocks, c.gpu_kv_blocks));

    size_t ni = 0, nl = 0;
    SizeWorkspace(lay, plan.seqs.size(), ni, nl);
    std::vector<int> hi;
    std::vector<int64_t> hl;
    const std::vector<MbDev> dev = PackMetadata(lay, ni, nl, hi, hl);
    tev_used = 0;
    ivs.clear();
    HS_CUDA_CHECK(cudaEventRecord(ev_start, s_x));
    if (!hi.empty()) HS_CUDA_CHECK(cudaMemcpyAsync(meta_i.p, hi.data(), hi.size() * 4, cudaMemcpyHostToDevice, s_x));
    if (!hl.empty()) HS_CUDA_CHECK(cudaMemcpyAsync(meta_l.p, hl.data(), hl.size() * 8, cudaMemcpyHostToDevice, s_x));

    const bool greedy = tokens && opt.head;
    RunPipeline(lay, dev, plan.seqs.size(), greedy, ctr);
    if (greedy) CopyTokens(lay, plan.seqs.size(), tokens);
    if (logits && opt.head) CopyLogits(lay, plan.seqs.size(), logits);
    AccountPhases(lay, ctr);

    // Prefetch the first streamed layer of the next step (everything is idle now).
    if (staged0 < L) {
      LoadWeights(staged0, false, ctr);
      first_prefetched = true;
    }
    ctr.wall_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  }
};

CudaEngine::CudaEngine(const HostModel& model, const HostCache& cache, const EngineOptions& opts)
    : impl_(std::make_unique<Impl>(model, cache, opts)) {}
CudaEngine::~CudaEngine() = default;

void CudaEngine::Forward(const BatchPlan& plan, float* logits, StepCounters& counters) {
  try {
    impl_->Forward(plan, logits, nullptr, counters);
  } catch (...) {
    cudaDeviceSynchronize();  // leave no copy or kernel running into buffers the caller may free
    throw;
  }
}

void CudaEngine::ForwardGreedy(const BatchPlan& plan, int32_t* tokens, StepCounters& counters) {
  try {
    impl_->Forward(plan, nullptr, tokens, counters);
  } catch (...) {
    cudaDeviceSynchronize();
    throw;
  }
}

float* CudaEngine::HiddenBuffer(int rows) {
  HS_CUDA_CHECK(cudaSetDevice(impl_->opt.device));
  impl_->Ensure(impl_->h_all, static_cast<size_t>(std::max(rows, 1)) * impl_->h * 4);
  return impl_->h_all.as<float>();
}
void* CudaEngine::compute_stream() const { return impl_->s_x; }

std::string CudaEngine::device_name() const { return impl_->name; }
int CudaEngine::resident_layers() const { return impl_->resident; }
int64_t CudaEngine::device_bytes() const { return impl_->held; }
int64_t CudaEngine::budget_bytes() const { return impl_->budget; }

}  // namespace hs::cuda
