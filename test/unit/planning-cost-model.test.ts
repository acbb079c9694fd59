import { describe, expect, test } from '@jest/globals';
import { presetConfig } from '../../model/presets.js';
import {
  ENGINE_LAYER_SLOTS,
  PlanError,
  decodeStepCost,
  gpuLayout,
  hardwareProfile,
  modelProfile,
  predict,
  type GpuLayout,
  type HardwareProfile,
} from '../../planning/index.js';
import { streamAll } from './planning-layouts.js';

const cfg = (name: string) => presetConfig(name)!;

describe('model profile', () => {
  test('OPT dimensions match the notes (layer weights, KV/ACT bytes, recompute FLOPs)', () => {
    const p = modelProfile(cfg('opt-30b'));
    const h = 7168;
    // Notes §6: 1233 MB per layer, 59.9 GB in all, 28/14 KB per token per layer, 206 MFLOP recompute.
    expect(p.layerBytes / 1e6).toBeCloseTo(1233, -1);
    expect(p.weightBytes / 1e9).toBeCloseTo(59.9, 0);
    expect(p.kvBytesPerToken).toBe(4 * h);
    expect(p.actBytesPerToken).toBe(2 * h);
    expect(p.recomputeFlopsPerToken).toBe(4 * h * h);
    expect(p.layerFlopsPerToken).toBe(2 * 12 * h * h);
    expect(p.groupedQuery).toBe(false);
  });

  test('grouped-query attention: Llama-3-8B keeps 4 KB of KV and 8 KB of ACT per token per layer', () => {
    const p = modelProfile(cfg('llama3-8b'));
    expect(p.kvBytesPerToken).toBe(4096);
    expect(p.actBytesPerToken).toBe(8192);
    expect(p.recomputeFlopsPerToken).toBe(4 * 4096 * 1024);
    expect(p.groupedQuery).toBe(true);
    // untied lm_head counted: 2 × 128256 × 4096 × 2 bytes of embeddings + head
    expect(p.headBytes).toBeGreaterThan(2 * 128256 * 4096 * 2);
  });

  test('bad configs are PlanErrors', () => {
    expect(() => modelProfile({ ...cfg('opt-13b'), numKvHeads: 3 })).toThrow(PlanError);
    expect(() => modelProfile({ ...cfg('opt-13b'), hiddenSize: 0 })).toThrow(/hiddenSize/);
  });
});

// The notes' idealised model (§2): weights stream for every layer, no HBM limits, no write-back cost.
function idealHardware(B: number, F: number): HardwareProfile {
  return {
    product: 'ideal',
    h2dBytesPerSecond: B,
    d2hBytesPerSecond: 1e30,
    gemmFlops: F,
    hbmBytes: 1e15,
    hbmBytesPerSecond: 1e30,
    overlapSharpness: Infinity,
  };
}

describe('decode step cost', () => {
  test('reduces to the notes formula T = L·max(T_pcie, T_gpu) in the idealised case', () => {
    const mp = modelProfile(cfg('opt-13b'));
    const h = mp.hiddenSize;
    const B = 25e9;
    const F = 0.8 * 165e12;
    const b = 128;
    const s = 576;
    const N = b * s;
    for (const a of [0, 0.3, 0.76, 1]) {
      const tPcie = (24 * h * h + N * h * (4 - 2 * a)) / B;
      const tGpu = (24 * h * h * b + 4 * h * h * N * a) / F;
      const expected = mp.numLayers * Math.max(tPcie, tGpu);
      const got = decodeStepCost(mp, idealHardware(B, F), streamAll(), { actFraction: a, batch: b, contextTokens: s });
      // Ours adds biases/LayerNorms to the layer bytes, attention FLOPs and the lm_head: < 1% here.
      expect(Math.abs(got.stepSeconds - expected) / expected).toBeLessThan(0.01);
    }
  });

  test('reproduces the notes table: RTX 4090/Gen4, OPT-30B, b=128, s=576 → a* ≈ 0.84, ≈ 27 tokens/s, 1.36× KV-only', () => {
    const mp = modelProfile(cfg('opt-30b'));
    const hw = idealHardware(25e9, 0.8 * 165e12);
    let best = { a: 0, t: Infinity };
    for (let i = 0; i <= 100; i++) {
      const t = decodeStepCost(mp, hw, streamAll(), { actFraction: i / 100, batch: 128, contextTokens: 576 }).stepSeconds;
      if (t < best.t) best = { a: i / 100, t };
    }
    const kvOnly = decodeStepCost(mp, hw, streamAll(), { actFraction: 0, batch: 128, contextTokens: 576 }).stepSeconds;
    expect(best.a).toBeGreaterThanOrEqual(0.82);
    expect(best.a).toBeLessThanOrEqual(0.86);
    expect(128 / best.t).toBeGreaterThan(27 * 0.95);
    expect(128 / best.t).toBeLessThan(27 * 1.05);
    expect(kvOnly / best.t).toBeCloseTo(1.36, 1);
  });

  test('transfer falls and recompute rises with the fraction; phases are consistent', () => {
    const mp = modelProfile(cfg('opt-30b'));
    const hw = hardwareProfile('NVIDIA-A100-SXM4-40GB')!;
    const layout = gpuLayout(mp, hw.hbmBytes, 640);
    expect(layout.residentLayers).toBeLessThan(mp.numLayers);
    let prev = decodeStepCost(mp, hw, layout, { actFraction: 0, batch: 64, contextTokens: 576 });
    expect(prev.recomputeSeconds).toBe(0);
    for (const a of [0.25, 0.5, 0.75, 1]) {
      const c = decodeStepCost(mp, hw, layout, { actFraction: a, batch: 64, contextTokens: 576 });
      expect(c.transferSeconds).toBeLessThan(prev.transferSeconds);
      expect(c.recomputeSeconds).toBeGreaterThan(prev.recomputeSeconds);
      expect(c.stepSeconds).toBeGreaterThanOrEqual(Math.max(c.transferSeconds, c.computeSeconds + c.recomputeSeconds) - 1e-12);
      expect(c.stepSeconds).toBeLessThanOrEqual(c.transferSeconds + c.computeSeconds + c.recomputeSeconds + c.headSeconds + 1e-12);
      prev = c;
    }
  });

  test('resident layers move no weights', () => {
    const mp = modelProfile(cfg('opt-6.7b'));
    const hw = hardwareProfile('NVIDIA-H100-80GB-HBM3')!;
    const layout = gpuLayout(mp, hw.hbmBytes, 640);
    expect(layout.residentLayers).toBe(mp.numLayers);
    const c = decodeStepCost(mp, hw, layout, { actFraction: 0, batch: 8, contextTokens: 100 });
    const cacheBytes = mp.numLayers * 8 * 100 * mp.kvBytesPerToken;
    expect(c.h2dBytes).toBe(cacheBytes);
  });

  test('GPU layout stays within the budget and rejects budgets that cannot hold a layer', () => {
    const mp = modelProfile(cfg('opt-66b'));
    for (const gib of [12, 16, 24, 40, 80, 141]) {
      const l = gpuLayout(mp, gib * 2 ** 30, 640);
      expect(l.usedBytes).toBeLessThanOrEqual(gib * 2 ** 30 + 1);
      expect(l.residentLayers).toBeGreaterThanOrEqual(0);
      expect(l.residentLayers).toBeLessThanOrEqual(mp.numLayers);
      expect(l.layerBufferBytes).toBe(l.residentLayers < mp.numLayers ? ENGINE_LAYER_SLOTS * mp.layerBytes : 0);
    }
    expect(gpuLayout(mp, 24 * 2 ** 30, 640).residentLayers).toBeLessThan(gpuLayout(mp, 80 * 2 ** 30, 640).residentLayers);
    expect(gpuLayout(mp, 141 * 2 ** 30, 640).residentLayers).toBe(mp.numLayers);
    expect(() => gpuLayout(mp, 4 * 2 ** 30, 640)).toThrow(/too small/);
  });

  test('throughput includes prefill and grows with the batch', () => {
    const mp = modelProfile(cfg('opt-30b'));
    const hw = hardwareProfile('NVIDIA-GeForce-RTX-4090')!;
    const layout = gpuLayout(mp, hw.hbmBytes, 640);
    const w = { promptTokens: 512, genTokens: 128 };
    const small = predict(mp, hw, layout, 0.5, 16, w);
    const large = predict(mp, hw, layout, 0.5, 256, w);
    expect(small.prefillSeconds).toBeGreaterThan(0);
    expect(small.tokensPerSecond).toBeLessThan(small.decodeTokensPerSecond);
    expect(large.tokensPerSecond).toBeGreaterThan(small.tokensPerSecond);
  });
});

describe('calibration against the PyTorch stand-in measured on an H200 (docs/planning.md §10)', () => {
  // planning/calibration/overlap_probe.py, NVIDIA H200, PCIe Gen5 x16, PyTorch 2.11: batch 64, context 576.
  const measuredHw: HardwareProfile = {
    product: 'NVIDIA-H200',
    h2dBytesPerSecond: 55.5e9,
    d2hBytesPerSecond: 55.4e9,
    gemmFlops: 700e12,
    hbmBytes: 143771 * 2 ** 20,
    hbmBytesPerSecond: 4.29e12,
  };
  const measuredMs: Array<[string, number, boolean, number]> = [
    ['opt-13b', 0, false, 547],
    ['opt-13b', 0, true, 1001],
    ['opt-13b', 0.5, false, 414],
    ['opt-13b', 0.5, true, 867],
    ['opt-13b', 1, false, 280],
    ['opt-13b', 1, true, 735],
    ['opt-30b', 0, false, 917],
    ['opt-30b', 0, true, 1987],
    ['opt-30b', 0.5, false, 695],
    ['opt-30b', 0.5, true, 1763],
    ['opt-30b', 1, false, 600],
    ['opt-30b', 1, true, 1538],
  ];
  test('the H200 table entry carries the measured numbers', () => {
    const t = hardwareProfile('NVIDIA-H200')!;
    expect(t.h2dBytesPerSecond).toBe(measuredHw.h2dBytesPerSecond);
    expect(t.hbmBytesPerSecond).toBe(measuredHw.hbmBytesPerSecond);
  });
  test.each(measuredMs)('%s fraction %d streamed=%s: within ±15%% of %d ms', (model, a, streamed, ms) => {
    const mp = modelProfile(cfg(model));
    const layout: GpuLayout = { ...streamAll(), residentLayers: streamed ? 0 : mp.numLayers };
    const c = decodeStepCost(mp, measuredHw, layout, { actFraction: a, batch: 64, contextTokens: 576 });
    const predictedMs = (c.stepSeconds - c.headSeconds) * 1e3; // the probe has no lm_head
    expect(Math.abs(predictedMs - ms) / ms).toBeLessThanOrEqual(0.15);
  });
});
