// Acceptance 3 of issue 6: 409 conflicts, API 500s, dropped watches, 410 Gone, an operator restart
// mid-reconcile and a pod that dies all end in the SAME converged state as a clean run (compared
// field by field), with no duplicate or orphaned object. Pods are the test double's (mode 'fake');
// operator-e2e.test.ts kills a real server process.
import { describe, test, expect } from '@jest/globals';
import { Operator, type OperatorOptions } from '../../operator/operator.js';
import { KubeClient, loadKubeConfig } from '../../operator/k8s/client.js';
import { R } from '../../operator/k8s/resources.js';
import { TestCluster, cond, waitFor, type NodeSpec } from '../k8s/cluster.js';
import type { Obj } from '../k8s/apiserver.js';

const NODES: NodeSpec[] = [
  { name: 'h100-a', product: 'NVIDIA-H100-80GB-HBM3', memory: '512Gi', gpus: 2 },
  { name: 'h100-b', product: 'NVIDIA-H100-80GB-HBM3', memory: '512Gi', gpus: 2 },
  { name: 'l4-a', product: 'NVIDIA-L4', memory: '128Gi', gpus: 1 },
];
const SPEC = { model: { uri: 'synthetic:opt-1.3b' }, replicas: 3, cache: { actFraction: 'auto' } };
const opts = (url: string, extra: Partial<OperatorOptions> = {}): OperatorOptions => ({
  server: url,
  leaseNamespace: 'default',
  progressRequeueMs: 200,
  backoffBaseMs: 20,
  backoffMaxMs: 500,
  leaseDurationMs: 1500,
  leaseRenewMs: 300,
  leaseRetryMs: 200,
  log: () => undefined,
  ...extra,
});

/** Everything the operator decides, without timestamps, uids or resourceVersions. */
function snapshot(c: TestCluster, name: string): Obj {
  const sel = `app.kubernetes.io/instance=${name}`;
  const strip = (o: Obj) => ({
    name: o.metadata.name,
    labels: o.metadata.labels,
    owners: o.metadata.ownerReferences.map((r: Obj) => `${r.kind}/${r.name}/${r.controller}`),
  });
  const hsd = c.hsd(name)!;
  return {
    deployments: c
      .list('apps', 'v1', 'deployments', 'default', sel)
      .map((d) => ({ ...strip(d), spec: d.spec }))
      .sort(byName),
    configMaps: c
      .list('', 'v1', 'configmaps', 'default', sel)
      .map((m) => ({ ...strip(m), data: m.data, ann: m.metadata.annotations }))
      .sort(byName),
    services: c.list('', 'v1', 'services', 'default', sel).map((s) => ({ ...strip(s), spec: s.spec })),
    pods: c.list('', 'v1', 'pods', 'default', sel).length,
    // observedGeneration differs by history (each scale bumps generation); converged() checks it equals generation.
    status: {
      ...hsd.status,
      observedGeneration: undefined,
      conditions: hsd.status.conditions.map((x: Obj) => `${x.type}=${x.status}/${x.reason}`),
    },
    finalizers: hsd.metadata.finalizers,
  };
}
const byName = (a: Obj, b: Obj) => String(a.name).localeCompare(String(b.name));

/** No managed object whose controller owner is gone, and exactly one controller owner each. */
function assertNoOrphans(c: TestCluster): void {
  const hsdUids = new Set(c.list('hybridserve.io', 'v1alpha1', 'hybridservedeployments').map((h) => h.metadata.uid));
  for (const [g, v, p] of [
    ['apps', 'v1', 'deployments'],
    ['', 'v1', 'configmaps'],
    ['', 'v1', 'services'],
  ] as const) {
    for (const o of c.list(g, v, p, undefined, 'app.kubernetes.io/managed-by=hybridserve-operator')) {
      const ctl = o.metadata.ownerReferences.filter((r: Obj) => r.controller);
      expect(ctl).toHaveLength(1);
      expect(hsdUids.has(ctl[0].uid)).toBe(true);
    }
  }
}

async function converged(c: TestCluster, name: string, replicas: number): Promise<Obj> {
  return waitFor(
    `${name} converged at ${replicas} replicas`,
    () => {
      const h = c.hsd(name);
      const pods = c.list('', 'v1', 'pods', 'default', `app.kubernetes.io/instance=${name}`).length;
      return (
        h &&
        cond(h, 'Ready')?.status === 'True' &&
        h.status.observedGeneration === h.metadata.generation &&
        h.status.replicas === replicas &&
        h.status.readyReplicas === replicas &&
        pods === replicas &&
        h
      );
    },
    20_000,
    25,
  );
}

async function cleanRun(spec: Obj, replicas: number): Promise<Obj> {
  const c = await new TestCluster().start(NODES, { mode: 'fake' });
  const op = new Operator(opts(c.url));
  await op.start();
  try {
    c.createHsd({ metadata: { name: 'svc' }, spec });
    await converged(c, 'svc', replicas);
    await op.idle();
    return snapshot(c, 'svc');
  } finally {
    await op.stop();
    await c.stop();
  }
}

describe('operator under faults', () => {
  test('conflicts, 500s, dropped watches, 410 Gone, a restart mid-reconcile and a dead pod converge like a clean run', async () => {
    const finalSpec = { ...SPEC, replicas: 4 };
    const expected = await cleanRun(finalSpec, 4);

    const c = await new TestCluster().start(NODES, { mode: 'fake' });
    let op = new Operator(opts(c.url, { identity: 'first' }));
    try {
      // 409s on status writes and finalizer patches, 500s on applies.
      c.api.injectFault({ method: 'PATCH', pathIncludes: '/hybridservedeployments/svc/status', status: 409, count: 3 });
      c.api.injectFault({ method: 'PATCH', pathIncludes: '/deployments/', status: 500, count: 3 });
      // (Plan ConfigMaps are read from the informer cache; their writes fail instead.)
      c.api.injectFault({ method: 'PATCH', pathIncludes: '/configmaps/', status: 500, count: 2 });
      c.api.injectFault({ method: 'PATCH', pathIncludes: '/hybridservedeployments/svc', status: 409, count: 1 });
      await op.start();
      c.createHsd({ metadata: { name: 'svc' }, spec: SPEC });
      await converged(c, 'svc', 3);
      expect(c.api.pendingFaults()).toBe(0);
      expect(await op.metrics.reconcileErrors.get().then((m) => m.values[0]?.value ?? 0)).toBeGreaterThan(0);

      // Dropped watches and compaction (the informers get 410 Gone and relist), then a change made
      // through the scale subresource while the watches are down.
      const listsBefore = c.api.requestCounts.get('GET nodes list') ?? 0;
      c.api.dropWatches();
      c.api.compact();
      const client = new KubeClient(loadKubeConfig({ server: c.url }));
      await client.mergePatch({ type: R.hsd, namespace: 'default', name: 'svc', subresource: 'scale' }, { spec: { replicas: 5 } });
      await converged(c, 'svc', 5);
      await waitFor('informers relisted after 410 Gone', () => (c.api.requestCounts.get('GET nodes list') ?? 0) > listsBefore, 10_000);

      // Operator restart mid-reconcile: a change lands, the first operator dies while its applies
      // fail, a second one (new identity) takes the Lease and finishes.
      c.api.injectFault({ method: 'PATCH', pathIncludes: '/deployments/', status: 500, count: 2 });
      await client.mergePatch({ type: R.hsd, namespace: 'default', name: 'svc', subresource: 'scale' }, { spec: { replicas: 4 } });
      await new Promise((r) => setTimeout(r, 30));
      await op.stop();
      op = new Operator(opts(c.url, { identity: 'second' }));
      await op.start();
      await converged(c, 'svc', 4);

      // A pod dies (deleted): the double's Deployment controller replaces it; status dips and recovers.
      const victim = c.list('', 'v1', 'pods', 'default', 'app.kubernetes.io/instance=svc')[0];
      c.api.remove(c.api.def('', 'v1', 'pods'), 'default', victim.metadata.name);
      await converged(c, 'svc', 4);
      expect(c.list('', 'v1', 'pods', 'default', 'app.kubernetes.io/instance=svc').map((p) => p.metadata.name)).not.toContain(
        victim.metadata.name,
      );

      await op.idle();
      expect(snapshot(c, 'svc')).toEqual(expected);
      assertNoOrphans(c);
      const lease = c.list('coordination.k8s.io', 'v1', 'leases', 'default')[0];
      expect(lease.spec.holderIdentity).toBe('second');
    } finally {
      await op.stop();
      await c.stop();
    }
  }, 60_000);

  test('deleting the HSD removes the finalizer and garbage-collects every child', async () => {
    const c = await new TestCluster().start(NODES, { mode: 'fake' });
    const op = new Operator(opts(c.url));
    await op.start();
    try {
      c.createHsd({ metadata: { name: 'gone' }, spec: SPEC });
      await converged(c, 'gone', 3);
      expect(c.hsd('gone')!.metadata.finalizers).toEqual(['hybridserve.io/finalizer']);
      c.api.remove(c.hsdDef, 'default', 'gone');
      await waitFor('HSD gone', () => c.hsd('gone') === undefined, 10_000);
      for (const [g, v, p] of [
        ['apps', 'v1', 'deployments'],
        ['', 'v1', 'configmaps'],
        ['', 'v1', 'services'],
        ['', 'v1', 'pods'],
      ] as const) {
        expect(c.list(g, v, p, 'default', 'app.kubernetes.io/instance=gone')).toHaveLength(0);
      }
    } finally {
      await op.stop();
      await c.stop();
    }
  }, 30_000);

  test('leader election: one of two operators leads; the other takes over when it stops', async () => {
    const c = await new TestCluster().start(NODES, { mode: 'fake' });
    const a = new Operator(opts(c.url, { identity: 'a' }));
    const b = new Operator(opts(c.url, { identity: 'b' }));
    try {
      await a.start();
      await waitFor('a leads', () => a.isLeader());
      await b.start();
      await new Promise((r) => setTimeout(r, 800));
      expect(b.isLeader()).toBe(false);
      await a.stop(); // releases the Lease
      await waitFor('b leads', () => b.isLeader(), 5000);
      c.createHsd({ metadata: { name: 'led' }, spec: { ...SPEC, replicas: 1 } });
      await converged(c, 'led', 1);
    } finally {
      await a.stop();
      await b.stop();
      await c.stop();
    }
  }, 30_000);

  test('losing the Lease stops reconciling without touching what exists', async () => {
    const c = await new TestCluster().start(NODES, { mode: 'fake' });
    const op = new Operator(opts(c.url, { identity: 'me' }));
    try {
      await op.start();
      c.createHsd({ metadata: { name: 'kept' }, spec: { ...SPEC, replicas: 2 } });
      await converged(c, 'kept', 2);
      const before = snapshot(c, 'kept');
      // Another replica takes the Lease (as after a network partition): we stop within leaseDuration.
      const leases = c.api.def('coordination.k8s.io', 'v1', 'leases');
      const holdOther = () =>
        c.api.update(leases, 'default', 'hybridserve-operator', (l) => {
          l.spec.holderIdentity = 'other';
          l.spec.renewTime = new Date().toISOString().replace('Z', '000Z');
          l.spec.leaseDurationSeconds = 60;
        });
      holdOther();
      await waitFor('leadership lost', () => !op.isLeader(), 5000);
      c.createHsd({ metadata: { name: 'ignored' }, spec: { ...SPEC, replicas: 1 } });
      await new Promise((r) => setTimeout(r, 600));
      expect(c.list('apps', 'v1', 'deployments', 'default', 'app.kubernetes.io/instance=ignored')).toHaveLength(0);
      expect(snapshot(c, 'kept')).toEqual(before);
    } finally {
      await op.stop();
      await c.stop();
    }
  }, 30_000);
});
