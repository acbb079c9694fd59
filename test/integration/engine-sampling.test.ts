// The native sampler's logit processors and logprobs through the real engine (CPU, opt-tiny):
// logit_bias -100 bans a token, min_tokens suppresses the stop ids, penalties follow vLLM's
// definitions on the logits step() returns, logprobs are log_softmax of those logits to 1e-4,
// and addon errors carry typed codes.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { isNativeError, NativeErrorCode, type NativeEngine, type NativeSamplingParams } from '../../native/ts/engine.js';
import { greedy, presetEngine } from './engine-helpers.js';

/** The raw error `fn` throws (with its code). */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

const prompt = [2, 464, 3290, 318, 257];

/** Steps one sequence `n` times; returns the sampled tokens, the raw logits and the step results. */
async function run(e: NativeEngine, sampling: NativeSamplingParams, n: number, promptTokens?: number) {
  const id = e.addSequence(Int32Array.from(prompt), { sampling, ...(promptTokens === undefined ? {} : { promptTokens }) });
  const tokens: number[] = [];
  const results = [];
  for (let s = 0; s < n; s++) {
    const r = await e.step(Int32Array.of(id), { logits: true });
    tokens.push(r.tokens[0]);
    results.push(r);
  }
  e.removeSequence(id);
  return { tokens, results };
}

const argmax = (row: Float32Array, skip = new Set<number>()) => {
  let best = -1;
  for (let i = 0; i < row.length; i++) if (!skip.has(i) && (best < 0 || row[i] > row[best])) best = i;
  return best;
};

describe('native logit processors', () => {
  let e: NativeEngine;
  beforeAll(async () => {
    e = await presetEngine('opt-tiny');
  });
  afterAll(async () => {
    await e?.close();
  });

  test('logit_bias -100 bans a token: greedy then takes the runner-up', async () => {
    const plain = await run(e, greedy, 1);
    const first = plain.tokens[0];
    const banned = await run(e, { ...greedy, logitBias: [[first, -100]] }, 1);
    expect(banned.tokens[0]).not.toBe(first);
    expect(banned.tokens[0]).toBe(argmax(banned.results[0].logits!, new Set([first])));
  });

  test('min_tokens keeps the stop ids from being sampled until reached', async () => {
    const plain = await run(e, greedy, 4);
    // Make every step's greedy choice a "stop id": while below min_tokens none may be sampled.
    const stops = [...new Set(plain.tokens)];
    const held = await run(e, { ...greedy, minTokens: 3, stopTokenIds: stops }, 4);
    for (let s = 0; s < 3; s++) {
      expect(stops).not.toContain(held.tokens[s]);
      expect(held.tokens[s]).toBe(argmax(held.results[s].logits!, new Set(stops)));
    }
    // Reached: the raw argmax again.
    expect(held.tokens[3]).toBe(argmax(held.results[3].logits!));
  });

  test('frequency and presence penalties count generated tokens only (promptTokens marks where they start)', async () => {
    const p = { ...greedy, frequencyPenalty: 1.5, presencePenalty: 0.5 };
    const { tokens, results } = await run(e, p, 6);
    for (let s = 0; s < 6; s++) {
      const row = Float32Array.from(results[s].logits!);
      const counts = new Map<number, number>();
      for (const t of tokens.slice(0, s)) counts.set(t, (counts.get(t) ?? 0) + 1);
      for (const [t, c] of counts) row[t] -= 1.5 * c + 0.5;
      expect(tokens[s]).toBe(argmax(row));
    }
    // Re-added with part of the tokens marked as generated (a preempted sequence): same rule.
    const id = e.addSequence(Int32Array.from([...prompt, tokens[0], tokens[0]]), {
      sampling: { ...greedy, frequencyPenalty: 50 },
      promptTokens: prompt.length,
    });
    const r = await e.step(Int32Array.of(id), { logits: true });
    e.removeSequence(id);
    const row = Float32Array.from(r.logits!);
    row[tokens[0]] -= 100;
    expect(r.tokens[0]).toBe(argmax(row));
  });

  test('repetition penalty divides positive and multiplies negative logits of prompt and output tokens', async () => {
    const { tokens, results } = await run(e, { ...greedy, repetitionPenalty: 3 }, 4);
    for (let s = 0; s < 4; s++) {
      const row = Float32Array.from(results[s].logits!);
      for (const t of new Set([...prompt, ...tokens.slice(0, s)])) row[t] = row[t] > 0 ? row[t] / 3 : row[t] * 3;
      expect(tokens[s]).toBe(argmax(row));
    }
  });

  test('logprobs are log_softmax of the returned logits (1e-4), with the top N best first', async () => {
    const { tokens, results } = await run(e, { temperature: 0.8, topK: 0, topP: 1, seed: 5, logprobs: 5 }, 3);
    for (let s = 0; s < 3; s++) {
      const r = results[s];
      const row = r.logits!;
      let max = -Infinity;
      for (const x of row) max = Math.max(max, x);
      let sum = 0;
      for (const x of row) sum += Math.exp(x - max);
      const lse = max + Math.log(sum);
      expect(Math.abs(r.logprobs![0] - (row[tokens[s]] - lse))).toBeLessThan(1e-4);
      expect(r.topN).toBe(5);
      const order = Array.from(row.keys())
        .sort((a, b) => row[b] - row[a] || a - b)
        .slice(0, 5);
      expect(Array.from(r.topTokenIds!)).toEqual(order);
      for (let k = 0; k < 5; k++) expect(Math.abs(r.topLogprobs![k] - (row[order[k]] - lse))).toBeLessThan(1e-4);
    }
  });

  test('in a batch only the sequences that asked get logprobs (NaN / -1 elsewhere)', async () => {
    const a = e.addSequence(Int32Array.from(prompt), { sampling: { ...greedy, logprobs: 2 } });
    const b = e.addSequence(Int32Array.from(prompt), { sampling: greedy });
    const r = await e.step(Int32Array.of(b, a));
    e.removeSequence(a);
    e.removeSequence(b);
    expect(Number.isNaN(r.logprobs![0])).toBe(true);
    expect(Array.from(r.topTokenIds!.subarray(0, 2))).toEqual([-1, -1]);
    expect(r.logprobs![1]).toBeLessThanOrEqual(0);
    expect(r.topTokenIds![2]).toBe(r.tokens[1]); // greedy: the sampled token is the best one
    // Nobody asked: no logprob arrays at all (nothing copied).
    const c = e.addSequence(Int32Array.from(prompt), { sampling: greedy });
    const plain = await e.step(Int32Array.of(c));
    e.removeSequence(c);
    expect(plain.logprobs).toBeUndefined();
  });

  test('bad processor arguments are HS_INVALID_ARGUMENT errors; unknown ids HS_UNKNOWN_SEQUENCE', () => {
    const bad = (s: Partial<NativeSamplingParams>) =>
      thrown(() => e.addSequence(Int32Array.from(prompt), { sampling: { ...greedy, ...s } }));
    for (const s of [
      { logitBias: [[1e6, 1]] as Array<[number, number]> },
      { stopTokenIds: [-1] },
      { minP: 2 },
      { repetitionPenalty: 0 },
      { logprobs: 21 },
    ]) {
      const err = bad(s);
      expect(isNativeError(err, NativeErrorCode.InvalidArgument)).toBe(true);
    }
    expect(
      isNativeError(
        thrown(() => e.removeSequence(424242)),
        NativeErrorCode.UnknownSequence,
      ),
    ).toBe(true);
  });
});
