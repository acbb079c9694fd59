// Native offloading benchmark of the CUDA backend (the engine-level numbers of issue 3 without
// Node): synthetic fp16 weights in pinned host memory, every layer streamed (--resident-layers 0),
// KV/ACT blocks in pinned host pools, greedy decoding. One JSON line per ACT fraction, with
// throughput counted as the offloading literature does:
//   total  = batch × gen ÷ (prefill + decode time)       decode = batch × (gen − 1) ÷ decode time
// Usage: hs_cuda_bench --model opt-13b --batch 128 --prompt 512 --gen 32 --act-fraction 0,auto
//        [--gpu-memory 40G] [--resident-layers 0] [--mini-batches 4] [--host-cache 48G]
//        [--gpu-cache-blocks N|all] [--hbm-gbps 4800] [--gpus 1,2] [--in-flight S]
//        [--weight-dtype fp16,fp8,int8,int4] [--prefill-chunks C] [--numa-place on|off] [--warmup on|off]
// --warmup on (the default) runs one small step pair before each timed run, as bench/hf_generate.py
// warms up generate() (2 sequences x 16 tokens, 2 steps: kernels loaded, cuBLAS plans made), so that
// neither side of a comparison times its first kernel launches; its K/V lands in blocks the run's
// prefill then overwrites.
// --weight-dtype (issue 14) is a list: each format's pinned weights are built in turn (the previous
// freed first) and every --act-fraction entry runs for each; the JSON line names the format.
// --gpus LIST runs each fraction once per GPU count (a pipeline over that many GPUs, issue 15) and,
// for a list, prints a summary line with the ratio of the last to the first total tokens/s. With a
// pipeline, S groups of --batch sequences each (--in-flight, default one per GPU) step at once, each
// in its own thread (FlexGen's schedule: group g on stage s while group g+1 is on stage s-1); so
// --batch is per group and the JSON's totalSequences = batch x inFlight. Each group runs its steps
// back to back (no barrier between the groups' prefill and decode). --prefill-chunks C splits each
// group's prefill into C engine steps of batch/C sequences: in a pipeline the first stage starts the
// next chunk while the later stages run this one, so the fill and drain cost one chunk instead of a
// whole group's prefill; with one GPU it only splits compute-bound work (same options on both sides
// of a comparison). --numa-place on (NCCL builds): a pipeline run's weights (rebuilt for the run)
// and pools bound near each stage's GPU, as the addon places them, when the host has several NUMA
// nodes (otherwise nothing changes).
// --resident-layers and --gpu-cache-blocks take lists too: every combination runs in the one process
// (the weights are built once), a placement sweep (scripts/gpu-run.sh placement_sweep).
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
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <cuda_profiler_api.h>

#include "core/cache_pools.h"
#include "core/weights.h"
#include "cuda/cuda_backend.h"
#ifdef HS_WITH_NCCL
#include "pipeline/cuda/cuda_stage.h"
#include "pipeline/cuda/numa_placement.h"
#endif
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

// "a,b,c" → {"a", "b", "c"}.
std::vector<std::string> Split(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream ss(list);
  for (std::string x; std::getline(ss, x, ',');) out.push_back(x);
  return out;
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

// One measured run: `groups` groups of `batch` sequences each (one group unless a pipeline keeps
// several steps in flight), every group stepping in its own thread; `gpus` pipeline stages.
struct Run {
  double a;
  std::string spec;
  int batch, gpus, groups, prompt, gen, bt, resident, mini;
  int64_t gpu_mem;
  std::string gpu_cache;
  double hbm_gbps;
  WeightFormat fmt;
  int prefill_chunks;
  bool numa_place;  // --numa-place: a pipeline's weights and pools near each stage's GPU (several nodes only)
  bool warmup;      // --warmup: one small untimed step pair first
};

struct Group {
  std::vector<std::vector<BlockRef>> tables;
  std::vector<std::vector<int32_t>> toks;
  std::vector<float> logits;  // scratch for backends that pick greedy tokens on the host
  std::vector<int32_t> next;  // this step's greedy token per sequence
  StepCounters pre{}, dec{};
  double decode_forward_s = 0;  // inside Backend::ForwardGreedy only (no plan building)
  double prefill_done_s = 0;    // since the run's start, when this group's prompts were all in
};

// Where a run's host memory goes: nowhere in particular (one GPU, one NUMA node, or no
// --numa-place), or per stage near its GPU (pipeline/cuda/numa_placement.h, as the addon places it).
struct HostPlacement {
#ifdef HS_WITH_NCCL
  std::vector<pipeline::numa::StagePlacement> stages;
#endif
  bool empty() const {
#ifdef HS_WITH_NCCL
    return stages.empty();
#else
    return true;
#endif
  }
};

HostPlacement PlaceRun(const ModelConfig& cfg, const Run& r) {
  HostPlacement p;
#ifdef HS_WITH_NCCL
  if (r.numa_place && r.gpus > 1) p.stages = pipeline::GpuPlacement(cfg.num_layers, 0, r.gpus);
#else
  (void)cfg;
  (void)r;
#endif
  return p;
}

std::unique_ptr<CachePools> MakePools(const ModelConfig& cfg, const PoolConfig& pc, const HostPlacement& where) {
#ifdef HS_WITH_NCCL
  if (!where.empty()) return pipeline::PlacedPools(cfg, pc, where.stages);
#else
  (void)where;
#endif
  return std::make_unique<CachePools>(cfg, pc, cuda::PinnedAlloc, cuda::PinnedFree, cuda::DeviceAlloc,
                                      cuda::DeviceFree);
}

std::unique_ptr<Backend> MakeBackend(const ModelConfig& cfg, const HostWeights& w, CachePools& pools, const Run& r,
                                     const HostPlacement& where) {
  cuda::CudaOptions o;
  o.gpu_memory_bytes = r.gpu_mem;
  o.resident_layers = r.resident;
  if (r.gpus == 1) return cuda::MakeCudaBackend(cfg, w, pools, o);
#ifdef HS_WITH_NCCL
  return pipeline::MakeCudaPipeline(cfg, w, pools, o, r.gpus, where.stages);
#else
  (void)where;
  throw std::invalid_argument("--gpus > 1 needs a build with NCCL");
#endif
}

// Sequences [first, last) of a group at `step`: the prompts (step 0) or one decode token each.
BatchPlan GroupPlan(const Run& r, Group& g, int step, int first, int last) {
  const int n = last - first, K = std::max(1, std::min(r.mini, n));
  BatchPlan plan;
  plan.mini_batches.assign(K, {});
  for (int s = first; s < last; ++s) {
    SeqPlan sp;
    sp.id = s;
    sp.start_pos = step == 0 ? 0 : r.prompt + step - 1;
    sp.num_new = step == 0 ? r.prompt : 1;
    sp.tokens = g.toks[s].data() + sp.start_pos;
    sp.blocks = g.tables[s].data();
    sp.num_blocks = static_cast<int>(g.tables[s].size());
    plan.seqs.push_back(sp);
    plan.mini_batches[static_cast<size_t>(s - first) * K / n].push_back(static_cast<int>(plan.seqs.size()) - 1);
  }
  return plan;
}

// The step of one group: prefill (step 0, in --prefill-chunks parts of the group's sequences, each
// its own engine step) or one decode token per sequence; greedy next tokens.
void GroupStep(const ModelConfig& cfg, const Run& r, Backend& be, std::mutex& one_at_a_time, Group& g, int step) {
  const int B = static_cast<int>(g.toks.size());
  const int parts = step == 0 ? std::clamp(r.prefill_chunks, 1, B) : 1;
  StepCounters c{};
  auto ts = std::chrono::steady_clock::now();
  double forward_s = 0;
  for (int part = 0; part < parts; ++part) {
    const int first = part * B / parts, last = (part + 1) * B / parts;
    const BatchPlan plan = GroupPlan(r, g, step, first, last);
    // The engine core's greedy step (what the server runs for greedy requests): the backend picks
    // each sequence's ArgMax where the logits are (on the GPU for the CUDA engine).
    std::unique_lock<std::mutex> lock(one_at_a_time, std::defer_lock);
    if (!be.concurrent_forward()) lock.lock();
    const auto tf = std::chrono::steady_clock::now();
    be.ForwardGreedy(plan, cfg.vocab_size, g.next.data() + first, g.logits, c);
    forward_s += Seconds(tf);
  }
  if (step > 0) g.decode_forward_s += forward_s;
  for (int s = 0; s < B; ++s) g.toks[s].push_back(g.next[s]);
  (step == 0 ? g.pre : g.dec) += c;
  std::fprintf(stderr, "[bench] a=%.2f gpus %d step %d: %.3f s (transfer %.3f compute %.3f recompute %.3f idle %.3f)\n",
               r.a, r.gpus, step, Seconds(ts), c.transfer_seconds, c.compute_seconds, c.recompute_seconds,
               c.idle_seconds);
}

// Two steps of the group's first two sequences at a 16-token prompt (bench/hf_generate.py's warm-up
// shape), untimed; their K/V goes to the first blocks of those sequences, which the timed prefill
// rewrites before anything reads them.
void WarmUp(const ModelConfig& cfg, const Run& r, Backend& be, std::mutex& one_at_a_time, const Group& g) {
  const int n = std::min<int>(2, static_cast<int>(g.toks.size())), prompt = std::min(16, r.prompt);
  if (n == 0 || prompt == 0) return;
  Run wr = r;
  wr.prompt = prompt;
  wr.prefill_chunks = 1;
  wr.mini = 1;
  Group w;
  for (int s = 0; s < n; ++s) {
    w.tables.push_back(g.tables[s]);
    w.toks.emplace_back(g.toks[s].begin(), g.toks[s].begin() + prompt);
  }
  w.next.resize(n);
  std::fprintf(stderr, "[bench] warm-up: %d sequences x %d tokens, 2 steps (untimed)\n", n, prompt);
  for (int step = 0; step < 2; ++step) GroupStep(cfg, wr, be, one_at_a_time, w, step);
}

void RunOne(const ModelConfig& cfg, const HostWeights& w, const WeightSource& src, const cuda::CudaProbe& probe,
            const Run& r, const std::string& model, std::vector<std::pair<int, double>>* results) {
  const int bt = r.bt, B = r.batch, G = r.groups, prompt = r.prompt, gen = r.gen;
  const double a = r.a;
  const int bps = (prompt + gen + bt - 1) / bt;
  const double kv_block = 2.0 * bt * cfg.kv_dim() * 2 * cfg.num_layers,
               act_block = 1.0 * bt * cfg.hidden_size * 2 * cfg.num_layers;
  // Block tables: each sequence's blocks, kinds spread evenly by the fraction.
  std::vector<Group> groups(G);
  const int gpu_blocks = r.gpu_cache == "all" ? G * B * bps : std::stoi(r.gpu_cache);
  int nkv = 0, nact = 0, ndev = 0;
  uint32_t rng = 99;
  for (Group& g : groups) {
    g.tables.resize(B);
    g.toks.resize(B);
    g.next.resize(B);
    for (int s = 0; s < B; ++s) {
      int host_index = 0;
      for (int b = 0; b < bps; ++b) {
        if (ndev < gpu_blocks) {
          g.tables[s].push_back({CacheKind::KV, ndev++, Tier::Device});
          continue;
        }
        const CacheKind k = KindOf(host_index++, a);
        g.tables[s].push_back({k, k == CacheKind::KV ? nkv++ : nact++});
      }
      for (int i = 0; i < prompt; ++i) {
        rng = rng * 1664525u + 1013904223u;
        g.toks[s].push_back(static_cast<int32_t>((rng >> 8) % cfg.vocab_size));
      }
    }
  }
  auto t0 = std::chrono::steady_clock::now();
  const HostPlacement where = PlaceRun(cfg, r);
  // Placed weights are built for this run (the shared ones stay where they were faulted in).
  std::unique_ptr<HostWeights> placed_w;
#ifdef HS_WITH_NCCL
  if (!where.empty()) {
    const auto tw = std::chrono::steady_clock::now();
    placed_w = pipeline::PlacedWeights(cfg, src, DType::F16, where.stages);
    std::fprintf(stderr, "[bench] gpus %d: weights placed per stage in %.1f s\n", r.gpus, Seconds(tw));
  }
#else
  (void)src;
#endif
  const HostWeights& run_w = placed_w ? *placed_w : w;
  auto pools_p = MakePools(cfg, PoolConfig{bt, nkv, nact, DType::F16, ndev}, where);
  CachePools& pools = *pools_p;
  const double pool_s = Seconds(t0);
  std::fprintf(stderr, "[bench] gpus %d: %d groups of %d sequences, host cache %.1f GB pinned in %.1f s\n", r.gpus, G,
               B, (nkv * kv_block + nact * act_block) / 1e9, pool_s);
  auto be = MakeBackend(cfg, run_w, pools, r, where);
  const std::string card = be->Info().device_name;
  std::mutex one_at_a_time;

  // Every group runs all its steps back to back in its own thread, with no barrier between the
  // prefill and the decode: in a pipeline a group decodes while the next group's prompts are still
  // in a later stage, as a serving engine's steps would. prefill = until the last group's prompts
  // were all in; decode = the rest of the run (so with several groups the decode figure includes
  // decode steps that overlapped other groups' prefill). One group: the two phases as before.
  // HS_BENCH_PROFILE=1: only the run is profiled (nsys --capture-range=cudaProfilerApi), not the
  // probes or the weight uploads before it.
  if (r.warmup) WarmUp(cfg, r, *be, one_at_a_time, groups[0]);
  const bool profile = std::getenv("HS_BENCH_PROFILE") != nullptr;
  if (profile) cudaProfilerStart();
  const auto t_run = std::chrono::steady_clock::now();
  {
    std::vector<std::thread> threads;
    std::vector<std::string> errors(G);
    for (int gi = 0; gi < G; ++gi)
      threads.emplace_back([&, gi] {
        try {
          for (int step = 0; step < gen; ++step) {
            GroupStep(cfg, r, *be, one_at_a_time, groups[gi], step);
            if (step == 0) groups[gi].prefill_done_s = Seconds(t_run);
          }
        } catch (const std::exception& e) {
          errors[gi] = e.what();
        }
      });
    for (auto& t : threads) t.join();
    for (const auto& e : errors)
      if (!e.empty()) throw std::runtime_error(e);
  }
  const double run_s = Seconds(t_run);
  if (profile) cudaProfilerStop();
  double prefill_s = 0;
  for (const Group& g : groups) prefill_s = std::max(prefill_s, g.prefill_done_s);
  const double decode_s = run_s - prefill_s;
  StepCounters dec{};
  double forward_s = 0;
  for (const Group& g : groups) {
    dec += g.dec;
    forward_s += g.decode_forward_s;
  }
  const int total = G * B;
  const int dsteps = std::max(1, gen - 1);  // steps of the whole batch (each group's steps summed: G per step)
  const double group_steps = static_cast<double>(dsteps) * G;
  const double h2d = static_cast<double>(dec.weight_bytes_h2d + dec.kv_bytes_h2d + dec.act_bytes_h2d) / group_steps;
  const double d2h = static_cast<double>(dec.kv_bytes_d2h + dec.act_bytes_d2h) / group_steps;
  const double step_s = decode_s / dsteps;
  const double lower = std::max(h2d / probe.h2d_bytes_per_second, d2h / probe.d2h_bytes_per_second);
  const double hbm_step_bytes = static_cast<double>(w.total_bytes()) +
                                static_cast<double>(B) * (prompt + gen / 2.0) * 2.0 * cfg.kv_dim() * 2 * cfg.num_layers;
  const double hbm_bound = B / (hbm_step_bytes / (r.hbm_gbps * 1e9));
  const double total_tps = static_cast<double>(total) * gen / (prefill_s + decode_s);
  // JSON has no infinity: with nothing streamed (all resident) there is no transfer bound.
  char over[32] = "null";
  if (lower > 0) std::snprintf(over, sizeof over, "%.3f", step_s / lower);
  std::fprintf(stderr, "[bench] gpus %d: %.1f total tokens/s\n", r.gpus, total_tps);
  std::printf(
      "{\"model\":\"synthetic:%s\",\"card\":\"%s\",\"weightDtype\":\"%s\",\"weightBytes\":%zu,\"gpus\":%d,\"inFlight\":"
      "%d,\"batch\":%d,\"totalSequences\":%d,"
      "\"batchMeaning\":\"sequences per group; %d groups step at once, total = batch x inFlight\","
      "\"prompt\":%d,\"gen\":%d,\"prefillChunks\":%d,\"actFraction\":%.4f,"
      "\"actFractionSpec\":\"%s\",\"residentLayers\":%d,\"miniBatches\":%d,\"kvBlocks\":%d,\"actBlocks\":%d,"
      "\"hostCacheBytes\":%.0f,\"totalTokensPerSecond\":%.2f,\"decodeTokensPerSecond\":%.2f,\"prefillSeconds\":%.3f,"
      "\"decodeSeconds\":%.3f,\"meanDecodeStepSeconds\":%.4f,\"bytesPerDecodeStep\":{\"weightsH2D\":%.0f,"
      "\"kvH2D\":%.0f,\"actH2D\":%.0f,\"kvD2H\":%.0f,\"actD2H\":%.0f},\"effectivePcieGBps\":%.2f,\"probedH2DGBps\":%."
      "2f,"
      "\"probedD2HGBps\":%.2f,\"probedGemmTflops\":%.1f,\"gpuBusyFraction\":%.3f,\"transferLowerBoundSeconds\":%.4f,"
      "\"stepOverLowerBound\":%s,\"meanDecodeForwardSeconds\":%.4f,\"decodePhaseSeconds\":{\"transfer\":%.3f,"
      "\"compute\":%.3f,\"recompute\":%.3f,"
      "\"idle\":%.3f},\"recomputedTokensPerStep\":%.0f,\"poolPinSeconds\":%.1f,\"gpuKvBlocks\":%d,"
      "\"hbmBoundDecodeTokensPerSecond\":%.1f,\"driver\":\"native\"}\n",
      model.c_str(), card.c_str(), WeightFormatName(r.fmt), w.total_bytes(), r.gpus, G, B, total, G, prompt, gen,
      std::clamp(r.prefill_chunks, 1, B), a, r.spec.c_str(), r.resident, std::max(1, std::min(r.mini, B)), nkv, nact,
      nkv * kv_block + nact * act_block, total_tps, static_cast<double>(total) * (gen - 1) / decode_s, prefill_s,
      decode_s, step_s, static_cast<double>(dec.weight_bytes_h2d) / group_steps,
      static_cast<double>(dec.kv_bytes_h2d) / group_steps, static_cast<double>(dec.act_bytes_h2d) / group_steps,
      static_cast<double>(dec.kv_bytes_d2h) / group_steps, static_cast<double>(dec.act_bytes_d2h) / group_steps,
      (h2d + d2h) * G / step_s / 1e9, probe.h2d_bytes_per_second / 1e9, probe.d2h_bytes_per_second / 1e9,
      probe.gemm_flops / 1e12,
      (dec.compute_seconds + dec.recompute_seconds) /
          std::max(1e-9, dec.compute_seconds + dec.recompute_seconds + dec.idle_seconds),
      lower, over, forward_s / group_steps, dec.transfer_seconds, dec.compute_seconds, dec.recompute_seconds,
      dec.idle_seconds, static_cast<double>(dec.recomputed_tokens) / dsteps, pool_s, ndev, hbm_bound);
  std::fflush(stdout);
  results->push_back({r.gpus, total_tps});
}

}  // namespace

int main(int argc, char** argv) {
  std::string model = "opt-13b", fractions = "0,auto";
  int batch = 128, prompt = 512, gen = 32, mini = 4, bt = 16;
  int64_t gpu_mem = 0, host_cache = 0;
  std::string resident_list = "0", gpu_cache_list = "0", gpus_list = "1", dtypes = "fp16";
  int in_flight = 0;  // 0: one group per GPU
  int prefill_chunks = 1;
  bool numa_place = false, warmup = true;
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
      resident_list = v;
    else if (k == "--mini-batches")
      mini = std::stoi(v);
    else if (k == "--host-cache")
      host_cache = ParseSize(v);
    else if (k == "--gpu-cache-blocks")
      gpu_cache_list = v;
    else if (k == "--hbm-gbps")
      hbm_gbps = std::stod(v);
    else if (k == "--gpus")
      gpus_list = v;
    else if (k == "--in-flight")
      in_flight = std::stoi(v);
    else if (k == "--weight-dtype")
      dtypes = v;
    else if (k == "--prefill-chunks")
      prefill_chunks = std::stoi(v);
    else if (k == "--numa-place")
      numa_place = v == "on";
    else if (k == "--warmup")
      warmup = v != "off";
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

      std::vector<int> gpu_counts;
      for (const std::string& x : Split(gpus_list)) gpu_counts.push_back(std::stoi(x));
      std::vector<std::pair<int, double>> results;  // (gpus, total tokens/s) of this fraction's runs
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
        for (const std::string& res : Split(resident_list))
          for (const std::string& blocks : Split(gpu_cache_list)) {
            for (int gpus : gpu_counts) {
              const int S = in_flight > 0 ? in_flight : gpus;  // groups of B sequences, all in flight
              const Run run{a,    spec,    B,      gpus,     S,   prompt,         gen,        bt,    std::stoi(res),
                            mini, gpu_mem, blocks, hbm_gbps, fmt, prefill_chunks, numa_place, warmup};
              try {
                RunOne(cfg, w, src, probe, run, model, &results);
              } catch (const std::exception& e) {
                // One placement that does not fit ends that run only (a sweep goes on); said as JSON.
                std::fprintf(stderr, "hs_cuda_bench: resident %s, gpu cache %s, gpus %d: %s\n", res.c_str(),
                             blocks.c_str(), gpus, e.what());
                std::printf(
                    "{\"model\":\"synthetic:%s\",\"residentLayers\":%s,\"gpuCacheBlocks\":\"%s\",\"gpus\":%d,"
                    "\"failed\":true}\n",
                    model.c_str(), res.c_str(), blocks.c_str(), gpus);
                std::fflush(stdout);
              }
            }
            if (results.size() > 1)
              std::printf(
                  "{\"model\":\"synthetic:%s\",\"weightDtype\":\"%s\",\"actFractionSpec\":\"%s\",\"gpus\":[%d,%d],"
                  "\"totalTokensPerSecond\":[%.2f,%.2f],\"ratio\":%.3f,\"summary\":\"pipeline\"}\n",
                  model.c_str(), WeightFormatName(fmt), spec.c_str(), results.front().first, results.back().first,
                  results.front().second, results.back().second, results.back().second / results.front().second);
            results.clear();
          }
        std::fflush(stdout);
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hs_cuda_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
