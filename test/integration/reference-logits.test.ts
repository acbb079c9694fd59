// Acceptance 2: the engine's logits for the fixture checkpoints (random init in transformers, fp32,
// see scripts/make_fixtures.py; and the trained fp16 ones of scripts/train_fixture.py) match transformers' within 1e-3 max abs error over the prompt and
// 8 greedy steps, at ACT fractions 0 (KV only), 1 (ACT only) and a mix, loading through
// model/load.ts exactly as the CLI and the server do.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from '@jest/globals';
import { loadModel, openEngine } from '../../model/load.js';
import { FIXTURES, LLAMA_REF, OPT_REF } from '../fixtures/helpers.js';

interface Reference {
  prompt: number[];
  steps: number;
  tokens: number[];
  logits: number[][];
}

const TOLERANCE = 1e-3;

// The trained fixtures (scripts/train_fixture.py: fp16 weights, reference in f32 from them) too, when present.
const TRAINED = ['opt-trained', 'llama-trained']
  .map((name) => [name, path.join(FIXTURES, name)])
  .filter(([, dir]) => existsSync(path.join(dir, 'reference.json')));

describe.each([['opt-ref', OPT_REF], ['llama-ref', LLAMA_REF], ...TRAINED])('%s matches transformers', (_name, dir) => {
  const ref = JSON.parse(readFileSync(path.join(dir, 'reference.json'), 'utf8')) as Reference;

  test.each([0, 0.5, 1])('ACT fraction %s: logits within 1e-3 and the same greedy tokens', async (fraction) => {
    const model = await loadModel(dir);
    // 4-token blocks: the 16 tokens span 4 blocks, so fraction 0.5 really mixes KV and ACT blocks.
    const engine = await openEngine(model, { actFraction: fraction, blockTokens: 4, tokenBudget: 32, threads: 1 });
    try {
      const id = engine.addSequence(Int32Array.from(ref.prompt), {
        sampling: { temperature: 0, topK: 0, topP: 1, seed: 0 },
        actFraction: fraction,
      });
      let maxErr = 0;
      const tokens: number[] = [];
      for (let step = 0; step <= ref.steps; step++) {
        const r = await engine.step(Int32Array.of(id), { logits: true });
        expect(r.status[0]).toBe(0);
        const logits = r.logits!;
        expect(logits.length).toBe(model.config.vocabSize);
        for (let v = 0; v < logits.length; v++) maxErr = Math.max(maxErr, Math.abs(logits[v] - ref.logits[step][v]));
        tokens.push(r.tokens[0]);
      }
      expect(tokens).toEqual(ref.tokens);
      expect(maxErr).toBeLessThan(TOLERANCE);
      const info = engine.sequence(id);
      if (fraction === 1) expect(info.kvBlocks).toBe(0);
      if (fraction === 0) expect(info.actBlocks).toBe(0);
      if (fraction === 0.5) expect(Math.min(info.kvBlocks, info.actBlocks)).toBeGreaterThan(0);
      if (process.env.HYBRIDSERVE_REPORT)
        console.log(
          `${_name} ACT ${fraction}: max abs logit error ${maxErr.toExponential(2)}, blocks kv=${info.kvBlocks} act=${info.actBlocks}`,
        );
      engine.removeSequence(id);
    } finally {
      await engine.close();
    }
  });
});
