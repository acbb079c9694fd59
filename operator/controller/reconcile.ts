// Level-triggered reconcile of one HybridServeDeployment: read it, handle deletion and the
// finalizer, compute node groups and their plans, server-side apply the children, delete stale
// ones, and write status (conditions, observedGeneration, nodeGroups) through /status. It looks at
// the current state only, never at which event woke it, so any crash or dropped event is repaired
// by the next run.
import {
  FIELD_MANAGER, FINALIZER, type HsdStatus, type HybridServeDeployment, type NodeGroupStatus,
} from '../api/types.js';
import type { KubeClient, KubeObject } from '../k8s/client.js';
import { isConflict, isNotFound } from '../k8s/errors.js';
import { R } from '../k8s/resources.js';
import { condition, setConditions, type ConditionInput } from '../desired/conditions.js';
import { groupCapacity, groupNodes, isCpuGroup, splitReplicas, type NodeGroup, type NodeLike } from '../desired/node-groups.js';
import {
  ANNOTATION_PLAN_INPUT, LABEL_GROUP, LABEL_INSTANCE, LABEL_MANAGED_BY, PLAN_KEY, configMap, configMapName, deployment, deploymentName,
  selectorString, service, serviceName,
} from '../desired/objects.js';
import { planGroupCached as planGroup, type GroupPlan, type PlanFile } from '../desired/plan.js';
import { scaleToZero } from '../desired/scale-to-zero.js';
import { formatBytes } from '../../planning/quantity.js';
import type { RuntimeState } from './state.js';
import type { EventRecorder } from './events.js';
import type { ReconcileResult } from './queue.js';
import { MANAGED_BY } from '../api/types.js';

export interface DeploymentLike extends KubeObject {
  metadata: KubeObject['metadata'] & { labels?: Record<string, string>; generation?: number; ownerReferences?: { uid: string }[] };
  spec?: { replicas?: number };
  status?: { replicas?: number; readyReplicas?: number; observedGeneration?: number };
}
interface ConfigMapLike extends KubeObject { metadata: KubeObject['metadata'] & { annotations?: Record<string, string> }; data?: Record<string, string> }

export interface ReconcileDeps {
  client: KubeClient;
  nodes(): readonly NodeLike[];
  /** Owned Deployments of the HSD (from the informer cache). */
  deployments(namespace: string, hsdName: string): readonly DeploymentLike[];
  state: RuntimeState;
  events: EventRecorder;
  now(): Date;
  /** Periodic resync while something is still converging. */
  progressRequeueMs?: number;
}

export function parsePlanFile(text: string | undefined): PlanFile | undefined {
  if (!text) return undefined;
  try {
    const v = JSON.parse(text) as PlanFile;
    return typeof v.actFraction === 'number' ? v : undefined;
  } catch { return undefined; }
}

export async function reconcile(key: string, deps: ReconcileDeps): Promise<ReconcileResult> {
  const [namespace, name] = key.split('/');
  const { client } = deps;
  let hsd: HybridServeDeployment;
  try {
    hsd = await client.get<HybridServeDeployment>({ type: R.hsd, namespace, name });
  } catch (e) {
    if (isNotFound(e)) { deps.state.forget(key); return {}; }
    throw e;
  }

  // Deletion: children go by ownerReference GC; we only drop our in-memory state, then the finalizer.
  if (hsd.metadata.deletionTimestamp) {
    deps.state.forget(key);
    const fins = hsd.metadata.finalizers ?? [];
    if (fins.includes(FINALIZER)) {
      await client.mergePatch({ type: R.hsd, namespace, name }, {
        metadata: { finalizers: fins.filter((f) => f !== FINALIZER), resourceVersion: hsd.metadata.resourceVersion },
      });
    }
    return {};
  }
  if (!(hsd.metadata.finalizers ?? []).includes(FINALIZER)) {
    hsd = await client.mergePatch<HybridServeDeployment>({ type: R.hsd, namespace, name }, {
      metadata: { finalizers: [...(hsd.metadata.finalizers ?? []), FINALIZER], resourceVersion: hsd.metadata.resourceVersion },
    });
  }

  const spec = hsd.spec;
  const generation = hsd.metadata.generation ?? 1;
  const gpusPerPod = spec.gpusPerPod ?? 1;
  const groups = groupNodes(deps.nodes(), spec);
  const plans = groups.map((g) => ({ group: g, plan: planGroup(spec, g) }));
  const ok = plans.filter((p): p is { group: NodeGroup; plan: Extract<GroupPlan, { ok: true }> } => p.plan.ok);
  const failed = plans.filter((p) => !p.plan.ok) as { group: NodeGroup; plan: Extract<GroupPlan, { ok: false }> }[];

  const runtime = deps.state.get(key);
  const autoscaling = spec.autoscaling?.enabled === true;
  const asked = autoscaling
    ? clamp(runtime.desiredReplicas ?? hsd.status?.autoscaler?.desiredReplicas ?? spec.replicas ?? 1, spec.autoscaling?.minReplicas ?? 1, spec.autoscaling?.maxReplicas ?? 4)
    : spec.replicas ?? 1;
  const zero = scaleToZero(hsd, asked, deps.now().getTime()); // idle → 0; not idle → ≥ 1 (operator/desired/scale-to-zero.ts)
  const wanted = zero.replicas;
  const split = splitReplicas(wanted, ok.map((p) => groupCapacity(p.group, gpusPerPod)));

  // Apply children. ConfigMap first so that new pods start with their plan.
  const groupStatus: NodeGroupStatus[] = [];
  const owned = deps.deployments(namespace, name);
  for (const [i, { group, plan }] of ok.entries()) {
    const cmRef = { type: R.configMap, namespace, name: configMapName(hsd, group) };
    let current: ConfigMapLike | undefined;
    try { current = await client.get<ConfigMapLike>(cmRef); } catch (e) { if (!isNotFound(e)) throw e; }
    const currentFile = parsePlanFile(current?.data?.[PLAN_KEY]);
    const sameInput = current?.metadata.annotations?.[ANNOTATION_PLAN_INPUT] === plan.inputHash && currentFile !== undefined;
    // Same inputs: keep what the feedback loop wrote. New inputs: a fresh plan, next generation.
    const file: PlanFile = sameInput ? currentFile! : { ...plan.file, generation: (currentFile?.generation ?? 0) + 1 };
    if (!sameInput) deps.state.group(key, group.id).retune = undefined;
    if (!sameInput || !current) await client.apply(cmRef, configMap(hsd, group, file, plan.inputHash), FIELD_MANAGER);
    const depName = deploymentName(hsd, group);
    await client.apply({ type: R.deployment, namespace, name: depName }, deployment(hsd, group, plan.plan, split[i]), FIELD_MANAGER);
    const dep = owned.find((d) => d.metadata.name === depName);
    const rt = deps.state.group(key, group.id);
    const prevStatus = hsd.status?.nodeGroups?.find((s) => s.name === group.id);
    groupStatus.push({
      name: group.id, gpuProduct: group.gpuProduct, nodes: group.nodeNames.length, allocatableMemoryBytes: group.allocatableMemoryBytes,
      replicas: split[i], readyReplicas: Math.min(split[i], dep?.status?.readyReplicas ?? 0),
      actFraction: file.actFraction, hostMemoryBytes: plan.plan.hostMemoryBytes, kvBlocks: plan.plan.kvBlocks, actBlocks: plan.plan.actBlocks,
      maxBatch: file.maxBatch ?? plan.plan.maxBatch, planGeneration: file.generation ?? 1,
      predictedTokensPerSecond: round(plan.plan.predictedTokensPerSecond, 1), reason: (file.reason ?? plan.plan.reason).slice(0, 512),
      ...(rt.measured ?? prevStatus?.measured ? { measured: rt.measured ?? prevStatus!.measured } : {}),
      ...(rt.retune ? { retune: { lastDirection: rt.retune.lastDirection, stableCycles: rt.retune.stableCycles } } : prevStatus?.retune ? { retune: prevStatus.retune } : {}),
    });
  }
  if (ok.length > 0) await client.apply({ type: R.service, namespace, name: serviceName(hsd) }, service(hsd), FIELD_MANAGER);

  // Remove children of groups that no longer exist (or no longer plan): only ours, by owner uid.
  const keepDeps = new Set(ok.map((p) => deploymentName(hsd, p.group)));
  for (const d of owned) {
    const ours = d.metadata.labels?.[LABEL_MANAGED_BY] === MANAGED_BY && (d.metadata.ownerReferences ?? []).some((r) => r.uid === hsd.metadata.uid);
    if (ours && !keepDeps.has(d.metadata.name)) {
      await deleteIgnoringMissing(client, { type: R.deployment, namespace, name: d.metadata.name });
      await deleteIgnoringMissing(client, { type: R.configMap, namespace, name: `${d.metadata.name}-plan` });
    }
  }

  const readyReplicas = groupStatus.reduce((a, g) => a + g.readyReplicas, 0);
  const rolling = ok.some(({ group }) => {
    const d = owned.find((x) => x.metadata.name === deploymentName(hsd, group));
    return !d || (d.status?.observedGeneration ?? 0) < (d.metadata.generation ?? 1);
  });
  const conds = conditionsFor({ groups, failed, readyReplicas, wanted, rolling, groupStatus, spec: hsd.spec });
  const status: HsdStatus = {
    observedGeneration: generation,
    replicas: wanted,
    readyReplicas,
    selector: selectorString(hsd),
    actFraction: summarise(groupStatus.map((g) => g.actFraction.toFixed(2))),
    hostMemory: summarise(groupStatus.map((g) => formatBytes(g.hostMemoryBytes))),
    conditions: setConditions(hsd.status?.conditions, conds, deps.now().toISOString(), generation),
    nodeGroups: groupStatus,
    ...(autoscaling ? { autoscaler: {
      desiredReplicas: wanted, metric: runtime.autoscaleMetric?.metric ?? spec.autoscaling?.metric ?? 'queueDepth',
      value: runtime.autoscaleMetric?.value ?? hsd.status?.autoscaler?.value ?? 0,
      ...(runtime.lastScaleTime ?? hsd.status?.autoscaler?.lastScaleTime ? { lastScaleTime: runtime.lastScaleTime ?? hsd.status?.autoscaler?.lastScaleTime } : {}),
    } } : {}),
  };
  await writeStatus(deps, hsd, status);

  // Waiting for pods: poll slowly as a safety net (child events normally wake us first). A spec
  // that cannot be planned is terminal: no requeue until the HSD or a Node changes.
  const ready = condition(status.conditions, 'Ready')?.status === 'True';
  const recheck = zero.recheckAfterMs ?? Infinity; // wake up when the idle window ends
  if (ready || ok.length === 0) return Number.isFinite(recheck) && ok.length > 0 ? { requeueAfterMs: recheck } : {};
  return { requeueAfterMs: Math.min(deps.progressRequeueMs ?? 10_000, recheck) };
}

interface CondInput {
  groups: NodeGroup[]; failed: { group: NodeGroup; plan: Extract<GroupPlan, { ok: false }> }[]; readyReplicas: number; wanted: number;
  rolling: boolean; groupStatus: NodeGroupStatus[]; spec: HybridServeDeployment['spec'];
}

/** Conditions from the observed state (pure). */
export function conditionsFor(c: CondInput): ConditionInput[] {
  const memFail = c.failed.filter((f) => f.plan.reason === 'HostMemoryExceedsNode');
  const planned = c.groupStatus.length > 0;
  const degraded: ConditionInput = c.groups.length === 0
    ? { type: 'Degraded', status: 'True', reason: 'NoMatchingNodes', message: (c.spec.gpusPerPod ?? 1) > 0
      ? 'no schedulable node with an nvidia.com/gpu.product label, enough GPUs and allocatable memory matches the spec'
      : 'no schedulable, Ready node with allocatable memory matches the spec\'s nodeSelector' }
    : c.failed.length > 0
      ? { type: 'Degraded', status: 'True', reason: c.failed[0].plan.reason, message: c.failed.map((f) => f.plan.message).join('; ').slice(0, 1024) }
      : { type: 'Degraded', status: 'False', reason: 'AllGroupsPlanned', message: `${c.groups.length} node group(s) planned` };
  const hostMem: ConditionInput = memFail.length > 0
    ? { type: 'HostMemoryFits', status: 'False', reason: 'HostMemoryExceedsNode', message: memFail.map((f) => f.plan.message).join('; ').slice(0, 1024) }
    : planned
      ? { type: 'HostMemoryFits', status: 'True', reason: 'Fits', message: c.groupStatus.map((g) => `${g.name}: ${formatBytes(g.hostMemoryBytes)} per pod`).join(', ') }
      : { type: 'HostMemoryFits', status: 'Unknown', reason: 'NotPlanned', message: 'no node group could be planned' };
  const progressing: ConditionInput = c.rolling || c.readyReplicas < c.wanted
    ? { type: 'Progressing', status: 'True', reason: 'RollingOut', message: `${c.readyReplicas}/${c.wanted} replicas ready` }
    : { type: 'Progressing', status: 'False', reason: 'Complete', message: `${c.readyReplicas}/${c.wanted} replicas ready` };
  const ready: ConditionInput = !planned
    ? { type: 'Ready', status: 'False', reason: degraded.reason, message: degraded.message }
    : c.readyReplicas >= c.wanted && !c.rolling
      ? { type: 'Ready', status: 'True', reason: c.wanted === 0 ? 'ScaledToZero' : 'AllReplicasReady', message: `${c.readyReplicas}/${c.wanted} replicas ready` }
      : { type: 'Ready', status: 'False', reason: 'ReplicasNotReady', message: `${c.readyReplicas}/${c.wanted} replicas ready` };
  const auto = (c.spec.cache?.actFraction ?? 'auto') === 'auto' && c.spec.cache?.retune?.enabled !== false;
  const measured = c.groupStatus.filter((g) => g.measured);
  // CPU groups are never retuned (fraction 0, see planCpuGroup), so they count as settled.
  const cpuIds = new Set(c.groups.filter(isCpuGroup).map((g) => g.id));
  const settled = c.groupStatus.every((g) => cpuIds.has(g.name) || (g.retune?.stableCycles ?? 0) >= 3);
  const converged: ConditionInput = !auto
    ? { type: 'PlanConverged', status: 'True', reason: 'FixedFraction', message: 'the ACT fraction is fixed by the spec; no retuning' }
    : measured.length < c.groupStatus.length || c.groupStatus.length === 0
      ? { type: 'PlanConverged', status: 'Unknown', reason: 'AwaitingMeasurements', message: 'waiting for step timings from the pods' }
      : settled
        ? { type: 'PlanConverged', status: 'True', reason: 'Stable', message: 'measured timings keep the fraction within the hysteresis band' }
        : { type: 'PlanConverged', status: 'False', reason: 'Retuning', message: 'the feedback loop is still moving the ACT fraction' };
  return [ready, progressing, degraded, hostMem, converged];
}

async function writeStatus(deps: ReconcileDeps, hsd: HybridServeDeployment, status: HsdStatus): Promise<void> {
  if (sameStatus(hsd.status, status)) return;
  try {
    await deps.client.mergePatch({ type: R.hsd, namespace: hsd.metadata.namespace, name: hsd.metadata.name, subresource: 'status' },
      { metadata: { resourceVersion: hsd.metadata.resourceVersion }, status: { ...status, nodeGroups: status.nodeGroups, conditions: status.conditions } });
  } catch (e) {
    if (isConflict(e)) throw e; // requeued with backoff; the next run reads the newer object
    if (!isNotFound(e)) throw e;
  }
  const before = condition(hsd.status?.conditions, 'Degraded');
  const after = condition(status.conditions, 'Degraded');
  if (after?.status === 'True' && (before?.status !== 'True' || before.message !== after.message)) {
    await deps.events.record(hsd, 'Warning', after.reason, 'Plan', after.message);
  }
}

function sameStatus(a: HsdStatus | undefined, b: HsdStatus): boolean {
  return canonical(a ?? {}) === canonical(b);
}

/** JSON with sorted keys, so that key order from the server never counts as a change. */
export function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).filter((k) => (v as Record<string, unknown>)[k] !== undefined).sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

async function deleteIgnoringMissing(client: KubeClient, ref: Parameters<KubeClient['delete']>[0]): Promise<void> {
  try { await client.delete(ref); } catch (e) { if (!isNotFound(e)) throw e; }
}

function clamp(n: number, lo: number, hi: number): number { return Math.min(hi, Math.max(lo, n)); }
function round(n: number, d: number): number { const f = 10 ** d; return Math.round(n * f) / f; }
function summarise(values: string[]): string { const u = [...new Set(values)]; return u.length === 0 ? '' : u.join(','); }

export { LABEL_GROUP, LABEL_INSTANCE };
