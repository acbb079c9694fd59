// Level-triggered reconcile of one HybridServeDeployment: read it, handle deletion and the
// finalizer, compute node groups and their plans, server-side apply the children, delete stale
// ones, and write status (conditions, observedGeneration, nodeGroups) through /status. It looks at
// the current state only, never at which event woke it, so any crash or dropped event is repaired
// by the next run.
import { createHash } from 'node:crypto';
import { FIELD_MANAGER, FINALIZER, type HsdStatus, type HybridServeDeployment, type NodeGroupStatus } from '../api/types.js';
import { resolveSpec, type ResolvedSpec } from '../api/defaults.js';
import type { KubeClient, KubeObject } from '../k8s/client.js';
import { isConflict, isNotFound } from '../k8s/errors.js';
import { R } from '../k8s/resources.js';
import { condition, setConditions, type ConditionInput } from '../desired/conditions.js';
import { groupCapacity, groupNodes, isCpuGroup, splitReplicas, type NodeGroup, type NodeLike } from '../desired/node-groups.js';
import {
  ANNOTATION_PLAN_INPUT,
  LABEL_GROUP,
  LABEL_INSTANCE,
  LABEL_MANAGED_BY,
  configMap,
  configMapName,
  deployment,
  deploymentName,
  networkPolicy,
  podDisruptionBudget,
  selectorString,
  service,
  serviceName,
  serviceUrl,
} from '../desired/objects.js';
import { PLAN_KEY } from '../desired/pod.js';
import {
  leaderWorkerSet,
  leaderWorkerSetName,
  leaderWorkerSetReadiness,
  usesLeaderWorkerSet,
  type LeaderWorkerSetLike,
} from '../desired/lws.js';
import { planGroupCached as planGroup, type GroupPlan, type PlanFile } from '../desired/plan.js';
import { OPEN_POLICY, policyViolations, type HsdPolicy } from '../desired/policy.js';
import { parsePlan } from '../../planning/plan-file.js';
import { scaleToZero } from '../desired/scale-to-zero.js';
import { advertisedGatewayUrl } from '../desired/gateway-url.js';
import { formatBytes } from '../../planning/quantity.js';
import type { GroupRuntime, RuntimeState } from './state.js';
import type { EventRecorder } from './events.js';
import type { ReconcileResult } from './queue.js';
import type { OperatorMetrics } from './metrics.js';
import { MANAGED_BY } from '../api/types.js';

export interface DeploymentLike extends KubeObject {
  metadata: KubeObject['metadata'] & {
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    generation?: number;
    ownerReferences?: { uid: string }[];
  };
  spec?: { replicas?: number };
  status?: { replicas?: number; readyReplicas?: number; observedGeneration?: number };
}
export interface ConfigMapLike extends KubeObject {
  metadata: KubeObject['metadata'] & { annotations?: Record<string, string> };
  data?: Record<string, string>;
}

export interface ReconcileDeps {
  client: KubeClient;
  nodes(): readonly NodeLike[];
  /** Owned Deployments of the HSD (from the informer cache). */
  deployments(namespace: string, hsdName: string): readonly DeploymentLike[];
  /**
   * A plan ConfigMap from the (synced) informer cache; without this function reconcile GETs it.
   * A stale cache at worst re-applies the same plan: every write is a server-side apply.
   */
  configMap?(namespace: string, name: string): ConfigMapLike | undefined;
  /** Owned LeaderWorkerSets of the HSD from the (optional) LWS informer: their replicas after a restart. */
  leaderWorkerSets?(namespace: string, hsdName: string): readonly LeaderWorkerSetLike[];
  state: RuntimeState;
  events: EventRecorder;
  now(): Date;
  metrics?: OperatorMetrics;
  /** The operator-level HSD policy (default: open). */
  policy?: HsdPolicy;
  /** NetworkPolicy peer that selects the operator's pods (they scrape the servers' stats). */
  operatorPeer?: Record<string, unknown>;
  /** Periodic resync while something is still converging. */
  progressRequeueMs?: number;
}

export type PlanGroupOk = { group: NodeGroup; plan: Extract<GroupPlan, { ok: true }> };
type PlanGroupFailed = { group: NodeGroup; plan: Extract<GroupPlan, { ok: false }> };

export async function reconcile(key: string, deps: ReconcileDeps): Promise<ReconcileResult> {
  const [namespace, name] = key.split('/');
  const { client } = deps;
  let hsd: HybridServeDeployment;
  try {
    hsd = await client.get<HybridServeDeployment>({ type: R.hsd, namespace, name });
  } catch (e) {
    if (isNotFound(e)) {
      deps.state.forget(key);
      return {};
    }
    throw e;
  }

  // Deletion: children go by ownerReference GC; we only drop our in-memory state, then the finalizer.
  if (hsd.metadata.deletionTimestamp) {
    deps.state.forget(key);
    const fins = hsd.metadata.finalizers ?? [];
    if (fins.includes(FINALIZER)) {
      await client.mergePatch(
        { type: R.hsd, namespace, name },
        {
          metadata: { finalizers: fins.filter((f) => f !== FINALIZER), resourceVersion: hsd.metadata.resourceVersion },
        },
      );
    }
    return {};
  }
  if (!(hsd.metadata.finalizers ?? []).includes(FINALIZER)) {
    hsd = await client.mergePatch<HybridServeDeployment>(
      { type: R.hsd, namespace, name },
      {
        metadata: { finalizers: [...(hsd.metadata.finalizers ?? []), FINALIZER], resourceVersion: hsd.metadata.resourceVersion },
      },
    );
  }

  const spec = resolveSpec(hsd.spec);
  const generation = hsd.metadata.generation ?? 1;
  const owned = deps.deployments(namespace, name);
  const runtime = deps.state.get(key);

  // Policy first: a violating HSD gets no children (existing ones are left as they were).
  const violations = policyViolations(spec, deps.policy ?? OPEN_POLICY);
  if (violations.length > 0) {
    const msg = violations.join('; ').slice(0, 1024);
    const conds: ConditionInput[] = [
      { type: 'Ready', status: 'False', reason: 'PolicyViolation', message: msg },
      {
        type: 'Progressing',
        status: 'False',
        reason: 'PolicyViolation',
        message: 'children are not applied while the spec violates the operator policy',
      },
      { type: 'Degraded', status: 'True', reason: 'PolicyViolation', message: msg },
    ];
    await writeStatus(deps, hsd, {
      observedGeneration: generation,
      replicas: spec.replicas,
      readyReplicas: 0,
      selector: selectorString(hsd),
      url: advertisedGatewayUrl(hsd) ?? serviceUrl(hsd),
      conditions: setConditions(hsd.status?.conditions, conds, deps.now().toISOString(), generation),
      nodeGroups: [],
    });
    return {};
  }

  const groups = groupNodes(deps.nodes(), spec);
  const plans = groups.map((g) => ({ group: g, plan: planGroup(spec, g) }));
  const ok = plans.filter((p): p is PlanGroupOk => p.plan.ok);
  const failed = plans.filter((p) => !p.plan.ok) as PlanGroupFailed[];

  const zero = scaleToZero(
    hsd,
    wantedReplicas(spec, runtime.desiredReplicas, [...owned, ...(deps.leaderWorkerSets?.(namespace, name) ?? [])]),
    deps.now().getTime(),
  ); // idle → 0; not idle → ≥ 1 (operator/desired/scale-to-zero.ts)
  const wanted = zero.replicas;
  runtime.appliedReplicas = wanted;
  // LWS groups take parallelism.nodes pods each: a node group holds capacity ÷ nodes of them.
  const split = splitReplicas(
    wanted,
    ok.map((p) => Math.floor(groupCapacity(p.group, spec.gpusPerPod) / spec.parallelism.nodes)),
  );

  // Apply children. ConfigMap first so that new pods start with their plan.
  const lwsMode = usesLeaderWorkerSet(hsd);
  const groupStatus: NodeGroupStatus[] = [];
  const groupRolling: boolean[] = [];
  let lwsMissing: string | undefined;
  for (const [i, { group, plan }] of ok.entries()) {
    const grt = deps.state.group(key, group.id);
    const file = await applyPlan(deps, hsd, group, plan, grt);
    const seen = lwsMode
      ? await applyLeaderWorkerSet(deps, hsd, group, plan.plan, split[i])
      : await applyDeployment(deps, hsd, owned, group, plan.plan, split[i]);
    if ('missing' in seen) lwsMissing = seen.missing;
    const observed = 'missing' in seen ? { readyReplicas: 0, rolling: false } : seen;
    groupRolling.push(observed.rolling);
    groupStatus.push({
      name: group.id,
      gpuProduct: group.gpuProduct,
      nodes: group.nodeNames.length,
      allocatableMemoryBytes: group.allocatableMemoryBytes,
      replicas: split[i],
      readyReplicas: observed.readyReplicas,
      actFraction: file.actFraction,
      hostMemoryBytes: plan.plan.hostMemoryBytes,
      kvBlocks: plan.plan.kvBlocks,
      actBlocks: plan.plan.actBlocks,
      maxBatch: file.maxBatch ?? plan.plan.maxBatch,
      planGeneration: file.generation ?? 1,
      predictedTokensPerSecond: round(plan.plan.predictedTokensPerSecond, 1),
      reason: (file.reason ?? plan.plan.reason).slice(0, 512),
      ...(grt.measured ? { measured: grt.measured } : {}),
      ...(grt.retune ? { retune: { lastDirection: grt.retune.lastDirection, stableCycles: grt.retune.stableCycles } } : {}),
    });
  }
  if (ok.length > 0) {
    await applyOnce(deps, { type: R.service, namespace, name: serviceName(hsd) }, service(hsd));
    await applyOptional(
      deps,
      hsd,
      R.podDisruptionBudget,
      spec.podDisruptionBudget.enabled,
      hsd.spec.podDisruptionBudget !== undefined,
      () => podDisruptionBudget(hsd),
    );
    await applyOptional(deps, hsd, R.networkPolicy, spec.networkPolicy.enabled, hsd.spec.networkPolicy !== undefined, () =>
      networkPolicy(hsd, deps.operatorPeer ?? DEFAULT_OPERATOR_PEER),
    );
  }

  // Remove children of groups that no longer exist (or no longer plan): only ours, by owner uid.
  const keepDeps = new Set(ok.map((p) => deploymentName(hsd, p.group)));
  for (const d of owned) {
    const ours =
      d.metadata.labels?.[LABEL_MANAGED_BY] === MANAGED_BY && (d.metadata.ownerReferences ?? []).some((r) => r.uid === hsd.metadata.uid);
    if (ours && !keepDeps.has(d.metadata.name)) {
      await deleteIgnoringMissing(client, { type: R.deployment, namespace, name: d.metadata.name });
      await deleteIgnoringMissing(client, { type: R.configMap, namespace, name: `${d.metadata.name}-plan` });
    }
  }

  if (lwsMode && lwsMissing === undefined) {
    await deleteStaleLeaderWorkerSets(deps, hsd, new Set(ok.map((p) => leaderWorkerSetName(hsd, p.group))));
  }

  const readyReplicas = groupStatus.reduce((a, g) => a + g.readyReplicas, 0);
  const rolling = groupRolling.some(Boolean);
  const conds = conditionsFor({ groups, failed, readyReplicas, wanted, rolling, groupStatus, spec, lwsMissing });
  const status: HsdStatus = {
    observedGeneration: generation,
    replicas: wanted,
    readyReplicas,
    selector: selectorString(hsd),
    url: advertisedGatewayUrl(hsd) ?? serviceUrl(hsd),
    actFraction: summarise(groupStatus.map((g) => g.actFraction.toFixed(2))),
    hostMemory: summarise(groupStatus.map((g) => formatBytes(g.hostMemoryBytes))),
    weightDtype: spec.engine.weightDtype,
    conditions: setConditions(hsd.status?.conditions, conds, deps.now().toISOString(), generation),
    nodeGroups: groupStatus,
    ...(spec.autoscaling.enabled
      ? {
          autoscaler: {
            desiredReplicas: wanted,
            metric: runtime.autoscaleMetric?.metric ?? spec.autoscaling.metric,
            value: runtime.autoscaleMetric?.value ?? 0,
            ...(runtime.lastScaleTime ? { lastScaleTime: runtime.lastScaleTime } : {}),
          },
        }
      : {}),
  };
  // The Event first: by the time status shows the new replicas, the Event explaining it exists.
  if (runtime.scaleNote) {
    const note = runtime.scaleNote;
    runtime.scaleNote = undefined;
    await deps.events.record(hsd, 'Normal', 'Scaled', 'Scale', note);
  }
  await writeStatus(deps, hsd, status);

  // Waiting for pods: poll slowly as a safety net (child events normally wake us first). A spec
  // that cannot be planned is terminal: no requeue until the HSD or a Node changes.
  // No LeaderWorkerSet API: nothing changes until someone installs it; the periodic resync (or a
  // change of the HSD) looks again, so a missing add-on costs one request per resync, not a retry storm.
  if (lwsMissing !== undefined) return {};
  const ready = condition(status.conditions, 'Ready')?.status === 'True';
  const recheck = zero.recheckAfterMs ?? Infinity; // wake up when the idle window ends
  if (ready || ok.length === 0) return Number.isFinite(recheck) && ok.length > 0 ? { requeueAfterMs: recheck } : {};
  return { requeueAfterMs: Math.min(deps.progressRequeueMs ?? 10_000, recheck) };
}

/** What reconcile sees of a group's workload after applying it. */
type Observed = { readyReplicas: number; rolling: boolean } | { missing: string };

/** The group's Deployment (skipped when unchanged since our last apply) and its readiness. */
async function applyDeployment(
  deps: ReconcileDeps,
  hsd: HybridServeDeployment,
  owned: readonly DeploymentLike[],
  group: NodeGroup,
  plan: Parameters<typeof deployment>[2],
  replicas: number,
): Promise<Observed> {
  const name = deploymentName(hsd, group);
  const dep = owned.find((d) => d.metadata.name === name);
  const desired = withDesiredHash(deployment(hsd, group, plan, replicas));
  // Unchanged since our last apply (same desired hash, replicas as wanted): skip the write.
  if (!(dep?.metadata.annotations?.[ANNOTATION_DESIRED_HASH] === desiredHash(desired) && dep.spec?.replicas === replicas)) {
    await deps.client.apply({ type: R.deployment, namespace: hsd.metadata.namespace, name }, desired, FIELD_MANAGER);
  }
  return {
    readyReplicas: Math.min(replicas, dep?.status?.readyReplicas ?? 0),
    rolling: !dep || (dep.status?.observedGeneration ?? 0) < (dep.metadata.generation ?? 1),
  };
}

/**
 * The group's LeaderWorkerSet, read then applied when it differs. A 404 on the apply (server-side
 * apply creates missing objects, so only a missing API answers 404) means LWS is not installed.
 */
async function applyLeaderWorkerSet(
  deps: ReconcileDeps,
  hsd: HybridServeDeployment,
  group: NodeGroup,
  plan: Parameters<typeof leaderWorkerSet>[2],
  replicas: number,
): Promise<Observed> {
  const ref = { type: R.leaderWorkerSet, namespace: hsd.metadata.namespace, name: leaderWorkerSetName(hsd, group) };
  let current: LeaderWorkerSetLike | undefined;
  try {
    current = await deps.client.get<LeaderWorkerSetLike>(ref);
  } catch (e) {
    if (!isNotFound(e)) throw e;
  }
  const desired = withDesiredHash(leaderWorkerSet(hsd, group, plan, replicas));
  if (!(current?.metadata.annotations?.[ANNOTATION_DESIRED_HASH] === desiredHash(desired) && current.spec?.replicas === replicas)) {
    try {
      current = await deps.client.apply<LeaderWorkerSetLike>(ref, desired, FIELD_MANAGER);
    } catch (e) {
      if (!isNotFound(e)) throw e;
      return {
        missing:
          'spec.parallelism.nodes > 1 needs the LeaderWorkerSet API (leaderworkerset.x-k8s.io/v1), which this cluster does not serve: install LeaderWorkerSet (https://lws.sigs.k8s.io) and the HSD is picked up at the next resync',
      };
    }
  }
  return leaderWorkerSetReadiness(current, replicas);
}

/** Deletes our LeaderWorkerSets of node groups that no longer plan (by owner uid, like Deployments). */
async function deleteStaleLeaderWorkerSets(deps: ReconcileDeps, hsd: HybridServeDeployment, keep: ReadonlySet<string>): Promise<void> {
  const namespace = hsd.metadata.namespace;
  const list = await deps.client.list<LeaderWorkerSetLike>(
    { type: R.leaderWorkerSet, namespace },
    `${LABEL_INSTANCE}=${hsd.metadata.name},${LABEL_MANAGED_BY}=${MANAGED_BY}`,
  );
  for (const l of list.items) {
    const ours = (l.metadata.ownerReferences ?? []).some((r) => r.uid === hsd.metadata.uid);
    if (ours && !keep.has(l.metadata.name)) {
      await deleteIgnoringMissing(deps.client, { type: R.leaderWorkerSet, namespace, name: l.metadata.name });
      await deleteIgnoringMissing(deps.client, { type: R.configMap, namespace, name: `${l.metadata.name}-plan` });
    }
  }
}

/** Hash of the desired Deployment, kept in an annotation so that an unchanged one is not re-applied. */
const ANNOTATION_DESIRED_HASH = 'hybridserve.io/desired-hash';
function desiredHash(o: Record<string, unknown>): string {
  const m = o.metadata as { annotations?: Record<string, string> };
  return m.annotations?.[ANNOTATION_DESIRED_HASH] ?? createHash('sha256').update(canonical(o)).digest('hex').slice(0, 16);
}
function withDesiredHash(o: Record<string, unknown>): Record<string, unknown> {
  const m = o.metadata as { annotations?: Record<string, string> };
  const hash = desiredHash(o);
  return { ...o, metadata: { ...m, annotations: { ...(m.annotations ?? {}), [ANNOTATION_DESIRED_HASH]: hash } } };
}

/** Selects the operator's pods in any namespace (override with ReconcileDeps.operatorPeer). */
const DEFAULT_OPERATOR_PEER = { namespaceSelector: {}, podSelector: { matchLabels: { 'app.kubernetes.io/component': 'operator' } } };

/**
 * Replicas wanted across groups. With the operator's autoscaler: its decision, else (after a
 * restart) what the children (Deployments or LeaderWorkerSets) run now, else spec.replicas;
 * always within [min, max]. Pure.
 */
export function wantedReplicas(
  spec: ResolvedSpec,
  decided: number | undefined,
  owned: readonly { spec?: { replicas?: number } }[],
): number {
  if (!spec.autoscaling.enabled) return spec.replicas;
  const running = owned.length > 0 ? owned.reduce((a, d) => a + (d.spec?.replicas ?? 0), 0) : undefined;
  return clamp(decided ?? running ?? spec.replicas, spec.autoscaling.minReplicas, spec.autoscaling.maxReplicas);
}

/**
 * The group's plan ConfigMap, the one place a plan is written. Same planning input: keep the
 * applied file, moved to the retuner's proposal as the next generation when there is one. New
 * input: a fresh plan, next generation, retune state dropped. Returns the file in effect.
 */
async function applyPlan(
  deps: ReconcileDeps,
  hsd: HybridServeDeployment,
  group: NodeGroup,
  plan: Extract<GroupPlan, { ok: true }>,
  grt: GroupRuntime,
): Promise<PlanFile> {
  const cmRef = { type: R.configMap, namespace: hsd.metadata.namespace, name: configMapName(hsd, group) };
  let current: ConfigMapLike | undefined;
  if (deps.configMap) current = deps.configMap(hsd.metadata.namespace ?? 'default', cmRef.name);
  else {
    try {
      current = await deps.client.get<ConfigMapLike>(cmRef);
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
  }
  const text = current?.data?.[PLAN_KEY];
  const parsed = text === undefined ? undefined : parsePlan(text);
  const currentFile = parsed?.ok ? parsed.plan : undefined;
  const sameInput = current?.metadata.annotations?.[ANNOTATION_PLAN_INPUT] === plan.inputHash && currentFile !== undefined;
  let file: PlanFile;
  let retuned = false;
  if (!sameInput) {
    file = { ...plan.file, generation: (currentFile?.generation ?? 0) + 1 };
    grt.retune = undefined;
    grt.proposal = undefined;
  } else {
    file = currentFile!;
    const p = grt.proposal;
    grt.proposal = undefined;
    if (p && p.inputHash === plan.inputHash && p.actFraction !== file.actFraction) {
      file = { ...file, actFraction: p.actFraction, generation: (file.generation ?? 1) + 1, reason: `retuned: ${p.reason}` };
      retuned = true;
    }
  }
  if (!sameInput || retuned) await deps.client.apply(cmRef, configMap(hsd, group, file, plan.inputHash), FIELD_MANAGER);
  grt.applied = { inputHash: plan.inputHash, actFraction: file.actFraction, generation: file.generation ?? 1 };
  if (retuned) {
    deps.metrics?.retunes.inc();
    await deps.events.record(
      hsd,
      'Normal',
      'ActFractionRetuned',
      'Retune',
      `node group ${group.id}: ACT fraction ${currentFile!.actFraction} -> ${file.actFraction} (plan generation ${file.generation}): ${file.reason}`,
    );
  }
  return file;
}

/** An optional child: applied when enabled; deleted when the spec names the field but disables it. */
async function applyOptional(
  deps: ReconcileDeps,
  hsd: HybridServeDeployment,
  type: (typeof R)[keyof typeof R],
  enabled: boolean,
  named: boolean,
  body: () => unknown,
): Promise<void> {
  const ref = { type, namespace: hsd.metadata.namespace, name: serviceName(hsd) };
  if (enabled) await applyOnce(deps, ref, body());
  else if (named) {
    deps.state.appliedHashes.delete(appliedKey(ref));
    await deleteIgnoringMissing(deps.client, ref);
  }
}

const appliedKey = (ref: { type: { plural: string }; namespace?: string; name?: string }) =>
  `${ref.type.plural}/${ref.namespace}/${ref.name}`;

/**
 * Server-side apply unless this process already applied exactly this body. The memo is cleared on
 * every periodic resync (RuntimeState.clearAppliedHashes), so drift is still repaired within one
 * resync period without a write per reconcile.
 */
async function applyOnce(deps: ReconcileDeps, ref: Parameters<KubeClient['apply']>[0], body: unknown): Promise<void> {
  const key = appliedKey(ref);
  const hash = createHash('sha256').update(canonical(body)).digest('hex');
  if (deps.state.appliedHashes.get(key) === hash) return;
  await deps.client.apply(ref, body, FIELD_MANAGER);
  deps.state.appliedHashes.set(key, hash);
}

interface CondInput {
  groups: NodeGroup[];
  failed: { group: NodeGroup; plan: Extract<GroupPlan, { ok: false }> }[];
  readyReplicas: number;
  wanted: number;
  rolling: boolean;
  groupStatus: NodeGroupStatus[];
  spec: HybridServeDeployment['spec'];
  /** Why the LeaderWorkerSet API is unusable (not installed), when it is. */
  lwsMissing?: string;
}

/** Conditions from the observed state (pure). */
export function conditionsFor(c: CondInput): ConditionInput[] {
  const memFail = c.failed.filter((f) => f.plan.reason === 'HostMemoryExceedsNode');
  const planned = c.groupStatus.length > 0;
  const degraded: ConditionInput = c.lwsMissing
    ? { type: 'Degraded', status: 'True', reason: 'LeaderWorkerSetMissing', message: c.lwsMissing }
    : c.groups.length === 0
      ? {
          type: 'Degraded',
          status: 'True',
          reason: 'NoMatchingNodes',
          message:
            resolveSpec(c.spec).gpusPerPod > 0
              ? 'no schedulable node with an nvidia.com/gpu.product label, enough GPUs and allocatable memory matches the spec'
              : "no schedulable, Ready node with allocatable memory matches the spec's nodeSelector",
        }
      : c.failed.length > 0
        ? {
            type: 'Degraded',
            status: 'True',
            reason: c.failed[0].plan.reason,
            message: c.failed
              .map((f) => f.plan.message)
              .join('; ')
              .slice(0, 1024),
          }
        : { type: 'Degraded', status: 'False', reason: 'AllGroupsPlanned', message: `${c.groups.length} node group(s) planned` };
  const hostMem: ConditionInput =
    memFail.length > 0
      ? {
          type: 'HostMemoryFits',
          status: 'False',
          reason: 'HostMemoryExceedsNode',
          message: memFail
            .map((f) => f.plan.message)
            .join('; ')
            .slice(0, 1024),
        }
      : planned
        ? {
            type: 'HostMemoryFits',
            status: 'True',
            reason: 'Fits',
            message: c.groupStatus.map((g) => `${g.name}: ${formatBytes(g.hostMemoryBytes)} per pod`).join(', '),
          }
        : { type: 'HostMemoryFits', status: 'Unknown', reason: 'NotPlanned', message: 'no node group could be planned' };
  const progressing: ConditionInput =
    c.rolling || c.readyReplicas < c.wanted
      ? { type: 'Progressing', status: 'True', reason: 'RollingOut', message: `${c.readyReplicas}/${c.wanted} replicas ready` }
      : { type: 'Progressing', status: 'False', reason: 'Complete', message: `${c.readyReplicas}/${c.wanted} replicas ready` };
  const ready: ConditionInput =
    !planned || c.lwsMissing
      ? { type: 'Ready', status: 'False', reason: degraded.reason, message: degraded.message }
      : c.readyReplicas >= c.wanted && !c.rolling
        ? {
            type: 'Ready',
            status: 'True',
            reason: c.wanted === 0 ? 'ScaledToZero' : 'AllReplicasReady',
            message: `${c.readyReplicas}/${c.wanted} replicas ready`,
          }
        : { type: 'Ready', status: 'False', reason: 'ReplicasNotReady', message: `${c.readyReplicas}/${c.wanted} replicas ready` };
  const auto = retuneEnabled(c.spec);
  const measured = c.groupStatus.filter((g) => g.measured);
  // CPU groups are never retuned (fraction 0, see planCpuGroup), so they count as settled.
  const cpuIds = new Set(c.groups.filter(isCpuGroup).map((g) => g.id));
  const settled = c.groupStatus.every((g) => cpuIds.has(g.name) || (g.retune?.stableCycles ?? 0) >= 3);
  const converged: ConditionInput = !auto
    ? { type: 'PlanConverged', status: 'True', reason: 'FixedFraction', message: 'the ACT fraction is fixed by the spec; no retuning' }
    : measured.length < c.groupStatus.length || c.groupStatus.length === 0
      ? { type: 'PlanConverged', status: 'Unknown', reason: 'AwaitingMeasurements', message: 'waiting for step timings from the pods' }
      : settled
        ? {
            type: 'PlanConverged',
            status: 'True',
            reason: 'Stable',
            message: 'measured timings keep the fraction within the hysteresis band',
          }
        : { type: 'PlanConverged', status: 'False', reason: 'Retuning', message: 'the feedback loop is still moving the ACT fraction' };
  return [ready, progressing, degraded, hostMem, converged];
}

async function writeStatus(deps: ReconcileDeps, hsd: HybridServeDeployment, status: HsdStatus): Promise<void> {
  if (sameStatus(hsd.status, status)) return;
  try {
    await deps.client.mergePatch(
      { type: R.hsd, namespace: hsd.metadata.namespace, name: hsd.metadata.name, subresource: 'status' },
      {
        metadata: { resourceVersion: hsd.metadata.resourceVersion },
        status: { ...status, nodeGroups: status.nodeGroups, conditions: status.conditions },
      },
    );
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
    return `{${Object.keys(v)
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

async function deleteIgnoringMissing(client: KubeClient, ref: Parameters<KubeClient['delete']>[0]): Promise<void> {
  try {
    await client.delete(ref);
  } catch (e) {
    if (!isNotFound(e)) throw e;
  }
}

function clamp(n: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, n));
}
function round(n: number, d: number): number {
  const f = 10 ** d;
  return Math.round(n * f) / f;
}
function summarise(values: string[]): string {
  const u = [...new Set(values)];
  return u.length === 0 ? '' : u.join(',');
}

/** Whether the feedback loop retunes the fraction ("auto" and retune enabled). */
export function retuneEnabled(spec: HybridServeDeployment['spec']): boolean {
  const r = resolveSpec(spec);
  return r.cache.actFraction === 'auto' && r.cache.retune.enabled;
}

export { LABEL_GROUP, LABEL_INSTANCE };
