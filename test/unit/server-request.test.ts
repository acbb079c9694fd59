import { describe, expect, test } from '@jest/globals';
import { authorized, keySet, loadApiKeys } from '../../server/auth.js';
import { ApiError, toApiError } from '../../server/errors.js';
import { DEFAULT_LIMITS, resolveLimits } from '../../server/options.js';
import {
  chatToGeneration,
  completionToGenerations,
  completionToGenerationsAsync,
  engineSeed,
  OFF_LOOP_CHARS,
  sampleSeed,
  tokenizeIds,
  tokenizeInput,
  unknownFields,
  type GenerationRequest,
  type ServerTokenizer,
} from '../../server/request.js';
import { ChatTemplateError } from '../../model/tokenizer.js';
import { byteTokenizer } from './server-fake-engine.js';

/** The generation of a one-prompt completions request (the request maps to exactly one). */
function completionToGeneration(...args: Parameters<typeof completionToGenerations>): GenerationRequest {
  const gens = completionToGenerations(...args);
  expect(gens).toHaveLength(1);
  return gens[0];
}

async function completionToGenerationAsync(...args: Parameters<typeof completionToGenerationsAsync>): Promise<GenerationRequest> {
  const gens = await completionToGenerationsAsync(...args);
  expect(gens).toHaveLength(1);
  return gens[0];
}

const limits = resolveLimits({ maxPromptTokens: 20, maxTotalTokens: 32, defaultMaxTokens: 8 }, 2048);

function status(fn: () => unknown): number | undefined {
  try {
    fn();
  } catch (e) {
    return (e as ApiError).statusCode;
  }
  return undefined;
}

/** The 400's param and message, or undefined when fn does not throw. */
function refusal(fn: () => unknown): { param: string | null; message: string } | undefined {
  try {
    fn();
  } catch (e) {
    expect((e as ApiError).statusCode).toBe(400);
    return { param: (e as ApiError).param, message: (e as ApiError).message };
  }
  return undefined;
}

describe('request mapping', () => {
  test('defaults: max_tokens is the rest of the window (as vLLM), temperature 1, a random seed', () => {
    const g = completionToGeneration({ model: 'm', prompt: 'hello' }, byteTokenizer, limits);
    expect(g.promptTokens).toEqual(byteTokenizer.encode('hello'));
    expect(g.maxTokens).toBe(32 - 5);
    expect(g.sampling.temperature).toBe(1);
    expect(Number.isInteger(g.sampling.seed)).toBe(true);
    const long = completionToGeneration(
      { model: 'm', prompt: 'x'.repeat(20) },
      byteTokenizer,
      resolveLimits({ maxPromptTokens: 20, maxTotalTokens: 24, defaultMaxTokens: 8 }, 2048),
    );
    expect(long.maxTokens).toBe(4);
  });
  test('logit processors map onto the native sampler; EOS joins the min_tokens suppression', () => {
    const g = completionToGeneration(
      {
        model: 'm',
        prompt: 'hi',
        logit_bias: { 13: -100, 7: 2.5 },
        presence_penalty: 0.5,
        frequency_penalty: -0.5,
        repetition_penalty: 1.3,
        min_p: 0.1,
        min_tokens: 4,
        stop_token_ids: [9],
        top_k: -1,
        seed: -1,
        logprobs: 3,
      },
      byteTokenizer,
      limits,
    );
    expect(g.sampling).toEqual({
      temperature: 1,
      topP: 1,
      topK: 0,
      seed: 2 ** 53 - 1,
      minP: 0.1,
      presencePenalty: 0.5,
      frequencyPenalty: -0.5,
      repetitionPenalty: 1.3,
      logitBias: [
        [7, 2.5],
        [13, -100],
      ],
      minTokens: 4,
      stopTokenIds: [9, byteTokenizer.eosTokenId],
      logprobs: 3,
    });
    expect(g).toMatchObject({ stopTokenIds: [9], logprobs: 3, includeStop: false, skipSpecialTokens: true });
    // Defaults leave every processor off (no row copy in the engine).
    expect(Object.keys(completionToGeneration({ model: 'm', prompt: 'hi' }, byteTokenizer, limits).sampling).sort()).toEqual([
      'seed',
      'temperature',
      'topK',
      'topP',
    ]);
    const chat = chatToGeneration(
      { model: 'm', messages: [{ role: 'user', content: 'x' }], logprobs: true, top_logprobs: 2, min_tokens: 1, ignore_eos: true },
      byteTokenizer,
      limits,
    );
    expect(chat.logprobs).toBe(2);
    expect(chat.sampling.stopTokenIds).toEqual([]);
  });
  test('refused parameters and invalid combinations are 400s naming the parameter', () => {
    const param = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        return (e as ApiError).param;
      }
      return undefined;
    };
    const c = (extra: object) => param(() => completionToGeneration({ model: 'm', prompt: 'hi', ...extra }, byteTokenizer, limits));
    const ch = (extra: object) =>
      param(() => chatToGeneration({ model: 'm', messages: [{ role: 'user', content: 'x' }], ...extra }, byteTokenizer, limits));
    expect(c({ suffix: 'x' })).toBe('suffix');
    expect(c({ echo: true })).toBe('echo');
    expect(c({ best_of: 2 })).toBe('best_of');
    expect(c({ best_of: 1 })).toBeUndefined();
    expect(c({ n: 2 })).toBeUndefined();
    expect(c({ n: 17 })).toBe('n');
    expect(c({ n: 2, best_of: 2 })).toBeUndefined();
    expect(c({ n: 2, best_of: 3 })).toBe('best_of');
    expect(c({ stream_options: { include_usage: true } })).toBe('stream_options');
    expect(c({ response_format: { type: 'json_object' } })).toBe('response_format');
    expect(c({ response_format: { type: 'text' } })).toBeUndefined();
    expect(c({ logit_bias: { 999: 1 } })).toBe('logit_bias');
    expect(c({ stop_token_ids: [300] })).toBe('stop_token_ids');
    expect(c({ min_tokens: 40 })).toBe('min_tokens');
    expect(c({ guided_json: {} })).toBe('guided_json');
    expect(ch({ tools: [{ type: 'function' }] })).toBe('tools');
    expect(ch({ tools: [], tool_choice: 'none' })).toBeUndefined();
    expect(ch({ tool_choice: 'auto' })).toBe('tool_choice');
    expect(ch({ top_logprobs: 2 })).toBe('top_logprobs');
    expect(ch({ store: true })).toBe('store');
  });
  test('seeds: any 64-bit integer maps into the engine range', () => {
    expect(engineSeed(3)).toBe(3);
    expect(engineSeed(-1)).toBe(2 ** 53 - 1);
    expect(engineSeed(2 ** 53 + 2)).toBe(2);
    expect(engineSeed(-9223372036854775808)).toBeGreaterThanOrEqual(0);
  });
  test('unknown fields are listed for logging', () => {
    expect(unknownFields({ model: 'm', prompt: 'x', foo: 1, logprobs: 2 }, 'completions')).toEqual(['foo']);
    expect(unknownFields({ model: 'm', messages: [], top_logprobs: 1, bar: 2 }, 'chat')).toEqual(['bar']);
  });
  test('stop, stream options, token-id prompts', () => {
    const g = completionToGeneration(
      { model: 'm', prompt: [5, 6], stop: 'x', stream: true, stream_options: { include_usage: true }, seed: 3, temperature: 0 },
      byteTokenizer,
      limits,
    );
    expect(g).toMatchObject({ promptTokens: [5, 6], stop: ['x'], stream: true, includeUsage: true, sampling: { seed: 3, temperature: 0 } });
  });
  test('bad input is a 400', () => {
    expect(status(() => completionToGeneration({ model: 'm', prompt: 'x'.repeat(21) }, byteTokenizer, limits))).toBe(400);
    expect(status(() => completionToGeneration({ model: 'm', prompt: 'hi', max_tokens: 31 }, byteTokenizer, limits))).toBe(400);
    expect(status(() => completionToGeneration({ model: 'm', prompt: 'hi', n: 17 }, byteTokenizer, limits))).toBe(400);
    expect(status(() => completionToGeneration({ model: 'm', prompt: '' }, byteTokenizer, limits))).toBe(400);
    expect(status(() => completionToGeneration({ model: 'm', prompt: [999] }, byteTokenizer, limits))).toBe(400);
    expect(status(() => chatToGeneration({ model: 'm', messages: [{ role: 'user', content: '  ' }] }, byteTokenizer, limits))).toBe(400);
  });
  test('chat renders the template and prefers max_completion_tokens', () => {
    const wide = resolveLimits({ maxPromptTokens: 100, maxTotalTokens: 128 }, 2048);
    const g = chatToGeneration(
      {
        model: 'm',
        messages: [
          { role: 'system', content: 'be brief' },
          { role: 'user', content: [{ type: 'text', text: 'hi' }] },
        ],
        max_completion_tokens: 3,
        max_tokens: 5,
      },
      byteTokenizer,
      wide,
    );
    expect(byteTokenizer.decode(g.promptTokens)).toBe('system: be brief\nuser: hi\nassistant:');
    expect(g.maxTokens).toBe(3);
  });
  test('limits never exceed the model window', () => {
    expect(resolveLimits({}, 512)).toMatchObject({ maxTotalTokens: 512, maxPromptTokens: 511 });
    // The defaults are the model's window (issue 13: llama3-8b serves 8,192 tokens, not a fixed 2,048).
    expect(resolveLimits({}, 8192)).toMatchObject({ maxTotalTokens: 8192, maxPromptTokens: 8191, maxPromptChars: 8191 * 32 });
    expect(resolveLimits({ maxTotalTokens: 1000, maxPromptTokens: undefined }, 8192)).toMatchObject({
      maxTotalTokens: 1000,
      maxPromptTokens: 999,
    });
    expect(resolveLimits({}, 8192).maxQueue).toBe(DEFAULT_LIMITS.maxQueue);
  });
});

describe('batches of prompts and n samples', () => {
  test('a batch is one generation per prompt, in order, each sampled n times from the request seed', () => {
    const gens = completionToGenerations({ model: 'm', prompt: ['ab', 'cde'], n: 2, seed: 7 }, byteTokenizer, limits);
    expect(gens.map((g) => g.promptTokens)).toEqual([byteTokenizer.encode('ab'), byteTokenizer.encode('cde')]);
    expect(gens.map((g) => [g.n, g.sampling.seed, g.promptName.param])).toEqual([
      [2, 7, 'prompt.0'],
      [2, 7, 'prompt.1'],
    ]);
    // Without max_tokens each prompt gets the rest of the window after it.
    expect(gens.map((g) => g.maxTokens)).toEqual([30, 29]);
    const ids = completionToGenerations({ model: 'm', prompt: [[5, 6], [7]] }, byteTokenizer, limits);
    expect(ids.map((g) => g.promptTokens)).toEqual([[5, 6], [7]]);
    // A batch of one (the openai clients' ids) is the request's prompt, named as before.
    expect(completionToGenerations({ model: 'm', prompt: [[5, 6]] }, byteTokenizer, limits)[0].promptName.param).toBe('prompt');
    expect(chatToGeneration({ model: 'm', messages: [{ role: 'user', content: 'x' }], n: 3 }, byteTokenizer, limits).n).toBe(3);
  });

  test('a bad prompt of a batch is named by its index', () => {
    const batch = (prompt: string[] | number[][], extra: object = {}) =>
      refusal(() => completionToGenerations({ model: 'm', prompt, ...extra }, byteTokenizer, limits));
    expect(batch(['a', ''])).toEqual({ param: 'prompt.1', message: 'prompt[1] is empty after tokenization' });
    expect(batch(['a', 'x'.repeat(21)])).toMatchObject({ param: 'prompt.1', message: expect.stringMatching(/^prompt\[1\] is 21 tokens/) });
    expect(batch(['x'.repeat(641), 'a'])).toMatchObject({
      param: 'prompt.0',
      message: expect.stringMatching(/^prompt\[0\] is 641 characters/),
    });
    expect(batch([[5], [999]])).toMatchObject({
      param: 'prompt.1',
      message: expect.stringMatching(/^token id 999 in prompt\[1\] is outside/),
    });
    expect(batch(['a', 'x'.repeat(20)], { max_tokens: 20 })).toMatchObject({
      param: 'max_tokens',
      message: 'max_tokens = 20 plus the 20 prompt tokens of prompt[1] exceeds the 32-token window',
    });
    // One prompt keeps its messages.
    expect(batch([''])).toEqual({ param: 'prompt', message: 'the prompt is empty after tokenization' });
  });

  test('prompts × n beyond the server limit: a 400 naming the factor to lower, before anything is tokenised', async () => {
    const four = resolveLimits({ maxPromptTokens: 20, maxTotalTokens: 32, maxSequencesPerRequest: 4 }, 2048);
    const never: ServerTokenizer = {
      ...byteTokenizer,
      encode: () => {
        throw new Error('tokenised');
      },
      encodeAsync: async () => {
        throw new Error('tokenised');
      },
    };
    const c = (prompt: string | string[], n?: number) => refusal(() => completionToGenerations({ model: 'm', prompt, n }, never, four));
    expect(c('a', 5)).toEqual({ param: 'n', message: 'n = 5 asks for 5 sequences; this server generates at most 4 per request' });
    expect(c(['a', 'b', 'c', 'd', 'e'])).toMatchObject({ param: 'prompt' });
    expect(c(['a', 'b'], 3)).toEqual({
      param: 'n',
      message: '2 prompts × n = 3 asks for 6 sequences; this server generates at most 4 per request',
    });
    expect(completionToGenerations({ model: 'm', prompt: ['a', 'b'], n: 2 }, byteTokenizer, four)).toHaveLength(2);
    await expect(
      completionToGenerationsAsync({ model: 'm', prompt: ['x'.repeat(OFF_LOOP_CHARS + 1)], n: 5 }, never, four),
    ).rejects.toMatchObject({
      param: 'n',
    });
    expect(refusal(() => chatToGeneration({ model: 'm', messages: [{ role: 'user', content: 'x' }], n: 5 }, never, four))).toMatchObject({
      param: 'n',
    });
  });

  test('sample j is seeded seed + j in the engine range; the per-request limit never exceeds the queue', () => {
    expect([0, 1, 2].map((j) => sampleSeed(7, j))).toEqual([7, 8, 9]);
    expect(sampleSeed(engineSeed(-1), 1)).toBe(engineSeed(0));
    expect(resolveLimits({}, 512).maxSequencesPerRequest).toBe(DEFAULT_LIMITS.maxSequencesPerRequest);
    expect(resolveLimits({ maxSequencesPerRequest: 64 }, 512).maxSequencesPerRequest).toBe(64);
    // A request's sequences wait in the queue together: more than it holds could never be admitted.
    expect(resolveLimits({ maxQueue: 3 }, 512).maxSequencesPerRequest).toBe(3);
    expect(resolveLimits({ maxQueue: 0 }, 512).maxSequencesPerRequest).toBe(1);
  });
});

describe('/tokenize', () => {
  // The event-loop encoders refuse long text: only the off-loop ones may see it.
  const offLoop: ServerTokenizer = {
    ...byteTokenizer,
    encode: (text, o) => {
      if (text.length > OFF_LOOP_CHARS && o?.addSpecialTokens !== false) throw new Error('long text on the event loop');
      return byteTokenizer.encode(text);
    },
    encodeChat: (turns, o) => {
      if (o?.addGenerationPrompt !== false) throw new Error('long chat on the event loop');
      return byteTokenizer.encode(turns.map((t) => `${t.role}: ${t.content}\n`).join(''));
    },
    encodeAsync: async () => [7],
    encodeChatAsync: async () => {
      throw new ChatTemplateError('only user and assistant roles');
    },
  };
  const long = 'x'.repeat(OFF_LOOP_CHARS + 1);

  test('long text is tokenised off the event loop, unless an option the thread lacks is asked for', async () => {
    expect(await tokenizeIds(tokenizeInput({ prompt: long }), offLoop)).toEqual([7]);
    expect(await tokenizeIds(tokenizeInput({ prompt: long, add_special_tokens: false }), offLoop)).toHaveLength(long.length);
    expect(await tokenizeIds(tokenizeInput({ prompt: 'short' }), offLoop)).toEqual(byteTokenizer.encode('short'));
    const messages = [{ role: 'user' as const, content: long }];
    expect(await tokenizeIds(tokenizeInput({ messages, add_generation_prompt: false }), offLoop)).toHaveLength(long.length + 7);
    // Generation: an explicit add_special_tokens is encoded on the loop (the thread has only the defaults).
    const big = resolveLimits(
      { maxPromptTokens: 3 * OFF_LOOP_CHARS, maxTotalTokens: 4 * OFF_LOOP_CHARS, maxPromptChars: 2 * OFF_LOOP_CHARS },
      4 * OFF_LOOP_CHARS,
    );
    const gen = await completionToGenerationAsync({ model: 'm', prompt: long, add_special_tokens: false, max_tokens: 1 }, offLoop, big);
    expect(gen.promptTokens).toHaveLength(long.length);
    expect((await completionToGenerationAsync({ model: 'm', prompt: long, max_tokens: 1 }, offLoop, big)).promptTokens).toEqual([7]);
    // Each long prompt of a batch too; short ones stay on the loop.
    const batch = await completionToGenerationsAsync({ model: 'm', prompt: [long, 'short', long], max_tokens: 1 }, offLoop, big);
    expect(batch.map((g) => g.promptTokens)).toEqual([[7], byteTokenizer.encode('short'), [7]]);
    // A chat template's refusal off the loop is still a 400 naming messages.
    await expect(tokenizeIds(tokenizeInput({ messages }), offLoop)).rejects.toMatchObject({ statusCode: 400, param: 'messages' });
  });
});

describe('errors and auth', () => {
  test('Fastify errors map to OpenAI-shaped 4xx; our own faults hide their message', () => {
    expect(toApiError({ code: 'FST_ERR_CTP_BODY_TOO_LARGE', statusCode: 413, message: 'x' }).statusCode).toBe(413);
    const v = toApiError({
      statusCode: 400,
      message: 'x',
      validation: [{ instancePath: '/max_tokens', message: 'must be >= 1', keyword: 'minimum' }],
    });
    expect(v.body().error).toMatchObject({ param: 'max_tokens', type: 'invalid_request_error' });
    const m = toApiError({
      statusCode: 400,
      message: 'x',
      validation: [{ instancePath: '', keyword: 'required', params: { missingProperty: 'model' } }],
    });
    expect(m.param).toBe('model');
    const internal = toApiError(new Error('secret detail'));
    expect(internal.statusCode).toBe(500);
    expect(internal.message).not.toMatch(/secret/);
  });
  test('Bearer keys', () => {
    const keys = loadApiKeys({ HYBRIDSERVE_API_KEYS: 'a1, b2 ,,' });
    expect(keys).toEqual(['a1', 'b2']);
    const set = keySet(keys);
    expect(authorized('Bearer b2', set)).toBe(true);
    expect(authorized('Bearer b3', set)).toBe(false);
    expect(authorized(undefined, set)).toBe(false);
    expect(authorized('Basic b2', set)).toBe(false);
    expect(authorized(undefined, keySet([]))).toBe(true);
    // Required but empty (a key file reloaded to nothing): refuses everything.
    expect(authorized('Bearer ', { required: true, keys: [] })).toBe(false);
    expect(authorized('Bearer x', { required: true, keys: [] })).toBe(false);
    // Configured but keyless sources are start-up errors, never an open server.
    expect(() => loadApiKeys({ HYBRIDSERVE_API_KEYS: '' })).toThrow(/holds no key/);
    expect(() => loadApiKeys({ HYBRIDSERVE_API_KEYS: ' , ' })).toThrow(/holds no key/);
    expect(loadApiKeys({ HYBRIDSERVE_API_KEYS: 'ab#secret' })).toEqual(['ab#secret']);
    expect(loadApiKeys({})).toEqual([]);
  });
});
