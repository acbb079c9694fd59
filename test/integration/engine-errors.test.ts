// Bad input to the engine gets a clear TypeError/RangeError, never a crash; running out of cache
// blocks is reported (addSequence throws, step reports a status) and recovers once blocks free up.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { presetConfig } from '../../model/presets.js';
import { createEngine, loadAddon, toNativeConfig } from '../../native/ts/engine.js';
import type { NativeEngine, NativeEngineOptions } from '../../native/ts/engine.js';
import { errorOf, greedy, presetEngine, rejectionOf } from './engine-helpers.js';

const tiny = toNativeConfig(presetConfig('opt-tiny')!);
const base: NativeEngineOptions = {
  device: 'cpu',
  config: tiny,
  weights: { kind: 'synthetic', seed: 1 },
  blockTokens: 4,
  kvBlocks: 2,
  actBlocks: 1,
  actFraction: 0.5,
};
// Every addon error carries a typed code (native/src/core/errors.h, mirrored as NativeErrorCode).
const range = (message: string, code = 'HS_INVALID_ARGUMENT') => ({ name: 'RangeError', message, code });
const type = (message: string) => ({ name: 'TypeError', message, code: 'HS_INVALID_ARGUMENT' });

describe('engine argument errors', () => {
  let engine: NativeEngine;
  beforeAll(async () => {
    engine = await createEngine(base);
  });
  afterAll(async () => {
    await engine?.close();
  });

  test('createEngine rejects bad options in JS and in the addon', async () => {
    const js = await rejectionOf(createEngine({ ...base, actFraction: 1.5 }));
    expect(js.message).toMatch(/actFraction must be a number in \[0, 1\]/);
    expect(js.code).toBe('HS_INVALID_ARGUMENT');
    expect((await rejectionOf(createEngine({ ...base, config: { ...tiny, numLayers: 0 } }))).message).toMatch(/config.numLayers/);
    const addon = loadAddon();
    expect(await rejectionOf(addon.createEngine({ ...base, actFraction: -0.1 }))).toEqual(
      range('options.actFraction must be in [0, 1], got -0.100000'),
    );
    expect(await rejectionOf(addon.createEngine({ ...base, config: { ...tiny, hiddenSize: 'x' as unknown as number } }))).toEqual(
      type('config.hiddenSize must be a number'),
    );
    expect((await rejectionOf(addon.createEngine({ ...base, config: { ...tiny, numKvHeads: 3 } }))).name).toBe('RangeError');
    expect((await rejectionOf(createEngine({ ...base, miniBatchTokens: -1 }))).message).toMatch(/miniBatchTokens must be an integer >= 0/);
    expect((await rejectionOf(addon.createEngine({ ...base, miniBatchTokens: 1.5 }))).name).toBe('RangeError');
    const split = await createEngine({ ...base, miniBatchTokens: 8 }); // accepted (the CPU backend runs mini-batches as one)
    await split.close();
    const missing = await rejectionOf(addon.createEngine({ ...base, weights: { kind: 'files', tensors: [] } }));
    expect(missing.message).toMatch(/missing tensor 'embed_tokens.weight'/);
    expect(missing.code).toMatch(/^HS_(INVALID_ARGUMENT|INTERNAL)$/);
    expect((await rejectionOf(addon.createEngine({ ...base, device: 'tpu' as 'cpu' }))).message).toMatch(/device must be 'cpu' or 'cuda'/);
    expect((await rejectionOf(addon.probe('tpu' as 'cpu'))).name).toBe('RangeError');
    expect(addon.devices()).toContain('cpu');
  });

  test('addSequence checks tokens, options and pool space', () => {
    const ok = { sampling: greedy };
    expect(errorOf(() => engine.addSequence(new Int32Array(0), ok))).toEqual(range('token list is empty'));
    expect(errorOf(() => engine.addSequence(Int32Array.of(5, tiny.vocabSize), ok))).toEqual(
      range(`token id ${tiny.vocabSize} at index 1 is outside the vocabulary [0, ${tiny.vocabSize})`),
    );
    expect(errorOf(() => engine.addSequence(Int32Array.of(-1), ok)).name).toBe('RangeError');
    expect(errorOf(() => engine.addSequence([1, 2] as unknown as Int32Array, ok))).toEqual(type('tokens must be an Int32Array'));
    expect(errorOf(() => engine.addSequence(Int32Array.of(1), { sampling: { ...greedy, topP: 0 } })).name).toBe('RangeError');
    expect(errorOf(() => engine.addSequence(Int32Array.of(1), { sampling: greedy, actFraction: 2 })).name).toBe('RangeError');
    expect(errorOf(() => engine.addSequence(Int32Array.of(1), {} as never))).toEqual(type('options.sampling must be an object'));
    expect(errorOf(() => engine.addSequence(new Int32Array(13), ok))).toEqual(
      range('out of cache blocks: need 4 blocks, KV free 2, ACT free 1', 'HS_OUT_OF_BLOCKS'),
    );
    expect(errorOf(() => engine.setActFraction(-0.5)).name).toBe('RangeError');
    expect(errorOf(() => engine.setActFraction(Number.NaN)).name).toBe('RangeError');
    engine.setActFraction(0.75);
    expect(engine.actFraction()).toBe(0.75);
    engine.setActFraction(0.5);
  });

  test('unknown ids and busy engines are reported', async () => {
    expect(errorOf(() => engine.removeSequence(999))).toEqual(range('unknown sequence id 999', 'HS_UNKNOWN_SEQUENCE'));
    expect(errorOf(() => engine.sequence(999)).name).toBe('RangeError');
    expect(await rejectionOf(engine.step(Int32Array.of(999)))).toEqual(range('unknown sequence id 999', 'HS_UNKNOWN_SEQUENCE'));
    const id = engine.addSequence(Int32Array.of(1, 2, 3), { sampling: greedy });
    const first = engine.step(Int32Array.of(id));
    expect(await rejectionOf(engine.step(Int32Array.of(id)))).toEqual({ name: 'Error', message: 'engine busy', code: 'HS_BUSY' });
    expect(await rejectionOf(engine.close())).toEqual({ name: 'Error', message: 'engine busy', code: 'HS_BUSY' });
    const r = await first;
    expect(r.status[0]).toBe(0);
    expect((await rejectionOf(engine.step(Int32Array.of(id, id)))).message).toMatch(/appears twice/);
    engine.removeSequence(id);
  });

  test('out of blocks: a status per sequence, and recovery after a removal', async () => {
    const a = engine.addSequence(Int32Array.of(1, 2, 3, 4), { sampling: greedy });
    const b = engine.addSequence(Int32Array.of(5, 6, 7, 8), { sampling: greedy });
    const c = engine.addSequence(Int32Array.of(9), { sampling: greedy });
    let r = await engine.step(Int32Array.of(a, b, c));
    expect(Array.from(r.status)).toEqual([0, 0, 0]);
    r = await engine.step(Int32Array.of(a, b)); // each needs a second block; none is free
    expect(Array.from(r.status)).toEqual([1, 1]);
    expect(Array.from(r.tokens)).toEqual([-1, -1]);
    expect(engine.sequence(a)).toMatchObject({ length: 5, cachedTokens: 4 });
    engine.removeSequence(c);
    r = await engine.step(Int32Array.of(a, b));
    expect(Array.from(r.status)).toEqual([0, 1]);
    expect(engine.sequence(a)).toMatchObject({ length: 6, cachedTokens: 5, kvBlocks: 1, actBlocks: 1 });
    engine.removeSequence(a);
    engine.removeSequence(b);
    expect(engine.pools()).toMatchObject({ kvBlocksFree: 2, actBlocksFree: 1 });
  });
});

describe('engine lifecycle', () => {
  test("probe('cpu') measures a positive GEMM rate and no PCIe", async () => {
    const r = await loadAddon().probe('cpu', 1);
    expect(r.gemmFlops).toBeGreaterThan(1e8);
    expect(r.h2dBytesPerSecond).toBe(0);
  });

  test('a closed engine refuses calls with a clear error', async () => {
    const e = await presetEngine('llama-tiny', { kvBlocks: 4, actBlocks: 4 });
    expect(e.info()).toMatchObject({ device: 'cpu', elementBytes: 4 });
    await e.close();
    expect(errorOf(() => e.pools())).toEqual({ name: 'Error', message: 'engine is closed', code: 'HS_CLOSED' });
    expect(await rejectionOf(e.step(Int32Array.of(1)))).toEqual({ name: 'Error', message: 'engine is closed', code: 'HS_CLOSED' });
    await e.close(); // closing twice is harmless
  });
});
