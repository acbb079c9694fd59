// Issue 14: planning counts the layer GEMM weights in their format and nothing else.
import { describe, expect, test } from '@jest/globals';
import { PlanError, modelProfile, parseWeightDtype, weightElementBytes } from '../../planning/index.js';
import { gpuLayout } from '../../planning/cost-model.js';
import { engineLayerBufferBytes as layerBuffers } from '../../planning/engine-workspace.js';
import { parseModelSpec } from '../../model/spec.js';
import type { ModelConfig } from '../../model/types.js';

function preset(name: string): ModelConfig {
  const s = parseModelSpec(`synthetic:${name}`);
  if (s.kind !== 'synthetic') throw new Error('not synthetic');
  return s.config;
}

describe('weight formats in the model profile', () => {
  test('bytes per weight element', () => {
    expect(weightElementBytes('fp16')).toBe(2);
    expect(weightElementBytes('fp16', 4)).toBe(4); // the CPU engine's native f32
    expect(weightElementBytes('fp8')).toBe(1);
    expect(weightElementBytes('int8')).toBe(1);
    expect(weightElementBytes('int4')).toBe(0.5 + 5 / 128); // f32 scale + u8 zero point per 128
  });

  test.each(['opt-13b', 'llama3-8b'])('%s: only the layer GEMM weights shrink; KV, ACT and the head do not', (name) => {
    const cfg = preset(name);
    const fp16 = modelProfile(cfg, 2);
    for (const dtype of ['fp8', 'int8', 'int4'] as const) {
      const q = modelProfile(cfg, 2, dtype);
      const extra = fp16.layerParams - fp16.layerMatmulParams;
      expect(q.layerBytes).toBe(Math.ceil(fp16.layerMatmulParams * weightElementBytes(dtype)) + extra * 2);
      expect(q.weightBytes).toBe(q.numLayers * q.layerBytes + fp16.headBytes);
      expect(q.headBytes).toBe(fp16.headBytes);
      expect(q.lmHeadBytes).toBe(fp16.lmHeadBytes);
      expect(q.kvBytesPerToken).toBe(fp16.kvBytesPerToken);
      expect(q.actBytesPerToken).toBe(fp16.actBytesPerToken);
      expect(q.layerFlopsPerToken).toBe(fp16.layerFlopsPerToken);
      expect(q.weightDtype).toBe(dtype);
    }
    expect(modelProfile(cfg, 2, 'fp16').weightBytes).toBe(fp16.weightBytes);
  });

  test('unknown formats are a PlanError', () => {
    expect(() => parseWeightDtype('int3')).toThrow(PlanError);
    expect(() => modelProfile(preset('opt-tiny'), 2, 'bf16' as never)).toThrow(/weight dtype must be one of fp16, fp8, int8, int4/);
  });
});

describe('GPU layer buffers follow the CUDA engine (dequantise into fp16 slots)', () => {
  const GiB = 2 ** 30;
  test('fp16 streams through three fp16 slots (the engine kSlots); quantised layers always need fp16 slots, plus staging when streaming', () => {
    const cfg = preset('opt-13b');
    const fp16 = modelProfile(cfg, 2);
    const fp8 = modelProfile(cfg, 2, 'fp8');
    expect(fp8.slotLayerBytes).toBe(fp16.layerBytes);
    expect(layerBuffers(fp16, false)).toBe(0);
    expect(layerBuffers(fp16, true)).toBe(3 * fp16.layerBytes);
    expect(layerBuffers(fp8, false)).toBe(3 * fp16.layerBytes);
    expect(layerBuffers(fp8, true)).toBe(3 * fp16.layerBytes + 3 * fp8.layerBytes);
    // Every layer resident on a large card: the quantised layout still holds the three fp16 slots.
    const big = gpuLayout(fp8, 120 * GiB, 8192);
    expect(big.residentLayers).toBe(40);
    expect(big.layerBufferBytes).toBe(3 * fp16.layerBytes);
    // 24 GiB: what the layout uses adds up to the budget with the buffers counted.
    const small = gpuLayout(fp8, 24 * GiB, 8192);
    expect(small.usedBytes).toBeCloseTo(24 * GiB, -3);
    expect(small.reserveBytes + small.headBytes + small.layerBufferBytes + small.residentLayers * fp8.layerBytes).toBeLessThanOrEqual(
      24 * GiB,
    );
  });
});
