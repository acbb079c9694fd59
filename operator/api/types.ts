// TypeScript types of the HybridServeDeployment custom resource. The CRD's openAPIV3Schema is
// written in ./schema.ts; test/unit/operator-crd.test.ts checks that every field named here exists
// in the schema and the other way round, so the two cannot drift apart silently.
import type { WeightDtype } from '../../planning/model-profile.js';

export const GROUP = 'hybridserve.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = 'HybridServeDeployment';
export const PLURAL = 'hybridservedeployments';
export const SINGULAR = 'hybridservedeployment';
export const SHORT_NAME = 'hsd';
export const FINALIZER = `${GROUP}/finalizer`;
export const FIELD_MANAGER = 'hybridserve-operator';
export const MANAGED_BY = 'hybridserve-operator';

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  deletionTimestamp?: string;
  creationTimestamp?: string;
  ownerReferences?: OwnerReference[];
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface HsdSpec {
  model: { uri: string; preset?: string };
  image?: string;
  replicas?: number;
  gpusPerPod?: number;
  /** Pods per replica (a LeaderWorkerSet group when > 1); each runs gpusPerPod pipeline stages. */
  parallelism?: { nodes?: number };
  nodeSelector?: Record<string, string>;
  tolerations?: Record<string, unknown>[];
  affinity?: Record<string, unknown>;
  cache?: {
    /** 'auto' (planned and retuned) or a fixed fraction of cached tokens kept as ACT. */
    actFraction?: 'auto' | number;
    blockTokens?: number;
    /** A quantity ("48Gi" or bytes) per pod, or the object form (bytes and headroomBytes are quantities too). */
    hostMemory?: Quantity | HostMemorySpec;
    retune?: {
      enabled?: boolean;
      intervalSeconds?: number;
      minActFraction?: number;
      maxActFraction?: number;
      hysteresis?: number;
      damping?: number;
      maxStep?: number;
    };
  };
  engine?: {
    maxBatch?: number;
    elementBytes?: number;
    promptTokens?: number;
    genTokens?: number;
    threads?: number;
    /** Layer weight format the server loads (planning's WeightDtype); the plan counts its bytes. */
    weightDtype?: WeightDtype;
  };
  slo?: { tpotSeconds?: number };
  limits?: { maxPromptTokens?: number; maxTotalTokens?: number };
  server?: {
    apiKeySecretRef?: { name: string; key: string };
    maxConcurrentRequests?: number;
    maxTokens?: number;
    port?: number;
    startupSeconds?: number;
    cpuRequest?: Quantity;
  };
  pod?: {
    annotations?: Record<string, string>;
    labels?: Record<string, string>;
    imagePullSecrets?: { name: string }[];
    priorityClassName?: string;
    runtimeClassName?: string;
    topologySpreadConstraints?: Record<string, unknown>[];
    env?: EnvVar[];
  };
  podDisruptionBudget?: { enabled?: boolean; maxUnavailable?: number };
  networkPolicy?: { enabled?: boolean; from?: Record<string, unknown>[] };
  autoscaling?: {
    enabled?: boolean;
    minReplicas?: number;
    maxReplicas?: number;
    metric?: 'queueDepth' | 'tokensPerSecond';
    target?: number;
    scaleToZeroAfter?: string | number;
  };
}

/** A Kubernetes quantity string ("48Gi", "500m") or a plain number. */
export type Quantity = string | number;
export interface HostMemorySpec {
  share?: number;
  bytes?: Quantity;
  headroomBytes?: Quantity;
}
/** core/v1 EnvVar (only the parts the operator inspects are typed). */
export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string }; [k: string]: unknown };
}

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export interface MeasuredFigures {
  tokensPerSecond: number;
  queueDepth: number;
  transferSeconds: number;
  computeSeconds: number;
  recomputeSeconds: number;
  idleSeconds: number;
  steps: number;
  pods: number;
  at: string;
}

export interface NodeGroupStatus {
  name: string;
  gpuProduct: string;
  nodes: number;
  allocatableMemoryBytes: number;
  replicas: number;
  readyReplicas: number;
  actFraction: number;
  hostMemoryBytes: number;
  kvBlocks: number;
  actBlocks: number;
  maxBatch: number;
  planGeneration: number;
  predictedTokensPerSecond: number;
  reason: string;
  measured?: MeasuredFigures;
  retune?: { lastDirection: -1 | 0 | 1; stableCycles: number };
}

export interface HsdStatus {
  observedGeneration?: number;
  replicas?: number;
  readyReplicas?: number;
  /** Label selector of the pods, as a string, for the scale subresource (HPA). */
  selector?: string;
  /** In-cluster URL of the Service (http://<service>.<namespace>.svc:<port>). */
  url?: string;
  /** Printer columns: a one-line summary of the groups' fractions and host memory. */
  actFraction?: string;
  hostMemory?: string;
  /** Printer column: the layer weight format the pods load (spec.engine.weightDtype, defaulted). */
  weightDtype?: string;
  conditions?: Condition[];
  nodeGroups?: NodeGroupStatus[];
  autoscaler?: { desiredReplicas: number; metric: string; value: number; lastScaleTime?: string };
}

export interface HybridServeDeployment {
  apiVersion: typeof API_VERSION;
  kind: typeof KIND;
  metadata: ObjectMeta;
  spec: HsdSpec;
  status?: HsdStatus;
}

/** The spec fields whose schema paths must exist (kept in step with the interfaces above by a test). */
export const SPEC_FIELD_PATHS: readonly string[] = [
  'model.uri',
  'model.preset',
  'image',
  'replicas',
  'gpusPerPod',
  'parallelism.nodes',
  'nodeSelector',
  'tolerations',
  'affinity',
  'cache.actFraction',
  'cache.blockTokens',
  'cache.hostMemory',
  'cache.retune.enabled',
  'cache.retune.intervalSeconds',
  'cache.retune.minActFraction',
  'cache.retune.maxActFraction',
  'cache.retune.hysteresis',
  'cache.retune.damping',
  'cache.retune.maxStep',
  'engine.maxBatch',
  'engine.elementBytes',
  'engine.promptTokens',
  'engine.genTokens',
  'engine.threads',
  'engine.weightDtype',
  'slo.tpotSeconds',
  'limits.maxPromptTokens',
  'limits.maxTotalTokens',
  'server.apiKeySecretRef.name',
  'server.apiKeySecretRef.key',
  'server.maxConcurrentRequests',
  'server.maxTokens',
  'server.port',
  'server.startupSeconds',
  'server.cpuRequest',
  'pod.annotations',
  'pod.labels',
  'pod.imagePullSecrets',
  'pod.priorityClassName',
  'pod.runtimeClassName',
  'pod.topologySpreadConstraints',
  'pod.env',
  'podDisruptionBudget.enabled',
  'podDisruptionBudget.maxUnavailable',
  'networkPolicy.enabled',
  'networkPolicy.from',
  'autoscaling.enabled',
  'autoscaling.minReplicas',
  'autoscaling.maxReplicas',
  'autoscaling.metric',
  'autoscaling.target',
  'autoscaling.scaleToZeroAfter',
];
