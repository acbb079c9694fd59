// The API test double (test/k8s/apiserver.ts) behaves as the operator tests assume, checked with
// client-node's own Watch and with the operator's KubeClient. Also the operator's health endpoint.
import { describe, test, expect, beforeEach, afterEach } from '@jest/globals';
import * as k8s from '@kubernetes/client-node';
import { Registry, Counter } from 'prom-client';
import { FakeApiServer, type Obj } from '../k8s/apiserver.js';
import { crdManifest } from '../../operator/api/schema.js';
import { KubeClient, loadKubeConfig } from '../../operator/k8s/client.js';
import { ConflictError, NotFoundError } from '../../operator/k8s/errors.js';
import { R } from '../../operator/k8s/resources.js';
import { startHealthServer } from '../../operator/controller/http.js';

let api: FakeApiServer;
let client: KubeClient;
let url: string;
const cm = (name: string, extra: Obj = {}) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, ...extra }, data: { a: '1' } });
const ref = (name: string) => ({ type: R.configMap, namespace: 'default', name });

beforeEach(async () => {
  api = new FakeApiServer();
  api.registerCrd(crdManifest());
  api.bookmarkIntervalMs = 50;
  url = await api.start();
  client = new KubeClient(loadKubeConfig({ server: url }));
});
afterEach(async () => {
  client.close();
  await api.stop();
});

describe('API test double', () => {
  test('discovery, CRUD, 404, 409 AlreadyExists and Conflict on a stale resourceVersion, no-op writes keep the RV', async () => {
    const groups = (await (await fetch(`${url}/apis`)).json()) as Obj;
    expect(groups.groups.map((g: Obj) => g.name)).toEqual(expect.arrayContaining(['apps', 'hybridserve.io', 'coordination.k8s.io']));
    const res = (await (await fetch(`${url}/apis/hybridserve.io/v1alpha1`)).json()) as Obj;
    expect(res.resources.map((r: Obj) => r.name)).toEqual(
      expect.arrayContaining(['hybridservedeployments', 'hybridservedeployments/status', 'hybridservedeployments/scale']),
    );
    const a = await client.create<Obj>({ type: R.configMap, namespace: 'default' }, cm('a'));
    await expect(client.create({ type: R.configMap, namespace: 'default' }, cm('a'))).rejects.toBeInstanceOf(ConflictError);
    await expect(client.get(ref('nope'))).rejects.toBeInstanceOf(NotFoundError);
    const b = await client.replace<Obj>(ref('a'), { ...a, data: { a: '2' } });
    await expect(client.replace(ref('a'), { ...a, data: { a: '3' } })).rejects.toThrow(/Conflict/);
    const same = await client.mergePatch<Obj>(ref('a'), { data: { a: '2' } });
    expect(same.metadata.resourceVersion).toBe(b.metadata.resourceVersion);
    const applied = await client.apply<Obj>(
      ref('a'),
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'a', namespace: 'default' }, data: { b: 'x' } },
      'me',
    );
    expect(applied.data).toEqual({ a: '2', b: 'x' });
    expect(applied.metadata.managedFields).toContainEqual({ manager: 'me', operation: 'Apply' });
  });

  test('status and scale subresources; generation bumps on spec changes only', async () => {
    const h = await client.create<Obj>(
      { type: R.hsd, namespace: 'default' },
      {
        apiVersion: 'hybridserve.io/v1alpha1',
        kind: 'HybridServeDeployment',
        metadata: { name: 'h' },
        spec: { model: { uri: 'synthetic:opt-tiny' }, replicas: 2 },
        status: { replicas: 99 },
      },
    );
    expect(h.status).toBeUndefined();
    const hr = { type: R.hsd, namespace: 'default', name: 'h' };
    const s = await client.mergePatch<Obj>({ ...hr, subresource: 'status' }, { status: { replicas: 2, selector: 'a=b' } });
    expect([s.status.replicas, s.metadata.generation]).toEqual([2, 1]);
    const ignored = await client.mergePatch<Obj>(hr, { status: { replicas: 7 } });
    expect(ignored.status.replicas).toBe(2);
    const scale = await client.get<Obj>({ ...hr, subresource: 'scale' });
    expect(scale).toMatchObject({ kind: 'Scale', spec: { replicas: 2 }, status: { replicas: 2, selector: 'a=b' } });
    await client.mergePatch({ ...hr, subresource: 'scale' }, { spec: { replicas: 5 } });
    const after = await client.get<Obj>(hr);
    expect([after.spec.replicas, after.metadata.generation]).toEqual([5, 2]);
  });

  test('leaderworkersets: 404 until installed, then CRUD, server-side apply, status only through /status', async () => {
    const lr = { type: R.leaderWorkerSet, namespace: 'default', name: 'g' };
    const body = {
      apiVersion: 'leaderworkerset.x-k8s.io/v1',
      kind: 'LeaderWorkerSet',
      metadata: { name: 'g', namespace: 'default' },
      spec: { replicas: 1, leaderWorkerTemplate: { size: 2 } },
      status: { readyReplicas: 9 },
    };
    await expect(client.apply(lr, body, 'me')).rejects.toBeInstanceOf(NotFoundError);
    await expect(client.list({ type: R.leaderWorkerSet, namespace: 'default' })).rejects.toBeInstanceOf(NotFoundError);
    api.installLeaderWorkerSet();
    const created = await client.apply<Obj>(lr, body, 'me');
    expect(created.status).toBeUndefined();
    expect(created.spec.leaderWorkerTemplate.size).toBe(2);
    const s = await client.mergePatch<Obj>({ ...lr, subresource: 'status' }, { status: { readyReplicas: 1, replicas: 1 } });
    expect(s.status.readyReplicas).toBe(1);
    const ignored = await client.mergePatch<Obj>(lr, { spec: { replicas: 2 }, status: { readyReplicas: 5 } });
    expect([ignored.spec.replicas, ignored.status.readyReplicas, ignored.metadata.generation]).toEqual([2, 1, 2]);
    expect((await client.list<Obj>({ type: R.leaderWorkerSet, namespace: 'default' })).items).toHaveLength(1);
    await client.delete(lr);
    await expect(client.get(lr)).rejects.toBeInstanceOf(NotFoundError);
  });

  test('finalizers hold deletion; ownerReference GC cascades', async () => {
    const owner = await client.create<Obj>({ type: R.configMap, namespace: 'default' }, cm('owner', { finalizers: ['x/y'] }));
    await client.create(
      { type: R.configMap, namespace: 'default' },
      cm('child', { ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: owner.metadata.uid, controller: true }] }),
    );
    await client.delete(ref('owner'));
    const held = await client.get<Obj>(ref('owner'));
    expect(held.metadata.deletionTimestamp).toBeTruthy();
    await client.get(ref('child'));
    await client.mergePatch(ref('owner'), { metadata: { finalizers: [] } });
    await expect(client.get(ref('owner'))).rejects.toBeInstanceOf(NotFoundError);
    await expect(client.get(ref('child'))).rejects.toBeInstanceOf(NotFoundError);
  });

  test('client-node Watch: events, bookmarks, 410 Gone after compaction; fault injection', async () => {
    const kc = loadKubeConfig({ server: url });
    const list = await client.list<Obj>({ type: R.configMap, namespace: 'default' });
    const seen: string[] = [];
    let done: unknown;
    const ctl = await new k8s.Watch(kc).watch(
      '/api/v1/namespaces/default/configmaps',
      { allowWatchBookmarks: true, resourceVersion: list.metadata.resourceVersion },
      (type) => seen.push(type),
      (err) => {
        done = err ?? 'closed';
      },
    );
    await client.create({ type: R.configMap, namespace: 'default' }, cm('w'));
    await new Promise((r) => setTimeout(r, 150));
    expect(seen).toContain('ADDED');
    expect(seen).toContain('BOOKMARK');
    api.compact();
    await new Promise((r) => setTimeout(r, 50));
    expect(done).toBeDefined();
    ctl.abort();
    const gone: Obj[] = [];
    await new k8s.Watch(kc).watch(
      '/api/v1/namespaces/default/configmaps',
      { resourceVersion: list.metadata.resourceVersion },
      (type, obj) => {
        if (type === 'ERROR') gone.push(obj);
      },
      () => undefined,
    );
    await new Promise((r) => setTimeout(r, 50));
    expect(gone[0]).toMatchObject({ code: 410, reason: 'Expired' });
    api.injectFault({ method: 'GET', status: 500, count: 1 });
    await expect(client.get(ref('w'))).rejects.toMatchObject({ code: 500 });
    await client.get(ref('w'));
  });
});

describe('operator health endpoint', () => {
  test('/metrics, /healthz and /readyz', async () => {
    const registry = new Registry();
    new Counter({ name: 'hybridserve_operator_reconciles_total', help: 'x', registers: [registry] }).inc();
    let ready = false;
    const h = await startHealthServer(0, '127.0.0.1', registry, { healthy: () => true, ready: () => ready });
    try {
      expect(await (await fetch(`http://127.0.0.1:${h.port}/metrics`)).text()).toContain('hybridserve_operator_reconciles_total 1');
      expect((await fetch(`http://127.0.0.1:${h.port}/healthz`)).status).toBe(200);
      expect((await fetch(`http://127.0.0.1:${h.port}/readyz`)).status).toBe(503);
      ready = true;
      expect((await fetch(`http://127.0.0.1:${h.port}/readyz`)).status).toBe(200);
    } finally {
      await h.close();
    }
  });
});
