// CORS (off by default; configured origins only) and unknown request fields logged once per name,
// on the app over the fake engine (loopback HTTP, as server-app.test.ts).
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { createServing, type Serving } from '../../server/serving.js';
import { byteTokenizer, FakeEngine } from './server-fake-engine.js';

const logLines: string[] = [];
async function serve(corsOrigins?: string[]): Promise<{ s: Serving; url: string }> {
  const s = await createServing({
    modelName: 'fake',
    device: 'cpu',
    engine: new FakeEngine({ kvBlocks: 200, actBlocks: 0, vocab: 120 }),
    tokenizer: byteTokenizer,
    maxPositions: 256,
    limits: { maxPromptTokens: 64, maxTotalTokens: 128 },
    apiKeys: ['k1'],
    processMetrics: false,
    corsOrigins,
    logger: {
      level: 'warn',
      stream: {
        write: (line: string) => {
          logLines.push(line);
        },
      },
    },
  });
  return { s, url: await s.app.listen({ host: '127.0.0.1', port: 0 }) };
}

let withCors: { s: Serving; url: string };
let without: { s: Serving; url: string };
beforeAll(async () => {
  withCors = await serve(['https://ui.example']);
  without = await serve([]);
});
afterAll(async () => {
  await withCors.s.shutdown(500);
  await without.s.shutdown(500);
});

const preflight = (url: string, origin: string) =>
  fetch(`${url}/v1/completions`, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' },
  });

describe('CORS', () => {
  test('a configured origin gets the CORS headers (preflight needs no key); others do not', async () => {
    const ok = await preflight(withCors.url, 'https://ui.example');
    expect(ok.status).toBeLessThan(300);
    expect(ok.headers.get('access-control-allow-origin')).toBe('https://ui.example');
    const other = await preflight(withCors.url, 'https://evil.example');
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
    const get = await fetch(`${withCors.url}/v1/models`, { headers: { origin: 'https://ui.example', authorization: 'Bearer k1' } });
    expect(get.headers.get('access-control-allow-origin')).toBe('https://ui.example');
    // A preflight is no way around the key for the real request.
    expect((await fetch(`${withCors.url}/v1/models`, { headers: { origin: 'https://ui.example' } })).status).toBe(401);
  });
  test('off by default', async () => {
    const r = await preflight(without.url, 'https://ui.example');
    expect(r.headers.get('access-control-allow-origin')).toBeNull();
    const get = await fetch(`${without.url}/v1/models`, { headers: { origin: 'https://ui.example', authorization: 'Bearer k1' } });
    expect(get.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('unknown fields', () => {
  test('are accepted and logged once per name', async () => {
    const post = () =>
      fetch(`${without.url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer k1' },
        body: JSON.stringify({ model: 'fake', prompt: 'hi', max_tokens: 2, some_future_field: 1, another_one: 'x' }),
      });
    expect((await post()).status).toBe(200);
    expect((await post()).status).toBe(200);
    const mentions = (name: string) => logLines.filter((l) => l.includes(`unknown request field '${name}'`)).length;
    expect(mentions('some_future_field')).toBe(1);
    expect(mentions('another_one')).toBe(1);
    expect(mentions('max_tokens')).toBe(0);
  });
});
