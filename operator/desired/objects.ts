// Desired child objects of a HybridServeDeployment (pure; no I/O). One Deployment (or, with
// parallelism.nodes > 1, a LeaderWorkerSet: ./lws.ts) and one ConfigMap (the plan) per node group,
// one Service across all groups; the pod template is ./pod.ts. Every child carries the managed-by
// label and a controller ownerReference, so deletion of the HSD garbage-collects them.
import { createHash } from 'node:crypto';
import { API_VERSION, KIND, MANAGED_BY, type HybridServeDeployment, type OwnerReference } from '../api/types.js';
import type { NodeGroup } from './node-groups.js';
import type { PlanFile } from './plan.js';
import { resolveSpec } from '../api/defaults.js';
import { LWS_WORKER_INDEX_LABEL, PLAN_KEY, podTemplate, usesLeaderWorkerSet, type PodPlan } from './pod.js';

export const LABEL_NAME = 'app.kubernetes.io/name';
export const LABEL_INSTANCE = 'app.kubernetes.io/instance';
export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const LABEL_GROUP = 'hybridserve.io/node-group';
export const ANNOTATION_PLAN_INPUT = 'hybridserve.io/plan-input';
export const ANNOTATION_GPU_PRODUCT = 'hybridserve.io/gpu-product';
type Obj = Record<string, unknown>;

export function ownerReference(hsd: HybridServeDeployment): OwnerReference {
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    name: hsd.metadata.name,
    uid: hsd.metadata.uid ?? '',
    controller: true,
    blockOwnerDeletion: true,
  };
}

/** Labels that select every pod of the HSD (also the scale subresource's selector). */
export function selectorLabels(hsd: HybridServeDeployment): Record<string, string> {
  return { [LABEL_NAME]: 'hybridserve', [LABEL_INSTANCE]: hsd.metadata.name };
}
export function selectorString(hsd: HybridServeDeployment): string {
  return Object.entries(selectorLabels(hsd))
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

export function labels(hsd: HybridServeDeployment, group?: NodeGroup): Record<string, string> {
  return { ...selectorLabels(hsd), [LABEL_MANAGED_BY]: MANAGED_BY, ...(group ? { [LABEL_GROUP]: group.id } : {}) };
}

export function meta(hsd: HybridServeDeployment, name: string, group?: NodeGroup, annotations?: Record<string, string>): Obj {
  return {
    name,
    namespace: hsd.metadata.namespace,
    labels: labels(hsd, group),
    ownerReferences: [ownerReference(hsd)],
    ...(annotations ? { annotations } : {}),
  };
}

/**
 * Names stay within 63 characters: the group id is at most ~40; an HSD name over 22 characters is
 * shortened to 15 plus a hash of the whole name, so two long names never share a child.
 */
export function shortName(name: string): string {
  return name.length <= 22
    ? name
    : `${name.slice(0, 15).replace(/-+$/, '')}-${createHash('sha256').update(name).digest('hex').slice(0, 6)}`;
}
export function deploymentName(hsd: HybridServeDeployment, group: NodeGroup): string {
  return `${shortName(hsd.metadata.name)}-${group.id}`;
}
export function configMapName(hsd: HybridServeDeployment, group: NodeGroup): string {
  return `${deploymentName(hsd, group)}-plan`.slice(0, 253);
}
export function serviceName(hsd: HybridServeDeployment): string {
  return hsd.metadata.name.slice(0, 63);
}

export function configMap(hsd: HybridServeDeployment, group: NodeGroup, file: PlanFile, inputHash: string): Obj {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: meta(hsd, configMapName(hsd, group), group, {
      [ANNOTATION_PLAN_INPUT]: inputHash,
      [ANNOTATION_GPU_PRODUCT]: group.gpuProduct,
    }),
    data: { [PLAN_KEY]: JSON.stringify(file) },
  };
}

/** In-cluster URL of the HSD's Service (status.url). */
export function serviceUrl(hsd: HybridServeDeployment): string {
  return `http://${serviceName(hsd)}.${hsd.metadata.namespace ?? 'default'}.svc:${resolveSpec(hsd.spec).server.port}`;
}

/** Labels the Service selects: every pod of a Deployment, only the leaders (worker index 0) of LWS groups. */
export function servingSelector(hsd: HybridServeDeployment): Record<string, string> {
  return usesLeaderWorkerSet(hsd) ? { ...selectorLabels(hsd), [LWS_WORKER_INDEX_LABEL]: '0' } : selectorLabels(hsd);
}

export function service(hsd: HybridServeDeployment): Obj {
  const port = resolveSpec(hsd.spec).server.port;
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: meta(hsd, serviceName(hsd)),
    spec: { selector: servingSelector(hsd), ports: [{ name: 'http', port, targetPort: 'http', protocol: 'TCP' }] },
  };
}

/**
 * The group's Deployment (parallelism.nodes 1). Pods land only on the group's nodes, request the
 * memory the plan sized, and mount the plan ConfigMap (operator/desired/pod.ts builds the template);
 * the server reloads plan.json live when the kubelet updates the file.
 */
export function deployment(hsd: HybridServeDeployment, group: NodeGroup, plan: PodPlan, replicas: number): Obj {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: meta(hsd, deploymentName(hsd, group), group),
    spec: {
      replicas,
      selector: { matchLabels: { ...selectorLabels(hsd), [LABEL_GROUP]: group.id } },
      template: podTemplate(hsd, group, plan, { labels: labels(hsd, group), planConfigMap: configMapName(hsd, group) }),
    },
  };
}

/** An optional PodDisruptionBudget over all the HSD's pods. */
export function podDisruptionBudget(hsd: HybridServeDeployment): Obj {
  const spec = resolveSpec(hsd.spec);
  return {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: meta(hsd, serviceName(hsd)),
    spec: { maxUnavailable: spec.podDisruptionBudget.maxUnavailable, selector: { matchLabels: selectorLabels(hsd) } },
  };
}

/**
 * An optional NetworkPolicy: ingress to the serving port only from the listed peers (default: pods
 * of the same namespace) and from the operator's pods (the feedback loop scrapes their stats).
 */
export function networkPolicy(hsd: HybridServeDeployment, operatorPeer: Obj): Obj {
  const spec = resolveSpec(hsd.spec);
  const from = spec.networkPolicy.from && spec.networkPolicy.from.length > 0 ? spec.networkPolicy.from : [{ podSelector: {} }];
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: meta(hsd, serviceName(hsd)),
    spec: {
      podSelector: { matchLabels: selectorLabels(hsd) },
      policyTypes: ['Ingress'],
      ingress: [
        { from: [...from, operatorPeer], ports: [{ protocol: 'TCP', port: spec.server.port }] },
        // LWS groups: the stages reach each other on any port (the leader's rendezvous, NCCL's own sockets).
        ...(usesLeaderWorkerSet(hsd) ? [{ from: [{ podSelector: { matchLabels: selectorLabels(hsd) } }] }] : []),
      ],
    },
  };
}
