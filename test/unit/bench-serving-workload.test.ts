// The figures of bench:serving (bench/serving-workload.ts): prompts, arrivals, percentiles, summary.
import { describe, expect, test } from '@jest/globals';
import {
  makePrompts,
  percentile,
  poissonArrivals,
  serverDelta,
  summarise,
  FIRST_ID,
  type RequestSample,
} from '../../bench/serving-workload.js';

const sample = (ttft: number, latency: number, outputTokens: number, itl: number[] = []): RequestSample => ({
  ok: true,
  promptTokens: 10,
  outputTokens,
  ttft,
  latency,
  itl,
});

describe('bench:serving workload', () => {
  test('token-id prompts: fixed or sampled lengths, ids inside the vocabulary, a shared prefix, reproducible', () => {
    const fixed = makePrompts({ minTokens: 8, maxTokens: 8, kind: 'ids', sharedPrefix: 3, vocab: 50 }, 5, 1) as number[][];
    expect(fixed.map((p) => p.length)).toEqual([8, 8, 8, 8, 8]);
    for (const p of fixed) {
      expect(p.slice(0, 3)).toEqual(fixed[0].slice(0, 3));
      for (const id of p) {
        expect(id).toBeGreaterThanOrEqual(FIRST_ID);
        expect(id).toBeLessThan(50);
      }
    }
    expect(new Set(fixed.map((p) => p.slice(3).join(','))).size).toBe(5); // the rest differs
    expect(makePrompts({ minTokens: 8, maxTokens: 8, kind: 'ids', sharedPrefix: 3, vocab: 50 }, 5, 1)).toEqual(fixed);
    const sampled = makePrompts({ minTokens: 4, maxTokens: 12, kind: 'ids', sharedPrefix: 0, vocab: 50 }, 200, 2) as number[][];
    const lens = sampled.map((p) => p.length);
    expect(Math.min(...lens)).toBe(4);
    expect(Math.max(...lens)).toBe(12);
    const text = makePrompts({ minTokens: 5, maxTokens: 5, kind: 'text', sharedPrefix: 2, vocab: 0 }, 2, 3) as string[];
    expect(text.map((t) => t.split(' ').length)).toEqual([5, 5]);
    expect(() => makePrompts({ minTokens: 4, maxTokens: 4, kind: 'ids', sharedPrefix: 5, vocab: 50 }, 1, 1)).toThrow(/shared prefix/);
  });

  test('Poisson arrivals: ordered, mean gap 1/rate; rate inf sends all at once', () => {
    const at = poissonArrivals(4000, 20, 5);
    expect(at[0]).toBe(0);
    for (let i = 1; i < at.length; i++) expect(at[i]).toBeGreaterThanOrEqual(at[i - 1]);
    expect(at.at(-1)! / (at.length - 1)).toBeCloseTo(1 / 20, 2);
    expect(poissonArrivals(3, Infinity, 1)).toEqual([0, 0, 0]);
    expect(() => poissonArrivals(3, 0, 1)).toThrow(/rate/);
  });

  test('nearest-rank percentiles', () => {
    const xs = Array.from({ length: 100 }, (_, i) => 100 - i);
    expect(percentile(xs, 0.5)).toBe(50);
    expect(percentile(xs, 0.99)).toBe(99);
    expect(percentile([7], 0.99)).toBe(7);
    expect(percentile([], 0.5)).toBeNaN();
  });

  test("summary: vLLM's definitions of throughput, TTFT, TPOT, ITL and E2EL; failures left out of the figures", () => {
    const s = summarise([sample(0.1, 1.1, 11, [0.1, 0.1]), sample(0.3, 0.3, 1), { ...sample(9, 9, 5), ok: false, error: 'x' }], 2);
    expect(s).toMatchObject({
      completed: 2,
      failed: 1,
      total_input_tokens: 20,
      total_output_tokens: 12,
      request_throughput: 1,
      output_throughput: 6,
      total_token_throughput: 16,
    });
    expect(s.median_ttft_ms).toBeCloseTo(100);
    expect(s.p99_ttft_ms).toBeCloseTo(300);
    // TPOT only from requests with more than one token: (1.1 − 0.1) / 10.
    expect(s.mean_tpot_ms).toBeCloseTo(100);
    expect(s.mean_itl_ms).toBeCloseTo(100);
    expect(s.p99_e2el_ms).toBeCloseTo(1100);
  });

  test('n samples per request: output tokens count every sample, TPOT is per sample', () => {
    // 3 samples of 11 tokens each (33 in usage), 1 s after the first token: (1.1 − 0.1) / (11 − 1).
    const s = summarise([{ ...sample(0.1, 1.1, 33), samples: 3 }], 1);
    expect(s.total_output_tokens).toBe(33);
    expect(s.mean_tpot_ms).toBeCloseTo(100);
  });

  test('server figures are differences of the stats before and after', () => {
    const snap = (steps: number, p: number, d: number, w: number, pre: number) => ({
      counters: { steps, prefillTokens: p, decodeTokens: d, wallSeconds: w },
      server: { preemptions: pre },
    });
    expect(serverDelta(snap(10, 100, 50, 1, 0), snap(42, 612, 146, 3, 1), 4, 128)).toEqual({
      engineSteps: 32,
      prefillTokens: 512,
      decodeTokens: 96,
      meanBatch: 4,
      preemptions: 1,
      engineBusyFraction: 0.5,
    });
  });
});
