import { describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { PlanError, formMiniBatches, sequenceWorkingBytes, type RunningSequence } from '../../planning/index.js';

const KV = 4 * 5120;
const ACT = 2 * 5120;
const opts = (maxBytes: number, minBatches = 1) => ({ kvBytesPerToken: KV, actBytesPerToken: ACT, maxBytes, minBatches });

const arbSeqs = fc
  .array(fc.record({ ctx: fc.integer({ min: 1, max: 4096 }), share: fc.double({ min: 0, max: 1, noNaN: true }) }), {
    minLength: 1,
    maxLength: 80,
  })
  .map((xs) => xs.map((x, i): RunningSequence => ({ id: i + 1, contextTokens: x.ctx, actTokens: Math.floor(x.ctx * x.share) })));

describe('mini-batch formation', () => {
  test('every sequence lands in exactly one mini-batch, each within the byte limit', () => {
    fc.assert(
      fc.property(arbSeqs, fc.integer({ min: 1, max: 8 }), fc.double({ min: 1, max: 20, noNaN: true }), (seqs, minBatches, slack) => {
        const largest = Math.max(...seqs.map((s) => sequenceWorkingBytes(s, opts(1))));
        const limit = Math.ceil(largest * slack);
        const batches = formMiniBatches(seqs, opts(limit, minBatches));
        const ids = batches.flatMap((b) => b.ids).sort((x, y) => x - y);
        expect(ids).toEqual(seqs.map((s) => s.id));
        for (const b of batches) {
          expect(b.bytes).toBeLessThanOrEqual(limit);
          expect(b.ids.length).toBeGreaterThan(0);
          const members = seqs.filter((s) => b.ids.includes(s.id));
          expect(b.actTokens).toBe(members.reduce((t, s) => t + s.actTokens, 0));
        }
        expect(batches.length).toBeGreaterThanOrEqual(Math.min(seqs.length, minBatches));
      }),
    );
  });

  test('ACT tokens and bytes are balanced: no mini-batch exceeds the mean by more than the largest sequence', () => {
    fc.assert(
      fc.property(arbSeqs, fc.integer({ min: 2, max: 6 }), (seqs, k) => {
        const batches = formMiniBatches(seqs, opts(Number.MAX_SAFE_INTEGER, k));
        const n = batches.length;
        const totalAct = seqs.reduce((t, s) => t + s.actTokens, 0);
        const totalBytes = seqs.reduce((t, s) => t + sequenceWorkingBytes(s, opts(1)), 0);
        const bigAct = Math.max(...seqs.map((s) => s.actTokens));
        const bigBytes = Math.max(...seqs.map((s) => sequenceWorkingBytes(s, opts(1))));
        for (const b of batches) {
          expect(b.actTokens).toBeLessThanOrEqual(totalAct / n + bigAct + 1e-6);
          expect(b.bytes).toBeLessThanOrEqual(totalBytes / n + bigBytes + 1e-6);
        }
      }),
      { numRuns: 300 },
    );
  });

  test('a simple case splits evenly', () => {
    const seqs: RunningSequence[] = [1, 2, 3, 4, 5, 6].map((id) => ({ id, contextTokens: 100, actTokens: id % 2 === 0 ? 100 : 0 }));
    const batches = formMiniBatches(seqs, opts(Number.MAX_SAFE_INTEGER, 3));
    expect(batches).toHaveLength(3);
    for (const b of batches) {
      expect(b.actTokens).toBe(100);
      expect(b.ids).toHaveLength(2);
    }
  });

  test('the byte limit forces more mini-batches', () => {
    const seqs: RunningSequence[] = Array.from({ length: 10 }, (_, i) => ({ id: i, contextTokens: 1000, actTokens: 500 }));
    const one = sequenceWorkingBytes(seqs[0], opts(1));
    const batches = formMiniBatches(seqs, opts(3 * one));
    expect(batches.length).toBe(4);
    expect(formMiniBatches([], opts(1))).toEqual([]);
  });

  test('bad input is a PlanError', () => {
    expect(() => formMiniBatches([{ id: 1, contextTokens: 10, actTokens: 20 }], opts(1e9))).toThrow(PlanError);
    expect(() => formMiniBatches([{ id: 1, contextTokens: 10_000, actTokens: 0 }], opts(1000))).toThrow(/more than the mini-batch limit/);
    expect(() => formMiniBatches([], opts(0))).toThrow(PlanError);
  });
});
