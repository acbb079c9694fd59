// In-memory state the feedback loop shares with reconcile: measured figures, retune state and the
// operator autoscaler's decision, per HSD and node group. It is a cache of what status already
// records (reconcile falls back to status after an operator restart), never the source of truth
// for anything in the cluster.
import type { MeasuredFigures } from '../api/types.js';
import type { RetuneState } from '../../planning/index.js';
import type { StatsSnapshot } from '../feedback/measure.js';

export interface GroupRuntime { measured?: MeasuredFigures; retune?: RetuneState }
export interface HsdRuntime {
  groups: Map<string, GroupRuntime>;
  desiredReplicas?: number;
  autoscaleMetric?: { metric: string; value: number };
  lastScaleTime?: string;
  lastFeedbackMs?: number;
}

export class RuntimeState {
  private readonly hsds = new Map<string, HsdRuntime>();
  /** Last stats per pod uid (for counter deltas). */
  readonly podStats = new Map<string, StatsSnapshot>();

  get(key: string): HsdRuntime {
    let s = this.hsds.get(key);
    if (!s) { s = { groups: new Map() }; this.hsds.set(key, s); }
    return s;
  }
  peek(key: string): HsdRuntime | undefined { return this.hsds.get(key); }
  group(key: string, groupId: string): GroupRuntime {
    const h = this.get(key);
    let g = h.groups.get(groupId);
    if (!g) { g = {}; h.groups.set(groupId, g); }
    return g;
  }
  forget(key: string): void { this.hsds.delete(key); }
}
