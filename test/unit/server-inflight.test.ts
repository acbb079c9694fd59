// Issue 15 gap: the scheduler keeps several engine steps in flight ("lanes", one engine slot each).
// Checked on the FakeEngine with slots: one lane makes exactly the single loop's engine calls; two
// lanes keep two steps in flight on disjoint sequences in different slots, each lane stepping again
// without waiting for the other; admission, cancel and preemption keep their meaning per lane.
import { describe, expect, test } from '@jest/globals';
import { Scheduler, type FinishReason, type SchedulerOptions } from '../../server/scheduler/scheduler.js';
import { chooseLanes, laneCap, pickLane, pipelineStagesOf, preemptionVictim } from '../../server/scheduler/policy.js';
import { parseServeArgs, servingLanes, type ServeConfig } from '../../cli/serve.js';
import { FakeEngine } from './server-fake-engine.js';
import { traceScenario } from './server-inflight-trace.js';

const greedy = { temperature: 0, topP: 1, topK: 0, seed: 7 };

function run(s: Scheduler, prompt: number[], maxTokens: number, seed = 7) {
  const tokens: number[] = [];
  let resolve!: (r: { reason: FinishReason; tokens: number[] }) => void;
  const done = new Promise<{ reason: FinishReason; tokens: number[] }>((r) => {
    resolve = r;
  });
  const handle = s.submit({
    prompt,
    maxTokens,
    sampling: { ...greedy, seed },
    ignoreEos: true,
    onToken: (t) => {
      tokens.push(t);
    },
    onDone: (reason) => resolve({ reason, tokens }),
  });
  return { done, handle };
}

const base: SchedulerOptions = { maxBatch: 8, maxQueue: 100, eosTokenId: 2 };
const prompts = Array.from({ length: 8 }, (_, i) => Array.from({ length: 2 + (i % 4) }, (_, j) => 20 + 5 * i + j));

/** Every request's tokens through one lane on a roomy engine: the reference. */
async function reference(maxTokens: number): Promise<number[][]> {
  const s = new Scheduler(new FakeEngine({ kvBlocks: 400, actBlocks: 0 }), { ...base, maxBatch: 64 });
  const r = await Promise.all(prompts.map((p, i) => run(s, p, maxTokens, i).done));
  await s.stop();
  return r.map((x) => x.tokens);
}

/** The engine calls of the single loop (the scheduler before lanes) in server-inflight-trace.ts's scenario. */
const SINGLE_LOOP_CALLS = [
  'add 3/3 -> 1', 'step [1]', 'add 5/5 -> 2', 'add 1/1 -> 3', 'step [1,2,3]', 'step [1,2,3]', 'step [1,2,3]', 'step [1,2,3]',
  'step [1,2,3]', 'step [1,2,3]', 'step [1,2,3]', 'step [1,2,3]', 'remove 3', 'step [1,2]', 'step [1,2]', 'step [1,2]',
  'remove 2', 'add 8/1 -> 4', 'step [1,4]', 'step [1,4]', 'remove 1', 'add 2/2 -> 5', 'add 7/7 -> 6', 'step [4,5,6]',
  'remove 4', 'add 2/2 -> 7', 'step [5,6,7]', 'step [5,6,7]', 'step [5,6,7]', 'step [5,6,7]', 'remove 6', 'step [5,7]',
  'remove 5', 'step [7]', 'step [7]', 'step [7]', 'step [7]', 'step [7]', 'step [7]', 'step [7]', 'step [7]', 'remove 7',
  'free 8',
]; // prettier-ignore
const SINGLE_LOOP_OUTCOMES = [
  'length 146,178,192,202,4,161,101,24,201,46,152,110,214,15',
  'length 254,115,53,194,161,30,42,33,103,124',
  'stop 102,12,176,78,41,98,47,88,236',
  'length 131,30,230,171,178,39',
  'length 225,64,47,51,101',
  'length 179,58,198,49,189,203,69,155,160,188,171,42,225',
];

describe('one lane', () => {
  const opts = { maxBatch: 3, maxQueue: 20, eosTokenId: 2, burstWindowMs: 0 };
  test('makes exactly the engine calls of the single loop (admission waits, a preemption, a stop)', async () => {
    let s: Scheduler | undefined;
    const got = await traceScenario((e) => (s = new Scheduler(e, opts)));
    expect(s!.laneCount).toBe(1);
    expect(s!.totals.preemptions).toBe(1);
    expect(got.calls).toEqual(SINGLE_LOOP_CALLS);
    expect(got.outcomes).toEqual(SINGLE_LOOP_OUTCOMES);
  });

  test('--steps-in-flight 1 on an engine with slots: the same calls, no slot option', async () => {
    const got = await traceScenario((e) => new Scheduler(e, { ...opts, lanes: 1 }), 4);
    expect(got.calls).toEqual(SINGLE_LOOP_CALLS);
  });
});

describe('two lanes', () => {
  test('two steps in flight at once, on disjoint sequences and different slots; same tokens as one lane', async () => {
    const want = await reference(6);
    const engine = new FakeEngine({ kvBlocks: 400, actBlocks: 0, slots: 2, stepDelayMs: 15 });
    const s = new Scheduler(engine, { ...base, lanes: 2 });
    const got = await Promise.all(prompts.map((p, i) => run(s, p, 6, i).done));
    expect(got.map((g) => g.reason)).toEqual(prompts.map(() => 'length'));
    expect(got.map((g) => g.tokens)).toEqual(want);
    expect(s.laneCount).toBe(2);
    expect(engine.maxInFlight).toBe(2);
    // Replay the step starts and ends: whenever two steps overlap they are in different slots with no id in common.
    const live = new Map<number, number[]>();
    let overlaps = 0;
    for (const [slot, kind, ids] of engine.events) {
      if (kind === 'end') {
        live.delete(slot);
        continue;
      }
      expect(live.has(slot)).toBe(false);
      for (const other of live.values()) {
        overlaps++;
        expect(other.filter((id) => ids.includes(id))).toEqual([]);
      }
      live.set(slot, ids);
    }
    expect(overlaps).toBeGreaterThan(3);
    // A sequence stays in its lane: each id is stepped in one slot only.
    const slotOf = new Map<number, number>();
    engine.stepLog.forEach((ids, k) => {
      for (const id of ids) {
        if (!slotOf.has(id)) slotOf.set(id, engine.stepSlots[k]);
        expect(slotOf.get(id)).toBe(engine.stepSlots[k]);
      }
    });
    // Four sequences per lane (fewest-sequences admission), the stats count the steps per lane.
    expect(Math.max(...engine.stepLog.map((ids) => ids.length))).toBe(4);
    expect(s.totals.laneSteps.every((n) => n >= 6)).toBe(true);
    expect(s.totals.laneSteps.reduce((a, b) => a + b, 0)).toBe(s.totals.steps);
    expect(engine.pools().kvBlocksFree).toBe(400);
    await s.stop();
  });

  test("a lane steps again without waiting for the other lane's step", async () => {
    // Slot 0's steps take 300 ms, slot 1's 5 ms: while one slow step runs, the fast lane goes on.
    const engine = new FakeEngine({ kvBlocks: 400, actBlocks: 0, slots: 2, slotDelayMs: [300, 5] });
    const s = new Scheduler(engine, { ...base, lanes: 2, burstWindowMs: 0 });
    const slow = run(s, [5, 6, 7], 3, 1);
    const fast = run(s, [8, 9], 30, 2);
    await Promise.all([slow.done, fast.done]);
    // Steps of slot 1 started while slot 0's first step ran.
    const firstEnd = engine.events.findIndex(([slot, kind]) => slot === 0 && kind === 'end');
    const fastStarts = engine.events.slice(0, firstEnd).filter(([slot, kind]) => slot === 1 && kind === 'start').length;
    expect(fastStarts).toBeGreaterThanOrEqual(10);
    expect((await fast.done).tokens).toHaveLength(30);
    await s.stop();
  });

  test('maxBatch is the total over lanes, each lane at most ceil(maxBatch / L)', async () => {
    const engine = new FakeEngine({ kvBlocks: 400, actBlocks: 0, slots: 2, stepDelayMs: 5 });
    const s = new Scheduler(engine, { ...base, maxBatch: 3, lanes: 2 });
    const runs = prompts.map((p, i) => run(s, p, 4, i));
    let most = 0;
    const watch = setInterval(() => (most = Math.max(most, s.runningCount)), 1);
    await Promise.all(runs.map((r) => r.done));
    clearInterval(watch);
    expect(most).toBeLessThanOrEqual(3);
    expect(Math.max(...engine.stepLog.map((ids) => ids.length))).toBeLessThanOrEqual(2);
    expect(new Set(engine.stepSlots)).toEqual(new Set([0, 1]));
    await s.stop();
  });

  test("a sequence cancelled in a lane's step in flight is freed when that step returns; pools full when idle", async () => {
    const engine = new FakeEngine({ kvBlocks: 60, actBlocks: 0, slots: 2, stepDelayMs: 20 });
    const released: number[] = [];
    const s = new Scheduler(engine, { ...base, lanes: 2, burstWindowMs: 0 }, { onCancelReleased: (n) => released.push(n) });
    const a = run(s, Array(12).fill(5), 200, 1);
    const b = run(s, [5, 6], 10, 2);
    const c = run(s, [7, 8, 9], 10, 3);
    while (engine.stepLog.length < 4) await new Promise((r) => setTimeout(r, 1));
    const freeBefore = engine.pools().kvBlocksFree;
    a.handle.cancel();
    expect((await a.done).reason).toBe('cancelled');
    expect(released).toEqual([1]); // it was in a step in flight
    expect(engine.pools().kvBlocksFree).toBe(freeBefore); // still held by that step
    while (engine.pools().kvBlocksFree < freeBefore + 3) await new Promise((r) => setTimeout(r, 1));
    expect((await b.done).reason).toBe('length');
    expect((await c.done).reason).toBe('length');
    expect(engine.pools().kvBlocksFree).toBe(60);
    await s.stop();
  });

  test('preemption under a small pool completes every request with the tokens of one lane', async () => {
    const want = await reference(12);
    // 4-token blocks: each request needs 4-5 blocks by the end; 10 blocks hold two at a time.
    const engine = new FakeEngine({ kvBlocks: 5, actBlocks: 5, slots: 2, stepDelayMs: 2 });
    const s = new Scheduler(engine, { ...base, lanes: 2 });
    const got = await Promise.all(prompts.map((p, i) => run(s, p, 12, i).done));
    expect(s.totals.preemptions).toBeGreaterThan(0);
    expect(got.map((g) => g.reason)).toEqual(prompts.map(() => 'length'));
    expect(got.map((g) => g.tokens)).toEqual(want);
    expect(engine.maxInFlight).toBe(2);
    expect(engine.pools().kvBlocksFree + engine.pools().actBlocksFree).toBe(10);
    await s.stop();
  });

  test("preempting a sequence in the other lane's step in flight: its blocks count once that step ends, and the lane waits for it", async () => {
    // 4 blocks of 4 tokens. a (fast slot 0) grows to 15 tokens = 4 blocks; b (slow slot 1) holds one
    // block while its 400 ms step runs. a's 13th token finds no block: b (the newest) is preempted
    // in flight; a must wait for b's step to return its block rather than end alone for want of one.
    const engine = new FakeEngine({ kvBlocks: 4, actBlocks: 0, slots: 2, slotDelayMs: [5, 400] });
    const s = new Scheduler(engine, { ...base, lanes: 2, burstWindowMs: 0 });
    const a = run(s, [5, 6, 7], 12, 1);
    const b = run(s, [8, 9, 10], 6, 2);
    const [ra, rb] = await Promise.all([a.done, b.done]);
    expect(ra.reason).toBe('length');
    expect(ra.tokens).toHaveLength(12);
    expect(rb.reason).toBe('length');
    expect(rb.tokens).toHaveLength(6);
    expect(s.totals.preemptions).toBe(1);
    // b's first step (slot 1) was in flight when it was preempted: slot 0 stepped no more than
    // a's 10 steps to 13 tokens, the one that found no block, and none after it until b's step ended.
    const bEnd = engine.events.findIndex(([slot, kind]) => slot === 1 && kind === 'end');
    expect(engine.events.slice(0, bEnd).filter(([slot, kind]) => slot === 0 && kind === 'start').length).toBeLessThanOrEqual(11);
    expect(engine.pools().kvBlocksFree).toBe(4);
    await s.stop();
  });

  test("a failed step in one lane ends every request once, after the other lane's step; the next request runs", async () => {
    const engine = new FakeEngine({ kvBlocks: 100, actBlocks: 0, slots: 2, stepDelayMs: 5 });
    const step = engine.step.bind(engine);
    let calls = 0;
    engine.step = (ids, o) => (++calls === 7 ? Promise.reject(new Error('engine failed')) : step(ids, o));
    const s = new Scheduler(engine, { ...base, lanes: 2, burstWindowMs: 0 });
    const ends = await Promise.all(prompts.slice(0, 4).map((p, i) => run(s, p, 50, i).done));
    expect(ends.map((e) => e.reason)).toEqual(['error', 'error', 'error', 'error']);
    expect(s.runningCount).toBe(0);
    const after = await run(s, [4, 5, 6], 5).done;
    expect(after.reason).toBe('length');
    // The other lane's step was let finish: no block is left held.
    expect(engine.pools().kvBlocksFree).toBe(100);
    await s.stop();
  });

  test('a burst onto idle lanes is gathered before the first step of either lane', async () => {
    const engine = new FakeEngine({ kvBlocks: 400, actBlocks: 0, slots: 2, stepDelayMs: 2 });
    const s = new Scheduler(engine, { ...base, maxBatch: 64, lanes: 2, burstQuietMs: 8, burstWindowMs: 500 });
    const runs = [run(s, [1, 2, 3], 5)];
    for (let i = 1; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 1));
      runs.push(run(s, [1, 2, 3, i], 5, i));
    }
    await Promise.all(runs.map((r) => r.done));
    // Each lane's first step prefills its five: no lane stepped before the burst was in.
    expect(engine.stepLog.map((ids) => ids.length)).toEqual(Array(10).fill(5));
    await s.stop();
  });
});

describe('lane policy', () => {
  test('lane count: one per pipeline stage when the engine can keep steps in flight; the flag overrides within bounds', () => {
    expect(pipelineStagesOf('cpu (x86_64, 2 threads) x 3 pipeline stages')).toBe(3);
    expect(pipelineStagesOf('NVIDIA H200')).toBe(1);
    expect(chooseLanes({ maxStepsInFlight: 8 }, 2)).toBe(2);
    expect(chooseLanes({ maxStepsInFlight: 8 }, 1)).toBe(1);
    expect(chooseLanes({}, 4)).toBe(1); // a test double without slots
    expect(chooseLanes({ maxStepsInFlight: 2 }, 4)).toBe(2);
    expect(chooseLanes({ maxStepsInFlight: 8 }, 1, 3)).toBe(3);
    expect(() => chooseLanes({ maxStepsInFlight: 8 }, 2, 9)).toThrow(/steps in flight must be an integer in \[1, 8\]/);
    expect(() => chooseLanes({ maxStepsInFlight: 8 }, 2, 0)).toThrow(RangeError);
    expect(() => chooseLanes({}, 1, 2)).toThrow(/\[1, 1\]/);
  });

  test('a newcomer joins the lane with the fewest sequences (then fewest tokens, then lowest slot); full lanes are skipped', () => {
    expect(
      pickLane(
        [
          { sequences: 2, tokens: 10 },
          { sequences: 1, tokens: 90 },
        ],
        4,
      ),
    ).toBe(1);
    expect(
      pickLane(
        [
          { sequences: 1, tokens: 50 },
          { sequences: 1, tokens: 20 },
        ],
        4,
      ),
    ).toBe(1);
    expect(
      pickLane(
        [
          { sequences: 1, tokens: 20 },
          { sequences: 1, tokens: 20 },
        ],
        4,
      ),
    ).toBe(0);
    expect(
      pickLane(
        [
          { sequences: 2, tokens: 0 },
          { sequences: 3, tokens: 0 },
        ],
        2,
      ),
    ).toBe(-1);
    expect(pickLane([{ sequences: 0, tokens: 0 }], 1)).toBe(0);
    expect(laneCap(64, 1)).toBe(64);
    expect(laneCap(5, 2)).toBe(3);
    expect(laneCap(1, 4)).toBe(1);
  });

  test('the preemption victim is the newest admitted', () => {
    expect(preemptionVictim([{ admittedRank: 3 }, { admittedRank: 9 }, { admittedRank: 5 }])).toBe(1);
    expect(preemptionVictim([])).toBe(-1);
  });
});

describe('serve --steps-in-flight', () => {
  const parse = (...argv: string[]) => parseServeArgs(argv, {}) as ServeConfig;
  const engine = { device: 'cpu' as const, deviceName: 'cpu x 2 pipeline stages', weightBytes: 0, elementBytes: 4, maxStepsInFlight: 8 };
  test('parsed as an integer ≥ 1; absent means the default', () => {
    expect(parse('--steps-in-flight', '3').stepsInFlight).toBe(3);
    expect(parse().stepsInFlight).toBeUndefined();
    expect(() => parse('--steps-in-flight', '0')).toThrow(/--steps-in-flight must be between 1 and 1024, got 0/);
    expect(() => parse('--steps-in-flight', 'two')).toThrow(/--steps-in-flight must be an integer/);
  });
  test('checked against the engine: exit 2 beyond maxStepsInFlight; stages over processes count the world size', () => {
    expect(servingLanes(parse('--stages', '2'), engine)).toBe(2);
    expect(servingLanes(parse('--stages', '2', '--steps-in-flight', '1'), engine)).toBe(1);
    expect(servingLanes(parse(), { ...engine, deviceName: 'cpu' })).toBe(1);
    let err: unknown;
    try {
      servingLanes(parse('--steps-in-flight', '9'), engine);
    } catch (e) {
      err = e;
    }
    expect((err as Error).message).toMatch(/serve: --steps-in-flight: steps in flight must be an integer in \[1, 8\]/);
    expect((err as { exitCode: number }).exitCode).toBe(2);
    const leader = { ...parse(), pipeline: { gpus: 1, stages: 1, rank: 0, worldSize: 3, leaderAddress: 'h:1' } };
    expect(servingLanes(leader, { ...engine, deviceName: 'NVIDIA H200 x 1 pipeline stages' })).toBe(3);
  });
});
