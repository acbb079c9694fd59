// model/generate.ts over the real engine: stop conditions, limits, streaming and cleanup.
import { describe, expect, test, beforeAll, afterAll } from '@jest/globals';
import { ModelError } from '../../model/errors.js';
import { generate, type GenerateParams } from '../../model/generate.js';
import { loadModel, openEngine, type LoadedModel } from '../../model/load.js';
import type { NativeEngine } from '../../native/ts/addon-types.js';

const greedy: GenerateParams = { maxTokens: 12, temperature: 0, topP: 1, topK: 0, seed: 0, stopTokenIds: [], ignoreEos: true };

describe('generate on synthetic:opt-tiny', () => {
  let model: LoadedModel;
  let engine: NativeEngine;
  beforeAll(async () => {
    model = await loadModel('synthetic:opt-tiny');
    engine = await openEngine(model, { tokenBudget: 256, maxSequences: 2, blockTokens: 4, threads: 1 });
  });
  afterAll(async () => {
    await engine.close();
  });

  test('greedy is deterministic; streamed pieces form the text; blocks are returned', async () => {
    const free = engine.pools();
    const prompt = model.tokenizer.encode('Once upon a time');
    const pieces: string[] = [];
    const a = await generate(engine, model.tokenizer, model.config, prompt, greedy, (p) => pieces.push(p));
    const b = await generate(engine, model.tokenizer, model.config, prompt, greedy);
    expect(a.tokens).toHaveLength(12);
    expect(a.finishReason).toBe('length');
    expect(b.tokens).toEqual(a.tokens);
    expect(pieces.join('')).toBe(a.text);
    expect(a.text).toBe(model.tokenizer.decode(a.tokens));
    expect(a.promptTokens).toBe(prompt.length);
    expect(a.counters.steps).toBe(12);
    expect(a.counters.prefillTokens).toBe(prompt.length);
    expect(engine.pools()).toEqual(free);
  });

  test('a stop token ends generation and is the last token', async () => {
    const prompt = model.tokenizer.encode('Once upon a time');
    const full = await generate(engine, model.tokenizer, model.config, prompt, greedy);
    const stop = full.tokens[3];
    const first = full.tokens.indexOf(stop);
    const r = await generate(engine, model.tokenizer, model.config, prompt, { ...greedy, stopTokenIds: [stop] });
    expect(r.finishReason).toBe('stop');
    expect(r.tokens).toEqual(full.tokens.slice(0, first + 1));
  });

  test('sampling with a seed is reproducible and differs across seeds', async () => {
    const prompt = model.tokenizer.encode('Hello');
    const p = { ...greedy, temperature: 1.5, topK: 0, topP: 1, maxTokens: 16 };
    const a = await generate(engine, model.tokenizer, model.config, prompt, { ...p, seed: 1 });
    const b = await generate(engine, model.tokenizer, model.config, prompt, { ...p, seed: 1 });
    const c = await generate(engine, model.tokenizer, model.config, prompt, { ...p, seed: 2 });
    expect(b.tokens).toEqual(a.tokens);
    expect(c.tokens).not.toEqual(a.tokens);
  });

  test('request limits are ModelErrors before anything runs', async () => {
    const prompt = model.tokenizer.encode('Hi');
    await expect(generate(engine, model.tokenizer, model.config, [], greedy)).rejects.toThrow(/prompt is empty/);
    await expect(generate(engine, model.tokenizer, model.config, prompt, { ...greedy, maxTokens: 0 })).rejects.toThrow(
      /max tokens must be a positive integer/,
    );
    await expect(generate(engine, model.tokenizer, model.config, prompt, { ...greedy, maxTokens: 5000 })).rejects.toThrow(
      /exceeds the model's context of 2048/,
    );
    await expect(generate(engine, model.tokenizer, model.config, [60000], greedy)).rejects.toThrow(ModelError);
    await expect(generate(engine, model.tokenizer, model.config, prompt, { ...greedy, stopTokenIds: [-1] })).rejects.toThrow(
      /stop token id -1/,
    );
  });
});

test('running out of cache blocks is a ModelError and frees the sequence', async () => {
  const model = await loadModel('synthetic:llama-tiny');
  // Two 4-token blocks per pool: an 8-token prompt fits, the 9th token does not.
  const engine = await openEngine(model, { tokenBudget: 8, blockTokens: 4, kvBlocks: 2, actBlocks: 2, threads: 1 });
  try {
    const prompt = model.tokenizer.encode('abcdefg');
    expect(prompt).toHaveLength(8);
    const before = engine.pools();
    await expect(generate(engine, model.tokenizer, model.config, prompt, { ...greedy, maxTokens: 20 })).rejects.toThrow(
      /out of cache blocks/,
    );
    expect(engine.pools()).toEqual(before);
    await expect(generate(engine, model.tokenizer, model.config, model.tokenizer.encode('x'.repeat(40)), greedy)).rejects.toThrow(
      /cannot start the sequence: .*out of cache blocks/,
    );
  } finally {
    await engine.close();
  }
});
