// Issue 14, acceptance 2: model-level error of the quantised weight formats against the 16-bit
// model (on the CPU: the f32 engine; the formats are quantised from those f32 weights), through the
// addon as the CLI and the server load models. 64-128 sequences with distinct prompts decode 10
// greedy steps in one batch; a position is compared while the quantised sequence's history still
// equals the f32 one (same context), so ≥ 256 positions are compared per model and format.
// The issue asks fp8 and int8 for top-1 agreement ≥ 99% where the f32 top-2 margin exceeds 0.05.
// On the random-weight models (the make_fixtures.py fixtures and the synthetic presets) int8 reaches
// it on the two presets only (98.3% and 98.9% on the fixtures) and fp8 on none (e4m3's three mantissa
// bits give ~4x int8's error on uniformly distributed weights, and random logits swing by whole
// units; see docs/performance.md): their assertions are the measured floors, a regression guard a
// little under the figures. The trained checkpoints (scripts/train_fixture.py: a tiny OPT and Llama
// trained on the repo's docs, prompts from held-out text) are the honest test of the target, and
// there fp8 and int8 are asserted at ≥ 99%. Figures for docs/performance.md: HYBRIDSERVE_REPORT=1.
import { describe, expect, test } from '@jest/globals';
import { loadModel, openEngine, type LoadedModel } from '../../model/load.js';
import type { NativeEngineOptions } from '../../native/ts/addon-types.js';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { FIXTURES, LLAMA_REF, OPT_REF } from '../fixtures/helpers.js';

type Dtype = NonNullable<NativeEngineOptions['weightDtype']>;

const PROMPT = 8;
const STEPS = 10;
const MARGIN = 0.05;

interface Run {
  tokens: number[][];
  logits: Float32Array[][];
}

function prompts(vocab: number, seqs: number): Int32Array[] {
  const out: Int32Array[] = [];
  let x = 12345;
  for (let s = 0; s < seqs; s++) {
    const p = new Int32Array(PROMPT);
    for (let i = 0; i < PROMPT; i++) {
      x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
      p[i] = (x >>> 8) % vocab;
    }
    out.push(p);
  }
  return out;
}

/** The trained fixture's own prompts (held-out text; scripts/train_fixture.py), if it is there. */
function trainedPrompts(dir: string): Int32Array[] | undefined {
  const file = path.join(dir, 'reference.json');
  if (!existsSync(file)) return undefined;
  const ref = JSON.parse(readFileSync(file, 'utf8')) as { prompts: number[][] };
  return ref.prompts.map((p) => Int32Array.from(p));
}

async function decode(model: LoadedModel, weightDtype: Dtype, inputs: Int32Array[]): Promise<Run> {
  const seqs = inputs.length;
  const longest = Math.max(...inputs.map((p) => p.length));
  const engine = await openEngine(model, {
    weightDtype,
    blockTokens: 16,
    tokenBudget: seqs * (longest + STEPS),
    maxSequences: seqs,
    threads: 2,
  });
  try {
    const vocab = model.config.vocabSize;
    const ids = Int32Array.from(inputs.map((p, s) => engine.addSequence(p, { sampling: { temperature: 0, topK: 0, topP: 1, seed: s } })));
    const run: Run = { tokens: Array.from(ids, () => []), logits: Array.from(ids, () => []) };
    for (let t = 0; t < STEPS; t++) {
      const r = await engine.step(ids, { logits: true });
      for (let s = 0; s < seqs; s++) {
        expect(r.status[s]).toBe(0);
        run.tokens[s].push(r.tokens[s]);
        run.logits[s].push(r.logits!.slice(s * vocab, (s + 1) * vocab));
      }
    }
    return run;
  } finally {
    await engine.close();
  }
}

function top2(l: Float32Array): { top: number; margin: number } {
  let a = -Infinity,
    b = -Infinity,
    top = 0;
  for (let v = 0; v < l.length; v++) {
    if (l[v] > a) {
      b = a;
      a = l[v];
      top = v;
    } else if (l[v] > b) b = l[v];
  }
  return { top, margin: a - b };
}

interface Figures {
  positions: number;
  agree: number;
  confident: number;
  confidentAgree: number;
  maxErr: number;
  meanErr: number;
}

function compare(ref: Run, q: Run): Figures {
  const f: Figures = { positions: 0, agree: 0, confident: 0, confidentAgree: 0, maxErr: 0, meanErr: 0 };
  let errSum = 0,
    errCount = 0;
  for (let s = 0; s < ref.tokens.length; s++) {
    for (let t = 0; t < STEPS; t++) {
      if (t > 0 && q.tokens[s][t - 1] !== ref.tokens[s][t - 1]) break; // contexts differ from here on
      const r = ref.logits[s][t],
        l = q.logits[s][t];
      const { top, margin } = top2(r);
      const same = top2(l).top === top;
      f.positions++;
      f.agree += same ? 1 : 0;
      if (margin > MARGIN) {
        f.confident++;
        f.confidentAgree += same ? 1 : 0;
      }
      for (let v = 0; v < r.length; v++) {
        const e = Math.abs(l[v] - r[v]);
        f.maxErr = Math.max(f.maxErr, e);
        errSum += e;
      }
      errCount += r.length;
    }
  }
  f.meanErr = errSum / errCount;
  return f;
}

// Minimum top-1 agreement on confident positions (margin > 0.05), per format: measured − ~2 points.
type Floors = Record<Dtype, number>;
const FIXTURE_FLOORS: Floors = { fp16: 1, fp8: 0.86, int8: 0.96, int4: 0.6 };
const PRESET_FLOORS: Floors = { fp16: 1, fp8: 0.88, int8: 0.99, int4: 0.64 };

// The trained checkpoints (scripts/train_fixture.py: trained on the repo's docs, saved fp16) are
// the honest case for the target: fp8 and int8 at or above 99% on confident positions.
const TRAINED_FLOORS: Floors = { fp16: 1, fp8: 0.99, int8: 0.99, int4: 0.95 };
const OPT_TRAINED = path.join(FIXTURES, 'opt-trained');
const LLAMA_TRAINED = path.join(FIXTURES, 'llama-trained');

// name, spec, prompts (random ids; fewer sequences for opt-125m: its f32 engine is the slow part), floors
type Subject = [string, string, (vocab: number) => Int32Array[], Floors];
const MODELS: Subject[] = [
  ['opt-ref', OPT_REF, (v) => prompts(v, 128), FIXTURE_FLOORS],
  ['llama-ref', LLAMA_REF, (v) => prompts(v, 128), FIXTURE_FLOORS],
  ['opt-125m', 'synthetic:opt-125m', (v) => prompts(v, 64), PRESET_FLOORS],
  ['llama-tiny', 'synthetic:llama-tiny', (v) => prompts(v, 128), PRESET_FLOORS],
];
for (const [name, dir] of [
  ['opt-trained', OPT_TRAINED],
  ['llama-trained', LLAMA_TRAINED],
] as const) {
  const trained = trainedPrompts(dir);
  if (trained) MODELS.push([name, dir, () => trained, TRAINED_FLOORS]);
}

test('the trained OPT fixture is present (scripts/train_fixture.py)', () => {
  expect(MODELS.map((m) => m[0])).toContain('opt-trained');
});

describe.each(MODELS)('%s: quantised weights against the 16-bit model', (name, spec, inputs, floors) => {
  test('top-1 agreement on confident positions at or above the format floor; logits close', async () => {
    const model = await loadModel(spec);
    const ref = await decode(model, 'fp16', inputs(model.config.vocabSize));
    const rows: string[] = [];
    const figures: [Dtype, Figures][] = [];
    for (const dtype of ['fp8', 'int8', 'int4'] as const) {
      const f = compare(ref, await decode(model, dtype, inputs(model.config.vocabSize)));
      figures.push([dtype, f]);
      rows.push(
        `| ${name} | ${dtype} | ${f.positions} | ${((100 * f.agree) / f.positions).toFixed(1)}% | ` +
          `${f.confident} | ${f.confident ? ((100 * f.confidentAgree) / f.confident).toFixed(1) + '%' : '–'} | ` +
          `${f.maxErr.toFixed(4)} | ${f.meanErr.toFixed(5)} |`,
      );
    }
    if (process.env.HYBRIDSERVE_REPORT) console.log(rows.join('\n'));
    for (const [dtype, f] of figures) {
      expect(f.positions).toBeGreaterThanOrEqual(256);
      expect(f.maxErr).toBeGreaterThan(0); // the format really changed the weights
      expect(f.confident).toBeGreaterThan(0);
      expect(f.confidentAgree).toBeGreaterThanOrEqual(floors[dtype] * f.confident);
    }
  }, 600_000);
});
