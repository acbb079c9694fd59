// Desired child objects of a HybridServeDeployment (pure; no I/O). One Deployment and one
// ConfigMap (the plan) per node group, one Service across all groups. Every child carries the
// managed-by label and a controller ownerReference, so deletion of the HSD garbage-collects them.
import { createHash } from 'node:crypto';
import { API_VERSION, KIND, MANAGED_BY, type HybridServeDeployment, type OwnerReference } from '../api/types.js';
import type { NodeGroup } from './node-groups.js';
import { GPU_PRODUCT_LABEL, isCpuGroup } from './node-groups.js';
import type { PlanFile } from './plan.js';
import { bytesQuantity } from '../../planning/quantity.js';

export const LABEL_NAME = 'app.kubernetes.io/name';
export const LABEL_INSTANCE = 'app.kubernetes.io/instance';
export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const LABEL_GROUP = 'hybridserve.io/node-group';
export const ANNOTATION_PLAN_INPUT = 'hybridserve.io/plan-input';
export const ANNOTATION_GPU_PRODUCT = 'hybridserve.io/gpu-product';
export const PLAN_KEY = 'plan.json';
export const PLAN_MOUNT = '/etc/hybridserve';
export const DEFAULT_IMAGE = 'ghcr.io/hybridserve/hybridserve:0.1.0';
/** Where pvc://<claim>/<path> models are mounted: HYBRIDSERVE_MODEL_ROOT, as model/spec.ts resolves them. */
export const MODEL_ROOT = '/models';
/** The images' non-root user (docker/Dockerfile.server*: USER 65532:65532, HOME=/tmp). */
export const SERVER_UID = 65532;

/**
 * Pod and container securityContext of the serving pods (restricted Pod Security Standard). The
 * root filesystem is read-only: the server writes no files (plan and model are read-only mounts),
 * and /tmp, the images' HOME (e.g. the CUDA JIT cache under $HOME/.nv), is an emptyDir.
 */
export const POD_SECURITY_CONTEXT = {
  runAsNonRoot: true, runAsUser: SERVER_UID, runAsGroup: SERVER_UID, fsGroup: SERVER_UID, seccompProfile: { type: 'RuntimeDefault' },
} as const;
export const CONTAINER_SECURITY_CONTEXT = {
  allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, capabilities: { drop: ['ALL'] },
} as const;

/** The claim of a pvc://<claim>/<path> model URI, else undefined (the URI itself is validated by planning). */
export function pvcClaim(uri: string): string | undefined {
  const t = uri.trim();
  if (!t.startsWith('pvc://')) return undefined;
  const claim = t.slice('pvc://'.length).split('/')[0];
  return claim || undefined;
}

/** The engine device of the group's pods: cuda when they get GPUs, else cpu (`hybridserve serve --device`). */
export function serverDevice(hsd: HybridServeDeployment, group: NodeGroup): 'cpu' | 'cuda' {
  return (hsd.spec.gpusPerPod ?? 1) > 0 && !isCpuGroup(group) ? 'cuda' : 'cpu';
}

type Obj = Record<string, unknown>;

export function ownerReference(hsd: HybridServeDeployment): OwnerReference {
  return { apiVersion: API_VERSION, kind: KIND, name: hsd.metadata.name, uid: hsd.metadata.uid ?? '', controller: true, blockOwnerDeletion: true };
}

/** Labels that select every pod of the HSD (also the scale subresource's selector). */
export function selectorLabels(hsd: HybridServeDeployment): Record<string, string> {
  return { [LABEL_NAME]: 'hybridserve', [LABEL_INSTANCE]: hsd.metadata.name };
}
export function selectorString(hsd: HybridServeDeployment): string {
  return Object.entries(selectorLabels(hsd)).map(([k, v]) => `${k}=${v}`).join(',');
}

function labels(hsd: HybridServeDeployment, group?: NodeGroup): Record<string, string> {
  return { ...selectorLabels(hsd), [LABEL_MANAGED_BY]: MANAGED_BY, ...(group ? { [LABEL_GROUP]: group.id } : {}) };
}

function meta(hsd: HybridServeDeployment, name: string, group?: NodeGroup, annotations?: Record<string, string>): Obj {
  return {
    name, namespace: hsd.metadata.namespace, labels: labels(hsd, group), ownerReferences: [ownerReference(hsd)],
    ...(annotations ? { annotations } : {}),
  };
}

/**
 * Names stay within 63 characters: the group id is at most ~40; an HSD name over 22 characters is
 * shortened to 15 plus a hash of the whole name, so two long names never share a child.
 */
export function shortName(name: string): string {
  return name.length <= 22 ? name : `${name.slice(0, 15).replace(/-+$/, '')}-${createHash('sha256').update(name).digest('hex').slice(0, 6)}`;
}
export function deploymentName(hsd: HybridServeDeployment, group: NodeGroup): string { return `${shortName(hsd.metadata.name)}-${group.id}`; }
export function configMapName(hsd: HybridServeDeployment, group: NodeGroup): string { return `${deploymentName(hsd, group)}-plan`.slice(0, 253); }
export function serviceName(hsd: HybridServeDeployment): string { return hsd.metadata.name.slice(0, 63); }

export function configMap(hsd: HybridServeDeployment, group: NodeGroup, file: PlanFile, inputHash: string): Obj {
  return {
    apiVersion: 'v1', kind: 'ConfigMap',
    metadata: meta(hsd, configMapName(hsd, group), group, { [ANNOTATION_PLAN_INPUT]: inputHash, [ANNOTATION_GPU_PRODUCT]: group.gpuProduct }),
    data: { [PLAN_KEY]: JSON.stringify(file) },
  };
}

export function service(hsd: HybridServeDeployment): Obj {
  const port = hsd.spec.server?.port ?? 8000;
  return {
    apiVersion: 'v1', kind: 'Service',
    metadata: meta(hsd, serviceName(hsd)),
    spec: { selector: selectorLabels(hsd), ports: [{ name: 'http', port, targetPort: 'http', protocol: 'TCP' }] },
  };
}

export interface DeploymentPlan { memoryRequestBytes: number; memoryLimitBytes: number; hostMemoryBytes: number }

/**
 * The group's Deployment. Pods land only on the group's nodes (required node affinity on the
 * node names, plus the GPU product label), request the memory the plan sized, and mount the
 * plan ConfigMap; the server reloads plan.json live when the kubelet updates the file.
 */
export function deployment(hsd: HybridServeDeployment, group: NodeGroup, plan: DeploymentPlan, replicas: number): Obj {
  const spec = hsd.spec;
  const port = spec.server?.port ?? 8000;
  const device = serverDevice(hsd, group);
  const gpus = device === 'cuda' ? spec.gpusPerPod ?? 1 : 0;
  const planPath = `${PLAN_MOUNT}/${PLAN_KEY}`;
  const claim = pvcClaim(spec.model.uri);
  const env: Obj[] = [
    { name: 'HYBRIDSERVE_PLAN_FILE', value: planPath },
    // Read by server/runtime.ts to pick the hardware profile; CPU pods use none.
    ...(isCpuGroup(group) ? [] : [{ name: 'HYBRIDSERVE_GPU_PRODUCT', value: group.gpuProduct }]),
    ...(claim ? [{ name: 'HYBRIDSERVE_MODEL_ROOT', value: MODEL_ROOT }] : []),
  ];
  if (spec.server?.apiKeySecretRef) {
    env.push({ name: 'HYBRIDSERVE_API_KEYS', valueFrom: { secretKeyRef: { name: spec.server.apiKeySecretRef.name, key: spec.server.apiKeySecretRef.key } } });
  }
  // Settings go in as the server's own flags (cli/serve.ts parseServeArgs; test/unit/operator-server-args.test.ts
  // checks that the server parses each one back to the value in the spec).
  const extraArgs = [
    ...(spec.server?.maxConcurrentRequests ? ['--max-queue', String(spec.server.maxConcurrentRequests)] : []),
    ...(spec.server?.maxTokens ? ['--max-total-tokens', String(spec.server.maxTokens)] : []),
    ...(spec.engine?.threads ? ['--threads', String(spec.engine.threads)] : []),
  ];
  const resources: Obj = {
    requests: { memory: bytesQuantity(plan.memoryRequestBytes), ...(gpus > 0 ? { 'nvidia.com/gpu': String(gpus) } : {}) },
    limits: { memory: bytesQuantity(plan.memoryLimitBytes), ...(gpus > 0 ? { 'nvidia.com/gpu': String(gpus) } : {}) },
  };
  const groupAffinity = {
    nodeAffinity: {
      requiredDuringSchedulingIgnoredDuringExecution: {
        nodeSelectorTerms: [{ matchFields: [{ key: 'metadata.name', operator: 'In', values: group.nodeNames }] }],
      },
    },
  };
  const userAffinity = (spec.affinity ?? {}) as Obj;
  const podLabels = labels(hsd, group);
  const volumeMounts: Obj[] = [
    { name: 'plan', mountPath: PLAN_MOUNT, readOnly: true },
    { name: 'tmp', mountPath: '/tmp' },
    ...(claim ? [{ name: 'model', mountPath: `${MODEL_ROOT}/${claim}`, readOnly: true }] : []),
  ];
  const volumes: Obj[] = [
    { name: 'plan', configMap: { name: configMapName(hsd, group) } },
    { name: 'tmp', emptyDir: {} },
    ...(claim ? [{ name: 'model', persistentVolumeClaim: { claimName: claim, readOnly: true } }] : []),
  ];
  return {
    apiVersion: 'apps/v1', kind: 'Deployment',
    metadata: meta(hsd, deploymentName(hsd, group), group),
    spec: {
      replicas,
      selector: { matchLabels: { ...selectorLabels(hsd), [LABEL_GROUP]: group.id } },
      template: {
        metadata: { labels: podLabels },
        spec: {
          // A CPU group's nodes may carry no GPU label: the node-name affinity alone pins its pods.
          nodeSelector: { ...(spec.nodeSelector ?? {}), ...(isCpuGroup(group) ? {} : { [GPU_PRODUCT_LABEL]: group.gpuProduct }) },
          ...(spec.tolerations ? { tolerations: spec.tolerations } : {}),
          affinity: { ...userAffinity, ...groupAffinity },
          securityContext: POD_SECURITY_CONTEXT,
          // The server never calls the Kubernetes API: no token in the pod.
          automountServiceAccountToken: false,
          containers: [{
            name: 'server',
            image: spec.image ?? DEFAULT_IMAGE,
            args: ['serve', '--model', spec.model.uri, '--device', device, '--host', '0.0.0.0', '--port', String(port), '--plan', planPath,
              '--host-memory', String(plan.hostMemoryBytes), ...extraArgs],
            env,
            ports: [{ name: 'http', containerPort: port, protocol: 'TCP' }],
            resources,
            readinessProbe: { httpGet: { path: '/readyz', port: 'http' }, periodSeconds: 5 },
            livenessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 10, failureThreshold: 6 },
            securityContext: CONTAINER_SECURITY_CONTEXT,
            volumeMounts,
          }],
          volumes,
        },
      },
    },
  };
}
