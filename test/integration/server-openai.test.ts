// Acceptance 1 and 4: the official openai client against a listening server on the real engine,
// and a table of bad input that must get OpenAI-shaped 4xx errors while the server keeps serving.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import OpenAI from 'openai';
import { startServer, type TestServer } from './server-helpers.js';

let srv: TestServer;
let client: OpenAI;
const MODEL = 'synthetic:opt-tiny';

beforeAll(async () => {
  srv = await startServer({ apiKeys: ['sk-test'], limits: { bodyLimitBytes: 64 * 1024, maxPromptTokens: 200 } });
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'sk-test', maxRetries: 0 });
});
afterAll(() => srv.close());

describe('openai client', () => {
  test('lists the model', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual([MODEL]);
  });

  test('completion', async () => {
    const r = await client.completions.create({ model: MODEL, prompt: 'The quick brown fox', max_tokens: 12, temperature: 0, seed: 1 });
    expect(r.object).toBe('text_completion');
    expect(r.usage?.prompt_tokens).toBeGreaterThan(0);
    expect(r.usage?.completion_tokens).toBeGreaterThan(0);
    expect(r.usage?.completion_tokens).toBeLessThanOrEqual(12);
    expect(['stop', 'length']).toContain(r.choices[0].finish_reason);
    // Temperature 0 is deterministic.
    const again = await client.completions.create({
      model: MODEL,
      prompt: 'The quick brown fox',
      max_tokens: 12,
      temperature: 0,
      seed: 99,
    });
    expect(again.choices[0].text).toBe(r.choices[0].text);
  });

  test('chat', async () => {
    const r = await client.chat.completions.create({
      model: MODEL,
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hello!' },
      ],
      max_tokens: 8,
      temperature: 0,
    });
    expect(r.object).toBe('chat.completion');
    expect(r.choices[0].message.role).toBe('assistant');
    expect(typeof r.choices[0].message.content).toBe('string');
    expect(r.usage?.total_tokens).toBe((r.usage?.prompt_tokens ?? 0) + (r.usage?.completion_tokens ?? 0));
  });

  test('streamed completion equals the non-streamed one and reports usage', async () => {
    const args = { model: MODEL, prompt: 'Once upon a time', max_tokens: 16, temperature: 0, ignore_eos: true } as const;
    const whole = await client.completions.create(args);
    const stream = await client.completions.create({ ...args, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let usage: OpenAI.CompletionUsage | undefined;
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(whole.choices[0].text);
    expect(finish).toBe('length');
    expect(usage?.completion_tokens).toBe(16);
  });

  test('streamed chat', async () => {
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Tell me a story' }],
      max_tokens: 10,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
      ignore_eos: true,
    } as OpenAI.ChatCompletionCreateParamsStreaming);
    let text = '';
    let role: string | undefined;
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      role ??= chunk.choices[0]?.delta.role;
      text += chunk.choices[0]?.delta.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    expect(role).toBe('assistant');
    expect(usage?.completion_tokens).toBe(10);
    const whole = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Tell me a story' }],
      max_tokens: 10,
      temperature: 0,
      ignore_eos: true,
    } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    expect(text).toBe(whole.choices[0].message.content);
  });

  test("errors come back as the client's typed errors", async () => {
    await expect(client.completions.create({ model: 'gpt-4o', prompt: 'x' })).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client.completions.create({ model: MODEL, prompt: 'x', max_tokens: -3 })).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    const bad = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'wrong', maxRetries: 0 });
    await expect(bad.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
  });
});

describe('bad input', () => {
  const post = (path: string, body: string | Buffer, headers: Record<string, string> = {}) =>
    fetch(`${srv.url}${path}`, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json', authorization: 'Bearer sk-test', ...headers },
    });
  const J = JSON.stringify;
  const cases: Array<[string, string, string | Buffer, number]> = [
    ['malformed JSON', '/v1/completions', '{"model": "x", "prompt": ', 400],
    ['wrong type: prompt', '/v1/completions', J({ model: MODEL, prompt: { text: 'hi' } }), 400],
    ['wrong type: max_tokens as string', '/v1/completions', J({ model: MODEL, prompt: 'hi', max_tokens: '7' }), 400],
    [
      'wrong type: temperature',
      '/v1/chat/completions',
      J({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], temperature: 'hot' }),
      400,
    ],
    ['negative max_tokens', '/v1/completions', J({ model: MODEL, prompt: 'hi', max_tokens: -5 }), 400],
    ['huge max_tokens', '/v1/completions', J({ model: MODEL, prompt: 'hi', max_tokens: 10_000_000 }), 400],
    ['prompt too long', '/v1/completions', J({ model: MODEL, prompt: 'word '.repeat(400) }), 400],
    ['empty messages', '/v1/chat/completions', J({ model: MODEL, messages: [] }), 400],
    ['messages without content', '/v1/chat/completions', J({ model: MODEL, messages: [{ role: 'user', content: '' }] }), 400],
    ['unknown role', '/v1/chat/completions', J({ model: MODEL, messages: [{ role: 'wizard', content: 'hi' }] }), 400],
    [
      'invalid UTF-8',
      '/v1/completions',
      Buffer.concat([Buffer.from(`{"model":"${MODEL}","prompt":"`), Buffer.from([0xff, 0xfe, 0x80]), Buffer.from('"}')]),
      400,
    ],
    ['oversized body', '/v1/completions', J({ model: MODEL, prompt: 'a'.repeat(100 * 1024) }), 413],
    ['unknown model', '/v1/completions', J({ model: 'no-such-model', prompt: 'hi' }), 404],
    ['n beyond the sequences one request may create', '/v1/completions', J({ model: MODEL, prompt: 'hi', n: 17 }), 400],
    ['token id outside the vocabulary', '/v1/completions', J({ model: MODEL, prompt: [1, 2, 99999999] }), 400],
    ['top_p of 0', '/v1/completions', J({ model: MODEL, prompt: 'hi', top_p: 0 }), 400],
  ];
  test.each(cases)('%s → 4xx OpenAI error', async (_name, path, body, status) => {
    const r = await post(path, body);
    expect(r.status).toBe(status);
    const j = (await r.json()) as { error: { message: string; type: string; param: unknown; code: unknown } };
    expect(typeof j.error.message).toBe('string');
    expect(j.error.message.length).toBeGreaterThan(0);
    expect(j.error).toHaveProperty('type');
    expect(j.error).toHaveProperty('param');
    expect(j.error).toHaveProperty('code');
  });

  test('the server still serves after all of that', async () => {
    const r = await client.completions.create({ model: MODEL, prompt: 'still alive?', max_tokens: 3 });
    expect(r.usage?.completion_tokens).toBeGreaterThan(0);
    const h = await fetch(`${srv.url}/healthz`);
    expect(h.status).toBe(200);
  });
});
