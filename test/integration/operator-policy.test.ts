// Issue 12 item 9 (acceptance 4, the operator part) and issue 13 on the API test double: a denied
// image gives a Degraded HSD and no Deployment; PVCs and Secrets follow the policy; with
// watchNamespaces the operator leaves other namespaces alone; the smallest HSD of DESIGN.md §4
// keeps working with the new fields defaulted; quantities, limits, PDB and NetworkPolicy arrive.
import { describe, test, expect, beforeAll, afterAll } from '@jest/globals';
import { Operator } from '../../operator/operator.js';
import { KubeClient, loadKubeConfig } from '../../operator/k8s/client.js';
import { R } from '../../operator/k8s/resources.js';
import { TestCluster, cond, waitFor } from '../k8s/cluster.js';
import type { Obj } from '../k8s/apiserver.js';

let c: TestCluster;
let client: KubeClient;
let op: Operator;
const hsd = (name: string, spec: Obj): Obj => ({
  apiVersion: 'hybridserve.io/v1alpha1',
  kind: 'HybridServeDeployment',
  metadata: { name },
  spec,
});
const deps = (ns: string, name: string) => c.list('apps', 'v1', 'deployments', ns, `app.kubernetes.io/instance=${name}`);
const ALLOWED = 'ghcr.io/hybridserve/hybridserve:0.1.0';

beforeAll(async () => {
  c = await new TestCluster().start([{ name: 'h100', product: 'NVIDIA-H100-80GB-HBM3', memory: '512Gi', gpus: 8 }], { mode: 'fake' });
  client = new KubeClient(loadKubeConfig({ server: c.url }));
  op = new Operator({
    server: c.url,
    leaseNamespace: 'team-a',
    progressRequeueMs: 300,
    log: () => undefined,
    watchNamespaces: ['team-a'],
    policy: { allowedImages: ['ghcr.io/hybridserve/hybridserve:*'], allowPvc: false, allowSecrets: false },
  });
  await op.start();
});
afterAll(async () => {
  await op.stop();
  await c.stop();
});

describe('operator policy for HSDs', () => {
  test('a denied image gives Degraded (PolicyViolation) and no Deployment; an allowed one then deploys', async () => {
    await client.create(
      { type: R.hsd, namespace: 'team-a' },
      hsd('miner', { model: { uri: 'synthetic:opt-13b' }, image: 'evil.example/miner:1' }),
    );
    const h = await waitFor(
      'Degraded',
      () => {
        const x = c.hsd('miner', 'team-a');
        return cond(x, 'Degraded')?.status === 'True' && x;
      },
      10_000,
    );
    expect(cond(h, 'Degraded')).toMatchObject({ reason: 'PolicyViolation' });
    expect(cond(h, 'Degraded')?.message).toMatch(/image 'evil\.example\/miner:1' matches none of the allowed patterns/);
    expect(cond(h, 'Ready')?.status).toBe('False');
    await new Promise((r) => setTimeout(r, 300));
    expect(deps('team-a', 'miner')).toHaveLength(0);
    expect(c.list('', 'v1', 'configmaps', 'team-a', 'app.kubernetes.io/instance=miner')).toHaveLength(0);
    await client.mergePatch({ type: R.hsd, namespace: 'team-a', name: 'miner' }, { spec: { image: ALLOWED } });
    await waitFor('a Deployment', () => deps('team-a', 'miner').length === 1, 10_000);
    expect((await op.metrics.reconcileErrors.get()).values[0]?.value ?? 0).toBe(0);
  });

  test('PVC models and Secret references are refused when the policy forbids them', async () => {
    await client.create(
      { type: R.hsd, namespace: 'team-a' },
      hsd('sneaky', {
        model: { uri: 'pvc://weights/opt-13b', preset: 'opt-13b' },
        server: { apiKeySecretRef: { name: 'db', key: 'password' } },
        pod: { env: [{ name: 'X', valueFrom: { secretKeyRef: { name: 'db', key: 'password' } } }] },
      }),
    );
    const h = await waitFor(
      'Degraded',
      () => {
        const x = c.hsd('sneaky', 'team-a');
        return cond(x, 'Degraded')?.status === 'True' && x;
      },
      10_000,
    );
    expect(cond(h, 'Degraded')?.message).toMatch(/PersistentVolumeClaim.*apiKeySecretRef.*pod\.env X/);
    expect(deps('team-a', 'sneaky')).toHaveLength(0);
  });
});

describe('watchNamespaces', () => {
  test('an HSD outside the watched namespaces is not touched', async () => {
    await client.create({ type: R.hsd, namespace: 'team-b' }, hsd('elsewhere', { model: { uri: 'synthetic:opt-13b' } }));
    await client.create({ type: R.hsd, namespace: 'team-a' }, hsd('here', { model: { uri: 'synthetic:opt-13b' } }));
    await waitFor('the watched one deploys', () => deps('team-a', 'here').length === 1, 10_000);
    await new Promise((r) => setTimeout(r, 300));
    expect(deps('team-b', 'elsewhere')).toHaveLength(0);
    expect(c.hsd('elsewhere', 'team-b')?.status).toBeUndefined();
    expect(c.hsd('elsewhere', 'team-b')?.metadata.finalizers).toBeUndefined();
  });
});

describe('new CRD fields (issue 13) on the smallest object and beyond', () => {
  test('the smallest HSD of DESIGN.md §4 is Ready with every default, status.url set', async () => {
    await client.create(
      { type: R.hsd, namespace: 'team-a' },
      hsd('demo', { model: { uri: 'synthetic:opt-13b' }, replicas: 2, cache: { actFraction: 'auto' } }),
    );
    const h = await waitFor(
      'Ready',
      () => {
        const x = c.hsd('demo', 'team-a');
        return cond(x, 'Ready')?.status === 'True' && x;
      },
      10_000,
    );
    expect(h.status.url).toBe('http://demo.team-a.svc:8000');
    expect(h.status.replicas).toBe(2);
    const pod = deps('team-a', 'demo')[0].spec.template.spec;
    expect(pod.containers[0].startupProbe).toBeDefined();
    expect(pod.containers[0].args.join(' ')).not.toMatch(/--max-(prompt|total)-tokens/);
    expect(c.list('policy', 'v1', 'poddisruptionbudgets', 'team-a')).toHaveLength(0);
  });

  test('hostMemory as a quantity, limits, slo, a PDB and a NetworkPolicy', async () => {
    await client.create(
      { type: R.hsd, namespace: 'team-a' },
      hsd('full', {
        model: { uri: 'synthetic:opt-13b' },
        cache: { hostMemory: '48Gi' },
        limits: { maxPromptTokens: 300, maxTotalTokens: 1000 },
        slo: { tpotSeconds: 0.2 },
        podDisruptionBudget: { enabled: true },
        networkPolicy: { enabled: true },
      }),
    );
    const h = await waitFor(
      'planned',
      () => {
        const x = c.hsd('full', 'team-a');
        return x?.status?.nodeGroups?.length && x;
      },
      10_000,
    );
    expect(h.status.nodeGroups[0].hostMemoryBytes).toBe(48 * 2 ** 30);
    const args = deps('team-a', 'full')[0].spec.template.spec.containers[0].args.join(' ');
    expect(args).toContain('--max-prompt-tokens 300 --max-total-tokens 1000');
    const pdb = await waitFor('PDB', () => c.list('policy', 'v1', 'poddisruptionbudgets', 'team-a')[0], 5000);
    expect(pdb.spec).toMatchObject({ maxUnavailable: 1, selector: { matchLabels: { 'app.kubernetes.io/instance': 'full' } } });
    const np = await waitFor('NetworkPolicy', () => c.list('networking.k8s.io', 'v1', 'networkpolicies', 'team-a')[0], 5000);
    expect(np.spec.ingress[0].ports).toEqual([{ protocol: 'TCP', port: 8000 }]);
    expect(np.spec.ingress[0].from).toContainEqual({ podSelector: {} });
    // Disabling removes it again.
    await client.mergePatch({ type: R.hsd, namespace: 'team-a', name: 'full' }, { spec: { podDisruptionBudget: { enabled: false } } });
    await waitFor('PDB removed', () => c.list('policy', 'v1', 'poddisruptionbudgets', 'team-a').length === 0, 5000);
  });

  test('a malformed hostMemory quantity is rejected by the API', async () => {
    await expect(
      client.create(
        { type: R.hsd, namespace: 'team-a' },
        hsd('badmem', { model: { uri: 'synthetic:opt-13b' }, cache: { hostMemory: 'lots' } }),
      ),
    ).rejects.toThrow(/hostMemory must be a quantity/);
    await expect(
      client.create({ type: R.hsd, namespace: 'team-a' }, hsd('badslo', { model: { uri: 'synthetic:opt-13b' }, slo: { tpotSeconds: 0 } })),
    ).rejects.toThrow(/tpotSeconds must be > 0/);
  });
});
