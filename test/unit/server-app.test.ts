// The app over the fake engine, on a loopback port: routing, schemas, errors, auth, metrics.
// (Fastify's inject() needs light-my-request, whose ESM-only `cookie` dependency Jest cannot load in
// this setup, so requests go over real HTTP. test/integration/server-*.test.ts use the real engine.)
// Every test makes the requests its assertions rely on and checks differences, never totals left by
// the tests before it, so each passes alone (jest -t NAME) and in any order.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { createServing, type Serving } from '../../server/serving.js';
import { byteTokenizer, FakeEngine } from './server-fake-engine.js';

let s: Serving;
let base = '';
interface Req {
  method?: string;
  url: string;
  headers?: Record<string, string>;
  payload?: string | Buffer;
}
const body = (o: object): Req => ({
  method: 'POST',
  url: '/v1/completions',
  headers: { 'content-type': 'application/json', authorization: 'Bearer k1' },
  payload: JSON.stringify(o),
});
async function inject(r: Req) {
  const res = await fetch(base + r.url, { method: r.method ?? 'GET', headers: r.headers, body: r.payload });
  const text = await res.text();
  return { statusCode: res.status, headers: Object.fromEntries(res.headers), body: text, json: () => JSON.parse(text) };
}
/** The value of one series on /metrics (0 when absent). */
async function series(name: string): Promise<number> {
  const line = (await inject({ url: '/metrics' })).body.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ').at(-1)) : 0;
}
const stats = async () => (await inject({ url: '/v1/hybridserve/stats', headers: { authorization: 'Bearer k1' } })).json();

beforeAll(async () => {
  s = await createServing({
    modelName: 'fake',
    modelAliases: ['fake-alias'],
    device: 'cpu',
    engine: new FakeEngine({ kvBlocks: 500, actBlocks: 0, vocab: 120 }),
    tokenizer: byteTokenizer,
    maxPositions: 256,
    limits: { maxPromptTokens: 64, maxTotalTokens: 128, bodyLimitBytes: 4096 },
    apiKeys: ['k1'],
    processMetrics: false,
  });
  base = await s.app.listen({ host: '127.0.0.1', port: 0 });
});
afterAll(() => s.shutdown(1000));

describe('app', () => {
  test('a completion, then its usage matches the tokens', async () => {
    const r = await inject(body({ model: 'fake', prompt: 'hello', max_tokens: 7, temperature: 0, ignore_eos: true }));
    expect(r.statusCode).toBe(200);
    const j = r.json();
    expect(j.object).toBe('text_completion');
    expect(j.usage).toEqual({ prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 });
    expect(j.choices[0].finish_reason).toBe('length');
  });

  test('SSE stream ends with [DONE] and carries usage when asked', async () => {
    const r = await inject({
      ...body({
        model: 'fake',
        messages: [{ role: 'user', content: 'hi' }],
        max_tokens: 4,
        stream: true,
        stream_options: { include_usage: true },
        ignore_eos: true,
      }),
      url: '/v1/chat/completions',
    });
    expect(r.headers['content-type']).toMatch(/text\/event-stream/);
    const events = r.body
      .split('\n\n')
      .filter(Boolean)
      .map((e) => e.replace(/^data: /, ''));
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    expect(chunks.at(-1).usage.completion_tokens).toBe(4);
    expect(chunks.at(-2).choices[0].finish_reason).toBe('length');
    expect(chunks[0].choices[0].delta.role).toBe('assistant');
  });

  test.each([
    ['malformed JSON', 400, '{"model":'],
    ['wrong type', 400, JSON.stringify({ model: 'fake', prompt: 'x', max_tokens: '5' })],
    ['negative max_tokens', 400, JSON.stringify({ model: 'fake', prompt: 'x', max_tokens: -1 })],
    ['huge max_tokens', 400, JSON.stringify({ model: 'fake', prompt: 'x', max_tokens: 1e9 })],
    ['prompt too long', 400, JSON.stringify({ model: 'fake', prompt: 'x'.repeat(100) })],
    ['n beyond the sequences one request may create', 400, JSON.stringify({ model: 'fake', prompt: 'x', n: 17 })],
    ['unknown model', 404, JSON.stringify({ model: 'gpt-9', prompt: 'x' })],
    ['oversized body', 413, JSON.stringify({ model: 'fake', prompt: 'x'.repeat(5000) })],
    ['missing prompt', 400, JSON.stringify({ model: 'fake' })],
  ])('%s → %s with an OpenAI error', async (_name, status, payload) => {
    const r = await inject({ ...body({}), payload });
    expect(r.statusCode).toBe(status);
    expect(r.json().error).toEqual(expect.objectContaining({ message: expect.any(String), type: expect.any(String) }));
  });

  test('invalid UTF-8 is a 400', async () => {
    const payload = Buffer.concat([Buffer.from('{"model":"fake","prompt":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]);
    const r = await inject({ ...body({}), payload });
    expect(r.statusCode).toBe(400);
    expect(r.json().error.code).toBe('invalid_utf8');
  });

  test('API keys guard the API but not health, readiness or metrics', async () => {
    const r = await inject({ url: '/v1/models' });
    expect(r.statusCode).toBe(401);
    expect(r.json().error.type).toBe('authentication_error');
    const ok = await inject({ url: '/v1/models', headers: { authorization: 'Bearer k1' } });
    expect(ok.json().data[0].id).toBe('fake');
    for (const url of ['/healthz', '/readyz', '/metrics']) expect((await inject({ url })).statusCode).toBe(200);
  });

  test('metrics carry the DESIGN.md names; stats follow the contract', async () => {
    const before = await stats();
    expect((await inject(body({ model: 'fake', prompt: 'count me', max_tokens: 3, ignore_eos: true }))).statusCode).toBe(200);
    const m = (await inject({ url: '/metrics' })).body;
    for (const name of [
      'hybridserve_requests_total',
      'hybridserve_generated_tokens_total',
      'hybridserve_prompt_tokens_total',
      'hybridserve_queue_depth',
      'hybridserve_running_sequences',
      'hybridserve_time_to_first_token_seconds_bucket',
      'hybridserve_time_per_output_token_seconds_bucket',
      'hybridserve_cache_blocks{kind="kv",state="used"}',
      'hybridserve_act_fraction',
      'hybridserve_transfer_bytes_total{kind="weights",direction="h2d"}',
      'hybridserve_step_phase_seconds_total{phase="recompute"}',
    ])
      expect(m).toContain(name);
    const st = await stats();
    expect(st).toMatchObject({ model: 'fake', device: 'cpu', queueDepth: 0, runningSequences: 0 });
    expect(st.requestsTotal - before.requestsTotal).toBe(1);
    expect(st.generatedTokensTotal - before.generatedTokensTotal).toBe(3);
    // One prefill step (the first token) and two decode steps; 8 prompt bytes, then one token each.
    expect(st.counters.steps - before.counters.steps).toBe(3);
    expect(st.counters.prefillTokens - before.counters.prefillTokens).toBe(8);
    expect(st.counters.decodeTokens - before.counters.decodeTokens).toBe(2);
    expect(st.pools.kvBlocksFree).toBe(st.pools.kvBlocksTotal);
  });

  test('the model may be named by an alias', async () => {
    expect((await inject(body({ model: 'fake-alias', prompt: 'x', max_tokens: 1 }))).statusCode).toBe(200);
  });

  test('refused requests are counted by outcome', async () => {
    const rejected = 'hybridserve_requests_total{endpoint="completions",outcome="rejected"}';
    const ok = 'hybridserve_requests_total{endpoint="completions",outcome="ok"}';
    const [r0, ok0] = [await series(rejected), await series(ok)];
    expect((await inject(body({ model: 'fake', prompt: 'x', max_tokens: -1 }))).statusCode).toBe(400);
    expect((await inject(body({ model: 'fake', prompt: 'y', max_tokens: 1 }))).statusCode).toBe(200);
    expect((await series(rejected)) - r0).toBe(1);
    expect((await series(ok)) - ok0).toBe(1);
  });

  test('the server keeps serving after bad input', async () => {
    expect((await inject({ ...body({}), payload: '{"model":' })).statusCode).toBe(400);
    expect((await inject({ ...body({}), payload: JSON.stringify({ model: 'fake', prompt: 'x'.repeat(5000) }) })).statusCode).toBe(413);
    const r = await inject(body({ model: 'fake', prompt: 'again', max_tokens: 2 }));
    expect(r.statusCode).toBe(200);
    expect(r.json().usage.completion_tokens).toBe(2);
  });
});

describe('limits', () => {
  let slow: Serving;
  let url = '';
  beforeAll(async () => {
    slow = await createServing({
      modelName: 'fake',
      device: 'cpu',
      engine: new FakeEngine({ kvBlocks: 500, actBlocks: 0, vocab: 120, stepDelayMs: 20 }),
      tokenizer: byteTokenizer,
      maxPositions: 256,
      limits: { maxQueue: 1, requestTimeoutMs: 300 },
      maxBatch: 1,
      processMetrics: false,
    });
    url = await slow.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(() => slow.shutdown(1000));
  const post = (o: object) =>
    fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'fake', prompt: 'hi', ignore_eos: true, ...o }),
    });

  test('a full queue answers 429 with Retry-After', async () => {
    const rs = await Promise.all([post({ max_tokens: 3 }), post({ max_tokens: 3 }), post({ max_tokens: 3 }), post({ max_tokens: 3 })]);
    const limited = rs.filter((r) => r.status === 429);
    expect(limited.length).toBeGreaterThan(0);
    expect(Number(limited[0].headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(((await limited[0].json()) as { error: { type: string } }).error.type).toBe('rate_limit_error');
    expect(rs.filter((r) => r.status === 200).length).toBeGreaterThan(0);
  });

  test('a request running past the timeout is ended: 408, or an error event in a stream', async () => {
    const r = await post({ max_tokens: 100 });
    expect(r.status).toBe(408);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe('request_timeout');
    const s = await post({ max_tokens: 100, stream: true });
    const text = await s.text();
    expect(text).toMatch(/"code":"request_timeout"/);
    expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
  });
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = Record<string, any>;
/** A stream's chunks, and whether it ended with [DONE]. */
function sseEvents(text: string): { chunks: Json[]; done: boolean } {
  const events = text
    .split('\n\n')
    .filter(Boolean)
    .map((e) => e.replace(/^data: /, ''));
  const done = events.at(-1) === '[DONE]';
  return { chunks: (done ? events.slice(0, -1) : events).map((e) => JSON.parse(e) as Json), done };
}
/** The chunks of one choice, in order. */
const ofChoice = (chunks: Json[], i: number) => chunks.filter((c) => c.choices[0]?.index === i);

describe('n samples and prompt batches', () => {
  const post = async (o: object, url = '/v1/completions') =>
    inject({ ...body({ model: 'fake', max_tokens: 6, ignore_eos: true, ...o }), url });
  const complete = async (o: object, url?: string): Promise<Json> => {
    const r = await post(o, url);
    expect(r.statusCode).toBe(200);
    return r.json();
  };
  const texts = (j: Json): string[] => j.choices.map((c: Json) => c.text ?? c.message.content);
  const chat = { messages: [{ role: 'user', content: 'hi' }] };

  test('n = 3: choices 0..2, the prompt counted once and every completion token; a seed repeats them, sample j is seed + j', async () => {
    const j = await complete({ prompt: 'hello', n: 3, seed: 11 });
    expect(j.choices.map((c: Json) => [c.index, c.finish_reason])).toEqual([
      [0, 'length'],
      [1, 'length'],
      [2, 'length'],
    ]);
    expect(j.usage).toEqual({ prompt_tokens: 5, completion_tokens: 18, total_tokens: 23 });
    // The fake engine samples from each sequence's seed: six tokens of 117 agree by chance with p ≈ 1e-12.
    expect(new Set(texts(j)).size).toBe(3);
    expect(texts(await complete({ prompt: 'hello', n: 3, seed: 11 }))).toEqual(texts(j));
    for (const k of [0, 1, 2]) expect(texts(await complete({ prompt: 'hello', seed: 11 + k }))).toEqual([texts(j)[k]]);
    expect(new Set(texts(await complete({ prompt: 'hello', n: 3 }))).size).toBe(3);
  });

  test('2 prompts × n = 2: prompt-major choices, each what the one-prompt request with the derived seed gives', async () => {
    const j = await complete({ prompt: ['hello', 'good day'], n: 2, seed: 5 });
    expect(j.choices.map((c: Json) => c.index)).toEqual([0, 1, 2, 3]);
    expect(j.usage).toEqual({ prompt_tokens: 5 + 8, completion_tokens: 24, total_tokens: 37 });
    const single = async (prompt: string, seed: number) => texts(await complete({ prompt, seed }))[0];
    expect(texts(j)).toEqual([
      await single('hello', 5),
      await single('hello', 6),
      await single('good day', 5),
      await single('good day', 6),
    ]);
    const ids = await complete({ prompt: [byteTokenizer.encode('hello'), byteTokenizer.encode('good day')], n: 2, seed: 5 });
    expect(texts(ids)).toEqual(texts(j));
    const c = await complete({ ...chat, n: 2, seed: 5 }, '/v1/chat/completions');
    expect(c.choices.map((x: Json) => [x.index, x.message.role])).toEqual([
      [0, 'assistant'],
      [1, 'assistant'],
    ]);
    expect(c.usage.completion_tokens).toBe(12);
  });

  test('streamed n = 2: chunks of both choices, one finish each (its last), the request usage last, then [DONE]', async () => {
    const o = { prompt: ['hello', 'good day'], n: 2, seed: 3 };
    const whole = await complete(o);
    const r = await post({ ...o, stream: true, stream_options: { include_usage: true } });
    expect(r.statusCode).toBe(200);
    const { chunks, done } = sseEvents(r.body);
    expect(done).toBe(true);
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: whole.usage });
    const choiceChunks = chunks.slice(0, -1);
    expect(choiceChunks.every((c) => c.choices.length === 1 && c.usage === undefined)).toBe(true);
    for (const i of [0, 1, 2, 3]) {
      const mine = ofChoice(choiceChunks, i);
      expect(mine.map((c) => c.choices[0].text).join('')).toBe(texts(whole)[i]);
      expect(mine.filter((c) => c.choices[0].finish_reason !== null)).toEqual([mine.at(-1)]);
      expect(mine.at(-1)!.choices[0].finish_reason).toBe('length');
    }
    expect(choiceChunks).toHaveLength(chunks.length - 1);
    // Without include_usage: no usage chunk.
    expect(sseEvents((await post({ ...o, stream: true })).body).chunks.every((c) => c.choices.length === 1)).toBe(true);
  });

  test("chat streamed n = 2: each choice's first delta names the role, and only that one", async () => {
    const whole = await complete({ ...chat, n: 2, seed: 9 }, '/v1/chat/completions');
    const r = await post({ ...chat, n: 2, seed: 9, stream: true }, '/v1/chat/completions');
    const { chunks, done } = sseEvents(r.body);
    expect(done).toBe(true);
    for (const i of [0, 1]) {
      const mine = ofChoice(chunks, i);
      expect(mine.map((c) => c.choices[0].delta.role ?? null)).toEqual(['assistant', ...mine.slice(1).map(() => null)]);
      expect(mine.map((c) => c.choices[0].delta.content ?? '').join('')).toBe(texts(whole)[i]);
      expect(mine.filter((c) => c.choices[0].finish_reason === 'length')).toHaveLength(1);
    }
  });

  test.each([
    ['n beyond the limit', { n: 17 }, 'n'],
    ['a batch beyond the limit', { prompt: Array.from({ length: 17 }, () => 'a') }, 'prompt'],
    ['prompts × n beyond the limit', { prompt: ['a', 'b', 'c', 'd', 'e'], n: 4 }, 'n'],
    ['an empty prompt in a batch', { prompt: ['ok', ''] }, 'prompt.1'],
    ['a prompt too long in a batch', { prompt: ['ok', 'x'.repeat(65)] }, 'prompt.1'],
    ['best_of other than n', { n: 2, best_of: 3 }, 'best_of'],
    ['n = 0', { n: 0 }, 'n'],
    ['n not an integer', { n: 1.5 }, 'n'],
  ])('%s: a 400 naming it, streamed too', async (_name, extra, param) => {
    for (const stream of [false, true]) {
      const r = await post({ prompt: 'x', ...extra, stream });
      expect(r.statusCode).toBe(400);
      expect(r.json().error.param).toBe(param);
    }
  });

  test('best_of equal to n is accepted; a prompt of a batch is named in the message', async () => {
    expect((await complete({ prompt: 'x', n: 2, best_of: 2 })).choices).toHaveLength(2);
    expect((await post({ prompt: ['ok', ''] })).json().error.message).toBe('prompt[1] is empty after tokenization');
  });

  test('one request is counted once, with its tokens summed', async () => {
    const ok = 'hybridserve_requests_total{endpoint="completions",outcome="ok"}';
    const [before, ok0] = [await stats(), await series(ok)];
    await complete({ prompt: ['ab', 'cde'], n: 2, max_tokens: 3 });
    const st = await stats();
    expect(st.requestsTotal - before.requestsTotal).toBe(1);
    expect(st.promptTokensTotal - before.promptTokensTotal).toBe(5);
    expect(st.generatedTokensTotal - before.generatedTokensTotal).toBe(12);
    expect((await series(ok)) - ok0).toBe(1);
    expect(st.pools.kvBlocksFree).toBe(st.pools.kvBlocksTotal);
  });
});

describe("a request's sequences at admission and when its client leaves", () => {
  let srv: Serving;
  let url = '';
  const engine = new FakeEngine({ kvBlocks: 500, actBlocks: 0, vocab: 120, stepDelayMs: 15 });
  beforeAll(async () => {
    srv = await createServing({
      modelName: 'fake',
      device: 'cpu',
      engine,
      tokenizer: byteTokenizer,
      maxPositions: 512,
      limits: { maxQueue: 3 },
      maxBatch: 2,
      processMetrics: false,
    });
    url = await srv.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(() => srv.shutdown(1000));
  const post = (o: object, signal?: AbortSignal) =>
    fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'fake', prompt: 'hi', ignore_eos: true, ...o }),
      signal,
    });
  const sched = () => srv.ctx.scheduler;
  async function until(cond: () => boolean, what: string): Promise<void> {
    for (let i = 0; i < 400 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
    if (!cond()) throw new Error(`timed out waiting for ${what}`);
  }
  /** Engine sequence ids stepped since step `from` of the engine's log. */
  const steppedSince = (from: number) => new Set(engine.stepLog.slice(from).flat());

  test('a queue-full refusal of a later sequence cancels the ones already queued; the server keeps serving', async () => {
    const from = engine.stepLog.length;
    const running = post({ n: 2, max_tokens: 40 });
    await until(() => sched().runningCount === 2, 'two running');
    const waiting = post({ n: 2, max_tokens: 2 });
    await until(() => sched().queueDepth === 2, 'two waiting');
    // Its first sequence takes the last queue slot, its second is refused.
    const refused = await post({ n: 2, max_tokens: 2 });
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).toBeTruthy();
    expect(((await refused.json()) as Json).error.code).toBe('queue_full');
    expect(sched().queueDepth).toBe(2);
    expect((await running).status).toBe(200);
    expect(((await (await waiting).json()) as Json).choices).toHaveLength(2);
    // Only the four sequences of the two served requests ever reached the engine.
    expect(steppedSince(from).size).toBe(4);
    expect(((await (await post({ n: 2, max_tokens: 2 })).json()) as Json).choices).toHaveLength(2);
    await until(() => sched().idle, 'idle');
    expect(engine.pools().kvBlocksFree).toBe(500);
  });

  test('a client that leaves mid-stream cancels every sequence of its request', async () => {
    const ac = new AbortController();
    const res = await post({ n: 2, max_tokens: 400, stream: true }, ac.signal);
    const reader = res.body!.getReader();
    const seen = new Set<number>();
    // Both choices are generating when the client goes.
    while (seen.size < 2) {
      const { value, done } = await reader.read();
      if (done) throw new Error('stream ended early');
      for (const m of new TextDecoder().decode(value).matchAll(/"index":(\d+)/g)) seen.add(Number(m[1]));
    }
    expect(sched().runningCount).toBe(2);
    const steps = engine.stepLog.length;
    ac.abort();
    await until(() => sched().runningCount === 0 && sched().queueDepth === 0, 'both sequences gone');
    // Far fewer than the 400 steps the request asked for; the pools are whole again.
    expect(engine.stepLog.length - steps).toBeLessThan(20);
    await until(() => engine.pools().kvBlocksFree === 500, 'blocks freed');
  });
});
