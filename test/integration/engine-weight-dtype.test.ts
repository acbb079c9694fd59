// Issue 14 through the addon: the weightDtype engine option shrinks the host weights by the
// format, bad values are RangeErrors, the cuda device takes the formats too, and `generate
// --weight-dtype` runs end to end.
import { describe, expect, test } from '@jest/globals';
import { presetConfig } from '../../model/presets.js';
import { createEngine, toNativeConfig, type NativeEngineOptions } from '../../native/ts/engine.js';
import { runCli } from '../fixtures/helpers.js';

const base: NativeEngineOptions = {
  device: 'cpu',
  config: toNativeConfig(presetConfig('llama-tiny-gqa')!),
  weights: { kind: 'synthetic', seed: 3 },
  blockTokens: 16,
  kvBlocks: 8,
  actBlocks: 8,
  actFraction: 0,
  threads: 1,
};

describe('weightDtype engine option', () => {
  test('host weight bytes follow the format; the quantised engine steps', async () => {
    const bytes: Record<string, number> = {};
    for (const weightDtype of ['fp16', 'fp8', 'int8', 'int4'] as const) {
      const e = await createEngine({ ...base, weightDtype });
      try {
        bytes[weightDtype] = e.info().weightBytes;
        const id = e.addSequence(Int32Array.of(1, 2, 3), { sampling: { temperature: 0, topK: 0, topP: 1, seed: 0 } });
        const r = await e.step(Int32Array.of(id));
        expect(r.status[0]).toBe(0);
      } finally {
        await e.close();
      }
    }
    // llama-tiny-gqa: the f32 embeddings and lm_head (2 x 32000 x 64) dominate and stay unquantised.
    const cfg = base.config;
    const kv = cfg.numKvHeads * cfg.headDim,
      q = cfg.numHeads * cfg.headDim;
    const matmul = cfg.numLayers * (cfg.hiddenSize * (q + 2 * kv) + q * cfg.hiddenSize + 3 * cfg.hiddenSize * cfg.ffnSize);
    // 4 → 1 byte a GEMM weight, less the per-row f32 scales and 64-byte alignment of each matrix
    expect(bytes.fp16 - bytes.int8).toBeLessThanOrEqual(matmul * 3);
    expect(bytes.fp16 - bytes.int8).toBeGreaterThanOrEqual(matmul * 3 * 0.97);
    expect(bytes.fp8).toBe(bytes.int8);
    expect(bytes.int4).toBeLessThan(bytes.int8);
  });

  test('bad values are refused with RangeError; the cuda device is not refused for the format', async () => {
    await expect(createEngine({ ...base, weightDtype: 'int3' as 'int8' })).rejects.toThrow(
      /options.weightDtype must be 'fp16', 'fp8', 'int8' or 'int4', got 'int3'/,
    );
    // Without a GPU (or without the CUDA build) the engine fails for that reason, never for the format.
    const cuda = await createEngine({ ...base, device: 'cuda', weightDtype: 'fp8' }).then(
      async (e) => {
        await e.close();
        return undefined;
      },
      (err: unknown) => err,
    );
    if (cuda !== undefined) expect(String(cuda)).not.toMatch(/weightDtype|not supported on the cuda device/);
  });

  test('generate --weight-dtype int8 --json', () => {
    const r = runCli([
      'generate',
      '--model',
      'synthetic:opt-tiny',
      '--prompt',
      'hello world',
      '--max-tokens',
      '4',
      '--weight-dtype',
      'int8',
      '--threads',
      '1',
      '--json',
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { weightDtype: string; tokens: number[]; counters: { weightBytesH2D: number } };
    expect(out.weightDtype).toBe('int8');
    expect(out.tokens).toHaveLength(4);
    // The engine really ran int8 weights: each step's weight bytes are below the f32 run's.
    const f32 = runCli([
      'generate',
      '--model',
      'synthetic:opt-tiny',
      '--prompt',
      'hello world',
      '--max-tokens',
      '4',
      '--threads',
      '1',
      '--json',
    ]);
    expect(f32.code).toBe(0);
    const ref = JSON.parse(f32.stdout) as { counters: { weightBytesH2D: number } };
    expect(out.counters.weightBytesH2D).toBeGreaterThan(0);
    expect(out.counters.weightBytesH2D).toBeLessThan(ref.counters.weightBytesH2D);
    const bad = runCli(['generate', '--prompt', 'x', '--weight-dtype', 'fp4']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/--weight-dtype must be one of fp16, fp8, int8, int4, got 'fp4'/);
  });
});
