// A rate-limited work queue of keys ("namespace/name"), as in controller-runtime: a key is queued
// at most once, at most one reconcile runs per key (an add during a run marks it dirty and it runs
// again after), failures requeue with capped exponential backoff, and results may ask for a
// requeue after a delay. Watch handlers only call add(); they never reconcile themselves.
export interface ReconcileResult {
  requeueAfterMs?: number;
}
export type Worker = (key: string) => Promise<ReconcileResult | void>;

/** The timers the queue schedules requeues with; tests pass a manual clock instead of waiting on wall time. */
export interface QueueClock {
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
}

export const wallClock: QueueClock = {
  setTimer: (fn, ms) => setTimeout(fn, ms),
  clearTimer: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export interface QueueOptions {
  concurrency?: number;
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  onError?: (key: string, err: unknown) => void;
  clock?: QueueClock;
}

export class WorkQueue {
  private readonly queued = new Set<string>();
  private readonly order: string[] = [];
  private readonly running = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, unknown>();
  private active = 0;
  private stopped = false;
  private idleWaiters: (() => void)[] = [];
  private readonly concurrency: number;
  private readonly baseBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly clock: QueueClock;

  constructor(
    private readonly worker: Worker,
    private readonly opts: QueueOptions = {},
  ) {
    this.concurrency = opts.concurrency ?? 4;
    this.baseBackoffMs = opts.baseBackoffMs ?? 200;
    this.maxBackoffMs = opts.maxBackoffMs ?? 60_000;
    this.clock = opts.clock ?? wallClock;
  }

  add(key: string): void {
    if (this.stopped) return;
    if (this.running.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.order.push(key);
    this.pump();
  }

  /** Adds the key after `ms`, replacing any timer already pending for it (the latest request wins). */
  addAfter(key: string, ms: number): void {
    if (this.stopped) return;
    if (this.timers.has(key)) this.clock.clearTimer(this.timers.get(key));
    this.timers.set(
      key,
      this.clock.setTimer(() => {
        this.timers.delete(key);
        this.add(key);
      }, ms),
    );
  }

  /** Forgets the backoff history of a key (after a success). */
  forget(key: string): void {
    this.failures.delete(key);
  }

  backoffMs(key: string): number {
    const n = this.failures.get(key) ?? 0;
    return Math.min(this.maxBackoffMs, this.baseBackoffMs * 2 ** Math.max(0, n - 1));
  }

  len(): number {
    return this.order.length + this.active;
  }

  /** Resolves when nothing is queued or running (timers may still be pending). */
  idle(): Promise<void> {
    if (this.len() === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  async shutdown(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers.values()) this.clock.clearTimer(t);
    this.timers.clear();
    this.order.length = 0;
    this.queued.clear();
    await this.idle(); // nothing is queued any more, so this waits for the running reconciles only
  }

  private pump(): void {
    while (!this.stopped && this.active < this.concurrency && this.order.length > 0) {
      const key = this.order.shift()!;
      this.queued.delete(key);
      this.running.add(key);
      this.active++;
      void this.run(key);
    }
    if (this.len() === 0) {
      const w = this.idleWaiters;
      this.idleWaiters = [];
      w.forEach((f) => f());
    }
  }

  private async run(key: string): Promise<void> {
    let next: number | undefined;
    try {
      const res = await this.worker(key);
      this.failures.delete(key);
      next = res?.requeueAfterMs;
    } catch (err) {
      this.failures.set(key, (this.failures.get(key) ?? 0) + 1);
      next = this.backoffMs(key);
      this.opts.onError?.(key, err);
    } finally {
      this.running.delete(key);
      this.active--;
    }
    if (this.dirty.delete(key)) this.add(key);
    else if (next !== undefined && next >= 0) this.addAfter(key, next);
    this.pump();
  }
}
