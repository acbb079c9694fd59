// Issue 15, acceptance 2 (last part): 2 processes × 1 GPU through the rendezvous give the same
// logits as 1 process × 2 GPUs. Run as two processes (scripts/gpu-run.sh stage pipeline):
//   hs_cuda_pipeline_ranks --rank 1 --world-size 2 --leader-address 127.0.0.1:29511 --device 1 &
//   hs_cuda_pipeline_ranks --rank 0 --world-size 2 --leader-address 127.0.0.1:29511 --device 0
// Rank 0 runs a batch (prompts of 5, 19 and 40 tokens, 8 greedy steps, ACT 0.5, layers streamed)
// through the 2-process pipeline, stops it (rank 1 exits), runs the same batch through the 1-process
// 2-GPU pipeline and prints "ranks: PASS" (exit 0) when the logits agree within 1e-3 and the tokens
// are equal, "ranks: FAIL ..." (exit 1) otherwise.
//
// A lost rank: with `--die-after-s S` rank 1 ends its process S seconds after it started (steps in
// flight, NCCL transfers blocked on it); with `--expect-loss` rank 0 keeps generating until a step
// fails and prints "loss: PASS" (exit 0) when that failure is PeerLostError within 30 s of the
// rank's end, "loss: FAIL ..." otherwise (a hang ends at the caller's timeout).
#include <cuda_runtime.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/errors.h"

#include "core/cache_pools.h"
#include "core/weights.h"
#include "cuda/cuda_backend.h"
#include "pipeline/cuda/cuda_ranks.h"
#include "pipeline/cuda/cuda_stage.h"
#include "presets.h"

namespace {

using namespace hs;
constexpr int kBt = 16, kSteps = 8;
bool g_progress = false;  // rank 0 says each step (not in the loss check, which loops for seconds)

CacheKind KindOf(int b, double a) {
  return std::floor((b + 1) * a + 1e-9) > std::floor(b * a + 1e-9) ? CacheKind::ACT : CacheKind::KV;
}

// Greedy steps over three sequences; returns every step's logits, appends tokens.
std::vector<float> Generate(const ModelConfig& cfg, Backend& be) {
  const int lens[3] = {5, 19, 40};
  std::vector<std::vector<int32_t>> toks(3);
  std::vector<std::vector<BlockRef>> tabs(3);
  uint32_t seed = 12345;
  int kv = 0, act = 0;
  for (int s = 0; s < 3; ++s) {
    for (int i = 0; i < lens[s]; ++i) {
      seed = seed * 1664525u + 1013904223u;
      toks[s].push_back(static_cast<int32_t>((seed >> 8) % cfg.vocab_size));
    }
    for (int b = 0; b * kBt < lens[s] + kSteps; ++b) {
      const CacheKind k = KindOf(b, 0.5);
      tabs[s].push_back({k, k == CacheKind::KV ? kv++ : act++});
    }
  }
  std::vector<float> all;
  std::vector<int> cached(3, 0);
  for (int step = 0; step < kSteps; ++step) {
    BatchPlan plan;
    for (int s = 0; s < 3; ++s)
      plan.seqs.push_back({s, toks[s].data() + cached[s], static_cast<int>(toks[s].size()) - cached[s], cached[s],
                           tabs[s].data(), static_cast<int>(tabs[s].size())});
    std::vector<float> logits(3 * static_cast<size_t>(cfg.vocab_size));
    StepCounters c;
    be.Forward(plan, logits.data(), c);
    if (g_progress) std::fprintf(stderr, "rank 0: step %d done\n", step);  // where a hang is, in the log
    for (int s = 0; s < 3; ++s) {
      cached[s] = static_cast<int>(toks[s].size());
      const float* l = logits.data() + static_cast<size_t>(s) * cfg.vocab_size;
      toks[s].push_back(static_cast<int32_t>(std::max_element(l, l + cfg.vocab_size) - l));
    }
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

// Rank 0 of --expect-loss: steps until one fails; the failure must be a lost peer, in time.
int ExpectLoss(const ModelConfig& cfg, Backend& be, double die_after_s) {
  const auto t0 = std::chrono::steady_clock::now();
  int rounds = 0;
  try {
    for (;; ++rounds) {
      Generate(cfg, be);
      if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(120)) break;
    }
    std::printf("loss: FAIL (no step failed in 120 s)\n");
    return 1;
  } catch (const std::exception& e) {
    const double at = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const bool ok = CodeOf(e) == ErrorCode::PeerLost && at < die_after_s + 30;
    std::printf("loss: %s (after %d rounds, %.1f s, %s: %s)\n", ok ? "PASS" : "FAIL", rounds, at,
                ErrorCodeName(CodeOf(e)), e.what());
    return ok ? 0 : 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // a run killed at the caller's timeout still shows where it was
  pipeline::RankOptions r;
  int device = 0;
  double die_after_s = 0;
  bool expect_loss = false;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--expect-loss") {
      expect_loss = true;
      continue;
    }
    if (i + 1 >= argc) break;
    const std::string v = argv[++i];
    if (k == "--die-after-s")
      die_after_s = std::atof(v.c_str());
    else if (k == "--rank")
      r.rank = std::atoi(v.c_str());
    else if (k == "--world-size")
      r.world_size = std::atoi(v.c_str());
    else if (k == "--leader-address")
      r.leader_address = v;
    else if (k == "--device")
      device = std::atoi(v.c_str());
  }
  r.timeout_s = 120;
  try {
    ModelConfig cfg = cudatest::Preset("opt-tiny");
    cfg.num_layers = 4;
    WeightSource src;
    src.seed = 7;
    if (r.rank > 0) {  // only its stage's layers, as a pod of a multi-node group holds
      const pipeline::LayerRange mine = pipeline::SplitLayers(cfg.num_layers, r.world_size)[r.rank];
      src.first_layer = mine.first;
      src.last_layer = mine.last;
    }
    HostWeights w(cfg, src, DType::F16, cuda::PinnedAlloc, cuda::PinnedFree);
    CachePools pools(cfg, PoolConfig{kBt, 16, 16, DType::F16, 0}, cuda::PinnedAlloc, cuda::PinnedFree,
                     cuda::DeviceAlloc, cuda::DeviceFree);
    cuda::CudaOptions o;
    o.device = device;
    o.resident_layers = 0;
    if (r.rank > 0) {
      if (die_after_s > 0)
        std::thread([die_after_s] {
          std::this_thread::sleep_for(std::chrono::duration<double>(die_after_s));
          std::fprintf(stderr, "rank: ending this process now (--die-after-s)\n");
          _exit(9);
        }).detach();
      pipeline::RunCudaRank(cfg, w, o, r);
      std::printf("rank %d: leader stopped\n", r.rank);
      return 0;
    }
    if (expect_loss) {
      auto be = pipeline::MakeCudaLeader(cfg, w, pools, o, r);
      return ExpectLoss(cfg, *be, 10);
    }
    std::vector<float> multi;
    {
      auto be = pipeline::MakeCudaLeader(cfg, w, pools, o, r);
      std::fprintf(stderr, "rank 0: the group joined\n");
      g_progress = true;
      multi = Generate(cfg, *be);
    }
    o.device = 0;
    auto two = pipeline::MakeCudaPipeline(cfg, w, pools, o, 2);
    const std::vector<float> local = Generate(cfg, *two);
    double d = 0;
    for (size_t i = 0; i < local.size(); ++i) d = std::max(d, static_cast<double>(std::fabs(local[i] - multi[i])));
    const bool ok = multi.size() == local.size() && d <= 1e-3;
    std::printf("ranks: %s (2 processes x 1 GPU vs 1 process x 2 GPUs: max|diff| %.3g over %zu logits)\n",
                ok ? "PASS" : "FAIL", d, local.size());
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hs_cuda_pipeline_ranks rank %d: %s\n", r.rank, e.what());
    return 1;
  }
}
