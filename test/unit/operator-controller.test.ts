import { describe, test, expect } from '@jest/globals';
import { WorkQueue } from '../../operator/controller/queue.js';
import { canAcquire } from '../../operator/controller/leader.js';
import { aggregate, parseStats, podDelta } from '../../operator/feedback/measure.js';
import { retuneOptions, statsUrl, podReady } from '../../operator/controller/feedback.js';
import { clusterRules, leaseRules } from '../../operator/rbac.js';
import { R } from '../../operator/k8s/resources.js';
import { resolveSpec } from '../../operator/api/defaults.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('work queue', () => {
  test('one reconcile per key at a time; adds during a run coalesce into one rerun', async () => {
    const running = new Map<string, number>(); let maxPerKey = 0; const runs: string[] = [];
    const q = new WorkQueue(async (k) => {
      running.set(k, (running.get(k) ?? 0) + 1); maxPerKey = Math.max(maxPerKey, running.get(k)!);
      runs.push(k); await sleep(20); running.set(k, running.get(k)! - 1);
    }, { concurrency: 4 });
    q.add('a'); q.add('a'); q.add('b');
    await sleep(5);
    q.add('a'); q.add('a'); q.add('a');
    await sleep(100);
    await q.idle();
    expect(maxPerKey).toBe(1);
    expect(runs.filter((k) => k === 'a')).toHaveLength(2);
    expect(runs.filter((k) => k === 'b')).toHaveLength(1);
    await q.shutdown();
  });

  test('failures back off exponentially up to the cap; success resets; requeueAfter schedules a run', async () => {
    let calls = 0; const times: number[] = [];
    const q = new WorkQueue(async () => { times.push(Date.now()); calls++; if (calls < 5) throw new Error('boom'); return calls === 5 ? { requeueAfterMs: 30 } : undefined; },
      { baseBackoffMs: 10, maxBackoffMs: 40 });
    q.add('k');
    await sleep(400);
    expect(calls).toBe(6);
    const gaps = times.slice(1).map((t, i) => t - times[i]);
    expect(gaps[0]).toBeGreaterThanOrEqual(9);
    expect(gaps[2]).toBeGreaterThanOrEqual(35);       // 10, 20, 40 (capped), 40
    expect(gaps[3]).toBeLessThan(80);
    expect(q.backoffMs('k')).toBe(10);                // reset after the success
    await q.shutdown();
  });
});

describe('leader election', () => {
  const now = Date.parse('2026-01-01T00:00:10Z');
  test('free, own or expired leases can be taken; a live one cannot', () => {
    expect(canAcquire(undefined, 'me', now, 15000)).toBe(true);
    expect(canAcquire({ holderIdentity: '' }, 'me', now, 15000)).toBe(true);
    expect(canAcquire({ holderIdentity: 'me', renewTime: '2026-01-01T00:00:09Z', leaseDurationSeconds: 15 }, 'me', now, 15000)).toBe(true);
    expect(canAcquire({ holderIdentity: 'other', renewTime: '2026-01-01T00:00:09.000000Z', leaseDurationSeconds: 15 }, 'me', now, 15000)).toBe(false);
    expect(canAcquire({ holderIdentity: 'other', renewTime: '2025-12-31T23:59:50Z', leaseDurationSeconds: 15 }, 'me', now, 15000)).toBe(true);
  });
});

describe('measurements', () => {
  const stats = (t: number, steps: number, recompute: number, gen: number, queue = 0) => ({
    model: 'synthetic:opt-tiny', device: 'cpu', actFraction: 0.5, planGeneration: 1, uptimeSeconds: t, queueDepth: queue, runningSequences: 1,
    requestsTotal: 1, generatedTokensTotal: gen, promptTokensTotal: 0,
    counters: { steps, transferSeconds: 0, computeSeconds: steps * 0.01, recomputeSeconds: recompute, idleSeconds: 0, wallSeconds: 1 },
  });
  test('deltas of counters; a restart (counters going back) is discarded; bad bodies are rejected', () => {
    const a = parseStats(stats(10, 100, 1, 1000))!; const b = parseStats(stats(12, 150, 1.5, 1400, 3))!;
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
    const pod = { metadata: { name: 'p', annotations: { 'hybridserve.io/port': '4321' } }, status: { podIP: '10.0.0.5', conditions: [{ type: 'Ready', status: 'True' }] } };
    expect(statsUrl(pod)).toBe('http://10.0.0.5:4321/v1/hybridserve/stats');
    expect(statsUrl({ metadata: { name: 'p' }, spec: { containers: [{ ports: [{ name: 'http', containerPort: 8000 }] }] }, status: { podIP: 'fd00::1' } })).toBe('http://[fd00::1]:8000/v1/hybridserve/stats');
    expect(podReady(pod)).toBe(true);
    expect(podReady({ ...pod, metadata: { ...pod.metadata, deletionTimestamp: 'x' } })).toBe(false);
  });

  test('retune bounds: explicit spec bounds win, else the pools\' range', () => {
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
    const covers = (group: string, resource: string, verb: string) => all.some((r) => r.apiGroups.includes(group) && r.resources.includes(resource) && r.verbs.includes(verb));
    for (const t of [R.hsd, R.deployment, R.service, R.configMap, R.pod, R.node]) {
      for (const v of ['get', 'list', 'watch']) expect(covers(t.group, t.plural, v)).toBe(true);
    }
    for (const t of [R.deployment, R.service, R.configMap]) for (const v of ['create', 'patch', 'delete']) expect(covers(t.group, t.plural, v)).toBe(true);
    expect(covers('hybridserve.io', 'hybridservedeployments/status', 'patch')).toBe(true);
    expect(covers('hybridserve.io', 'hybridservedeployments', 'patch')).toBe(true);
    expect(covers('events.k8s.io', 'events', 'create')).toBe(true);
    for (const v of ['get', 'create', 'update']) expect(covers('coordination.k8s.io', 'leases', v)).toBe(true);
    expect(covers('', 'pods', 'delete')).toBe(false);
  });
});
