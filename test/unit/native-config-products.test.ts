// Issue 12, case 7: every config field may be a valid int while a product the engine computes in
// int arithmetic is not; the addon itself must refuse that (before it reached a segfaulting step).
import { expect, test } from '@jest/globals';
import { presetConfig } from '../../model/presets.js';
import { loadAddon, toNativeConfig } from '../../native/ts/engine.js';

const cfg = toNativeConfig(presetConfig('llama-tiny-gqa')!);
const options = (config: typeof cfg) => ({
  device: 'cpu',
  config,
  weights: { kind: 'synthetic', seed: 3 },
  blockTokens: 16,
  kvBlocks: 8,
  actBlocks: 8,
  actFraction: 0,
});

test('the addon refuses numHeads x headDim >= 2^31 with a RangeError naming the product', async () => {
  const addon = loadAddon() as unknown as { createEngine(o: unknown): Promise<unknown> };
  const huge = { ...cfg, numHeads: 65536, numKvHeads: 2, headDim: 32768 };
  let err: unknown;
  try {
    await addon.createEngine(options(huge));
  } catch (e) {
    err = e;
  }
  expect((err as Error).name).toBe('RangeError');
  expect(String((err as Error).message)).toMatch(/numHeads x headDim = 2147483648 exceeds 2147483647/);
});

test('the addon refuses a gated FFN row (2 x ffnSize) beyond int', async () => {
  const addon = loadAddon() as unknown as { createEngine(o: unknown): Promise<unknown> };
  await expect(addon.createEngine(options({ ...cfg, ffnSize: 2 ** 30 }))).rejects.toThrow(/2 x ffnSize/);
});
