// At temperature 0 the engine gives the same tokens at every ACT fraction, and per-step logits
// within 1e-4 relative of KV-only caching and of no-cache recomputation (a fresh sequence that
// prefills the whole token list). Blocks of 4 tokens so that every fraction mixes KV and ACT.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { NativeEngine } from '../../native/ts/engine.js';
import { generate, presetEngine, prompt, relError, type Trace } from './engine-helpers.js';

const FRACTIONS = [0.25, 0.5, 0.75, 1];
const STEPS = 8;

describe.each([
  ['opt-125m', 50272],
  ['llama-tiny', 32000],
])('%s', (preset, vocab) => {
  let engine: NativeEngine;
  let ref: Trace;
  const p = prompt(10, 1, vocab);

  beforeAll(async () => {
    engine = await presetEngine(preset as string);
    ref = await generate(engine, p, STEPS, 0);
  });
  afterAll(async () => {
    await engine?.close();
  });

  test('the KV-only run generates varied tokens', () => {
    expect(ref.tokens).toHaveLength(STEPS);
    expect(new Set(ref.tokens).size).toBeGreaterThan(1);
  });

  test.each(FRACTIONS)('ACT fraction %p: same tokens, logits within 1e-4 of KV-only', async (f) => {
    const before = engine.counters().recomputedTokens;
    const t = await generate(engine, p, STEPS, f);
    expect(t.tokens).toEqual(ref.tokens);
    for (let s = 0; s < STEPS; s++) expect(relError(t.logits[s], ref.logits[s])).toBeLessThan(1e-4);
    expect(engine.counters().recomputedTokens).toBeGreaterThan(before); // the ACT path did run
  });

  test('no-cache recomputation gives the same logits at every step', async () => {
    const all = [...p];
    for (let s = 0; s < STEPS; s++) {
      const id = engine.addSequence(Int32Array.from(all), { sampling: { temperature: 0, topK: 0, topP: 1, seed: 0 }, actFraction: 0.5 });
      const r = await engine.step(Int32Array.of(id), { logits: true });
      engine.removeSequence(id);
      expect(r.tokens[0]).toBe(ref.tokens[s]);
      expect(relError(r.logits!, ref.logits[s])).toBeLessThan(1e-4);
      all.push(ref.tokens[s]);
    }
  });

  test('every block went back to the pools', () => {
    const pools = engine.pools();
    expect(pools.kvBlocksFree).toBe(pools.kvBlocksTotal);
    expect(pools.actBlocksFree).toBe(pools.actBlocksTotal);
  });
});
