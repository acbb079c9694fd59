// Polls each pod's /v1/hybridserve/stats (queue depth, free cache blocks) for load-aware routing:
// one request per pod per interval, each with a timeout and a cap on the body size, so a slow or
// hostile pod can neither stall the poller nor make it buffer without bound.
import * as http from 'node:http';
import type { PodStats, PodTable } from './endpoints.js';

export interface StatsPollerOptions {
  intervalMs: number;
  timeoutMs: number;
  maxBytes: number;
}

/** Parses a stats body (pure): queueDepth, and free blocks as kv + act free blocks when reported. */
export function parseStats(text: string, now: number): PodStats | undefined {
  let b: { queueDepth?: unknown; pools?: Record<string, unknown> };
  try {
    b = JSON.parse(text) as typeof b;
  } catch {
    return undefined;
  }
  if (!b || typeof b !== 'object' || typeof b.queueDepth !== 'number' || !Number.isFinite(b.queueDepth)) return undefined;
  const kv = b.pools?.kvBlocksFree;
  const act = b.pools?.actBlocksFree;
  const freeBlocks = typeof kv === 'number' && typeof act === 'number' ? kv + act : undefined;
  return { queueDepth: b.queueDepth, ...(freeBlocks !== undefined ? { freeBlocks } : {}), at: now };
}

/** GET url with a timeout and a body cap; resolves the body text, rejects on any failure. */
export function fetchCapped(url: string, timeoutMs: number, maxBytes: number, agent?: http.Agent): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: timeoutMs, agent }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`status ${res.statusCode}`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > maxBytes) {
          req.destroy(new Error(`body over ${maxBytes} bytes`));
          return;
        }
        chunks.push(c);
      });
      res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

export class StatsPoller {
  private timer?: NodeJS.Timeout;
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  private running = false;

  constructor(
    private readonly table: PodTable,
    private readonly o: StatsPollerOptions,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.pollOnce(), this.o.intervalMs);
    this.timer.unref();
  }
  stop(): void {
    clearInterval(this.timer);
    this.agent.destroy();
  }

  /** One round over the pods; a failed poll clears the pod's stats (route on in-flight alone). */
  async pollOnce(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      await Promise.all(
        this.table
          .all()
          .filter((p) => p.ready)
          .map(async (p) => {
            try {
              const text = await fetchCapped(`${p.url}/v1/hybridserve/stats`, this.o.timeoutMs, this.o.maxBytes, this.agent);
              this.table.setStats(p.id, parseStats(text, Date.now()));
            } catch {
              this.table.setStats(p.id, undefined);
            }
          }),
      );
    } finally {
      this.running = false;
    }
  }
}
