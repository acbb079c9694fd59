import { readFileSync } from 'node:fs';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, test } from '@jest/globals';
import { parseHfConfig, readHfConfig } from '../../model/config.js';
import { ModelError } from '../../model/errors.js';
import { LLAMA_REF, OPT_REF } from '../fixtures/helpers.js';

const optJson = () => JSON.parse(readFileSync(path.join(OPT_REF, 'config.json'), 'utf8')) as Record<string, unknown>;
const llamaJson = () => JSON.parse(readFileSync(path.join(LLAMA_REF, 'config.json'), 'utf8')) as Record<string, unknown>;

describe('parseHfConfig', () => {
  test('OPT fixture (transformers 5 config)', () => {
    expect(parseHfConfig(optJson(), 'opt-ref')).toEqual({
      name: 'opt-ref',
      arch: 'opt',
      vocabSize: 272,
      hiddenSize: 64,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 4,
      headDim: 16,
      ffnSize: 128,
      maxPositions: 64,
      normEps: 1e-5,
      ropeTheta: 10000,
      tieEmbeddings: true,
      bosTokenId: 2,
      eosTokenId: 2,
    });
  });

  test('Llama fixture with GQA and rope_parameters', () => {
    expect(parseHfConfig(llamaJson(), 'llama-ref')).toEqual({
      name: 'llama-ref',
      arch: 'llama',
      vocabSize: 272,
      hiddenSize: 64,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 2,
      headDim: 16,
      ffnSize: 96,
      maxPositions: 64,
      normEps: 1e-6,
      ropeTheta: 10000,
      tieEmbeddings: false,
      bosTokenId: 1,
      eosTokenId: 2,
    });
  });

  test('transformers 4 style rope_theta and defaults', () => {
    const j = llamaJson();
    delete j.rope_parameters;
    delete j.head_dim;
    delete j.num_key_value_heads;
    j.rope_theta = 500000;
    j.rope_scaling = null;
    j.eos_token_id = [128001, 128009].map((x) => x % 272);
    const c = parseHfConfig(j, 'x');
    expect(c).toMatchObject({ ropeTheta: 500000, headDim: 16, numKvHeads: 4, eosTokenId: 128001 % 272 });
  });

  const cases: Array<[string, (j: Record<string, unknown>) => void, RegExp, 'opt' | 'llama']> = [
    ['missing hidden_size', (j) => delete j.hidden_size, /'hidden_size' is missing/, 'opt'],
    ['string layers', (j) => (j.num_hidden_layers = '2'), /'num_hidden_layers' must be an integer/, 'opt'],
    ['zero heads', (j) => (j.num_attention_heads = 0), /'num_attention_heads' must be between/, 'opt'],
    ['indivisible heads', (j) => (j.num_attention_heads = 5), /divisible by num_attention_heads/, 'opt'],
    ['post-LN OPT', (j) => (j.do_layer_norm_before = false), /do_layer_norm_before.*unsupported/, 'opt'],
    ['projection', (j) => (j.word_embed_proj_dim = 32), /word_embed_proj_dim.*unsupported/, 'opt'],
    ['no bias', (j) => (j.enable_bias = false), /enable_bias/, 'opt'],
    ['gelu', (j) => (j.activation_function = 'gelu'), /activation_function/, 'opt'],
    ['bos out of vocab', (j) => (j.bos_token_id = 5000), /'bos_token_id' must be a token id/, 'opt'],
    ['unknown arch', (j) => (j.model_type = 'mistral'), /"mistral": unsupported architecture/, 'llama'],
    ['no model_type', (j) => delete j.model_type, /'model_type' is missing/, 'llama'],
    ['rope scaling', (j) => (j.rope_scaling = { rope_type: 'llama3', factor: 8 }), /rope_scaling.*unsupported/, 'llama'],
    ['rope type', (j) => (j.rope_parameters = { rope_type: 'yarn', rope_theta: 1 }), /rope_type "yarn"/, 'llama'],
    ['kv heads', (j) => (j.num_key_value_heads = 3), /'num_key_value_heads' \(3\) must divide/, 'llama'],
    ['odd head_dim', (j) => (j.head_dim = 15), /'head_dim' \(15\) must be even/, 'llama'],
    ['attention bias', (j) => (j.attention_bias = true), /attention_bias/, 'llama'],
    ['negative eps', (j) => (j.rms_norm_eps = -1), /'rms_norm_eps' must be a number in \(0, 1\)/, 'llama'],
    ['missing intermediate', (j) => delete j.intermediate_size, /'intermediate_size' is missing/, 'llama'],
    ['huge vocab', (j) => (j.vocab_size = 1e12), /'vocab_size' must be between/, 'llama'],
  ];
  test.each(cases)('%s → ModelError naming the field', (_n, mutate, message, arch) => {
    const j = arch === 'opt' ? optJson() : llamaJson();
    mutate(j);
    expect(() => parseHfConfig(j, 'x')).toThrow(ModelError);
    expect(() => parseHfConfig(j, 'x')).toThrow(message);
  });

  test('non-objects', () => {
    for (const v of [null, [], 'opt', 3]) expect(() => parseHfConfig(v, 'x')).toThrow(/must be a JSON object/);
  });
});

describe('readHfConfig', () => {
  test('missing and malformed config.json', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'hs-config-'));
    await expect(readHfConfig(dir)).rejects.toThrow(/no config.json/);
    writeFileSync(path.join(dir, 'config.json'), '{"model_type": "opt",');
    await expect(readHfConfig(dir)).rejects.toThrow(/config.json: malformed JSON/);
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(optJson()));
    await expect(readHfConfig(dir)).resolves.toMatchObject({ name: path.basename(dir), arch: 'opt' });
  });
});
