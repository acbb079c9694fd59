#include "cpu/cpu_backend.h"

#include <chrono>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "cpu/activation.h"
#include "cpu/norm.h"

namespace hs::cpu {

namespace {
using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

const float* Opt(const HostWeights& w, const std::string& name) {
  const HostTensor* t = w.find(name);
  return t ? t->f32() : nullptr;
}
}  // namespace

CpuBackend::CpuBackend(const ModelConfig& cfg, const HostWeights& w, CachePools& pools, int threads)
    : CpuBackend(cfg, w, pools, threads, pipeline::LayerRange{0, cfg.num_layers}) {}

CpuBackend::CpuBackend(const ModelConfig& cfg, const HostWeights& w, CachePools& pools, int threads,
                       pipeline::LayerRange range)
    : cfg_(cfg), range_(range), pools_(pools), pool_(std::make_unique<ThreadPool>(threads)) {
  if (range.first < 0 || range.last > cfg.num_layers || range.first >= range.last)
    throw std::invalid_argument("layer range [" + std::to_string(range.first) + ", " + std::to_string(range.last) +
                                ") is not inside [0, " + std::to_string(cfg.num_layers) + ")");
  if (w.dtype() != DType::F32) throw std::invalid_argument("the CPU backend needs F32 weights");
  if (pools.config().dtype != DType::F32) throw std::invalid_argument("the CPU backend needs F32 cache pools");
  if (cfg.num_heads <= 0 || cfg.num_kv_heads <= 0 || cfg.num_heads % cfg.num_kv_heads)
    throw std::invalid_argument("numHeads must be a positive multiple of numKvHeads");
  const bool opt = cfg.arch == Arch::OPT;
  auto add_bytes = [&](const std::string& name) {
    if (const HostTensor* t = w.find(name)) weight_bytes_per_forward_ += (int64_t)t->bytes;
  };
  embed_ = w.get("embed_tokens.weight").f32();
  if (opt) pos_embed_ = w.get("embed_positions.weight").f32();
  layers_.resize(cfg.num_layers);  // indexed by model layer; only the range's entries are filled
  LoadLayers(w);
  if (!opt) rope_ = RopeTable(cfg.max_positions, cfg.head_dim, cfg.rope_theta);
  if (!last()) return;  // the final norm and LM head belong to the last stage
  final_w_ = w.get("final_norm.weight").f32();
  final_b_ = Opt(w, "final_norm.bias");
  add_bytes("final_norm.weight");
  add_bytes("final_norm.bias");
  if (const HostTensor* lm = w.find("lm_head.weight")) {
    lm_head_ = lm->f32();
    add_bytes("lm_head.weight");
  } else {
    if (!cfg.tie_embeddings) throw std::invalid_argument("missing tensor 'lm_head.weight' (embeddings are not tied)");
    lm_head_ = embed_;
    add_bytes("embed_tokens.weight");
  }
}

// The decoder layers of the range: their weights and the bytes a forward pass reads from them.
void CpuBackend::LoadLayers(const HostWeights& w) {
  auto mat = [&](const std::string& name) {
    const HostTensor& t = w.get(name);
    return t.quantized() ? Matrix{nullptr, t.quant()} : Matrix{t.f32(), {}};
  };
  auto add_bytes = [&](const std::string& name) {
    if (const HostTensor* t = w.find(name)) weight_bytes_per_forward_ += (int64_t)t->bytes;
  };
  static const char* kLeaves[] = {"attn_norm.weight", "attn_norm.bias", "q_proj.weight",   "q_proj.bias",
                                  "k_proj.weight",    "k_proj.bias",    "v_proj.weight",   "v_proj.bias",
                                  "o_proj.weight",    "o_proj.bias",    "ffn_norm.weight", "ffn_norm.bias",
                                  "fc1.weight",       "fc1.bias",       "fc2.weight",      "fc2.bias",
                                  "gate_proj.weight", "up_proj.weight", "down_proj.weight"};
  for (int l = range_.first; l < range_.last; ++l) {
    auto N = [l](const char* leaf) { return HostWeights::layer_name(l, leaf); };
    LayerWeights& lw = layers_[l];
    lw.attn_norm_w = w.get(N("attn_norm.weight")).f32();
    lw.attn_norm_b = Opt(w, N("attn_norm.bias"));
    lw.wq = mat(N("q_proj.weight"));
    lw.wk = mat(N("k_proj.weight"));
    lw.wv = mat(N("v_proj.weight"));
    lw.wo = mat(N("o_proj.weight"));
    lw.bq = Opt(w, N("q_proj.bias"));
    lw.bk = Opt(w, N("k_proj.bias"));
    lw.bv = Opt(w, N("v_proj.bias"));
    lw.bo = Opt(w, N("o_proj.bias"));
    lw.ffn_norm_w = w.get(N("ffn_norm.weight")).f32();
    lw.ffn_norm_b = Opt(w, N("ffn_norm.bias"));
    if (cfg_.arch == Arch::OPT) {
      lw.w1 = mat(N("fc1.weight"));
      lw.b1 = Opt(w, N("fc1.bias"));
      lw.w2 = mat(N("fc2.weight"));
      lw.b2 = Opt(w, N("fc2.bias"));
    } else {
      lw.wg = mat(N("gate_proj.weight"));
      lw.wu = mat(N("up_proj.weight"));
      lw.wd = mat(N("down_proj.weight"));
    }
    for (const char* leaf : kLeaves) add_bytes(N(leaf));
  }
}

CpuBackend::~CpuBackend() = default;

BackendInfo CpuBackend::Info() const {
#if defined(__x86_64__)
  const char* arch = "x86_64";
#elif defined(__aarch64__)
  const char* arch = "aarch64";
#else
  const char* arch = "cpu";
#endif
  return {"cpu",
          std::string(arch) + " (" + std::to_string(pool_->size()) + " threads, gemm " + gemm_kernel_name() + ")"};
}

void CpuBackend::Norm(const float* x, float* out, int rows, const float* w, const float* b) const {
  if (cfg_.arch == Arch::OPT)
    LayerNorm(x, out, rows, cfg_.hidden_size, w, b, cfg_.norm_eps);
  else
    RmsNorm(x, out, rows, cfg_.hidden_size, w, cfg_.norm_eps);
}

void CpuBackend::Linear(int M, int N, int K, const float* A, const Matrix& w, float* C, float beta, const float* bias) {
  if (w.f32)
    gemm_nt(M, N, K, A, K, w.f32, K, C, N, beta, bias, pool_.get());
  else
    gemm_nt_q(M, N, K, A, K, w.q, C, N, beta, bias, pool_.get());
}

// h += FFN(x) for T rows (x holds the post-norm input).
void CpuBackend::Ffn(int T, const LayerWeights& lw) {
  const int H = cfg_.hidden_size, F = cfg_.ffn_size;
  if (cfg_.arch == Arch::OPT) {
    Linear(T, F, H, x_.data(), lw.w1, ff_.data(), 0.f, lw.b1);
    ReluInPlace(ff_.data(), (size_t)T * F);
    Linear(T, H, F, ff_.data(), lw.w2, h_.data(), 1.f, lw.b2);
  } else {
    Linear(T, F, H, x_.data(), lw.wg, ff_.data(), 0.f, nullptr);
    Linear(T, F, H, x_.data(), lw.wu, ff2_.data(), 0.f, nullptr);
    SiluMulInPlace(ff_.data(), ff2_.data(), (size_t)T * F);
    Linear(T, H, F, ff_.data(), lw.wd, h_.data(), 1.f, nullptr);
  }
}

void CpuBackend::Forward(const BatchPlan& plan, float* logits, StepCounters& c) {
  if (!first() || !last()) throw std::logic_error("a pipeline stage runs through PipelineBackend, not Forward");
  RunStage(plan, logits, c);
}

void* CpuBackend::hidden_in(int tokens) {
  Reserve(h_, (size_t)tokens * cfg_.hidden_size);
  return h_.data();
}

void CpuBackend::RunStage(const BatchPlan& plan, float* logits, StepCounters& c) {
  const auto t_start = Clock::now();
  double recompute_s = 0;
  const int S = (int)plan.seqs.size();
  if (S == 0) return;
  const bool opt = cfg_.arch == Arch::OPT, llama = !opt;
  const int H = cfg_.hidden_size, Q = cfg_.q_dim(), KVD = cfg_.kv_dim(), F = cfg_.ffn_size, V = cfg_.vocab_size;
  const int bt = pools_.block_tokens();
  ThreadPool* p = pool_.get();

  // ---- layout of the step: new tokens (T rows) and cached positions (P rows, R of them ACT)
  tok_off_.assign(S + 1, 0);
  past_off_.assign(S + 1, 0);
  int T = 0, P = 0;
  for (int s = 0; s < S; ++s) {
    const SeqPlan& sp = plan.seqs[s];
    if (sp.num_new <= 0 || sp.start_pos < 0) throw std::logic_error("step plan has a sequence with no new tokens");
    if ((int64_t)(sp.start_pos + sp.num_new) > (int64_t)sp.num_blocks * bt)
      throw std::logic_error("block table of sequence " + std::to_string(sp.id) + " does not cover its tokens");
    if (sp.start_pos + sp.num_new > cfg_.max_positions)
      throw std::logic_error("sequence " + std::to_string(sp.id) + " is longer than maxPositions");
    tok_off_[s] = T;
    past_off_[s] = P;
    T += sp.num_new;
    P += sp.start_pos;
  }
  tok_off_[S] = T;
  past_off_[S] = P;
  Reserve(h_, (size_t)T * H);
  Reserve(x_, (size_t)T * H);
  Reserve(q_, (size_t)T * Q);
  Reserve(k_, (size_t)T * KVD);
  Reserve(v_, (size_t)T * KVD);
  Reserve(attn_, (size_t)T * Q);
  Reserve(ff_, (size_t)T * F);
  if (llama) Reserve(ff2_, (size_t)T * F);
  Reserve(last_, (size_t)S * H);
  Reserve(tok_pos_, T);
  Reserve(tok_block_, T);
  Reserve(past_, P);
  Reserve(kptr_, (size_t)P + T);
  Reserve(vptr_, (size_t)P + T);
  Reserve(attn_seqs_, S);

  int R = 0, past_kv = 0, new_kv = 0, new_act = 0;
  for (int s = 0; s < S; ++s) {
    const SeqPlan& sp = plan.seqs[s];
    for (int j = 0; j < sp.start_pos; ++j) {
      const BlockRef b = sp.blocks[j / bt];
      const bool act = b.kind == CacheKind::ACT;
      past_[past_off_[s] + j] = {b, j % bt, act ? R++ : -1};
      past_kv += !act && b.tier == Tier::Host;
    }
    for (int i = 0; i < sp.num_new; ++i) {
      const int pos = sp.start_pos + i, t = tok_off_[s] + i;
      const int32_t tok = sp.tokens[i];
      if (tok < 0 || tok >= V) throw std::logic_error("token id out of the vocabulary");
      tok_pos_[t] = pos;
      tok_block_[t] = sp.blocks[pos / bt];
      if (tok_block_[t].tier == Tier::Host) (tok_block_[t].kind == CacheKind::ACT ? new_act : new_kv)++;
      if (!first()) continue;  // h_ holds the previous stage's hidden state
      // Embedding (+ OPT's learned position, offset 2).
      float* hr = h_.data() + (size_t)t * H;
      std::memcpy(hr, embed_ + (size_t)tok * H, sizeof(float) * H);
      if (opt) {
        const float* pe = pos_embed_ + (size_t)(pos + 2) * H;
        for (int e = 0; e < H; ++e) hr[e] += pe[e];
      }
    }
  }
  Reserve(act_in_, (size_t)R * H);
  Reserve(kr_, (size_t)R * KVD);
  Reserve(vr_, (size_t)R * KVD);

  const AttnShape shape{cfg_.num_heads, cfg_.num_kv_heads, cfg_.head_dim, 1.f / std::sqrt((float)cfg_.head_dim)};
  for (int l = range_.first; l < range_.last; ++l) {
    const LayerWeights& lw = layers_[l];
    Norm(h_.data(), x_.data(), T, lw.attn_norm_w, lw.attn_norm_b);
    // The ACT of a new token is exactly this post-norm x.
    for (int t = 0; t < T; ++t) {
      const BlockRef b = tok_block_[t];
      if (b.kind != CacheKind::ACT) continue;
      float* dst = reinterpret_cast<float*>(pools_.block_ptr(b, l)) + (size_t)(tok_pos_[t] % bt) * H;
      std::memcpy(dst, x_.data() + (size_t)t * H, sizeof(float) * H);
    }
    Linear(T, Q, H, x_.data(), lw.wq, q_.data(), 0.f, lw.bq);
    Linear(T, KVD, H, x_.data(), lw.wk, k_.data(), 0.f, lw.bk);
    Linear(T, KVD, H, x_.data(), lw.wv, v_.data(), 0.f, lw.bv);
    if (llama) {
      for (int t = 0; t < T; ++t) {
        ApplyRope(q_.data() + (size_t)t * Q, cfg_.num_heads, cfg_.head_dim, tok_pos_[t], rope_);
        ApplyRope(k_.data() + (size_t)t * KVD, cfg_.num_kv_heads, cfg_.head_dim, tok_pos_[t], rope_);
      }
    }
    for (int t = 0; t < T; ++t) {
      const BlockRef b = tok_block_[t];
      if (b.kind != CacheKind::KV) continue;
      float* blk = reinterpret_cast<float*>(pools_.block_ptr(b, l));
      const int off = tok_pos_[t] % bt;
      std::memcpy(blk + (size_t)off * KVD, k_.data() + (size_t)t * KVD, sizeof(float) * KVD);
      std::memcpy(blk + (size_t)(bt + off) * KVD, v_.data() + (size_t)t * KVD, sizeof(float) * KVD);
    }
    // Recompute K/V of every ACT-cached position of the step: one gather, two GEMMs (+ RoPE).
    if (R > 0) {
      const auto t0 = Clock::now();
      for (int s = 0; s < S; ++s)
        for (int j = 0; j < plan.seqs[s].start_pos; ++j) {
          const PastRow& pr = past_[past_off_[s] + j];
          if (pr.block.kind != CacheKind::ACT) continue;
          const float* src = reinterpret_cast<const float*>(pools_.block_ptr(pr.block, l)) + (size_t)pr.offset * H;
          std::memcpy(act_in_.data() + (size_t)pr.act_row * H, src, sizeof(float) * H);
        }
      Linear(R, KVD, H, act_in_.data(), lw.wk, kr_.data(), 0.f, lw.bk);
      Linear(R, KVD, H, act_in_.data(), lw.wv, vr_.data(), 0.f, lw.bv);
      if (llama)
        for (int s = 0; s < S; ++s)
          for (int j = 0; j < plan.seqs[s].start_pos; ++j) {
            const PastRow& pr = past_[past_off_[s] + j];
            if (pr.block.kind == CacheKind::ACT)
              ApplyRope(kr_.data() + (size_t)pr.act_row * KVD, cfg_.num_kv_heads, cfg_.head_dim, j, rope_);
          }
      recompute_s += Since(t0);
    }
    // Per-position K/V row pointers: KV blocks in the pool, recomputed rows, or this step's rows.
    for (int s = 0; s < S; ++s) {
      const SeqPlan& sp = plan.seqs[s];
      const size_t base = (size_t)past_off_[s] + tok_off_[s];
      for (int j = 0; j < sp.start_pos; ++j) {
        const PastRow& pr = past_[past_off_[s] + j];
        if (pr.block.kind == CacheKind::KV) {
          const float* blk = reinterpret_cast<const float*>(pools_.block_ptr(pr.block, l));
          kptr_[base + j] = blk + (size_t)pr.offset * KVD;
          vptr_[base + j] = blk + (size_t)(bt + pr.offset) * KVD;
        } else {
          kptr_[base + j] = kr_.data() + (size_t)pr.act_row * KVD;
          vptr_[base + j] = vr_.data() + (size_t)pr.act_row * KVD;
        }
      }
      for (int i = 0; i < sp.num_new; ++i) {
        kptr_[base + sp.start_pos + i] = k_.data() + (size_t)(tok_off_[s] + i) * KVD;
        vptr_[base + sp.start_pos + i] = v_.data() + (size_t)(tok_off_[s] + i) * KVD;
      }
      AttnSeq& as = attn_seqs_[s];
      as.num_new = sp.num_new;
      as.start = sp.start_pos;
      as.q = q_.data() + (size_t)tok_off_[s] * Q;
      as.out = attn_.data() + (size_t)tok_off_[s] * Q;
      as.k = kptr_.data() + base;
      as.v = vptr_.data() + base;
    }
    Attention(attn_seqs_.data(), S, shape, p, attn_scratch_);
    Linear(T, H, Q, attn_.data(), lw.wo, h_.data(), 1.f, lw.bo);
    Norm(h_.data(), x_.data(), T, lw.ffn_norm_w, lw.ffn_norm_b);
    Ffn(T, lw);
  }
  // Logits of each sequence's last new token only (the last stage).
  if (last()) {
    for (int s = 0; s < S; ++s)
      Norm(h_.data() + (size_t)(tok_off_[s + 1] - 1) * H, last_.data() + (size_t)s * H, 1, final_w_, final_b_);
    gemm_nt(S, V, H, last_.data(), H, lm_head_, H, logits, V, 0.f, nullptr, p);
  }

  const int64_t L = range_.count(), e = 4;
  c.weight_bytes_h2d += weight_bytes_per_forward_;
  c.kv_bytes_h2d += (int64_t)past_kv * 2 * KVD * e * L;
  c.act_bytes_h2d += (int64_t)R * H * e * L;
  c.kv_bytes_d2h += (int64_t)new_kv * 2 * KVD * e * L;
  c.act_bytes_d2h += (int64_t)new_act * H * e * L;
  if (first()) c.recomputed_tokens += R;  // tokens, not token-layers: counted once per step
  c.recompute_seconds += recompute_s;
  c.compute_seconds += Since(t_start) - recompute_s;
}

}  // namespace hs::cpu
