// In-memory state the feedback loop hands to reconcile: measured figures, the retuner's state and
// proposal, and the operator autoscaler's decision, per HSD and node group. Feedback only WRITES
// here (and enqueues the HSD); reconcile is the only writer of children and status. Nothing here is
// the source of truth for the cluster: after an operator restart it is rebuilt from fresh
// measurements, and reconcile reads the applied plan back from the ConfigMap.
import type { MeasuredFigures } from '../api/types.js';
import type { RetuneState } from '../../planning/index.js';
import type { StatsSnapshot } from '../feedback/measure.js';

/** The plan reconcile last applied to the group's ConfigMap. */
export interface AppliedPlan {
  inputHash: string;
  actFraction: number;
  generation: number;
}
/** A new fraction the retuner asks for; reconcile writes it as the next plan generation. */
export interface RetuneProposal {
  inputHash: string;
  actFraction: number;
  reason: string;
}

export interface GroupRuntime {
  measured?: MeasuredFigures;
  retune?: RetuneState;
  applied?: AppliedPlan;
  proposal?: RetuneProposal;
}
export interface HsdRuntime {
  groups: Map<string, GroupRuntime>;
  desiredReplicas?: number;
  /** Replicas reconcile last applied across groups. */
  appliedReplicas?: number;
  autoscaleMetric?: { metric: string; value: number };
  lastScaleTime?: string;
  /** A scaling decision not yet announced as an Event (reconcile records it). */
  scaleNote?: string;
  lastFeedbackMs?: number;
}

export class RuntimeState {
  private readonly hsds = new Map<string, HsdRuntime>();
  /** Last stats per pod uid (for counter deltas). */
  readonly podStats = new Map<string, StatsSnapshot>();
  /** Pods whose last scrape failed (a failure is logged once, not every interval). */
  readonly scrapeFailing = new Set<string>();
  /** Hash of the body last applied per child (`plural/namespace/name`), to skip identical writes. */
  readonly appliedHashes = new Map<string, string>();

  /** Periodic resync: forget what was applied, so the next reconciles re-apply (and repair drift). */
  clearAppliedHashes(): void {
    this.appliedHashes.clear();
  }

  get(key: string): HsdRuntime {
    let s = this.hsds.get(key);
    if (!s) {
      s = { groups: new Map() };
      this.hsds.set(key, s);
    }
    return s;
  }
  peek(key: string): HsdRuntime | undefined {
    return this.hsds.get(key);
  }
  group(key: string, groupId: string): GroupRuntime {
    const h = this.get(key);
    let g = h.groups.get(groupId);
    if (!g) {
      g = {};
      h.groups.set(groupId, g);
    }
    return g;
  }
  forget(key: string): void {
    this.hsds.delete(key);
    for (const uid of [...this.podStats.keys()]) if (uid.startsWith(`${key}|`)) this.podStats.delete(uid);
    for (const uid of [...this.scrapeFailing]) if (uid.startsWith(`${key}|`)) this.scrapeFailing.delete(uid);
    const [ns, name] = key.split('/');
    for (const k of [...this.appliedHashes.keys()]) if (k.endsWith(`/${ns}/${name}`)) this.appliedHashes.delete(k);
  }
}
