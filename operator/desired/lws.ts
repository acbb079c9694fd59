// The LeaderWorkerSet of a node group when one replica spans several pods (spec.parallelism.nodes
// > 1), and how its status reads as the HSD's readiness. Pure. One LWS group = one replica: a
// leader (rank 0: engine core, HTTP, the rendezvous) and nodes - 1 workers (one pipeline stage per
// GPU each), built by the same pod template builder as a Deployment's pods (./pod.ts).
import type { HybridServeDeployment } from '../api/types.js';
import { resolveSpec } from '../api/defaults.js';
import type { NodeGroup } from './node-groups.js';
import { configMapName, deploymentName, labels, meta, selectorLabels } from './objects.js';
import { LWS_WORKER_INDEX_LABEL, podTemplate, type PodPlan } from './pod.js';

export { usesLeaderWorkerSet } from './pod.js';

export const LWS_API_VERSION = 'leaderworkerset.x-k8s.io/v1';
export const LWS_KIND = 'LeaderWorkerSet';
/** Set by the LWS controller on every pod: one value per group, so a spread constraint can count a group's pods. */
export const LWS_GROUP_KEY_LABEL = 'leaderworkerset.sigs.k8s.io/group-key';

type Obj = Record<string, unknown>;

/** LWS names equal the Deployment names they replace: one per node group. */
export const leaderWorkerSetName = deploymentName;

/** The pods of one group go to different nodes: "spread over nodes" is the point of parallelism.nodes. */
function spreadGroupOverNodes(template: Obj, hsd: HybridServeDeployment): Obj {
  const spec = template.spec as Obj & { topologySpreadConstraints?: Obj[] };
  const spread = {
    maxSkew: 1,
    topologyKey: 'kubernetes.io/hostname',
    whenUnsatisfiable: 'DoNotSchedule',
    labelSelector: { matchLabels: selectorLabels(hsd) },
    matchLabelKeys: [LWS_GROUP_KEY_LABEL],
  };
  return { ...template, spec: { ...spec, topologySpreadConstraints: [...(spec.topologySpreadConstraints ?? []), spread] } };
}

export function leaderWorkerSet(hsd: HybridServeDeployment, group: NodeGroup, plan: PodPlan, replicas: number): Obj {
  const size = resolveSpec(hsd.spec).parallelism.nodes;
  const base = { labels: labels(hsd, group), planConfigMap: configMapName(hsd, group) };
  const template = (role: 'leader' | 'worker') =>
    spreadGroupOverNodes(podTemplate(hsd, group, plan, { ...base, pipeline: { role, worldSize: size } }), hsd);
  return {
    apiVersion: LWS_API_VERSION,
    kind: LWS_KIND,
    metadata: meta(hsd, leaderWorkerSetName(hsd, group), group),
    spec: {
      replicas,
      // Workers start with the leader, not after it is Ready: the leader becomes ready only once
      // every stage has joined the rendezvous, so waiting for it would deadlock.
      startupPolicy: 'LeaderCreated',
      leaderWorkerTemplate: {
        size,
        // One lost stage stops the pipeline: the whole group restarts and meets at the rendezvous again.
        restartPolicy: 'RecreateGroupOnPodRestart',
        leaderTemplate: template('leader'),
        workerTemplate: template('worker'),
      },
    },
  };
}

/** Whether a pod serves the HSD's API (and its /stats): any Deployment pod, an LWS group's leader only. */
export function servesHttp(pod: { metadata: { labels?: Record<string, string> } }): boolean {
  const index = pod.metadata.labels?.[LWS_WORKER_INDEX_LABEL];
  return index === undefined || index === '0';
}

export interface LeaderWorkerSetLike {
  metadata: { name: string; annotations?: Record<string, string>; labels?: Record<string, string>; ownerReferences?: { uid: string }[] };
  spec?: { replicas?: number };
  status?: { readyReplicas?: number; replicas?: number; conditions?: { type: string; status: string }[] };
}

/**
 * Ready replicas and whether the LWS is still moving. A group counts ready only when all its pods
 * are (LWS readyReplicas is all-or-nothing per group); Progressing or UpdateInProgress True, or no
 * LWS yet, means it is still rolling out.
 */
export function leaderWorkerSetReadiness(
  lws: LeaderWorkerSetLike | undefined,
  wanted: number,
): { readyReplicas: number; rolling: boolean } {
  if (!lws) return { readyReplicas: 0, rolling: wanted > 0 };
  const cond = (t: string) => lws.status?.conditions?.find((c) => c.type === t)?.status === 'True';
  return {
    readyReplicas: Math.min(wanted, lws.status?.readyReplicas ?? 0),
    rolling: cond('Progressing') || cond('UpdateInProgress'),
  };
}
