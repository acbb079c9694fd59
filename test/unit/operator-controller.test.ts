import { describe, test, expect } from '@jest/globals';
import { WorkQueue, type QueueClock } from '../../operator/controller/queue.js';
import { canAcquire } from '../../operator/controller/leader.js';
import { aggregate, parseStats, podDelta } from '../../operator/feedback/measure.js';
import { retuneOptions, statsUrl, podReady } from '../../operator/controller/feedback.js';
import { clusterRules, leaseRules } from '../../operator/rbac.js';
import { R } from '../../operator/k8s/resources.js';
import { resolveSpec } from '../../operator/api/defaults.js';

/** A clock the test advances by hand: timers fire only in advance(), in due order. */
class ManualClock implements QueueClock {
  now = 0;
  private timers: { id: number; due: number; fn: () => void }[] = [];
  private nextId = 0;
  setTimer(fn: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.timers.push({ id, due: this.now + ms, fn });
    return id;
  }
  clearTimer(handle: unknown): void {
    this.timers = this.timers.filter((t) => t.id !== handle);
  }
  /** Delays (from now) of the pending timers. */
  pending(): number[] {
    return this.timers.map((t) => t.due - this.now);
  }
  /** Moves time to the next due timer and fires it. */
  fireNext(): void {
    const t = [...this.timers].sort((a, b) => a.due - b.due)[0];
    if (!t) throw new Error('no timer pending');
    this.timers = this.timers.filter((x) => x !== t);
    this.now = t.due;
    t.fn();
  }
}

/** A promise the test settles by hand. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

const settle = async () => {
  for (let i = 0; i < 10; i++) await Promise.resolve();
};

describe('work queue', () => {
  test('one reconcile per key at a time; adds during a run coalesce into one rerun', async () => {
    const running = new Map<string, number>();
    let maxPerKey = 0;
    const runs: string[] = [];
    const gates: { key: string; gate: ReturnType<typeof deferred> }[] = [];
    const q = new WorkQueue(
      async (k) => {
        running.set(k, (running.get(k) ?? 0) + 1);
        maxPerKey = Math.max(maxPerKey, running.get(k)!);
        runs.push(k);
        const gate = deferred();
        gates.push({ key: k, gate });
        await gate.promise;
        running.set(k, running.get(k)! - 1);
      },
      { concurrency: 4, clock: new ManualClock() },
    );
    q.add('a');
    q.add('a');
    q.add('b');
    expect(runs).toEqual(['a', 'b']); // the duplicate add while queued is dropped
    q.add('a');
    q.add('a');
    q.add('a'); // while 'a' runs: marked dirty, not run beside it
    expect(runs).toEqual(['a', 'b']);
    gates[0].gate.resolve();
    await settle();
    expect(runs).toEqual(['a', 'b', 'a']); // one rerun for the three adds
    gates[1].gate.resolve();
    gates[2].gate.resolve();
    await q.idle();
    expect(maxPerKey).toBe(1);
    expect(runs).toEqual(['a', 'b', 'a']);
    await q.shutdown();
  });

  test('failures back off exponentially up to the cap; success resets; requeueAfter schedules a run', async () => {
    const clock = new ManualClock();
    let calls = 0;
    const times: number[] = [];
    const q = new WorkQueue(
      async () => {
        times.push(clock.now);
        calls++;
        if (calls < 5) throw new Error('boom');
        return calls === 5 ? { requeueAfterMs: 30 } : undefined;
      },
      { baseBackoffMs: 10, maxBackoffMs: 40, clock, onError: () => {} },
    );
    q.add('k');
    const delays: number[] = [];
    for (let i = 0; i < 5; i++) {
      await q.idle();
      expect(clock.pending()).toHaveLength(1);
      delays.push(clock.pending()[0]);
      clock.fireNext();
    }
    await q.idle();
    expect(calls).toBe(6);
    expect(delays).toEqual([10, 20, 40, 40, 30]); // backoff 10, 20, 40 (capped), 40; then requeueAfter 30
    expect(times).toEqual([0, 10, 30, 70, 110, 140]);
    expect(clock.pending()).toEqual([]); // no requeue after a plain success
    expect(q.backoffMs('k')).toBe(10); // reset after the success
    await q.shutdown();
  });

  test('addAfter replaces the pending timer of a key; the key then runs once', async () => {
    const clock = new ManualClock();
    const runs: string[] = [];
    const q = new WorkQueue(
      async (k) => {
        runs.push(k);
      },
      { clock },
    );
    q.addAfter('k', 50);
    q.addAfter('k', 10);
    q.addAfter('j', 20);
    expect(clock.pending().sort((a, b) => a - b)).toEqual([10, 20]);
    clock.fireNext();
    await q.idle();
    expect(runs).toEqual(['k']);
    clock.fireNext();
    await q.idle();
    expect(runs).toEqual(['k', 'j']);
    expect(clock.pending()).toEqual([]);
    await q.shutdown();
  });

  test('shutdown cancels pending requeues and waits for running reconciles', async () => {
    const clock = new ManualClock();
    const gate = deferred();
    let finished = false;
    const q = new WorkQueue(
      async (k) => {
        if (k === 'slow') {
          await gate.promise;
          finished = true;
          return undefined;
        }
        return { requeueAfterMs: 5 };
      },
      { clock },
    );
    q.add('fast');
    await settle();
    expect(clock.pending()).toEqual([5]);
    q.add('slow');
    let done = false;
    const stopping = q.shutdown().then(() => {
      done = true;
    });
    await settle();
    expect(clock.pending()).toEqual([]);
    expect(done).toBe(false);
    gate.resolve();
    await stopping;
    expect(finished).toBe(true);
    q.add('fast');
    await settle();
    expect(q.len()).toBe(0); // a stopped queue ignores adds
  });
});

describe('leader election', () => {
  const now = Date.parse('2026-01-01T00:00:10Z');
  test('free, own or expired leases can be taken; a live one cannot', () => {
    expect(canAcquire(undefined, 'me', now, 15000)).toBe(true);
    expect(canAcquire({ holderIdentity: '' }, 'me', now, 15000)).toBe(true);
    expect(canAcquire({ holderIdentity: 'me', renewTime: '2026-01-01T00:00:09Z', leaseDurationSeconds: 15 }, 'me', now, 15000)).toBe(true);
    expect(
      canAcquire({ holderIdentity: 'other', renewTime: '2026-01-01T00:00:09.000000Z', leaseDurationSeconds: 15 }, 'me', now, 15000),
    ).toBe(false);
    expect(canAcquire({ holderIdentity: 'other', renewTime: '2025-12-31T23:59:50Z', leaseDurationSeconds: 15 }, 'me', now, 15000)).toBe(
      true,
    );
  });
});

describe('measurements', () => {
  const stats = (t: number, steps: number, recompute: number, gen: number, queue = 0) => ({
    model: 'synthetic:opt-tiny',
    device: 'cpu',
    actFraction: 0.5,
    planGeneration: 1,
    uptimeSeconds: t,
    queueDepth: queue,
    runningSequences: 1,
    requestsTotal: 1,
    generatedTokensTotal: gen,
    promptTokensTotal: 0,
    counters: { steps, transferSeconds: 0, computeSeconds: steps * 0.01, recomputeSeconds: recompute, idleSeconds: 0, wallSeconds: 1 },
  });
  test('deltas of counters; a restart (counters going back) is discarded; bad bodies are rejected', () => {
    const a = parseStats(stats(10, 100, 1, 1000))!;
    const b = parseStats(stats(12, 150, 1.5, 1400, 3))!;
    const d = podDelta(a, b)!;
    expect(d).toMatchObject({ seconds: 2, steps: 50, recomputeSeconds: 0.5, generatedTokens: 400, queueDepth: 3 });
    expect(d.computeSeconds).toBeCloseTo(0.5, 9);
    expect(podDelta(b, parseStats(stats(1, 5, 0, 10))!)).toBeUndefined();
    expect(parseStats({ hello: 1 })).toBeUndefined();
    expect(parseStats(null)).toBeUndefined();
    const g = aggregate([d, d])!;
    expect(g).toMatchObject({ steps: 100, tokensPerSecond: 400, queueDepth: 3, pods: 2 });
    expect(aggregate([])).toBeUndefined();
  });

  test('stats URL from the port annotation or the http containerPort; readiness from conditions', () => {
    const pod = {
      metadata: { name: 'p', annotations: { 'hybridserve.io/port': '4321' } },
      status: { podIP: '10.0.0.5', conditions: [{ type: 'Ready', status: 'True' }] },
    };
    expect(statsUrl(pod)).toBe('http://10.0.0.5:4321/v1/hybridserve/stats');
    expect(
      statsUrl({
        metadata: { name: 'p' },
        spec: { containers: [{ ports: [{ name: 'http', containerPort: 8000 }] }] },
        status: { podIP: 'fd00::1' },
      }),
    ).toBe('http://[fd00::1]:8000/v1/hybridserve/stats');
    expect(podReady(pod)).toBe(true);
    expect(podReady({ ...pod, metadata: { ...pod.metadata, deletionTimestamp: 'x' } })).toBe(false);
  });

  test("retune bounds: explicit spec bounds win, else the pools' range", () => {
    const retune = (r = {}) => resolveSpec({ cache: { retune: r } }).cache.retune;
    // The CRD's defaults, not planning's DEFAULT_RETUNE_OPTIONS (maxStep 0.2), reach the retuner.
    expect(retuneOptions(retune(), { min: 0.5, max: 0.6 })).toEqual({ min: 0.5, max: 0.6, damping: 0.5, hysteresis: 0.1, maxStep: 0.1 });
    expect(retuneOptions(retune({ minActFraction: 0.1 }), { min: 0.5, max: 0.6 })).toMatchObject({ min: 0.1, max: 1 });
  });
});

describe('RBAC as data', () => {
  test('no wildcards, and every resource the operator calls is covered', () => {
    const all = [...clusterRules, ...leaseRules];
    for (const r of all) for (const v of [...r.apiGroups, ...r.resources, ...r.verbs]) expect(v).not.toContain('*');
    const covers = (group: string, resource: string, verb: string) =>
      all.some((r) => r.apiGroups.includes(group) && r.resources.includes(resource) && r.verbs.includes(verb));
    for (const t of [R.hsd, R.deployment, R.service, R.configMap, R.pod, R.node]) {
      for (const v of ['get', 'list', 'watch']) expect(covers(t.group, t.plural, v)).toBe(true);
    }
    for (const t of [R.deployment, R.service, R.configMap])
      for (const v of ['create', 'patch', 'delete']) expect(covers(t.group, t.plural, v)).toBe(true);
    expect(covers('hybridserve.io', 'hybridservedeployments/status', 'patch')).toBe(true);
    expect(covers('hybridserve.io', 'hybridservedeployments', 'patch')).toBe(true);
    expect(covers('events.k8s.io', 'events', 'create')).toBe(true);
    for (const v of ['get', 'create', 'update']) expect(covers('coordination.k8s.io', 'leases', v)).toBe(true);
    expect(covers('', 'pods', 'delete')).toBe(false);
  });
});
