// Issue 12, acceptance 2: a bounded chaos run against the real `hybridserve serve` process
// (synthetic:opt-tiny, loopback): valid streams, refused streams, disconnects at random points, slow
// bodies, oversized and malformed requests, then SIGTERM with streams in flight. No crash, exit 0,
// every admitted request finished or cancelled, all cache blocks free, and no admission failure
// ever answered 200 followed by an in-band error. Needs `npm run build`.
import { expect, test } from '@jest/globals';
import { connect } from 'node:net';
import { runServe, stop } from './serve-process.js';

const MODEL = 'synthetic:opt-tiny';
const RUN_MS = 25_000;

/** A small deterministic PRNG, so a failure can be replayed with the printed seed. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

interface Tally {
  ok200: number;
  streamsDone: number;
  disconnected: number;
  refused: Record<number, number>;
  inBandErrors: string[];
  crashes: string[];
}

test('chaos: mixed traffic, then SIGTERM; the server survives, frees every block and exits 0', async () => {
  const seed = Number(process.env.HS_CHAOS_SEED ?? Date.now() % 100000);
  const rnd = prng(seed);
  const sp = await runServe([
    '--host-memory',
    '14MiB',
    '--max-queue',
    '2',
    '--max-batch',
    '2',
    '--body-limit',
    '256KiB',
    '--body-timeout',
    '2',
    '--headers-timeout',
    '2',
    '--shutdown-grace',
    '5',
    '--log-level',
    'warn',
  ]);
  const t: Tally = { ok200: 0, streamsDone: 0, disconnected: 0, refused: {}, inBandErrors: [], crashes: [] };
  const refuse = (s: number) => {
    t.refused[s] = (t.refused[s] ?? 0) + 1;
  };
  const url = `${sp.url}/v1/completions`;
  const json = { 'content-type': 'application/json' };

  /** Streams; reads everything, or aborts after `stopAfter` events. */
  async function stream(body: Record<string, unknown>, stopAfter?: number): Promise<void> {
    const ctl = new AbortController();
    const r = await fetch(url, {
      method: 'POST',
      headers: json,
      body: JSON.stringify({ model: MODEL, stream: true, ...body }),
      signal: ctl.signal,
    });
    if (r.status !== 200) {
      refuse(r.status);
      await r.text();
      return;
    }
    t.ok200++;
    const reader = r.body!.getReader();
    const dec = new TextDecoder();
    let text = '';
    let events = 0;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const chunk = dec.decode(value, { stream: true });
      text += chunk;
      events += (chunk.match(/^data: /gm) ?? []).length;
      if (stopAfter !== undefined && events >= stopAfter) {
        ctl.abort();
        t.disconnected++;
        return;
      }
    }
    if (/"error"\s*:/.test(text)) t.inBandErrors.push(text.slice(0, 300));
    if (!text.includes('data: [DONE]')) t.crashes.push(`stream without [DONE]: ${text.slice(-200)}`);
    t.streamsDone++;
  }

  async function plain(body: string | Buffer, headers: Record<string, string> = json): Promise<void> {
    const r = await fetch(url, { method: 'POST', headers, body });
    await r.text();
    if (r.status === 200) t.ok200++;
    else refuse(r.status);
  }

  function slowBody(): Promise<void> {
    return new Promise((resolve) => {
      const s = connect(sp.port, '127.0.0.1');
      s.on('error', () => {});
      s.write('POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{');
      const timer = setInterval(() => {
        if (!s.destroyed) s.write(' ');
      }, 400);
      s.once('close', () => {
        clearInterval(timer);
        resolve();
      });
      setTimeout(() => s.destroy(), 6000);
    });
  }

  const actions: Array<() => Promise<void>> = [
    () => stream({ prompt: 'Once upon a time', max_tokens: 4 + Math.floor(rnd() * 40), ignore_eos: true }),
    () => stream({ prompt: 'Once upon a time', max_tokens: 4 + Math.floor(rnd() * 40), ignore_eos: true }),
    () => stream({ prompt: 'Tell me', max_tokens: 64, ignore_eos: true }, 1 + Math.floor(rnd() * 12)),
    () => stream({ prompt: Array.from({ length: 1000 }, (_, i) => i + 1), max_tokens: 4 }), // larger than the pools: 400
    () => stream({ prompt: 'x'.repeat(70_000), max_tokens: 4 }), // over the character limit: 400
    () => plain(JSON.stringify({ model: MODEL, prompt: 'hi', max_tokens: 3 })),
    () => plain('{"model": "synthetic:opt-tiny", "prompt": '), // malformed JSON
    () => plain(Buffer.from([0x7b, 0xff, 0xfe, 0x7d])), // not UTF-8
    () => plain(JSON.stringify({ model: MODEL, prompt: 'hi', max_tokens: 'five' })), // wrong type
    () => plain(JSON.stringify({ model: MODEL, prompt: 'y '.repeat(200_000) })), // over the body limit: 413
    () => slowBody(),
  ];

  const deadline = Date.now() + RUN_MS;
  const worker = async () => {
    while (Date.now() < deadline) {
      const a = actions[Math.floor(rnd() * actions.length)];
      try {
        await a();
      } catch (err) {
        // An aborted fetch is ours; anything else (a reset, a refused connection) means trouble.
        if ((err as Error).name !== 'AbortError') t.crashes.push(`${(err as Error).name}: ${(err as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: 10 }, worker));
  expect(sp.alive()).toBe(true);

  // Quiet: nothing running or waiting, every block back in its pool.
  type Stats = { runningSequences: number; queueDepth: number; requestsTotal: number; pools: Record<string, number> };
  let stats!: Stats;
  const quietBy = Date.now() + 10_000;
  do {
    await new Promise((r) => setTimeout(r, 200));
    stats = (await (await fetch(`${sp.url}/v1/hybridserve/stats`)).json()) as Stats;
  } while ((stats.runningSequences > 0 || stats.queueDepth > 0) && Date.now() < quietBy);
  expect(stats.runningSequences).toBe(0);
  expect(stats.queueDepth).toBe(0);
  expect(stats.pools.kvBlocksFree).toBe(stats.pools.kvBlocksTotal);
  expect(stats.pools.actBlocksFree).toBe(stats.pools.actBlocksTotal);
  // Every admitted request (each 200) was served to the end or cancelled, and counted once.
  expect(stats.requestsTotal).toBe(t.ok200);
  const metrics = await (await fetch(`${sp.url}/metrics`)).text();
  expect(metrics).not.toMatch(/hybridserve_requests_total\{[^}]*outcome="error"[^}]*\} [1-9]/);

  // SIGTERM with streams in flight: they finish or are cancelled within the grace; exit 0.
  const inFlight = Array.from({ length: 3 }, () => stream({ prompt: 'last words', max_tokens: 32, ignore_eos: true }).catch(() => {}));
  await new Promise((r) => setTimeout(r, 200));
  const code = await stop(sp, 20_000);
  await Promise.all(inFlight);

  const summary = { seed, ...t, inBandErrors: t.inBandErrors.length, crashes: t.crashes.slice(0, 3) };
  expect(summary.crashes).toEqual([]);
  expect(t.inBandErrors).toEqual([]);
  expect(code).toBe(0);
  expect(t.streamsDone).toBeGreaterThan(5);
  expect(t.disconnected).toBeGreaterThan(0);
  expect(t.refused[400]).toBeGreaterThan(0);
  expect(t.refused[413]).toBeGreaterThan(0);
  process.stdout.write(`chaos seed ${seed}: ${JSON.stringify({ ...t, inBandErrors: t.inBandErrors.length })}\n`);
}, 110_000);
