// Issue 15 gap, acceptance 2 and 3 on the real engine (synthetic:opt-tiny, CPU): a server on a
// 2-stage pipeline keeps two steps in flight (one scheduler lane per stage, each in its own engine
// slot). Concurrent greedy requests give the same completions as on one stage while both lanes
// step; a client that disconnects mid-generation frees its blocks; preemption under small pools
// still completes every request with the tokens of roomy pools. The CLI's --steps-in-flight.
// (dist/ must be built for the CLI test: `npm run build`.)
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { runServe, stop } from './serve-process.js';
import { metric, startServer, stats, type TestServer } from './server-helpers.js';

const MODEL = 'synthetic:opt-tiny';

type Server = TestServer;

/** The real server on `stages` CPU stages; batches of 16 unless told. */
const start = (o: { stages: number; kvBlocks?: number; maxBatch?: number }): Promise<Server> =>
  startServer({ model: MODEL, maxBatch: 16, ...o });

interface Completion {
  text: string;
  tokens: number;
  finish: string;
}

async function complete(url: string, prompt: string, maxTokens: number): Promise<Completion> {
  const r = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, prompt, max_tokens: maxTokens, temperature: 0, ignore_eos: true }),
    signal: AbortSignal.timeout(60_000),
  });
  expect(r.status).toBe(200);
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const body = (await r.json()) as any;
  return { text: body.choices[0].text, tokens: body.usage.completion_tokens, finish: body.choices[0].finish_reason };
}

const prompts = Array.from({ length: 8 }, (_, i) => `Request ${i}: ${'lorem ipsum '.repeat(1 + (i % 5))}`);
const maxTokens = (i: number) => 10 + 3 * i;

/** Waits until no sequence runs or waits, then returns the stats. */
async function idleStats(url: string) {
  for (let i = 0; i < 500; i++) {
    const st = await stats(url);
    if (st.runningSequences === 0 && st.queueDepth === 0) return st;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('server did not go idle');
}

describe('a server on a 2-stage CPU pipeline', () => {
  let one: Server;
  let two: Server;
  let want: Completion[];
  beforeAll(async () => {
    one = await start({ stages: 1 });
    two = await start({ stages: 2 });
    want = await Promise.all(prompts.map((p, i) => complete(one.url, p, maxTokens(i))));
  }, 60_000);
  afterAll(async () => {
    await one?.close();
    await two?.close();
  });

  test('one lane on one stage, two lanes on two stages', async () => {
    expect((await stats(one.url)).server.laneSteps).toHaveLength(1);
    expect((await stats(two.url)).server.laneSteps).toEqual([0, 0]);
  });

  test('concurrent greedy requests: the same completions as one stage, with steps in both slots', async () => {
    const got = await Promise.all(prompts.map((p, i) => complete(two.url, p, maxTokens(i))));
    expect(got).toEqual(want);
    expect(got.map((g) => g.tokens)).toEqual(prompts.map((_, i) => maxTokens(i)));
    const st = await idleStats(two.url);
    const [slot0, slot1] = st.server.laneSteps as number[];
    expect(slot0).toBeGreaterThan(5);
    expect(slot1).toBeGreaterThan(5);
    expect(slot0 + slot1).toBe(st.server.steps);
    expect(st.counters.steps).toBe(st.server.steps);
  }, 60_000);

  test('a client that disconnects mid-generation frees its blocks; the pools are full when idle', async () => {
    const ac = new AbortController();
    const stream = await fetch(`${two.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: MODEL,
        prompt: 'a long one '.repeat(20),
        max_tokens: 400,
        temperature: 0,
        ignore_eos: true,
        stream: true,
      }),
      signal: ac.signal,
    });
    const others = prompts.slice(0, 3).map((p, i) => complete(two.url, p, maxTokens(i)));
    // Read a few events, so the sequence is mid-generation in its lane, then go away.
    const reader = stream.body!.getReader();
    for (let events = 0; events < 5;) {
      const { value, done } = await reader.read();
      if (done) throw new Error('stream ended early');
      events += (new TextDecoder().decode(value).match(/^data: /gm) ?? []).length;
    }
    expect((await stats(two.url)).runningSequences).toBeGreaterThan(0);
    const cancelsBefore = await metric(two.url, 'hybridserve_cancelled_release_steps_count');
    ac.abort();
    expect(await Promise.all(others)).toEqual(want.slice(0, 3));
    expect(await metric(two.url, 'hybridserve_cancelled_release_steps_count')).toBe(cancelsBefore + 1);
    const st = await idleStats(two.url);
    expect(st.pools.kvBlocksFree).toBe(st.pools.kvBlocksTotal);
    expect(st.pools.actBlocksFree).toBe(st.pools.actBlocksTotal);
  }, 60_000);
});

describe('a 2-stage server with small pools', () => {
  let roomy: Server;
  let small: Server;
  beforeAll(async () => {
    roomy = await start({ stages: 1 });
    // 16-token blocks: each request below ends at 40-60 tokens (3-4 blocks); 8 blocks hold two or three.
    small = await start({ stages: 2, kvBlocks: 8 });
  }, 60_000);
  afterAll(async () => {
    await roomy?.close();
    await small?.close();
  });

  test('preemption completes every request with the tokens of roomy pools, in both lanes', async () => {
    const reqs = prompts.slice(0, 6).map((p, i) => [p, 30 + 2 * i] as const);
    const want = await Promise.all(reqs.map(([p, n]) => complete(roomy.url, p, n)));
    const got = await Promise.all(reqs.map(([p, n]) => complete(small.url, p, n)));
    expect(got).toEqual(want);
    const st = await idleStats(small.url);
    expect(st.server.preemptions).toBeGreaterThan(0);
    expect((st.server.laneSteps as number[]).every((n) => n > 0)).toBe(true);
    expect(st.pools.kvBlocksFree).toBe(st.pools.kvBlocksTotal);
  }, 60_000);
});

describe('hybridserve serve --steps-in-flight', () => {
  test("the default is one lane per stage; a value above the engine's maxStepsInFlight is exit 2 with one clear line", async () => {
    const ok = await runServe(['--stages', '2', '--max-total-tokens', '256']);
    try {
      expect(ok.output()).toMatch(/steps in flight: 2 \(one per pipeline stage\)/);
    } finally {
      expect(await stop(ok)).toBe(0);
    }
    const bad = await runServe(['--stages', '2', '--max-total-tokens', '256', '--steps-in-flight', '9'], {}, { waitListening: false });
    expect(await bad.exited).toBe(2);
    expect(bad.output()).toMatch(/--steps-in-flight: steps in flight must be an integer in \[1, 8\].*got 9/);
    const zero = await runServe(['--steps-in-flight', '0'], {}, { waitListening: false });
    expect(await zero.exited).toBe(2);
    expect(zero.output()).toMatch(/--steps-in-flight must be between 1 and 1024, got 0/);
  }, 60_000);
});
