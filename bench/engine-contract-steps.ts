// The token-count contract of the engine's counters (issue 11, native/src/core/backend.h "Who
// counts what"): the core counts steps and prefill/decode tokens once per step, whatever the
// backend. ONE scripted run and ONE checker, used by the jest test (test/integration/engine-contract.test.ts,
// on CPU and the test FakeEngine) and by `node dist/bench/engine-contract.js` on the GPU host, where
// there is no jest (it also compares CPU with CUDA). Mechanism only: no device or model choice here.
import { addCounters, zeroCounters } from '../native/ts/counters.js';
import type { NativeCounters, NativeEngine } from '../native/ts/addon-types.js';

/** The engine surface the script drives (NativeEngine, or a test stand-in). */
export type ContractEngine = Pick<NativeEngine, 'addSequence' | 'removeSequence' | 'sequence' | 'step' | 'counters'>;

export interface ContractOptions {
  /** Tokens per cache block of the engine (the shared prefix is two whole blocks). */
  blockTokens: number;
  /** Vocabulary size (prompt ids stay below it). */
  vocab: number;
  /** ACT fraction of every sequence's blocks. */
  actFraction: number;
  /** Whether the engine reuses cached prompt blocks (prefix caching on). */
  prefixCaching: boolean;
}

/** One step as run: what it should count and what it counted. */
export interface ContractStep {
  label: string;
  sequences: number;
  expected: { prefillTokens: number; decodeTokens: number };
  counted: { steps: number; prefillTokens: number; decodeTokens: number };
  /** Sequences whose status was not ok (the script never runs out of blocks: expected 0). */
  notOk: number;
  /** Tokens sampled (one per sequence that ran). */
  tokens: number;
}

export interface ContractRun {
  actFraction: number;
  steps: ContractStep[];
  /** Sequences that were prefilled (each prefill samples its first token). */
  prefilledSequences: number;
  /** Tokens the steps returned: what a server hands to requests (stats' generatedTokensTotal). */
  generatedTokens: number;
  /** The prompt tokens that came from the prefix cache for the sequence sharing a prefix. */
  prefixHitTokens: number;
  /** engine.counters() after − before: what /v1/hybridserve/stats reports as `counters`. */
  totals: { steps: number; prefillTokens: number; decodeTokens: number };
  /** The sum of the steps' own counters. */
  stepSum: { steps: number; prefillTokens: number; decodeTokens: number };
}

const greedy = { temperature: 0, topK: 0, topP: 1, seed: 1 };

/** Deterministic prompt ids from a salt, below the vocabulary. */
function ids(n: number, salt: number, vocab: number): number[] {
  return Array.from({ length: n }, (_, i) => (i * 131 + salt * 977 + 11) % vocab);
}

const pick = (c: NativeCounters) => ({ steps: c.steps, prefillTokens: c.prefillTokens, decodeTokens: c.decodeTokens });

/**
 * Runs a fixed mix of prefill-only, mixed prefill + decode and decode-only steps: A (37 tokens) and
 * B (21) prefill; C joins with A's first two blocks as its prefix while A and B decode; B leaves and
 * D (19) joins; the rest decode. Prompt lengths are not whole blocks, so a prefix hit never leaves a
 * single new token (which the core would count as decode). Frees every sequence it made.
 */
export async function runTokenContract(e: ContractEngine, o: ContractOptions): Promise<ContractRun> {
  const shared = 2 * o.blockTokens;
  const pa = ids(37, 1, o.vocab);
  const pc = pa.slice(0, shared).concat(ids(9, 3, o.vocab));
  const add = (p: number[]) => e.addSequence(Int32Array.from(p), { sampling: greedy, actFraction: o.actFraction });
  const hit = o.prefixCaching ? shared : 0;
  const before = pick(e.counters());
  const steps: ContractStep[] = [];
  let sum = zeroCounters();
  let generated = 0;
  const live: number[] = [];
  const run = async (label: string, prefill: number, decode: number) => {
    const r = await e.step(Int32Array.from(live));
    sum = addCounters(sum, r.counters);
    let notOk = 0;
    for (let i = 0; i < live.length; i++) if (r.status[i] !== 0) notOk++;
    generated += live.length - notOk;
    steps.push({
      label,
      sequences: live.length,
      expected: { prefillTokens: prefill, decodeTokens: decode },
      counted: pick(r.counters),
      notOk,
      tokens: live.length - notOk,
    });
  };
  let prefixHitTokens = 0;
  try {
    const a = add(pa);
    live.push(a, add(ids(21, 2, o.vocab)));
    await run('prefill A+B', 37 + 21, 0);
    const c = add(pc);
    prefixHitTokens = e.sequence(c).prefixHitTokens ?? 0;
    live.push(c);
    await run('decode A+B, prefill C (shared prefix)', pc.length - hit, 2);
    await run('decode A+B+C', 0, 3);
    e.removeSequence(live.splice(1, 1)[0]);
    live.push(add(ids(19, 4, o.vocab)));
    await run('decode A+C, prefill D', 19, 2);
    await run('decode A+C+D', 0, 3);
    await run('decode A+C+D', 0, 3);
  } finally {
    for (const id of live) e.removeSequence(id);
  }
  const after = pick(e.counters());
  return {
    actFraction: o.actFraction,
    steps,
    prefilledSequences: 4,
    generatedTokens: generated,
    prefixHitTokens,
    totals: {
      steps: after.steps - before.steps,
      prefillTokens: after.prefillTokens - before.prefillTokens,
      decodeTokens: after.decodeTokens - before.decodeTokens,
    },
    stepSum: pick(sum),
  };
}

/** Every way a run breaks the contract, as one line each (empty: it holds). Pure. */
export function checkTokenContract(r: ContractRun, o: Pick<ContractOptions, 'blockTokens' | 'prefixCaching'>): string[] {
  const bad: string[] = [];
  const at = `ACT fraction ${r.actFraction}`;
  r.steps.forEach((s, i) => {
    const where = `${at}, step ${i + 1} (${s.label})`;
    if (s.counted.steps !== 1) bad.push(`${where}: counted ${s.counted.steps} steps, expected 1`);
    if (s.counted.prefillTokens !== s.expected.prefillTokens)
      bad.push(`${where}: prefillTokens ${s.counted.prefillTokens}, expected ${s.expected.prefillTokens}`);
    if (s.counted.decodeTokens !== s.expected.decodeTokens)
      bad.push(`${where}: decodeTokens ${s.counted.decodeTokens}, expected ${s.expected.decodeTokens}`);
    if (s.notOk !== 0) bad.push(`${where}: ${s.notOk} sequences did not run`);
  });
  const wantHit = o.prefixCaching ? 2 * o.blockTokens : 0;
  if (r.prefixHitTokens !== wantHit) bad.push(`${at}: prefix hit ${r.prefixHitTokens} tokens, expected ${wantHit}`);
  for (const k of ['steps', 'prefillTokens', 'decodeTokens'] as const) {
    if (r.totals[k] !== r.stepSum[k]) bad.push(`${at}: engine total ${k} ${r.totals[k]} != sum of the steps ${r.stepSum[k]}`);
  }
  if (r.totals.steps !== r.steps.length) bad.push(`${at}: engine counted ${r.totals.steps} steps, ran ${r.steps.length}`);
  // Every sampled token is a decode token, except the first token of each prefilled sequence.
  if (r.totals.decodeTokens + r.prefilledSequences !== r.generatedTokens)
    bad.push(
      `${at}: decodeTokens ${r.totals.decodeTokens} + ${r.prefilledSequences} first tokens != ${r.generatedTokens} generated tokens`,
    );
  return bad;
}

/** The counts two backends must agree on for the same steps (not the sampled ids: fp32 vs fp16 may differ). */
export function countsOf(r: ContractRun) {
  return {
    steps: r.steps.map((s) => ({ ...s.counted, sequences: s.sequences, tokens: s.tokens })),
    totals: r.totals,
    generatedTokens: r.generatedTokens,
    prefixHitTokens: r.prefixHitTokens,
  };
}

/** Where runs of the same script on two backends count differently (empty: they agree). Pure. */
export function compareTokenCounts(a: ContractRun, b: ContractRun, names: [string, string]): string[] {
  const ca = JSON.stringify(countsOf(a)),
    cb = JSON.stringify(countsOf(b));
  return ca === cb ? [] : [`ACT fraction ${a.actFraction}: ${names[0]} counts ${ca} but ${names[1]} counts ${cb}`];
}
