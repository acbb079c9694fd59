// The engine contract the scheduler relies on, checked against the test FakeEngine and the real
// addon on every device it reports (cpu always, cuda on a GPU host), so the stand-in cannot drift:
//  - removing a sequence that the running step holds is deferred by the ENGINE: the step still
//    returns its token, its blocks are freed when the step returns, and the id is unknown at once;
//  - the core counts tokens and steps once (issue 11: the CUDA backend counted them a second time):
//    a step's prefillTokens/decodeTokens are its new tokens, and the totals are the sum of the steps
//    (the scripted mix below is bench/engine-contract-steps.ts, which the GPU host runs without jest).
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { presetConfig } from '../../model/presets.js';
import { checkTokenContract, compareTokenCounts, runTokenContract } from '../../bench/engine-contract-steps.js';
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
    const prefill = await e.step(idArr);
    expect(prefill.counters).toMatchObject({ steps: 1, prefillTokens: 5 + 7 + 9, decodeTokens: 0 });
    const d = await e.step(idArr);
    expect(d.counters).toMatchObject({ steps: 1, prefillTokens: 0, decodeTokens: 3 });
    expect(e.counters().steps - before.steps).toBe(2);
    for (const id of ids) e.removeSequence(id);
  });
});

// The scripted mix of prefill, mixed and decode steps that `node dist/bench/engine-contract.js` also
// runs on the GPU host (bench/engine-contract-steps.ts): per-step counts as expected, totals equal
// to the sum of the steps and to the generated tokens, ACT fractions 0, 0.5 and 1, prefix caching on
// for the addon (the FakeEngine has none).
const contractMakers: Array<[string, boolean, (f: number) => Promise<NativeEngine>]> = [
  ['FakeEngine', false, async (f) => new FakeEngine({ kvBlocks: BLOCKS, actBlocks: BLOCKS, blockTokens: 16, vocab: 200, actFraction: f })],
  ...loadAddon()
    .devices()
    .map((device): [string, boolean, (f: number) => Promise<NativeEngine>] => [
      `addon (${device})`,
      true,
      (f) =>
        createEngine({
          device,
          config: toNativeConfig(presetConfig('opt-tiny')!),
          weights: { kind: 'synthetic', seed: 0 },
          blockTokens: 16,
          kvBlocks: BLOCKS,
          actBlocks: BLOCKS,
          actFraction: f,
          prefixCaching: true,
          threads: 2,
        }),
    ]),
];

describe.each(contractMakers)('token-count contract script: %s', (_name, prefixCaching, make) => {
  test.each([0, 0.5, 1])('ACT fraction %s: every step counts as expected', async (actFraction) => {
    const e = await make(actFraction);
    try {
      const run = await runTokenContract(e, { blockTokens: 16, vocab: 200, actFraction, prefixCaching });
      expect(checkTokenContract(run, { blockTokens: 16, prefixCaching })).toEqual([]);
      expect(run.steps.map((s) => [s.counted.prefillTokens, s.counted.decodeTokens])).toEqual([
        [58, 0],
        [prefixCaching ? 9 : 41, 2],
        [0, 3],
        [19, 2],
        [0, 3],
        [0, 3],
      ]);
      expect(run.generatedTokens).toBe(2 + 3 + 3 + 3 + 3 + 3);
    } finally {
      await e.close();
    }
  });
});

describe('the contract checker catches what a double-counting backend reports', () => {
  test('a step counted twice, and runs that disagree', async () => {
    const e = new FakeEngine({ kvBlocks: BLOCKS, actBlocks: BLOCKS, blockTokens: 16, vocab: 200 });
    const run = await runTokenContract(e, { blockTokens: 16, vocab: 200, actFraction: 0, prefixCaching: false });
    const doubled = structuredClone(run);
    doubled.steps[1].counted.decodeTokens *= 2;
    doubled.totals.decodeTokens += 2;
    doubled.stepSum.decodeTokens += 2;
    const bad = checkTokenContract(doubled, { blockTokens: 16, prefixCaching: false });
    expect(bad.join('\n')).toMatch(/step 2 .*decodeTokens 4, expected 2/);
    expect(bad.join('\n')).toMatch(/generated tokens/);
    expect(compareTokenCounts(run, doubled, ['cpu', 'cuda'])).toHaveLength(1);
    expect(compareTokenCounts(run, structuredClone(run), ['cpu', 'cuda'])).toEqual([]);
  });
});
