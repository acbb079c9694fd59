// Acceptance 3 of issue 4 as a regression test: the cost model against decode steps measured on the
// H200 host (bench/data/calibrate-h200.jsonl, from scripts/gpu-calibrate.sh). A change to the cost
// model or the H200 profile that breaks ±15% or the solver's pick fails here.
import { readFileSync } from 'node:fs';
import { describe, expect, test } from '@jest/globals';
import { compare, parseLines } from '../../bench/calibrate-planning.js';

const lines = parseLines(readFileSync(new URL('../../bench/data/calibrate-h200.jsonl', import.meta.url), 'utf8'));

describe('planner vs measured decode steps (H200, CUDA backend)', () => {
  test('the data covers OPT-13B and OPT-30B at fractions 0, 0.5 and 1', () => {
    for (const model of ['synthetic:opt-13b', 'synthetic:opt-30b']) {
      const fr = lines.filter((m) => m.model === model).map((m) => m.actFraction);
      expect(fr).toEqual(expect.arrayContaining([0, 0.5, 1]));
    }
  });

  test.each([false, true])('predicted step within ±15%% of measured (probed values: %s)', (probed) => {
    const { rows } = compare(lines, probed);
    expect(rows).toHaveLength(lines.length);
    for (const r of rows) expect(Math.abs(r.errorPct)).toBeLessThanOrEqual(15);
  });

  test("the solver's fraction is within 5% of the best measured throughput of the OPT-13B sweep", () => {
    const { sweeps } = compare(lines, false);
    expect(sweeps.map((s) => s.model)).toEqual(['synthetic:opt-13b']);
    const s = sweeps[0];
    expect(Math.abs(s.solverMeasuredAt - s.solverFraction)).toBeLessThanOrEqual(0.05);
    expect(s.solverMeasuredTokensPerSecond).toBeGreaterThanOrEqual(0.95 * s.bestTokensPerSecond);
  });

  test('lines without a measured step are skipped, not misread', () => {
    expect(parseLines('{"model":"synthetic:opt-13b","totalTokensPerSecond":1}\nnot json\n')).toEqual([]);
  });
});
