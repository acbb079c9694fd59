// Pure scheduling decisions: admission, lanes (steps in flight), batch formation, preemption
// victims, Retry-After. The scheduler (scheduler.ts) applies them to the engine; these functions
// only compute.
import type { NativeEngineInfo, NativePoolStats } from '../../native/ts/addon-types.js';

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

/**
 * The sequence a waiting one was submitted after (SequenceRequest.after): the other samples of a
 * prompt wait for its first sample to compute the prompt, then take its blocks from the prefix
 * cache instead of computing the same prompt again in the same step.
 */
export interface AfterTarget {
  /** A step that computed its prompt has returned: its full blocks are named in the prefix cache. */
  promptComputed: boolean;
  /** Finished, cancelled or failed: there is nothing to wait for any more. */
  done: boolean;
}

/** Whether a waiting sequence is held back: the sequence it waits for has yet to compute its prompt. */
export function heldBack(after: AfterTarget | null): boolean {
  return after !== null && !after.done && !after.promptComputed;
}

/**
 * The index in `waiting` (FIFO order) of the next sequence admission may take: the first one not
 * held back, so that a held sequence never blocks those behind it; -1 when every one is held.
 */
export function nextAdmissible(waiting: ReadonlyArray<{ after: AfterTarget | null }>): number {
  return waiting.findIndex((s) => !heldBack(s.after));
}

/** Whether a prompt can ever fit the pools when it runs alone. */
export function fitsEmptyPools(pools: NativePoolStats, tokens: number): boolean {
  return blocksFor(tokens + 1, pools.blockTokens) <= pools.kvBlocksTotal + pools.actBlocksTotal + (pools.gpuKvBlocksTotal ?? 0);
}

/** A splitter (server/scheduler/minibatch.ts): running sequences → groups of indices, run as separate steps. */
export type MiniBatcher = (seqs: Array<{ contextTokens: number; engineId: number | null }>) => number[][];

/**
 * A cap on the tokens one engine step computes (`serve --max-step-tokens`): the GPU engine holds
 * every new token's hidden state for the whole step, so the cap bounds the workspace the start plan
 * reserves (a burst of long prompts then prefills over several steps instead of one).
 */
export interface StepTokenCap<T> {
  maxTokens: number;
  /** Tokens the sequence computes in its next step (its uncached tokens: the prompt, or 1). */
  newTokens: (s: T) => number;
}

/**
 * Splits one step's sequences, in order, into steps of at most `cap.maxTokens` new tokens; a
 * sequence with more than the cap alone gets a step of its own (a prompt is never split).
 */
export function splitByStepTokens<T>(group: T[], cap: StepTokenCap<T>): T[][] {
  const out: T[][] = [];
  let cur: T[] = [];
  let tokens = 0;
  for (const s of group) {
    const n = Math.max(1, cap.newTokens(s));
    if (cur.length > 0 && tokens + n > cap.maxTokens) {
      out.push(cur);
      cur = [];
      tokens = 0;
    }
    cur.push(s);
    tokens += n;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/**
 * Splits running sequences (in admission order) into steps of at most maxBatch, then, with a
 * `stepTokens` cap, into steps of at most that many new tokens.
 */
export function formBatches<T extends { contextTokens: number; engineId: number | null }>(
  running: T[],
  maxBatch: number,
  miniBatcher?: MiniBatcher,
  stepTokens?: StepTokenCap<T>,
): T[][] {
  const groups = groupsOf(running, Math.max(1, maxBatch), miniBatcher);
  return stepTokens && stepTokens.maxTokens > 0 ? groups.flatMap((g) => splitByStepTokens(g, stepTokens)) : groups;
}

function groupsOf<T extends { contextTokens: number; engineId: number | null }>(
  running: T[],
  cap: number,
  miniBatcher?: MiniBatcher,
): T[][] {
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

/** The preemption victim among the running sequences: the newest admitted (it loses the least work); -1 when none. */
export function preemptionVictim(running: ReadonlyArray<{ admittedRank: number }>): number {
  let best = -1;
  running.forEach((s, i) => {
    if (best < 0 || s.admittedRank > running[best].admittedRank) best = i;
  });
  return best;
}

/** Sequences one lane may hold: the total maxBatch shared evenly, rounded up (at least 1). */
export function laneCap(maxBatch: number, lanes: number): number {
  return Math.ceil(Math.max(1, maxBatch) / Math.max(1, lanes));
}

/**
 * The lane a newly admitted sequence joins: the one with the fewest sequences, ties to the fewest
 * context tokens, then the lowest slot; lanes at `cap` are full. -1 when every lane is full.
 */
export function pickLane(lanes: ReadonlyArray<{ sequences: number; tokens: number }>, cap: number): number {
  let best = -1;
  lanes.forEach((l, i) => {
    if (l.sequences >= cap) return;
    const b = best < 0 ? null : lanes[best];
    if (!b || l.sequences < b.sequences || (l.sequences === b.sequences && l.tokens < b.tokens)) best = i;
  });
  return best;
}

/** Pipeline stages of an engine, from its device name (the addon appends " x N pipeline stages"); 1 when it has none. */
export function pipelineStagesOf(deviceName: string): number {
  const m = / x (\d+) pipeline stages$/.exec(deviceName);
  return m ? Number(m[1]) : 1;
}

/**
 * Lanes (steps in flight) the scheduler runs. `requested` (--steps-in-flight) must be an integer in
 * [1, maxStepsInFlight]; else RangeError. By default one lane per pipeline stage when the engine
 * can keep several steps in flight (a pipeline pays only then: step g on stage s while step g+1 is
 * on stage s-1), else 1: on a single-stage engine steps in flight would only take turns.
 */
export function chooseLanes(info: Pick<NativeEngineInfo, 'maxStepsInFlight'>, stages: number, requested?: number): number {
  const most = Math.max(1, info.maxStepsInFlight ?? 1);
  if (requested !== undefined) {
    if (!Number.isInteger(requested) || requested < 1 || requested > most)
      throw new RangeError(`steps in flight must be an integer in [1, ${most}] (the engine's maxStepsInFlight), got ${requested}`);
    return requested;
  }
  return most > 1 && stages > 1 ? Math.min(stages, most) : 1;
}

/** Seconds a client should wait before retrying when the queue is full (at least 1, at most 60). */
export function retryAfterSeconds(queueDepth: number, finishedPerSecond: number): number {
  if (!(finishedPerSecond > 0)) return 5;
  return Math.min(60, Math.max(1, Math.ceil(queueDepth / finishedPerSecond)));
}
