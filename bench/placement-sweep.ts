// Planner vs a placement sweep (issue 10, acceptance 4): reads the JSON lines of
// `scripts/gpu-run.sh placement_sweep` (hs_cuda_bench at one GPU memory budget, a list of resident
// layer counts and GPU cache block counts, one process) and prints, for each measured placement,
// the planner's predicted decode step next to the measured one, then the planner's own choice at
// that budget against the best measured placement.
//
// A line's resident layers are what the engine ran: the bench's `residentLayers` is the request
// (-1: the engine's own fit), so they are counted back from the weight bytes streamed per decode
// step (every streamed layer moves mp.layerBytes). The measured step is the engine's own
// (`meanDecodeForwardSeconds`, Backend::Forward alone) where the line has it, else the bench's.
// Hardware: the table's H200 profile with the line's probed PCIe and GEMM rates.
//
// Usage: npm run build && node dist/bench/placement-sweep.js FILE.jsonl --gpu-memory 24GiB [--json]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { presetConfig } from '../model/presets.js';
import { parseSize } from '../cli/args.js';
import {
  gpuReserveBytes,
  modelProfile,
  placeNode,
  predict,
  requireHardwareProfile,
  tieredLayout,
  withGpuBlocks,
  withMeasured,
  type HardwareProfile,
  type ModelProfile,
} from '../planning/index.js';

const BLOCK_TOKENS = 16;

export interface SweepLine {
  model: string;
  batch: number;
  prompt: number;
  gen: number;
  actFraction: number;
  residentLayers: number;
  gpuKvBlocks: number;
  /** The bench's equal split of the batch (hs_cuda_bench --mini-batches; absent: 1). */
  miniBatches?: number;
  hostCacheBytes: number;
  totalTokensPerSecond: number;
  meanDecodeStepSeconds: number;
  meanDecodeForwardSeconds?: number;
  bytesPerDecodeStep: { weightsH2D: number };
  probedH2DGBps: number;
  probedD2HGBps: number;
  probedGemmTflops: number;
}

export interface SweepRow {
  residentLayers: number;
  gpuKvBlocks: number;
  miniBatches: number;
  measuredStepSeconds: number;
  totalTokensPerSecond: number;
  /** The planner's step for this placement (undefined when it does not fit even the budget plus the reserve). */
  predictedStepSeconds?: number;
  errorPct?: number;
  /** The placement ran, but the planner's layout keeps a reserve (CUDA context, cuBLAS) that the engine's cap leaves out. */
  beyondPlannerReserve?: boolean;
}

export interface SweepReport {
  model: string;
  gpuMemoryBytes: number;
  rows: SweepRow[];
  best: SweepRow;
  choice: {
    residentLayers: number;
    gpuKvBlocks: number;
    batch: number;
    miniBatchTokens: number;
    miniBatches: number;
    predictedStepSeconds: number;
  };
  /** The measured row at the planner's choice (same resident layers and mini-batches), if swept. */
  chosen?: SweepRow;
  /** chosen ÷ best − 1 in total tokens/s (≤ 0); undefined when the choice was not swept. */
  shortfallPct?: number;
}

function profileOf(model: string): ModelProfile {
  const cfg = presetConfig(model.replace(/^synthetic:/, ''));
  if (!cfg) throw new Error(`unknown model preset in the sweep: '${model}'`);
  return modelProfile(cfg);
}

function hardwareOf(l: SweepLine): HardwareProfile {
  return withMeasured(requireHardwareProfile('NVIDIA-H200'), {
    h2dBytesPerSecond: l.probedH2DGBps * 1e9,
    d2hBytesPerSecond: l.probedD2HGBps * 1e9,
  });
}

/** Resident layers the engine ran: all but those whose weights crossed PCIe each step. */
export function residentRun(mp: ModelProfile, l: SweepLine): number {
  return mp.numLayers - Math.round(l.bytesPerDecodeStep.weightsH2D / mp.layerBytes);
}

/** Mini-batches of a step at `batch` sequences, each of at most `miniBatchTokens` staged tokens of `seq`-token sequences. */
export function miniBatchCount(batch: number, seq: number, miniBatchTokens: number): number {
  return Math.ceil(batch / Math.max(1, Math.floor(miniBatchTokens / seq)));
}

/**
 * The planner's step for the placement a line ran, and whether it fits the planner's own budget (its
 * layout keeps gpuReserveBytes for the CUDA context and cuBLAS, which the engine's cap does not count,
 * so a placement that ran may lie beyond it: then it is predicted with the reserve added back).
 */
function predictedStep(mp: ModelProfile, hw: HardwareProfile, l: SweepLine, resident: number, budget: number) {
  // The bench splits the batch into l.miniBatches equal mini-batches: the workspace it ran with.
  const perMiniBatch = Math.ceil(l.batch / Math.max(1, l.miniBatches ?? 1)) * (l.prompt + l.gen);
  const run = { batch: l.batch, promptTokens: l.prompt, genTokens: l.gen, actFraction: l.actFraction, blockTokens: BLOCK_TOKENS };
  const layoutIn = (b: number) => {
    const layout = tieredLayout(mp, b, { ...run, miniBatchTokens: perMiniBatch }, resident);
    return layout && withGpuBlocks(layout, l.gpuKvBlocks, mp, BLOCK_TOKENS);
  };
  const within = layoutIn(budget);
  const forced = within ?? layoutIn(budget + gpuReserveBytes(budget));
  if (!forced) return undefined;
  const stepSeconds = predict(mp, hw, forced, l.actFraction, l.batch, { promptTokens: l.prompt, genTokens: l.gen }).stepSeconds;
  return { stepSeconds, beyondPlannerReserve: !within };
}

export function compareSweep(lines: SweepLine[], gpuMemoryBytes: number): SweepReport {
  if (lines.length === 0) throw new Error('no measured placements in the sweep');
  const l0 = lines[0];
  const mp = profileOf(l0.model);
  const hw = hardwareOf(l0);
  const rows = lines.map((l): SweepRow => {
    const resident = residentRun(mp, l);
    const measured = l.meanDecodeForwardSeconds ?? l.meanDecodeStepSeconds;
    const predicted = predictedStep(mp, hw, l, resident, gpuMemoryBytes);
    return {
      residentLayers: resident,
      gpuKvBlocks: l.gpuKvBlocks,
      miniBatches: l.miniBatches ?? 1,
      measuredStepSeconds: measured,
      totalTokensPerSecond: l.totalTokensPerSecond,
      ...(predicted
        ? {
            predictedStepSeconds: predicted.stepSeconds,
            errorPct: (predicted.stepSeconds / measured - 1) * 100,
            ...(predicted.beyondPlannerReserve ? { beyondPlannerReserve: true } : {}),
          }
        : {}),
    };
  });
  const best = rows.reduce((x, y) => (y.totalTokensPerSecond > x.totalTokensPerSecond ? y : x));
  const placed = placeNode({
    mp,
    hw,
    gpuBudgetBytes: gpuMemoryBytes,
    hostCacheBytes: l0.hostCacheBytes,
    workload: { promptTokens: l0.prompt, genTokens: l0.gen },
    blockTokens: BLOCK_TOKENS,
    maxBatchCap: l0.batch,
    actFraction: l0.actFraction,
    actAllowed: true,
  });
  const choice = {
    residentLayers: placed.layout.residentLayers,
    gpuKvBlocks: placed.layout.gpuKvBlocks ?? 0,
    batch: placed.batch,
    miniBatchTokens: placed.layout.miniBatchTokens,
    miniBatches: miniBatchCount(placed.batch, l0.prompt + l0.gen, placed.layout.miniBatchTokens),
    predictedStepSeconds: placed.prediction.stepSeconds,
  };
  // The GPU tier's size may differ by a few blocks from the swept one (each holds 16 of ~68,000 cached tokens).
  const chosen = rows.find((r) => r.residentLayers === choice.residentLayers && r.miniBatches === choice.miniBatches);
  return {
    model: l0.model,
    gpuMemoryBytes,
    rows,
    best,
    choice,
    ...(chosen ? { chosen, shortfallPct: (chosen.totalTokensPerSecond / best.totalTokensPerSecond - 1) * 100 } : {}),
  };
}

/**
 * The engine's result lines (a placement that failed to run prints `failed: true` and is left out, as
 * are summary lines and other drivers' lines, e.g. `generate()`'s in a `tiers` file: no bytes per step).
 */
export function parseSweep(text: string): SweepLine[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as SweepLine & { failed?: boolean; summary?: string })
    .filter((l) => !l.failed && !l.summary && typeof l.totalTokensPerSecond === 'number' && l.bytesPerDecodeStep !== undefined);
}

function pct(x: number): string {
  return `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(1)}%`;
}

const USAGE = 'usage: node dist/bench/placement-sweep.js FILE.jsonl --gpu-memory SIZE [--json]\n';

function main(argv: string[]): number {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        'gpu-memory': { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    process.stderr.write(`placement-sweep: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (positionals.length !== 1 || !values['gpu-memory']) {
    process.stderr.write(USAGE);
    return 2;
  }
  const report = compareSweep(parseSweep(readFileSync(positionals[0], 'utf8')), parseSize(values['gpu-memory'], '--gpu-memory'));
  if (values.json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return 0;
  }
  process.stdout.write(`${report.model}, GPU memory ${values['gpu-memory']}\n\n`);
  process.stdout.write('| resident layers | GPU blocks | mini-batches | total tok/s | measured step | predicted step | error |\n');
  process.stdout.write('|---|---|---|---|---|---|---|\n');
  for (const r of report.rows) {
    const p =
      r.predictedStepSeconds !== undefined
        ? `${(r.predictedStepSeconds * 1e3).toFixed(1)} ms${r.beyondPlannerReserve ? " (beyond the planner's reserve)" : ''}`
        : 'does not fit (planner)';
    process.stdout.write(
      `| ${r.residentLayers} | ${r.gpuKvBlocks} | ${r.miniBatches} | ${r.totalTokensPerSecond.toFixed(1)} | ${(r.measuredStepSeconds * 1e3).toFixed(1)} ms | ${p} | ${r.errorPct !== undefined ? pct(r.errorPct) : '—'} |\n`,
    );
  }
  const c = report.choice;
  process.stdout.write(
    `\nbest measured: ${report.best.residentLayers} resident, ${report.best.gpuKvBlocks} GPU blocks, ${report.best.miniBatches} mini-batches, ${report.best.totalTokensPerSecond.toFixed(1)} tok/s\n` +
      `planner's choice: ${c.residentLayers} resident, ${c.gpuKvBlocks} GPU blocks, batch ${c.batch} in ${c.miniBatches} mini-batches ` +
      `of ≤ ${c.miniBatchTokens} staged tokens (predicted step ${(c.predictedStepSeconds * 1e3).toFixed(1)} ms): ` +
      (report.chosen && report.shortfallPct !== undefined
        ? `${report.chosen.totalTokensPerSecond.toFixed(1)} tok/s measured (at ${report.chosen.gpuKvBlocks} GPU blocks), ${pct(report.shortfallPct)} against the best\n`
        : 'not in the sweep\n'),
  );
  return 0;
}

if (import.meta.url === `file://${process.argv[1]}`) process.exitCode = main(process.argv.slice(2));
