// Issue 12 (cases 2, 5, 7) and issue 13 (threads, limits, default cache sizing) at the unit level:
// decisions as pure functions, and the app's 5xx log over the fake engine.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { Writable } from 'node:stream';
import { capThreads } from '../../cli/args.js';
import { parseServeArgs } from '../../cli/serve.js';
import { progressLine, startProgress } from '../../cli/progress.js';
import { PassThrough } from 'node:stream';
import { presetConfig } from '../../model/presets.js';
import { ChatTemplateError } from '../../model/tokenizer.js';
import { ApiError } from '../../server/errors.js';
import { resolveLimits } from '../../server/options.js';
import { chatToGeneration, completionToGenerations, type ServerTokenizer } from '../../server/request.js';
import { choosePools } from '../../planning/server-start.js';
import { createServing, type Serving } from '../../server/serving.js';
import { byteTokenizer, FakeEngine } from './server-fake-engine.js';

const GiB = 2 ** 30;

describe('--threads is capped at the cores (case 7)', () => {
  test('1,024 threads on 2 cores run on 2, with a note', () => {
    expect(capThreads(1024, 2)).toEqual({ threads: 2, note: '--threads 1024 exceeds the 2 cores; using 2' });
    expect(capThreads(2, 2)).toEqual({ threads: 2 });
    expect(capThreads(undefined, 2)).toEqual({ threads: undefined });
  });
});

describe('limits come from the model window (issue 13)', () => {
  test('llama3-8b serves 8,192 tokens by default; the flags still win', () => {
    const llama3 = presetConfig('llama3-8b')!.maxPositions;
    expect(llama3).toBe(8192);
    const cfg = parseServeArgs([], {});
    if (cfg === 'help') throw new Error('help');
    expect(resolveLimits(cfg.limits, llama3)).toMatchObject({ maxTotalTokens: 8192, maxPromptTokens: 8191 });
    const set = parseServeArgs(['--max-prompt-tokens', '3000', '--max-total-tokens', '4096'], {});
    if (set === 'help') throw new Error('help');
    expect(resolveLimits(set.limits, llama3)).toMatchObject({ maxTotalTokens: 4096, maxPromptTokens: 3000 });
  });
});

describe('default cache sizing fits the host (issue 13)', () => {
  const opt13 = presetConfig('opt-1.3b')!;
  const base = { model: 'synthetic:opt-1.3b', device: 'cpu' as const, actFraction: 0 as const, maxBatch: 64, maxTotalTokens: 2048 };
  test('capped to half the free memory when maxBatch whole windows do not fit', () => {
    const p = choosePools({ ...base, freeMemoryBytes: 16 * GiB }, opt13, 0);
    expect(p.tokenBudget).toBeLessThan(64 * 2048);
    expect(p.tokenBudget).toBeGreaterThanOrEqual(2048);
    expect(p.reason).toMatch(/capped from 131072 .* free host memory/);
  });
  test('the whole wish when it fits', () => {
    expect(choosePools({ ...base, freeMemoryBytes: 4096 * GiB }, opt13, 0).tokenBudget).toBe(64 * 2048);
  });
  test('not even one request fits: a message naming the flag', () => {
    expect(() => choosePools({ ...base, freeMemoryBytes: 4 * GiB }, opt13, 0)).toThrow(
      /pass --host-memory SIZE, or lower --max-total-tokens/,
    );
  });
});

describe('admission before tokenising (case 2)', () => {
  const limits = resolveLimits({ maxPromptTokens: 100, maxTotalTokens: 200 }, 2048);
  test('text over the character limit is refused without being encoded', () => {
    let encoded = 0;
    const tok: ServerTokenizer = {
      ...byteTokenizer,
      encode: (t) => {
        encoded++;
        return byteTokenizer.encode(t);
      },
    };
    expect(limits.maxPromptChars).toBe(3200);
    const err = (() => {
      try {
        completionToGenerations({ model: 'm', prompt: 'a'.repeat(3201) }, tok, limits);
      } catch (e) {
        return e;
      }
    })() as ApiError;
    expect(err).toBeInstanceOf(ApiError);
    expect(err.statusCode).toBe(400);
    expect(err.code).toBe('context_length_exceeded');
    expect(encoded).toBe(0);
    expect(() => chatToGeneration({ model: 'm', messages: [{ role: 'user', content: 'b'.repeat(3300) }] }, tok, limits)).toThrow(
      /3300 characters/,
    );
  });

  test('a chat template raise_exception is a 400 naming the template, not a 500 (case 5)', () => {
    const tok: ServerTokenizer = {
      ...byteTokenizer,
      encodeChat: () => {
        throw new ChatTemplateError('chat template failed: Conversation roles must alternate');
      },
    };
    const err = (() => {
      try {
        chatToGeneration({ model: 'm', messages: [{ role: 'user', content: 'x' }] }, tok, limits);
      } catch (e) {
        return e;
      }
    })() as ApiError;
    expect(err).toBeInstanceOf(ApiError);
    expect(err.statusCode).toBe(400);
    expect(err.body().error).toMatchObject({
      code: 'chat_template_error',
      param: 'messages',
      message: 'chat template failed: Conversation roles must alternate',
    });
  });
});

describe('5xx are always logged with their cause (case 5)', () => {
  let s: Serving;
  let base = '';
  const lines: Array<Record<string, unknown>> = [];
  beforeAll(async () => {
    const stream = new Writable({
      write(chunk, _enc, cb) {
        for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l));
        cb();
      },
    });
    const broken: ServerTokenizer = {
      ...byteTokenizer,
      encode: () => {
        throw new Error('tokenizer state corrupt: cause-7731');
      },
    };
    s = await createServing({
      modelName: 'fake',
      device: 'cpu',
      engine: new FakeEngine({ kvBlocks: 100, actBlocks: 0, vocab: 120 }),
      tokenizer: broken,
      maxPositions: 256,
      processMetrics: false,
      logger: { level: 'info', stream },
    });
    base = await s.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(() => s.shutdown(1000));

  test('the client sees "internal server error"; the log has the cause and one request line', async () => {
    const r = await fetch(`${base}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'fake', prompt: 'PROMPT-TEXT' }),
    });
    expect(r.status).toBe(500);
    expect(JSON.stringify(await r.json())).not.toContain('cause-7731');
    await new Promise((res) => setTimeout(res, 50));
    const failure = lines.find((l) => l.msg === 'request failed');
    expect(failure).toBeDefined();
    expect(failure!.level).toBe(50);
    expect(JSON.stringify(failure!.err)).toContain('cause-7731');
    const request = lines.filter((l) => l.msg === 'request' && l.status === 500);
    expect(request).toHaveLength(1);
    expect(request[0].reqId).toBe(failure!.reqId);
    expect(JSON.stringify(lines)).not.toContain('PROMPT-TEXT');
  });
});

test('progress: plain lines for logs that are not a terminal, a bar on a terminal', () => {
  expect(progressLine({ step: 1, steps: 2, stage: 'loading 13.2Mi of weights into the engine' })).toBe(
    '[serve] loading 1/2: loading 13.2Mi of weights into the engine',
  );
  const plain = new PassThrough();
  let text = '';
  plain.on('data', (d: Buffer) => {
    text += d.toString();
  });
  const p = startProgress(plain as unknown as NodeJS.WriteStream, false);
  p({ step: 0, steps: 2, stage: 'reading x' });
  p({ step: 2, steps: 2, stage: 'ready' });
  expect(text).toBe('[serve] loading 0/2: reading x\n[serve] loading 2/2: ready\n');
  const tty = Object.assign(new PassThrough(), { isTTY: true, columns: 100 });
  let drawn = '';
  tty.on('data', (d: Buffer) => {
    drawn += d.toString();
  });
  const bar = startProgress(tty as unknown as NodeJS.WriteStream, true);
  bar({ step: 0, steps: 2, stage: 'reading x' });
  bar({ step: 2, steps: 2, stage: 'ready' });
  expect(drawn).toMatch(/loading model \[█+\] 2\/2 ready/);
});
