// The pure parts of bench/engine.ts: the throughput definitions, the transfer lower bound
// and the closed-form ACT fraction used when the planner is unavailable.
import { describe, expect, test } from '@jest/globals';

import { closedFormActFraction, engineMetrics, poolBlocks } from '../../bench/engine.js';
import { presetConfig } from '../../model/presets.js';
import { zeroCounters } from '../../native/ts/counters.js';

const zero = zeroCounters();

describe('bench:engine metrics', () => {
  test('throughput counts generated tokens only, as the offloading literature does', () => {
    const dec = { ...zero, weightBytesH2D: 31 * 25e9, kvBytesH2D: 31 * 30e9, kvBytesD2H: 31 * 0.1e9, computeSeconds: 3, idleSeconds: 27 };
    const m = engineMetrics(128, 32, { prefillSeconds: 4, decodeSeconds: 31, decodeSteps: 31 }, dec, {
      gemmFlops: 8e14,
      h2dBytesPerSecond: 55e9,
      d2hBytesPerSecond: 55e9,
    });
    expect(m.totalTokensPerSecond).toBeCloseTo((128 * 32) / 35, 6);
    expect(m.decodeTokensPerSecond).toBeCloseTo((128 * 31) / 31, 6);
    expect(m.meanDecodeStepSeconds).toBeCloseTo(1, 9);
    expect(m.bytesPerDecodeStep.kvH2D).toBeCloseTo(30e9, 0);
    expect(m.transferLowerBoundSeconds).toBeCloseTo(55e9 / 55e9, 9);
    expect(m.stepOverLowerBound).toBeCloseTo(1, 9);
    expect(m.gpuBusyFraction).toBeCloseTo(0.1, 9);
  });

  test('the closed form picks all-ACT for OPT-13B on a Gen5 H100/H200 and less when GEMM is slow', () => {
    const cfg = presetConfig('opt-13b')!;
    expect(closedFormActFraction(cfg, 128, 512, 32, 55e9, 8e14)).toBe(1);
    const slow = closedFormActFraction(cfg, 128, 512, 32, 55e9, 2e13);
    expect(slow).toBeGreaterThan(0);
    expect(slow).toBeLessThan(1);
  });

  test('pools hold every block of every sequence at the fraction', () => {
    const { kvBlocks, actBlocks } = poolBlocks(128, 544, 0.5);
    expect(kvBlocks + actBlocks).toBeGreaterThanOrEqual(128 * 34);
    expect(poolBlocks(4, 40, 0).actBlocks).toBe(4);
  });
});
