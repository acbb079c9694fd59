import { describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { presetConfig } from '../../model/presets.js';
import type { ModelConfig } from '../../model/types.js';
import {
  KNOWN_PRODUCTS,
  PlanError,
  gpuLayout,
  hardwareProfile,
  hostLayout,
  modelProfile,
  planNode,
  planFile,
  solveActFraction,
  withMeasured,
  type GpuLayout,
  type HardwareProfile,
} from '../../planning/index.js';

const GiB = 2 ** 30;
const cfg = (name: string) => presetConfig(name)!;
const hw = (name: string) => hardwareProfile(name)!;

const MODELS = ['opt-1.3b', 'opt-6.7b', 'opt-13b', 'opt-30b', 'opt-66b', 'llama-7b', 'llama3-8b'];
const arbModel = fc.constantFrom(...MODELS).map(cfg);
const arbHw = fc.constantFrom(...KNOWN_PRODUCTS).map(hw);

/** A plan, or undefined when the input is impossible (PlanError); other errors fail the test. */
function tryPlan(...args: Parameters<typeof planNode>) {
  try {
    return planNode(...args);
  } catch (err) {
    if (err instanceof PlanError) return undefined;
    throw err;
  }
}

/** How many runs of the current property got past the impossible inputs to its assertions. */
let checkedRuns = 0;

/**
 * Runs a property that skips impossible inputs, and fails unless at least `minShare` of its runs
 * checked real plans: a planner that threw PlanError for everything would otherwise pass. (Today
 * 75–95% of runs check a plan; the floor leaves room for fast-check's random seeds.)
 */
function assertOnRealPlans(property: fc.IProperty<unknown[]>, numRuns: number, minShare = 0.5): void {
  checkedRuns = 0;
  fc.assert(property, { numRuns });
  expect(checkedRuns).toBeGreaterThanOrEqual(Math.ceil(minShare * numRuns));
}

describe('planNode', () => {
  test('OPT-30B on a 24 GiB share of an H100 with 256 GiB: mostly ACT, transfer-bound, consistent numbers', () => {
    const p = planNode({
      model: cfg('opt-30b'),
      hardware: hw('NVIDIA-H100-80GB-HBM3'),
      hostMemoryBytes: 256 * GiB,
      gpuMemoryBytes: 24 * GiB,
      actFraction: 'auto',
    });
    expect(p.actFraction).toBeGreaterThan(0.5);
    expect(p.actFraction).toBeLessThanOrEqual(1);
    // Near the balance the solver aims for, either side may bound the step.
    expect(p.reason).toMatch(/^(transfer|recompute)-bound: /);
    expect(p.kvBlocks * p.kvBlockBytes + p.actBlocks * p.actBlockBytes).toBeLessThanOrEqual(p.cacheBytes);
    expect(p.weightBytes + p.cacheBytes + p.runtimeBytes).toBeLessThanOrEqual(p.hostMemoryBytes);
    expect(p.maxBatch).toBeGreaterThan(0);
    expect(p.predictedTokensPerSecond).toBeCloseTo(
      (p.maxBatch * p.genTokens) / (p.predictedPrefillSeconds + p.genTokens * p.predictedStepSeconds),
      6,
    );
    // The chosen fraction is at least as good as every point of the coarse sweep (within block rounding).
    const bestSweep = Math.max(...p.sweep.map((s) => s.predictedTokensPerSecond));
    expect(p.predictedTokensPerSecond).toBeGreaterThanOrEqual(bestSweep * 0.97);
    // ACT beats KV-only here: the KV-only point of the sweep is worse.
    expect(p.sweep[0].predictedTokensPerSecond).toBeLessThan(p.predictedTokensPerSecond);
    expect(p.sweep[0].maxBatch).toBeLessThan(p.maxBatch);
  });

  test('Llama-3-8B (GQA): fraction 0 with the reason', () => {
    const p = planNode({ model: cfg('llama3-8b'), hardware: hw('NVIDIA-H100-80GB-HBM3'), hostMemoryBytes: 256 * GiB, actFraction: 'auto' });
    expect(p.actFraction).toBe(0);
    expect(p.actBlocks).toBe(0);
    expect(p.reason).toBe('grouped-query attention: ACT (8192 B/token/layer) is not smaller than KV (4096 B/token/layer), fraction 0');
    expect(p.retuneBounds).toEqual({ min: 0, max: 0 });
  });

  test('a fixed fraction is honoured and said so', () => {
    const p = planNode({ model: cfg('opt-13b'), hardware: hw('NVIDIA-L40S'), hostMemoryBytes: 128 * GiB, actFraction: 0.25 });
    expect(p.actFraction).toBe(0.25);
    expect(p.reason).toMatch(/^fixed: fraction 0.25/);
    expect(p.actBlocks).toBeGreaterThan(0);
    expect(p.kvBlocks).toBeGreaterThan(p.actBlocks);
  });

  test('a very fast link makes ACT pointless (fraction 0, recompute- or compute-bound)', () => {
    const fast = withMeasured(hw('NVIDIA-A100-SXM4-80GB'), { h2dBytesPerSecond: 5e12, d2hBytesPerSecond: 5e12 });
    const p = planNode({ model: cfg('opt-13b'), hardware: fast, hostMemoryBytes: 64 * GiB, actFraction: 'auto', maxBatchCap: 64 });
    expect(p.actFraction).toBe(0);
    expect(p.reason).toMatch(/^(recompute|compute)-bound: /);
  });

  test('impossible inputs are PlanErrors with a message', () => {
    const base = { model: cfg('opt-66b'), hardware: hw('NVIDIA-H100-80GB-HBM3'), actFraction: 'auto' as const };
    expect(() => planNode({ ...base, hostMemoryBytes: 100 * GiB })).toThrow(/cannot hold opt-66b/);
    expect(() => planNode({ ...base, hostMemoryBytes: 256 * GiB, gpuMemoryBytes: 200 * GiB })).toThrow(/exceeds/);
    expect(() => planNode({ ...base, hostMemoryBytes: 256 * GiB, actFraction: 1.5 })).toThrow(PlanError);
    expect(() => planNode({ ...base, hostMemoryBytes: 256 * GiB, promptTokens: 4000 })).toThrow(/maximum of 2048 positions/);
    expect(() => planNode({ ...base, hostMemoryBytes: 256 * GiB, gpuMemoryBytes: 3 * GiB })).toThrow(/too small/);
  });

  test('planFile carries what the server reads', () => {
    const p = planNode({ model: cfg('opt-6.7b'), hardware: hw('NVIDIA-L4'), hostMemoryBytes: 64 * GiB, actFraction: 'auto' });
    const f = planFile(p, 3);
    expect(f).toEqual({
      actFraction: p.actFraction,
      kvBlocks: p.kvBlocks,
      actBlocks: p.actBlocks,
      blockTokens: 16,
      maxBatch: p.maxBatch,
      generation: 3,
      reason: p.reason,
      gpuKvBlocks: p.gpuKvBlocks,
      residentLayers: p.residentLayers,
    });
    expect(f.gpuKvBlocks).toBeGreaterThan(0);
  });
});

describe('planNode properties', () => {
  // The fraction solver at a fixed placement and the capacity batch (planNode also chooses the batch
  // and the tiers, which a faster link may change, so the property is the solver's).
  test('more PCIe bandwidth never raises the chosen ACT fraction', () => {
    assertOnRealPlans(
      fc.property(
        arbModel,
        arbHw,
        fc.integer({ min: 32, max: 1024 }),
        fc.double({ min: 0.1, max: 4, noNaN: true }),
        fc.double({ min: 1, max: 8, noNaN: true }),
        fc.constantFrom(128, 512, 1024),
        fc.constantFrom(32, 128, 512),
        (model, base, hostGiB, scale, more, prompt, gen) => {
          const at = (k: number): HardwareProfile => ({
            ...base,
            h2dBytesPerSecond: base.h2dBytesPerSecond * k,
            d2hBytesPerSecond: base.d2hBytesPerSecond * k,
          });
          const mp = modelProfile(model);
          let layout: GpuLayout;
          let cacheBytes: number;
          try {
            layout = gpuLayout(mp, base.hbmBytes, prompt + gen);
            cacheBytes = hostLayout(mp, hostGiB * GiB).cacheBytes;
          } catch {
            return;
          }
          const solve = (h: HardwareProfile) =>
            solveActFraction({ mp, hw: h, layout, cacheBytes, workload: { promptTokens: prompt, genTokens: gen }, maxBatchCap: 1024 });
          const slow = solve(at(scale));
          const fast = solve(at(scale * more));
          if (!slow || !fast) return;
          checkedRuns++;
          expect(fast.actFraction).toBeLessThanOrEqual(slow.actFraction + 1e-9);
        },
      ),
      150,
    );
  });

  test('grouped-query attention with ACT bytes ≥ KV bytes always gives fraction 0', () => {
    assertOnRealPlans(
      fc.property(
        arbHw,
        fc.integer({ min: 16, max: 64 }),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 80 }),
        fc.integer({ min: 16, max: 512 }),
        (hardware, heads, groupLog, layers, hostGiB) => {
          const group = 2 ** Math.min(groupLog, Math.floor(Math.log2(heads)));
          const numHeads = Math.floor(heads / group) * group;
          const numKvHeads = numHeads / group;
          fc.pre(numKvHeads * 2 <= numHeads); // 2·kvDim ≤ hidden ⇔ KV bytes ≤ ACT bytes
          const model: ModelConfig = {
            ...cfg('llama-7b'),
            name: 'gqa',
            numHeads,
            numKvHeads,
            hiddenSize: numHeads * 128,
            headDim: 128,
            numLayers: layers,
            ffnSize: numHeads * 128 * 3,
          };
          const p = tryPlan({ model, hardware, hostMemoryBytes: hostGiB * GiB, actFraction: 'auto' });
          if (!p) return;
          checkedRuns++;
          expect(p.actFraction).toBe(0);
          expect(p.reason).toMatch(/^grouped-query attention: /);
        },
      ),
      150,
    );
  });

  test('plans never exceed the GPU or the host budget', () => {
    assertOnRealPlans(
      fc.property(
        arbModel,
        arbHw,
        fc.integer({ min: 8, max: 2048 }),
        fc.double({ min: 0.2, max: 1, noNaN: true }),
        fc.oneof(fc.constant('auto' as const), fc.double({ min: 0, max: 1, noNaN: true })),
        fc.constantFrom(1, 8, 16, 64),
        fc.integer({ min: 1, max: 1500 }),
        fc.integer({ min: 1, max: 500 }),
        (model, hardware, hostGiB, gpuShare, actFraction, blockTokens, prompt, gen) => {
          fc.pre(prompt + gen <= model.maxPositions);
          const gpuMemoryBytes = Math.floor(hardware.hbmBytes * gpuShare);
          const p = tryPlan({
            model,
            hardware,
            hostMemoryBytes: hostGiB * GiB,
            gpuMemoryBytes,
            actFraction,
            blockTokens,
            promptTokens: prompt,
            genTokens: gen,
          });
          if (!p) return;
          checkedRuns++;
          expect(p.gpuUsedBytes).toBeLessThanOrEqual(gpuMemoryBytes + 1e-3);
          const cacheUsed = p.kvBlocks * p.kvBlockBytes + p.actBlocks * p.actBlockBytes;
          expect(cacheUsed).toBeLessThanOrEqual(p.cacheBytes);
          expect(p.weightBytes + cacheUsed + p.runtimeBytes).toBeLessThanOrEqual(p.hostMemoryBytes);
          expect(p.memoryLimitBytes).toBeLessThanOrEqual(p.hostMemoryBytes);
          expect(p.memoryRequestBytes).toBeLessThanOrEqual(p.memoryLimitBytes);
          // maxBatch sequences of prompt+gen fit the GPU tier plus the host pools at the chosen fraction
          const blocks = Math.ceil((prompt + gen) / blockTokens);
          expect(p.maxBatch).toBeGreaterThanOrEqual(1);
          const gpuKvBlocks = p.gpuKvBlocks ?? 0;
          expect(gpuKvBlocks * (p.gpuKvBlockBytes ?? 0)).toBeLessThanOrEqual(p.gpuUsedBytes);
          const onHost = Math.max(0, p.maxBatch - Math.floor(gpuKvBlocks / blocks));
          expect(onHost * Math.ceil((1 - p.actFraction) * blocks - 1e-9)).toBeLessThanOrEqual(p.kvBlocks);
          expect(onHost * Math.ceil(p.actFraction * blocks - 1e-9)).toBeLessThanOrEqual(p.actBlocks);
          expect(p.actFraction).toBeGreaterThanOrEqual(0);
          expect(p.actFraction).toBeLessThanOrEqual(1);
          expect(p.predictedStepSeconds).toBeGreaterThan(0);
          expect(Number.isFinite(p.predictedTokensPerSecond)).toBe(true);
        },
      ),
      200,
    );
  });
});
