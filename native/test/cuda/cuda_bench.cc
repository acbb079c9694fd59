// Native offloading benchmark of the CUDA backend (the engine-level numbers of issue 3 without
// Node): synthetic fp16 weights in pinned host memory, every layer streamed (--resident-layers 0),
// KV/ACT blocks in pinned host pools, greedy decoding. One JSON line per ACT fraction, with
// throughput counted as the offloading literature does:
//   total  = batch × gen ÷ (prefill + decode time)       decode = batch × (gen − 1) ÷ decode time
// Usage: hs_cuda_bench --model opt-13b --batch 128 --prompt 512 --gen 32 --act-fraction 0,auto
//        [--gpu-memory 40G] [--resident-layers 0] [--mini-batches 4] [--host-cache 48G]
//        [--gpu-cache-blocks N|all] [--hbm-gbps 4800] [--weight-dtype fp16,fp8,int8,int4]
// --weight-dtype (issue 14) is a list: each format's pinned weights are built in turn (the previous
// freed first) and every --act-fraction entry runs for each; the JSON line names the format.
// --gpu-cache-blocks puts the first N blocks allocated (sequence by sequence, as the engine does) in
// the GPU cache tier (read in place, never streamed); `all` holds every sequence's cache there.
// The JSON adds hbmBoundDecodeTokensPerSecond: batch ÷ (bytes a decode step must read from HBM
// (weights + the whole cache at the mean context) ÷ --hbm-gbps).
// Each --act-fraction entry is FRACTION[@BATCH]; BATCH `cap` means the largest batch whose cache fits
// --host-cache at that fraction (the host-capacity comparison), e.g. --act-fraction 0,auto,0@cap,auto@cap.
// `auto` is the closed form of shared/notes/hybridserve-paper.md §2 with the probed B and F:
//   a* = clip((W/B + 4Nh/B − 24h²b/F) / (2Nh/B + 4Nh²/F), 0, 1),  N = b·(prompt + gen/2),
// W = one layer's streamed weight bytes in the format (24h² for fp16), as planning's cost model
// counts them (mp.layerBytes): smaller weights shift the balance towards KV.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/cache_pools.h"
#include "core/weights.h"
#include "cuda/cuda_backend.h"
#include "presets.h"

namespace {

using namespace hs;

int64_t ParseSize(const std::string& s) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  std::string u(end);
  for (auto& ch : u) ch = static_cast<char>(std::toupper(ch));
  if (u == "G" || u == "GB" || u == "GI" || u == "GIB")
    v *= 1024.0 * 1024 * 1024;
  else if (u == "M" || u == "MB" || u == "MI" || u == "MIB")
    v *= 1024.0 * 1024;
  else if (!u.empty())
    throw std::invalid_argument("bad size '" + s + "'");
  return static_cast<int64_t>(v);
}

double Seconds(std::chrono::steady_clock::time_point a) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
}

CacheKind KindOf(int b, double a) {
  return std::floor((b + 1) * a + 1e-9) > std::floor(b * a + 1e-9) ? CacheKind::ACT : CacheKind::KV;
}

// One decoder layer's GEMM weights on the host in the format (the bytes a streamed layer moves).
double LayerWeightBytes(const ModelConfig& c, WeightFormat f) {
  const int64_t h = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), ffn = c.ffn_size;
  const int64_t shapes[][2] = {{q, h}, {kv, h}, {kv, h}, {h, q}, {ffn, h}, {h, ffn}, {ffn, h}};
  const int n = c.arch == Arch::LLAMA ? 7 : 6;
  double bytes = 0;
  for (int i = 0; i < n; ++i)
    bytes += f == WeightFormat::Native ? 2.0 * shapes[i][0] * shapes[i][1]
                                       : static_cast<double>(QuantizedBytes(f, shapes[i][0], shapes[i][1]));
  return bytes;
}

double AutoFraction(const ModelConfig& c, int batch, int prompt, int gen, double B, double F, WeightFormat fmt) {
  const double h = c.hidden_size, b = batch, N = b * (prompt + gen / 2.0);
  const double num = LayerWeightBytes(c, fmt) / B + 4 * N * h / B - 24 * h * h * b / F;
  const double den = 2 * N * h / B + 4 * N * h * h / F;
  return std::clamp(num / den, 0.0, 1.0);
}

}  // namespace

int main(int argc, char** argv) {
  std::string model = "opt-13b", fractions = "0,auto";
  int batch = 128, prompt = 512, gen = 32, resident = 0, mini = 4, bt = 16;
  int64_t gpu_mem = 0, host_cache = 0;
  std::string gpu_cache = "0", dtypes = "fp16";
  double hbm_gbps = 4800;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--model")
      model = v;
    else if (k == "--batch")
      batch = std::stoi(v);
    else if (k == "--prompt")
      prompt = std::stoi(v);
    else if (k == "--gen")
      gen = std::stoi(v);
    else if (k == "--act-fraction")
      fractions = v;
    else if (k == "--gpu-memory")
      gpu_mem = ParseSize(v);
    else if (k == "--resident-layers")
      resident = std::stoi(v);
    else if (k == "--mini-batches")
      mini = std::stoi(v);
    else if (k == "--host-cache")
      host_cache = ParseSize(v);
    else if (k == "--gpu-cache-blocks")
      gpu_cache = v;
    else if (k == "--hbm-gbps")
      hbm_gbps = std::stod(v);
    else if (k == "--weight-dtype")
      dtypes = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  try {
    const ModelConfig cfg = cudatest::Preset(model);
    const cuda::CudaProbe probe = cuda::ProbeDevice(0);
    std::fprintf(stderr, "[bench] probe: h2d %.1f GB/s, d2h %.1f GB/s, gemm %.0f TFLOP/s\n",
                 probe.h2d_bytes_per_second / 1e9, probe.d2h_bytes_per_second / 1e9, probe.gemm_flops / 1e12);
    std::vector<WeightFormat> formats;
    {
      std::stringstream ds(dtypes);
      std::string d;
      while (std::getline(ds, d, ',')) {
        WeightFormat f;
        if (!ParseWeightFormat(d, &f)) throw std::invalid_argument("--weight-dtype: unknown format '" + d + "'");
        formats.push_back(f);
      }
    }
    std::unique_ptr<HostWeights> wp;
    for (const WeightFormat fmt : formats) {
      wp.reset();  // free the previous format's pinned weights before building the next
      auto t0 = std::chrono::steady_clock::now();
      WeightSource src;
      src.synthetic = true;
      src.seed = 1;
      src.format = fmt;
      wp = std::make_unique<HostWeights>(cfg, src, DType::F16, cuda::PinnedAlloc, cuda::PinnedFree);
      const HostWeights& w = *wp;
      std::fprintf(stderr, "[bench] %s %s weights: %.1f GB pinned in %.1f s\n", model.c_str(), WeightFormatName(fmt),
                   w.total_bytes() / 1e9, Seconds(t0));

      std::stringstream fs(fractions);
      std::string spec;
      while (std::getline(fs, spec, ',')) {
        const int bps = (prompt + gen + bt - 1) / bt;
        const double kv_block = 2.0 * bt * cfg.kv_dim() * 2 * cfg.num_layers,
                     act_block = 1.0 * bt * cfg.hidden_size * 2 * cfg.num_layers;
        auto fit_batch = [&](double a) {
          int kv = 0, act = 0;
          for (int b = 0; b < bps; ++b) (KindOf(b, a) == CacheKind::KV ? kv : act)++;
          return static_cast<int>(host_cache / (kv * kv_block + act * act_block));
        };
        // SPEC is FRACTION[@BATCH]: FRACTION a number or auto; BATCH a number or cap (the largest
        // batch whose cache fits --host-cache at that fraction); default --batch.
        const std::string fspec = spec.substr(0, spec.find('@'));
        const std::string bspec = spec.find('@') == std::string::npos ? "" : spec.substr(spec.find('@') + 1);
        const bool cap = bspec == "cap";
        if (cap && host_cache <= 0) throw std::invalid_argument("@cap needs --host-cache");
        double a = fspec == "auto" ? -1 : std::stod(fspec);
        int B = bspec.empty() || cap ? batch : std::stoi(bspec);
        if (a < 0) {  // auto: solve at the batch that will run (for @cap, at the batch a=1 allows, then refit)
          if (cap) B = fit_batch(1.0);
          a = AutoFraction(cfg, B, prompt, gen, probe.h2d_bytes_per_second, probe.gemm_flops, fmt);
        }
        if (cap) B = fit_batch(a);
        if (B <= 0) throw std::invalid_argument("host cache budget holds no sequence");
        // Block tables: each sequence's blocks, kinds spread evenly by the fraction.
        std::vector<std::vector<BlockRef>> tables(B);
        const int gpu_blocks = gpu_cache == "all" ? B * bps : std::stoi(gpu_cache);
        int nkv = 0, nact = 0, ndev = 0;
        for (int s = 0; s < B; ++s) {
          int host_index = 0;
          for (int b = 0; b < bps; ++b) {
            if (ndev < gpu_blocks) {
              tables[s].push_back({CacheKind::KV, ndev++, Tier::Device});
              continue;
            }
            const CacheKind k = KindOf(host_index++, a);
            tables[s].push_back({k, k == CacheKind::KV ? nkv++ : nact++});
          }
        }
        t0 = std::chrono::steady_clock::now();
        CachePools pools(cfg, PoolConfig{bt, nkv, nact, DType::F16, ndev}, cuda::PinnedAlloc, cuda::PinnedFree,
                         cuda::DeviceAlloc, cuda::DeviceFree);
        const double pool_s = Seconds(t0);
        cuda::CudaOptions o;
        o.gpu_memory_bytes = gpu_mem;
        o.resident_layers = resident;
        auto be = cuda::MakeCudaBackend(cfg, w, pools, o);
        const std::string card = be->Info().device_name;

        std::vector<std::vector<int32_t>> toks(B);
        uint32_t rng = 99;
        for (auto& t : toks)
          for (int i = 0; i < prompt; ++i) {
            rng = rng * 1664525u + 1013904223u;
            t.push_back(static_cast<int32_t>((rng >> 8) % cfg.vocab_size));
          }
        std::vector<float> logits(static_cast<size_t>(B) * cfg.vocab_size);
        const int K = std::max(1, std::min(mini, B));
        double prefill_s = 0, decode_s = 0;
        StepCounters dec{}, pre{};
        for (int step = 0; step < gen; ++step) {
          BatchPlan plan;
          plan.mini_batches.assign(K, {});
          for (int s = 0; s < B; ++s) {
            SeqPlan sp;
            sp.id = s;
            sp.start_pos = step == 0 ? 0 : prompt + step - 1;
            sp.num_new = step == 0 ? prompt : 1;
            sp.tokens = toks[s].data() + sp.start_pos;
            sp.blocks = tables[s].data();
            sp.num_blocks = bps;
            plan.seqs.push_back(sp);
            plan.mini_batches[static_cast<size_t>(s) * K / B].push_back(s);
          }
          StepCounters c{};
          auto ts = std::chrono::steady_clock::now();
          be->Forward(plan, logits.data(), c);
          const double dt = Seconds(ts);
          for (int s = 0; s < B; ++s) {
            const float* l = logits.data() + static_cast<size_t>(s) * cfg.vocab_size;
            toks[s].push_back(static_cast<int32_t>(std::max_element(l, l + cfg.vocab_size) - l));
          }
          if (step == 0) {
            prefill_s += dt;
            pre += c;
          } else {
            decode_s += dt;
            dec += c;
          }
          std::fprintf(stderr, "[bench] a=%.2f step %d: %.3f s (transfer %.3f compute %.3f recompute %.3f idle %.3f)\n",
                       a, step, dt, c.transfer_seconds, c.compute_seconds, c.recompute_seconds, c.idle_seconds);
        }
        const int dsteps = std::max(1, gen - 1);
        const double h2d = static_cast<double>(dec.weight_bytes_h2d + dec.kv_bytes_h2d + dec.act_bytes_h2d) / dsteps;
        const double d2h = static_cast<double>(dec.kv_bytes_d2h + dec.act_bytes_d2h) / dsteps;
        const double step_s = decode_s / dsteps;
        const double lower = std::max(h2d / probe.h2d_bytes_per_second, d2h / probe.d2h_bytes_per_second);
        const double hbm_step_bytes = static_cast<double>(w.total_bytes()) + static_cast<double>(B) *
                                                                                 (prompt + gen / 2.0) * 2.0 *
                                                                                 cfg.kv_dim() * 2 * cfg.num_layers;
        const double hbm_bound = B / (hbm_step_bytes / (hbm_gbps * 1e9));
        std::fprintf(stderr, "[bench] gpu cache blocks %d, hbm bound %.0f decode tokens/s\n", ndev, hbm_bound);
        std::printf(
            "{\"model\":\"synthetic:%s\",\"card\":\"%s\",\"weightDtype\":\"%s\",\"weightBytes\":%zu,\"batch\":%d,"
            "\"prompt\":%d,\"gen\":%d,\"actFraction\":%.4f,"
            "\"actFractionSpec\":\"%s\",\"residentLayers\":%d,\"miniBatches\":%d,\"kvBlocks\":%d,\"actBlocks\":%d,"
            "\"hostCacheBytes\":%.0f,\"totalTokensPerSecond\":%.2f,\"decodeTokensPerSecond\":%.2f,\"prefillSeconds\":%."
            "3f,"
            "\"decodeSeconds\":%.3f,\"meanDecodeStepSeconds\":%.4f,\"bytesPerDecodeStep\":{\"weightsH2D\":%.0f,"
            "\"kvH2D\":"
            "%.0f,"
            "\"actH2D\":%.0f,\"kvD2H\":%.0f,\"actD2H\":%.0f},\"effectivePcieGBps\":%.2f,\"probedH2DGBps\":%.2f,"
            "\"probedD2HGBps\":%.2f,\"probedGemmTflops\":%.1f,\"gpuBusyFraction\":%.3f,\"transferLowerBoundSeconds\":%."
            "4f,"
            "\"stepOverLowerBound\":%.3f,\"decodePhaseSeconds\":{\"transfer\":%.3f,\"compute\":%.3f,\"recompute\":%.3f,"
            "\"idle\":%.3f},\"recomputedTokensPerStep\":%.0f,\"poolPinSeconds\":%.1f,\"gpuKvBlocks\":%d,"
            "\"hbmBoundDecodeTokensPerSecond\":%.1f,\"driver\":\"native\"}\n",
            model.c_str(), card.c_str(), WeightFormatName(fmt), w.total_bytes(), B, prompt, gen, a, spec.c_str(),
            resident, K, nkv, nact, nkv * kv_block + nact * act_block,
            static_cast<double>(B) * gen / (prefill_s + decode_s), static_cast<double>(B) * (gen - 1) / decode_s,
            prefill_s, decode_s, step_s, static_cast<double>(dec.weight_bytes_h2d) / dsteps,
            static_cast<double>(dec.kv_bytes_h2d) / dsteps, static_cast<double>(dec.act_bytes_h2d) / dsteps,
            static_cast<double>(dec.kv_bytes_d2h) / dsteps, static_cast<double>(dec.act_bytes_d2h) / dsteps,
            (h2d + d2h) / step_s / 1e9, probe.h2d_bytes_per_second / 1e9, probe.d2h_bytes_per_second / 1e9,
            probe.gemm_flops / 1e12,
            (dec.compute_seconds + dec.recompute_seconds) /
                std::max(1e-9, dec.compute_seconds + dec.recompute_seconds + dec.idle_seconds),
            lower, step_s / lower, dec.transfer_seconds, dec.compute_seconds, dec.recompute_seconds, dec.idle_seconds,
            static_cast<double>(dec.recomputed_tokens) / dsteps, pool_s, ndev, hbm_bound);
        std::fflush(stdout);
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hs_cuda_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
