import { describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { presetConfig } from '../../model/presets.js';
import {
  PlanError,
  blocksPerSequence,
  fractionBoundsForPools,
  hostLayout,
  hostMemoryBudget,
  hostMemoryBudgetDetail,
  modelProfile,
  splitCache,
  tokenCacheBytes,
} from '../../planning/index.js';

const GiB = 2 ** 30;
const MiB = 2 ** 20;

describe('step 1: host memory budget', () => {
  test('default: all allocatable less the headroom, in whole MiB', () => {
    const b = hostMemoryBudget(512 * GiB + 12345, {});
    expect(b % MiB).toBe(0);
    expect(b).toBeLessThanOrEqual(512 * GiB - 0.05 * 512 * GiB);
    expect(b).toBeGreaterThan(512 * GiB - 0.05 * 512 * GiB - MiB);
  });
  test('share splits the node between pods; explicit bytes are capped', () => {
    expect(hostMemoryBudget(1000 * GiB, { share: 0.25, headroomBytes: 0 })).toBe(250 * GiB);
    expect(hostMemoryBudget(1000 * GiB, { bytes: 100 * GiB })).toBe(100 * GiB);
    const d = hostMemoryBudgetDetail(64 * GiB, { bytes: 100 * GiB, headroomBytes: 4 * GiB });
    expect(d).toEqual({ bytes: 60 * GiB, usableBytes: 60 * GiB, headroomBytes: 4 * GiB, clamped: true });
    expect(hostMemoryBudget(2 * GiB, {})).toBe(0);
  });
  test('bad specs are PlanErrors', () => {
    expect(() => hostMemoryBudget(64 * GiB, { share: 0 })).toThrow(PlanError);
    expect(() => hostMemoryBudget(64 * GiB, { share: 1.5 })).toThrow(/share/);
    expect(() => hostMemoryBudget(-1, {})).toThrow(/allocatable/);
    expect(() => hostMemoryBudget(64 * GiB, { bytes: -5 })).toThrow(PlanError);
  });
  test('the cache is what the weights and runtime leave', () => {
    const mp = modelProfile(presetConfig('opt-13b')!);
    const h = hostLayout(mp, 128 * GiB);
    expect(h.weightBytes + h.cacheBytes + h.runtimeBytes).toBeLessThanOrEqual(128 * GiB);
    expect(h.cacheBytes).toBeGreaterThan(90 * GiB);
    expect(() => hostLayout(mp, 24 * GiB)).toThrow(/cannot hold opt-13b/);
  });
});

describe('step 2: KV/ACT pools', () => {
  const mp = modelProfile(presetConfig('opt-30b')!);
  test('ACT blocks are half the bytes of KV blocks and ACT fits more sequences', () => {
    const kv = splitCache(mp, 100 * GiB, 0, 16, 640);
    const act = splitCache(mp, 100 * GiB, 1, 16, 640);
    expect(act.actBlockBytes * 2).toBe(act.kvBlockBytes);
    expect(kv.actBlocks).toBe(0);
    expect(act.kvBlocks).toBe(0);
    expect(act.maxBatch).toBeGreaterThanOrEqual(2 * kv.maxBatch);
    expect(tokenCacheBytes(mp, 1) * 2).toBe(tokenCacheBytes(mp, 0));
  });
  test('blocks per sequence round up and never lose a block', () => {
    expect(blocksPerSequence(0.3, 160, 16)).toEqual({ kv: 7, act: 3 });
    expect(blocksPerSequence(0.25, 161, 16)).toEqual({ kv: 9, act: 3 });
    fc.assert(
      fc.property(
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.integer({ min: 1, max: 9000 }),
        fc.integer({ min: 1, max: 256 }),
        (a, s, bt) => {
          const p = blocksPerSequence(a, s, bt);
          expect((p.kv + p.act) * bt).toBeGreaterThanOrEqual(s);
        },
      ),
    );
  });
  test('pools stay within the cache budget and hold maxBatch sequences', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.integer({ min: 1, max: 500 }),
        fc.constantFrom(1, 16, 64),
        fc.integer({ min: 1, max: 2048 }),
        (a, gib, bt, seq) => {
          const s = splitCache(mp, gib * GiB, a, bt, seq);
          expect(s.usedBytes).toBeLessThanOrEqual(gib * GiB);
          expect(s.maxBatch * s.kvBlocksPerSequence).toBeLessThanOrEqual(s.kvBlocks);
          expect(s.maxBatch * s.actBlocksPerSequence).toBeLessThanOrEqual(s.actBlocks);
          // no more than one more sequence would have fit the whole budget
          const seqBytes = s.kvBlocksPerSequence * s.kvBlockBytes + s.actBlocksPerSequence * s.actBlockBytes;
          expect((s.maxBatch + 2) * seqBytes).toBeGreaterThan(gib * GiB);
        },
      ),
    );
  });
  test('retune bounds: fractions the fixed pools can serve at maxBatch', () => {
    const s = splitCache(mp, 100 * GiB, 0.5, 16, 640);
    const b = fractionBoundsForPools(s.kvBlocks, s.actBlocks, s.maxBatch, 640, 16);
    expect(b.min).toBeLessThanOrEqual(0.5);
    expect(b.max).toBeGreaterThanOrEqual(0.5);
    expect(fractionBoundsForPools(1000, 0, 10, 640, 16)).toEqual({ min: 0, max: 0 });
  });
});
