import { describe, expect, test } from '@jest/globals';
import { Scheduler, type FinishReason } from '../../server/scheduler/scheduler.js';
import { canAdmit, formBatches, needsPreemption, retryAfterSeconds, splitByStepTokens } from '../../server/scheduler/policy.js';
import { ApiError } from '../../server/errors.js';
import { FakeEngine } from './server-fake-engine.js';

const greedy = { temperature: 0, topP: 1, topK: 0, seed: 7 };

function run(s: Scheduler, prompt: number[], maxTokens: number, extra: { seed?: number; stopAt?: number } = {}) {
  const tokens: number[] = [];
  let resolve!: (r: { reason: FinishReason; tokens: number[]; error?: Error }) => void;
  const done = new Promise<{ reason: FinishReason; tokens: number[]; error?: Error }>((r) => {
    resolve = r;
  });
  // submit() throws synchronously (429, 503, 400): let that reach the caller.
  const handle = s.submit({
    prompt,
    maxTokens,
    sampling: { ...greedy, seed: extra.seed ?? 7 },
    ignoreEos: true,
    onToken: (t) => {
      tokens.push(t);
      return extra.stopAt !== undefined && tokens.length >= extra.stopAt;
    },
    onDone: (reason, error) => resolve({ reason, tokens, error }),
  });
  return { done, handle };
}

describe('scheduler', () => {
  test('batched results equal one-at-a-time results, with the right token counts', async () => {
    const prompts = Array.from({ length: 12 }, (_, i) => Array.from({ length: 1 + (i % 5) }, (_, j) => 10 + i * 3 + j));
    const solo = new Scheduler(new FakeEngine({ kvBlocks: 200, actBlocks: 0 }), { maxBatch: 1, maxQueue: 100, eosTokenId: 2 });
    const alone: number[][] = [];
    for (const [i, p] of prompts.entries()) alone.push((await run(solo, p, 5 + i).done).tokens);
    const engine = new FakeEngine({ kvBlocks: 200, actBlocks: 0 });
    const batched = new Scheduler(engine, { maxBatch: 64, maxQueue: 100, eosTokenId: 2 });
    const results = await Promise.all(prompts.map((p, i) => run(batched, p, 5 + i).done));
    results.forEach((r, i) => {
      expect(r.reason).toBe('length');
      expect(r.tokens).toHaveLength(5 + i);
      expect(r.tokens).toEqual(alone[i]);
    });
    // Continuous batching: several sequences really shared steps.
    expect(Math.max(...engine.stepLog.map((s) => s.length))).toBeGreaterThan(1);
    expect(engine.pools().kvBlocksFree).toBe(200);
  });

  test('a cancelled sequence frees its blocks right after the step in flight', async () => {
    const engine = new FakeEngine({ kvBlocks: 50, actBlocks: 0, stepDelayMs: 5 });
    const s = new Scheduler(engine, { maxBatch: 8, maxQueue: 10, eosTokenId: 2 });
    const a = run(s, [5, 6, 7, 8, 9], 1000);
    const b = run(s, [5, 6], 20);
    while (engine.stepLog.length < 3) await new Promise((r) => setTimeout(r, 1));
    const stepsAtCancel = engine.stepLog.length;
    a.handle.cancel();
    const ra = await a.done;
    expect(ra.reason).toBe('cancelled');
    // Freed no later than the end of the step that was running when cancel() was called.
    expect(engine.stepLog.length - stepsAtCancel).toBeLessThanOrEqual(1);
    await b.done;
    expect(engine.pools().kvBlocksFree).toBe(50);
  });

  test('preempts the newest sequence when the pools run dry, and it resumes with identical output', async () => {
    const ref = new Scheduler(new FakeEngine({ kvBlocks: 100, actBlocks: 0 }), { maxBatch: 8, maxQueue: 10, eosTokenId: 2 });
    const want = await Promise.all([run(ref, [1, 2, 3], 12, { seed: 1 }).done, run(ref, [4, 5, 6], 12, { seed: 2 }).done]);
    // 4-token blocks: each sequence needs 4 blocks by the end; 6 blocks cannot hold both at once.
    const engine = new FakeEngine({ kvBlocks: 3, actBlocks: 3 });
    const s = new Scheduler(engine, { maxBatch: 8, maxQueue: 10, eosTokenId: 2 });
    const got = await Promise.all([run(s, [1, 2, 3], 12, { seed: 1 }).done, run(s, [4, 5, 6], 12, { seed: 2 }).done]);
    expect(s.totals.preemptions).toBeGreaterThan(0);
    expect(got.map((g) => g.tokens)).toEqual(want.map((w) => w.tokens));
    expect(engine.pools().kvBlocksFree + engine.pools().actBlocksFree).toBe(6);
  });

  test('a burst onto an idle engine is admitted whole: one prefill step, then decode steps of the whole batch', async () => {
    // Requests keep arriving for ~20 ms, each gap shorter than the quiet gap that ends gathering.
    const engine = new FakeEngine({ kvBlocks: 400, actBlocks: 0, stepDelayMs: 2 });
    const s = new Scheduler(engine, { maxBatch: 64, maxQueue: 100, eosTokenId: 2, burstQuietMs: 8, burstWindowMs: 500 });
    const runs = [run(s, [1, 2, 3], 6)];
    for (let i = 1; i < 20; i++) {
      await new Promise((r) => setTimeout(r, 1));
      runs.push(run(s, [1, 2, 3, i], 6, { seed: i }));
    }
    await Promise.all(runs.map((r) => r.done));
    // As bench:engine runs it: 1 step prefilling all 20, then 5 decode steps of all 20.
    expect(engine.stepLog.map((ids) => ids.length)).toEqual([20, 20, 20, 20, 20, 20]);
    await s.stop();
  });

  test('--max-step-tokens: the burst prefills over steps of at most that many new tokens; the tokens do not change', async () => {
    const burst = async (maxStepTokens?: number) => {
      const engine = new FakeEngine({ kvBlocks: 400, actBlocks: 0, stepDelayMs: 2 });
      const s = new Scheduler(engine, {
        maxBatch: 64,
        maxQueue: 100,
        eosTokenId: 2,
        burstQuietMs: 8,
        burstWindowMs: 500,
        ...(maxStepTokens ? { maxStepTokens } : {}),
      });
      const runs = [run(s, [1, 2, 3], 6)];
      for (let i = 1; i < 20; i++) {
        await new Promise((r) => setTimeout(r, 1));
        runs.push(run(s, [1, 2, 3, i], 6, { seed: i }));
      }
      const tokens = (await Promise.all(runs.map((r) => r.done))).map((r) => r.tokens);
      await s.stop();
      return { tokens, steps: engine.stepLog.map((ids) => ids.length) };
    };
    const whole = await burst();
    const capped = await burst(24);
    // 3 + 5 × 4 = 23 tokens, then 6 × 4 = 24 twice, then the last 2 prompts; decode steps (20 tokens) stay whole.
    expect(capped.steps).toEqual([6, 6, 6, 2, 20, 20, 20, 20, 20]);
    expect(whole.steps).toEqual([20, 20, 20, 20, 20, 20]);
    expect(capped.tokens).toEqual(whole.tokens);
  });

  test('with slow steps (layers streamed from the host), a burst longer than the base window is still one prefill step', async () => {
    // Steps of 120 ms; the base window is 20 ms but arrivals go on for ~60 ms, each within the quiet gap.
    const engine = new FakeEngine({ kvBlocks: 400, actBlocks: 0, stepDelayMs: 120 });
    const s = new Scheduler(engine, { maxBatch: 64, maxQueue: 100, eosTokenId: 2, burstQuietMs: 20, burstWindowMs: 20 });
    await run(s, [7, 7], 2).done; // warm-up: the scheduler learns the step time
    const warm = engine.stepLog.length;
    const runs = [run(s, [1, 2, 3], 4)];
    const t0 = performance.now();
    for (let i = 1; performance.now() - t0 < 60; i++) {
      await new Promise((r) => setTimeout(r, 3));
      runs.push(run(s, [1, 2, 3, i], 4, { seed: i }));
    }
    await Promise.all(runs.map((r) => r.done));
    const n = runs.length;
    expect(engine.stepLog.slice(warm).map((ids) => ids.length)).toEqual([n, n, n, n]);
    await s.stop();
  });

  test('gathering ends at the first quiet gap: a lone request is not held for the whole window', async () => {
    const engine = new FakeEngine({ kvBlocks: 40, actBlocks: 0 });
    const s = new Scheduler(engine, { maxBatch: 8, maxQueue: 10, eosTokenId: 2, burstQuietMs: 5, burstWindowMs: 5000 });
    const t0 = performance.now();
    await run(s, [4, 5], 2).done;
    expect(performance.now() - t0).toBeLessThan(1000);
    await s.stop();
  });

  test('a sequence cancelled mid-step ends at once; the engine frees its blocks when that step returns', async () => {
    const engine = new FakeEngine({ kvBlocks: 50, actBlocks: 0, stepDelayMs: 30 });
    const released: number[] = [];
    const s = new Scheduler(
      engine,
      { maxBatch: 8, maxQueue: 10, eosTokenId: 2, burstWindowMs: 0 },
      { onCancelReleased: (n) => released.push(n) },
    );
    const a = run(s, Array(12).fill(5), 100);
    const b = run(s, [5, 6], 3);
    while (engine.stepLog.length < 2) await new Promise((r) => setTimeout(r, 1));
    // A step is in flight now (each takes 30 ms): cancel during it.
    const freeBefore = engine.pools().kvBlocksFree;
    a.handle.cancel();
    expect((await a.done).reason).toBe('cancelled');
    expect(engine.pools().kvBlocksFree).toBe(freeBefore); // still held by the running step
    const stepsAtCancel = engine.stepLog.length;
    while (engine.pools().kvBlocksFree === freeBefore) await new Promise((r) => setTimeout(r, 1));
    expect(engine.pools().kvBlocksFree).toBeGreaterThanOrEqual(freeBefore + 3);
    expect(engine.stepLog.length - stepsAtCancel).toBeLessThanOrEqual(1);
    expect(released).toEqual([1]);
    await b.done;
    expect(engine.pools().kvBlocksFree).toBe(50);
    await s.stop();
  });

  test('stops when onToken asks to (stop strings) and at maxTokens', async () => {
    const s = new Scheduler(new FakeEngine({ kvBlocks: 20, actBlocks: 0 }), { maxBatch: 4, maxQueue: 4, eosTokenId: 2 });
    const r = await run(s, [9], 10, { stopAt: 3 }).done;
    expect(r.reason).toBe('stop');
    expect(r.tokens).toHaveLength(3);
  });

  test('a stop found while the next step computes delivers nothing past it, leaves batch mates alone and frees every block', async () => {
    // Tokens are delivered while the following step runs, so a stop decided in delivery ends its
    // sequence one step late: the extra token must be dropped, not sent.
    const engine = new FakeEngine({ kvBlocks: 40, actBlocks: 0, stepDelayMs: 2 });
    const s = new Scheduler(engine, { maxBatch: 8, maxQueue: 8, eosTokenId: 2 });
    const solo = new Scheduler(new FakeEngine({ kvBlocks: 40, actBlocks: 0 }), { maxBatch: 1, maxQueue: 8, eosTokenId: 2 });
    const full = (await run(solo, [5, 6], 12).done).tokens;
    const [stopped, other] = await Promise.all([run(s, [5, 6], 12, { stopAt: 4 }).done, run(s, [7], 12).done]);
    expect(stopped.reason).toBe('stop');
    expect(stopped.tokens).toEqual(full.slice(0, 4));
    expect(other.error?.message ?? other.reason).toBe('length');
    expect(other.tokens).toHaveLength(12);
    expect(engine.pools().kvBlocksFree).toBe(40);
    await Promise.all([s.stop(), solo.stop()]);
  });

  test('a full queue answers 429 with Retry-After; a prompt larger than all pools is a 400', () => {
    const s = new Scheduler(new FakeEngine({ kvBlocks: 2, actBlocks: 0, stepDelayMs: 50 }), { maxBatch: 1, maxQueue: 1, eosTokenId: 2 });
    expect(() => run(s, Array(40).fill(5), 1)).toThrow(/cache blocks/);
    // maxBatch 1: one runs, one waits (maxQueue 1), the next is refused.
    let err: unknown;
    let accepted = 0;
    try {
      for (let i = 0; i < 5; i++) {
        run(s, [1], 3);
        accepted++;
      }
    } catch (e) {
      err = e;
    }
    expect(accepted).toBe(2);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).statusCode).toBe(429);
    expect(Number((err as ApiError).headers['retry-after'])).toBeGreaterThanOrEqual(1);
    return s.stop();
  });

  test('drain finishes in-flight work, then refuses new requests with 503', async () => {
    const s = new Scheduler(new FakeEngine({ kvBlocks: 20, actBlocks: 0, stepDelayMs: 1 }), { maxBatch: 4, maxQueue: 4, eosTokenId: 2 });
    const a = run(s, [3, 4], 5);
    await s.drain(5000);
    expect((await a.done).reason).toBe('length');
    expect(() => run(s, [1], 1)).toThrow(/shutting down/);
  });
});

describe('scheduling policy', () => {
  const pools = {
    blockTokens: 4,
    kvBlocksTotal: 10,
    kvBlocksFree: 4,
    actBlocksTotal: 10,
    actBlocksFree: 2,
    kvBlockBytes: 1,
    actBlockBytes: 1,
  };
  test('admission keeps one free block per running sequence', () => {
    expect(canAdmit(pools, 7, 0)).toBe(true);
    expect(canAdmit(pools, 7, 4)).toBe(true); // 2 blocks + 4 reserved = 6 free
    expect(canAdmit(pools, 8, 4)).toBe(false); // 9 tokens → 3 blocks + 4 > 6
  });
  test('batches never exceed maxBatch and keep every sequence once', () => {
    const seqs = Array.from({ length: 10 }, (_, i) => ({ contextTokens: i, engineId: i }));
    const b = formBatches(seqs, 4);
    expect(b.map((g) => g.length)).toEqual([4, 4, 2]);
    const split = formBatches(seqs, 3, (s) => [
      s.map((_, i) => i).filter((i) => i % 2 === 0),
      s.map((_, i) => i).filter((i) => i % 2 === 1),
    ]);
    expect(split.flat().length).toBe(10);
    expect(Math.max(...split.map((g) => g.length))).toBeLessThanOrEqual(3);
    // A splitter that loses sequences is not trusted.
    expect(formBatches(seqs, 4, () => [[0, 1]]).flat().length).toBe(10);
  });
  test('a step-token cap packs sequences in order and gives a prompt longer than the cap a step of its own', () => {
    const cap = { maxTokens: 10, newTokens: (n: number) => n };
    expect(splitByStepTokens([4, 4, 1, 1, 12, 3, 10, 1], cap)).toEqual([[4, 4, 1, 1], [12], [3], [10], [1]]);
    expect(splitByStepTokens([], cap)).toEqual([]);
    // A sequence with nothing new still counts one token (its decode row).
    expect(splitByStepTokens([0, 0, 0], { maxTokens: 2, newTokens: (n: number) => n })).toEqual([[0, 0], [0]]);
    const seqs = Array.from({ length: 6 }, (_, i) => ({ contextTokens: 5, engineId: i }));
    const steps = formBatches(seqs, 4, undefined, { maxTokens: 10, newTokens: (x) => x.contextTokens });
    expect(steps.map((g) => g.length)).toEqual([2, 2, 2]);
    expect(formBatches(seqs, 4, undefined, { maxTokens: 0, newTokens: () => 1 }).map((g) => g.length)).toEqual([4, 2]);
  });
  test('preemption only while more sequences need blocks than are free, never the last one', () => {
    expect(needsPreemption(0, 2, 3)).toBe(true);
    expect(needsPreemption(2, 2, 3)).toBe(false);
    expect(needsPreemption(0, 1, 1)).toBe(false);
  });
  test('Retry-After grows with the queue and stays within [1, 60]', () => {
    expect(retryAfterSeconds(10, 0)).toBe(5);
    expect(retryAfterSeconds(10, 10)).toBe(1);
    expect(retryAfterSeconds(100, 10)).toBe(10);
    expect(retryAfterSeconds(1e6, 1)).toBe(60);
  });
});

describe('planning mini-batches (GPU)', () => {
  test('one step while the working set fits the GPU cache buffer; split when it does not', async () => {
    const { planningMiniBatcher } = await import('../../server/scheduler/minibatch.js');
    const { presetConfig } = await import('../../model/presets.js');
    const cfg = presetConfig('opt-30b')!;
    const engine = new FakeEngine({ kvBlocks: 100000, actBlocks: 100000, blockTokens: 16, actFraction: 0.5 });
    const ids = Array.from({ length: 64 }, () => engine.addSequence(Int32Array.from(Array(512).fill(5)), { sampling: greedy }));
    const seqs = ids.map((engineId) => ({ contextTokens: 512, engineId }));
    const roomy = planningMiniBatcher(engine, cfg, 80 * 2 ** 30, 2048)(seqs);
    expect(roomy).toHaveLength(1);
    expect(roomy[0]).toHaveLength(64);
    const tight = planningMiniBatcher(engine, cfg, 16 * 2 ** 30, 2048)(seqs);
    expect(tight.length).toBeGreaterThan(1);
    expect(tight.flat().sort((a, b) => a - b)).toEqual(seqs.map((_, i) => i));
  });
});
