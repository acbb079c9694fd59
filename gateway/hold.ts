// Requests held while the HSD has no ready pod (at zero, or starting): a bounded queue with a
// bounded wait. release() lets every held request go once a pod is ready.
export class HoldError extends Error {
  constructor(
    readonly reason: 'full' | 'timeout' | 'closed',
    message: string,
  ) {
    super(message);
    this.name = 'HoldError';
  }
}

interface Waiter {
  resolve(): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

export class HoldQueue {
  private readonly waiters = new Set<Waiter>();
  constructor(
    private readonly maxHeld: number,
    private readonly maxWaitMs: number,
  ) {}

  get size(): number {
    return this.waiters.size;
  }

  /** Resolves when release() is called; rejects when the queue is full or the wait runs out. */
  wait(): Promise<void> {
    if (this.waiters.size >= this.maxHeld)
      return Promise.reject(new HoldError('full', `${this.maxHeld} requests are already waiting for a ready pod`));
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(w);
          reject(new HoldError('timeout', `no ready pod within ${this.maxWaitMs} ms`));
        }, this.maxWaitMs),
      };
      this.waiters.add(w);
    });
  }

  release(): void {
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.resolve();
    }
    this.waiters.clear();
  }

  close(): void {
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.reject(new HoldError('closed', 'the gateway is shutting down'));
    }
    this.waiters.clear();
  }
}
