// The plan file the operator mounts from a ConfigMap (contracts: plan.json; parsed by
// planning/plan-file.ts). watchPlanFile is the side-effect layer: fs.watch on the file's directory (a ConfigMap update swaps
// a symlink, so watching the file itself misses it) plus polling as a fallback, both of which
// only trigger a re-read whose content is compared with the last one applied.
import { readFile } from 'node:fs/promises';
import { watchMountedFile } from './mounted-file.js';

// The type and the strict parser are planning's (one owner, shared with the operator that writes it).
import { parsePlan, type PlanFile } from '../planning/plan-file.js';

export { parsePlan, type PlanFile, type PlanParse } from '../planning/plan-file.js';

export interface PlanWatcher {
  close(): void;
  check(): Promise<void>;
}

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
  return watchMountedFile(file, opts.pollMs ?? 1000, async (closed) => {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      const msg = `cannot read plan file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
      if (msg !== lastError) opts.onError(msg);
      lastError = msg;
      return;
    }
    if (closed() || text === last) return;
    last = text;
    const parsed = parsePlan(text);
    if (!parsed.ok) {
      lastError = parsed.error;
      opts.onError(`plan file ${file} ignored: ${parsed.error}`);
      return;
    }
    lastError = null;
    opts.onPlan(parsed.plan);
  });
}
