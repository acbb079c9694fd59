// Issue 15 (operator half), pure parts: the stage split and per-stage plans (planning/stage-plan.ts),
// the LeaderWorkerSet an HSD with parallelism.nodes > 1 becomes, how its status reads as the HSD's
// readiness, the leader-only Service, and the exact RBAC for it.
import { describe, test, expect } from '@jest/globals';
import { splitLayers, planPodStages } from '../../planning/stage-plan.js';
import { presetConfig } from '../../model/presets.js';
import { cpuStartPlan } from '../../planning/start-plan.js';
import { groupNodes, type NodeLike } from '../../operator/desired/node-groups.js';
import { planGroup } from '../../operator/desired/plan.js';
import { leaderWorkerSet, leaderWorkerSetReadiness, servesHttp } from '../../operator/desired/lws.js';
import { deployment, networkPolicy, service } from '../../operator/desired/objects.js';
import { conditionsFor } from '../../operator/controller/reconcile.js';
import { clusterRules } from '../../operator/rbac.js';
import { parseServeArgs } from '../../cli/serve.js';
import type { HybridServeDeployment } from '../../operator/api/types.js';
import { withoutPendingPipelineFlags } from './pipeline-flags.js';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const H100 = 'NVIDIA-H100-80GB-HBM3';
const node = (name: string, memory: string, gpus: number): NodeLike => ({
  metadata: { name, labels: { 'nvidia.com/gpu.product': H100, 'nvidia.com/gpu.count': String(gpus) } },
  status: { allocatable: { memory, cpu: '32', 'nvidia.com/gpu': String(gpus) }, conditions: [{ type: 'Ready', status: 'True' }] },
});
const hsd = (spec: Partial<HybridServeDeployment['spec']> = {}): HybridServeDeployment => ({
  apiVersion: 'hybridserve.io/v1alpha1',
  kind: 'HybridServeDeployment',
  metadata: { name: 'big', namespace: 'ml', uid: 'uid-1', generation: 1 },
  spec: { model: { uri: 'synthetic:opt-13b' }, ...spec },
});
function planned(h: HybridServeDeployment, nodes: NodeLike[]) {
  const [group] = groupNodes(nodes, h.spec);
  const p = planGroup(h.spec, group);
  return { group, p };
}
function lwsOf(h: HybridServeDeployment, nodes: NodeLike[], replicas = 3): Obj {
  const { group, p } = planned(h, nodes);
  if (!p.ok) throw new Error(`plan failed: ${p.message}`);
  return leaderWorkerSet(h, group, p.plan, replicas) as Obj;
}
const envOf = (c: Obj) => Object.fromEntries((c.env as Obj[]).map((e) => [e.name, e.value ?? e.valueFrom]));

describe('stage split (planning/stage-plan.ts)', () => {
  test('layers split evenly, the remainder to the first stages, contiguous and complete', () => {
    expect(splitLayers(10, 3)).toEqual([
      { stage: 0, firstLayer: 0, layerCount: 4 },
      { stage: 1, firstLayer: 4, layerCount: 3 },
      { stage: 2, firstLayer: 7, layerCount: 3 },
    ]);
    expect(splitLayers(64, 4).map((r) => r.layerCount)).toEqual([16, 16, 16, 16]);
    expect(() => splitLayers(2, 3)).toThrow(/3 pipeline stages need at least 3 layers/);
    expect(() => splitLayers(8, 0)).toThrow(/integer ≥ 1/);
  });

  test('each stage gets its share of the pod memory and plans its own layers; the pod adds its stages up', () => {
    const model = presetConfig('opt-13b')!;
    const seen: { layers: number; bytes: number; placement: object }[] = [];
    const planStage = (m: typeof model, bytes: number, placement: object) => {
      seen.push({ layers: m.numLayers, bytes, placement });
      return cpuStartPlan({ model: m, hostMemoryBytes: bytes, blockTokens: 16, promptTokens: 512, genTokens: 128, gpuProduct: 'cpu' });
    };
    const whole = planPodStages({ model, pods: 1, stagesPerPod: 1, podHostMemoryBytes: 64 * 2 ** 30, planStage });
    const split = planPodStages({ model, pods: 2, stagesPerPod: 2, podHostMemoryBytes: 64 * 2 ** 30, planStage });
    // 40 layers / 4 stages; 64 GiB / 2 stages per pod; no GPU cache tier on a stage of a pipeline (the
    // engine's stages refuse one), and the one-stage pod's placement left to the planner.
    expect(seen[1]).toEqual({ layers: 10, bytes: 32 * 2 ** 30, placement: { gpuKvBlocks: 0 } });
    expect(seen[0].placement).toEqual({});
    expect(split.pod.hostMemoryBytes).toBe(2 * split.stage.hostMemoryBytes);
    expect(split.pod.memoryRequestBytes).toBe(2 * split.stage.memoryRequestBytes);
    // A pod holds half the layers (2 of 4 stages): its weights are about half the model's.
    expect(split.pod.weightBytes / whole.pod.weightBytes).toBeGreaterThan(0.45);
    expect(split.pod.weightBytes / whole.pod.weightBytes).toBeLessThan(0.62);
    expect(split.pod.reason).toMatch(/^pipeline of 4 stages \(2 pod\(s\) × 2\)/);
  });
});

describe('a pod with several GPUs (gpusPerPod 2) plans per stage', () => {
  test('no GPU cache tier in its plan file, where one GPU per pod gets one (the engine refuses it on a stage)', () => {
    const nodes = [node('a', '512Gi', 8)];
    const one = planned(hsd({ gpusPerPod: 1 }), nodes).p;
    const two = planned(hsd({ gpusPerPod: 2 }), nodes).p;
    if (!one.ok || !two.ok) throw new Error('plan failed');
    expect(one.plan.gpuKvBlocks).toBeGreaterThan(0);
    expect(two.plan.gpuKvBlocks).toBe(0);
    expect(two.file.gpuKvBlocks).toBe(0);
    expect(two.plan.reason).toMatch(/no GPU cache tier/);
  });
});

describe('an HSD with parallelism.nodes 2 plans per stage', () => {
  test('OPT-66B does not fit one 128 GiB node; over two nodes each pod plans half the layers', () => {
    const nodes = [node('a', '128Gi', 1), node('b', '128Gi', 1)];
    const one = planned(hsd({ model: { uri: 'synthetic:opt-66b' } }), nodes).p;
    expect(one.ok).toBe(false);
    const two = planned(hsd({ model: { uri: 'synthetic:opt-66b' }, parallelism: { nodes: 2 } }), nodes).p;
    if (!two.ok) throw new Error(two.message);
    expect(two.plan.numLayers).toBe(32); // 64 layers over 2 stages
    expect(two.plan.weightBytes).toBeLessThan(72e9);
    expect(two.plan.hostMemoryBytes).toBeLessThanOrEqual(128 * 2 ** 30);
  });

  test('the plan input hash changes with the pipeline shape, not for a single stage', () => {
    const nodes = [node('a', '512Gi', 8)];
    const h1 = planned(hsd(), nodes).p;
    const h2 = planned(hsd({ parallelism: { nodes: 2 } }), nodes).p;
    const h3 = planned(hsd({ parallelism: { nodes: 1 } }), nodes).p;
    if (!h1.ok || !h2.ok || !h3.ok) throw new Error('plan failed');
    expect(h2.inputHash).not.toBe(h1.inputHash);
    expect(h3.inputHash).toBe(h1.inputHash);
  });
});

describe('the LeaderWorkerSet of a node group', () => {
  const nodes = [node('a', '512Gi', 8), node('b', '512Gi', 8)];

  test('size = nodes, replicas = groups, LeaderCreated, resources and host memory from the stage plan', () => {
    const h = hsd({ parallelism: { nodes: 2 }, gpusPerPod: 1 });
    const { p } = planned(h, nodes);
    if (!p.ok) throw new Error(p.message);
    const l = lwsOf(h, nodes, 3);
    expect(l.apiVersion).toBe('leaderworkerset.x-k8s.io/v1');
    expect(l.kind).toBe('LeaderWorkerSet');
    expect(l.spec.replicas).toBe(3);
    expect(l.spec.startupPolicy).toBe('LeaderCreated');
    expect(l.spec.leaderWorkerTemplate.size).toBe(2);
    expect(l.spec.leaderWorkerTemplate.restartPolicy).toBe('RecreateGroupOnPodRestart');
    for (const t of [l.spec.leaderWorkerTemplate.leaderTemplate, l.spec.leaderWorkerTemplate.workerTemplate]) {
      const c = t.spec.containers[0];
      expect(c.resources.requests['nvidia.com/gpu']).toBe('1');
      expect(c.resources.limits['nvidia.com/gpu']).toBe('1');
      const hm = Number(c.args[c.args.indexOf('--host-memory') + 1]);
      expect(hm).toBe(p.plan.hostMemoryBytes);
      // One GPU per rank: no --gpus (the server refuses --gpus with --world-size > 1).
      expect(c.args).not.toContain('--gpus');
      // The pods of one group are spread over nodes.
      expect(t.spec.topologySpreadConstraints.at(-1)).toMatchObject({
        topologyKey: 'kubernetes.io/hostname',
        maxSkew: 1,
        whenUnsatisfiable: 'DoNotSchedule',
        matchLabelKeys: ['leaderworkerset.sigs.k8s.io/group-key'],
      });
      expect(t.spec.automountServiceAccountToken).toBe(false);
      expect(c.securityContext.readOnlyRootFilesystem).toBe(true);
    }
  });

  test('rank from the worker index, world size = nodes, leader address from LWS; the server parses them', () => {
    const h = hsd({
      parallelism: { nodes: 4 },
      pod: {
        env: [
          { name: 'HYBRIDSERVE_RANK', value: '7' },
          { name: 'HYBRIDSERVE_PIPELINE_TOKEN', value: 'mine' },
        ],
      },
    });
    const l = lwsOf(h, nodes.concat([node('c', '512Gi', 8), node('d', '512Gi', 8)]));
    for (const [role, t] of [
      ['leader', l.spec.leaderWorkerTemplate.leaderTemplate],
      ['worker', l.spec.leaderWorkerTemplate.workerTemplate],
    ] as const) {
      const c = t.spec.containers[0];
      const env = envOf(c);
      // The user's env cannot override the operator's wiring.
      expect((c.env as Obj[]).filter((e) => e.name === 'HYBRIDSERVE_RANK')).toHaveLength(1);
      expect(env.HYBRIDSERVE_RANK).toEqual({ fieldRef: { fieldPath: "metadata.labels['leaderworkerset.sigs.k8s.io/worker-index']" } });
      expect(env.HYBRIDSERVE_WORLD_SIZE).toBe('4');
      // The group's shared secret is the HSD's uid, the same in every pod, not the user's.
      expect((c.env as Obj[]).filter((e) => e.name === 'HYBRIDSERVE_PIPELINE_TOKEN')).toEqual([
        { name: 'HYBRIDSERVE_PIPELINE_TOKEN', value: 'uid-1' },
      ]);
      const i = c.args.indexOf('--leader-address');
      expect(c.args[i + 1]).toBe('$(LWS_LEADER_ADDRESS):29500');
      // Leaders answer /readyz and listen for the rendezvous; workers serve /healthz only.
      expect(c.readinessProbe.httpGet.path).toBe(role === 'leader' ? '/readyz' : '/healthz');
      expect(c.ports.some((p: Obj) => p.name === 'rendezvous')).toBe(role === 'leader');
      // The kubelet expands $(VAR) in args from the container's env (LWS injects LWS_LEADER_ADDRESS).
      const args = (c.args as string[]).slice(1).map((a) => a.replace('$(LWS_LEADER_ADDRESS)', 'demo-0.demo.ns'));
      const cfg = parseServeArgs(withoutPendingPipelineFlags(args), { HYBRIDSERVE_WORLD_SIZE: '4', HYBRIDSERVE_RANK: '0' });
      expect(cfg !== 'help' && cfg.device).toBe('cuda');
    }
    // Leader and worker templates differ in nothing else.
    const strip = (t: Obj) => {
      const c = { ...t.spec.containers[0], readinessProbe: undefined, ports: undefined };
      return { ...t, spec: { ...t.spec, containers: [c] } };
    };
    expect(strip(l.spec.leaderWorkerTemplate.workerTemplate)).toEqual(strip(l.spec.leaderWorkerTemplate.leaderTemplate));
  });

  test('CPU pods (gpusPerPod 0) over nodes: --device cpu, no GPU resources, the same wiring; the server accepts it', () => {
    const cpuNode = (name: string): NodeLike => ({
      metadata: { name, labels: {} },
      status: { allocatable: { memory: '256Gi', cpu: '64' }, conditions: [{ type: 'Ready', status: 'True' }] },
    });
    const h = hsd({ gpusPerPod: 0, parallelism: { nodes: 2 } });
    const l = lwsOf(h, [cpuNode('c1'), cpuNode('c2')], 1);
    expect(l.spec.leaderWorkerTemplate.size).toBe(2);
    for (const t of [l.spec.leaderWorkerTemplate.leaderTemplate, l.spec.leaderWorkerTemplate.workerTemplate]) {
      const c = t.spec.containers[0];
      expect(c.args[c.args.indexOf('--device') + 1]).toBe('cpu');
      expect(JSON.stringify(c.resources)).not.toContain('nvidia.com/gpu');
      expect(envOf(c).HYBRIDSERVE_WORLD_SIZE).toBe('2');
      const args = (c.args as string[]).slice(1).map((a) => a.replace('$(LWS_LEADER_ADDRESS)', 'demo-0.demo.ns'));
      const cfg = parseServeArgs(args, { HYBRIDSERVE_WORLD_SIZE: '2', HYBRIDSERVE_RANK: '1' });
      expect(cfg !== 'help' && [cfg.device, cfg.pipeline.worldSize, cfg.pipeline.rank]).toEqual(['cpu', 2, 1]);
    }
  });

  test('nodes 1 keeps the Deployment path: no pipeline wiring, the Service selects every pod', () => {
    const h = hsd();
    const { group, p } = planned(h, nodes);
    if (!p.ok) throw new Error(p.message);
    const d = deployment(h, group, p.plan, 1) as Obj;
    const c = d.spec.template.spec.containers[0];
    expect(c.args.join(' ')).not.toMatch(/--gpus|--leader-address/);
    expect((c.env as Obj[]).map((e) => e.name)).not.toContain('HYBRIDSERVE_RANK');
    expect((service(h) as Obj).spec.selector).toEqual({ 'app.kubernetes.io/name': 'hybridserve', 'app.kubernetes.io/instance': 'big' });
    expect((networkPolicy(h, {}) as Obj).spec.ingress).toHaveLength(1);
  });

  test('with LWS the Service selects only leaders, and the NetworkPolicy lets the stages reach each other', () => {
    const h = hsd({ parallelism: { nodes: 2 } });
    expect((service(h) as Obj).spec.selector['leaderworkerset.sigs.k8s.io/worker-index']).toBe('0');
    const ingress = (networkPolicy(h, {}) as Obj).spec.ingress;
    expect(ingress[1]).toEqual({
      from: [{ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'hybridserve', 'app.kubernetes.io/instance': 'big' } } }],
    });
    expect(servesHttp({ metadata: { labels: { 'leaderworkerset.sigs.k8s.io/worker-index': '0' } } })).toBe(true);
    expect(servesHttp({ metadata: { labels: { 'leaderworkerset.sigs.k8s.io/worker-index': '1' } } })).toBe(false);
    expect(servesHttp({ metadata: { labels: {} } })).toBe(true);
  });
});

describe('LWS status as the HSD readiness', () => {
  const lws = (readyReplicas: number, conds: Record<string, string>) => ({
    metadata: { name: 'x' },
    status: { readyReplicas, conditions: Object.entries(conds).map(([type, status]) => ({ type, status })) },
  });
  test('groups ready all-or-nothing; Progressing or UpdateInProgress means rolling; no LWS yet is rolling', () => {
    expect(leaderWorkerSetReadiness(undefined, 2)).toEqual({ readyReplicas: 0, rolling: true });
    expect(leaderWorkerSetReadiness(lws(0, { Progressing: 'True', Available: 'False' }), 2)).toEqual({ readyReplicas: 0, rolling: true });
    expect(leaderWorkerSetReadiness(lws(2, { Available: 'True', Progressing: 'False' }), 2)).toEqual({ readyReplicas: 2, rolling: false });
    expect(leaderWorkerSetReadiness(lws(2, { Available: 'True', UpdateInProgress: 'True' }), 2)).toEqual({
      readyReplicas: 2,
      rolling: true,
    });
    expect(leaderWorkerSetReadiness(lws(3, { Available: 'True' }), 2).readyReplicas).toBe(2);
  });

  test('a missing LWS API reads as Degraded LeaderWorkerSetMissing and not Ready', () => {
    const conds = conditionsFor({
      groups: [],
      failed: [],
      readyReplicas: 0,
      wanted: 1,
      rolling: false,
      groupStatus: [{ name: 'g' } as never],
      spec: hsd({ parallelism: { nodes: 2 } }).spec,
      lwsMissing: 'no LWS',
    });
    expect(conds.find((c) => c.type === 'Degraded')).toMatchObject({ status: 'True', reason: 'LeaderWorkerSetMissing', message: 'no LWS' });
    expect(conds.find((c) => c.type === 'Ready')).toMatchObject({ status: 'False', reason: 'LeaderWorkerSetMissing' });
  });
});

describe('RBAC for LeaderWorkerSets', () => {
  test('exactly the verbs the operator uses, nothing more', () => {
    const rules = clusterRules.filter((r) => r.apiGroups.includes('leaderworkerset.x-k8s.io'));
    expect(rules).toEqual([
      {
        apiGroups: ['leaderworkerset.x-k8s.io'],
        resources: ['leaderworkersets'],
        verbs: ['get', 'list', 'watch', 'create', 'patch', 'delete'],
      },
    ]);
  });
});
