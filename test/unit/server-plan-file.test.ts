import { afterEach, describe, expect, test } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parsePlan, watchPlanFile, type PlanFile } from '../../server/plan-file.js';

describe('parsePlan', () => {
  test('accepts the contract example and ignores unknown fields', () => {
    const r = parsePlan(
      '{"actFraction":0.4,"kvBlocks":1200,"actBlocks":800,"blockTokens":16,"maxBatch":64,"generation":3,"reason":"transfer-bound: x","extra":1}',
    );
    expect(r).toEqual({
      ok: true,
      plan: { actFraction: 0.4, kvBlocks: 1200, actBlocks: 800, blockTokens: 16, maxBatch: 64, generation: 3, reason: 'transfer-bound: x' },
    });
  });
  test.each([
    ['{', /not valid JSON/],
    ['[]', /JSON object/],
    ['{}', /actFraction/],
    ['{"actFraction":1.5}', /\[0, 1\]/],
    ['{"actFraction":"0.5"}', /actFraction/],
    ['{"actFraction":0.5,"maxBatch":0}', /maxBatch/],
    ['{"actFraction":0.5,"kvBlocks":1.5}', /kvBlocks/],
  ])('rejects %s', (text, why) => {
    const r = parsePlan(text);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(why);
  });
});

describe('watchPlanFile', () => {
  let dir = '';
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('applies changes, keeps the last good plan on a bad file, and sees atomic replaces', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'hs-plan-'));
    const file = path.join(dir, 'plan.json');
    writeFileSync(file, '{"actFraction":0.1,"generation":1}');
    const plans: PlanFile[] = [];
    const errors: string[] = [];
    const w = await watchPlanFile(file, { pollMs: 50, onPlan: (p) => plans.push(p), onError: (e) => errors.push(e) });
    expect(plans.map((p) => p.actFraction)).toEqual([0.1]);
    const waitFor = async (cond: () => boolean) => {
      for (let i = 0; i < 100 && !cond(); i++) await new Promise((r) => setTimeout(r, 20));
    };
    writeFileSync(file, 'not json');
    await waitFor(() => errors.length > 0);
    expect(errors[0]).toMatch(/not valid JSON/);
    // The way a ConfigMap update lands: a new file renamed over the old one.
    writeFileSync(path.join(dir, 'tmp'), '{"actFraction":0.7,"generation":2}');
    renameSync(path.join(dir, 'tmp'), file);
    await waitFor(() => plans.length > 1);
    w.close();
    expect(plans.map((p) => p.actFraction)).toEqual([0.1, 0.7]);
  });

  test('a missing file is reported, not fatal', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'hs-plan-'));
    const errors: string[] = [];
    const w = await watchPlanFile(path.join(dir, 'none.json'), { onPlan: () => {}, onError: (e) => errors.push(e) });
    w.close();
    expect(errors[0]).toMatch(/cannot read plan file .*ENOENT/);
  });
});
