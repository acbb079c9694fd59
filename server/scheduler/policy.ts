// Pure scheduling decisions: admission, batch formation, preemption victims, Retry-After.
// The scheduler (scheduler.ts) applies them to the engine; these functions only compute.
import type { NativePoolStats } from '../../native/ts/addon-types.js';

export function blocksFor(tokens: number, blockTokens: number): number {
  return Math.ceil(tokens / blockTokens);
}

/**
 * Whether a sequence of `tokens` tokens may join now. Beyond its own blocks we keep one free block
 * per running sequence, so that the next decode step of those already running does not run out of
 * blocks at once because of the newcomer (which would force a preemption right away).
 * With nothing running, always try: the engine then says whether the pools can ever hold it.
 */
export function canAdmit(pools: NativePoolStats, tokens: number, running: number): boolean {
  if (running === 0) return true;
  const free = pools.kvBlocksFree + pools.actBlocksFree + (pools.gpuKvBlocksFree ?? 0);
  return blocksFor(tokens + 1, pools.blockTokens) + running <= free;
}

/** Whether a prompt can ever fit the pools when it runs alone. */
export function fitsEmptyPools(pools: NativePoolStats, tokens: number): boolean {
  return blocksFor(tokens + 1, pools.blockTokens) <= pools.kvBlocksTotal + pools.actBlocksTotal + (pools.gpuKvBlocksTotal ?? 0);
}

/** A splitter (server/scheduler/minibatch.ts): running sequences → groups of indices, run as separate steps. */
export type MiniBatcher = (seqs: Array<{ contextTokens: number; engineId: number | null }>) => number[][];

/** Splits running sequences (in admission order) into steps of at most maxBatch. */
export function formBatches<T extends { contextTokens: number; engineId: number | null }>(
  running: T[],
  maxBatch: number,
  miniBatcher?: MiniBatcher,
): T[][] {
  const cap = Math.max(1, maxBatch);
  const groups: T[][] = [];
  if (miniBatcher && running.length > 0) {
    for (const idx of miniBatcher(running)) {
      const g = idx.map((i) => running[i]).filter((s) => s !== undefined);
      for (let i = 0; i < g.length; i += cap) groups.push(g.slice(i, i + cap));
    }
    // A splitter that drops sequences would starve them: fall back to plain chunks.
    if (groups.reduce((n, g) => n + g.length, 0) === running.length) return groups;
    groups.length = 0;
  }
  for (let i = 0; i < running.length; i += cap) groups.push(running.slice(i, i + cap));
  return groups;
}

/**
 * Whether to keep preempting: a sequence that could not grow needs one free block. Victims are
 * taken newest-admitted first (they lose the least work; vLLM's recompute policy), and at least
 * one sequence always keeps running so the system makes progress.
 */
export function needsPreemption(freeBlocks: number, needy: number, running: number): boolean {
  return needy > freeBlocks && running > 1;
}

/** Seconds a client should wait before retrying when the queue is full (at least 1, at most 60). */
export function retryAfterSeconds(queueDepth: number, finishedPerSecond: number): number {
  if (!(finishedPerSecond > 0)) return 5;
  return Math.min(60, Math.max(1, Math.ceil(queueDepth / finishedPerSecond)));
}
