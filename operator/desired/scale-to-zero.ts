// Scale to zero (pure): with autoscaling.minReplicas 0 and autoscaling.scaleToZeroAfter set, an
// HSD with no activity for that long runs no pod. Activity is the latest of: the last-request
// time the gateway stamps on the HSD (annotation hybridserve.io/last-request-time), the last
// measurement in which the pods were busy (status.nodeGroups[].measured: tokens/s or queue > 0),
// and the HSD's creation. An HSD that is not idle runs at least one pod, so a fresh stamp from the
// gateway wakes an HSD at zero. spec.replicas is never written here: the decision is recomputed on
// every reconcile from these times, as the autoscaler's desiredReplicas is.
import type { HybridServeDeployment } from '../api/types.js';

import { LAST_REQUEST_ANNOTATION } from '../k8s/scale.js';

export { LAST_REQUEST_ANNOTATION };

const UNIT_SECONDS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600 };

/** Seconds of a duration: a number of seconds, or a string like "90s", "15m", "1h30m", "500ms". Undefined when malformed. */
export function parseDurationSeconds(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? v : undefined;
  if (typeof v !== 'string') return undefined;
  const text = v.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text);
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/y;
  let total = 0;
  let pos = 0;
  while (pos < text.length) {
    re.lastIndex = pos;
    const m = re.exec(text);
    if (!m) return undefined;
    total += Number(m[1]) * UNIT_SECONDS[m[2]];
    pos = re.lastIndex;
  }
  return pos > 0 ? total : undefined;
}

export interface ScaleToZeroDecision {
  replicas: number;
  /** Configured (minReplicas 0 and a window): otherwise replicas is the input, unchanged. */
  enabled: boolean;
  idle: boolean;
  /** When to look again: the moment the HSD becomes idle (only while it is not). */
  recheckAfterMs?: number;
}

/** The time (ms) of the HSD's last activity, from what the API object already carries. */
export function lastActivityMs(hsd: HybridServeDeployment): number {
  const times = [
    Date.parse(hsd.metadata.creationTimestamp ?? '') || 0,
    Date.parse(hsd.metadata.annotations?.[LAST_REQUEST_ANNOTATION] ?? '') || 0,
  ];
  for (const g of hsd.status?.nodeGroups ?? []) {
    const m = g.measured;
    if (m && (m.tokensPerSecond > 0 || m.queueDepth > 0)) times.push(Date.parse(m.at) || 0);
  }
  return Math.max(...times);
}

/** Applies scale to zero to the replicas the spec or the autoscaler wants (pure). */
export function scaleToZero(hsd: HybridServeDeployment, wanted: number, nowMs: number): ScaleToZeroDecision {
  const a = hsd.spec.autoscaling;
  const after = parseDurationSeconds(a?.scaleToZeroAfter);
  if (a?.minReplicas !== 0 || after === undefined) return { replicas: wanted, enabled: false, idle: false };
  const idleFor = nowMs - lastActivityMs(hsd);
  const windowMs = after * 1000;
  if (idleFor >= windowMs) return { replicas: 0, enabled: true, idle: true };
  return { replicas: Math.max(1, wanted), enabled: true, idle: false, recheckAfterMs: Math.max(1, Math.ceil(windowMs - idleFor)) };
}
