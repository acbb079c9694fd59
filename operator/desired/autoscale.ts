// The operator's own autoscaler (pure), used when spec.autoscaling.enabled: replicas between min
// and max so that the per-pod metric (queue depth, or tokens/s) approaches the target, like the
// HPA's ratio rule, with a 10% tolerance band so that small wobbles do not scale.
import type { ResolvedSpec } from '../api/defaults.js';

export interface AutoscaleInput {
  current: number;
  readyPods: number;
  queueDepthPerPod: number;
  tokensPerSecond: number;
}

export function desiredReplicas(spec: ResolvedSpec['autoscaling'], m: AutoscaleInput): { replicas: number; value: number; metric: string } {
  const { minReplicas: min, maxReplicas: max, metric, target } = spec;
  const clamp = (n: number) => Math.min(max, Math.max(min, n));
  const value = metric === 'queueDepth' ? m.queueDepthPerPod : m.readyPods > 0 ? m.tokensPerSecond / m.readyPods : 0;
  if (m.readyPods === 0) return { replicas: clamp(m.current), value, metric };
  const ratio = value / target;
  if (Math.abs(ratio - 1) <= 0.1) return { replicas: clamp(m.current), value, metric };
  // queue depth above target → more pods; for tokens/s per pod a busy pod (above target) also means more pods.
  return { replicas: clamp(Math.ceil(m.readyPods * ratio)), value, metric };
}
