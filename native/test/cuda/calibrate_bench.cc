// Decode-step calibration bench for the planner (issue 4, acceptance 3): measures the mean decode
// step time of the CUDA backend for many ACT fractions with the weights pinned once and the cache
// pools pinned once per group of fractions (pinning is what dominates hs_cuda_bench's wall time on
// the GPU host: ~1 GB/s for synthetic weights, ~2.7 GB/s for pools).
//
// Same regime as hs_cuda_bench: synthetic fp16 weights and KV/ACT pools in pinned host memory,
// every layer streamed (--resident-layers 0), 16-token blocks, kinds spread evenly by the fraction,
// 4 mini-batches. Difference: no prefill. Every sequence already holds --context cached tokens
// (the pools are zero pages from cudaHostAlloc; a decode step's copies and GEMMs do not depend on
// the values), and each fraction runs --warmup untimed then --steps timed decode steps at
// positions context, context+1, …. So --context 528 reproduces the mean step of a prompt-512,
// gen-32 run (mean context prompt + gen/2, the planner's convention).
//
// Usage: hs_calibrate_bench --model opt-13b --batch 128 --context 528 --max-tokens 544
//          --fractions "0,0.1,0.2;0.6,1" [--steps 3] [--warmup 1] [--mini-batches 4]
// `;` separates pool groups: each group's pools are sized for the largest KV and ACT block counts of
// its fractions and reused by all of them. One JSON line per fraction on stdout (flushed), progress
// on stderr.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/cache_pools.h"
#include "core/weights.h"
#include "cuda/cuda_backend.h"
#include "presets.h"

namespace {

using namespace hs;

double Seconds(std::chrono::steady_clock::time_point a) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
}

// Block b of a sequence is ACT when floor((b+1)·a) > floor(b·a): the kinds spread evenly (as hs_cuda_bench).
CacheKind KindOf(int b, double a) {
  return std::floor((b + 1) * a + 1e-9) > std::floor(b * a + 1e-9) ? CacheKind::ACT : CacheKind::KV;
}

std::vector<std::vector<double>> ParseGroups(const std::string& s) {
  std::vector<std::vector<double>> groups;
  std::stringstream gs(s);
  std::string g;
  while (std::getline(gs, g, ';')) {
    std::vector<double> fr;
    std::stringstream fs(g);
    std::string f;
    while (std::getline(fs, f, ','))
      if (!f.empty()) {
        const double a = std::stod(f);
        if (!(a >= 0 && a <= 1)) throw std::invalid_argument("fraction out of [0,1]: " + f);
        fr.push_back(a);
      }
    if (!fr.empty()) groups.push_back(fr);
  }
  if (groups.empty()) throw std::invalid_argument("--fractions is empty");
  return groups;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model = "opt-13b", fractions = "0,0.5,1";
  int batch = 128, context = 528, max_tokens = 544, steps = 3, warmup = 1, mini = 4;
  const int bt = 16;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--model")
      model = v;
    else if (k == "--batch")
      batch = std::stoi(v);
    else if (k == "--context")
      context = std::stoi(v);
    else if (k == "--max-tokens")
      max_tokens = std::stoi(v);
    else if (k == "--fractions")
      fractions = v;
    else if (k == "--steps")
      steps = std::stoi(v);
    else if (k == "--warmup")
      warmup = std::stoi(v);
    else if (k == "--mini-batches")
      mini = std::stoi(v);
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  try {
    if (batch <= 0 || steps <= 0 || warmup < 0 || context < 1)
      throw std::invalid_argument("bad batch/steps/warmup/context");
    if (context + warmup + steps > max_tokens)
      throw std::invalid_argument("--max-tokens must cover context + warmup + steps");
    const auto groups = ParseGroups(fractions);
    const ModelConfig cfg = cudatest::Preset(model);
    const cuda::CudaProbe probe = cuda::ProbeDevice(0);
    std::fprintf(stderr, "[calib] probe: h2d %.1f GB/s, d2h %.1f GB/s, gemm %.0f TFLOP/s\n",
                 probe.h2d_bytes_per_second / 1e9, probe.d2h_bytes_per_second / 1e9, probe.gemm_flops / 1e12);
    auto t0 = std::chrono::steady_clock::now();
    WeightSource src;
    src.synthetic = true;
    src.seed = 1;
    HostWeights w(cfg, src, DType::F16, cuda::PinnedAlloc, cuda::PinnedFree);
    std::fprintf(stderr, "[calib] %s weights: %.1f GB pinned in %.1f s\n", model.c_str(), w.total_bytes() / 1e9,
                 Seconds(t0));

    const int bps = (max_tokens + bt - 1) / bt;
    // Random token ids; only position start_pos is read in a decode step.
    std::vector<std::vector<int32_t>> toks(batch, std::vector<int32_t>(max_tokens));
    uint32_t rng = 99;
    for (auto& t : toks)
      for (auto& x : t) {
        rng = rng * 1664525u + 1013904223u;
        x = static_cast<int32_t>((rng >> 8) % cfg.vocab_size);
      }
    std::vector<float> logits(static_cast<size_t>(batch) * cfg.vocab_size);

    // Pools for a group; when pinning that much fails (host memory), split the group in halves.
    std::function<void(const std::vector<double>&)> run_group = [&](const std::vector<double>& group) {
      int max_kv = 0, max_act = 0;
      for (double a : group) {
        int kv = 0;
        for (int b = 0; b < bps; ++b) kv += KindOf(b, a) == CacheKind::KV;
        max_kv = std::max(max_kv, kv * batch);
        max_act = std::max(max_act, (bps - kv) * batch);
      }
      t0 = std::chrono::steady_clock::now();
      std::unique_ptr<CachePools> pools_ptr;
      try {
        pools_ptr = std::make_unique<CachePools>(cfg, PoolConfig{bt, max_kv, max_act, DType::F16}, cuda::PinnedAlloc,
                                                 cuda::PinnedFree);
      } catch (const std::runtime_error& e) {
        if (group.size() < 2) throw;
        std::fprintf(stderr, "[calib] %s: splitting the group\n", e.what());
        const auto mid = group.begin() + static_cast<std::ptrdiff_t>(group.size() / 2);
        run_group(std::vector<double>(group.begin(), mid));
        run_group(std::vector<double>(mid, group.end()));
        return;
      }
      CachePools& pools = *pools_ptr;
      const double pool_s = Seconds(t0);
      std::fprintf(stderr, "[calib] pools: %d KV + %d ACT blocks pinned in %.1f s\n", max_kv, max_act, pool_s);

      for (double a : group) {
        std::vector<std::vector<BlockRef>> tables(batch);
        int nkv = 0, nact = 0;
        for (int s = 0; s < batch; ++s)
          for (int b = 0; b < bps; ++b) {
            const CacheKind k = KindOf(b, a);
            tables[s].push_back({k, k == CacheKind::KV ? nkv++ : nact++});
          }
        cuda::CudaOptions o;
        o.resident_layers = 0;
        auto be = cuda::MakeCudaBackend(cfg, w, pools, o);
        const std::string card = be->Info().device_name;
        const int K = std::max(1, std::min(mini, batch));
        StepCounters dec{};
        std::vector<double> times;
        for (int step = 0; step < warmup + steps; ++step) {
          BatchPlan plan;
          plan.mini_batches.assign(K, {});
          for (int s = 0; s < batch; ++s) {
            SeqPlan sp;
            sp.id = s;
            sp.start_pos = context + step;
            sp.num_new = 1;
            sp.tokens = toks[s].data() + sp.start_pos;
            sp.blocks = tables[s].data();
            sp.num_blocks = bps;
            plan.seqs.push_back(sp);
            plan.mini_batches[static_cast<size_t>(s) * K / batch].push_back(s);
          }
          StepCounters c{};
          const auto ts = std::chrono::steady_clock::now();
          be->Forward(plan, logits.data(), c);
          const double dt = Seconds(ts);
          std::fprintf(
              stderr,
              "[calib] %s a=%.2f step %d (ctx %d): %.4f s (transfer %.3f compute %.3f recompute %.3f idle %.3f)%s\n",
              model.c_str(), a, step, context + step, dt, c.transfer_seconds, c.compute_seconds, c.recompute_seconds,
              c.idle_seconds, step < warmup ? " warmup" : "");
          if (step >= warmup) {
            times.push_back(dt);
            dec += c;
          }
        }
        double mean = 0, mn = 1e30, mx = 0;
        for (double t : times) mean += t, mn = std::min(mn, t), mx = std::max(mx, t);
        mean /= times.size();
        const double n = steps;
        std::printf(
            "{\"model\":\"synthetic:%s\",\"card\":\"%s\",\"batch\":%d,\"context\":%d,\"meanContext\":%.1f,"
            "\"actFraction\":%.4f,"
            "\"kvBlocks\":%d,\"actBlocks\":%d,\"blocksPerSeq\":%d,\"blockTokens\":%d,\"residentLayers\":0,"
            "\"miniBatches\":%d,"
            "\"steps\":%d,\"meanDecodeStepSeconds\":%.5f,\"minDecodeStepSeconds\":%.5f,\"maxDecodeStepSeconds\":%.5f,"
            "\"decodeTokensPerSecond\":%.2f,\"bytesPerDecodeStep\":{\"weightsH2D\":%.0f,\"kvH2D\":%.0f,\"actH2D\":%.0f,"
            "\"kvD2H\":%.0f,\"actD2H\":%.0f},\"decodePhaseSecondsPerStep\":{\"transfer\":%.4f,\"compute\":%.4f,"
            "\"recompute\":%.4f,\"idle\":%.4f},\"recomputedTokensPerStep\":%.0f,\"probedH2DGBps\":%.2f,"
            "\"probedD2HGBps\":%.2f,"
            "\"probedGemmTflops\":%.1f,\"poolPinSeconds\":%.1f,\"driver\":\"calibrate\"}\n",
            model.c_str(), card.c_str(), batch, context, context + warmup + (steps - 1) / 2.0, a, nkv, nact, bps, bt, K,
            steps, mean, mn, mx, batch / mean, dec.weight_bytes_h2d / n, dec.kv_bytes_h2d / n, dec.act_bytes_h2d / n,
            dec.kv_bytes_d2h / n, dec.act_bytes_d2h / n, dec.transfer_seconds / n, dec.compute_seconds / n,
            dec.recompute_seconds / n, dec.idle_seconds / n, dec.recomputed_tokens / n,
            probe.h2d_bytes_per_second / 1e9, probe.d2h_bytes_per_second / 1e9, probe.gemm_flops / 1e12, pool_s);
        std::fflush(stdout);
      }
    };
    for (const auto& group : groups) run_group(group);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hs_calibrate_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
