// Acceptance 4 of issue 6: invalid HSDs are rejected by the CRD schema or its CEL rules (enforced by
// the API test double from the generated CRD), or reported in a Degraded condition with a clear
// message; never a crash loop (no reconcile errors, no retry storm).
import { describe, test, expect, beforeAll, afterAll } from '@jest/globals';
import { Operator } from '../../operator/operator.js';
import { KubeClient, loadKubeConfig } from '../../operator/k8s/client.js';
import { ApiError } from '../../operator/k8s/errors.js';
import { R } from '../../operator/k8s/resources.js';
import { TestCluster, cond, waitFor } from '../k8s/cluster.js';
import type { Obj } from '../k8s/apiserver.js';

let c: TestCluster;
let client: KubeClient;
const hsd = (name: string, spec: Obj): Obj => ({
  apiVersion: 'hybridserve.io/v1alpha1',
  kind: 'HybridServeDeployment',
  metadata: { name },
  spec,
});

async function rejected(body: Obj): Promise<ApiError> {
  try {
    await client.create({ type: R.hsd, namespace: 'default' }, body);
  } catch (e) {
    return e as ApiError;
  }
  throw new Error(`${body.metadata.name} was accepted`);
}

beforeAll(async () => {
  c = await new TestCluster().start(
    [
      { name: 'h100', product: 'NVIDIA-H100-80GB-HBM3', memory: '64Gi' },
      { name: 'mystery', product: 'ACME-QuantumGPU-9000', memory: '64Gi', labels: { pool: 'mystery' } },
    ],
    { mode: 'fake' },
  );
  client = new KubeClient(loadKubeConfig({ server: c.url }));
});
afterAll(async () => {
  await c.stop();
});

describe('schema and CEL rejections at the API', () => {
  test('the smallest object of DESIGN.md §4 is valid and defaulted', async () => {
    const o = await client.create<Obj>(
      { type: R.hsd, namespace: 'default' },
      hsd('smallest', { model: { uri: 'synthetic:opt-13b' }, replicas: 2, cache: { actFraction: 'auto' } }),
    );
    expect(o.spec.cache.blockTokens).toBe(16);
    expect(o.spec.gpusPerPod).toBe(1);
    expect(o.spec.cache.retune.intervalSeconds).toBe(30);
    await client.delete({ type: R.hsd, namespace: 'default', name: 'smallest' });
  });

  test.each([
    [
      'fraction 1.5',
      { model: { uri: 'synthetic:opt-tiny' }, cache: { actFraction: 1.5 } },
      /actFraction must be "auto" or a number in \[0, 1\]/,
    ],
    ['fraction "half"', { model: { uri: 'synthetic:opt-tiny' }, cache: { actFraction: 'half' } }, /actFraction must be "auto"/],
    [
      'autoscaling min > max',
      { model: { uri: 'synthetic:opt-tiny' }, autoscaling: { enabled: true, minReplicas: 5, maxReplicas: 2 } },
      /minReplicas must be <= maxReplicas/,
    ],
    [
      'retune min > max',
      { model: { uri: 'synthetic:opt-tiny' }, cache: { retune: { minActFraction: 0.8, maxActFraction: 0.2 } } },
      /minActFraction must be <= maxActFraction/,
    ],
    ['negative replicas', { model: { uri: 'synthetic:opt-tiny' }, replicas: -1 }, /replicas must be >= 0/],
    ['no model', { replicas: 1 }, /must have required property 'model'/],
  ])('%s is rejected with 422', async (_name, spec, message) => {
    const e = await rejected(hsd(`bad-${Math.random().toString(16).slice(2, 8)}`, spec));
    expect(e).toBeInstanceOf(ApiError);
    expect(e.code).toBe(422);
    expect(e.message).toMatch(message);
  });

  test('a name longer than 63 characters is rejected (it becomes a label value)', async () => {
    const e = await rejected(hsd('n'.repeat(64), { model: { uri: 'synthetic:opt-tiny' } }));
    expect(e.code).toBe(422);
    expect(e.message).toMatch(/at most 63 characters/);
  });

  test('blockTokens and gpusPerPod are immutable (CEL transition rule on oldSelf)', async () => {
    await client.create(
      { type: R.hsd, namespace: 'default' },
      hsd('immut', { model: { uri: 'synthetic:opt-tiny' }, cache: { blockTokens: 16 } }),
    );
    await expect(
      client.mergePatch({ type: R.hsd, namespace: 'default', name: 'immut' }, { spec: { cache: { blockTokens: 32 } } }),
    ).rejects.toThrow(/blockTokens is immutable/);
    await expect(client.mergePatch({ type: R.hsd, namespace: 'default', name: 'immut' }, { spec: { gpusPerPod: 2 } })).rejects.toThrow(
      /gpusPerPod is immutable/,
    );
    const ok = await client.mergePatch<Obj>({ type: R.hsd, namespace: 'default', name: 'immut' }, { spec: { replicas: 3 } });
    expect(ok.spec.replicas).toBe(3);
    await client.delete({ type: R.hsd, namespace: 'default', name: 'immut' });
  });
});

describe('specs the schema cannot judge end in Degraded, not a crash loop', () => {
  let op: Operator;
  beforeAll(async () => {
    op = new Operator({ server: c.url, leaseNamespace: 'default', progressRequeueMs: 300, log: () => undefined });
    await op.start();
  });
  afterAll(async () => {
    await op.stop();
  });

  test.each([
    [
      'unknown GPU product',
      { model: { uri: 'synthetic:opt-tiny' }, nodeSelector: { pool: 'mystery' } },
      'UnknownGpuProduct',
      /unknown GPU product 'ACME-QuantumGPU-9000'/,
      undefined,
    ],
    [
      'host memory beyond the node',
      {
        model: { uri: 'synthetic:opt-tiny' },
        nodeSelector: { 'nvidia.com/gpu.product': 'NVIDIA-H100-80GB-HBM3' },
        cache: { hostMemory: { bytes: 2 ** 40 } },
      },
      'HostMemoryExceedsNode',
      /host memory 1Ti exceeds what the node can give/,
      'False',
    ],
    ['unknown model preset', { model: { uri: 'synthetic:opt-999b' } }, 'InvalidModel', /unknown synthetic preset 'opt-999b'/, undefined],
    [
      'no matching nodes',
      { model: { uri: 'synthetic:opt-tiny' }, nodeSelector: { pool: 'none' } },
      'NoMatchingNodes',
      /no schedulable node/,
      undefined,
    ],
  ])('%s', async (name, spec, reason, message, hostMemFits) => {
    const n = `deg-${reason.toLowerCase()}`;
    await client.create({ type: R.hsd, namespace: 'default' }, hsd(n, spec));
    const h = await waitFor(
      `${name} Degraded`,
      () => {
        const x = c.hsd(n);
        return cond(x, 'Degraded')?.status === 'True' && x;
      },
      10_000,
    );
    expect(cond(h, 'Degraded')?.reason).toBe(reason);
    expect(cond(h, 'Degraded')?.message).toMatch(message);
    expect(cond(h, 'Ready')?.status).toBe('False');
    if (hostMemFits) expect(cond(h, 'HostMemoryFits')?.status).toBe(hostMemFits);
    expect(c.list('apps', 'v1', 'deployments', 'default', `app.kubernetes.io/instance=${n}`)).toHaveLength(0);
    const events = await waitFor(
      'a Warning event',
      () => {
        const e = c.list('events.k8s.io', 'v1', 'events', 'default').filter((x) => x.regarding.name === n && x.type === 'Warning');
        return e.length > 0 && e;
      },
      5000,
    );
    expect(events[0].reason).toBe(reason);
    // Not a crash loop: no failed reconciles, and at most a slow requeue afterwards.
    const before = (await op.metrics.reconciles.get()).values.reduce((a, v) => a + v.value, 0);
    await new Promise((r) => setTimeout(r, 700));
    const after = (await op.metrics.reconciles.get()).values.reduce((a, v) => a + v.value, 0);
    expect(after - before).toBeLessThanOrEqual(4);
    expect((await op.metrics.reconcileErrors.get()).values[0]?.value ?? 0).toBe(0);
    expect(op.isLeader()).toBe(true);
  });
});
