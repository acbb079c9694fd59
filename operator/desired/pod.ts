// The serving pod template (pure): ONE builder for a Deployment's pods and for a LeaderWorkerSet's
// leader and workers, so that every pod of an HSD gets the same security context, volumes, resources
// and policy-relevant fields. Also the helpers it uses: merging the user's affinity with the node
// group's, and a startupProbe sized for the model load.
import type { HybridServeDeployment } from '../api/types.js';
import { maxTotalTokensOf, resolveSpec } from '../api/defaults.js';
import { bytesQuantity } from '../../planning/quantity.js';
import { GPU_PRODUCT_LABEL, isCpuGroup, type NodeGroup } from './node-groups.js';

type Obj = Record<string, unknown>;

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

interface Term {
  matchExpressions?: unknown[];
  matchFields?: unknown[];
}

/**
 * The user's affinity with the group's required node affinity ANDed in. Required nodeSelectorTerms
 * are ORed by Kubernetes, so every user term gets the group's requirements added (a cross product);
 * preferred terms, pod (anti-)affinity and everything else of the user's are kept as given.
 */
export function mergeAffinity(
  user: Obj | undefined,
  group: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: Term[] } } },
): Obj {
  const u = (user ?? {}) as Obj & {
    nodeAffinity?: Obj & { requiredDuringSchedulingIgnoredDuringExecution?: { nodeSelectorTerms?: Term[] } };
  };
  const groupTerms = group.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms;
  const userTerms = u.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms ?? [];
  const terms =
    userTerms.length === 0
      ? groupTerms
      : userTerms.flatMap((ut) =>
          groupTerms.map((gt) => {
            const matchExpressions = [...(ut.matchExpressions ?? []), ...(gt.matchExpressions ?? [])];
            const matchFields = [...(ut.matchFields ?? []), ...(gt.matchFields ?? [])];
            return { ...(matchExpressions.length ? { matchExpressions } : {}), ...(matchFields.length ? { matchFields } : {}) };
          }),
        );
  return {
    ...u,
    nodeAffinity: { ...(u.nodeAffinity ?? {}), requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: terms } },
  };
}

const PROBE_PERIOD_SECONDS = 10;
/** Floor of the load time: process start, tokenizer, engine init. */
const BASE_STARTUP_SECONDS = 120;
/** A conservative read-and-pin rate for the weights (network volumes are often this slow). */
const LOAD_BYTES_PER_SECOND = 100e6;

/** Seconds the server may take to start: the spec's, else sized from the weight bytes. */
export function startupSeconds(explicit: number | undefined, weightBytes: number | undefined): number {
  if (explicit !== undefined) return explicit;
  return BASE_STARTUP_SECONDS + Math.ceil((weightBytes ?? 0) / LOAD_BYTES_PER_SECOND);
}

export function startupProbe(explicit: number | undefined, weightBytes: number | undefined): Obj {
  const seconds = startupSeconds(explicit, weightBytes);
  return {
    httpGet: { path: '/healthz', port: 'http' },
    periodSeconds: PROBE_PERIOD_SECONDS,
    failureThreshold: Math.ceil(seconds / PROBE_PERIOD_SECONDS),
  };
}

/** What the pod template needs of the plan. */
export interface PodPlan {
  memoryRequestBytes: number;
  memoryLimitBytes: number;
  hostMemoryBytes: number;
  weightBytes?: number;
}

/** LeaderWorkerSet label with the pod's index in its group (0: the leader); set by the LWS controller. */
export const LWS_WORKER_INDEX_LABEL = 'leaderworkerset.sigs.k8s.io/worker-index';
/** Port of the leader's rendezvous (the NCCL unique id goes out over it; activations go over NCCL). */
export const RENDEZVOUS_PORT = 29500;

/** Whether the HSD's replicas are LeaderWorkerSet groups (parallelism.nodes > 1) rather than Deployment pods. */
export function usesLeaderWorkerSet(hsd: HybridServeDeployment): boolean {
  return resolveSpec(hsd.spec).parallelism.nodes > 1;
}

/** How a pod of a multi-pod replica finds its place in the pipeline. */
export interface PipelineRole {
  role: 'leader' | 'worker';
  /** Pods in the group (LWS size): the world size. */
  worldSize: number;
}

export interface PodTemplateOptions {
  /** Labels of the pod (the operator's; they win over the user's pod.labels). */
  labels: Record<string, string>;
  planConfigMap: string;
  /** Set for the pods of a LeaderWorkerSet. */
  pipeline?: PipelineRole;
}

const OPERATOR_ENV = new Set([
  'HYBRIDSERVE_PLAN_FILE',
  'HYBRIDSERVE_GPU_PRODUCT',
  'HYBRIDSERVE_MODEL_ROOT',
  'HYBRIDSERVE_API_KEYS',
  'HYBRIDSERVE_RANK',
  'HYBRIDSERVE_WORLD_SIZE',
  'HYBRIDSERVE_LEADER_ADDRESS',
  'HYBRIDSERVE_PIPELINE_TOKEN',
]);

/**
 * The rank/world-size/leader wiring of an LWS pod. The rank comes from the worker-index label
 * (downward API: set on every pod of the group, 0 on the leader); the world size is the group
 * size; the leader address is LWS_LEADER_ADDRESS (injected by LWS into every container), expanded
 * by the kubelet in args, where, unlike in env values, the order of the variables does not matter.
 * The pipeline token is the HSD's uid: the ranks' rendezvous and data connections refuse a peer
 * without it, which keeps out pods that cannot read this namespace's objects (networkPolicy keeps
 * out the rest).
 */
function pipelineEnv(hsd: HybridServeDeployment, p: PipelineRole): Obj[] {
  return [
    { name: 'HYBRIDSERVE_RANK', valueFrom: { fieldRef: { fieldPath: `metadata.labels['${LWS_WORKER_INDEX_LABEL}']` } } },
    { name: 'HYBRIDSERVE_WORLD_SIZE', value: String(p.worldSize) },
    ...(hsd.metadata.uid ? [{ name: 'HYBRIDSERVE_PIPELINE_TOKEN', value: hsd.metadata.uid }] : []),
  ];
}

/** The serving pod template of one node group. */
export function podTemplate(hsd: HybridServeDeployment, group: NodeGroup, plan: PodPlan, o: PodTemplateOptions): Obj {
  const spec = resolveSpec(hsd.spec);
  const port = spec.server.port;
  const device = serverDevice(hsd, group);
  const gpus = device === 'cuda' ? spec.gpusPerPod : 0;
  const planPath = `${PLAN_MOUNT}/${PLAN_KEY}`;
  const claim = pvcClaim(spec.model.uri);
  const apiKey = spec.server.apiKeySecretRef;
  const env: Obj[] = [
    // User env first; the operator's own variables cannot be overridden (nor the API key smuggled back into env).
    ...((spec.pod?.env ?? []).filter((e) => !OPERATOR_ENV.has(e.name)) as unknown as Obj[]),
    { name: 'HYBRIDSERVE_PLAN_FILE', value: planPath },
    // Read by server/runtime.ts to pick the hardware profile; CPU pods use none.
    ...(isCpuGroup(group) ? [] : [{ name: 'HYBRIDSERVE_GPU_PRODUCT', value: group.gpuProduct }]),
    ...(claim ? [{ name: 'HYBRIDSERVE_MODEL_ROOT', value: MODEL_ROOT }] : []),
    ...(o.pipeline ? pipelineEnv(hsd, o.pipeline) : []),
  ];
  const maxTotal = maxTotalTokensOf(spec);
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
    // One pipeline stage per GPU of the pod; a one-GPU pod keeps the server's default.
    ...(gpus > 1 ? ['--gpus', String(gpus)] : []),
    ...(o.pipeline ? ['--leader-address', `$(LWS_LEADER_ADDRESS):${RENDEZVOUS_PORT}`] : []),
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
  const podLabels = { ...(pod.labels ?? {}), ...o.labels };
  const volumeMounts: Obj[] = [
    { name: 'plan', mountPath: PLAN_MOUNT, readOnly: true },
    { name: 'tmp', mountPath: '/tmp' },
    ...(claim ? [{ name: 'model', mountPath: `${MODEL_ROOT}/${claim}`, readOnly: true }] : []),
    ...(apiKey ? [{ name: 'api-key', mountPath: API_KEY_MOUNT, readOnly: true }] : []),
  ];
  const volumes: Obj[] = [
    { name: 'plan', configMap: { name: o.planConfigMap } },
    { name: 'tmp', emptyDir: { sizeLimit: TMP_SIZE_LIMIT } },
    ...(claim ? [{ name: 'model', persistentVolumeClaim: { claimName: claim, readOnly: true } }] : []),
    ...(apiKey
      ? [{ name: 'api-key', secret: { secretName: apiKey.name, items: [{ key: apiKey.key, path: API_KEY_FILE }], defaultMode: 0o440 } }]
      : []),
  ];
  // Workers serve /healthz only (the leader owns the engine core and HTTP): their readiness is liveness.
  const readyPath = o.pipeline?.role === 'worker' ? '/healthz' : '/readyz';
  const ports: Obj[] = [
    { name: 'http', containerPort: port, protocol: 'TCP' },
    ...(o.pipeline?.role === 'leader' ? [{ name: 'rendezvous', containerPort: RENDEZVOUS_PORT, protocol: 'TCP' }] : []),
  ];
  return {
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
          ports,
          resources,
          // Model load (reading and pinning the weights) can take minutes: the startupProbe holds the
          // liveness probe off until the server answers, sized from the weight bytes.
          startupProbe: startupProbe(spec.server.startupSeconds, plan.weightBytes),
          readinessProbe: { httpGet: { path: readyPath, port: 'http' }, periodSeconds: 5 },
          livenessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 10, failureThreshold: 6 },
          securityContext: CONTAINER_SECURITY_CONTEXT,
          volumeMounts,
        },
      ],
      volumes,
    },
  };
}
