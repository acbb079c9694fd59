// Issue 14, acceptance 4: `hybridserve plan --weight-dtype fp8|int8|int4 --json` counts the layer
// weights in the format: fewer weight bytes, more resident layers or a larger batch, and the reason
// names the format. Through cli/plan.ts run(), as cli-plan.test.ts, and once through the built bin.
import { describe, expect, test } from '@jest/globals';
import { run } from '../../cli/plan.js';
import { CliError } from '../../cli/errors.js';
import { captureConsoleLog, runCli } from '../fixtures/helpers.js';

const out = captureConsoleLog();

interface PlanJson {
  weightBytes: number;
  weightDtype: string;
  residentLayers: number;
  numLayers: number;
  maxBatch: number;
  predictedTokensPerSecond: number;
  reason: string;
  cacheBytes: number;
}

async function planJson(...argv: string[]): Promise<PlanJson> {
  out.length = 0;
  expect(await run([...argv, '--json'])).toBe(0);
  return JSON.parse(out[0]) as PlanJson;
}

const BASE = ['--model', 'synthetic:opt-13b', '--gpu', 'NVIDIA-H100-80GB-HBM3', '--host-memory', '96GiB', '--gpu-memory', '24GiB'];

describe('hybridserve plan --weight-dtype', () => {
  test('fp8 halves the layer weights and buys resident layers or batch; the reason names fp8', async () => {
    const fp16 = await planJson(...BASE);
    const fp8 = await planJson(...BASE, '--weight-dtype', 'fp8');
    expect(fp16.weightDtype).toBe('fp16');
    expect(fp16.reason).not.toMatch(/fp8|int8|int4/);
    expect(fp8.weightDtype).toBe('fp8');
    // Layer GEMM weights 2 → 1 byte; embeddings, norms, biases stay 16-bit.
    expect(fp8.weightBytes).toBeLessThan(0.55 * fp16.weightBytes);
    expect(fp8.weightBytes).toBeGreaterThan(0.5 * fp16.weightBytes);
    expect(fp8.cacheBytes).toBeGreaterThan(fp16.cacheBytes);
    expect(fp8.residentLayers > fp16.residentLayers || fp8.maxBatch > fp16.maxBatch).toBe(true);
    // Acceptance 4: more resident layers OR a larger batch.
    expect(fp8.residentLayers > fp16.residentLayers || fp8.maxBatch > fp16.maxBatch).toBe(true);
    // With every layer resident the planner moves the cache into the GPU tier instead of growing the
    // host batch: the predicted throughput is what must rise.
    expect(fp8.predictedTokensPerSecond).toBeGreaterThan(fp16.predictedTokensPerSecond);
    expect(fp8.reason).toMatch(/fp8 weights/);
  });

  test('int8 counts as fp8, int4 smaller still (half a byte + group scales)', async () => {
    const fp8 = await planJson(...BASE, '--weight-dtype', 'fp8');
    const int8 = await planJson(...BASE, '--weight-dtype', 'int8');
    const int4 = await planJson(...BASE, '--weight-dtype', 'int4');
    expect(int8.weightBytes).toBe(fp8.weightBytes);
    expect(int4.weightBytes).toBeLessThan(0.6 * fp8.weightBytes);
    expect(int4.residentLayers).toBeGreaterThanOrEqual(fp8.residentLayers);
    expect(int4.reason).toMatch(/int4 weights/);
  });

  test('acceptance 4 through the bin: `hybridserve plan --model synthetic:opt-13b ... --weight-dtype fp8 --json`, weights on the host', () => {
    // The all-on-host regime (H200, an 8 GiB GPU budget: the engine's slots and workspace for
    // a batch-128 step take most of it): fp8 halves the streamed layers, so the host budget holds a
    // larger batch.
    const args = [
      'plan',
      '--model',
      'synthetic:opt-13b',
      '--gpu',
      'NVIDIA-H200',
      '--host-memory',
      '64GiB',
      '--gpu-memory',
      '8GiB',
      '--json',
    ];
    const once = (...extra: string[]): PlanJson => {
      const r = runCli([...args, ...extra]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      return JSON.parse(r.stdout) as PlanJson;
    };
    const fp16 = once();
    const fp8 = once('--weight-dtype', 'fp8');
    expect(fp8.weightDtype).toBe('fp8');
    expect(fp8.weightBytes).toBeLessThan(0.55 * fp16.weightBytes);
    // Acceptance 4: more resident layers OR a larger batch. In 8 GiB a quantised model's three fp16
    // slots and staging areas (planning/engine-workspace.ts) beside the engine's workspace leave no
    // room for a resident layer, so here it is the batch that grows.
    expect(fp8.residentLayers > fp16.residentLayers || fp8.maxBatch > fp16.maxBatch).toBe(true);
    expect(fp8.maxBatch).toBeGreaterThan(fp16.maxBatch);
    // Less than the bytes alone would give: every fp8 layer is dequantised into an fp16 slot each step.
    expect(fp8.predictedTokensPerSecond).toBeGreaterThan(1.15 * fp16.predictedTokensPerSecond);
    expect(fp8.reason).toMatch(/fp8 weights \(12\.2 GiB, 1\.00 bytes per layer weight\)/);
    expect(fp16.reason).not.toMatch(/fp8/);
  }, 120_000);

  test('an unknown format is a CliError naming the accepted ones', async () => {
    await expect(run([...BASE, '--weight-dtype', 'int3'])).rejects.toThrow(CliError);
    await expect(run([...BASE, '--weight-dtype', 'int3'])).rejects.toThrow(
      /--weight-dtype must be one of fp16, fp8, int8, int4, got 'int3'/,
    );
  });
});
