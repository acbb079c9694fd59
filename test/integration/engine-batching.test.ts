// Continuous batching: prompts of mixed lengths in one batch, with sequences joining mid-way and
// leaving early, give the same tokens (and logits within 1e-4) as each generated alone.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { NativeEngine } from '../../native/ts/engine.js';
import { generate, greedy, presetEngine, prompt, relError, type Trace } from './engine-helpers.js';

const STEPS = 6;
const LENS = [3, 17, 1, 9];
const JOIN_AT = [0, 0, 2, 3];

describe.each([
  ['opt-tiny', 50272, 0.5],
  ['llama-tiny-gqa', 32000, 0.25],
])('%s', (preset, vocab, fraction) => {
  let engine: NativeEngine;
  beforeAll(async () => {
    engine = await presetEngine(preset as string, { actFraction: fraction as number });
  });
  afterAll(async () => {
    await engine?.close();
  });

  test('batched equals unbatched', async () => {
    const prompts = LENS.map((n, i) => prompt(n, i, vocab as number));
    const alone: Trace[] = [];
    for (const p of prompts) alone.push(await generate(engine, p, STEPS));

    const ids: (number | undefined)[] = [];
    const got: Trace[] = prompts.map(() => ({ tokens: [], logits: [] }));
    for (let step = 0; got.some((t) => t.tokens.length < STEPS); step++) {
      prompts.forEach((p, i) => {
        if (JOIN_AT[i] === step) ids[i] = engine.addSequence(Int32Array.from(p), { sampling: greedy });
      });
      const who = ids.flatMap((id, i) => (id !== undefined && got[i].tokens.length < STEPS ? [i] : []));
      const r = await engine.step(Int32Array.from(who.map((i) => ids[i]!)), { logits: true });
      who.forEach((i, k) => {
        expect(r.status[k]).toBe(0);
        got[i].tokens.push(r.tokens[k]);
        got[i].logits.push(r.logits!.slice(k * (vocab as number), (k + 1) * (vocab as number)));
        if (got[i].tokens.length === STEPS) engine.removeSequence(ids[i]!); // leaves as soon as done
      });
      if (step === 0) expect(r.counters.prefillTokens).toBe(LENS[0] + LENS[1]);
      if (step === 3) expect(r.counters.decodeTokens).toBeGreaterThan(0);
    }
    got.forEach((t, i) => {
      expect(t.tokens).toEqual(alone[i].tokens);
      t.logits.forEach((l, s) => expect(relError(l, alone[i].logits[s])).toBeLessThan(1e-4));
    });
    expect(engine.pools().kvBlocksFree).toBe(engine.pools().kvBlocksTotal);
    expect(engine.pools().actBlocksFree).toBe(engine.pools().actBlocksTotal);
  });

  test('seeded sampling does not depend on batch mates', async () => {
    const sampling = { temperature: 0.8, topK: 40, topP: 0.9, seed: 1234 };
    const p = prompt(5, 7, vocab as number);
    const run = async (withNeighbour: boolean): Promise<number[]> => {
      const id = engine.addSequence(Int32Array.from(p), { sampling });
      const other = withNeighbour
        ? engine.addSequence(Int32Array.from(prompt(8, 2, vocab as number)), { sampling: { ...sampling, seed: 9 } })
        : undefined;
      const out: number[] = [];
      for (let s = 0; s < 6; s++) {
        const r = await engine.step(Int32Array.from(other === undefined ? [id] : [other, id]));
        out.push(r.tokens[other === undefined ? 0 : 1]);
      }
      engine.removeSequence(id);
      if (other !== undefined) engine.removeSequence(other);
      return out;
    };
    const alone = await run(false);
    expect(await run(true)).toEqual(alone);
    expect(await run(false)).toEqual(alone);
  });
});
