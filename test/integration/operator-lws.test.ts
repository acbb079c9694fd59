// Issue 15, acceptance 3, against the API TEST DOUBLE (test/k8s/apiserver.ts) with a running
// operator: an HSD with parallelism.nodes 2 yields a LeaderWorkerSet (size, resources, env); its
// status follows the group's readiness (not ready → ready → a worker fails); a cluster without
// the LWS API gives Degraded LeaderWorkerSetMissing without a retry storm; a node group that stops
// matching loses its LWS; the verbs used equal the RBAC granted; the CRD's minimal object
// still runs as a Deployment; the operator policy applies to LWS pods too. No LWS controller runs
// here: the test writes the LWS status as that controller would.
import { describe, test, expect, beforeAll, afterAll } from '@jest/globals';
import { Operator } from '../../operator/operator.js';
import { KubeClient, loadKubeConfig } from '../../operator/k8s/client.js';
import { R } from '../../operator/k8s/resources.js';
import { TestCluster, cond, waitFor } from '../k8s/cluster.js';
import type { Obj } from '../k8s/apiserver.js';
import { clusterRules } from '../../operator/rbac.js';

let c: TestCluster;
let client: KubeClient;
let op: Operator;
const NS = 'ml';
const H100 = 'NVIDIA-H100-80GB-HBM3';
const hsd = (name: string, spec: Obj): Obj => ({
  apiVersion: 'hybridserve.io/v1alpha1',
  kind: 'HybridServeDeployment',
  metadata: { name },
  spec,
});
const lwsList = (name: string) => c.list('leaderworkerset.x-k8s.io', 'v1', 'leaderworkersets', NS, `app.kubernetes.io/instance=${name}`);
const deps = (name: string) => c.list('apps', 'v1', 'deployments', NS, `app.kubernetes.io/instance=${name}`);
const untilCond = (name: string, type: string, pred: (x: Obj | undefined) => boolean) =>
  waitFor(`${name} ${type}`, () => {
    const x = c.hsd(name, NS);
    return pred(cond(x, type)) && x;
  });
/** Requests that reconcile made for named LWS objects (the informer's collection list/watch excluded). */
const namedLwsRequests = () =>
  [...c.api.requestCounts.entries()].filter(([k]) => /leaderworkersets\/[^ /]+( unserved)?$|^(GET|PATCH|DELETE) leaderworkersets$/.test(k));
const sumOf = (e: [string, number][]) => e.reduce((a, [, n]) => a + n, 0);

beforeAll(async () => {
  c = await new TestCluster().start(
    [
      { name: 'n1', product: H100, memory: '512Gi', gpus: 8, labels: { pool: 'a' } },
      { name: 'n2', product: H100, memory: '512Gi', gpus: 8, labels: { pool: 'a' } },
      { name: 'n3', product: H100, memory: '256Gi', gpus: 8, labels: { pool: 'b' } },
      { name: 'n4', product: H100, memory: '256Gi', gpus: 8, labels: { pool: 'b' } },
    ],
    { mode: 'fake' },
  );
  client = new KubeClient(loadKubeConfig({ server: c.url }));
  op = new Operator({
    server: c.url,
    leaseNamespace: NS,
    progressRequeueMs: 200,
    lwsWatchRetryMs: 200,
    log: () => undefined,
    policy: { allowedImages: ['ghcr.io/hybridserve/hybridserve:*'], allowPvc: true, allowSecrets: true },
  });
  await op.start();
}, 30_000);
afterAll(async () => {
  await op.stop();
  client.close();
  await c.stop();
});

describe('parallelism.nodes on the API test double', () => {
  test('without the LWS API: Degraded LeaderWorkerSetMissing, no Deployment, no retry storm, no reconcile error', async () => {
    await client.create(
      { type: R.hsd, namespace: NS },
      hsd('big', { model: { uri: 'synthetic:opt-13b' }, replicas: 2, parallelism: { nodes: 2 }, nodeSelector: { pool: 'a' } }),
    );
    const h = await untilCond('big', 'Degraded', (d) => d?.reason === 'LeaderWorkerSetMissing');
    expect(cond(h, 'Degraded')?.message).toMatch(/leaderworkerset\.x-k8s\.io\/v1/);
    expect(cond(h, 'Ready')).toMatchObject({ status: 'False', reason: 'LeaderWorkerSetMissing' });
    await op.idle();
    const before = sumOf(namedLwsRequests());
    await new Promise((r) => setTimeout(r, 1500)); // ~7 progress requeues if the operator kept retrying
    expect(sumOf(namedLwsRequests())).toBe(before);
    expect(deps('big')).toHaveLength(0);
    expect((await op.metrics.reconcileErrors.get()).values[0]?.value ?? 0).toBe(0);
  });

  test('with LWS installed: one LeaderWorkerSet of size 2, replicas = groups, resources and wiring in both templates', async () => {
    c.api.installLeaderWorkerSet();
    op.enqueueAll(); // what the periodic resync does
    const [l] = await waitFor('a LeaderWorkerSet', () => lwsList('big').length === 1 && lwsList('big'));
    expect(l.spec.replicas).toBe(2);
    expect(l.spec.startupPolicy).toBe('LeaderCreated');
    expect(l.spec.leaderWorkerTemplate.size).toBe(2);
    expect(l.metadata.ownerReferences[0]).toMatchObject({ kind: 'HybridServeDeployment', name: 'big', controller: true });
    const h = c.hsd('big', NS)!;
    for (const t of [l.spec.leaderWorkerTemplate.leaderTemplate, l.spec.leaderWorkerTemplate.workerTemplate]) {
      const ct = t.spec.containers[0];
      expect(ct.resources.limits['nvidia.com/gpu']).toBe('1');
      expect(Number(ct.args[ct.args.indexOf('--host-memory') + 1])).toBe(h.status.nodeGroups[0].hostMemoryBytes);
      const env = Object.fromEntries(ct.env.map((e: Obj) => [e.name, e.value ?? e.valueFrom]));
      expect(env.HYBRIDSERVE_RANK.fieldRef.fieldPath).toBe("metadata.labels['leaderworkerset.sigs.k8s.io/worker-index']");
      expect(env.HYBRIDSERVE_WORLD_SIZE).toBe('2');
      expect(ct.args[ct.args.indexOf('--leader-address') + 1]).toBe('$(LWS_LEADER_ADDRESS):29500');
      expect(t.spec.volumes.find((v: Obj) => v.name === 'plan').configMap.name).toBe(`${l.metadata.name}-plan`);
    }
    // The group's pods each plan 20 of OPT-13B's 40 layers.
    const cm = c.api.get(c.api.def('', 'v1', 'configmaps'), NS, `${l.metadata.name}-plan`)!;
    expect(JSON.parse(cm.data['plan.json']).reason).toMatch(/^pipeline of 2 stages/);
    expect(c.api.get(c.api.def('', 'v1', 'services'), NS, 'big')!.spec.selector['leaderworkerset.sigs.k8s.io/worker-index']).toBe('0');
    expect(deps('big')).toHaveLength(0);
    expect(cond(c.hsd('big', NS), 'Degraded')?.status).toBe('False');
  });

  test('status follows the group readiness: not ready → ready → a worker fails', async () => {
    const lwsDef = c.api.def('leaderworkerset.x-k8s.io', 'v1', 'leaderworkersets');
    const name = lwsList('big')[0].metadata.name;
    const setStatus = (readyReplicas: number, available: boolean) =>
      c.api.update(
        lwsDef,
        NS,
        name,
        (o) => {
          o.status = {
            replicas: 2,
            readyReplicas,
            conditions: [
              { type: 'Available', status: available ? 'True' : 'False' },
              { type: 'Progressing', status: available ? 'False' : 'True' },
            ],
          };
        },
        'status',
      );
    setStatus(0, false);
    let h = await untilCond('big', 'Ready', (r) => r?.reason === 'ReplicasNotReady');
    expect(h.status.readyReplicas).toBe(0);
    expect(cond(h, 'Progressing')?.status).toBe('True');

    setStatus(2, true);
    h = await untilCond('big', 'Ready', (r) => r?.status === 'True');
    expect(h.status.readyReplicas).toBe(2);
    expect(cond(h, 'Progressing')?.status).toBe('False');

    // A worker of one group fails: that whole group is not ready (LWS counts groups all-or-nothing).
    setStatus(1, false);
    h = await untilCond('big', 'Ready', (r) => r?.status === 'False');
    expect(h.status.readyReplicas).toBe(1);
    expect(cond(h, 'Ready')?.message).toBe('1/2 replicas ready');
  });

  test('a node group that no longer matches loses its LeaderWorkerSet and plan; the new group gets them', async () => {
    const old = lwsList('big')[0].metadata.name;
    await client.mergePatch({ type: R.hsd, namespace: NS, name: 'big' }, { spec: { nodeSelector: { pool: 'b' } } });
    const [l] = await waitFor('the LWS of the new group', () => {
      const ls = lwsList('big');
      return ls.length === 1 && ls[0].metadata.name !== old && ls;
    });
    expect(l.metadata.name).toMatch(/-256gi-/);
    // The same reconcile deletes the old group's plan, one API call after its LWS.
    await waitFor('the old plan deleted', () => c.api.get(c.api.def('', 'v1', 'configmaps'), NS, `${old}-plan`) === undefined);
  });

  test('the operator used exactly the LWS verbs its RBAC grants', () => {
    const verbs = new Set<string>();
    for (const [k] of c.api.requestCounts) {
      const m = /^(GET|PATCH|DELETE|POST|PUT) (\S*leaderworkersets\S*)(?: (list|watch|unserved))?$/.exec(k);
      if (!m) continue;
      const [, method, , kind] = m;
      if (method === 'GET') verbs.add(kind === 'watch' ? 'watch' : kind === 'list' ? 'list' : 'get');
      else if (method === 'PATCH')
        verbs.add('patch').add('create'); // server-side apply creates as well
      else verbs.add(method === 'DELETE' ? 'delete' : method === 'POST' ? 'create' : 'update');
    }
    const granted = clusterRules.find((r) => r.resources.includes('leaderworkersets'))!.verbs;
    expect([...verbs].sort()).toEqual([...granted].sort());
  });

  test('the policy applies to LWS pods too: a denied image gets no LeaderWorkerSet', async () => {
    await client.create(
      { type: R.hsd, namespace: NS },
      hsd('miner', { model: { uri: 'synthetic:opt-13b' }, image: 'evil.example/miner:1', parallelism: { nodes: 2 } }),
    );
    await untilCond('miner', 'Degraded', (d) => d?.reason === 'PolicyViolation');
    await op.idle();
    expect(lwsList('miner')).toHaveLength(0);
  });

  test("the CRD's minimal object still runs as Deployments (one per node group), Ready, with no LeaderWorkerSet", async () => {
    await client.create(
      { type: R.hsd, namespace: NS },
      hsd('small', { model: { uri: 'synthetic:opt-13b' }, replicas: 2, cache: { actFraction: 'auto' } }),
    );
    const h = await untilCond('small', 'Ready', (r) => r?.status === 'True');
    expect(h.spec.parallelism).toEqual({ nodes: 1 });
    // DESIGN.md §4's smallest object: one Deployment per node group (pools a and b), as before.
    expect(deps('small')).toHaveLength(2);
    expect(h.status.readyReplicas).toBe(2);
    expect(lwsList('small')).toHaveLength(0);
    expect(c.api.get(c.api.def('', 'v1', 'services'), NS, 'small')!.spec.selector).toEqual({
      'app.kubernetes.io/name': 'hybridserve',
      'app.kubernetes.io/instance': 'small',
    });
  });

  test('parallelism.nodes is immutable and at least 1', async () => {
    await expect(client.mergePatch({ type: R.hsd, namespace: NS, name: 'small' }, { spec: { parallelism: { nodes: 2 } } })).rejects.toThrow(
      /parallelism.nodes is immutable/,
    );
    await expect(
      client.create({ type: R.hsd, namespace: NS }, hsd('zero', { model: { uri: 'synthetic:opt-13b' }, parallelism: { nodes: 0 } })),
    ).rejects.toThrow(/nodes/);
  });

  test('parallelism.nodes > 1 with several GPUs per pod is refused at admission (the pods could not start)', async () => {
    for (const gpusPerPod of [2, 8]) {
      await expect(
        client.create(
          { type: R.hsd, namespace: NS },
          hsd(`multi-${gpusPerPod}`, { model: { uri: 'synthetic:opt-13b' }, gpusPerPod, parallelism: { nodes: 2 } }),
        ),
      ).rejects.toThrow(/parallelism.nodes > 1 needs gpusPerPod 1, or 0 for CPU pods/);
    }
    // CPU pods over nodes are valid: their stages talk TCP (native/src/pipeline/cpu_ranks.h).
    await client.create(
      { type: R.hsd, namespace: NS },
      hsd('cpu-groups', { model: { uri: 'synthetic:opt-13b' }, gpusPerPod: 0, parallelism: { nodes: 2 } }),
    );
    await client.delete({ type: R.hsd, namespace: NS, name: 'cpu-groups' });
    // gpusPerPod 2 with one node stays valid (a multi-GPU pipeline in one pod).
    await client.create(
      { type: R.hsd, namespace: NS },
      hsd('one-pod-two-gpus', { model: { uri: 'synthetic:opt-13b' }, gpusPerPod: 2, parallelism: { nodes: 1 } }),
    );
    await client.delete({ type: R.hsd, namespace: NS, name: 'one-pod-two-gpus' });
  });
});
