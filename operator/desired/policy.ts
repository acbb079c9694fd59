// The operator-level policy for HSDs (pure): who may create an HSD must not thereby gain more than
// the cluster admin allows: which images may run, and whether an HSD may mount a PVC or read a
// Secret of its namespace. A violating HSD gets Degraded (reason PolicyViolation) and no children.
// Fail closed: without configuration only the project's images run; a bad boolean stops the operator.
import type { HsdSpec } from '../api/types.js';
import { pvcClaim } from './pod.js';

export interface HsdPolicy {
  /** Image patterns; `*` matches any run of characters (e.g. "ghcr.io/hybridserve/*"). */
  allowedImages: readonly string[];
  allowPvc: boolean;
  allowSecrets: boolean;
}

/** No restriction (reconcile's default when no policy is passed in, e.g. in unit tests). */
export const OPEN_POLICY: HsdPolicy = { allowedImages: ['*'], allowPvc: true, allowSecrets: true };

/** The project's server images: what `hybridserve operator` allows when no image patterns are configured (fail closed). */
export const DEFAULT_ALLOWED_IMAGES: readonly string[] = ['ghcr.io/hybridserve/hybridserve:*', 'ghcr.io/hybridserve/hybridserve@sha256:*'];

function globToRegExp(p: string): RegExp {
  return new RegExp(
    `^${p
      .split('*')
      .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*')}$`,
  );
}

export function imageAllowed(image: string, patterns: readonly string[]): boolean {
  return patterns.some((p) => globToRegExp(p).test(image));
}

/** What the spec asks for that the policy forbids; empty when it complies. */
export function policyViolations(spec: HsdSpec & { image: string }, policy: HsdPolicy): string[] {
  const out: string[] = [];
  if (!imageAllowed(spec.image, policy.allowedImages)) {
    out.push(`image '${spec.image}' matches none of the allowed patterns (${policy.allowedImages.join(', ') || 'none'})`);
  }
  if (!policy.allowPvc && pvcClaim(spec.model.uri))
    out.push('model.uri references a PersistentVolumeClaim, which the operator policy forbids');
  if (!policy.allowSecrets) {
    if (spec.server?.apiKeySecretRef) out.push('server.apiKeySecretRef references a Secret, which the operator policy forbids');
    const secretEnv = (spec.pod?.env ?? []).filter((e) => e.valueFrom?.secretKeyRef).map((e) => e.name);
    if (secretEnv.length) out.push(`pod.env ${secretEnv.join(', ')} read(s) a Secret, which the operator policy forbids`);
  }
  return out;
}

/** The policy from the operator's env: comma-separated image patterns ("*" allows any) and two booleans (default true). */
export function parsePolicy(o: { allowedImages?: string; allowPvc?: string; allowSecrets?: string }): HsdPolicy {
  const bool = (v: string | undefined, name: string): boolean => {
    if (v === undefined || v === '') return true;
    if (v === 'true' || v === 'false') return v === 'true';
    throw new Error(`${name} must be true or false`);
  };
  // Unset: only the project's images. Set but empty after trimming: nothing is allowed (fail closed).
  const images =
    o.allowedImages === undefined
      ? [...DEFAULT_ALLOWED_IMAGES]
      : o.allowedImages
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean);
  return {
    allowedImages: images,
    allowPvc: bool(o.allowPvc, 'HYBRIDSERVE_POLICY_ALLOW_PVC'),
    allowSecrets: bool(o.allowSecrets, 'HYBRIDSERVE_POLICY_ALLOW_SECRETS'),
  };
}
