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
  measuredStepSeconds: number;
  totalTokensPerSecond: number;
  /** undefined when the planner says this placement does not fit the budget. */
  predictedStepSeconds?: number;
  errorPct?: number;
}

export interface SweepReport {
  model: string;
  gpuMemoryBytes: number;
  rows: SweepRow[];
  best: SweepRow;
  choice: { residentLayers: number; gpuKvBlocks: number; predictedStepSeconds: number };
  /** The measured row at the planner's choice (same resident layers and GPU blocks), if swept. */
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
    gemmFlops: l.probedGemmTflops * 1e12,
  });
}

/** Resident layers the engine ran: all but those whose weights crossed PCIe each step. */
export function residentRun(mp: ModelProfile, l: SweepLine): number {
  return mp.numLayers - Math.round(l.bytesPerDecodeStep.weightsH2D / mp.layerBytes);
}

/** The planner's step for the placement a line ran (undefined when the planner says it does not fit). */
function predictedStep(mp: ModelProfile, hw: HardwareProfile, l: SweepLine, resident: number, budget: number): number | undefined {
  const layout = tieredLayout(mp, budget, l.prompt + l.gen, BLOCK_TOKENS, resident);
  const forced = layout && withGpuBlocks(layout, l.gpuKvBlocks, mp, BLOCK_TOKENS);
  if (!forced) return undefined;
  return predict(mp, hw, forced, l.actFraction, l.batch, { promptTokens: l.prompt, genTokens: l.gen }).stepSeconds;
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
      measuredStepSeconds: measured,
      totalTokensPerSecond: l.totalTokensPerSecond,
      ...(predicted !== undefined ? { predictedStepSeconds: predicted, errorPct: (predicted / measured - 1) * 100 } : {}),
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
    predictedStepSeconds: placed.prediction.stepSeconds,
  };
  const chosen = rows.find((r) => r.residentLayers === choice.residentLayers && r.gpuKvBlocks === choice.gpuKvBlocks);
  return {
    model: l0.model,
    gpuMemoryBytes,
    rows,
    best,
    choice,
    ...(chosen ? { chosen, shortfallPct: (chosen.totalTokensPerSecond / best.totalTokensPerSecond - 1) * 100 } : {}),
  };
}

/** The bench's result lines (a placement that failed to run prints `failed: true` and is left out). */
export function parseSweep(text: string): SweepLine[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as SweepLine & { failed?: boolean; summary?: string })
    .filter((l) => !l.failed && !l.summary && typeof l.totalTokensPerSecond === 'number');
}

function pct(x: number): string {
  return `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(1)}%`;
}

function main(argv: string[]): number {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { 'gpu-memory': { type: 'string' }, json: { type: 'boolean', default: false } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 1 || !values['gpu-memory']) {
    process.stderr.write('usage: node dist/bench/placement-sweep.js FILE.jsonl --gpu-memory SIZE [--json]\n');
    return 2;
  }
  const report = compareSweep(parseSweep(readFileSync(positionals[0], 'utf8')), parseSize(values['gpu-memory'], '--gpu-memory'));
  if (values.json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return 0;
  }
  process.stdout.write(`${report.model}, GPU memory ${values['gpu-memory']}\n\n`);
  process.stdout.write(
    '| resident layers | GPU blocks | total tok/s | measured step | predicted step | error |\n|---|---|---|---|---|---|\n',
  );
  for (const r of report.rows) {
    const p = r.predictedStepSeconds !== undefined ? `${(r.predictedStepSeconds * 1e3).toFixed(1)} ms` : 'does not fit (planner)';
    process.stdout.write(
      `| ${r.residentLayers} | ${r.gpuKvBlocks} | ${r.totalTokensPerSecond.toFixed(1)} | ${(r.measuredStepSeconds * 1e3).toFixed(1)} ms | ${p} | ${r.errorPct !== undefined ? pct(r.errorPct) : '—'} |\n`,
    );
  }
  const c = report.choice;
  process.stdout.write(
    `\nbest measured: ${report.best.residentLayers} resident, ${report.best.gpuKvBlocks} GPU blocks, ${report.best.totalTokensPerSecond.toFixed(1)} tok/s\n` +
      `planner's choice: ${c.residentLayers} resident, ${c.gpuKvBlocks} GPU blocks (predicted step ${(c.predictedStepSeconds * 1e3).toFixed(1)} ms): ` +
      (report.chosen && report.shortfallPct !== undefined
        ? `${report.chosen.totalTokensPerSecond.toFixed(1)} tok/s measured, ${pct(report.shortfallPct)} against the best\n`
        : 'not in the sweep\n'),
  );
  return 0;
}

if (import.meta.url === `file://${process.argv[1]}`) process.exitCode = main(process.argv.slice(2));
