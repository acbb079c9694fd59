// SequenceRequest.after (parallel sampling shares the prompt's prefill): a held sequence waits in the
// queue until its target has computed its prompt (or ended), without blocking those behind it, and
// stays cancellable and subject to its deadline meanwhile. The fake engine has no prefix cache:
// these tests check when sequences are admitted (its step log), not what they reuse
// (test/integration/server-prefix-cache.test.ts does that on the real engine).
import { describe, expect, test } from '@jest/globals';
import { heldBack, nextAdmissible } from '../../server/scheduler/policy.js';
import { Scheduler, type FinishReason, type SequenceHandle } from '../../server/scheduler/scheduler.js';
import { FakeEngine } from './server-fake-engine.js';

type Result = { reason: FinishReason; tokens: number[] };

/** A greedy request; a refusal at submit (queue full) rejects `done`. */
function run(s: Scheduler, prompt: number[], maxTokens: number, o: { seed?: number; after?: SequenceHandle; deadline?: number } = {}) {
  const tokens: number[] = [];
  let handle!: SequenceHandle;
  const done = new Promise<Result>((resolve) => {
    handle = s.submit({
      prompt,
      maxTokens,
      sampling: { temperature: 0, topP: 1, topK: 0, seed: o.seed ?? 7 },
      ignoreEos: true,
      ...(o.after ? { after: o.after } : {}),
      ...(o.deadline !== undefined ? { deadline: o.deadline } : {}),
      onToken: (t) => void tokens.push(t),
      onDone: (reason) => resolve({ reason, tokens }),
    });
  });
  return { done, handle };
}

const prompt = [5, 6, 7, 8, 9, 10, 11, 12];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An engine and scheduler; gathering is short so that a lone request starts quickly. */
function setup(o: { stepDelayMs?: number; maxQueue?: number; burstQuietMs?: number; burstWindowMs?: number } = {}) {
  const engine = new FakeEngine({ kvBlocks: 200, actBlocks: 0, stepDelayMs: o.stepDelayMs ?? 2 });
  const s = new Scheduler(engine, {
    maxBatch: 16,
    maxQueue: o.maxQueue ?? 100,
    eosTokenId: 2,
    burstQuietMs: o.burstQuietMs ?? 1,
    burstWindowMs: o.burstWindowMs ?? 5,
  });
  return { engine, s };
}

/** The engine steps each sequence (engine ids, in admission order) took part in, by step index. */
const stepsOf = (engine: FakeEngine, id: number) => engine.stepLog.flatMap((ids, i) => (ids.includes(id) ? [i] : []));

describe('after: policy', () => {
  test('heldBack: only while the target is neither done nor past its prompt', () => {
    expect(heldBack(null)).toBe(false);
    expect(heldBack({ promptComputed: false, done: false })).toBe(true);
    expect(heldBack({ promptComputed: true, done: false })).toBe(false);
    expect(heldBack({ promptComputed: false, done: true })).toBe(false);
  });

  test('nextAdmissible: the first waiting sequence not held back, FIFO otherwise', () => {
    const pending = { promptComputed: false, done: false };
    const computed = { promptComputed: true, done: false };
    expect(nextAdmissible([])).toBe(-1);
    expect(nextAdmissible([{ after: null }, { after: pending }])).toBe(0);
    expect(nextAdmissible([{ after: pending }, { after: null }, { after: null }])).toBe(1);
    expect(nextAdmissible([{ after: pending }, { after: pending }])).toBe(-1);
    expect(nextAdmissible([{ after: pending }, { after: computed }])).toBe(1);
  });
});

describe('after: scheduler', () => {
  test('a held sequence joins the step right after its target prefilled, with the tokens it would have alone', async () => {
    const solo = setup();
    const want = await run(solo.s, prompt, 4, { seed: 8 }).done;
    const { engine, s } = setup();
    const a = run(s, prompt, 4);
    const b = run(s, prompt, 4, { seed: 8, after: a.handle });
    const [ra, rb] = await Promise.all([a.done, b.done]);
    expect([ra.reason, rb.reason]).toEqual(['length', 'length']);
    // Engine ids follow admission: a is 1, b is 2. a prefills alone in step 0; b prefills in step 1.
    expect(stepsOf(engine, 1)).toEqual([0, 1, 2, 3]);
    expect(stepsOf(engine, 2)).toEqual([1, 2, 3, 4]);
    expect(rb.tokens).toEqual(want.tokens);
    await s.stop();
  });

  test('a held sequence does not block later unrelated ones, nor end the gathering of a burst', async () => {
    // Gathering checks for arrivals every 60 ms: c comes before the first check, d before the second.
    const { engine, s } = setup({ burstQuietMs: 60, burstWindowMs: 1000 });
    const a = run(s, prompt, 3);
    const b = run(s, prompt, 3, { after: a.handle });
    await sleep(10);
    const c = run(s, [20, 21, 22], 3);
    await sleep(70);
    const d = run(s, [30, 31, 32], 3);
    await Promise.all([a.done, b.done, c.done, d.done]);
    // a (id 1), c (id 2) and d (id 3) prefill together in step 0; b (id 4) joins in step 1.
    expect(engine.stepLog[0]).toEqual([1, 2, 3]);
    expect(stepsOf(engine, 4)[0]).toBe(1);
    await s.stop();
  });

  test('a held sequence counts against the queue', async () => {
    const { s } = setup({ maxQueue: 1 });
    const a = run(s, prompt, 2);
    const b = run(s, prompt, 2, { after: a.handle });
    expect(s.queueDepth).toBe(1);
    await expect(run(s, [1, 2, 3], 2).done).rejects.toThrow(/too many queued requests/);
    await Promise.all([a.done, b.done]);
    await s.stop();
  });

  test('a target cancelled before its prefill releases the held sequence, which runs alone', async () => {
    const { engine, s } = setup();
    const a = run(s, prompt, 4);
    const b = run(s, prompt, 4, { after: a.handle });
    a.handle.cancel();
    expect((await a.done).reason).toBe('cancelled');
    const rb = await b.done;
    expect(rb.reason).toBe('length');
    expect(rb.tokens).toHaveLength(4);
    // a never stepped; b (engine id 2) prefilled in the first step.
    expect(engine.stepLog[0]).toEqual([2]);
    await s.stop();
  });

  test('a target that ends (here: fails at admission) releases the held sequence at once', async () => {
    const { engine, s } = setup({ stepDelayMs: 20 });
    const x = run(s, [30, 31], 3);
    while (engine.stepLog.length === 0) await sleep(1);
    // Queued while x's first step runs. An empty prompt is refused by the engine when admitted:
    // the target ends with an error, and b is admitted in the same pass.
    const a = run(s, [], 4);
    const b = run(s, prompt, 4, { after: a.handle });
    expect((await a.done).reason).toBe('error');
    expect((await b.done).reason).toBe('length');
    expect((await x.done).reason).toBe('length');
    // x is engine id 1, b id 2 (a never got one): b prefilled in x's second step.
    expect(engine.stepLog[1]).toEqual([1, 2]);
    // And one submitted after its target finished is not held at all.
    const c = run(s, prompt, 2, { after: a.handle });
    expect((await c.done).reason).toBe('length');
    await s.stop();
  });

  test('a held sequence can be cancelled and leaves the queue', async () => {
    const { engine, s } = setup({ stepDelayMs: 20 });
    const a = run(s, prompt, 3);
    const b = run(s, prompt, 3, { after: a.handle });
    expect(s.queueDepth).toBe(1);
    b.handle.cancel();
    expect(s.queueDepth).toBe(0);
    expect((await b.done).reason).toBe('cancelled');
    expect((await a.done).reason).toBe('length');
    // b never reached the engine: every step ran a alone.
    expect(engine.stepLog.every((ids) => ids.length === 1)).toBe(true);
    await s.stop();
  });

  test('a held sequence times out at its deadline', async () => {
    const { engine, s } = setup({ stepDelayMs: 60 });
    const a = run(s, prompt, 2);
    const b = run(s, prompt, 2, { after: a.handle, deadline: Date.now() + 10 });
    expect((await b.done).reason).toBe('timeout');
    expect(s.queueDepth).toBe(0);
    expect((await a.done).reason).toBe('length');
    expect(engine.stepLog.every((ids) => ids.length === 1)).toBe(true);
    await s.stop();
  });
});
