// Placement over the memory tiers (planning/placement.ts): the GPU KV tier in the cost model, the
// layout for a number of resident layers, the ladder search against an exhaustive one, the TPOT target.
import { describe, expect, test } from '@jest/globals';
import { presetConfig } from '../../model/presets.js';
import {
  PlanError,
  decodeStepCost,
  hardwareProfile,
  hostLayout,
  modelProfile,
  placeNode,
  predict,
  tieredLayout,
  type PlacementInput,
} from '../../planning/index.js';

const GiB = 2 ** 30;
const mp13 = modelProfile(presetConfig('opt-13b')!);
const h200 = hardwareProfile('NVIDIA-H200')!;
const workload = { promptTokens: 512, genTokens: 32 };

function input(over: Partial<PlacementInput> = {}): PlacementInput {
  return {
    mp: mp13,
    hw: h200,
    gpuBudgetBytes: h200.hbmBytes,
    hostCacheBytes: hostLayout(mp13, 120 * GiB).cacheBytes,
    workload,
    blockTokens: 16,
    maxBatchCap: 1024,
    actFraction: 'auto',
    actAllowed: true,
    ...over,
  };
}

describe('the GPU KV tier in the cost model', () => {
  test('tokens held in the GPU tier are not streamed, written back or recomputed', () => {
    const layout = tieredLayout(mp13, h200.hbmBytes, 544, 16, 40)!;
    const none = { ...layout, gpuKvBlocks: 0, gpuKvTokens: 0 };
    const s = { actFraction: 0.5, batch: 128, contextTokens: 528 };
    const host = decodeStepCost(mp13, h200, none, s);
    const gpu = decodeStepCost(mp13, h200, layout, s);
    expect(layout.gpuKvTokens!).toBeGreaterThan(128 * 528);
    expect(gpu.h2dBytes).toBe(0); // every layer resident, every token in HBM
    expect(gpu.d2hBytes).toBe(0);
    expect(gpu.recomputeSeconds).toBe(0);
    expect(host.h2dBytes).toBeCloseTo(40 * 128 * 528 * (0.5 * mp13.kvBytesPerToken + 0.5 * mp13.actBytesPerToken), -3);
    expect(gpu.stepSeconds).toBeLessThan(host.stepSeconds / 5);
    // Half the tokens in the GPU tier: half the cache bytes stream.
    const half = { ...layout, gpuKvTokens: 64 * 528 };
    expect(decodeStepCost(mp13, h200, half, s).h2dBytes).toBeCloseTo(host.h2dBytes / 2, -3);
  });

  test('tieredLayout stays within the budget and trades resident layers for GPU cache blocks', () => {
    const all = tieredLayout(mp13, 80 * GiB, 544, 16, 40)!;
    const fewer = tieredLayout(mp13, 80 * GiB, 544, 16, 30)!;
    expect(all.usedBytes).toBeLessThanOrEqual(80 * GiB);
    expect(fewer.usedBytes).toBeLessThanOrEqual(80 * GiB);
    expect(fewer.gpuKvBlocks!).toBeGreaterThan(all.gpuKvBlocks!);
    expect(fewer.layerBufferBytes).toBe(2 * mp13.layerBytes);
    expect(tieredLayout(mp13, 24 * GiB, 544, 16, 40)).toBeUndefined();
  });
});

describe('placeNode', () => {
  test('the ladder search is within 1% of an exhaustive search over every resident-layer count', () => {
    for (const [hw, budget] of [
      [h200, h200.hbmBytes],
      [h200, 24 * GiB],
      [hardwareProfile('NVIDIA-L4')!, hardwareProfile('NVIDIA-L4')!.hbmBytes],
    ] as const) {
      const chosen = placeNode(input({ hw, gpuBudgetBytes: budget }));
      let best = 0;
      for (let r = 0; r <= 40; r++) {
        try {
          best = Math.max(best, placeNode(input({ hw, gpuBudgetBytes: budget, residentLayers: r })).prediction.tokensPerSecond);
        } catch (err) {
          if (!(err instanceof PlanError)) throw err;
        }
      }
      expect(chosen.prediction.tokensPerSecond).toBeGreaterThanOrEqual(0.99 * best);
    }
  });

  test('in HBM it keeps every layer resident, fills the GPU tier and chooses no ACT', () => {
    const p = placeNode(input());
    expect(p.layout.residentLayers).toBe(40);
    expect(p.layout.gpuKvBlocks!).toBeGreaterThan(0);
    expect(p.actFraction).toBe(0);
    expect(p.batch * 528).toBeLessThanOrEqual(p.layout.gpuKvTokens!);
  });

  test('a TPOT target bounds the predicted step and costs throughput only when it binds', () => {
    const free = placeNode(input());
    const loose = placeNode(input({ sloTpotSeconds: free.prediction.stepSeconds * 2 }));
    expect(loose.prediction.tokensPerSecond).toBe(free.prediction.tokensPerSecond);
    const tight = placeNode(input({ sloTpotSeconds: free.prediction.stepSeconds / 2 }));
    expect(tight.prediction.stepSeconds).toBeLessThanOrEqual(free.prediction.stepSeconds / 2);
    expect(tight.sloLimited).toBe(true);
    expect(tight.prediction.tokensPerSecond).toBeLessThan(free.prediction.tokensPerSecond);
    expect(() => placeNode(input({ sloTpotSeconds: 1e-6 }))).toThrow(/fastest predicted decode step/);
  });

  test('a forced placement is honoured; more GPU cache blocks than fit is a PlanError', () => {
    const p = placeNode(input({ residentLayers: 0, gpuKvBlocks: 0, actFraction: 0.5, gpuBudgetBytes: 24 * GiB }));
    expect(p.layout.residentLayers).toBe(0);
    expect(p.layout.gpuKvBlocks).toBe(0);
    expect(p.actFraction).toBe(0.5);
    const q = predict(mp13, h200, p.layout, 0.5, p.batch, workload);
    expect(q.stepSeconds).toBe(p.prediction.stepSeconds);
    expect(() => placeNode(input({ gpuKvBlocks: 1e7 }))).toThrow(PlanError);
  });
});
