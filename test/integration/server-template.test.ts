// Issue 12, case 5: a chat template's raise_exception is the request's fault: 400 with the OpenAI
// error shape and the template's message, not an anonymous 500. Real engine, a copy of the
// llama-ref fixture whose template refuses a conversation that does not start with the user.
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, type TestServer } from './server-helpers.js';

const FIXTURE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/llama-ref');
let dir: string;
let srv: TestServer;

beforeAll(async () => {
  dir = path.join(mkdtempSync(path.join(tmpdir(), 'hs-template-')), 'llama-ref');
  cpSync(FIXTURE, dir, { recursive: true });
  const tc = JSON.parse(readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  tc.chat_template =
    "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversations must start with the user') }}{% endif %}" +
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";
  writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(tc));
  srv = await startServer({ model: dir, limits: { maxPromptTokens: 64, maxTotalTokens: 128 } });
}, 60_000);
afterAll(async () => {
  await srv?.close();
  rmSync(path.dirname(dir), { recursive: true, force: true });
});

const chat = (messages: Array<{ role: string; content: string }>, stream = false) =>
  fetch(`${srv.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: srv.serving.ctx.modelName, messages, max_tokens: 2, stream }),
  });

test('raise_exception → 400 chat_template_error with the message, streamed or not', async () => {
  for (const stream of [false, true]) {
    const r = await chat([{ role: 'assistant', content: 'hi' }], stream);
    expect(r.status).toBe(400);
    const body = (await r.json()) as { error: Record<string, unknown> };
    expect(body.error).toMatchObject({ type: 'invalid_request_error', code: 'chat_template_error', param: 'messages' });
    expect(body.error.message).toMatch(/Conversations must start with the user/);
  }
  expect((await chat([{ role: 'user', content: 'hi' }])).status).toBe(200);
});
