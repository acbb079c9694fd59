// bench/placement-sweep.ts: the resident layers a line ran (from the streamed weight bytes), the
// planner's prediction per placement, and the planner's choice against the best measured one.
import { describe, expect, test } from '@jest/globals';

import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { compareSweep, miniBatchCount, parseSweep, residentRun, type SweepLine } from '../../bench/placement-sweep.js';
import { presetConfig } from '../../model/presets.js';
import {
  modelProfile,
  placeNode,
  predict,
  requireHardwareProfile,
  tieredLayout,
  withGpuBlocks,
  withMeasured,
} from '../../planning/index.js';

const GiB = 2 ** 30;
const mp = modelProfile(presetConfig('opt-13b')!);
// What compareSweep predicts with: the table's H200 with the line's probed link rates.
const hw = withMeasured(requireHardwareProfile('NVIDIA-H200'), { h2dBytesPerSecond: 55e9, d2hBytesPerSecond: 55e9 });
const budget = 24 * GiB;
const hostCacheBytes = 40e9;

/** A measured line for `resident` layers in `miniBatches` equal mini-batches whose step is the planner's × `slow`. */
function line(resident: number, slow: number, miniBatches = 4, gpuKvBlocks = 28, batch = 128): SweepLine {
  const miniBatchTokens = Math.ceil(batch / miniBatches) * 544;
  const run = { batch, promptTokens: 512, genTokens: 32, actFraction: 1, blockTokens: 16, miniBatchTokens };
  const layout = withGpuBlocks(tieredLayout(mp, budget, run, resident)!, gpuKvBlocks, mp, 16)!;
  const step = predict(mp, hw, layout, 1, batch, { promptTokens: 512, genTokens: 32 }).stepSeconds;
  return {
    model: 'synthetic:opt-13b',
    batch,
    prompt: 512,
    gen: 32,
    actFraction: 1,
    residentLayers: -1,
    gpuKvBlocks,
    miniBatches,
    hostCacheBytes,
    totalTokensPerSecond: (batch * 32) / (3.5 + 31 * step * slow),
    meanDecodeStepSeconds: step * slow + 0.02,
    meanDecodeForwardSeconds: step * slow,
    bytesPerDecodeStep: { weightsH2D: (mp.numLayers - resident) * mp.layerBytes },
    probedH2DGBps: 55,
    probedD2HGBps: 55,
    probedGemmTflops: 900,
  };
}

describe('placement sweep vs the planner', () => {
  const choice = placeNode({
    mp,
    hw,
    gpuBudgetBytes: budget,
    hostCacheBytes,
    workload: { promptTokens: 512, genTokens: 32 },
    blockTokens: 16,
    maxBatchCap: 128,
    actFraction: 1,
    actAllowed: true,
  });

  test('a line ran the layers its streamed bytes leave resident', () => {
    expect(residentRun(mp, line(26, 1))).toBe(26);
    expect(residentRun(mp, line(0, 1))).toBe(0);
  });

  test('errors per placement, the best measured, and the choice measured against it', () => {
    const r = choice.layout.residentLayers;
    const m = miniBatchCount(choice.batch, 544, choice.layout.miniBatchTokens);
    // 20 resident layers run 3% slower than predicted, 26 5% slower, the choice as predicted.
    const lines = [line(20, 1.03), line(26, 1.05), line(r, 1.0, m, choice.layout.gpuKvBlocks, choice.batch)];
    const rep = compareSweep(lines, budget);
    expect(rep.rows.map((x) => x.residentLayers)).toEqual([20, 26, r]);
    expect(rep.rows[2].errorPct).toBeCloseTo(0, 6); // the engine's own time (Forward), not the bench's step
    expect(rep.rows[1].errorPct).toBeCloseTo((1 / 1.05 - 1) * 100, 6);
    expect(rep.choice.residentLayers).toBe(r);
    expect(rep.choice.miniBatches).toBe(m);
    expect(rep.best.residentLayers).toBe(r); // more resident layers stream less
    expect(rep.chosen?.residentLayers).toBe(r);
    expect(rep.shortfallPct).toBeCloseTo(0, 9);
    // Without the choice in the sweep there is no shortfall to report.
    const partial = compareSweep([line(20, 1), line(26, 1)], budget);
    expect(partial.chosen).toBeUndefined();
    expect(partial.shortfallPct).toBeUndefined();
    expect(partial.best.residentLayers).toBe(26);
  });

  test('a placement the planner says does not fit has no prediction', () => {
    const all = { ...line(26, 1), bytesPerDecodeStep: { weightsH2D: 0 } }; // 40 resident in 24 GiB
    expect(compareSweep([all], budget).rows[0].predictedStepSeconds).toBeUndefined();
  });

  test("a placement that ran inside the cap but not inside the planner's reserve is predicted and marked", () => {
    // The H200 sweep (bench/data): 28 resident layers in 4 mini-batches ran in 24 GiB; the planner
    // keeps 1 GiB for the CUDA context and cuBLAS, which the engine's cap does not count.
    const rows = compareSweep(parseSweep(readFileSync('bench/data/placement-sweep-opt13b-24g-h200.jsonl', 'utf8')), budget).rows;
    const r28 = rows.find((x) => x.residentLayers === 28 && x.miniBatches === 4)!;
    expect(r28.beyondPlannerReserve).toBe(true);
    expect(r28.predictedStepSeconds).toBeDefined();
    expect(rows.find((x) => x.residentLayers === 26)!.beyondPlannerReserve).toBeUndefined();
  });

  test('the measured H200 sweep: every placement predicted within ±10% (issue 10, acceptance 4)', () => {
    const rep = compareSweep(parseSweep(readFileSync('bench/data/placement-sweep-opt13b-24g-h200.jsonl', 'utf8')), budget);
    expect(rep.rows.length).toBeGreaterThanOrEqual(7);
    for (const row of rep.rows) expect(Math.abs(row.errorPct!)).toBeLessThan(10);
    expect(rep.best.residentLayers).toBe(28);
  });

  test("the eighth session's rows, one call: resident, 24 GiB and all on host each predicted within ±7% (acceptance 4 asks ±10%)", () => {
    const lines = parseSweep(
      readFileSync('bench/data/tiers-h200-2026-12-01g.jsonl', 'utf8') +
        readFileSync('bench/data/placement-choice-opt13b-24g-h200-2026-12-01g.jsonl', 'utf8'),
    );
    expect(lines).toHaveLength(5); // generate()'s line is not the engine's
    const resident = lines.filter((l) => l.residentLayers === 40);
    const streamed = lines.filter((l) => l.residentLayers !== 40);
    const rows = [...compareSweep(resident, 139 * GiB).rows, ...streamed.map((l) => compareSweep([l], budget).rows[0])];
    expect(rows.map((r) => r.residentLayers)).toEqual([40, 26, 26, 0, 29]);
    // Acceptance 4 asks ±10%; ±7% guards the refit (GEMM_WEIGHT_READ_EFFICIENCY 0.56 put the resident row at +9.8%).
    for (const row of rows) expect(Math.abs(row.errorPct!)).toBeLessThan(7);
  });

  test('the command line: --help prints the usage, a bad option says so without a stack trace', () => {
    const run = (...args: string[]) => spawnSync(process.execPath, ['dist/bench/placement-sweep.js', ...args], { encoding: 'utf8' });
    const help = run('--help');
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^usage: /);
    const bad = run('--bogus');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/placement-sweep: Unknown option '--bogus'/);
    expect(bad.stderr).not.toMatch(/\n\s+at /);
    expect(run('x.jsonl').status).toBe(2); // no --gpu-memory
  });

  test('failed placements and summary lines are not measurements', () => {
    const text = [
      JSON.stringify(line(26, 1)),
      '{"model":"synthetic:opt-13b","residentLayers":35,"gpuCacheBlocks":"28","gpus":1,"failed":true}',
      '{"model":"synthetic:opt-13b","gpus":[1,2],"totalTokensPerSecond":[1,2],"ratio":2,"summary":"pipeline"}',
      '[bench] a log line',
    ].join('\n');
    expect(parseSweep(text)).toHaveLength(1);
    expect(() => compareSweep([], budget)).toThrow(/no measured placements/);
  });
});
