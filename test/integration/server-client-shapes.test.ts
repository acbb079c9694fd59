// Requests as the OpenAI and vLLM clients send them, on a listening server over the real engine
// (CPU): a batch of one token-id prompt, add_special_tokens honoured, the sampled
// token in the completions top_logprobs, and /tokenize taking the messages /v1/chat/completions takes
// (text parts, null content, developer role) with vLLM's tokenize options honoured or refused by name.
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import OpenAI from 'openai';
import { metric, startServer, type TestServer } from './server-helpers.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const OPT = 'synthetic:opt-tiny';
const LLAMA = 'synthetic:llama-tiny';
let opt: TestServer;
let llama: TestServer;

async function post(srv: TestServer, path: string, body: object): Promise<{ status: number; json: Json }> {
  const r = await fetch(`${srv.url}${path}`, {
    method: 'POST',
    body: JSON.stringify(body),
    headers: { 'content-type': 'application/json' },
  });
  return { status: r.status, json: (await r.json()) as Json };
}

/** The request log of the opt-tiny server, one parsed JSON line each. */
const logLines: Json[] = [];
const logStream = new Writable({
  write(chunk: Buffer, _enc, cb) {
    for (const l of chunk.toString().split('\n').filter(Boolean)) logLines.push(JSON.parse(l) as Json);
    cb();
  },
});

beforeAll(async () => {
  opt = await startServer({ logger: { level: 'info', stream: logStream } });
  llama = await startServer({ model: LLAMA });
});
afterAll(async () => {
  await opt.close();
  await llama.close();
});

describe('completions as the clients send them', () => {
  const base = { model: OPT, max_tokens: 6, temperature: 0, ignore_eos: true };

  test('a batch of one token-id list is that prompt (the openai client sends number[][]); a batch of two, two choices', async () => {
    const ids = opt.serving.ctx.tokenizer.encode('The quick brown fox');
    const flat = await post(opt, '/v1/completions', { ...base, prompt: ids });
    const nested = await post(opt, '/v1/completions', { ...base, prompt: [ids] });
    expect(nested.status).toBe(200);
    expect(nested.json.choices[0].text).toBe(flat.json.choices[0].text);
    expect(nested.json.usage.prompt_tokens).toBe(ids.length);
    const two = await post(opt, '/v1/completions', { ...base, prompt: [ids, ids] });
    expect(two.status).toBe(200);
    expect(two.json.choices.map((c: Json) => [c.index, c.text])).toEqual([
      [0, flat.json.choices[0].text],
      [1, flat.json.choices[0].text],
    ]);
    expect(two.json.usage.prompt_tokens).toBe(2 * ids.length);
  });

  test('an assistant turn with tool calls is refused by name (its calls would be lost); an empty list is none', async () => {
    const call = {
      role: 'assistant',
      content: null,
      tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{}' } }],
    };
    const user = { role: 'user', content: 'Hi' };
    const r = await post(opt, '/v1/chat/completions', {
      ...base,
      messages: [user, call, { role: 'tool', content: '1', tool_call_id: 'c1' }],
    });
    expect(r.status).toBe(400);
    expect(r.json.error).toMatchObject({ param: 'messages.1.tool_calls', code: 'unsupported_parameter' });
    const fn = await post(opt, '/v1/chat/completions', {
      ...base,
      messages: [user, { role: 'assistant', content: 'x', function_call: { name: 'f' } }],
    });
    expect(fn.json.error.param).toBe('messages.1.function_call');
    const none = await post(opt, '/v1/chat/completions', {
      ...base,
      messages: [user, { role: 'assistant', content: 'x', tool_calls: [] }, user],
    });
    expect(none.status).toBe(200);
  });

  test('add_special_tokens is honoured on both endpoints (llama-tiny: a BOS tokenizer, the plain chat template)', async () => {
    const usage = async (path: string, body: object) => {
      const r = await post(llama, path, { model: LLAMA, max_tokens: 1, ignore_eos: true, ...body });
      expect(r.status).toBe(200);
      return r.json.usage.prompt_tokens as number;
    };
    const prompt = { prompt: 'Hi' };
    expect(await usage('/v1/completions', prompt)).toBe(3); // BOS + 2 bytes
    expect(await usage('/v1/completions', { ...prompt, add_special_tokens: true })).toBe(3);
    expect(await usage('/v1/completions', { ...prompt, add_special_tokens: false })).toBe(2);
    const chat = { messages: [{ role: 'user', content: 'Hi' }] };
    const withBos = await usage('/v1/chat/completions', chat);
    expect(await usage('/v1/chat/completions', { ...chat, add_special_tokens: true })).toBe(withBos);
    expect(await usage('/v1/chat/completions', { ...chat, add_special_tokens: false })).toBe(withBos - 1);
  });

  test('sampled: every top_logprobs object holds the sampled token (up to N + 1 entries)', async () => {
    for (const n of [0, 2]) {
      const r = await post(opt, '/v1/completions', { ...base, prompt: 'Hello', temperature: 1, seed: 7, logprobs: n });
      const lp = r.json.choices[0].logprobs as Json;
      lp.tokens.forEach((t: string, i: number) => {
        const top = lp.top_logprobs[i] as Record<string, number>;
        expect(top[t]).toBeCloseTo(lp.token_logprobs[i], 5);
        expect(Object.keys(top).length).toBeLessThanOrEqual(n + 1);
        if (n === 0) expect(Object.keys(top)).toEqual([t]);
      });
    }
  });
});

describe("vLLM's other extra parameters", () => {
  const completion = { model: OPT, prompt: 'Hi', max_tokens: 2 };
  const chat = { model: OPT, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 };
  test.each([
    ['/v1/completions', 'cache_salt', 'tenant-a'],
    ['/v1/completions', 'logits_processors', ['my.Processor']],
    ['/v1/completions', 'guided_decoding_backend', 'outlines'],
    ['/v1/completions', 'guided_whitespace_pattern', ' *'],
    ['/v1/completions', 'kv_transfer_params', {}],
    ['/v1/completions', 'vllm_xargs', { a: 1 }],
    ['/v1/completions', 'prompt_embeds', 'AAAA'],
    ['/v1/chat/completions', 'cache_salt', 'tenant-a'],
    ['/v1/chat/completions', 'structural_tag', '{}'],
    ['/v1/chat/completions', 'mm_processor_kwargs', {}],
  ])('%s: %s is refused by name (400), null accepted', async (path, name, value) => {
    const body = path === '/v1/completions' ? completion : chat;
    const r = await post(opt, path, { ...body, [name]: value });
    expect(r.status).toBe(400);
    expect(r.json.error).toMatchObject({ param: name, code: 'unsupported_parameter' });
    expect((await post(opt, path, { ...body, [name]: null })).status).toBe(200);
  });
});

describe('streams as the clients read them', () => {
  const sse = async (body: object) => {
    const r = await fetch(`${opt.url}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify(body),
      headers: { 'content-type': 'application/json' },
    });
    return (await r.text())
      .split('\n\n')
      .filter((e) => e.startsWith('data: {'))
      .map((e) => JSON.parse(e.slice(6)) as Json);
  };

  test('a stream that ends before any text still names the role, and its finish chunk the stop_reason', async () => {
    const base = { model: OPT, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4, temperature: 0, ignore_eos: true };
    // The greedy first token's text, as a stop string: the stream ends before any text is sent.
    const first = (await post(opt, '/v1/chat/completions', { ...base, max_tokens: 1 })).json.choices[0].message.content as string;
    const chunks = await sse({ ...base, stop: [first], stream: true });
    expect(chunks).toHaveLength(1);
    expect(chunks[0].choices[0]).toMatchObject({ delta: { role: 'assistant', content: '' }, finish_reason: 'stop', stop_reason: first });
    // The official client's stream helper rebuilds the message from the deltas (it needs the role).
    const client = new OpenAI({ baseURL: `${opt.url}/v1`, apiKey: 'none' });
    const stream = client.chat.completions.stream({
      model: OPT,
      messages: [{ role: 'user', content: 'Hi' }],
      max_tokens: 4,
      temperature: 0,
      stop: [first],
    });
    const done = await stream.finalChatCompletion();
    expect(done.choices[0]).toMatchObject({ message: { role: 'assistant' }, finish_reason: 'stop' });
  });

  test('the finish chunk of a stream with text carries stop_reason (null at the length limit)', async () => {
    const chunks = await sse({ model: OPT, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3, ignore_eos: true, stream: true });
    const last = chunks[chunks.length - 1].choices[0];
    expect(last).toMatchObject({ finish_reason: 'length', stop_reason: null, delta: {} });
    expect(chunks.filter((c) => c.choices[0].delta.role === 'assistant')).toHaveLength(1);
  });
});

describe('a client that goes away', () => {
  test('before a non-streamed answer: counted as cancelled, logged as the client closing, not as a 503 "shutting down"', async () => {
    // The series appears with its first increment.
    const cancelled = () => metric(opt.url, 'hybridserve_requests_total', 'endpoint="completions",outcome="cancelled"').catch(() => 0);
    const before = await cancelled();
    const abort = new AbortController();
    const req = fetch(`${opt.url}/v1/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: OPT, prompt: 'Hi', max_tokens: 400, ignore_eos: true }),
      headers: { 'content-type': 'application/json' },
      signal: abort.signal,
    }).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 150));
    abort.abort();
    await req;
    for (let i = 0; i < 50 && (await cancelled()) === before; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await cancelled()).toBe(before + 1);
    await new Promise((r) => setTimeout(r, 50));
    expect(logLines.filter((l) => l.level >= 50)).toEqual([]);
    expect(JSON.stringify(logLines)).not.toContain('shutting down');
    const line = logLines.find((l) => l.msg === 'request' && l.outcome === 'cancelled');
    expect(line).toMatchObject({ path: '/v1/completions', status: 400 });
  });
});

describe('/tokenize (vLLM) takes what chat completions take', () => {
  const messages = [
    { role: 'developer', content: 'Be brief.' },
    {
      role: 'user',
      content: [
        { type: 'text', text: 'Hello ' },
        { type: 'text', text: 'there' },
      ],
    },
    { role: 'assistant', content: null },
    { role: 'user', content: 'and?' },
  ];

  test('text parts, null content and developer messages: the ids the chat completion is prompted with', async () => {
    const t = await post(opt, '/tokenize', { model: OPT, messages });
    expect(t.status).toBe(200);
    const chat = await post(opt, '/v1/chat/completions', { model: OPT, messages, max_tokens: 1 });
    expect(chat.status).toBe(200);
    expect(t.json.count).toBe(chat.json.usage.prompt_tokens);
    expect(t.json.tokens).toEqual(
      opt.serving.ctx.tokenizer.encode('system: Be brief.\nuser: Hello there\nassistant: \nuser: and?\nassistant:'),
    );
  });

  test('add_generation_prompt: false leaves the assistant turn closed', async () => {
    const t = await post(opt, '/tokenize', { messages: [{ role: 'user', content: 'x' }], add_generation_prompt: false });
    expect(t.json.tokens).toEqual(opt.serving.ctx.tokenizer.encode('user: x\n'));
  });

  test('add_special_tokens: the BOS is added by default and left out when false (prompt and messages)', async () => {
    const bos = await post(llama, '/tokenize', { prompt: 'hi' });
    const none = await post(llama, '/tokenize', { prompt: 'hi', add_special_tokens: false });
    expect(bos.json.tokens).toEqual([1, ...none.json.tokens]);
    expect(none.json.count).toBe(2);
    const messages = [{ role: 'user', content: 'x' }];
    const chat = await post(llama, '/tokenize', { messages });
    const chatNone = await post(llama, '/tokenize', { messages, add_special_tokens: false });
    expect(chat.json.tokens).toEqual([1, ...chatNone.json.tokens]);
  });

  test.each([
    [{ prompt: 'x', return_token_strs: true }, 'return_token_strs'],
    [{ messages: [{ role: 'user', content: 'x' }], continue_final_message: true }, 'continue_final_message'],
    [{ messages: [{ role: 'user', content: 'x' }], chat_template: '{{x}}' }, 'chat_template'],
    [{ messages: [{ role: 'user', content: 'x' }], tools: [{ type: 'function' }] }, 'tools'],
    [{ prompt: 'x', messages: [{ role: 'user', content: 'x' }] }, 'messages'],
    [{}, 'prompt'],
    [{ messages: [{ role: 'user', content: 5 }] }, 'messages.0.content'],
    [{ prompt: 'x', add_generation_prompt: false }, 'add_generation_prompt'],
    [{ messages: [{ role: 'assistant', content: null, tool_calls: [{ id: '1', type: 'function' }] }] }, 'messages.0.tool_calls'],
  ])('%j → 400 naming %s', async (body, param) => {
    const r = await post(opt, '/tokenize', body);
    expect(r.status).toBe(400);
    expect(r.json.error).toMatchObject({ param, type: 'invalid_request_error' });
  });

  test('the defaults of the refused options are accepted', async () => {
    const r = await post(opt, '/tokenize', {
      messages: [{ role: 'user', content: 'x' }],
      return_token_strs: false,
      continue_final_message: false,
      chat_template: null,
      tools: [],
    });
    expect(r.status).toBe(200);
  });
});
