// Shared by the pipeline-over-processes tests (pipeline_remote_test.cc, pipeline_loss_test.cc,
// pipeline_sockets_test.cc): a sample plan, error capture, a tiny model and its per-rank slices,
// a loopback leader, and a box that records what a LinkWatch reports.
#pragma once
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/errors.h"
#include "cpu/cpu_backend.h"
#include "pipeline/layer_split.h"
#include "pipeline/loopback_transport.h"
#include "pipeline/pipeline_backend.h"
#include "pipeline/remote.h"
#include "pipeline/rendezvous.h"
#include "test_util.h"

namespace hs::pipeline::testing {

inline BatchPlan SamplePlan(std::vector<int32_t>& t0, std::vector<int32_t>& t1, std::vector<BlockRef>& b0,
                            std::vector<BlockRef>& b1) {
  t0 = {3, 4, 5};
  t1 = {9};
  b0 = {{CacheKind::KV, 2, Tier::Host}};
  b1 = {{CacheKind::ACT, 7, Tier::Host}, {CacheKind::KV, 1, Tier::Device}};
  BatchPlan p;
  p.seqs.push_back({11, t0.data(), 3, 0, b0.data(), 1});
  p.seqs.push_back({-5, t1.data(), 1, 17, b1.data(), 2});
  p.mini_batches = {{1}, {0}};
  return p;
}

template <class F>
inline std::string ErrorOf(F f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// A tiny Llama of `layers` layers, its weight source and pools of `blocks` KV and ACT blocks of 4 tokens.
struct Tiny {
  ModelConfig cfg;
  WeightSource src;
  PoolConfig pc;
};
inline Tiny TinyModel(int layers, uint64_t seed, int blocks) {
  Tiny t{test::TinyLlama(2), {}, {}};
  t.cfg.num_layers = layers;
  t.src.seed = seed;
  t.pc.block_tokens = 4;
  t.pc.kv_blocks = t.pc.act_blocks = blocks;
  return t;
}

// Only `r`'s layers of the weights or the cache, as a pod of a multi-node group holds them.
inline WeightSource SliceOf(WeightSource src, LayerRange r) {
  src.first_layer = r.first;
  src.last_layer = r.last;
  return src;
}
inline PoolConfig SliceOf(PoolConfig pc, LayerRange r) {
  pc.first_layer = r.first;
  pc.last_layer = r.last;
  return pc;
}

// Rank 0 of a 2-rank pipeline over the loopback hubs: its CPU stage and the remote rank 1.
inline std::unique_ptr<PipelineBackend> LoopbackLeader(const Tiny& t, const HostWeights& w, CachePools& pools,
                                                       std::unique_ptr<LeaderLink> link, LoopbackHub& acts,
                                                       LoopbackHub& logits) {
  std::vector<std::unique_ptr<Stage>> stages;
  stages.push_back(std::make_unique<cpu::CpuBackend>(t.cfg, w, pools, 1, SplitLayers(t.cfg.num_layers, 2)[0]));
  std::vector<std::unique_ptr<Transport>> eps;
  eps.push_back(acts.Endpoint(0));
  auto remote =
      std::make_unique<LinkedRemoteRanks>(std::move(link), HostLogitsChannel(logits.Endpoint(0), 1), t.cfg.vocab_size);
  return std::make_unique<PipelineBackend>(std::move(stages), std::move(eps), nullptr, nullptr, std::move(remote));
}

using Clock = std::chrono::steady_clock;

// Records what a LinkWatch reports, for a test thread to wait on.
struct LostBox {
  std::mutex mu;
  std::condition_variable cv;
  std::string why;
  void Set(const std::string& w) {
    std::lock_guard<std::mutex> lock(mu);
    if (why.empty()) why = w;
    cv.notify_all();
  }
  std::string Wait(double seconds) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, std::chrono::duration<double>(seconds), [&] { return !why.empty(); });
    return why;
  }
};

template <class F>
inline ErrorCode CodeOfCall(F f) {
  try {
    f();
  } catch (const std::exception& e) {
    return CodeOf(e);
  }
  return ErrorCode::Internal;
}

}  // namespace hs::pipeline::testing
