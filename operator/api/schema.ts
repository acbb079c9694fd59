// The HybridServeDeployment CRD, written once as data. crds/hybridservedeployments.yaml is GENERATED
// from crdManifest() by scripts/gen-crd.mjs; a unit test fails when the committed YAML differs.
import { GROUP, KIND, PLURAL, SHORT_NAME, SINGULAR, VERSION } from './types.js';

type Schema = Record<string, unknown>;
const int = (extra: Schema = {}): Schema => ({ type: 'integer', format: 'int64', ...extra });
const num = (extra: Schema = {}): Schema => ({ type: 'number', ...extra });
const str = (extra: Schema = {}): Schema => ({ type: 'string', ...extra });
const bool = (extra: Schema = {}): Schema => ({ type: 'boolean', ...extra });
const obj = (properties: Record<string, Schema>, extra: Schema = {}): Schema => ({ type: 'object', properties, ...extra });
const freeObject = (description: string): Schema => ({ type: 'object', description, 'x-kubernetes-preserve-unknown-fields': true });
const fraction = (description: string, extra: Schema = {}): Schema => num({ description, minimum: 0, maximum: 1, ...extra });

const specSchema: Schema = obj({
  model: obj({
    uri: str({ description: 'A model SPEC (synthetic:<preset>[?seed=N] or a checkpoint path) or pvc://<claim>/<path> (the claim is mounted read-only at /models/<claim>).', minLength: 1 }),
    preset: str({ description: 'Architecture preset used for planning when uri is a checkpoint (e.g. opt-13b); synthetic URIs name it already.' }),
  }, { required: ['uri'] }),
  image: str({ description: 'Server container image.', default: 'ghcr.io/hybridserve/hybridserve:0.1.0' }),
  replicas: int({ description: 'Serving pods across all node groups; also the scale subresource.', minimum: 0, default: 1 }),
  gpusPerPod: int({ description: 'nvidia.com/gpu per pod; > 0 runs the CUDA engine (server --device cuda), 0 the CPU engine on any node (--device cpu).', minimum: 0, maximum: 8, default: 1,
    'x-kubernetes-validations': [{ rule: 'self == oldSelf', message: 'gpusPerPod is immutable' }] }),
  nodeSelector: { type: 'object', additionalProperties: { type: 'string' }, description: 'Extra node selector for every group.' },
  tolerations: { type: 'array', items: freeObject('A core/v1 Toleration.') },
  affinity: freeObject('A core/v1 Affinity, merged with the node group affinity.'),
  cache: obj({
    actFraction: {
      description: '"auto" (planned per node group and retuned from measurements) or a fixed number in [0, 1].',
      'x-kubernetes-preserve-unknown-fields': true,
      default: 'auto',
      'x-kubernetes-validations': [{
        rule: 'type(self) == string ? self == "auto" : (double(self) >= 0.0 && double(self) <= 1.0)',
        message: 'actFraction must be "auto" or a number in [0, 1]',
      }],
    },
    blockTokens: int({ description: 'Tokens per cache block.', minimum: 1, maximum: 1024, default: 16,
      'x-kubernetes-validations': [{ rule: 'self == oldSelf', message: 'blockTokens is immutable' }] }),
    hostMemory: obj({
      share: fraction('Share of the node allocatable memory (less headroom) for one pod; default 1 / pods per node.', { minimum: 0.01 }),
      bytes: int({ description: 'Absolute host memory per pod; overrides share.', minimum: 1 }),
      headroomBytes: int({ description: 'Kept back for the runtime.', minimum: 0 }),
    }, { default: {} }),
    retune: obj({
      enabled: bool({ default: true }),
      intervalSeconds: int({ minimum: 1, maximum: 3600, default: 30 }),
      minActFraction: fraction('Lower bound of the retuned fraction. Unset (both bounds): the range the planned pools serve at full batch.'),
      maxActFraction: fraction('Upper bound of the retuned fraction (see minActFraction).'),
      hysteresis: fraction('Relative imbalance ignored before the fraction moves.', { default: 0.1 }),
      damping: fraction('Share of the suggested step taken each cycle.', { default: 0.5 }),
      maxStep: fraction('Largest change of the fraction per cycle.', { default: 0.1 }),
    }, {
      default: {},
      'x-kubernetes-validations': [{ rule: '!has(self.minActFraction) || !has(self.maxActFraction) || self.minActFraction <= self.maxActFraction', message: 'cache.retune.minActFraction must be <= maxActFraction' }],
    }),
  }, { default: {} }),
  // Every engine/server field reaches the server (docs/operator.md "What the server receives"): as a
  // `hybridserve serve` flag, an env var, or the plan file; planning-only fields say so. Bounds
  // match the server's own flag checks (cli/serve.ts), so a valid HSD never makes a pod crash-loop.
  engine: obj({
    maxBatch: int({ description: 'Cap on the planned batch (sequences per engine step); reaches the server as plan.json maxBatch.', minimum: 1, maximum: 4096 }),
    elementBytes: int({ description: 'Planning only: bytes per weight/cache element the GPU plan assumes (the CUDA engine stores fp16, the CPU engine fp32).', enum: [2, 4], default: 2 }),
    promptTokens: int({ description: 'Planning only: prompt length of the workload the plan is sized for.', minimum: 1, default: 512 }),
    genTokens: int({ description: 'Planning only: generated tokens per request of the workload the plan is sized for.', minimum: 1, default: 128 }),
    threads: int({ description: 'CPU engine threads (server --threads; default all cores).', minimum: 1, maximum: 256 }),
  }),
  server: obj({
    apiKeySecretRef: obj({ name: str({ minLength: 1 }), key: str({ minLength: 1 }) }, {
      required: ['name', 'key'], description: 'Secret key holding the accepted Bearer API keys, comma-separated (server env HYBRIDSERVE_API_KEYS).' }),
    maxConcurrentRequests: int({ description: 'Requests a pod holds waiting for a batch slot before it answers 429 (server --max-queue); running ones are capped by the plan\'s maxBatch on top.', minimum: 1, maximum: 1048576 }),
    maxTokens: int({ description: 'Prompt + generated tokens per request (server --max-total-tokens), capped by the model\'s context window.', minimum: 2, maximum: 2097152 }),
    port: int({ description: 'Container and Service port (server --port).', minimum: 1, maximum: 65535, default: 8000 }),
  }),
  autoscaling: obj({
    enabled: bool({ default: false }),
    minReplicas: int({ minimum: 0, default: 1 }),
    maxReplicas: int({ minimum: 1, default: 4 }),
    metric: str({ enum: ['queueDepth', 'tokensPerSecond'], default: 'queueDepth' }),
    target: num({ description: 'Per-pod target of the metric (queued requests, or tokens/s).', minimum: 0.001, default: 8 }),
    scaleToZeroAfter: {
      description: 'With minReplicas 0: no pod after this long without requests (the gateway\'s last-request-time annotation, or busy pods). Seconds, or a duration such as "90s", "15m", "1h30m".',
      'x-kubernetes-int-or-string': true,
      pattern: '^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$|^[0-9]+$',
      'x-kubernetes-validations': [{ rule: 'type(self) == string || self >= 0', message: 'scaleToZeroAfter must be a non-negative number of seconds or a duration like "15m"' }],
    },
  }, {
    'x-kubernetes-validations': [{ rule: 'self.minReplicas <= self.maxReplicas', message: 'autoscaling.minReplicas must be <= maxReplicas' }],
  }),
}, { required: ['model'] });

const conditionSchema = obj({
  type: str(), status: str({ enum: ['True', 'False', 'Unknown'] }), reason: str(), message: str(),
  lastTransitionTime: str({ format: 'date-time' }), observedGeneration: int(),
}, { required: ['type', 'status'] });

const measuredSchema = obj({
  tokensPerSecond: num(), queueDepth: num(), transferSeconds: num(), computeSeconds: num(), recomputeSeconds: num(),
  idleSeconds: num(), steps: num(), pods: int(), at: str(),
});

const statusSchema: Schema = obj({
  observedGeneration: int(),
  replicas: int(),
  readyReplicas: int(),
  selector: str(),
  actFraction: str(),
  hostMemory: str(),
  conditions: { type: 'array', items: conditionSchema, 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] },
  nodeGroups: {
    type: 'array',
    items: obj({
      name: str(), gpuProduct: str(), nodes: int(), allocatableMemoryBytes: int(), replicas: int(), readyReplicas: int(),
      actFraction: num(), hostMemoryBytes: int(), kvBlocks: int(), actBlocks: int(), maxBatch: int(), planGeneration: int(),
      predictedTokensPerSecond: num(), reason: str(), measured: measuredSchema,
      retune: obj({ lastDirection: int(), stableCycles: int() }),
    }),
  },
  autoscaler: obj({ desiredReplicas: int(), metric: str(), value: num(), lastScaleTime: str() }),
});

export const openApiSchema: Schema = obj({
  apiVersion: str(), kind: str(), metadata: { type: 'object' }, spec: specSchema, status: statusSchema,
}, {
  required: ['spec'],
  // The name becomes a label value (app.kubernetes.io/instance) and part of child names.
  'x-kubernetes-validations': [{ rule: 'self.metadata.name.size() <= 63', message: 'metadata.name must be at most 63 characters (it is used as a label value)' }],
});

export function crdManifest(): Record<string, unknown> {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${PLURAL}.${GROUP}`, labels: { 'app.kubernetes.io/name': 'hybridserve', 'app.kubernetes.io/part-of': 'hybridserve' } },
    spec: {
      group: GROUP,
      scope: 'Namespaced',
      names: { kind: KIND, listKind: `${KIND}List`, plural: PLURAL, singular: SINGULAR, shortNames: [SHORT_NAME], categories: ['all'] },
      versions: [{
        name: VERSION,
        served: true,
        storage: true,
        subresources: {
          status: {},
          scale: { specReplicasPath: '.spec.replicas', statusReplicasPath: '.status.replicas', labelSelectorPath: '.status.selector' },
        },
        additionalPrinterColumns: [
          { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
          { name: 'Replicas', type: 'integer', jsonPath: '.status.replicas', description: 'Serving pods wanted across node groups' },
          { name: 'ACT fraction', type: 'string', jsonPath: '.status.actFraction' },
          { name: 'Host memory', type: 'string', jsonPath: '.status.hostMemory' },
          { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
        ],
        schema: { openAPIV3Schema: openApiSchema },
      }],
    },
  };
}
