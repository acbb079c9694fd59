// Acceptance 3 at the generate level: at temperature 0 the generated tokens are identical at ACT
// fractions 0, 0.25, 0.5, 0.75 and 1, and each step's logits agree within 1e-4 (relative to the
// step's largest logit) with KV-only caching and with recomputation from scratch (a fresh
// sequence prefilled with everything so far, no cache).
import { describe, expect, test } from '@jest/globals';
import { generate, type GenerateParams } from '../../model/generate.js';
import { loadModel, openEngine } from '../../model/load.js';

const FRACTIONS = [0, 0.25, 0.5, 0.75, 1];
const REL_TOL = 1e-4;

function relErr(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / Math.max(scale, 1e-30);
}

describe.each([
  ['synthetic:opt-125m', 'The quick brown fox jumps over the lazy dog while the town gathers'],
  ['synthetic:llama-tiny', 'Hybrid caching: KV + ACT'],
])('%s', (spec, text) => {
  test('same tokens and logits at every ACT fraction, and as recomputation without cache', async () => {
    const model = await loadModel(spec);
    const prompt = model.tokenizer.encode(text);
    const params: GenerateParams = {
      maxTokens: 8,
      temperature: 0,
      topP: 1,
      topK: 0,
      seed: 0,
      stopTokenIds: [],
      ignoreEos: true,
      keepLogits: true,
    };
    // 4-token blocks so that every fraction gives a different KV/ACT mix over the sequence.
    const engine = await openEngine(model, { tokenBudget: 2 * (prompt.length + params.maxTokens), maxSequences: 2, blockTokens: 4 });
    try {
      const runs = [];
      for (const actFraction of FRACTIONS)
        runs.push(await generate(engine, model.tokenizer, model.config, prompt, { ...params, actFraction }));
      const kvOnly = runs[0];
      expect(kvOnly.tokens).toHaveLength(params.maxTokens);
      let worst = 0;
      for (const [i, r] of runs.entries()) {
        expect({ fraction: FRACTIONS[i], tokens: r.tokens }).toEqual({ fraction: FRACTIONS[i], tokens: kvOnly.tokens });
        if (FRACTIONS[i] > 0) expect(r.counters.recomputedTokens).toBeGreaterThan(0);
        for (let s = 0; s < r.logits!.length; s++) worst = Math.max(worst, relErr(r.logits![s], kvOnly.logits![s]));
      }
      expect(worst).toBeLessThan(REL_TOL);

      // No cache: prefill prompt + the first k generated tokens in a fresh sequence; its logits must
      // equal step k's of the cached runs.
      let worstRecompute = 0;
      for (const k of [1, 5, params.maxTokens - 1]) {
        const id = engine.addSequence(Int32Array.from([...prompt, ...kvOnly.tokens.slice(0, k)]), {
          sampling: { temperature: 0, topK: 0, topP: 1, seed: 0 },
          actFraction: 0,
        });
        const r = await engine.step(Int32Array.of(id), { logits: true });
        engine.removeSequence(id);
        expect(r.tokens[0]).toBe(kvOnly.tokens[k]);
        for (const run of runs) worstRecompute = Math.max(worstRecompute, relErr(r.logits!, run.logits![k]));
      }
      expect(worstRecompute).toBeLessThan(REL_TOL);
      if (process.env.HYBRIDSERVE_REPORT)
        console.log(
          `${spec}: worst relative logit error across fractions ${worst.toExponential(2)}, vs recomputation ${worstRecompute.toExponential(2)}`,
        );
    } finally {
      await engine.close();
    }
  });
});
