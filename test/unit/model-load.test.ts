import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, test } from '@jest/globals';
import { ModelError } from '../../model/errors.js';
import { engineOptions, loadModel, poolSizesForBudget } from '../../model/load.js';
import { LLAMA_REF, OPT_REF } from '../fixtures/helpers.js';

describe('loadModel', () => {
  test('synthetic: preset config, seed, GPT-2 or byte tokenizer', async () => {
    const m = await loadModel('synthetic:llama-tiny?seed=7');
    expect(m).toMatchObject({ name: 'llama-tiny', source: 'synthetic', weights: { kind: 'synthetic', seed: 7 } });
    expect(m.tokenizer.kind).toBe('bytes');
    expect((await loadModel('synthetic:opt-tiny')).tokenizer.kind).toBe('gpt2');
  });

  test('checkpoints: canonical tensor refs into the files, checkpoint tokenizers', async () => {
    const opt = await loadModel(OPT_REF);
    expect(opt).toMatchObject({ name: 'opt-ref', source: 'checkpoint', dir: OPT_REF });
    if (opt.weights.kind !== 'files') throw new Error('expected files');
    expect(opt.weights.tensors.every((t) => t.path === path.join(OPT_REF, 'model.safetensors'))).toBe(true);
    expect(opt.tokenizer.kind).toBe('vocab.json+merges.txt');
    const llama = await loadModel(LLAMA_REF);
    if (llama.weights.kind !== 'files') throw new Error('expected files');
    expect(llama.weights.tensors.map((t) => t.name)).toContain('lm_head.weight');
    expect(llama.tokenizer.kind).toBe('tokenizer.json');
  });

  test('pvc:// specs load from HYBRIDSERVE_MODEL_ROOT', async () => {
    const root = path.resolve(OPT_REF, '..', '..');
    const m = await loadModel('pvc://fixtures/opt-ref', { env: { HYBRIDSERVE_MODEL_ROOT: root } });
    expect(m.dir).toBe(OPT_REF);
  });

  test('errors', async () => {
    await expect(loadModel('synthetic:nope')).rejects.toThrow(ModelError);
    await expect(loadModel('/no/such/dir')).rejects.toThrow(/model directory \/no\/such\/dir does not exist/);
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'hs-load-')), 'file');
    writeFileSync(file, 'x');
    await expect(loadModel(file)).rejects.toThrow(/is not a directory/);
  });
});

describe('engine options', () => {
  test('pool sizes: each pool holds the whole budget plus one partial block per sequence', () => {
    expect(poolSizesForBudget(100, 16, 1)).toEqual({ kvBlocks: 8, actBlocks: 8 });
    expect(poolSizesForBudget(32, 16, 4)).toEqual({ kvBlocks: 6, actBlocks: 6 });
    expect(() => poolSizesForBudget(0, 16, 1)).toThrow(RangeError);
  });

  test('built from the model and sizing; explicit pools win', async () => {
    const m = await loadModel('synthetic:opt-tiny?seed=3');
    const o = engineOptions(m, { tokenBudget: 64, actFraction: 0.25, blockTokens: 8, threads: 1 });
    expect(o).toEqual({
      device: 'cpu',
      config: expect.objectContaining({ arch: 'opt', hiddenSize: 64, tieEmbeddings: true }),
      weights: { kind: 'synthetic', seed: 3 },
      blockTokens: 8,
      kvBlocks: 9,
      actBlocks: 9,
      actFraction: 0.25,
      threads: 1,
    });
    expect(o.config).not.toHaveProperty('name');
    expect(engineOptions(m, { tokenBudget: 64, kvBlocks: 3, actBlocks: 5 })).toMatchObject({
      kvBlocks: 3,
      actBlocks: 5,
      blockTokens: 16,
      actFraction: 0,
    });
    expect(() => engineOptions(m, { tokenBudget: 64, actFraction: 1.5 })).toThrow(/ACT fraction must be in \[0, 1\]/);
  });
});
