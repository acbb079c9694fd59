// The spec with the CRD's defaults applied: ONE function, driven by the `default`s written in
// ./schema.ts, so code never re-states a default (`?? 1`) that could drift from the CRD. The API
// server applies the same defaults on admission; applying them again here covers objects that
// predate a new default and sub-objects the API server leaves absent (e.g. autoscaling). Pure.
import { openApiSchema } from './schema.js';
import type { HsdSpec, HybridServeDeployment } from './types.js';
import type { WeightDtype } from '../../planning/model-profile.js';

type Schema = Record<string, unknown> & { properties?: Record<string, Schema>; default?: unknown; required?: string[] };

/** The spec after defaulting: every field with a schema default is present. */
export interface ResolvedSpec extends HsdSpec {
  image: string;
  replicas: number;
  gpusPerPod: number;
  parallelism: { nodes: number };
  cache: NonNullable<HsdSpec['cache']> & {
    actFraction: 'auto' | number;
    blockTokens: number;
    hostMemory: NonNullable<NonNullable<HsdSpec['cache']>['hostMemory']>;
    retune: NonNullable<NonNullable<HsdSpec['cache']>['retune']> & {
      enabled: boolean;
      intervalSeconds: number;
      hysteresis: number;
      damping: number;
      maxStep: number;
    };
  };
  engine: NonNullable<HsdSpec['engine']> & {
    elementBytes: number;
    promptTokens: number;
    genTokens: number;
    weightDtype: WeightDtype;
  };
  server: NonNullable<HsdSpec['server']> & { port: number };
  autoscaling: NonNullable<HsdSpec['autoscaling']> & {
    enabled: boolean;
    minReplicas: number;
    maxReplicas: number;
    metric: 'queueDepth' | 'tokensPerSecond';
    target: number;
  };
  podDisruptionBudget: { enabled: boolean; maxUnavailable: number };
  networkPolicy: NonNullable<HsdSpec['networkPolicy']> & { enabled: boolean };
}

const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

/**
 * Applies `schema`'s defaults to `value` (a copy). An absent object is defaulted as `{}` when it has
 * no required fields, so its children's defaults reach the code; one with required fields stays absent.
 */
export function applySchemaDefaults(schema: Schema, value: unknown): unknown {
  let v = value === undefined && schema.default !== undefined ? clone(schema.default) : value;
  if (schema.type !== 'object' || !schema.properties) return v;
  if (v === undefined) {
    if ((schema.required ?? []).length > 0) return undefined;
    v = {};
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return v;
  const out: Record<string, unknown> = { ...(v as Record<string, unknown>) };
  for (const [k, sub] of Object.entries(schema.properties)) {
    const d = applySchemaDefaults(sub, out[k]);
    if (d !== undefined) out[k] = d;
  }
  return out;
}

const SPEC_SCHEMA = (openApiSchema.properties as Record<string, Schema>).spec;
const resolved = new WeakMap<Partial<HsdSpec>, ResolvedSpec>();

/** The spec with every CRD default applied (memoised per spec object; treat the result as read-only). */
export function resolveSpec(spec: Partial<HsdSpec>): ResolvedSpec {
  let r = resolved.get(spec);
  if (!r) {
    r = applySchemaDefaults(SPEC_SCHEMA, spec) as ResolvedSpec;
    resolved.set(spec, r);
    resolved.set(r, r);
  }
  return r;
}

/** The HSD with its spec resolved. */
export function withDefaults(hsd: HybridServeDeployment): HybridServeDeployment & { spec: ResolvedSpec } {
  return { ...hsd, spec: resolveSpec(hsd.spec) };
}

/** The server's --max-total-tokens from the spec (limits.maxTotalTokens, else its deprecated alias); undefined: the model's window. */
export function maxTotalTokensOf(spec: Pick<HsdSpec, 'limits' | 'server'>): number | undefined {
  return spec.limits?.maxTotalTokens ?? spec.server?.maxTokens;
}
