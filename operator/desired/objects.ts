// Desired child objects of a HybridServeDeployment (pure; no I/O). One Deployment and one
// ConfigMap (the plan) per node group, one Service across all groups. Every child carries the
// managed-by label and a controller ownerReference, so deletion of the HSD garbage-collects them.
import { createHash } from 'node:crypto';
import { API_VERSION, KIND, MANAGED_BY, type HybridServeDeployment, type OwnerReference } from '../api/types.js';
import type { NodeGroup } from './node-groups.js';
import { GPU_PRODUCT_LABEL, isCpuGroup } from './node-groups.js';
import type { PlanFile } from './plan.js';
import { bytesQuantity } from '../../planning/quantity.js';
import { resolveSpec } from '../api/defaults.js';
import { mergeAffinity, startupProbe } from './pod.js';

export const LABEL_NAME = 'app.kubernetes.io/name';
export const LABEL_INSTANCE = 'app.kubernetes.io/instance';
export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const LABEL_GROUP = 'hybridserve.io/node-group';
export const ANNOTATION_PLAN_INPUT = 'hybridserve.io/plan-input';
export const ANNOTATION_GPU_PRODUCT = 'hybridserve.io/gpu-product';
export const PLAN_KEY = 'plan.json';
export const PLAN_MOUNT = '/etc/hybridserve';
/** Where pvc://<claim>/<path> models are mounted: HYBRIDSERVE_MODEL_ROOT, as model/spec.ts resolves them. */
export const MODEL_ROOT = '/models';
/** Where the API key Secret is mounted (a file the server re-reads on change; never an env var). */
export const API_KEY_MOUNT = '/var/run/hybridserve/api-key';
export const API_KEY_FILE = 'keys';
/** Size cap of the /tmp emptyDir (CUDA JIT cache, Node's temp files); a runaway writer gets the pod evicted, not the node's disk filled. */
export const TMP_SIZE_LIMIT = '1Gi';
/** The images' non-root user (docker/Dockerfile.server*: USER 65532:65532, HOME=/tmp). */
export const SERVER_UID = 65532;

/**
 * Pod and container securityContext of the serving pods (restricted Pod Security Standard). The
 * root filesystem is read-only: the server writes no files (plan and model are read-only mounts),
 * and /tmp, the images' HOME (e.g. the CUDA JIT cache under $HOME/.nv), is an emptyDir.
 */
export const POD_SECURITY_CONTEXT = {
  runAsNonRoot: true,
  runAsUser: SERVER_UID,
  runAsGroup: SERVER_UID,
  fsGroup: SERVER_UID,
  seccompProfile: { type: 'RuntimeDefault' },
} as const;
export const CONTAINER_SECURITY_CONTEXT = {
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  runAsNonRoot: true,
  capabilities: { drop: ['ALL'] },
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
  return resolveSpec(hsd.spec).gpusPerPod > 0 && !isCpuGroup(group) ? 'cuda' : 'cpu';
}

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

function labels(hsd: HybridServeDeployment, group?: NodeGroup): Record<string, string> {
  return { ...selectorLabels(hsd), [LABEL_MANAGED_BY]: MANAGED_BY, ...(group ? { [LABEL_GROUP]: group.id } : {}) };
}

function meta(hsd: HybridServeDeployment, name: string, group?: NodeGroup, annotations?: Record<string, string>): Obj {
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

export function service(hsd: HybridServeDeployment): Obj {
  const port = resolveSpec(hsd.spec).server.port;
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: meta(hsd, serviceName(hsd)),
    spec: { selector: selectorLabels(hsd), ports: [{ name: 'http', port, targetPort: 'http', protocol: 'TCP' }] },
  };
}

export interface DeploymentPlan {
  memoryRequestBytes: number;
  memoryLimitBytes: number;
  hostMemoryBytes: number;
  weightBytes?: number;
}

/**
 * The group's Deployment. Pods land only on the group's nodes (required node affinity on the
 * node names, plus the GPU product label), request the memory the plan sized, and mount the
 * plan ConfigMap; the server reloads plan.json live when the kubelet updates the file.
 */
export function deployment(hsd: HybridServeDeployment, group: NodeGroup, plan: DeploymentPlan, replicas: number): Obj {
  const spec = resolveSpec(hsd.spec);
  const port = spec.server.port;
  const device = serverDevice(hsd, group);
  const gpus = device === 'cuda' ? spec.gpusPerPod : 0;
  const planPath = `${PLAN_MOUNT}/${PLAN_KEY}`;
  const claim = pvcClaim(spec.model.uri);
  const apiKey = spec.server.apiKeySecretRef;
  const operatorEnv = new Set(['HYBRIDSERVE_PLAN_FILE', 'HYBRIDSERVE_GPU_PRODUCT', 'HYBRIDSERVE_MODEL_ROOT', 'HYBRIDSERVE_API_KEYS']);
  const env: Obj[] = [
    // User env first; the operator's own variables cannot be overridden (nor the API key smuggled back into env).
    ...((spec.pod?.env ?? []).filter((e) => !operatorEnv.has(e.name)) as unknown as Obj[]),
    { name: 'HYBRIDSERVE_PLAN_FILE', value: planPath },
    // Read by server/runtime.ts to pick the hardware profile; CPU pods use none.
    ...(isCpuGroup(group) ? [] : [{ name: 'HYBRIDSERVE_GPU_PRODUCT', value: group.gpuProduct }]),
    ...(claim ? [{ name: 'HYBRIDSERVE_MODEL_ROOT', value: MODEL_ROOT }] : []),
  ];
  const maxTotal = spec.limits?.maxTotalTokens ?? spec.server.maxTokens;
  // Settings go in as the server's own flags (cli/serve.ts parseServeArgs; test/unit/operator-pods.test.ts
  // checks that the server parses each one back to the value in the spec). Unset limits are omitted:
  // the server then derives them from the model's context window.
  const extraArgs = [
    ...(spec.server.maxConcurrentRequests ? ['--max-queue', String(spec.server.maxConcurrentRequests)] : []),
    ...(spec.limits?.maxPromptTokens ? ['--max-prompt-tokens', String(spec.limits.maxPromptTokens)] : []),
    ...(maxTotal ? ['--max-total-tokens', String(maxTotal)] : []),
    ...(spec.engine.threads ? ['--threads', String(spec.engine.threads)] : []),
    // The format the plan counted; fp16 (the server's default) is left out so existing pods keep their template.
    ...(spec.engine.weightDtype !== 'fp16' ? ['--weight-dtype', spec.engine.weightDtype] : []),
    ...(apiKey ? ['--api-key-file', `${API_KEY_MOUNT}/${API_KEY_FILE}`] : []),
  ];
  const cpu = spec.server.cpuRequest ?? (device === 'cpu' && spec.engine.threads ? spec.engine.threads : 1);
  const resources: Obj = {
    requests: { cpu: String(cpu), memory: bytesQuantity(plan.memoryRequestBytes), ...(gpus > 0 ? { 'nvidia.com/gpu': String(gpus) } : {}) },
    limits: { memory: bytesQuantity(plan.memoryLimitBytes), ...(gpus > 0 ? { 'nvidia.com/gpu': String(gpus) } : {}) },
  };
  const groupAffinity = {
    nodeAffinity: {
      requiredDuringSchedulingIgnoredDuringExecution: {
        nodeSelectorTerms: [{ matchFields: [{ key: 'metadata.name', operator: 'In', values: group.nodeNames }] }],
      },
    },
  };
  const pod = spec.pod ?? {};
  // The operator's labels win: they select the pods.
  const podLabels = { ...(pod.labels ?? {}), ...labels(hsd, group) };
  const volumeMounts: Obj[] = [
    { name: 'plan', mountPath: PLAN_MOUNT, readOnly: true },
    { name: 'tmp', mountPath: '/tmp' },
    ...(claim ? [{ name: 'model', mountPath: `${MODEL_ROOT}/${claim}`, readOnly: true }] : []),
    ...(apiKey ? [{ name: 'api-key', mountPath: API_KEY_MOUNT, readOnly: true }] : []),
  ];
  const volumes: Obj[] = [
    { name: 'plan', configMap: { name: configMapName(hsd, group) } },
    { name: 'tmp', emptyDir: { sizeLimit: TMP_SIZE_LIMIT } },
    ...(claim ? [{ name: 'model', persistentVolumeClaim: { claimName: claim, readOnly: true } }] : []),
    ...(apiKey
      ? [{ name: 'api-key', secret: { secretName: apiKey.name, items: [{ key: apiKey.key, path: API_KEY_FILE }], defaultMode: 0o440 } }]
      : []),
  ];
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: meta(hsd, deploymentName(hsd, group), group),
    spec: {
      replicas,
      selector: { matchLabels: { ...selectorLabels(hsd), [LABEL_GROUP]: group.id } },
      template: {
        metadata: { labels: podLabels, ...(pod.annotations ? { annotations: pod.annotations } : {}) },
        spec: {
          // A CPU group's nodes may carry no GPU label: the node-name affinity alone pins its pods.
          nodeSelector: { ...(spec.nodeSelector ?? {}), ...(isCpuGroup(group) ? {} : { [GPU_PRODUCT_LABEL]: group.gpuProduct }) },
          ...(spec.tolerations ? { tolerations: spec.tolerations } : {}),
          affinity: mergeAffinity(spec.affinity, groupAffinity),
          ...(pod.imagePullSecrets ? { imagePullSecrets: pod.imagePullSecrets } : {}),
          ...(pod.priorityClassName ? { priorityClassName: pod.priorityClassName } : {}),
          ...(pod.runtimeClassName ? { runtimeClassName: pod.runtimeClassName } : {}),
          ...(pod.topologySpreadConstraints ? { topologySpreadConstraints: pod.topologySpreadConstraints } : {}),
          securityContext: POD_SECURITY_CONTEXT,
          // The server never calls the Kubernetes API: no token in the pod.
          automountServiceAccountToken: false,
          containers: [
            {
              name: 'server',
              image: spec.image,
              args: [
                'serve',
                '--model',
                spec.model.uri,
                '--device',
                device,
                '--host',
                '0.0.0.0',
                '--port',
                String(port),
                '--plan',
                planPath,
                '--host-memory',
                String(plan.hostMemoryBytes),
                ...extraArgs,
              ],
              env,
              ports: [{ name: 'http', containerPort: port, protocol: 'TCP' }],
              resources,
              // Model load (reading and pinning the weights) can take minutes: the startupProbe holds the
              // liveness probe off until the server answers, sized from the weight bytes.
              startupProbe: startupProbe(spec.server.startupSeconds, plan.weightBytes),
              readinessProbe: { httpGet: { path: '/readyz', port: 'http' }, periodSeconds: 5 },
              livenessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 10, failureThreshold: 6 },
              securityContext: CONTAINER_SECURITY_CONTEXT,
              volumeMounts,
            },
          ],
          volumes,
        },
      },
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
      ingress: [{ from: [...from, operatorPeer], ports: [{ protocol: 'TCP', port: spec.server.port }] }],
    },
  };
}
