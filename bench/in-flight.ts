// The driver that keeps several steps in flight (issue 15): the batch splits into groups of
// sequences and each group steps in its own engine slot, all groups at once. On a pipeline backend
// group g's step runs on stage s while group g+1's runs on stage s-1 (FlexGen's schedule), so every
// stage is busy and each group-step streams each stage's weights once; on a single-stage backend
// the steps simply take turns. Used by bench:engine and the pipeline tests.
import type { NativeCounters, NativeEngine, NativeStepResult } from '../native/ts/engine.js';
import { addCounters, zeroCounters } from '../native/ts/counters.js';

/** `ids` in `groups` contiguous groups, sizes as even as possible (earlier groups larger). Pure. */
export function splitGroups<T>(ids: readonly T[], groups: number): T[][] {
  if (!Number.isInteger(groups) || groups < 1) throw new RangeError(`groups must be an integer >= 1, got ${groups}`);
  const n = Math.min(groups, ids.length);
  const out: T[][] = [];
  let at = 0;
  for (let g = 0; g < n; g++) {
    const size = Math.floor(ids.length / n) + (g < ids.length % n ? 1 : 0);
    out.push(ids.slice(at, at + size));
    at += size;
  }
  return out;
}

export interface InFlightRun {
  /** results[g][s]: group g's step s. */
  results: NativeStepResult[][];
  /** The decode steps' counters (every step but each group's first), summed over groups. */
  decode: NativeCounters;
  /** Wall time until every group's first step (prefill) was done, then of the rest. */
  prefillSeconds: number;
  decodeSeconds: number;
}

/**
 * Runs `steps` steps for every group, group g in slot g: first each group's prefill step (all in
 * flight; the phase ends when the last is done), then each group's decode steps back to back, the
 * groups independent of each other. `logits` asks each step for logits.
 */
export async function runInFlight(engine: NativeEngine, groups: number[][], steps: number, logits = false): Promise<InFlightRun> {
  const results: NativeStepResult[][] = groups.map(() => []);
  const arrays = groups.map((g) => Int32Array.from(g));
  const step = async (g: number): Promise<NativeStepResult> => {
    const r = await engine.step(arrays[g], { slot: g, logits });
    results[g].push(r);
    return r;
  };
  let t = performance.now();
  await Promise.all(groups.map((_, g) => step(g)));
  const prefillSeconds = (performance.now() - t) / 1e3;
  let decode = zeroCounters();
  t = performance.now();
  await Promise.all(
    groups.map(async (_, g) => {
      for (let s = 1; s < steps; s++) decode = addCounters(decode, (await step(g)).counters);
    }),
  );
  return { results, decode, prefillSeconds, decodeSeconds: (performance.now() - t) / 1e3 };
}
