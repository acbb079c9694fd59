// The pods behind the HSD's Service, from its EndpointSlices (pure), and the gateway's table of
// them: what it routes on (readiness, in-flight count, polled stats, outlier state).
import type { EndpointSliceLike } from '../operator/k8s/endpoint-slices.js';
import { HEALTHY, recordOutcome, type EjectionOptions, type EndpointView, type OutlierState } from './routing.js';

export interface PodAddress {
  id: string;
  url: string;
  ready: boolean;
}

/**
 * Pod addresses of a set of EndpointSlices: one per endpoint address, at the slice's port named
 * "http" (else its first port). Ready is the endpoint's ready condition (absent counts as ready,
 * as the API defines), and false while terminating. Duplicates (a pod in two slices) collapse.
 */
export function podAddresses(slices: readonly EndpointSliceLike[]): PodAddress[] {
  const out = new Map<string, PodAddress>();
  for (const s of slices) {
    if (s.addressType && s.addressType !== 'IPv4' && s.addressType !== 'IPv6') continue;
    const port = (s.ports ?? []).find((p) => p.name === 'http')?.port ?? s.ports?.[0]?.port;
    if (!port) continue;
    for (const e of s.endpoints ?? []) {
      const ip = e.addresses?.[0];
      if (!ip) continue;
      const host = ip.includes(':') ? `[${ip}]` : ip;
      const id = e.targetRef?.name ?? `${host}:${port}`;
      const ready = e.conditions?.ready !== false && e.conditions?.terminating !== true;
      const prev = out.get(id);
      out.set(id, { id, url: `http://${host}:${port}`, ready: ready || (prev?.ready ?? false) });
    }
  }
  return [...out.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
}

export interface PodStats {
  queueDepth: number;
  freeBlocks?: number;
  at: number;
}

interface Entry extends PodAddress {
  inFlight: number;
  stats?: PodStats;
  outlier: OutlierState;
}

/** The gateway's live view of the pods; mutated by the watch, the stats poller and each request. */
export class PodTable {
  private readonly pods = new Map<string, Entry>();
  private readonly listeners = new Set<() => void>();

  constructor(private readonly ejection: EjectionOptions) {}

  /** Replaces the address set (from a watch event); keeps counters of pods that stay. */
  setAddresses(addrs: readonly PodAddress[]): void {
    const seen = new Set<string>();
    for (const a of addrs) {
      seen.add(a.id);
      const cur = this.pods.get(a.id);
      if (cur && cur.url === a.url) {
        cur.ready = a.ready;
        continue;
      }
      this.pods.set(a.id, { ...a, inFlight: cur?.inFlight ?? 0, outlier: HEALTHY });
    }
    for (const id of [...this.pods.keys()]) if (!seen.has(id)) this.pods.delete(id);
    for (const l of this.listeners) l();
  }

  /** Called after every change of the address set. */
  onChange(l: () => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  views(): EndpointView[] {
    return [...this.pods.values()].map((p) => ({
      id: p.id,
      ready: p.ready,
      inFlight: p.inFlight,
      queueDepth: p.stats?.queueDepth,
      freeBlocks: p.stats?.freeBlocks,
      ejectedUntil: p.outlier.ejectedUntil,
    }));
  }

  all(): readonly PodAddress[] {
    return [...this.pods.values()];
  }
  get(id: string): PodAddress | undefined {
    return this.pods.get(id);
  }
  readyCount(): number {
    let n = 0;
    for (const p of this.pods.values()) if (p.ready) n++;
    return n;
  }

  begin(id: string): void {
    const p = this.pods.get(id);
    if (p) p.inFlight++;
  }
  end(id: string): void {
    const p = this.pods.get(id);
    if (p && p.inFlight > 0) p.inFlight--;
  }

  /** Records a request's outcome for outlier ejection; true when this outcome ejected the pod. */
  outcome(id: string, ok: boolean, now: number): boolean {
    const p = this.pods.get(id);
    if (!p) return false;
    const before = p.outlier.ejectedUntil;
    p.outlier = recordOutcome(p.outlier, ok, now, this.ejection);
    return p.outlier.ejectedUntil !== before && p.outlier.ejectedUntil > now;
  }

  setStats(id: string, stats: PodStats | undefined): void {
    const p = this.pods.get(id);
    if (p) p.stats = stats;
  }
}
