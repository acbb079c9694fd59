#include "core/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <string>

#include "core/block_plan.h"
#include "core/errors.h"
#include "core/mini_batches.h"

namespace hs {

Engine::Engine(const ModelConfig& cfg, EngineParts parts, double act_fraction, bool prefix_caching)
    : cfg_(cfg), parts_(std::move(parts)), act_fraction_(0) {
  blocks_ = std::make_unique<BlockManager>(*parts_.pools, prefix_caching);
  SetActFraction(act_fraction);
}

// The backend references the pools and weights: release it first.
Engine::~Engine() {
  parts_.backend.reset();
  blocks_.reset();
  parts_.pools.reset();
  parts_.weights.reset();
}

void Engine::SetActFraction(double f) {
  if (!(f >= 0 && f <= 1)) throw RangeErrorEx("actFraction must be in [0, 1], got " + std::to_string(f));
  act_fraction_ = f;
}

void Engine::SetMiniBatchTokens(int tokens) {
  if (tokens < 0) throw RangeErrorEx("miniBatchTokens must be >= 0, got " + std::to_string(tokens));
  mini_batch_tokens_ = tokens;
}

Sequence& Engine::Find(int64_t id) {
  auto it = seqs_.find(id);
  if (it == seqs_.end() || it->second->remove_after_step)
    throw RangeErrorEx("unknown sequence id " + std::to_string(id), ErrorCode::UnknownSequence);
  return *it->second;
}

const Sequence& Engine::Find(int64_t id) const { return const_cast<Engine*>(this)->Find(id); }

bool Engine::EnsureBlocks(Sequence& s, int positions) {
  const int need = BlocksFor(positions, parts_.pools->block_tokens());
  while ((int)s.blocks.size() < need) {
    const int host_blocks = (int)s.blocks.size() - s.count_device_blocks();
    const BlockChoice want = NextBlock(host_blocks, FractionOf(s), blocks_->available(PoolId::DeviceKv) > 0);
    if (want.tier == Tier::Device) {
      s.blocks.push_back({CacheKind::KV, blocks_->Allocate(PoolId::DeviceKv), Tier::Device});
      continue;
    }
    int32_t idx = blocks_->Allocate(HostPool(want.kind));
    CacheKind got = want.kind;
    if (idx < 0) {  // the wanted host pool is empty: fall back to the other kind
      got = OtherKind(want.kind);
      idx = blocks_->Allocate(HostPool(got));
    }
    if (idx < 0) return false;
    s.blocks.push_back({got, idx, Tier::Host});
  }
  return true;
}

// Tail blocks are released first, so that they are the first idle-cached blocks evicted: a
// prefix's head, shared by more prompts, outlives its tail.
void Engine::ReleaseBlocks(Sequence& s) {
  for (auto it = s.blocks.rbegin(); it != s.blocks.rend(); ++it) blocks_->Release(*it);
  s.blocks.clear();
  s.published_blocks = 0;
  s.chain_hash = kRootBlockHash;
}

// Full blocks of the prompt found in the prefix cache, walking the hash chain from the start.
int Engine::MatchCachedPrefix(const int32_t* tokens, int n, int* idle_matched) const {
  const int bt = parts_.pools->block_tokens();
  uint64_t parent = kRootBlockHash;
  int matched = 0;
  *idle_matched = 0;
  for (int b = 0; (b + 1) * bt <= n; ++b) {
    auto hit = blocks_->Lookup(parent, tokens + b * bt, bt);
    if (!hit) break;
    if (blocks_->refs(*hit) == 0) ++*idle_matched;
    parent = BlockChainHash(parent, tokens + b * bt, bt);
    ++matched;
  }
  return matched;
}

void Engine::AttachCachedPrefix(Sequence& s, int matched_blocks) {
  const int bt = parts_.pools->block_tokens();
  const int32_t* tokens = s.tokens.data();
  for (int b = 0; b < matched_blocks; ++b) {
    const BlockRef ref = *blocks_->Lookup(s.chain_hash, tokens + b * bt, bt);
    blocks_->Share(ref);
    s.blocks.push_back(ref);
    s.chain_hash = BlockChainHash(s.chain_hash, tokens + b * bt, bt);
  }
  s.published_blocks = matched_blocks;
  s.cached = matched_blocks * bt;
  if (s.cached == s.length()) {
    // Every prompt token is cached, but the last one must run again to give logits, and running it
    // writes its cache into the last block, which others share. A host block is copied first
    // (copy-on-write); a GPU-tier block is not shared at all (its bytes are device memory): the
    // last block's tokens run again into a fresh block.
    const BlockRef shared = s.blocks.back();
    s.published_blocks = matched_blocks - 1;
    s.chain_hash = kRootBlockHash;
    for (int b = 0; b < s.published_blocks; ++b) s.chain_hash = BlockChainHash(s.chain_hash, tokens + b * bt, bt);
    if (shared.tier == Tier::Host) {
      const int32_t copy = blocks_->Allocate(HostPool(shared.kind));  // a block is free: AddSequence checked
      parts_.pools->CopyBlock(shared.kind, shared.index, copy);
      blocks_->Release(shared);
      s.blocks.back() = {shared.kind, copy, Tier::Host};
      s.cached = s.length() - 1;
    } else {
      blocks_->Release(shared);
      s.blocks.pop_back();
      s.cached = s.published_blocks * bt;
    }
  }
  s.prefix_hit_tokens = s.cached;
}

void Engine::PublishFullBlocks(Sequence& s) {
  if (!blocks_->prefix_caching()) return;
  const int bt = parts_.pools->block_tokens();
  while ((s.published_blocks + 1) * bt <= s.cached && s.published_blocks < (int)s.blocks.size()) {
    const int32_t* t = s.tokens.data() + (size_t)s.published_blocks * bt;
    blocks_->Publish(s.chain_hash, t, bt, s.blocks[s.published_blocks]);
    s.chain_hash = BlockChainHash(s.chain_hash, t, bt);
    ++s.published_blocks;
  }
}

// The logit processors' inputs: finite, in range, token ids inside the vocabulary.
static void CheckSamplingExtras(const SamplingParams& sp, int n, int prompt_tokens, int vocab) {
  auto finite = [](float v, const char* name) {
    if (!std::isfinite(v)) throw RangeErrorEx(std::string(name) + " must be finite");
  };
  finite(sp.presence_penalty, "presencePenalty");
  finite(sp.frequency_penalty, "frequencyPenalty");
  if (!(sp.repetition_penalty > 0) || !std::isfinite(sp.repetition_penalty))
    throw RangeErrorEx("repetitionPenalty must be > 0");
  if (!(sp.min_p >= 0 && sp.min_p <= 1)) throw RangeErrorEx("minP must be in [0, 1]");
  if (sp.min_tokens < 0) throw RangeErrorEx("minTokens must be >= 0");
  if (sp.logprobs < -1 || sp.logprobs > kMaxLogprobs)
    throw RangeErrorEx("logprobs must be in [-1, " + std::to_string(kMaxLogprobs) + "]");
  if (prompt_tokens > n) throw RangeErrorEx("promptTokens must be <= the number of tokens");
  auto in_vocab = [vocab](int32_t id, const char* what) {
    if (id < 0 || id >= vocab)
      throw RangeErrorEx(std::string(what) + " token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                         std::to_string(vocab) + ")");
  };
  for (int32_t id : sp.stop_token_ids) in_vocab(id, "stopTokenIds");
  for (const auto& [id, bias] : sp.logit_bias) {
    in_vocab(id, "logitBias");
    finite(bias, "logitBias value");
  }
}

int64_t Engine::AddSequence(const int32_t* tokens, int n, const SequenceOptions& opts) {
  if (n <= 0) throw RangeErrorEx("token list is empty");
  if (n > cfg_.max_positions)
    throw RangeErrorEx("prompt has " + std::to_string(n) + " tokens, more than maxPositions (" +
                       std::to_string(cfg_.max_positions) + ")");
  for (int i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= cfg_.vocab_size)
      throw RangeErrorEx("token id " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                         " is outside the vocabulary [0, " + std::to_string(cfg_.vocab_size) + ")");
  if (opts.act_fraction >= 0 && opts.act_fraction > 1)
    throw RangeErrorEx("actFraction must be in [0, 1], got " + std::to_string(opts.act_fraction));
  const SamplingParams& sp = opts.sampling;
  if (!(sp.temperature >= 0) || !std::isfinite(sp.temperature))
    throw RangeErrorEx("temperature must be a finite number >= 0");
  if (sp.top_k < 0) throw RangeErrorEx("topK must be >= 0");
  if (!(sp.top_p > 0 && sp.top_p <= 1)) throw RangeErrorEx("topP must be in (0, 1]");
  CheckSamplingExtras(sp, n, opts.prompt_tokens, cfg_.vocab_size);

  const CachePools& pools = *parts_.pools;
  const int bt = pools.block_tokens();
  int idle_matched = 0;
  int matched = blocks_->prefix_caching() ? MatchCachedPrefix(tokens, n, &idle_matched) : 0;
  // New blocks: those past the cached prefix, plus one copy when the whole prompt is cached.
  // Matched idle blocks stop being available once shared.
  const int need = BlocksFor(n, bt) - matched + (matched * bt == n ? 1 : 0);
  const int kv_free = blocks_->available(PoolId::HostKv), act_free = blocks_->available(PoolId::HostAct);
  const int gpu_free = blocks_->available(PoolId::DeviceKv);
  if (need > kv_free + act_free + gpu_free - idle_matched)
    throw RangeErrorEx("out of cache blocks: need " + std::to_string(need) + " blocks, KV free " +
                           std::to_string(kv_free) + ", ACT free " + std::to_string(act_free) +
                           (pools.total_device_blocks() ? ", GPU KV free " + std::to_string(gpu_free) : ""),
                       ErrorCode::OutOfBlocks);
  auto seq = std::make_unique<Sequence>();
  seq->id = next_id_++;
  seq->tokens.assign(tokens, tokens + n);
  seq->act_fraction = opts.act_fraction;
  seq->sampling = sp;
  seq->prompt_len = opts.prompt_tokens < 0 ? n : opts.prompt_tokens;
  seq->rng = Rng(sp.seed);
  seq->chain_hash = kRootBlockHash;
  if (matched > 0) AttachCachedPrefix(*seq, matched);
  if (blocks_->prefix_caching()) {
    blocks_->stats().query_tokens += n;
    blocks_->stats().hit_tokens += seq->prefix_hit_tokens;
  }
  EnsureBlocks(*seq, n);  // cannot fail: enough blocks were free
  const int64_t id = seq->id;
  seqs_[id] = std::move(seq);
  return id;
}

void Engine::RemoveSequence(int64_t id) {
  Sequence& s = Find(id);
  if (s.in_step) {  // the running step still reads its blocks
    s.remove_after_step = true;
    return;
  }
  ReleaseBlocks(s);
  seqs_.erase(id);
}

SequenceInfo Engine::GetSequence(int64_t id) const {
  const Sequence& s = Find(id);
  SequenceInfo info;
  info.id = s.id;
  info.length = s.length();
  info.cached_tokens = s.cached;
  info.prefix_hit_tokens = s.prefix_hit_tokens;
  info.kv_blocks = s.count_blocks(CacheKind::KV);
  info.act_blocks = s.count_blocks(CacheKind::ACT);
  info.gpu_kv_blocks = s.count_device_blocks();
  return info;
}

bool Engine::busy() const {
  for (const Job& j : jobs_)
    if (j.busy) return true;
  return false;
}

void Engine::PrepareStep(const int64_t* ids, int n, bool want_logits, int slot) {
  if (slot < 0 || slot >= kMaxSlots)
    throw RangeErrorEx("step slot must be in [0, " + std::to_string(kMaxSlots) + "), got " + std::to_string(slot));
  Job& j = jobs_[slot];
  if (j.busy) throw BusyError();
  j.ids.assign(ids, ids + n);
  // Validate every id before touching any state, so a bad call changes nothing.
  for (int i = 0; i < n; ++i) {
    Sequence& s = Find(ids[i]);
    for (int k = 0; k < i; ++k)
      if (ids[k] == ids[i]) throw RangeErrorEx("sequence id " + std::to_string(ids[i]) + " appears twice in one step");
    if (s.length() > cfg_.max_positions)
      throw RangeErrorEx("sequence " + std::to_string(ids[i]) + " has reached maxPositions (" +
                         std::to_string(cfg_.max_positions) + ")");
    if (s.in_step) throw RangeErrorEx("sequence " + std::to_string(ids[i]) + " is in another step in flight");
  }
  j.run.clear();
  j.run_index.clear();
  j.status.assign(n, (int32_t)SeqStatus::Ok);
  j.plan.seqs.clear();
  j.want_logits = want_logits;
  j.counters = StepCounters{};
  for (int i = 0; i < n; ++i) {
    Sequence& s = Find(ids[i]);
    if (!EnsureBlocks(s, s.length())) {
      j.status[i] = (int32_t)SeqStatus::OutOfBlocks;
      continue;
    }
    j.run.push_back(&s);
    j.run_index.push_back(i);
  }
  for (Sequence* s : j.run) {
    SeqPlan sp;
    sp.id = s->id;
    sp.tokens = s->tokens.data() + s->cached;
    sp.num_new = s->length() - s->cached;
    sp.start_pos = s->cached;
    sp.blocks = s->blocks.data();
    sp.num_blocks = (int)s->blocks.size();
    j.plan.seqs.push_back(sp);
    s->in_step = true;
    if (s->cached == 0 || sp.num_new > 1)
      j.counters.prefill_tokens += sp.num_new;
    else
      j.counters.decode_tokens += sp.num_new;
  }
  j.plan.mini_batches = PackMiniBatches(j.plan, parts_.pools->block_tokens(), mini_batch_tokens_);
  const size_t need = j.run.size() * (size_t)cfg_.vocab_size;
  if (j.logits.size() < need) j.logits.resize(need);
  j.sampled.assign(j.run.size(), -1);
  // Logprob buffers only when a sequence in the step asked: top_n columns, -1 / NaN padded.
  j.top_n = -1;
  for (Sequence* s : j.run) j.top_n = std::max(j.top_n, std::min(s->sampling.logprobs, cfg_.vocab_size));
  if (j.top_n >= 0) {
    j.logprob.assign(j.run.size(), std::nanf(""));
    j.top_ids.assign(j.run.size() * (size_t)j.top_n, -1);
    j.top_lps.assign(j.run.size() * (size_t)j.top_n, std::nanf(""));
  }
  j.busy = true;
}

void Engine::RunStep(int slot) {
  Job& j = jobs_.at(slot);
  const auto t0 = std::chrono::steady_clock::now();
  // Greedy steps (the throughput benchmarks' and most batch jobs') let the backend pick the tokens
  // where the logits are: on a GPU, one int per sequence crosses to the host instead of a row of
  // logits, and the host scans nothing.
  bool greedy = !j.want_logits;
  for (const Sequence* s : j.run) greedy = greedy && s->sampling.plain_greedy();
  if (!j.run.empty()) {
    Backend& b = *parts_.backend;
    std::unique_lock<std::mutex> one_at_a_time(forward_mu_, std::defer_lock);
    if (!b.concurrent_forward()) one_at_a_time.lock();
    if (greedy)
      b.ForwardGreedy(j.plan, cfg_.vocab_size, j.sampled.data(), j.logits, j.counters);
    else
      b.Forward(j.plan, j.logits.data(), j.counters);
  }
  for (size_t r = 0; r < j.run.size() && !greedy; ++r) {
    Sequence& s = *j.run[r];
    const float* row = j.logits.data() + r * cfg_.vocab_size;
    const SeqTokens seq{s.tokens.data(), s.length(), s.prompt_len};
    j.sampled[r] = SampleNext(row, cfg_.vocab_size, s.sampling, seq, s.rng, j.sampler);
    if (s.sampling.logprobs >= 0) {
      const size_t at = r * (size_t)j.top_n;
      j.logprob[r] = ComputeLogprobs(row, cfg_.vocab_size, j.sampled[r], s.sampling.logprobs, j.top_ids.data() + at,
                                     j.top_lps.data() + at, j.sampler)
                         .logprob;
    }
  }
  j.counters.steps = 1;
  j.counters.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

StepResult Engine::FinishStep(bool ran_ok, int slot) {
  Job& j = jobs_.at(slot);
  StepResult out;
  const int n = (int)j.ids.size();
  out.tokens.assign(n, -1);
  out.status = j.status;
  if (j.want_logits && ran_ok) out.logits.assign((size_t)n * cfg_.vocab_size, 0.f);
  const bool lps = ran_ok && j.top_n >= 0;
  if (lps) {
    out.top_n = j.top_n;
    out.logprobs.assign(n, std::nanf(""));
    out.top_ids.assign((size_t)n * j.top_n, -1);
    out.top_logprobs.assign((size_t)n * j.top_n, std::nanf(""));
  }
  for (size_t r = 0; r < j.run.size(); ++r) {
    Sequence& s = *j.run[r];
    s.in_step = false;
    if (ran_ok) {
      s.cached = s.length();
      PublishFullBlocks(s);
      s.tokens.push_back(j.sampled[r]);
      out.tokens[j.run_index[r]] = j.sampled[r];
      if (lps) {
        const size_t from = r * (size_t)j.top_n, to = (size_t)j.run_index[r] * j.top_n;
        out.logprobs[j.run_index[r]] = j.logprob[r];
        std::copy_n(j.top_ids.begin() + from, j.top_n, out.top_ids.begin() + to);
        std::copy_n(j.top_lps.begin() + from, j.top_n, out.top_logprobs.begin() + to);
      }
      if (j.want_logits)
        std::memcpy(out.logits.data() + (size_t)j.run_index[r] * cfg_.vocab_size, j.logits.data() + r * cfg_.vocab_size,
                    sizeof(float) * cfg_.vocab_size);
    }
    if (s.remove_after_step) {
      ReleaseBlocks(s);
      seqs_.erase(s.id);
    }
  }
  if (ran_ok) {
    out.counters = j.counters;
    totals_ += j.counters;
  }
  j.run.clear();
  j.busy = false;
  return out;
}

StepResult Engine::Step(const std::vector<int64_t>& ids, bool want_logits) {
  PrepareStep(ids.data(), (int)ids.size(), want_logits);
  try {
    RunStep();
  } catch (...) {
    FinishStep(false);
    throw;
  }
  return FinishStep(true);
}

}  // namespace hs
