// The HybridServeDeployment CRD, written once as data. crds/hybridservedeployments.yaml is GENERATED
// from crdManifest() by scripts/gen-crd.mjs; a unit test fails when the committed YAML differs.
import { WEIGHT_DTYPES } from '../../planning/model-profile.js';
import { GROUP, KIND, PLURAL, SHORT_NAME, SINGULAR, VERSION } from './types.js';

type Schema = Record<string, unknown>;
const int = (extra: Schema = {}): Schema => ({ type: 'integer', format: 'int64', ...extra });
const num = (extra: Schema = {}): Schema => ({ type: 'number', ...extra });
const str = (extra: Schema = {}): Schema => ({ type: 'string', ...extra });
const bool = (extra: Schema = {}): Schema => ({ type: 'boolean', ...extra });
const obj = (properties: Record<string, Schema>, extra: Schema = {}): Schema => ({ type: 'object', properties, ...extra });
const freeObject = (description: string): Schema => ({ type: 'object', description, 'x-kubernetes-preserve-unknown-fields': true });
const fraction = (description: string, extra: Schema = {}): Schema => num({ description, minimum: 0, maximum: 1, ...extra });
/** A Kubernetes quantity (64Gi = 2^36, 64G = 64e9) or a plain integer of bytes; parsed by planning/quantity.ts. */
const QUANTITY_PATTERN = '^[0-9]+(\\.[0-9]+)?([eE][0-9]+|[KMGTPE]i?|k)?$';
const quantity = (description: string, extra: Schema = {}): Schema => ({
  description,
  'x-kubernetes-int-or-string': true,
  anyOf: [
    { type: 'integer', minimum: 0 },
    { type: 'string', pattern: QUANTITY_PATTERN },
  ],
  ...extra,
});
/** CEL: a quantity string or a number >= min (JSON numbers evaluate as double in some CEL engines). */
const celQuantity = (e: string, min: number): string =>
  `(type(${e}) == string ? ${e}.matches("${QUANTITY_PATTERN.replace(/\\/g, '\\\\')}") : double(${e}) >= ${min.toFixed(1)})`;
/** Numbers are int on a real API server and double in some CEL engines; "map" is tested last (cross-realm objects). */
const celIsNumber = (e: string): string => `(type(${e}) == int || type(${e}) == uint || type(${e}) == double)`;
function hostMemoryRule(): string {
  const known = 'self.all(k, k in ["share", "bytes", "headroomBytes"])';
  const share = '(!has(self.share) || (double(self.share) >= 0.01 && double(self.share) <= 1.0))';
  const bytes = `(!has(self.bytes) || ${celQuantity('self.bytes', 1)})`;
  const headroom = `(!has(self.headroomBytes) || ${celQuantity('self.headroomBytes', 0)})`;
  return `(type(self) == string || ${celIsNumber('self')}) ? ${celQuantity('self', 1)} : (${known} && ${share} && ${bytes} && ${headroom})`;
}
const stringMap = (description: string): Schema => ({ type: 'object', additionalProperties: { type: 'string' }, description });
const freeList = (description: string): Schema => ({ type: 'array', description, items: freeObject(description) });

const specSchema: Schema = obj(
  {
    model: obj(
      {
        uri: str({
          description:
            'A model SPEC (synthetic:<preset>[?seed=N] or a checkpoint path) or pvc://<claim>/<path> (the claim is mounted read-only at /models/<claim>).',
          minLength: 1,
        }),
        preset: str({
          description: 'Architecture preset used for planning when uri is a checkpoint (e.g. opt-13b); synthetic URIs name it already.',
        }),
      },
      { required: ['uri'] },
    ),
    image: str({ description: 'Server container image.', default: 'ghcr.io/hybridserve/hybridserve:0.1.0' }),
    replicas: int({ description: 'Serving pods across all node groups; also the scale subresource.', minimum: 0, default: 1 }),
    gpusPerPod: int({
      description: 'nvidia.com/gpu per pod; > 0 runs the CUDA engine (server --device cuda), 0 the CPU engine on any node (--device cpu).',
      minimum: 0,
      maximum: 8,
      default: 1,
      'x-kubernetes-validations': [{ rule: 'self == oldSelf', message: 'gpusPerPod is immutable' }],
    }),
    nodeSelector: { type: 'object', additionalProperties: { type: 'string' }, description: 'Extra node selector for every group.' },
    parallelism: obj(
      {
        nodes: int({
          description:
            'Pods (on separate nodes) that one replica spreads the model over: the layers split into one pipeline stage per pod. > 1 renders a LeaderWorkerSet (leaderworkerset.x-k8s.io/v1, which must be installed) instead of a Deployment, and needs gpusPerPod 1 (the engine runs one GPU per process when its stages span processes) or 0 (CPU stages, TCP between the pods).',
          minimum: 1,
          maximum: 64,
          default: 1,
          'x-kubernetes-validations': [{ rule: 'self == oldSelf', message: 'parallelism.nodes is immutable' }],
        }),
      },
      { default: {} },
    ),
    tolerations: { type: 'array', items: freeObject('A core/v1 Toleration.') },
    affinity: freeObject('A core/v1 Affinity, merged with the node group affinity.'),
    cache: obj(
      {
        actFraction: {
          description: '"auto" (planned per node group and retuned from measurements) or a fixed number in [0, 1].',
          'x-kubernetes-preserve-unknown-fields': true,
          default: 'auto',
          'x-kubernetes-validations': [
            {
              rule: 'type(self) == string ? self == "auto" : (double(self) >= 0.0 && double(self) <= 1.0)',
              message: 'actFraction must be "auto" or a number in [0, 1]',
            },
          ],
        },
        blockTokens: int({
          description: 'Tokens per cache block.',
          minimum: 1,
          maximum: 1024,
          default: 16,
          'x-kubernetes-validations': [{ rule: 'self == oldSelf', message: 'blockTokens is immutable' }],
        }),
        // A quantity ("48Gi", 51539607552) sets the bytes per pod; the object form also takes a share of the node.
        hostMemory: {
          description: 'Host memory per pod for weights and cache: a quantity (e.g. "48Gi"), or an object {share, bytes, headroomBytes}.',
          'x-kubernetes-preserve-unknown-fields': true,
          default: {},
          'x-kubernetes-validations': [
            {
              rule: hostMemoryRule(),
              message:
                'cache.hostMemory must be a quantity (e.g. "48Gi") or an object with share (0.01..1), bytes and headroomBytes (quantities)',
            },
          ],
        },
        retune: obj(
          {
            enabled: bool({ default: true }),
            intervalSeconds: int({ minimum: 1, maximum: 3600, default: 30 }),
            minActFraction: fraction(
              'Lower bound of the retuned fraction. Unset (both bounds): the range the planned pools serve at full batch.',
            ),
            maxActFraction: fraction('Upper bound of the retuned fraction (see minActFraction).'),
            hysteresis: fraction('Relative imbalance ignored before the fraction moves.', { default: 0.1 }),
            damping: fraction('Share of the suggested step taken each cycle.', { default: 0.5 }),
            maxStep: fraction('Largest change of the fraction per cycle.', { default: 0.1 }),
          },
          {
            default: {},
            'x-kubernetes-validations': [
              {
                rule: '!has(self.minActFraction) || !has(self.maxActFraction) || self.minActFraction <= self.maxActFraction',
                message: 'cache.retune.minActFraction must be <= maxActFraction',
              },
            ],
          },
        ),
      },
      { default: {} },
    ),
    // Every engine/server field reaches the server (docs/operator.md "What the server receives"): as a
    // `hybridserve serve` flag, an env var, or the plan file; planning-only fields say so. Bounds
    // match the server's own flag checks (cli/serve.ts), so a valid HSD never makes a pod crash-loop.
    engine: obj({
      maxBatch: int({
        description: 'Cap on the planned batch (sequences per engine step); reaches the server as plan.json maxBatch.',
        minimum: 1,
        maximum: 4096,
      }),
      elementBytes: int({
        description:
          'Planning only: bytes per weight/cache element the GPU plan assumes (the CUDA engine stores fp16, the CPU engine fp32).',
        enum: [2, 4],
        default: 2,
      }),
      promptTokens: int({ description: 'Planning only: prompt length of the workload the plan is sized for.', minimum: 1, default: 512 }),
      genTokens: int({
        description: 'Planning only: generated tokens per request of the workload the plan is sized for.',
        minimum: 1,
        default: 128,
      }),
      threads: int({ description: 'CPU engine threads (server --threads; default all cores).', minimum: 1, maximum: 256 }),
      weightDtype: str({
        description:
          'Layer weight format (server --weight-dtype): fp16, fp8 (e4m3, per-channel scale), int8 (per-channel scale) or int4 (group 128). The plan counts its bytes: host and GPU hold the quantised weights.',
        enum: [...WEIGHT_DTYPES],
        default: 'fp16',
      }),
    }),
    slo: obj({
      tpotSeconds: num({
        description: 'Target time per output token (seconds); planning favours plans that meet it.',
        minimum: 0,
        'x-kubernetes-validations': [{ rule: 'self > 0.0', message: 'slo.tpotSeconds must be > 0' }],
      }),
    }),
    limits: obj({
      maxPromptTokens: int({
        description: "Longest prompt a request may send (server --max-prompt-tokens); unset: the model's context window.",
        minimum: 1,
        maximum: 2097152,
      }),
      maxTotalTokens: int({
        description: "Prompt + generated tokens per request (server --max-total-tokens); unset: the model's context window.",
        minimum: 2,
        maximum: 2097152,
      }),
    }),
    server: obj({
      apiKeySecretRef: obj(
        { name: str({ minLength: 1 }), key: str({ minLength: 1 }) },
        {
          required: ['name', 'key'],
          description:
            'Secret key holding the accepted Bearer API keys, one per line (# comments); mounted read-only as a file (server --api-key-file, re-read on change), never an env var.',
        },
      ),
      maxConcurrentRequests: int({
        description:
          "Requests a pod holds waiting for a batch slot before it answers 429 (server --max-queue); running ones are capped by the plan's maxBatch on top.",
        minimum: 1,
        maximum: 1048576,
      }),
      maxTokens: int({
        description: 'Deprecated alias of limits.maxTotalTokens (which wins when both are set).',
        minimum: 2,
        maximum: 2097152,
      }),
      port: int({ description: 'Container and Service port (server --port).', minimum: 1, maximum: 65535, default: 8000 }),
      startupSeconds: int({
        description: 'Longest model load the startupProbe waits for; unset: sized from the weight bytes.',
        minimum: 10,
        maximum: 86400,
      }),
      cpuRequest: quantity('CPU request of the server container (e.g. "2", "500m"); CPU engine pods default to engine.threads.', {
        anyOf: [
          { type: 'integer', minimum: 1 },
          { type: 'string', pattern: '^[0-9]+(\\.[0-9]+)?m?$' },
        ],
      }),
    }),
    pod: obj({
      annotations: stringMap('Extra annotations of the serving pods.'),
      labels: stringMap("Extra labels of the serving pods (the operator's own labels win)."),
      imagePullSecrets: {
        type: 'array',
        items: obj({ name: str({ minLength: 1 }) }, { required: ['name'] }),
        description: 'core/v1 LocalObjectReference list.',
      },
      priorityClassName: str({ maxLength: 253 }),
      runtimeClassName: str({ maxLength: 253 }),
      topologySpreadConstraints: freeList('A core/v1 TopologySpreadConstraint.'),
      env: freeList('A core/v1 EnvVar of the server container (secretKeyRef only when the operator policy allows Secrets).'),
    }),
    podDisruptionBudget: obj({
      enabled: bool({ default: false }),
      maxUnavailable: int({ description: 'Pods of the HSD that a voluntary disruption may take down at once.', minimum: 0, default: 1 }),
    }),
    networkPolicy: obj({
      enabled: bool({
        description: 'A NetworkPolicy that admits traffic to the serving port only from the peers below and the operator.',
        default: false,
      }),
      from: freeList('A networking.k8s.io/v1 NetworkPolicyPeer allowed to reach the server; none: pods of the same namespace.'),
    }),
    autoscaling: obj(
      {
        enabled: bool({ default: false }),
        minReplicas: int({ minimum: 0, default: 1 }),
        maxReplicas: int({ minimum: 1, default: 4 }),
        metric: str({ enum: ['queueDepth', 'tokensPerSecond'], default: 'queueDepth' }),
        target: num({ description: 'Per-pod target of the metric (queued requests, or tokens/s).', minimum: 0.001, default: 8 }),
        scaleToZeroAfter: {
          description:
            'With minReplicas 0: no pod after this long without requests (the gateway\'s last-request-time annotation, or busy pods). Seconds, or a duration such as "90s", "15m", "1h30m".',
          'x-kubernetes-int-or-string': true,
          pattern: '^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$|^[0-9]+$',
          'x-kubernetes-validations': [
            {
              rule: 'type(self) == string || self >= 0',
              message: 'scaleToZeroAfter must be a non-negative number of seconds or a duration like "15m"',
            },
          ],
        },
      },
      {
        'x-kubernetes-validations': [
          { rule: 'self.minReplicas <= self.maxReplicas', message: 'autoscaling.minReplicas must be <= maxReplicas' },
        ],
      },
    ),
  },
  {
    required: ['model'],
    'x-kubernetes-validations': [
      {
        // The engine runs one stage per process when stages span processes (cli/pipeline-args.ts): one GPU, or the CPU.
        rule: '!has(self.parallelism) || !has(self.parallelism.nodes) || self.parallelism.nodes <= 1 || !has(self.gpusPerPod) || self.gpusPerPod <= 1',
        message: 'parallelism.nodes > 1 needs gpusPerPod 1, or 0 for CPU pods (one pipeline stage per process)',
      },
    ],
  },
);

const conditionSchema = obj(
  {
    type: str(),
    status: str({ enum: ['True', 'False', 'Unknown'] }),
    reason: str(),
    message: str(),
    lastTransitionTime: str({ format: 'date-time' }),
    observedGeneration: int(),
  },
  { required: ['type', 'status'] },
);

const measuredSchema = obj({
  tokensPerSecond: num(),
  queueDepth: num(),
  transferSeconds: num(),
  computeSeconds: num(),
  recomputeSeconds: num(),
  idleSeconds: num(),
  steps: num(),
  pods: int(),
  at: str(),
});

const statusSchema: Schema = obj({
  observedGeneration: int(),
  replicas: int(),
  readyReplicas: int(),
  selector: str(),
  url: str({ description: 'In-cluster URL of the Service.' }),
  actFraction: str(),
  hostMemory: str(),
  weightDtype: str({ description: 'Layer weight format the pods load (spec.engine.weightDtype).' }),
  conditions: { type: 'array', items: conditionSchema, 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] },
  nodeGroups: {
    type: 'array',
    items: obj({
      name: str(),
      gpuProduct: str(),
      nodes: int(),
      allocatableMemoryBytes: int(),
      replicas: int(),
      readyReplicas: int(),
      actFraction: num(),
      hostMemoryBytes: int(),
      kvBlocks: int(),
      actBlocks: int(),
      maxBatch: int(),
      planGeneration: int(),
      predictedTokensPerSecond: num(),
      reason: str(),
      measured: measuredSchema,
      retune: obj({ lastDirection: int(), stableCycles: int() }),
    }),
  },
  autoscaler: obj({ desiredReplicas: int(), metric: str(), value: num(), lastScaleTime: str() }),
});

export const openApiSchema: Schema = obj(
  {
    apiVersion: str(),
    kind: str(),
    metadata: { type: 'object' },
    spec: specSchema,
    status: statusSchema,
  },
  {
    required: ['spec'],
    // The name becomes a label value (app.kubernetes.io/instance) and part of child names.
    'x-kubernetes-validations': [
      { rule: 'self.metadata.name.size() <= 63', message: 'metadata.name must be at most 63 characters (it is used as a label value)' },
    ],
  },
);

export function crdManifest(): Record<string, unknown> {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: `${PLURAL}.${GROUP}`,
      labels: { 'app.kubernetes.io/name': 'hybridserve', 'app.kubernetes.io/part-of': 'hybridserve' },
    },
    spec: {
      group: GROUP,
      scope: 'Namespaced',
      names: { kind: KIND, listKind: `${KIND}List`, plural: PLURAL, singular: SINGULAR, shortNames: [SHORT_NAME], categories: ['all'] },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: {
            status: {},
            scale: { specReplicasPath: '.spec.replicas', statusReplicasPath: '.status.replicas', labelSelectorPath: '.status.selector' },
          },
          additionalPrinterColumns: [
            { name: 'Model', type: 'string', jsonPath: '.spec.model.uri' },
            { name: 'Weights', type: 'string', jsonPath: '.status.weightDtype', description: 'Layer weight format the pods load' },
            { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
            { name: 'Replicas', type: 'integer', jsonPath: '.status.replicas', description: 'Serving pods wanted across node groups' },
            { name: 'ACT fraction', type: 'string', jsonPath: '.status.actFraction' },
            { name: 'Host memory', type: 'string', jsonPath: '.status.hostMemory' },
            { name: 'URL', type: 'string', jsonPath: '.status.url', priority: 1 },
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
          schema: { openAPIV3Schema: openApiSchema },
        },
      ],
    },
  };
}
