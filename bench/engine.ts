// Engine benchmark (`npm run bench:engine -- ...`, after `npm run build`): the offloading regime of
// issue 3 through the addon. Weights (synthetic, fp16, pinned) and the KV/ACT cache live in host
// memory; every layer streams to the GPU each step unless --resident-layers says otherwise.
//
//   node dist/bench/engine.js --model synthetic:opt-13b --batch 128 --prompt 512 --gen 32 \
//        --act-fraction 0|x|auto [--gpu-memory SIZE] [--host-memory SIZE] [--resident-layers N] [--device cuda]
//        [--gpu-cache-blocks N|all]   (blocks of the GPU cache tier; `all`: the whole batch's cache; default 0)
//        [--weight-dtype fp16|fp8|int8|int4]   (quantised layer weights, both devices)
//        [--gpus N | --stages N]   (pipeline stages: one per GPU on cuda, in-process CPU stages on cpu; issue 15)
//        [--mini-batch-tokens N]   (each step split into mini-batches of ≤ N staged tokens inside the
//                           engine: the zig-zag schedule, weights streamed once per step; default 0: one)
//        [--in-flight S]   (S groups of sequences, each stepping in its own slot, all in flight at once;
//                           default: the number of stages. `batch` is per group: S × batch sequences in all,
//                           as hs_cuda_bench --gpus, so that 1 and N stages compare per group)
//
// It adds `batch` sequences with a synthetic prompt, runs one prefill step (the first generated
// token) and gen − 1 decode steps, and prints ONE JSON line. Throughput is counted as the
// offloading literature does (FlexGen, the HybridServe paper), so figures compare:
//   total  = batch × gen ÷ (prefill time + decode time)
//   decode = batch × (gen − 1) ÷ decode time            (prompt tokens are not throughput)
// The transfer lower bound of a decode step is its bytes over the probed pinned bandwidth (the
// larger of H2D and D2H); stepOverLowerBound = mean decode step ÷ that bound.
// `auto` asks planning's planNode (capped at this batch) with a hardware profile built from this
// GPU's probe; should the planner refuse, it falls back to the closed form of
// shared/notes/hybridserve-paper.md §2 (closedFormActFraction below) and says so in the output.
import { parseArgs } from 'node:util';

import { parseSize } from '../cli/args.js';
import { parseModelSpec } from '../model/spec.js';
import type { ModelConfig } from '../model/types.js';
import { cacheBytesPerTokenPerLayer } from '../model/types.js';
import { parseWeightDtype, planNode, type HardwareProfile } from '../planning/index.js';
import { createEngine, loadAddon, toNativeConfig, type NativeCounters, type NativeProbeResult } from '../native/ts/engine.js';
import { runInFlight, splitGroups } from './in-flight.js';
import { runIfEntryPoint } from './run-main.js';

const BLOCK_TOKENS = 16;

/** T_pcie(a) = T_gpu(a) solved for a (per layer, decode; notes §2), clipped to [0, 1]. */
export function closedFormActFraction(
  cfg: ModelConfig,
  batch: number,
  prompt: number,
  gen: number,
  h2dBytesPerSecond: number,
  gemmFlops: number,
): number {
  const h = cfg.hiddenSize,
    B = h2dBytesPerSecond,
    F = gemmFlops;
  const N = batch * (prompt + gen / 2);
  const num = (24 * h * h) / B + (4 * N * h) / B - (24 * h * h * batch) / F;
  const den = (2 * N * h) / B + (4 * N * h * h) / F;
  return Math.min(1, Math.max(0, num / den));
}

/** Blocks each pool needs for `batch` sequences of `tokens` at ACT fraction `a` (+1 block of slack per sequence). */
export function poolBlocks(batch: number, tokens: number, a: number, blockTokens = BLOCK_TOKENS): { kvBlocks: number; actBlocks: number } {
  const perSeq = Math.ceil(tokens / blockTokens);
  return {
    kvBlocks: Math.ceil(batch * perSeq * (1 - a)) + batch,
    actBlocks: Math.ceil(batch * perSeq * a) + batch,
  };
}

export interface RunTimes {
  prefillSeconds: number;
  decodeSeconds: number;
  decodeSteps: number;
}

export interface EngineBenchResult {
  totalTokensPerSecond: number;
  decodeTokensPerSecond: number;
  meanDecodeStepSeconds: number;
  bytesPerDecodeStep: { weightsH2D: number; kvH2D: number; actH2D: number; kvD2H: number; actD2H: number };
  effectivePcieGBps: number;
  transferLowerBoundSeconds: number;
  stepOverLowerBound: number;
  gpuBusyFraction: number;
}

/** The figures from the decode counters (summed over the decode steps) and the probe. */
export function engineMetrics(batch: number, gen: number, t: RunTimes, dec: NativeCounters, probe: NativeProbeResult): EngineBenchResult {
  const steps = Math.max(1, t.decodeSteps);
  const per = (x: number): number => x / steps;
  const h2d = per(dec.weightBytesH2D + dec.kvBytesH2D + dec.actBytesH2D);
  const d2h = per(dec.kvBytesD2H + dec.actBytesD2H);
  const step = t.decodeSeconds / steps;
  const lower = Math.max(
    probe.h2dBytesPerSecond > 0 ? h2d / probe.h2dBytesPerSecond : 0,
    probe.d2hBytesPerSecond > 0 ? d2h / probe.d2hBytesPerSecond : 0,
  );
  const busy = dec.computeSeconds + dec.recomputeSeconds;
  return {
    totalTokensPerSecond: (batch * gen) / (t.prefillSeconds + t.decodeSeconds),
    decodeTokensPerSecond: t.decodeSeconds > 0 ? (batch * (gen - 1)) / t.decodeSeconds : 0,
    meanDecodeStepSeconds: step,
    bytesPerDecodeStep: {
      weightsH2D: per(dec.weightBytesH2D),
      kvH2D: per(dec.kvBytesH2D),
      actH2D: per(dec.actBytesH2D),
      kvD2H: per(dec.kvBytesD2H),
      actD2H: per(dec.actBytesD2H),
    },
    effectivePcieGBps: step > 0 ? (h2d + d2h) / step / 1e9 : 0,
    transferLowerBoundSeconds: lower,
    stepOverLowerBound: lower > 0 ? step / lower : 0,
    gpuBusyFraction: busy + dec.idleSeconds > 0 ? busy / (busy + dec.idleSeconds) : 0,
  };
}

function promptTokens(n: number, seed: number, vocab: number): Int32Array {
  const out = new Int32Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; ++i) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = (x >>> 8) % vocab;
  }
  return out;
}

function intArg(v: string | undefined, name: string, min: number, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}, got '${v}'`);
  return n;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: 'synthetic:opt-13b' },
      batch: { type: 'string' },
      prompt: { type: 'string' },
      gen: { type: 'string' },
      'act-fraction': { type: 'string', default: 'auto' },
      'gpu-memory': { type: 'string' },
      'host-memory': { type: 'string' },
      'resident-layers': { type: 'string' },
      device: { type: 'string', default: 'cuda' },
      'gpu-cache-blocks': { type: 'string' },
      'weight-dtype': { type: 'string', default: 'fp16' },
      gpus: { type: 'string' },
      stages: { type: 'string' },
      'in-flight': { type: 'string' },
      'mini-batch-tokens': { type: 'string' },
    },
    strict: true,
  });
  const spec = parseModelSpec(values.model!);
  if (spec.kind !== 'synthetic') throw new Error('bench:engine runs synthetic:<preset> models only');
  const cfg = spec.config;
  const batch = intArg(values.batch, 'batch', 1, 128);
  const prompt = intArg(values.prompt, 'prompt', 1, 512);
  const gen = intArg(values.gen, 'gen', 1, 32);
  const resident = intArg(values['resident-layers'], 'resident-layers', 0, 0);
  const gpuMemoryBytes = values['gpu-memory'] ? parseSize(values['gpu-memory'], '--gpu-memory') : 0;
  const hostMemoryBytes = values['host-memory'] ? parseSize(values['host-memory'], '--host-memory') : undefined;
  const device = values.device === 'cpu' ? 'cpu' : 'cuda';
  const weightDtype = parseWeightDtype(values['weight-dtype'], '--weight-dtype');
  const stages = intArg(device === 'cuda' ? values.gpus : values.stages, device === 'cuda' ? 'gpus' : 'stages', 1, 1);
  const inFlight = intArg(values['in-flight'], 'in-flight', 1, stages);
  const miniBatchTokens = intArg(values['mini-batch-tokens'], 'mini-batch-tokens', 0, 0);
  if (inFlight > 8) throw new Error(`--in-flight must be at most 8 (the engine's step slots), got ${inFlight}`);
  const total = batch * inFlight;
  if (prompt + gen > cfg.maxPositions) throw new Error(`prompt + gen exceeds ${cfg.maxPositions} positions`);

  const addon = loadAddon();
  const probe = await addon.probe(device);
  process.stderr.write(
    `[bench:engine] probe: h2d ${(probe.h2dBytesPerSecond / 1e9).toFixed(1)} GB/s, gemm ${(probe.gemmFlops / 1e12).toFixed(0)} TFLOP/s\n`,
  );

  const gpuKvBlocks =
    values['gpu-cache-blocks'] === 'all'
      ? total * Math.ceil((prompt + gen) / BLOCK_TOKENS)
      : intArg(values['gpu-cache-blocks'], 'gpu-cache-blocks', 0, 0);
  const fracText = values['act-fraction']!;
  let actFraction: number;
  let fractionSource = 'given';
  if (fracText === 'auto') {
    const hw: HardwareProfile = {
      product: 'probed',
      h2dBytesPerSecond: probe.h2dBytesPerSecond || 1,
      d2hBytesPerSecond: probe.d2hBytesPerSecond || 1,
      gemmFlops: probe.gemmFlops,
      hbmBytes: gpuMemoryBytes || 80e9,
      hbmBytesPerSecond: 3.35e12,
    };
    try {
      const plan = planNode({
        model: cfg,
        hardware: hw,
        hostMemoryBytes: hostMemoryBytes ?? 2 ** 40,
        gpuMemoryBytes: gpuMemoryBytes || undefined,
        actFraction: 'auto',
        promptTokens: prompt,
        genTokens: gen,
        maxBatchCap: batch,
        weightDtype,
        // The placement this run forces: the fraction is the best for it, not for the planner's own
        // placement (which would keep the cache in HBM and call the step compute-bound).
        residentLayers: resident,
        gpuKvBlocks,
      });
      actFraction = plan.actFraction;
      fractionSource = `planNode: ${plan.reason}`;
    } catch (err) {
      actFraction = closedFormActFraction(cfg, batch, prompt, gen, hw.h2dBytesPerSecond, hw.gemmFlops);
      fractionSource = `closed form (planNode: ${err instanceof Error ? err.message : String(err)})`;
    }
  } else {
    actFraction = Number(fracText);
    if (fracText.trim() === '' || !(actFraction >= 0 && actFraction <= 1))
      throw new Error(`--act-fraction must be 0..1 or auto, got '${fracText}'`);
  }

  const { kvBlocks, actBlocks } = poolBlocks(total, prompt + gen, actFraction);
  const per = cacheBytesPerTokenPerLayer(cfg, 2);
  const cacheBytes = (kvBlocks * per.kv + actBlocks * per.act) * BLOCK_TOKENS * cfg.numLayers;
  const t0 = performance.now();
  const engine = await createEngine({
    device,
    config: toNativeConfig(cfg),
    weights: { kind: 'synthetic', seed: spec.seed },
    blockTokens: BLOCK_TOKENS,
    kvBlocks,
    actBlocks,
    gpuKvBlocks,
    actFraction,
    gpuMemoryBytes,
    residentLayers: resident,
    miniBatchTokens,
    ...(weightDtype !== 'fp16' ? { weightDtype } : {}),
    ...(stages > 1 ? (device === 'cuda' ? { gpus: stages } : { stages }) : {}),
  });
  const info = engine.info();
  if (hostMemoryBytes !== undefined && info.weightBytes + cacheBytes > hostMemoryBytes) {
    await engine.close();
    throw new Error(`weights (${info.weightBytes} B) + cache (${cacheBytes} B) exceed --host-memory ${hostMemoryBytes} B: lower --batch`);
  }
  process.stderr.write(
    `[bench:engine] ${spec.spec} on ${info.deviceName}: engine ready in ${((performance.now() - t0) / 1e3).toFixed(1)} s\n`,
  );
  try {
    const ids: number[] = [];
    for (let i = 0; i < total; ++i) {
      ids.push(
        engine.addSequence(promptTokens(prompt, i + 1, cfg.vocabSize), { sampling: { temperature: 0, topK: 0, topP: 1, seed: i + 1 } }),
      );
    }
    // One group: the batch steps as one (prefill, then gen − 1 decode steps). Several: each group
    // in its own slot, all in flight (bench/in-flight.ts); the decode time ends with the last group.
    const run = await runInFlight(engine, splitGroups(ids, inFlight), gen);
    const { prefillSeconds, decodeSeconds, decode: dec } = run;
    const m = engineMetrics(total, gen, { prefillSeconds, decodeSeconds, decodeSteps: gen - 1 }, dec, probe);
    console.log(
      JSON.stringify({
        model: spec.spec,
        device,
        weightDtype,
        card: info.deviceName,
        batch,
        batchMeaning: 'sequences per group; inFlight groups step at once, totalSequences = batch x inFlight',
        totalSequences: total,
        stages,
        inFlight,
        groupSizes: splitGroups(ids, inFlight).map((g) => g.length),
        prompt,
        gen,
        actFraction,
        actFractionSource: fractionSource,
        residentLayers: resident,
        miniBatchTokens,
        gpuMemoryBytes,
        gpuKvBlocks,
        kvBlocks,
        actBlocks,
        hostCacheBytes: cacheBytes,
        weightBytes: info.weightBytes,
        ...m,
        prefillSeconds,
        decodeSeconds,
        probedH2DGBps: probe.h2dBytesPerSecond / 1e9,
        probedD2HGBps: probe.d2hBytesPerSecond / 1e9,
        probedGemmTflops: probe.gemmFlops / 1e12,
        decodePhaseSeconds: {
          transfer: dec.transferSeconds,
          compute: dec.computeSeconds,
          recompute: dec.recomputeSeconds,
          idle: dec.idleSeconds,
        },
        driver: 'addon',
      }),
    );
  } finally {
    await engine.close();
  }
  return 0;
}

runIfEntryPoint(import.meta.url, 'bench:engine', main);
