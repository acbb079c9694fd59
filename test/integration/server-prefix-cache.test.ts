// Prefix caching through the HTTP server: a repeated prompt reports the reused tokens in
// usage.prompt_tokens_details.cached_tokens (as vLLM and OpenAI do), the hit/query counters move,
// the text is the same as without caching, and --prefix-caching off reports nothing. The n samples
// of a prompt compute it once (only with prefix caching on).
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { metric, startServer, stats, type TestServer } from './server-helpers.js';

const prompt = Array.from({ length: 200 }, (_, i) => (i * 37 + 11) % 50000);
const body = (stream = false) =>
  JSON.stringify({
    model: 'synthetic:opt-tiny',
    prompt,
    max_tokens: 6,
    temperature: 0,
    stream,
    ...(stream ? { stream_options: { include_usage: true } } : {}),
  });

async function complete(
  url: string,
): Promise<{ text: string; usage: { prompt_tokens: number; prompt_tokens_details?: { cached_tokens: number } } }> {
  const r = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: body() });
  expect(r.status).toBe(200);
  const j = (await r.json()) as {
    choices: Array<{ text: string }>;
    usage: { prompt_tokens: number; prompt_tokens_details?: { cached_tokens: number } };
  };
  return { text: j.choices[0].text, usage: j.usage };
}

// The parallel-sampling tests (n > 1) below.
const BLOCK = 16;
/** A prompt of 100 token ids (6 full blocks of 16 + 4), different for each k so that no test hits another's blocks. */
const promptOf = (k: number) => Array.from({ length: 100 }, (_, i) => (i * 37 + 11 + k * 1009) % 50000);
const FULL_BLOCK_TOKENS = Math.floor(100 / BLOCK) * BLOCK;
const MAX_TOKENS = 6;

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

async function completeOn(srv: TestServer, req: object): Promise<Json> {
  const r = await fetch(`${srv.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'synthetic:opt-tiny', max_tokens: MAX_TOKENS, ignore_eos: true, ...req }),
  });
  expect(r.status).toBe(200);
  return (await r.json()) as Json;
}
const texts = (j: Json) => (j.choices as Array<{ text: string }>).map((c) => c.text);

/** What one request did on the server: its response, engine steps, prefix-cache hit tokens and prefill tokens. */
async function measured(srv: TestServer, req: object) {
  const sched = srv.serving.ctx.scheduler;
  const before = {
    steps: sched.totals.steps,
    hits: (await stats(srv.url)).pools.prefixHitTokens ?? 0,
    prefill: sched.engineCounters().prefillTokens,
  };
  const json = await completeOn(srv, req);
  return {
    json,
    steps: sched.totals.steps - before.steps,
    hits: ((await stats(srv.url)).pools.prefixHitTokens ?? 0) - before.hits,
    prefill: sched.engineCounters().prefillTokens - before.prefill,
  };
}

describe('server prefix caching', () => {
  let on: TestServer;
  let off: TestServer;
  beforeAll(async () => {
    on = await startServer({ prefixCaching: true });
    off = await startServer({ prefixCaching: false });
  });
  afterAll(async () => {
    await on.close();
    await off.close();
  });

  test('a repeated prompt reports cached tokens and gives the same text', async () => {
    const first = await complete(on.url);
    expect(first.usage.prompt_tokens_details).toBeUndefined();
    const second = await complete(on.url);
    // 200 tokens = 12 full blocks of 16 + 8: the 12 blocks (192 tokens) come from the cache.
    expect(second.usage.prompt_tokens_details?.cached_tokens).toBe(192);
    expect(second.text).toBe(first.text);
    expect(await metric(on.url, 'hybridserve_prefix_cache_hit_tokens_total')).toBe(192);
    expect(await metric(on.url, 'hybridserve_prefix_cache_query_tokens_total')).toBe(400);
    const plain = await complete(off.url);
    const again = await complete(off.url);
    expect(again.usage.prompt_tokens_details).toBeUndefined();
    expect(plain.text).toBe(first.text);
  });

  test('streamed usage carries cached_tokens too', async () => {
    const r = await fetch(`${on.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: body(true),
    });
    const text = await r.text();
    const usageLine = text
      .split('\n')
      .filter((l) => l.startsWith('data: {') && l.includes('"usage"'))
      .at(-1)!;
    const u = JSON.parse(usageLine.slice(6)).usage;
    expect(u.prompt_tokens_details.cached_tokens).toBe(192);
  });

  // Parallel sampling: samples 1..n-1 join one step after sample 0's prefill and take its full blocks
  // from the prefix cache (server/generate.ts submitAll, SequenceRequest.after). Their outputs are
  // those of n = 1 requests on the server without prefix caching, where nothing is deferred.
  describe('n > 1 computes the prompt once', () => {
    test('greedy, n = 4: samples 1-3 take the prompt from the cache, one step later; the texts are the n = 1 text', async () => {
      const tokens = promptOf(1);
      const want = texts(await completeOn(off, { prompt: tokens, temperature: 0 }))[0];
      const m = await measured(on, { prompt: tokens, temperature: 0, n: 4 });
      expect(texts(m.json)).toEqual([want, want, want, want]);
      expect(m.hits).toBe(3 * FULL_BLOCK_TOKENS);
      // Sample 0 computes the whole prompt; samples 1-3 only its last 4 tokens.
      expect(m.prefill).toBe(tokens.length + 3 * (tokens.length - FULL_BLOCK_TOKENS));
      expect(m.steps).toBe(MAX_TOKENS + 1);
      // cached_tokens counts each prompt's first sample only: a fresh prompt has none.
      expect(m.json.usage.prompt_tokens_details).toBeUndefined();
      expect(m.json.usage.prompt_tokens).toBe(tokens.length);
    });

    test('seeded at temperature 1, n = 4: sample j is the n = 1 request with seed + j', async () => {
      const tokens = promptOf(2);
      const hot = { prompt: tokens, temperature: 1, max_tokens: 12 };
      const want: string[] = [];
      for (let j = 0; j < 4; j++) want.push(texts(await completeOn(off, { ...hot, seed: 4242 + j }))[0]);
      expect(new Set(want).size).toBeGreaterThan(1);
      const m = await measured(on, { ...hot, seed: 4242, n: 4 });
      expect(texts(m.json)).toEqual(want);
      expect(m.hits).toBe(3 * FULL_BLOCK_TOKENS);
    });

    test('without prefix caching nothing is deferred: the 4 samples prefill together', async () => {
      const tokens = promptOf(3);
      const want = texts(await completeOn(off, { prompt: tokens, temperature: 0 }))[0];
      const m = await measured(off, { prompt: tokens, temperature: 0, n: 4 });
      expect(texts(m.json)).toEqual([want, want, want, want]);
      expect(m.hits).toBe(0);
      expect(m.prefill).toBe(4 * tokens.length);
      expect(m.steps).toBe(MAX_TOKENS);
    });

    test('a prompt shorter than one block is not deferred either', async () => {
      const tokens = promptOf(4).slice(0, BLOCK - 1);
      const m = await measured(on, { prompt: tokens, temperature: 0, n: 4 });
      expect(m.hits).toBe(0);
      expect(m.steps).toBe(MAX_TOKENS);
    });
  });
});
