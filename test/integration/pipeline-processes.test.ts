// Issue 15 on CPU with real processes: `hybridserve serve --device cpu --world-size 2` runs rank 0
// (engine core, HTTP) and rank 1 (its stage, /healthz only) as two processes joined by the
// rendezvous and the socket transport (native/src/pipeline/cpu_ranks.h). Greedy completions equal
// a one-process server's. Losing a rank ends the group instead of hanging it: kill rank 1 and rank
// 0 answers 503 engine_unavailable and exits 1; kill rank 0 and rank 1 exits 1.
import { afterEach, describe, expect, jest, test } from '@jest/globals';
import { freePort, runServe, type ServeProcess } from './serve-process.js';

jest.setTimeout(120_000);
const MODEL = ['--model', 'synthetic:opt-tiny', '--device', 'cpu'];
const PROMPTS = [
  [5, 6, 7, 8],
  [100, 200, 300],
  [42, 43, 44, 45, 46, 47, 48, 49, 50],
];

let procs: ServeProcess[] = [];
afterEach(async () => {
  for (const p of procs) if (p.alive()) p.proc.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exited));
  procs = [];
});

/** Rank 1 (not waited for: it listens for /healthz only after it joined) and rank 0. */
async function startPair(env: Record<string, string> = {}): Promise<{ leader: ServeProcess; rank1: ServeProcess }> {
  const at = `127.0.0.1:${await freePort()}`;
  const pipeline = ['--world-size', '2', '--leader-address', at];
  const rank1 = await runServe([...MODEL, ...pipeline, '--rank', '1'], env, { waitListening: false });
  procs.push(rank1);
  const leader = await runServe([...MODEL, ...pipeline, '--rank', '0'], env);
  procs.push(leader);
  return { leader, rank1 };
}

async function greedy(base: string, prompt: number[], maxTokens: number, stream = false): Promise<Response> {
  return fetch(`${base}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'synthetic:opt-tiny',
      prompt,
      max_tokens: maxTokens,
      temperature: 0,
      ignore_eos: true,
      logprobs: 0,
      stream,
    }),
  });
}

async function tokensOf(base: string, prompt: number[]): Promise<string[]> {
  const r = await greedy(base, prompt, 12);
  expect(r.status).toBe(200);
  const body = (await r.json()) as { choices: Array<{ logprobs: { tokens: string[] } }> };
  return body.choices[0].logprobs.tokens;
}

async function exitWithin(p: ServeProcess, ms: number): Promise<number | null | 'running'> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'running'>((r) => {
    timer = setTimeout(() => r('running'), ms);
  });
  const code = await Promise.race([p.exited, late]);
  clearTimeout(timer);
  return code;
}

describe('serve --device cpu --world-size 2: two processes', () => {
  test('give the tokens of one process, concurrently, and stop together', async () => {
    const { leader, rank1 } = await startPair({ HYBRIDSERVE_PIPELINE_TOKEN: 'pair-secret-1' });
    const single = await runServe(MODEL);
    procs.push(single);
    const [two, one] = await Promise.all([
      Promise.all(PROMPTS.map((p) => tokensOf(leader.url, p))),
      Promise.all(PROMPTS.map((p) => tokensOf(single.url, p))),
    ]);
    expect(two).toEqual(one);
    expect(two.every((t) => t.length === 12)).toBe(true);
    expect(leader.output()).toMatch(/x 1 pipeline stages/); // rank 0's engine runs its own stage only
    expect((await fetch(`${rank1.url}/healthz`)).status).toBe(200);
    leader.proc.kill('SIGTERM');
    expect(await exitWithin(leader, 30_000)).toBe(0);
    expect(await exitWithin(rank1, 30_000)).toBe(0); // the leader's stop ends rank 1
    expect(rank1.output()).toContain('rank 0 stopped');
    expect(leader.output() + rank1.output()).not.toContain('pair-secret-1');
    expect(leader.output()).not.toMatch(/HYBRIDSERVE_PIPELINE_TOKEN is not set/);
  });

  test('a rank without the group token is refused and says so; the token is never printed', async () => {
    const at = `127.0.0.1:${await freePort()}`;
    const pipeline = ['--world-size', '2', '--leader-address', at];
    const leader = await runServe(
      [...MODEL, ...pipeline, '--rank', '0'],
      { HYBRIDSERVE_PIPELINE_TOKEN: 'right-secret' },
      { waitListening: false },
    );
    const rank1 = await runServe(
      [...MODEL, ...pipeline, '--rank', '1'],
      { HYBRIDSERVE_PIPELINE_TOKEN: 'wrong-guess' },
      { waitListening: false },
    );
    procs.push(leader, rank1);
    expect(await exitWithin(rank1, 30_000)).toBe(1);
    expect(rank1.output()).toMatch(/the leader refused this rank: wrong pipeline token/);
    expect(leader.alive()).toBe(true); // a stranger does not end the rendezvous: it waits for the real rank
    expect(leader.output() + rank1.output()).not.toMatch(/right-secret|wrong-guess/);
  });

  test('rank 1 killed mid-stream: the stream ends with engine_unavailable and rank 0 exits 1', async () => {
    const { leader, rank1 } = await startPair();
    expect(await tokensOf(leader.url, PROMPTS[0])).toHaveLength(12);
    const r = await greedy(leader.url, PROMPTS[1], 2000, true);
    expect(r.status).toBe(200);
    const reader = r.body!.getReader();
    let text = '';
    let killed = false;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString();
      if (!killed && text.includes('data: {')) {
        rank1.proc.kill('SIGKILL'); // tokens are flowing: the step in flight loses rank 1
        killed = true;
      }
    }
    const events = text
      .split('\n')
      .filter((l) => l.startsWith('data: {'))
      .map((l) => JSON.parse(l.slice(6)) as { error?: { code: string; message: string }; choices?: unknown[] });
    const error = events.find((e) => e.error)?.error;
    expect(error?.code).toBe('engine_unavailable');
    expect(error?.message).toContain('pipeline rank 1');
    expect(events.filter((e) => e.choices).length).toBeLessThan(2000); // it ended early, not at max_tokens
    expect(await exitWithin(leader, 30_000)).toBe(1);
    expect(leader.output()).toMatch(/the engine cannot serve any more: pipeline rank 1/);
  });

  test('a rank that loaded another model is refused: both exit 1 and say why', async () => {
    const at = `127.0.0.1:${await freePort()}`;
    const pipeline = ['--device', 'cpu', '--world-size', '2', '--leader-address', at];
    const rank1 = await runServe(
      ['--model', 'synthetic:opt-tiny?seed=1', ...pipeline, '--rank', '1', '--weight-dtype', 'int8'],
      {},
      { waitListening: false },
    );
    const leader = await runServe(['--model', 'synthetic:opt-tiny', ...pipeline, '--rank', '0'], {}, { waitListening: false });
    procs.push(rank1, leader);
    expect(await exitWithin(leader, 30_000)).toBe(1);
    expect(await exitWithin(rank1, 30_000)).toBe(1);
    expect(leader.output()).toMatch(/rank 1 loaded another model than rank 0/);
    expect(rank1.output()).toMatch(/the leader refused this rank: rank 1 loaded another model/);
  });

  test('rank 0 killed: rank 1 exits 1 saying the leader is gone', async () => {
    const { leader, rank1 } = await startPair();
    expect(leader.output()).toMatch(/HYBRIDSERVE_PIPELINE_TOKEN is not set/);
    expect(await tokensOf(leader.url, PROMPTS[2])).toHaveLength(12);
    leader.proc.kill('SIGKILL');
    expect(await exitWithin(rank1, 30_000)).toBe(1);
    expect(rank1.output()).toMatch(/pipeline rank 0 \(the leader\)/);
  });
});
