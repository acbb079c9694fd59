// Prefix caching through the HTTP server: a repeated prompt reports the reused tokens in
// usage.prompt_tokens_details.cached_tokens (as vLLM and OpenAI do), the hit/query counters move,
// the text is the same as without caching, and --prefix-caching off reports nothing.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { metric, startServer, type TestServer } from './server-helpers.js';

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
});
