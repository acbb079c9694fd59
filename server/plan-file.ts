// The plan file the operator mounts from a ConfigMap (contracts: plan.json). parsePlan is pure;
// watchPlanFile is the side-effect layer: fs.watch on the file's directory (a ConfigMap update swaps
// a symlink, so watching the file itself misses it) plus polling as a fallback, both of which
// only trigger a re-read whose content is compared with the last one applied.
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

export interface PlanFile {
  actFraction: number;
  kvBlocks?: number;
  actBlocks?: number;
  blockTokens?: number;
  maxBatch?: number;
  generation?: number;
  reason?: string;
}

export type PlanParse = { ok: true; plan: PlanFile } | { ok: false; error: string };

function optInt(o: Record<string, unknown>, key: string, min: number): number | undefined | string {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) return `${key} must be an integer >= ${min}, got ${JSON.stringify(v)}`;
  return v;
}

/** Validates a plan file's text. Unknown fields are ignored; only actFraction is required. */
export function parsePlan(text: string): PlanParse {
  let raw: unknown;
  try { raw = JSON.parse(text); } catch (err) { return { ok: false, error: `not valid JSON: ${(err as Error).message}` }; }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return { ok: false, error: 'the plan must be a JSON object' };
  const o = raw as Record<string, unknown>;
  const f = o.actFraction;
  if (typeof f !== 'number' || !Number.isFinite(f) || f < 0 || f > 1) return { ok: false, error: `actFraction must be a number in [0, 1], got ${JSON.stringify(f)}` };
  const plan: PlanFile = { actFraction: f };
  for (const [key, min] of [['kvBlocks', 0], ['actBlocks', 0], ['blockTokens', 1], ['maxBatch', 1], ['generation', 0]] as const) {
    const v = optInt(o, key, min);
    if (typeof v === 'string') return { ok: false, error: v };
    if (v !== undefined) plan[key] = v;
  }
  if (typeof o.reason === 'string') plan.reason = o.reason;
  return { ok: true, plan };
}

export interface PlanWatcher { close(): void; check(): Promise<void> }

export interface WatchOptions {
  pollMs?: number;
  onPlan(plan: PlanFile): void;
  onError(message: string): void;
}

/**
 * Reads the plan now and whenever the file changes. A bad or missing file is reported through
 * onError and the last good plan stays in effect. Resolves after the first read.
 */
export async function watchPlanFile(file: string, opts: WatchOptions): Promise<PlanWatcher> {
  let last: string | null = null;
  let lastError: string | null = null;
  let closed = false;
  let reading: Promise<void> | null = null;
  const check = (): Promise<void> => {
    if (reading) return reading;
    reading = (async () => {
      let text: string;
      try { text = await readFile(file, 'utf8'); } catch (err) {
        const msg = `cannot read plan file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
        if (msg !== lastError) opts.onError(msg);
        lastError = msg;
        return;
      }
      if (closed || text === last) return;
      last = text;
      const parsed = parsePlan(text);
      if (!parsed.ok) { lastError = parsed.error; opts.onError(`plan file ${file} ignored: ${parsed.error}`); return; }
      lastError = null;
      opts.onPlan(parsed.plan);
    })().finally(() => { reading = null; });
    return reading;
  };
  await check();
  let watcher: FSWatcher | null = null;
  try {
    watcher = watch(path.dirname(file), { persistent: false }, () => { void check(); });
    watcher.on('error', () => { watcher?.close(); watcher = null; });
  } catch {
    watcher = null; // polling alone
  }
  const timer = setInterval(() => { void check(); }, opts.pollMs ?? 1000);
  timer.unref();
  return {
    check,
    close() { closed = true; clearInterval(timer); watcher?.close(); },
  };
}
