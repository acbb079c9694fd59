// What the operator's serving pods get, checked against what the server actually reads: the
// Deployment's container args and env are fed to the server's own parser (cli/serve.ts
// parseServeArgs, server/auth.ts loadApiKeys, model/spec.ts parseModelSpec), so a setting that the
// server ignores, or a flag it rejects, fails here. Also: the pod securityContext, the device per
// node group, pvc:// model mounts, CPU-only node groups and the simulated kubelet's argv rewrite.
import { describe, test, expect } from '@jest/globals';
import path from 'node:path';
import { parseServeArgs } from '../../cli/serve.js';
import { withoutPendingPipelineFlags } from './pipeline-flags.js';
import { loadApiKeys } from '../../server/auth.js';
import { resolveLimits } from '../../server/options.js';
import { parseModelSpec } from '../../model/spec.js';
import { presetConfig } from '../../model/presets.js';
import { groupNodes, CPU_PRODUCT, type NodeLike, type NodeGroup } from '../../operator/desired/node-groups.js';
import { deployment } from '../../operator/desired/objects.js';
import { planGroup } from '../../operator/desired/plan.js';
import { conditionsFor } from '../../operator/controller/reconcile.js';
import type { HybridServeDeployment, NodeGroupStatus } from '../../operator/api/types.js';
import { localEnv, localPaths, localSecretVolumes, localServeArgs } from '../k8s/kubelet.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { validateManifest, type Manifest } from './chart-helm.js';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const node = (name: string, product: string | undefined, memory: string, gpus = 1): NodeLike => ({
  metadata: {
    name,
    labels: product ? { 'nvidia.com/gpu.product': product, 'nvidia.com/gpu.count': String(gpus) } : { 'kubernetes.io/hostname': name },
  },
  status: {
    allocatable: { memory, cpu: '8', ...(product ? { 'nvidia.com/gpu': String(gpus) } : {}) },
    conditions: [{ type: 'Ready', status: 'True' }],
  },
});
const hsd = (spec: Partial<HybridServeDeployment['spec']> = {}): HybridServeDeployment => ({
  apiVersion: 'hybridserve.io/v1alpha1',
  kind: 'HybridServeDeployment',
  metadata: { name: 'demo', namespace: 'ml', uid: 'uid-1', generation: 1 },
  spec: { model: { uri: 'synthetic:opt-13b' }, ...spec },
});
const H100 = 'NVIDIA-H100-80GB-HBM3';

/** The Deployment of the HSD's first node group, planned as reconcile plans it. */
function podOf(h: HybridServeDeployment, nodes: NodeLike[]): { pod: Obj; container: Obj; group: NodeGroup } {
  const [group] = groupNodes(nodes, h.spec);
  expect(group).toBeDefined();
  const p = planGroup(h.spec, group);
  if (!p.ok) throw new Error(`plan failed: ${p.message}`);
  const d = deployment(h, group, p.plan, 1) as Obj;
  return { pod: d.spec.template.spec, container: d.spec.template.spec.containers[0], group };
}

/** The container's env as a kubelet would give it, with secretKeyRefs resolved from `secrets`. */
function envOf(container: Obj, secrets: Record<string, Record<string, string>> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const e of container.env ?? []) {
    if (e.value !== undefined) env[e.name] = e.value;
    const ref = e.valueFrom?.secretKeyRef;
    if (ref) env[e.name] = secrets[ref.name]?.[ref.key];
  }
  return env;
}

describe('serving pods are locked down (restricted Pod Security Standard)', () => {
  test('pod and container securityContext, read-only root with an emptyDir at /tmp', () => {
    for (const h of [hsd(), hsd({ gpusPerPod: 0 }), hsd({ model: { uri: 'pvc://weights/opt-13b', preset: 'opt-13b' } })]) {
      const { pod, container } = podOf(h, [node('a', H100, '512Gi'), node('c', undefined, '64Gi')]);
      expect(pod.securityContext).toEqual({
        runAsNonRoot: true,
        runAsUser: 65532,
        runAsGroup: 65532,
        fsGroup: 65532,
        seccompProfile: { type: 'RuntimeDefault' },
      });
      expect(container.securityContext).toMatchObject({
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
      });
      expect(container.securityContext.privileged).toBeUndefined();
      expect(pod.automountServiceAccountToken).toBe(false);
      // Every place the server may write is a volume: /tmp (HOME in the images) is an emptyDir,
      // and every other mount is read-only.
      const vols = new Map<string, Obj>(pod.volumes.map((v: Obj) => [v.name, v]));
      const tmp = container.volumeMounts.find((m: Obj) => m.mountPath === '/tmp');
      // Size-capped: a runaway writer gets the pod evicted instead of filling the node's disk.
      expect(vols.get(tmp.name)).toEqual({ name: tmp.name, emptyDir: { sizeLimit: '1Gi' } });
      for (const m of container.volumeMounts) if (m.mountPath !== '/tmp') expect(m.readOnly).toBe(true);
      for (const m of container.volumeMounts) expect(vols.has(m.name)).toBe(true);
    }
  });
});

describe('the Deployment is a valid apps/v1 Deployment (kubernetes-models schema)', () => {
  test('GPU, CPU and pvc:// variants validate', async () => {
    const variants: [HybridServeDeployment, NodeLike[]][] = [
      [hsd({ server: { apiKeySecretRef: { name: 's', key: 'k' }, maxTokens: 100 } }), [node('a', H100, '512Gi')]],
      [hsd({ gpusPerPod: 0 }), [node('c', undefined, '64Gi')]],
      [hsd({ model: { uri: 'pvc://w/m', preset: 'opt-13b' } }), [node('a', H100, '512Gi')]],
    ];
    for (const [h, nodes] of variants) {
      const [group] = groupNodes(nodes, h.spec);
      const p = planGroup(h.spec, group);
      if (!p.ok) throw new Error(p.message);
      expect(await validateManifest(deployment(h, group, p.plan, 1) as Manifest)).toEqual([]);
    }
  });
});

describe('the engine device follows gpusPerPod', () => {
  test('GPU groups run --device cuda with nvidia.com/gpu; gpusPerPod 0 runs --device cpu without it', () => {
    const gpu = podOf(hsd({ gpusPerPod: 2 }), [node('a', H100, '512Gi', 8)]);
    // gpusPerPod 2: one pod runs a two-stage pipeline over its GPUs.
    expect(gpu.container.args.join(' ')).toContain('--gpus 2');
    const cfg = parseServeArgs(withoutPendingPipelineFlags(gpu.container.args.slice(1)), envOf(gpu.container));
    expect(cfg !== 'help' && cfg.device).toBe('cuda');
    expect(gpu.container.resources.limits['nvidia.com/gpu']).toBe('2');
    expect(gpu.container.resources.requests['nvidia.com/gpu']).toBe('2');
    expect(envOf(gpu.container).HYBRIDSERVE_GPU_PRODUCT).toBe(H100);

    // gpusPerPod 0: on a labelled GPU node too, the pod runs the CPU engine and asks for no GPU.
    for (const nodes of [[node('a', H100, '512Gi')], [node('c', undefined, '64Gi')]]) {
      const cpu = podOf(hsd({ gpusPerPod: 0 }), nodes);
      const c = parseServeArgs(cpu.container.args.slice(1), envOf(cpu.container));
      expect(c !== 'help' && c.device).toBe('cpu');
      expect(cpu.container.resources.limits['nvidia.com/gpu']).toBeUndefined();
      expect(cpu.container.resources.requests['nvidia.com/gpu']).toBeUndefined();
      expect(envOf(cpu.container).HYBRIDSERVE_GPU_PRODUCT).toBeUndefined();
    }
  });
});

describe('pvc:// models', () => {
  test('the claim is mounted read-only at /models/<claim> and the server resolves the URI inside it', () => {
    const uri = 'pvc://llm-weights/opt/13b';
    const { pod, container } = podOf(hsd({ model: { uri, preset: 'opt-13b' } }), [node('a', H100, '512Gi')]);
    const env = envOf(container);
    // Set explicitly, so an image that sets another root cannot move the model away from the mount.
    expect(env.HYBRIDSERVE_MODEL_ROOT).toBe('/models');
    const cfg = parseServeArgs(container.args.slice(1), env);
    if (cfg === 'help') throw new Error('help');
    expect(cfg.model).toBe(uri);
    const spec = parseModelSpec(cfg.model, env);
    expect(spec).toEqual({ kind: 'checkpoint', spec: uri, dir: '/models/llm-weights/opt/13b' });
    // The resolved directory lies under a read-only mount of exactly that claim.
    const mount = container.volumeMounts.find((m: Obj) => spec.kind === 'checkpoint' && spec.dir.startsWith(m.mountPath + path.sep));
    expect(mount).toMatchObject({ mountPath: '/models/llm-weights', readOnly: true });
    expect(pod.volumes.find((v: Obj) => v.name === mount.name)).toEqual({
      name: mount.name,
      persistentVolumeClaim: { claimName: 'llm-weights', readOnly: true },
    });
  });

  test('no model volume for synthetic models; a bad claim name is an InvalidModel plan, never a pod', () => {
    const { pod, container } = podOf(hsd(), [node('a', H100, '512Gi')]);
    expect(pod.volumes.some((v: Obj) => v.persistentVolumeClaim)).toBe(false);
    expect(envOf(container).HYBRIDSERVE_MODEL_ROOT).toBeUndefined();
    const [group] = groupNodes([node('a', H100, '512Gi')], {});
    const bad = planGroup(hsd({ model: { uri: 'pvc://Bad_Claim/x', preset: 'opt-13b' } }).spec, group);
    expect(bad).toMatchObject({ ok: false, reason: 'InvalidModel' });
  });
});

describe('CPU-only clusters (gpusPerPod 0)', () => {
  const nodes = [node('k1', undefined, '64Gi'), node('k2', undefined, `${64 * 1024 + 5}Mi`), node('k3', undefined, '16Gi')];

  test('unlabelled nodes form cpu groups only when gpusPerPod is 0', () => {
    expect(groupNodes(nodes, {})).toHaveLength(0);
    expect(groupNodes(nodes, { gpusPerPod: 1 })).toHaveLength(0);
    const groups = groupNodes(nodes, { gpusPerPod: 0 });
    expect(groups.map((g) => [g.gpuProduct, g.cpu, g.allocatableMemoryBytes / 2 ** 30, g.nodeNames])).toEqual(
      expect.arrayContaining([
        [CPU_PRODUCT, true, 64, ['k1', 'k2']],
        [CPU_PRODUCT, true, 16, ['k3']],
      ]),
    );
    expect(groups).toHaveLength(2);
    for (const g of groups) expect(g.id).toMatch(/^cpu-\d+gi-[0-9a-f]{6}$/);
    // A node labelled with the product "cpu" is not merged with unlabelled ones.
    const odd = groupNodes([node('k1', undefined, '64Gi'), node('x', 'cpu', '64Gi')], { gpusPerPod: 0 });
    expect(new Set(odd.map((g) => g.id)).size).toBe(2);
  });

  test('planned without a GPU profile: ACT fraction 0 with a reason, host memory from allocatable, fixed', () => {
    const h = hsd({ gpusPerPod: 0, model: { uri: 'synthetic:opt-125m' } });
    const [big, small] = groupNodes(nodes, h.spec).sort((a, b) => b.allocatableMemoryBytes - a.allocatableMemoryBytes);
    const pb = planGroup(h.spec, big);
    const ps = planGroup(h.spec, small);
    if (!pb.ok || !ps.ok) throw new Error('cpu plan failed');
    expect(pb.plan.actFraction).toBe(0);
    expect(pb.file.actFraction).toBe(0);
    expect(pb.plan.reason).toMatch(/CPU/);
    expect(pb.retuneBounds).toEqual({ min: 0, max: 0 });
    expect(pb.plan.actBlocks).toBe(0);
    expect(pb.plan.kvBlocks).toBeGreaterThan(0);
    expect(pb.plan.maxBatch).toBeGreaterThan(0);
    expect(pb.plan.maxBatch).toBeLessThanOrEqual(64);
    // Host memory comes from allocatable: more allocatable, more host memory, never more than it.
    expect(pb.plan.hostMemoryBytes).toBeGreaterThan(ps.plan.hostMemoryBytes);
    expect(pb.plan.hostMemoryBytes).toBeLessThanOrEqual(big.allocatableMemoryBytes);
    expect(pb.plan.memoryLimitBytes).toBe(pb.plan.hostMemoryBytes);
    // An explicit budget wins, and one beyond the node is reported, not planned.
    const fixed = planGroup({ ...h.spec, cache: { hostMemory: { bytes: 4 * 2 ** 30 } } }, big);
    expect(fixed.ok && fixed.plan.hostMemoryBytes).toBe(4 * 2 ** 30);
    expect(planGroup({ ...h.spec, cache: { hostMemory: { bytes: 2 ** 40 } } }, big)).toMatchObject({
      ok: false,
      reason: 'HostMemoryExceedsNode',
    });
    // The pod: no GPU product in its node selector (the nodes have none), pinned by node names.
    const d = deployment(h, big, pb.plan, 1) as Obj;
    expect(d.spec.template.spec.nodeSelector).toEqual({});
    expect(
      d.spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0].values,
    ).toEqual(['k1', 'k2']);
  });

  test('a cpu group counts as converged (it is never retuned); the message of no nodes fits the mode', () => {
    const h = hsd({ gpusPerPod: 0 });
    const groups = groupNodes(nodes, h.spec);
    const groupStatus = groups.map((g) => ({ name: g.id, measured: { steps: 1 } }) as unknown as NodeGroupStatus);
    const converged = conditionsFor({ groups, failed: [], readyReplicas: 1, wanted: 1, rolling: false, groupStatus, spec: h.spec }).find(
      (c) => c.type === 'PlanConverged',
    );
    expect(converged).toMatchObject({ status: 'True', reason: 'Stable' });
    const none = conditionsFor({ groups: [], failed: [], readyReplicas: 0, wanted: 1, rolling: false, groupStatus: [], spec: h.spec }).find(
      (c) => c.type === 'Degraded',
    );
    expect(none?.message).not.toMatch(/gpu\.product/);
  });
});

describe('every HSD server/engine setting reaches the server', () => {
  test('limits, threads, port, API key, plan and host memory parse back to the spec values', () => {
    const h = hsd({
      server: { maxConcurrentRequests: 7, maxTokens: 1000, port: 9090, apiKeySecretRef: { name: 'keys', key: 'list' } },
      engine: { threads: 3, maxBatch: 5 },
    });
    const { pod, container, group } = podOf(h, [node('a', H100, '512Gi')]);
    const env = envOf(container, { keys: { list: 'k-one,k-two' } });
    // The Secret volume as a kubelet mounts it, in a temporary directory.
    const dir = mkdtempSync(path.join(tmpdir(), 'hs-pod-'));
    // One key per line (server/auth.ts: a key file, # comments allowed).
    const secret = { data: { list: Buffer.from('k-one\nk-two\n').toString('base64') } };
    const mounts = localSecretVolumes(pod.volumes, container, dir, (n) => (n === 'keys' ? secret : undefined));
    const cfg = parseServeArgs(localPaths(container.args, mounts).slice(1), env);
    if (cfg === 'help') throw new Error('help');
    expect(loadApiKeys(env, cfg.apiKeyFile)).toEqual(['k-one', 'k-two']);
    rmSync(dir, { recursive: true, force: true });
    expect(cfg.limits.maxQueue).toBe(7);
    expect(cfg.limits.maxTotalTokens).toBe(1000);
    expect(resolveLimits(cfg.limits, presetConfig('opt-13b')!.maxPositions).maxTotalTokens).toBe(1000);
    expect(cfg.threads).toBe(3);
    expect(cfg.port).toBe(9090);
    expect(container.ports[0].containerPort).toBe(9090);
    expect(env.HYBRIDSERVE_API_KEYS).toBeUndefined();
    // engine.maxBatch reaches the server through the plan file (server/context.ts applyPlan).
    const p = planGroup(h.spec, group);
    expect(p.ok && p.file.maxBatch).toBeLessThanOrEqual(5);
    expect(cfg.planFile).toBe('/etc/hybridserve/plan.json');
    expect(container.volumeMounts.find((m: Obj) => m.mountPath === '/etc/hybridserve')).toBeDefined();
    expect(cfg.hostMemoryBytes).toBe(p.ok && p.plan.hostMemoryBytes);
  });

  test('the schema bounds are ones the server accepts, so a valid HSD cannot crash-loop its pods', () => {
    for (const [server, engine] of [
      [{ maxConcurrentRequests: 1, maxTokens: 2 }, { threads: 1 }],
      [{ maxConcurrentRequests: 1048576, maxTokens: 2097152 }, { threads: 256 }],
    ] as const) {
      const { container } = podOf(hsd({ server, engine }), [node('a', H100, '512Gi')]);
      expect(() => parseServeArgs(container.args.slice(1), envOf(container))).not.toThrow();
    }
  });
});

describe('simulated kubelet (test double) runs the pod as written, on this CPU machine', () => {
  test('localServeArgs keeps the operator flags and maps cuda to cpu; localEnv resolves secrets', () => {
    const { container } = podOf(hsd({ server: { maxConcurrentRequests: 7, maxTokens: 1000 }, engine: { threads: 3 } }), [
      node('a', H100, '512Gi'),
    ]);
    expect(container.args).toEqual(expect.arrayContaining(['--device', 'cuda']));
    const argv = localServeArgs(container.args, { model: 'synthetic:opt-tiny', port: 4321, planFile: '/w/plan.json' });
    const cfg = parseServeArgs(argv.slice(1), {});
    if (cfg === 'help') throw new Error('help');
    expect(cfg).toMatchObject({
      model: 'synthetic:opt-tiny',
      device: 'cpu',
      host: '127.0.0.1',
      port: 4321,
      planFile: '/w/plan.json',
      threads: 3,
    });
    expect(cfg.hostMemoryBytes).toBeUndefined();
    expect(cfg.limits).toMatchObject({ maxQueue: 7, maxTotalTokens: 1000 });
    expect(parseServeArgs(localServeArgs(['serve', '--device=cpu'], { model: 'm', port: 1, planFile: 'f' }).slice(1), {})).toMatchObject({
      device: 'cpu',
      threads: 1,
    });

    const env = [
      { name: 'A', value: '1' },
      { name: 'HYBRIDSERVE_API_KEYS', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } },
    ];
    const secret = { data: { k: Buffer.from('key-1').toString('base64') } };
    expect(localEnv(env, '/w/plan.json', (n) => (n === 's' ? secret : undefined))).toEqual({
      A: '1',
      HYBRIDSERVE_API_KEYS: 'key-1',
      HYBRIDSERVE_PLAN_FILE: '/w/plan.json',
    });
    expect(() => localEnv(env, '/w/plan.json', () => undefined)).toThrow(/CreateContainerConfigError/);
  });
});

describe('issue 13: limits, probes, affinity and pass-through reach the pod', () => {
  test("acceptance 5: a zone nodeAffinity keeps the user's AND the group's terms; the pod has a startupProbe", () => {
    const zone = { key: 'topology.kubernetes.io/zone', operator: 'In', values: ['zone-a'] };
    const preferred = [{ weight: 1, preference: { matchExpressions: [{ key: 'ssd', operator: 'Exists' }] } }];
    const h = hsd({
      affinity: {
        nodeAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [zone] }] },
          preferredDuringSchedulingIgnoredDuringExecution: preferred,
        },
        podAntiAffinity: { x: 1 },
      },
    });
    const { pod, container, group } = podOf(h, [node('a', H100, '512Gi')]);
    const terms = pod.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms;
    expect(terms).toEqual([{ matchExpressions: [zone], matchFields: [{ key: 'metadata.name', operator: 'In', values: group.nodeNames }] }]);
    expect(pod.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution).toEqual(preferred);
    expect(pod.affinity.podAntiAffinity).toEqual({ x: 1 });
    // Two user terms (ORed): each gets the group's requirement.
    const two = podOf(
      hsd({
        affinity: {
          nodeAffinity: {
            requiredDuringSchedulingIgnoredDuringExecution: {
              nodeSelectorTerms: [{ matchExpressions: [zone] }, { matchExpressions: [{ ...zone, values: ['zone-b'] }] }],
            },
          },
        },
      }),
      [node('a', H100, '512Gi')],
    ).pod.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms;
    expect(two).toHaveLength(2);
    for (const t of two) expect(t.matchFields).toEqual([{ key: 'metadata.name', operator: 'In', values: group.nodeNames }]);
    // The startupProbe waits for the model load: opt-13b's ~26 GB at 100 MB/s plus 120 s.
    expect(container.startupProbe).toMatchObject({ httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 10 });
    expect(container.startupProbe.failureThreshold * 10).toBeGreaterThanOrEqual(120 + 250);
    expect(podOf(hsd({ server: { startupSeconds: 45 } }), [node('a', H100, '512Gi')]).container.startupProbe.failureThreshold).toBe(5);
  });

  test('limits become --max-prompt-tokens/--max-total-tokens, omitted when unset; the server accepts them', () => {
    const { container } = podOf(hsd({ limits: { maxPromptTokens: 300, maxTotalTokens: 1000 } }), [node('a', H100, '512Gi')]);
    const cfg = parseServeArgs(container.args.slice(1), envOf(container));
    if (cfg === 'help') throw new Error('help');
    expect(cfg.limits).toMatchObject({ maxPromptTokens: 300, maxTotalTokens: 1000 });
    const bare = podOf(hsd(), [node('a', H100, '512Gi')]).container.args.join(' ');
    expect(bare).not.toMatch(/--max-prompt-tokens|--max-total-tokens/);
  });

  test('CPU request, pull secrets, priority, runtime class, spread, env, pod labels and annotations pass through', () => {
    const spread = [{ maxSkew: 1, topologyKey: 'kubernetes.io/hostname', whenUnsatisfiable: 'ScheduleAnyway' }];
    const h = hsd({
      server: { cpuRequest: '2' },
      pod: {
        annotations: { 'a/b': 'c' },
        labels: { team: 'ml', 'app.kubernetes.io/instance': 'hijack' },
        imagePullSecrets: [{ name: 'reg' }],
        priorityClassName: 'high',
        runtimeClassName: 'nvidia',
        topologySpreadConstraints: spread,
        env: [
          { name: 'FOO', value: 'bar' },
          { name: 'HYBRIDSERVE_PLAN_FILE', value: '/evil' },
        ],
      },
    });
    const [group] = groupNodes([node('a', H100, '512Gi')], h.spec);
    const p = planGroup(h.spec, group);
    if (!p.ok) throw new Error(p.message);
    const d = deployment(h, group, p.plan, 1) as Obj;
    const pod = d.spec.template.spec;
    const c = pod.containers[0];
    expect(c.resources.requests.cpu).toBe('2');
    expect(pod).toMatchObject({
      imagePullSecrets: [{ name: 'reg' }],
      priorityClassName: 'high',
      runtimeClassName: 'nvidia',
      topologySpreadConstraints: spread,
    });
    expect(c.env).toContainEqual({ name: 'FOO', value: 'bar' });
    expect(c.env.filter((e: Obj) => e.name === 'HYBRIDSERVE_PLAN_FILE')).toEqual([
      { name: 'HYBRIDSERVE_PLAN_FILE', value: '/etc/hybridserve/plan.json' },
    ]);
    expect(d.spec.template.metadata.annotations).toEqual({ 'a/b': 'c' });
    // The operator's labels win: a user label cannot move the pod out of the selector.
    expect(d.spec.template.metadata.labels).toMatchObject({ team: 'ml', 'app.kubernetes.io/instance': 'demo' });
    expect(podOf(hsd({ gpusPerPod: 0, engine: { threads: 4 } }), [node('c', undefined, '64Gi')]).container.resources.requests.cpu).toBe(
      '4',
    );
  });
});
