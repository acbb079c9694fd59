// Issue 13 acceptance 1-3 and issue 12 item 6, on a listening server over the real engine (CPU,
// synthetic:opt-tiny with the GPT-2 tokenizer): every OpenAI/vLLM parameter is either honoured
// (and changes the output as specified) or refused with a 400 naming it in error.param; numeric
// fields out of bounds are 400s naming the field before any response starts (streamed too); the
// vLLM routes; the vLLM metric names that KEDA reads, under load.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { metric, startServer, type TestServer } from './server-helpers.js';

const MODEL = 'synthetic:opt-tiny';
const EOS = 50256;
let srv: TestServer;
type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

async function post(path: string, body: object): Promise<{ status: number; json: Json; text: string; type: string }> {
  const r = await fetch(`${srv.url}${path}`, {
    method: 'POST',
    body: JSON.stringify(body),
    headers: { 'content-type': 'application/json' },
  });
  const text = await r.text();
  let json: Json = {};
  try {
    json = JSON.parse(text) as Json;
  } catch {
    /* SSE */
  }
  return { status: r.status, json, text, type: r.headers.get('content-type') ?? '' };
}
const base = { model: MODEL, prompt: 'The quick brown fox', max_tokens: 8, temperature: 0, ignore_eos: true };
const complete = async (extra: object) => {
  const r = await post('/v1/completions', { ...base, ...extra });
  expect(r.status).toBe(200);
  return r.json.choices[0] as Json & { text: string };
};
const chatBase = { model: MODEL, messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 6, temperature: 0, ignore_eos: true };
const sse = (text: string) =>
  text
    .split('\n\n')
    .filter(Boolean)
    .map((e) => e.replace(/^data: /, ''))
    .filter((e) => e !== '[DONE]')
    .map((e) => JSON.parse(e) as Json);

let greedy: Json & { text: string };
/** The greedy completion's token ids (each logprobs token string re-encodes to one id). */
let greedyIds: number[];

beforeAll(async () => {
  srv = await startServer({ maxBatch: 2 });
  greedy = await complete({ logprobs: 1 });
  const tok = srv.serving.ctx.tokenizer;
  greedyIds = (greedy.logprobs.tokens as string[]).map((t) => tok.encode(t)).map((ids) => (ids.length === 1 ? ids[0] : -1));
});
afterAll(() => srv.close());

describe('honoured parameters change the output as specified', () => {
  test('the greedy baseline repeats a token (so penalties have something to act on)', () => {
    expect(greedy.logprobs.tokens).toHaveLength(8);
    expect(new Set(greedyIds).size).toBeLessThan(8);
    expect(greedyIds.every((id) => id >= 0)).toBe(true);
  });

  test('logit_bias -100 bans a token', async () => {
    const first = greedyIds[0];
    const c = await complete({ logit_bias: { [first]: -100 }, logprobs: 1 });
    const ids = (c.logprobs.tokens as string[]).map((t) => srv.serving.ctx.tokenizer.encode(t)[0]);
    expect(ids).not.toContain(first);
    expect(c.text).not.toBe(greedy.text);
  });

  test('stop_token_ids stop at the token (its text left out unless include_stop_str_in_output)', async () => {
    const at = 2;
    const stopId = greedyIds[at];
    const firstAt = greedyIds.indexOf(stopId);
    const c = await complete({ stop_token_ids: [stopId] });
    expect(c.finish_reason).toBe('stop');
    expect(c.stop_reason).toBe(stopId);
    expect(c.text).toBe(greedy.logprobs.tokens.slice(0, firstAt).join(''));
    const inc = await complete({ stop_token_ids: [stopId], include_stop_str_in_output: true });
    expect(inc.text).toBe(greedy.logprobs.tokens.slice(0, firstAt + 1).join(''));
  });

  test('min_tokens suppresses EOS; ignore_eos generates past it', async () => {
    const eager = { logit_bias: { [EOS]: 100 }, ignore_eos: false };
    const r0 = await post('/v1/completions', { ...base, ...eager });
    expect(r0.json.usage.completion_tokens).toBe(1);
    expect(r0.json.choices[0].finish_reason).toBe('stop');
    const r5 = await post('/v1/completions', { ...base, ...eager, min_tokens: 5 });
    expect(r5.json.usage.completion_tokens).toBe(6); // 5 non-EOS tokens, then EOS
    expect(r5.json.choices[0].finish_reason).toBe('stop');
    const ign = await post('/v1/completions', { ...base, ...eager, ignore_eos: true });
    expect(ign.json.usage.completion_tokens).toBe(8);
  });

  test('skip_special_tokens: false keeps the EOS text', async () => {
    const eos = { logit_bias: { [EOS]: 100 }, max_tokens: 2 };
    expect((await complete(eos)).text).toBe('');
    expect((await complete({ ...eos, skip_special_tokens: false })).text).toBe('<|endoftext|><|endoftext|>');
  });

  test.each([
    ['presence_penalty', { presence_penalty: 2 }],
    ['frequency_penalty', { frequency_penalty: 2 }],
    ['repetition_penalty', { repetition_penalty: 2 }],
  ])('%s changes a repetitive greedy output', async (_n, extra) => {
    const c = await complete(extra);
    expect(c.text).not.toBe(greedy.text);
  });

  test('sampling: seeds reproduce (negative ones too), top_k 1 / tiny top_p / min_p 1 are greedy, top_k -1 is no cut', async () => {
    const hot = { temperature: 1.5, max_tokens: 12 };
    const a = await complete({ ...hot, seed: 7 });
    expect((await complete({ ...hot, seed: 7 })).text).toBe(a.text);
    const neg = await complete({ ...hot, seed: -7 });
    expect((await complete({ ...hot, seed: -7 })).text).toBe(neg.text);
    const g12 = (await complete({ max_tokens: 12 })).text;
    expect(a.text).not.toBe(g12);
    expect((await complete({ ...hot, seed: 3, top_k: 1 })).text).toBe(g12);
    expect((await complete({ ...hot, seed: 3, top_p: 1e-6 })).text).toBe(g12);
    expect((await complete({ ...hot, seed: 3, min_p: 1 })).text).toBe(g12);
    expect((await complete({ ...hot, seed: 7, top_k: -1 })).text).toBe(a.text);
  });

  test('stop strings, with and without include_stop_str_in_output', async () => {
    const stop = greedy.logprobs.tokens[3] as string;
    const cut = greedy.text.indexOf(stop);
    const c = await complete({ stop: [stop] });
    expect(c).toMatchObject({ text: greedy.text.slice(0, cut), finish_reason: 'stop', stop_reason: stop });
    expect((await complete({ stop, include_stop_str_in_output: true })).text).toBe(greedy.text.slice(0, cut + stop.length));
  });

  test('completions logprobs: the sampled token and the top N, best first', async () => {
    const c = await complete({ logprobs: 3 });
    const lp = c.logprobs;
    expect(lp.tokens.join('')).toBe(c.text);
    expect(lp.token_logprobs).toHaveLength(8);
    for (let i = 0; i < 8; i++) {
      const top = Object.values(lp.top_logprobs[i] as Record<string, number>);
      expect(top.length).toBeGreaterThanOrEqual(1);
      expect(top.length).toBeLessThanOrEqual(3);
      // Greedy: the sampled token is the best one.
      expect(lp.token_logprobs[i]).toBeCloseTo(Math.max(...top), 5);
      expect(lp.token_logprobs[i]).toBeLessThanOrEqual(0);
    }
    expect(lp.text_offset[0]).toBe(0);
    expect(lp.text_offset[1]).toBe(lp.tokens[0].length);
    // Streamed: the chunks' logprobs put together are the same.
    const s = await post('/v1/completions', { ...base, logprobs: 3, stream: true });
    const chunks = sse(s.text)
      .map((ch) => ch.choices[0]?.logprobs)
      .filter(Boolean) as Json[];
    expect(chunks.flatMap((l) => l.tokens)).toEqual(lp.tokens);
    expect(chunks.flatMap((l) => l.token_logprobs)).toEqual(lp.token_logprobs);
    expect(chunks.flatMap((l) => l.top_logprobs)).toEqual(lp.top_logprobs);
    expect(chunks.flatMap((l) => l.text_offset)).toEqual(lp.text_offset);
  });

  test('chat logprobs with top_logprobs, and the streamed chunks carry the same logprobs', async () => {
    const r = await post('/v1/chat/completions', { ...chatBase, logprobs: true, top_logprobs: 2 });
    expect(r.status).toBe(200);
    const content = r.json.choices[0].logprobs.content as Json[];
    expect(content).toHaveLength(6);
    expect(content.map((c) => c.token).join('')).toBe(r.json.choices[0].message.content);
    for (const c of content) {
      expect(c.top_logprobs).toHaveLength(2);
      expect(c.top_logprobs[0].logprob).toBeGreaterThanOrEqual(c.top_logprobs[1].logprob);
      expect(c.bytes).toEqual(Array.from(Buffer.from(c.token as string)));
    }
    const s = await post('/v1/chat/completions', { ...chatBase, logprobs: true, top_logprobs: 2, stream: true });
    const streamed = sse(s.text).flatMap((ch) => (ch.choices[0]?.logprobs?.content ?? []) as Json[]);
    expect(streamed).toEqual(content);
    // Without logprobs, none.
    const plain = await post('/v1/chat/completions', chatBase);
    expect(plain.json.choices[0].logprobs).toBeNull();
  });

  test('stream_options only with stream; response_format text only; user and n = 1 accepted', async () => {
    const so = await post('/v1/completions', { ...base, stream_options: { include_usage: true } });
    expect(so.status).toBe(400);
    expect(so.json.error.param).toBe('stream_options');
    expect((await post('/v1/completions', { ...base, response_format: { type: 'text' }, user: 'u1', n: 1 })).status).toBe(200);
    for (const type of ['json_object', 'json_schema']) {
      const r = await post('/v1/chat/completions', { ...chatBase, response_format: { type } });
      expect(r.status).toBe(400);
      expect(r.json.error.param).toBe('response_format');
    }
  });
});

describe('n samples and prompt batches on the real engine', () => {
  const texts = (j: Json): string[] => j.choices.map((c: Json) => c.text ?? c.message.content);
  const completion = async (extra: object) => {
    const r = await post('/v1/completions', { ...base, ...extra });
    expect(r.status).toBe(200);
    return r.json;
  };

  test('n = 3 at temperature 0: three identical greedy choices; the prompt counted once', async () => {
    const j = await completion({ n: 3 });
    expect(j.choices.map((c: Json) => c.index)).toEqual([0, 1, 2]);
    expect(texts(j)).toEqual([greedy.text, greedy.text, greedy.text]);
    const one = await completion({});
    expect(j.usage).toEqual({ prompt_tokens: one.usage.prompt_tokens, completion_tokens: 24, total_tokens: one.usage.prompt_tokens + 24 });
  });

  test('n = 3 sampled with a seed: a repeated request repeats them, they differ, sample j is the request with seed + j', async () => {
    const sampled = { n: 3, temperature: 1, seed: 1234, max_tokens: 16 };
    const j = await completion(sampled);
    expect(texts(await completion(sampled))).toEqual(texts(j));
    // 16 tokens sampled at temperature 1 from a random model: equal texts by chance are negligible.
    expect(new Set(texts(j)).size).toBe(3);
    for (const k of [0, 1, 2]) expect(texts(await completion({ ...sampled, n: 1, seed: 1234 + k }))).toEqual([texts(j)[k]]);
  });

  test('2 prompts × n = 2 at temperature 0: choices 0-1 are prompt 0 alone, 2-3 prompt 1 alone', async () => {
    const other = 'Once upon a time';
    const alone = [greedy.text, texts(await completion({ prompt: other }))[0]];
    const j = await completion({ prompt: [base.prompt, other], n: 2 });
    expect(texts(j)).toEqual([alone[0], alone[0], alone[1], alone[1]]);
    const ids = (t: string) => srv.serving.ctx.tokenizer.encode(t).length;
    expect(j.usage.prompt_tokens).toBe(ids(base.prompt) + ids(other));
    expect(j.usage.completion_tokens).toBe(32);
  });

  test("chat streamed n = 2: each choice's first delta names the role, one finish each, the usage last", async () => {
    const s = await post('/v1/chat/completions', { ...chatBase, n: 2, stream: true, stream_options: { include_usage: true } });
    expect(s.status).toBe(200);
    expect(s.text.trimEnd().endsWith('data: [DONE]')).toBe(true);
    const chunks = sse(s.text);
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { completion_tokens: 12 } });
    const whole = await post('/v1/chat/completions', { ...chatBase, n: 2 });
    for (const i of [0, 1]) {
      const mine = chunks.filter((c) => c.choices[0]?.index === i).map((c) => c.choices[0]);
      expect(mine[0].delta.role).toBe('assistant');
      expect(mine.slice(1).some((c) => 'role' in c.delta)).toBe(false);
      expect(mine.filter((c) => c.finish_reason !== null)).toEqual([expect.objectContaining({ finish_reason: 'length' })]);
      expect(mine.map((c) => c.delta.content ?? '').join('')).toBe(whole.json.choices[i].message.content);
    }
  });
});

describe('refused parameters get a 400 naming them', () => {
  const completions: Array<[string, unknown]> = [
    ['best_of', 2],
    ['use_beam_search', true],
    ['length_penalty', 2],
    ['prompt_logprobs', 1],
    ['allowed_token_ids', [1]],
    ['bad_words', ['x']],
    ['truncate_prompt_tokens', 5],
    ['guided_json', {}],
    ['guided_regex', 'a+'],
    ['guided_choice', ['a']],
    ['guided_grammar', 'x'],
    ['structured_outputs', { json: {} }],
    ['spaces_between_special_tokens', false],
    ['return_tokens_as_token_ids', true],
    ['priority', 1],
    ['echo', true],
    ['suffix', 'tail'],
  ];
  const chat: Array<[string, unknown]> = [
    ['tools', [{ type: 'function', function: { name: 'f' } }]],
    ['tool_choice', 'auto'],
    ['functions', [{ name: 'f' }]],
    ['function_call', 'auto'],
    ['parallel_tool_calls', true],
    ['add_generation_prompt', false],
    ['continue_final_message', true],
    ['chat_template', '{{x}}'],
    ['chat_template_kwargs', {}],
    ['documents', []],
    ['modalities', ['audio']],
    ['audio', {}],
    ['prediction', {}],
    ['reasoning_effort', 'low'],
    ['web_search_options', {}],
    ['store', true],
    ['metadata', {}],
    ['service_tier', 'flex'],
    ['echo', true],
    ['best_of', 3],
  ];
  test.each(completions)('completions %s', async (name, value) => {
    const r = await post('/v1/completions', { ...base, [name]: value });
    expect(r.status).toBe(400);
    expect(r.json.error.param).toBe(name);
  });
  test.each(chat)('chat %s', async (name, value) => {
    const r = await post('/v1/chat/completions', { ...chatBase, [name]: value });
    expect(r.status).toBe(400);
    expect(r.json.error.param).toBe(name);
  });
});

describe('numeric bounds: a 400 naming the field before anything streams (issue 12 item 6)', () => {
  const cases: Array<[string, object, string]> = [
    ['max_tokens 0', { max_tokens: 0 }, 'max_tokens'],
    ['temperature 3', { temperature: 3 }, 'temperature'],
    ['top_p 1.5', { top_p: 1.5 }, 'top_p'],
    ['top_k -2', { top_k: -2 }, 'top_k'],
    ['top_k 2^31', { top_k: 2 ** 31 }, 'top_k'],
    ['min_p 2', { min_p: 2 }, 'min_p'],
    ['seed 1e20', { seed: 1e20 }, 'seed'],
    ['seed 1.5', { seed: 1.5 }, 'seed'],
    ['n 0', { n: 0 }, 'n'],
    ['presence_penalty 3', { presence_penalty: 3 }, 'presence_penalty'],
    ['frequency_penalty -3', { frequency_penalty: -3 }, 'frequency_penalty'],
    ['repetition_penalty 0', { repetition_penalty: 0 }, 'repetition_penalty'],
    ['min_tokens -1', { min_tokens: -1 }, 'min_tokens'],
    ['logprobs 21', { logprobs: 21 }, 'logprobs'],
    ['logit_bias 200', { logit_bias: { 13186: 200 } }, 'logit_bias.13186'],
    ['logit_bias id outside the vocabulary', { logit_bias: { 99999999: 1 } }, 'logit_bias'],
    ['stop_token_ids -1', { stop_token_ids: [-1] }, 'stop_token_ids.0'],
    ['stop_token_ids outside the vocabulary', { stop_token_ids: [99999999] }, 'stop_token_ids'],
  ];
  test.each(cases)('%s (and streamed)', async (_n, extra, param) => {
    for (const stream of [false, true]) {
      const r = await post('/v1/completions', { ...base, ...extra, stream });
      expect(r.status).toBe(400);
      expect(r.type).toMatch(/application\/json/);
      expect(r.json.error.param).toBe(param);
    }
  });
  test('chat: top_logprobs 21, max_completion_tokens 0', async () => {
    for (const [extra, param] of [
      [{ logprobs: true, top_logprobs: 21 }, 'top_logprobs'],
      [{ max_completion_tokens: 0 }, 'max_completion_tokens'],
    ] as const) {
      const r = await post('/v1/chat/completions', { ...chatBase, ...extra, stream: true });
      expect(r.status).toBe(400);
      expect(r.json.error.param).toBe(param);
    }
  });
});

describe('vLLM routes', () => {
  test('/health, /version, /v1/models/{id}', async () => {
    const h = await fetch(`${srv.url}/health`);
    expect(h.status).toBe(200);
    expect(await h.text()).toBe('');
    expect(((await (await fetch(`${srv.url}/version`)).json()) as Json).version).toMatch(/^\d+\.\d+\.\d+/);
    const m = (await (await fetch(`${srv.url}/v1/models/${MODEL}`)).json()) as Json;
    expect(m).toMatchObject({ id: MODEL, object: 'model', max_model_len: 512 });
    const list = (await (await fetch(`${srv.url}/v1/models`)).json()) as Json;
    expect(list.data[0].max_model_len).toBe(512);
    const missing = await fetch(`${srv.url}/v1/models/facebook/opt-125m`);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as Json).error.param).toBe('model');
  });

  test('/tokenize and /detokenize round-trip, with the chat template for messages', async () => {
    const t = await post('/tokenize', { model: MODEL, prompt: 'Hello world' });
    expect(t.json).toEqual({ count: 2, max_model_len: 512, tokens: [15496, 995] });
    const d = await post('/detokenize', { model: MODEL, tokens: [15496, 995] });
    expect(d.json).toEqual({ prompt: 'Hello world' });
    const c = await post('/tokenize', { messages: [{ role: 'user', content: 'x' }] });
    expect(c.json.tokens).toEqual(srv.serving.ctx.tokenizer.encode('user: x\nassistant:'));
    const bad = await post('/detokenize', { tokens: [99999999] });
    expect(bad.status).toBe(400);
    expect(bad.json.error.param).toBe('tokens');
  });

  test('/openapi.json is generated from the route schemas', async () => {
    const doc = (await (await fetch(`${srv.url}/openapi.json`)).json()) as Json;
    expect(doc.openapi).toMatch(/^3\./);
    const body = doc.paths['/v1/completions'].post.requestBody.content['application/json'].schema;
    expect(body.properties.logit_bias).toBeDefined();
    expect(JSON.stringify(body.properties.top_k)).toContain('"minimum":-1');
    for (const p of ['/v1/chat/completions', '/tokenize', '/detokenize', '/health', '/metrics']) expect(doc.paths[p]).toBeDefined();
  });
});

describe('vLLM metric names (acceptance 3)', () => {
  test('under load with max batch 2: waiting > 0 and KV cache usage > 0 while requests are in flight', async () => {
    const label = `model_name="${MODEL}"`;
    const before = await metric(srv.url, 'vllm:request_success_total', `${label},finished_reason="length"`);
    const inflight = Array.from({ length: 5 }, (_, i) =>
      post('/v1/completions', { ...base, prompt: `request ${i} `.repeat(20), max_tokens: 120 }),
    );
    let waiting = 0;
    let usage = 0;
    let running = 0;
    for (let i = 0; i < 200 && (waiting === 0 || usage === 0); i++) {
      waiting = Math.max(waiting, await metric(srv.url, 'vllm:num_requests_waiting', label));
      usage = Math.max(usage, await metric(srv.url, 'vllm:kv_cache_usage_perc', label));
      running = Math.max(running, await metric(srv.url, 'vllm:num_requests_running', label));
      await new Promise((r) => setTimeout(r, 10));
    }
    await Promise.all(inflight);
    expect(waiting).toBeGreaterThan(0);
    expect(usage).toBeGreaterThan(0);
    expect(usage).toBeLessThanOrEqual(1);
    expect(running).toBe(2);
    expect(await metric(srv.url, 'vllm:request_success_total', `${label},finished_reason="length"`)).toBe(before + 5);
    expect(await metric(srv.url, 'vllm:generation_tokens_total', label)).toBeGreaterThanOrEqual(600);
    expect(await metric(srv.url, 'vllm:e2e_request_latency_seconds_count', label)).toBeGreaterThanOrEqual(5);
    expect(await metric(srv.url, 'vllm:time_to_first_token_seconds_count', label)).toBeGreaterThanOrEqual(5);
    expect(await metric(srv.url, 'vllm:inter_token_latency_seconds_count', label)).toBeGreaterThan(0);
    expect(await metric(srv.url, 'vllm:num_requests_waiting', label)).toBe(0);
    expect(
      await metric(
        srv.url,
        'hybridserve_build_info',
        `version="${((await (await fetch(`${srv.url}/version`)).json()) as Json).version}",node_version="${process.version}"`,
      ),
    ).toBe(1);
  });
});
