// F16 and BF16 checkpoints load through the same path: the fixture's weights rounded to F16/BF16
// and stored as such must give the same logits as the same rounded values stored as F32 (the
// engine computes in fp32 either way), and stay close to transformers' fp32 reference.
import { mkdtempSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, test } from '@jest/globals';
import { loadModel, openEngine } from '../../model/load.js';
import { readSafetensorsFile } from '../../model/safetensors.js';
import { OPT_REF, withHeader } from '../fixtures/helpers.js';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** fp32 → bf16 bits, round to nearest even. */
function toBf16(x: number): number {
  f32[0] = x;
  const u = u32[0];
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}
function fromBf16(h: number): number {
  u32[0] = h << 16;
  return f32[0];
}

/** fp32 → fp16 bits, round to nearest even (normal and subnormal ranges; weights here are small). */
function toF16(x: number): number {
  f32[0] = x;
  const u = u32[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rounded = (mant + half - 1 + ((mant >>> shift) & 1)) >>> shift;
    return sign | rounded;
  }
  const rounded = mant + 0xfff + ((mant >>> 13) & 1);
  if (rounded & 0x800000) {
    mant = 0;
    e += 1;
    if (e >= 0x1f) return sign | 0x7c00;
  } else {
    mant = rounded;
  }
  return sign | (e << 10) | (mant >>> 13);
}
function fromF16(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

test('the fp16 converter rounds like IEEE', () => {
  for (const [x, bits] of [
    [1, 0x3c00],
    [-2, 0xc000],
    [65504, 0x7bff],
    [1e-7, 0x0002],
    [0.1, 0x2e66],
    [1 + 2 ** -11, 0x3c00],
    [1 + 3 * 2 ** -11, 0x3c02],
  ] as const) {
    expect(toF16(x)).toBe(bits);
  }
  expect(fromF16(0x2e66)).toBeCloseTo(0.0999755859375, 12);
  expect(fromBf16(toBf16(1.00390625))).toBe(1); // a tie rounds to even
});

/** Writes the fixture's tensors as `dtype` (rounded) and as F32 holding the same rounded values. */
function writeRounded(
  dir: string,
  dtype: 'F16' | 'BF16',
  rounded: boolean,
  tensors: Awaited<ReturnType<typeof readSafetensorsFile>>,
  data: Buffer,
) {
  const header: Record<string, unknown> = {};
  const chunks: Buffer[] = [];
  let off = 0;
  const [enc, dec] = dtype === 'F16' ? [toF16, fromF16] : [toBf16, fromBf16];
  for (const t of tensors) {
    const n = t.byteLength / 4;
    const out = Buffer.alloc(rounded ? n * 4 : n * 2);
    for (let i = 0; i < n; i++) {
      const h = enc(data.readFloatLE(t.offset + i * 4));
      if (rounded) out.writeFloatLE(dec(h), i * 4);
      else out.writeUInt16LE(h, i * 2);
    }
    header[t.name] = { dtype: rounded ? 'F32' : dtype, shape: t.shape, data_offsets: [off, off + out.length] };
    chunks.push(out);
    off += out.length;
  }
  writeFileSync(path.join(dir, 'model.safetensors'), withHeader(JSON.stringify(header), Buffer.concat(chunks)));
  for (const f of ['config.json', 'vocab.json', 'merges.txt']) copyFileSync(path.join(OPT_REF, f), path.join(dir, f));
}

async function lastLogits(dir: string, prompt: number[], steps: number): Promise<{ logits: Float32Array[]; tokens: number[] }> {
  const model = await loadModel(dir);
  const engine = await openEngine(model, { tokenBudget: 64, blockTokens: 4, actFraction: 0.5, threads: 1 });
  try {
    const id = engine.addSequence(Int32Array.from(prompt), { sampling: { temperature: 0, topK: 0, topP: 1, seed: 0 } });
    const logits: Float32Array[] = [];
    const tokens: number[] = [];
    for (let s = 0; s <= steps; s++) {
      const r = await engine.step(Int32Array.of(id), { logits: true });
      logits.push(r.logits!.slice());
      tokens.push(r.tokens[0]);
    }
    return { logits, tokens };
  } finally {
    await engine.close();
  }
}

describe.each(['F16', 'BF16'] as const)('%s checkpoint', (dtype) => {
  test('same logits as its values in F32, close to the fp32 reference', async () => {
    const ref = JSON.parse(readFileSync(path.join(OPT_REF, 'reference.json'), 'utf8')) as {
      prompt: number[];
      steps: number;
      logits: number[][];
    };
    const file = path.join(OPT_REF, 'model.safetensors');
    const tensors = await readSafetensorsFile(file);
    const data = readFileSync(file);
    const half = mkdtempSync(path.join(tmpdir(), `hs-${dtype}-`));
    const wide = mkdtempSync(path.join(tmpdir(), `hs-${dtype}-f32-`));
    writeRounded(half, dtype, false, tensors, data);
    writeRounded(wide, dtype, true, tensors, data);
    expect(readFileSync(path.join(half, 'model.safetensors')).length).toBeLessThan(data.length * 0.6);
    const a = await lastLogits(half, ref.prompt, ref.steps);
    const b = await lastLogits(wide, ref.prompt, ref.steps);
    let same = 0;
    let vsRef = 0;
    for (let s = 0; s < a.logits.length; s++) {
      for (let v = 0; v < a.logits[s].length; v++) {
        same = Math.max(same, Math.abs(a.logits[s][v] - b.logits[s][v]));
        vsRef = Math.max(vsRef, Math.abs(a.logits[s][v] - ref.logits[s][v]));
      }
    }
    if (process.env.HYBRIDSERVE_REPORT)
      console.log(
        `${dtype}: max abs logit difference vs the same values in F32 ${same.toExponential(2)}, vs the fp32 reference ${vsRef.toExponential(2)}`,
      );
    expect(a.tokens).toEqual(b.tokens);
    expect(same).toBeLessThan(1e-4);
    // Rounding the weights moves the logits a little, not a lot (BF16 keeps 8 mantissa bits).
    expect(vsRef).toBeLessThan(dtype === 'F16' ? 0.05 : 0.5);
    expect(vsRef).toBeGreaterThan(0);
  });
});
