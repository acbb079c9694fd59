// The engine contract the scheduler relies on, checked against the test FakeEngine and the real
// addon on every device it reports (cpu always, cuda on a GPU host), so the stand-in cannot drift:
//  - removing a sequence that the running step holds is deferred by the ENGINE: the step still
//    returns its token, its blocks are freed when the step returns, and the id is unknown at once;
//  - the core counts tokens and steps once (issue 11: the CUDA backend counted them a second time):
//    a step's prefillTokens/decodeTokens are its new tokens, and the totals are the sum of the steps.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { presetConfig } from '../../model/presets.js';
import { addCounters, zeroCounters } from '../../native/ts/counters.js';
import { createEngine, loadAddon, toNativeConfig, type NativeEngine } from '../../native/ts/engine.js';
import { FakeEngine } from '../unit/server-fake-engine.js';

const greedy = { temperature: 0, topK: 0, topP: 1, seed: 1 };
const BLOCK = 4;
const BLOCKS = 64;

type Maker = () => Promise<NativeEngine>;
const makers: Array<[string, Maker]> = [
  ['FakeEngine', async () => new FakeEngine({ kvBlocks: BLOCKS, actBlocks: BLOCKS, blockTokens: BLOCK, vocab: 200 })],
  ...loadAddon()
    .devices()
    .map((device): [string, Maker] => [
      `addon (${device})`,
      () =>
        createEngine({
          device,
          config: toNativeConfig(presetConfig('opt-tiny')!),
          weights: { kind: 'synthetic', seed: 0 },
          blockTokens: BLOCK,
          kvBlocks: BLOCKS,
          actBlocks: BLOCKS,
          actFraction: 0,
          threads: 2,
        }),
    ]),
];

const prompt = (n: number, first = 10) => Int32Array.from({ length: n }, (_, i) => first + i);
const free = (e: NativeEngine) => {
  const p = e.pools();
  return p.kvBlocksFree + p.actBlocksFree;
};

describe.each(makers)('engine contract: %s', (_name, make) => {
  let e: NativeEngine;
  beforeAll(async () => {
    e = await make();
  });
  afterAll(() => e.close());

  test('a sequence removed while its step runs is freed when the step returns, and its id is unknown at once', async () => {
    const start = free(e);
    const a = e.addSequence(prompt(9), { sampling: greedy });
    const b = e.addSequence(prompt(5, 40), { sampling: greedy });
    const held = free(e);
    expect(held).toBe(start - 3 - 2); // 9 tokens → 3 blocks of 4; 5 → 2
    const stepping = e.step(Int32Array.of(a, b));
    e.removeSequence(a);
    // Deferred: the running step still reads a's blocks.
    expect(free(e)).toBe(held);
    // (By message: the addon's RangeError comes from another realm than jest's.)
    expect(() => e.sequence(a)).toThrow(/unknown sequence/);
    expect(() => e.removeSequence(a)).toThrow(/unknown sequence/);
    const r = await stepping;
    expect(Array.from(r.status)).toEqual([0, 0]); // the step ran both; a's token is the caller's to drop
    // Freed by the time the step's promise resolves; b ran on (its 2 blocks hold its 6 tokens).
    expect(free(e)).toBe(held + 3);
    expect(e.sequence(b).length).toBe(6);
    e.removeSequence(b);
    expect(free(e)).toBe(start); // outside a step, removal is immediate
  });

  test('token and step counters: each new token counted once, totals are the sum of the steps', async () => {
    const before = e.counters();
    const ids = [
      e.addSequence(prompt(5), { sampling: greedy }),
      e.addSequence(prompt(7, 20), { sampling: greedy }),
      e.addSequence(prompt(9, 30), { sampling: greedy }),
    ];
    const idArr = Int32Array.from(ids);
    let sum = zeroCounters();
    const prefill = await e.step(idArr);
    expect(prefill.counters).toMatchObject({ steps: 1, prefillTokens: 5 + 7 + 9, decodeTokens: 0 });
    sum = addCounters(sum, prefill.counters);
    for (let s = 0; s < 3; s++) {
      const d = await e.step(idArr);
      expect(d.counters).toMatchObject({ steps: 1, prefillTokens: 0, decodeTokens: 3 });
      sum = addCounters(sum, d.counters);
    }
    const after = e.counters();
    expect(after.steps - before.steps).toBe(4);
    expect(after.prefillTokens - before.prefillTokens).toBe(sum.prefillTokens);
    expect(after.decodeTokens - before.decodeTokens).toBe(sum.decodeTokens);
    expect(sum.wallSeconds).toBeGreaterThanOrEqual(0);
    for (const id of ids) e.removeSequence(id);
  });
});
