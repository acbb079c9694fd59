// Shared by the engine-*.test.ts files: greedy generation through the native engine and a
// relative error over whole logits rows.
import { presetConfig } from '../../model/presets.js';
import { createEngine, toNativeConfig } from '../../native/ts/engine.js';
import type { NativeEngine, NativeEngineOptions, NativeSamplingParams } from '../../native/ts/engine.js';

export const greedy: NativeSamplingParams = { temperature: 0, topK: 0, topP: 1, seed: 0 };

export async function presetEngine(preset: string, over: Partial<NativeEngineOptions> = {}): Promise<NativeEngine> {
  const cfg = presetConfig(preset);
  if (!cfg) throw new Error(`unknown preset ${preset}`);
  return createEngine({
    device: 'cpu',
    config: toNativeConfig(cfg),
    weights: { kind: 'synthetic', seed: 0 },
    blockTokens: 4,
    kvBlocks: 256,
    actBlocks: 256,
    actFraction: 0,
    threads: 2,
    ...over,
  });
}

export interface Trace {
  tokens: number[];
  logits: Float32Array[];
}

/** Generates `steps` greedy tokens for one prompt alone, then frees the sequence. */
export async function generate(e: NativeEngine, prompt: number[], steps: number, actFraction?: number): Promise<Trace> {
  const id = e.addSequence(Int32Array.from(prompt), { sampling: greedy, ...(actFraction === undefined ? {} : { actFraction }) });
  const out: Trace = { tokens: [], logits: [] };
  for (let s = 0; s < steps; s++) {
    const r = await e.step(Int32Array.of(id), { logits: true });
    out.tokens.push(r.tokens[0]);
    out.logits.push(r.logits!);
  }
  e.removeSequence(id);
  return out;
}

/** max|a - b| / max|b| over a row. */
export function relError(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return den > 0 ? num / den : num;
}

export function prompt(n: number, salt: number, vocab: number): number[] {
  return Array.from({ length: n }, (_, i) => (i * 131 + salt * 977 + 11) % vocab);
}

/**
 * The name and message of what `fn` throws (or a promise rejects with). Errors made by the addon
 * belong to Node's main realm, not jest's sandbox, so `toThrow(RangeError)` cannot match them.
 */
/** What a caller can tell an addon error by: its class name, message and typed code. */
export interface ErrorShape {
  name: string;
  message: string;
  code: unknown;
}
const shape = (e: unknown): ErrorShape => ({
  name: (e as Error).name,
  message: (e as Error).message,
  code: (e as { code?: unknown }).code,
});

export function errorOf(fn: () => unknown): ErrorShape {
  try {
    fn();
  } catch (e) {
    return shape(e);
  }
  throw new Error('expected a throw');
}

export async function rejectionOf(p: Promise<unknown>): Promise<ErrorShape> {
  try {
    await p;
  } catch (e) {
    return shape(e);
  }
  throw new Error('expected a rejection');
}
