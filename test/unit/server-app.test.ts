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
    ['n = 2', 400, JSON.stringify({ model: 'fake', prompt: 'x', n: 2 })],
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
