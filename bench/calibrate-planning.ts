// Planner vs measured (issue 4, acceptance 3): reads the JSON lines of the CUDA calibration bench
// (scripts/gpu-calibrate.sh → native/test/cuda/calibrate_bench.cc) and prints, for each measured
// (model, batch, context, ACT fraction), the cost model's predicted decode step next to the
// measured one, then the solver's fraction for each swept shape against the best measured one.
//
// The prediction uses the bench's regime: every layer streamed (residentLayers 0, embeddings and
// lm_head on the GPU), all cache in host memory, the bench's mini-batch count, batch fixed (the
// cache budget is not what limits it here). Hardware: the table's H200 profile, or with
// `--probed` the probe values recorded in each line (h2d, d2h, GEMM rate).
//
// Usage: npm run build && node dist/bench/calibrate-planning.js FILE.jsonl [--probed] [--json]
import { readFileSync } from 'node:fs';
import { presetConfig } from '../model/presets.js';
import {
  decodeStepCost,
  gpuLayout,
  modelProfile,
  requireHardwareProfile,
  solveActFraction,
  withMeasured,
  type GpuLayout,
  type HardwareProfile,
  type ModelProfile,
} from '../planning/index.js';

export interface Measured {
  model: string;
  batch: number;
  meanContext: number;
  actFraction: number;
  miniBatches: number;
  meanDecodeStepSeconds: number;
  decodeTokensPerSecond: number;
  probedH2DGBps: number;
  probedD2HGBps: number;
  probedGemmTflops: number;
}

export interface Row {
  model: string;
  batch: number;
  context: number;
  actFraction: number;
  predictedSeconds: number;
  measuredSeconds: number;
  errorPct: number;
}

export interface SweepResult {
  model: string;
  batch: number;
  context: number;
  solverFraction: number;
  /** Measured decode tokens/s at the solver's fraction (nearest measured fraction). */
  solverMeasuredTokensPerSecond: number;
  solverMeasuredAt: number;
  bestFraction: number;
  bestTokensPerSecond: number;
  /** solver ÷ best − 1 (≤ 0). */
  shortfallPct: number;
}

const H200 = 'NVIDIA-H200';

/** The bench's layout: no resident layer, `miniBatches` mini-batches over the step's N tokens. */
export function streamedLayout(mp: ModelProfile, hw: HardwareProfile, batch: number, context: number, miniBatches: number): GpuLayout {
  const base = gpuLayout(mp, hw.hbmBytes, Math.ceil(context));
  return {
    ...base,
    residentLayers: 0,
    layerBufferBytes: 2 * mp.layerBytes,
    miniBatchTokens: Math.ceil((batch * context) / Math.max(1, miniBatches)),
  };
}

export function hardwareFor(m: Measured, probed: boolean): HardwareProfile {
  const table = requireHardwareProfile(H200);
  if (!probed) return table;
  return withMeasured(table, {
    h2dBytesPerSecond: m.probedH2DGBps * 1e9,
    d2hBytesPerSecond: m.probedD2HGBps * 1e9,
    gemmFlops: m.probedGemmTflops * 1e12,
  });
}

function profileOf(model: string): ModelProfile {
  const name = model.replace(/^synthetic:/, '');
  const cfg = presetConfig(name);
  if (!cfg) throw new Error(`unknown model preset '${name}'`);
  return modelProfile(cfg);
}

export function compare(lines: Measured[], probed: boolean): { rows: Row[]; sweeps: SweepResult[] } {
  const rows: Row[] = lines.map((m) => {
    const mp = profileOf(m.model);
    const hw = hardwareFor(m, probed);
    const layout = streamedLayout(mp, hw, m.batch, m.meanContext, m.miniBatches);
    const pred = decodeStepCost(mp, hw, layout, { actFraction: m.actFraction, batch: m.batch, contextTokens: m.meanContext });
    return {
      model: m.model,
      batch: m.batch,
      context: m.meanContext,
      actFraction: m.actFraction,
      predictedSeconds: pred.stepSeconds,
      measuredSeconds: m.meanDecodeStepSeconds,
      errorPct: (pred.stepSeconds / m.meanDecodeStepSeconds - 1) * 100,
    };
  });

  // A sweep: one (model, batch, context) shape measured at more than three fractions.
  const groups = new Map<string, Measured[]>();
  for (const m of lines) {
    const k = `${m.model}|${m.batch}|${m.meanContext}`;
    groups.set(k, [...(groups.get(k) ?? []), m]);
  }
  const sweeps: SweepResult[] = [];
  for (const g of groups.values()) {
    if (g.length <= 3) continue;
    const m0 = g[0];
    const mp = profileOf(m0.model);
    const hw = hardwareFor(m0, probed);
    const layout = streamedLayout(mp, hw, m0.batch, m0.meanContext, m0.miniBatches);
    // Mean context prompt + gen/2: gen 32 around the measured context, prompt the rest.
    const genTokens = 32;
    const promptTokens = Math.round(m0.meanContext - genTokens / 2);
    const sol = solveActFraction({
      mp,
      hw,
      layout,
      cacheBytes: Number.MAX_SAFE_INTEGER,
      workload: { promptTokens, genTokens },
      maxBatchCap: m0.batch,
    });
    if (!sol) continue;
    const best = g.reduce((x, y) => (y.decodeTokensPerSecond > x.decodeTokensPerSecond ? y : x));
    const near = g.reduce((x, y) => (Math.abs(y.actFraction - sol.actFraction) < Math.abs(x.actFraction - sol.actFraction) ? y : x));
    sweeps.push({
      model: m0.model,
      batch: m0.batch,
      context: m0.meanContext,
      solverFraction: sol.actFraction,
      solverMeasuredTokensPerSecond: near.decodeTokensPerSecond,
      solverMeasuredAt: near.actFraction,
      bestFraction: best.actFraction,
      bestTokensPerSecond: best.decodeTokensPerSecond,
      shortfallPct: (near.decodeTokensPerSecond / best.decodeTokensPerSecond - 1) * 100,
    });
  }
  return { rows, sweeps };
}

export function parseLines(text: string): Measured[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Measured)
    .filter((m) => typeof m.meanContext === 'number' && typeof m.meanDecodeStepSeconds === 'number');
}

function main(argv: string[]): number {
  const file = argv.find((a) => !a.startsWith('--'));
  if (!file) {
    process.stderr.write('usage: node dist/bench/calibrate-planning.js FILE.jsonl [--probed] [--json]\n');
    return 2;
  }
  const probed = argv.includes('--probed');
  const lines = parseLines(readFileSync(file, 'utf8'));
  const { rows, sweeps } = compare(lines, probed);
  if (argv.includes('--json')) {
    process.stdout.write(`${JSON.stringify({ hardware: probed ? 'probed' : H200, rows, sweeps }, null, 2)}\n`);
    return 0;
  }
  const sorted = [...rows].sort((a, b) => a.model.localeCompare(b.model) || a.actFraction - b.actFraction);
  process.stdout.write(`hardware: ${probed ? 'probed values of each line' : `${H200} table profile`}\n\n`);
  process.stdout.write(
    '| Model (dims) | Batch | Context | ACT fraction | Predicted step (s) | Measured step (s) | Error |\n|---|---|---|---|---|---|---|\n',
  );
  for (const r of sorted) {
    const sign = r.errorPct >= 0 ? '+' : '−';
    process.stdout.write(
      `| ${r.model.replace(/^synthetic:/, '')} | ${r.batch} | ${r.context} | ${r.actFraction.toFixed(1)} | ` +
        `${r.predictedSeconds.toFixed(3)} | ${r.measuredSeconds.toFixed(3)} | ${sign}${Math.abs(r.errorPct).toFixed(1)}% |\n`,
    );
  }
  process.stdout.write(`\nmax |error|: ${Math.max(...rows.map((r) => Math.abs(r.errorPct))).toFixed(1)}%\n\n`);
  for (const s of sweeps) {
    process.stdout.write(
      `${s.model} batch ${s.batch} context ${s.context}: solver fraction ${s.solverFraction} → measured ` +
        `${s.solverMeasuredTokensPerSecond.toFixed(1)} decode tok/s (at ${s.solverMeasuredAt}); best measured ` +
        `${s.bestTokensPerSecond.toFixed(1)} at ${s.bestFraction}; shortfall ${Math.abs(s.shortfallPct).toFixed(1)}%\n`,
    );
  }
  return 0;
}

if (import.meta.url === `file://${process.argv[1]}`) process.exitCode = main(process.argv.slice(2));
