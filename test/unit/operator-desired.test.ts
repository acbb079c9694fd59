import { describe, test, expect } from '@jest/globals';
import fc from 'fast-check';
import { groupNodes, splitReplicas, groupId, type NodeLike } from '../../operator/desired/node-groups.js';
import { configMap, deployment, deploymentName, configMapName, service, ownerReference } from '../../operator/desired/objects.js';
import { planGroup } from '../../operator/desired/plan.js';
import { parseQuantity, formatBytes } from '../../planning/quantity.js';
import { setConditions } from '../../operator/desired/conditions.js';
import { desiredReplicas } from '../../operator/desired/autoscale.js';
import type { HybridServeDeployment } from '../../operator/api/types.js';

const node = (name: string, product: string | undefined, memory: string, gpus = 1, extra: Partial<NodeLike> = {}): NodeLike => ({
  metadata: { name, labels: product ? { 'nvidia.com/gpu.product': product, 'nvidia.com/gpu.count': String(gpus) } : {} },
  status: {
    allocatable: { memory, ...(product ? { 'nvidia.com/gpu': String(gpus) } : {}) },
    conditions: [{ type: 'Ready', status: 'True' }],
  },
  ...extra,
});
const hsd = (spec: Partial<HybridServeDeployment['spec']> = {}, name = 'demo'): HybridServeDeployment => ({
  apiVersion: 'hybridserve.io/v1alpha1',
  kind: 'HybridServeDeployment',
  metadata: { name, namespace: 'ml', uid: 'uid-1', generation: 1 },
  spec: { model: { uri: 'synthetic:opt-13b' }, ...spec },
});

describe('quantities', () => {
  test('parse and format', () => {
    expect(parseQuantity('128Gi')).toBe(128 * 2 ** 30);
    expect(parseQuantity('64G')).toBe(64e9);
    expect(parseQuantity('1048576')).toBe(1048576);
    expect(parseQuantity('lots')).toBeUndefined();
    expect(formatBytes(1.5 * 2 ** 30)).toBe('1.5Gi');
  });
});

describe('node groups', () => {
  test('group by product and allocatable GiB; skip CPU, unready, cordoned and too-small nodes', () => {
    const nodes = [
      node('a', 'NVIDIA-H100-80GB-HBM3', '512Gi'),
      node('b', 'NVIDIA-H100-80GB-HBM3', `${512 * 1024 + 3}Mi`),
      node('c', 'NVIDIA-H100-80GB-HBM3', '256Gi'),
      node('d', 'NVIDIA-L4', '128Gi'),
      node('cpu', undefined, '64Gi'),
      node('cordoned', 'NVIDIA-L4', '128Gi', 1, { spec: { unschedulable: true } }),
      node('notready', 'NVIDIA-L4', '128Gi', 1, {
        status: { allocatable: { memory: '128Gi' }, conditions: [{ type: 'Ready', status: 'False' }] },
      }),
    ];
    const groups = groupNodes(nodes, {});
    expect(groups.map((g) => [g.gpuProduct, g.allocatableMemoryBytes / 2 ** 30, g.nodeNames])).toEqual(
      expect.arrayContaining([
        ['NVIDIA-H100-80GB-HBM3', 512, ['a', 'b']],
        ['NVIDIA-H100-80GB-HBM3', 256, ['c']],
        ['NVIDIA-L4', 128, ['d']],
      ]),
    );
    expect(groups).toHaveLength(3);
    expect(groupNodes(nodes, { gpusPerPod: 2 })).toHaveLength(0);
    expect(groupNodes(nodes, { nodeSelector: { 'nvidia.com/gpu.product': 'NVIDIA-L4' } }).map((g) => g.nodeNames)).toEqual([['d']]);
  });

  test('group ids are DNS labels and stable', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 80 }), fc.integer({ min: 0, max: 1 << 20 }), (p, m) => {
        const id = groupId(p, m);
        return /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(id) && id.length <= 40 && id === groupId(p, m);
      }),
    );
  });

  test('splitReplicas sums to the total, follows capacity and is stable', () => {
    expect(splitReplicas(5, [2, 2, 1])).toEqual([2, 2, 1]);
    expect(splitReplicas(3, [4, 2])).toEqual([2, 1]);
    expect(splitReplicas(0, [1, 1])).toEqual([0, 0]);
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 500 }),
        fc.array(fc.integer({ min: 0, max: 50 }), { minLength: 1, maxLength: 8 }),
        (t, caps) => {
          const s = splitReplicas(t, caps);
          return s.reduce((a, b) => a + b, 0) === t && s.every((x) => x >= 0);
        },
      ),
    );
  });
});

describe('desired objects', () => {
  const [group] = groupNodes([node('a', 'NVIDIA-H100-80GB-HBM3', '512Gi')], {});
  const h = hsd({
    replicas: 2,
    gpusPerPod: 1,
    tolerations: [{ key: 'gpu', operator: 'Exists' }],
    server: { apiKeySecretRef: { name: 's', key: 'k' } },
  });
  const plan = { memoryRequestBytes: 100 * 2 ** 30, memoryLimitBytes: 110 * 2 ** 30, hostMemoryBytes: 100 * 2 ** 30 };

  test('every child carries the managed-by label and one controller ownerReference', () => {
    for (const o of [deployment(h, group, plan, 2), service(h), configMap(h, group, { actFraction: 0.5 }, 'x')] as {
      metadata: Record<string, unknown>;
    }[]) {
      expect((o.metadata.labels as Record<string, string>)['app.kubernetes.io/managed-by']).toBe('hybridserve-operator');
      expect(o.metadata.ownerReferences).toEqual([ownerReference(h)]);
      expect(o.metadata.namespace).toBe('ml');
    }
    expect(ownerReference(h)).toMatchObject({ controller: true, blockOwnerDeletion: true, uid: 'uid-1', kind: 'HybridServeDeployment' });
  });

  test('the Deployment pins the group, requests planned memory, mounts the plan and never exceeds name limits', () => {
    const d = deployment(hsd({}, 'a'.repeat(63)), group, plan, 3) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    expect(d.metadata.name.length).toBeLessThanOrEqual(63);
    expect(d.spec.replicas).toBe(3);
    const pod = d.spec.template.spec;
    expect(pod.nodeSelector['nvidia.com/gpu.product']).toBe('NVIDIA-H100-80GB-HBM3');
    expect(pod.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0].values).toEqual([
      'a',
    ]);
    expect(pod.containers[0].resources.requests.memory).toBe(String(plan.memoryRequestBytes));
    expect(pod.containers[0].resources.limits['nvidia.com/gpu']).toBe('1');
    expect(pod.containers[0].args).toEqual(expect.arrayContaining(['serve', '--plan', '/etc/hybridserve/plan.json']));
    expect(pod.volumes[0].configMap.name).toBe(configMapName(hsd({}, 'a'.repeat(63)), group));
    const withKey = deployment(h, group, plan, 1) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    // The API key is a read-only file from the Secret (--api-key-file), never an env var.
    const keyPod = withKey.spec.template.spec;
    expect(JSON.stringify(keyPod.containers[0].env)).not.toMatch(/secretKeyRef|API_KEYS/);
    expect(keyPod.volumes).toContainEqual({
      name: 'api-key',
      secret: { secretName: 's', items: [{ key: 'k', path: 'keys' }], defaultMode: 0o440 },
    });
    expect(keyPod.containers[0].volumeMounts).toContainEqual({
      name: 'api-key',
      mountPath: '/var/run/hybridserve/api-key',
      readOnly: true,
    });
    expect(keyPod.containers[0].args.join(' ')).toContain('--api-key-file /var/run/hybridserve/api-key/keys');
    expect(withKey.spec.template.spec.tolerations).toEqual([{ key: 'gpu', operator: 'Exists' }]);
    const limited = deployment(
      hsd({ server: { maxConcurrentRequests: 32, maxTokens: 4096 }, engine: { threads: 8 } }),
      group,
      plan,
      1,
    ) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    expect(limited.spec.template.spec.containers[0].args.join(' ')).toMatch(/--max-queue 32 --max-total-tokens 4096 --threads 8$/);
    expect(deploymentName(h, group)).toMatch(/^demo-h100/);
    const long = (n: string) => deploymentName(hsd({}, n), group);
    expect(long('a-very-long-model-server-name-1')).not.toBe(long('a-very-long-model-server-name-2'));
    expect(long('a-very-long-model-server-name-1').length).toBeLessThanOrEqual(63);
  });

  test('planGroup: a plan for a known GPU, clear failures otherwise', () => {
    const ok = planGroup(h.spec, group);
    expect(ok.ok).toBe(true);
    if (ok.ok) {
      expect(ok.file.actFraction).toBeGreaterThanOrEqual(0);
      expect(ok.file.generation).toBe(1);
      expect(ok.plan.memoryRequestBytes).toBeLessThanOrEqual(group.allocatableMemoryBytes);
      expect(planGroup(h.spec, group).ok && (planGroup(h.spec, group) as typeof ok).inputHash).toBe(ok.inputHash);
      const other = planGroup({ ...h.spec, cache: { actFraction: 0.3 } }, group) as typeof ok;
      expect(other.inputHash).not.toBe(ok.inputHash);
      expect(other.file.actFraction).toBe(0.3);
    }
    const [odd] = groupNodes([node('x', 'ACME-9000', '64Gi')], {});
    expect(planGroup(h.spec, odd)).toMatchObject({ ok: false, reason: 'UnknownGpuProduct' });
    expect(planGroup({ ...h.spec, cache: { hostMemory: { bytes: 2 ** 41 } } }, group)).toMatchObject({
      ok: false,
      reason: 'HostMemoryExceedsNode',
    });
    expect(planGroup({ ...h.spec, model: { uri: 'pvc://models/opt' } }, group)).toMatchObject({ ok: false, reason: 'InvalidModel' });
    expect(planGroup({ ...h.spec, model: { uri: 'pvc://models/opt', preset: 'opt-13b' } }, group).ok).toBe(true);
  });
});

describe('conditions and autoscaling', () => {
  test('lastTransitionTime moves only when the status flips', () => {
    const a = setConditions(undefined, [{ type: 'Ready', status: 'False', reason: 'x', message: '' }], 't1', 1);
    const b = setConditions(a, [{ type: 'Ready', status: 'False', reason: 'y', message: 'm' }], 't2', 2);
    const c = setConditions(b, [{ type: 'Ready', status: 'True', reason: 'z', message: '' }], 't3', 2);
    expect([a[0].lastTransitionTime, b[0].lastTransitionTime, c[0].lastTransitionTime]).toEqual(['t1', 't1', 't3']);
    expect(b[0].observedGeneration).toBe(2);
  });

  test('operator autoscaler follows the metric within [min, max] with a tolerance band', () => {
    const spec = { enabled: true, minReplicas: 1, maxReplicas: 6, metric: 'queueDepth' as const, target: 4 };
    expect(desiredReplicas(spec, { current: 2, readyPods: 2, queueDepthPerPod: 8, tokensPerSecond: 0 }).replicas).toBe(4);
    expect(desiredReplicas(spec, { current: 2, readyPods: 2, queueDepthPerPod: 4.2, tokensPerSecond: 0 }).replicas).toBe(2);
    expect(desiredReplicas(spec, { current: 4, readyPods: 4, queueDepthPerPod: 0, tokensPerSecond: 0 }).replicas).toBe(1);
    expect(desiredReplicas(spec, { current: 4, readyPods: 4, queueDepthPerPod: 100, tokensPerSecond: 0 }).replicas).toBe(6);
    const tps = { ...spec, metric: 'tokensPerSecond' as const, target: 100 };
    expect(desiredReplicas(tps, { current: 2, readyPods: 2, queueDepthPerPod: 0, tokensPerSecond: 400 }).replicas).toBe(4);
  });
});
