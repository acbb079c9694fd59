// Leader election on a coordination.k8s.io/v1 Lease (client-node has no helper). The holder renews
// every renewMs; a candidate takes the Lease when renewTime + leaseDuration has passed. Every write
// is a PUT with the resourceVersion it read, so two candidates can never both win (409 loses).
import type { KubeClient } from '../k8s/client.js';
import { isConflict, isNotFound } from '../k8s/errors.js';
import { R } from '../k8s/resources.js';

interface Lease {
  apiVersion: 'coordination.k8s.io/v1';
  kind: 'Lease';
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: { holderIdentity?: string; leaseDurationSeconds?: number; acquireTime?: string; renewTime?: string; leaseTransitions?: number };
}

export interface LeaderOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewMs?: number;
  retryMs?: number;
}

/** Pure: may `identity` take or keep this lease at time `now`? */
export function canAcquire(spec: Lease['spec'] | undefined, identity: string, now: number, defaultDurationMs: number): boolean {
  if (!spec?.holderIdentity || spec.holderIdentity === identity) return true;
  const renew = spec.renewTime ? Date.parse(spec.renewTime) : 0;
  const duration = (spec.leaseDurationSeconds ?? defaultDurationMs / 1000) * 1000;
  return !Number.isFinite(renew) || now > renew + duration;
}

const micro = (ms: number) => new Date(ms).toISOString().replace('Z', '000Z');

export class LeaderElector {
  private timer?: NodeJS.Timeout;
  private leading = false;
  private lastRenew = 0;
  private stopped = false;
  private readonly durationMs: number;
  private readonly renewMs: number;
  private readonly retryMs: number;

  constructor(
    private readonly client: KubeClient,
    private readonly o: LeaderOptions,
    private readonly cb: { onStartedLeading(): void; onStoppedLeading(): void; onError?(err: unknown): void },
  ) {
    this.durationMs = o.leaseDurationMs ?? 15_000;
    this.renewMs = o.renewMs ?? 5_000;
    this.retryMs = o.retryMs ?? 2_000;
  }

  isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    void this.loop();
  }

  private async loop(): Promise<void> {
    if (this.stopped) return;
    let ok = false;
    try {
      ok = await this.tryAcquireOrRenew();
    } catch (e) {
      ok = false;
      this.cb.onError?.(e);
    }
    const now = Date.now();
    if (ok) {
      this.lastRenew = now;
      if (!this.leading) {
        this.leading = true;
        this.cb.onStartedLeading();
      }
    } else if (this.leading && now - this.lastRenew > this.durationMs) {
      this.leading = false;
      this.cb.onStoppedLeading();
    }
    if (!this.stopped) this.timer = setTimeout(() => void this.loop(), this.leading ? this.renewMs : this.retryMs);
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const ref = { type: R.lease, namespace: this.o.namespace, name: this.o.name };
    const now = Date.now();
    let lease: Lease | undefined;
    try {
      lease = await this.client.get<Lease>(ref);
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    if (!lease) {
      const body: Lease = {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name: this.o.name, namespace: this.o.namespace },
        spec: {
          holderIdentity: this.o.identity,
          leaseDurationSeconds: Math.ceil(this.durationMs / 1000),
          acquireTime: micro(now),
          renewTime: micro(now),
          leaseTransitions: 0,
        },
      };
      try {
        await this.client.create({ type: R.lease, namespace: this.o.namespace }, body);
        return true;
      } catch (e) {
        if (isConflict(e)) return false;
        throw e;
      }
    }
    if (!canAcquire(lease.spec, this.o.identity, now, this.durationMs)) return false;
    const taking = lease.spec.holderIdentity !== this.o.identity;
    const spec = {
      ...lease.spec,
      holderIdentity: this.o.identity,
      leaseDurationSeconds: Math.ceil(this.durationMs / 1000),
      renewTime: micro(now),
      ...(taking ? { acquireTime: micro(now), leaseTransitions: (lease.spec.leaseTransitions ?? 0) + 1 } : {}),
    };
    try {
      await this.client.replace(ref, { ...lease, spec });
      return true;
    } catch (e) {
      if (isConflict(e)) return false;
      throw e;
    }
  }

  /** Stops campaigning; if leading, gives the Lease up so that a successor need not wait it out. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (!this.leading) return;
    this.leading = false;
    const ref = { type: R.lease, namespace: this.o.namespace, name: this.o.name };
    try {
      const lease = await this.client.get<Lease>(ref);
      if (lease.spec.holderIdentity === this.o.identity) {
        await this.client.replace(ref, {
          ...lease,
          spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: micro(Date.now()) },
        });
      }
    } catch {
      /* best effort: the lease expires anyway */
    }
  }
}
