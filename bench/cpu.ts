// CPU benchmark (`npm run bench:cpu`, after `npm run build`): decode throughput of the CPU engine
// against the machine's peak sgemm rate, both measured in this run.
//
// For each batch size it adds that many sequences with a synthetic prompt, runs one prefill step
// (timed on its own), then times `--steps` decode steps, one token per sequence each. It reports
// decode tokens/s and the achieved rate 2 × (matmul parameters) × tokens / decode time, where the
// matmul parameters are every Linear weight the step multiplies by (per layer Q, K, V, O and the
// FFN; plus the LM head) and exclude embeddings, norms, biases and attention's score/value
// products (which are small at these context lengths; reported separately as attnGflop).
// The peak is the addon's probe('cpu'): the same GEMM kernel on a large square, cache-friendly
// problem, as a sustained rate over half a second. The machine may be shared with other busy
// processes whose load changes from second to second, so each decode round is paired with the
// probes taken just before and just after it (probe, round, probe, round, ..., probe) and its
// ratio is achieved ÷ the higher of those two (the conservative choice). Each batch size runs
// `--rounds` rounds; the table shows the best round (highest tokens/s) with its paired peak and
// ratio, and the median ratio over the rounds; the JSON line has every round.
// Progress goes to stderr; a table and, last, one JSON line go to stdout.
//   node dist/bench/cpu.js [--model synthetic:opt-125m] [--batches 1,16] [--prompt 32] [--steps 32] [--rounds 3] [--threads N]
import { parseArgs } from 'node:util';

import { presetConfig } from '../model/presets.js';
import type { ModelConfig } from '../model/types.js';
import { createEngine, loadAddon, toNativeConfig, type NativeEngine } from '../native/ts/engine.js';

const SYNTHETIC = 'synthetic:';
const BLOCK_TOKENS = 16;

/** Weights multiplied per token in one forward pass (Linear layers and the LM head). */
export function matmulParams(cfg: ModelConfig): number {
  const h = cfg.hiddenSize;
  const q = cfg.numHeads * cfg.headDim;
  const kv = cfg.numKvHeads * cfg.headDim;
  const attn = h * q + 2 * h * kv + q * h;
  const ffn = (cfg.arch === 'llama' ? 3 : 2) * h * cfg.ffnSize;
  return cfg.numLayers * (attn + ffn) + cfg.vocabSize * h;
}

/** FLOPs of attention scores and weighted values for one new token at context length `ctx`. */
export function attentionFlops(cfg: ModelConfig, ctx: number): number {
  return cfg.numLayers * 2 * 2 * cfg.numHeads * cfg.headDim * ctx;
}

export interface DecodeRow {
  batch: number;
  promptTokens: number;
  decodeSteps: number;
  prefillSeconds: number;
  decodeSeconds: number;
  tokensPerSecond: number;
  /** Median decode step wall time as seen from JS, and the engine's own wall time for it. */
  stepMsMedian: number;
  engineStepMsMedian: number;
  achievedGflops: number;
  attnGflop: number;
  /** Share of decode wall time the engine reports as compute (the rest: sampling, bookkeeping, JS). */
  computeShare: number;
}

/** One decode round and the peak GEMM rate probed around it. */
export interface PairedRound extends DecodeRow {
  peakGflops: number;
  ratioOfPeak: number;
}

export interface BatchResult extends PairedRound {
  rounds: PairedRound[];
  medianRatioOfPeak: number;
  medianRoundTokensPerSecond: number;
}

/** Pairs round i with max(probe i, probe i + 1); probes has one more entry than rounds (GFLOP/s). */
export function pairRounds(rounds: DecodeRow[], probes: number[]): PairedRound[] {
  if (probes.length !== rounds.length + 1)
    throw new Error(`need ${rounds.length + 1} probes for ${rounds.length} rounds, got ${probes.length}`);
  return rounds.map((r, i) => {
    const peakGflops = Math.max(probes[i], probes[i + 1]);
    return { ...r, peakGflops, ratioOfPeak: r.achievedGflops / peakGflops };
  });
}

/** The best round (highest decode tokens/s) of one batch size, plus medians over all rounds. */
export function summarise(rounds: PairedRound[]): BatchResult {
  if (rounds.length === 0) throw new Error('no rounds to summarise');
  const best = rounds.reduce((a, b) => (b.tokensPerSecond > a.tokensPerSecond ? b : a));
  return {
    ...best,
    rounds,
    medianRatioOfPeak: median(rounds.map((r) => r.ratioOfPeak)),
    medianRoundTokensPerSecond: median(rounds.map((r) => r.tokensPerSecond)),
  };
}

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function parseList(v: string, name: string): number[] {
  const xs = v.split(',').map((s) => Number(s.trim()));
  if (xs.length === 0 || xs.some((x) => !Number.isInteger(x) || x < 1))
    throw new Error(`--${name} must be a comma-separated list of positive integers, got '${v}'`);
  return xs;
}

function parsePositive(v: string | undefined, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  const x = Number(v);
  if (!Number.isInteger(x) || x < 0) throw new Error(`--${name} must be a non-negative integer, got '${v}'`);
  return x;
}

function log(msg: string): void {
  process.stderr.write(`[bench:cpu] ${msg}\n`);
}

/** Deterministic prompt tokens (avoiding the low ids that presets use as BOS/EOS). */
function promptTokens(len: number, seed: number, vocab: number): Int32Array {
  const t = new Int32Array(len);
  let x = seed * 2654435761 + 12345;
  for (let i = 0; i < len; ++i) {
    x = (x * 1103515245 + 12345) >>> 0;
    t[i] = 10 + (x % (vocab - 10));
  }
  return t;
}

async function runBatch(engine: NativeEngine, cfg: ModelConfig, batch: number, prompt: number, steps: number): Promise<DecodeRow> {
  const ids: number[] = [];
  try {
    for (let i = 0; i < batch; ++i) {
      ids.push(
        engine.addSequence(promptTokens(prompt, i + 1, cfg.vocabSize), { sampling: { temperature: 0, topK: 0, topP: 1, seed: i + 1 } }),
      );
    }
    const idArr = Int32Array.from(ids);
    let t0 = performance.now();
    await engine.step(idArr);
    const prefillSeconds = (performance.now() - t0) / 1000;
    const jsMs: number[] = [];
    const engineMs: number[] = [];
    let compute = 0;
    let decodeSeconds = 0;
    for (let s = 0; s < steps; ++s) {
      t0 = performance.now();
      const r = await engine.step(idArr);
      const ms = performance.now() - t0;
      if (r.status.some((st) => st !== 0)) throw new Error(`decode step ${s} at batch ${batch}: a sequence ran out of cache blocks`);
      jsMs.push(ms);
      engineMs.push(r.counters.wallSeconds * 1000);
      compute += r.counters.computeSeconds + r.counters.recomputeSeconds;
      decodeSeconds += ms / 1000;
    }
    const tokens = batch * steps;
    let attn = 0;
    for (let s = 0; s < steps; ++s) attn += batch * attentionFlops(cfg, prompt + s + 1);
    return {
      batch,
      promptTokens: prompt,
      decodeSteps: steps,
      prefillSeconds,
      decodeSeconds,
      tokensPerSecond: tokens / decodeSeconds,
      stepMsMedian: median(jsMs),
      engineStepMsMedian: median(engineMs),
      achievedGflops: (2 * matmulParams(cfg) * tokens) / decodeSeconds / 1e9,
      attnGflop: attn / 1e9,
      computeShare: compute / decodeSeconds,
    };
  } finally {
    for (const id of ids) engine.removeSequence(id);
  }
}

async function main(): Promise<number> {
  const a = parseArgs({
    options: {
      model: { type: 'string', default: 'synthetic:opt-125m' },
      batches: { type: 'string', default: '1,16' },
      prompt: { type: 'string', default: '32' },
      steps: { type: 'string', default: '32' },
      rounds: { type: 'string', default: '3' },
      threads: { type: 'string' },
    },
  }).values;
  const model = a.model!;
  if (!model.startsWith(SYNTHETIC)) throw new Error(`--model must be synthetic:<preset>, got '${model}'`);
  const cfg = presetConfig(model.slice(SYNTHETIC.length));
  if (!cfg) throw new Error(`unknown preset in '${model}'`);
  const batches = parseList(a.batches!, 'batches');
  const prompt = parsePositive(a.prompt, 'prompt', 32);
  const steps = parsePositive(a.steps, 'steps', 32);
  const threads = parsePositive(a.threads, 'threads', 0);
  const rounds = parsePositive(a.rounds, 'rounds', 3);
  if (prompt < 1 || steps < 1 || rounds < 1) throw new Error('--prompt, --steps and --rounds must be at least 1');

  const addon = loadAddon();
  const probe = async (): Promise<number> => {
    const g = (await addon.probe('cpu', threads)).gemmFlops / 1e9;
    log(`peak GEMM probe: ${g.toFixed(1)} GFLOP/s`);
    return g;
  };

  const maxBatch = Math.max(...batches);
  const blocksPerSeq = Math.ceil((prompt + steps + 1) / BLOCK_TOKENS) + 1;
  log(`creating engine for ${model} (${threads || 'all'} threads)`);
  const engine = await createEngine({
    device: 'cpu',
    config: toNativeConfig(cfg),
    weights: { kind: 'synthetic', seed: 1 },
    blockTokens: BLOCK_TOKENS,
    kvBlocks: maxBatch * blocksPerSeq,
    actBlocks: maxBatch * blocksPerSeq,
    actFraction: 0,
    threads,
  });
  const info = engine.info();
  log(`engine: ${info.deviceName}, ${(info.weightBytes / 2 ** 20).toFixed(0)} MiB of weights`);
  const rows: BatchResult[] = [];
  const allProbes: number[] = [];
  try {
    for (const b of batches) {
      log(`batch ${b}: warm-up`);
      await runBatch(engine, cfg, b, prompt, 2);
      const all: DecodeRow[] = [];
      const probes = [await probe()];
      for (let i = 0; i < rounds; ++i) {
        log(`batch ${b} round ${i + 1}/${rounds}: prefill ${prompt} tokens, then ${steps} decode steps`);
        const r = await runBatch(engine, cfg, b, prompt, steps);
        log(`batch ${b} round ${i + 1}: ${r.tokensPerSecond.toFixed(1)} tokens/s, ${r.achievedGflops.toFixed(1)} GFLOP/s`);
        all.push(r);
        probes.push(await probe());
      }
      allProbes.push(...probes);
      rows.push(summarise(pairRounds(all, probes)));
    }
  } finally {
    await engine.close();
  }
  const kernel = /gemm (\w+)/.exec(info.deviceName)?.[1] ?? 'unknown';
  const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;

  console.log(`\nCPU benchmark: ${model}, prompt ${prompt} tokens, ${steps} decode steps, best of ${rounds} rounds, ${info.deviceName}`);
  console.log(
    `peak GEMM probes (${kernel}, 1024^3, sustained 0.5 s): min ${Math.min(...allProbes).toFixed(1)}, max ${Math.max(...allProbes).toFixed(1)} GFLOP/s`,
  );
  console.log(`achieved = 2 x ${(matmulParams(cfg) / 1e6).toFixed(1)}M matmul params x tokens / decode time\n`);
  console.log(
    'batch  prefill s  decode tok/s (median round)  step ms (js/engine)  achieved GFLOP/s  paired peak  of peak (median)  compute share',
  );
  for (const r of rows) {
    const tps = `${r.tokensPerSecond.toFixed(1)} (${r.medianRoundTokensPerSecond.toFixed(1)})`;
    console.log(
      `${String(r.batch).padStart(5)}  ${r.prefillSeconds.toFixed(2).padStart(9)}  ${tps.padStart(27)}  ` +
        `${(r.stepMsMedian.toFixed(1) + ' / ' + r.engineStepMsMedian.toFixed(1)).padStart(19)}  ${r.achievedGflops.toFixed(1).padStart(16)}  ` +
        `${r.peakGflops.toFixed(1).padStart(11)}  ${(pct(r.ratioOfPeak) + ' (' + pct(r.medianRatioOfPeak) + ')').padStart(16)}  ${(r.computeShare * 100).toFixed(0).padStart(12)}%`,
    );
  }
  console.log(
    JSON.stringify({
      bench: 'cpu',
      model,
      device: 'cpu',
      deviceName: info.deviceName,
      kernel,
      rounds,
      promptTokens: prompt,
      decodeSteps: steps,
      peakGemmGflops: Math.max(...allProbes),
      peakProbesGflops: allProbes,
      matmulParams: matmulParams(cfg),
      rows,
    }),
  );
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`bench:cpu failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
