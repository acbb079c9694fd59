// Issue 11: at --act-fraction auto on CUDA the pools must be split at the fraction the engine then
// runs. openRuntime now learns the device name before splitting (server/runtime.ts); these are the
// two decisions it chains, for the issue's command line on an H200.
import { describe, expect, test } from '@jest/globals';
import { presetConfig } from '../../model/presets.js';
import { chooseFraction, choosePools, type RuntimeOptions } from '../../server/runtime.js';

const cfg = presetConfig('opt-13b')!;
const issue: RuntimeOptions & { maxTotalTokens: number } = {
  model: 'synthetic:opt-13b',
  device: 'cuda',
  actFraction: 'auto',
  hostMemoryBytes: 96 * 2 ** 30,
  maxBatch: 128,
  maxTotalTokens: 2048,
};

describe('server runtime: fraction and pools agree', () => {
  test('with the device known, auto picks ACT and the ACT pool gets blocks for it', () => {
    // An L4: the tiered plan streams layers and keeps a host KV/ACT tier there, so auto picks ACT
    // (on an H200 with this host budget the cache goes to the GPU tier at fraction 0).
    const { fraction } = chooseFraction(issue, cfg, 'NVIDIA L4');
    expect(fraction).toBeGreaterThan(0);
    const pools = choosePools(issue, cfg, fraction);
    expect(pools.actBlocks).toBeGreaterThan(0);
    // Enough of both kinds for the issue's 128 sequences of 512 + 32 tokens at that fraction.
    const perSeq = Math.ceil(544 / 16);
    expect(pools.actBlocks).toBeGreaterThanOrEqual(Math.floor(128 * perSeq * fraction) - 128);
  });

  test('without it, auto falls back to 0 and says so; the pools are then all KV, matching', () => {
    const r = chooseFraction(issue, cfg, '');
    expect(r.fraction).toBe(0);
    expect(r.reason).toMatch(/no hardware profile/);
    expect(choosePools(issue, cfg, r.fraction).actBlocks).toBe(0);
  });
});
