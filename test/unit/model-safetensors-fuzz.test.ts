// Fuzz: random and mutated safetensors headers/files and config.json objects must give either a
// result or a ModelError: never another exception type, never a hang (the whole file is bounded
// by jest's timeout; each case is a pure parse of at most a few KB).
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { parseHfConfig } from '../../model/config.js';
import { ModelError } from '../../model/errors.js';
import { parseSafetensorsHeader, readSafetensorsFile } from '../../model/safetensors.js';
import { LLAMA_REF, OPT_REF, buildSafetensors } from '../fixtures/helpers.js';

function onlyModelError(fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof ModelError)) throw new Error(`expected ModelError, got ${String(err)}`);
  }
}

async function onlyModelErrorAsync(fn: () => Promise<unknown>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    if (!(err instanceof ModelError)) throw new Error(`expected ModelError, got ${String(err)}`);
  }
}

const jsonValue = fc.jsonValue({ maxDepth: 3 });
const dim = fc.oneof(fc.integer({ min: -2, max: 64 }), fc.constant(2 ** 53), fc.double(), fc.string());
const entry = fc.record(
  {
    dtype: fc.oneof(fc.constantFrom('F32', 'F16', 'BF16', 'I64', 'U8', 'F8_E4M3', 'X'), jsonValue),
    shape: fc.oneof(fc.array(dim, { maxLength: 4 }), jsonValue),
    data_offsets: fc.oneof(
      fc.tuple(fc.integer({ min: -4, max: 5000 }), fc.integer({ min: -4, max: 5000 })),
      fc.array(dim, { maxLength: 3 }),
      jsonValue,
    ),
  },
  { requiredKeys: [] },
);
const header = fc.dictionary(fc.oneof(fc.string({ maxLength: 8 }), fc.constant('__metadata__')), fc.oneof(entry, jsonValue), {
  maxKeys: 6,
});

describe('safetensors fuzz', () => {
  test('random structured headers: a result with in-bounds tensors, or ModelError', () => {
    fc.assert(
      fc.property(header, fc.integer({ min: 0, max: 6000 }), (h, dataBytes) => {
        const text = JSON.stringify(h);
        const n = Buffer.byteLength(text);
        onlyModelError(() => {
          const ts = parseSafetensorsHeader(text, n, 8 + n + dataBytes, 'f');
          for (const t of ts) {
            expect(t.offset).toBeGreaterThanOrEqual(8 + n);
            expect(t.offset + t.byteLength).toBeLessThanOrEqual(8 + n + dataBytes);
          }
        });
      }),
      { numRuns: 2000, seed: 1 },
    );
  });

  test('random and mutated header text', () => {
    const valid = readFileSync(path.join(OPT_REF, 'model.safetensors'));
    const n = Number(valid.readBigUInt64LE(0));
    const text = valid.subarray(8, 8 + n).toString('utf8');
    const mutated = fc
      .tuple(fc.nat({ max: text.length - 1 }), fc.nat({ max: 40 }), fc.string({ maxLength: 6 }))
      .map(([at, del, ins]) => text.slice(0, at) + ins + text.slice(at + del));
    fc.assert(
      fc.property(fc.oneof(fc.string(), mutated), fc.integer({ min: 0, max: valid.length }), (t, size) => {
        onlyModelError(() => parseSafetensorsHeader(t, Buffer.byteLength(t), size, 'f'));
      }),
      { numRuns: 2000, seed: 2 },
    );
  });

  test('mutated and truncated files on disk', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'hs-fuzz-'));
    const base = buildSafetensors([
      { name: 'a', shape: [3, 4] },
      { name: 'b', dtype: 'F16', shape: [5] },
      { name: 'c', dtype: 'BF16', shape: [2, 2] },
    ]);
    const file = path.join(dir, 'f.safetensors');
    await fc.assert(
      fc.asyncProperty(
        fc.nat({ max: base.length }),
        fc.array(fc.tuple(fc.nat({ max: base.length - 1 }), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
        async (cut, flips) => {
          const b = Buffer.from(base.subarray(0, cut === 0 ? base.length : cut));
          for (const [at, v] of flips) if (at < b.length) b[at] = v;
          writeFileSync(file, b);
          await onlyModelErrorAsync(() => readSafetensorsFile(file));
        },
      ),
      { numRuns: 600, seed: 3 },
    );
  });
});

describe('config.json fuzz', () => {
  const bases = [OPT_REF, LLAMA_REF].map((d) => JSON.parse(readFileSync(path.join(d, 'config.json'), 'utf8')) as Record<string, unknown>);
  test('random objects and fixture configs with fields replaced or removed', () => {
    const keys = [...new Set(bases.flatMap((b) => Object.keys(b)))];
    const mutation = fc
      .tuple(fc.nat({ max: 1 }), fc.array(fc.tuple(fc.constantFrom(...keys), fc.option(jsonValue)), { maxLength: 4 }))
      .map(([which, edits]) => {
        const obj: Record<string, unknown> = { ...bases[which] };
        for (const [k, v] of edits) {
          if (v === null) delete obj[k];
          else obj[k] = v;
        }
        return obj;
      });
    fc.assert(
      fc.property(fc.oneof(jsonValue, mutation), (value) => {
        onlyModelError(() => {
          const c = parseHfConfig(value, 'x');
          expect(c.hiddenSize).toBeGreaterThan(0);
          expect(c.numHeads % c.numKvHeads).toBe(0);
        });
      }),
      { numRuns: 3000, seed: 4 },
    );
  });
});
