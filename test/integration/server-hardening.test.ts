// Issue 12 (cases 1-5) and issue 13 (start failures) against the real `hybridserve serve` process
// on synthetic:opt-tiny, loopback only. Needs `npm run build` (dist/cli/main.js).
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CLI, runServe, stop, type ServeProcess } from './serve-process.js';

const MODEL = 'synthetic:opt-tiny';
const KEY = 'ab#secret';
const auth = { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' };
let sp: ServeProcess;

beforeAll(async () => {
  sp = await runServe(
    ['--host-memory', '14MiB', '--body-limit', '2MiB', '--body-timeout', '2', '--headers-timeout', '2', '--shutdown-grace', '3'],
    { HYBRIDSERVE_API_KEYS: KEY },
  );
}, 40_000);
afterAll(async () => {
  if (sp?.alive()) await stop(sp);
});

const post = (body: unknown, headers: Record<string, string> = auth, signal?: AbortSignal) =>
  fetch(`${sp.url}/v1/completions`, { method: 'POST', headers, body: JSON.stringify(body), signal });

async function healthy(): Promise<boolean> {
  const r = await fetch(`${sp.url}/healthz`).catch(() => null);
  return r?.status === 200;
}

/** Opens a socket that sends headers, then one body byte every `everyMs`; resolves when the server closes it. */
function slowBody(everyMs: number): { closed: Promise<number>; socket: Socket } {
  const started = Date.now();
  const socket = connect(sp.port, '127.0.0.1');
  socket.on('error', () => {});
  socket.write(
    `POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n`,
  );
  const timer = setInterval(() => {
    if (!socket.destroyed) socket.write('{');
  }, everyMs);
  const closed = new Promise<number>((resolve) =>
    socket.once('close', () => {
      clearInterval(timer);
      resolve(Date.now() - started);
    }),
  );
  return { closed, socket };
}

/** The server's own worst event-loop delay since the last scrape (prom-client resets it per scrape), in ms. */
async function loopLagMs(): Promise<number> {
  const text = await (await fetch(`${sp.url}/metrics`)).text();
  return 1000 * Number(/^nodejs_eventloop_lag_max_seconds (\S+)$/m.exec(text)?.[1] ?? NaN);
}

/** Worst /healthz round trip (ms) while `work` runs, polling every 5 ms. */
async function worstHealthz<T>(work: () => Promise<T>): Promise<{ worst: number; result: T }> {
  let worst = 0;
  let polling = true;
  const poller = (async () => {
    while (polling) {
      const t0 = performance.now();
      await fetch(`${sp.url}/healthz`);
      worst = Math.max(worst, performance.now() - t0);
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  await new Promise((r) => setTimeout(r, 50));
  const result = await work();
  polling = false;
  await poller;
  return { worst, result };
}

/**
 * /healthz must answer in under 50 ms, and the server's event loop must not stall
 * (nodejs_eventloop_lag_max_seconds under 100 ms; an inline BPE of the 60K-character prompt stalls
 * it ~300 ms, every time). Both also measure this machine's load (parallel test files, other
 * processes on few cores), which comes and goes: up to 3 attempts, one meeting both bounds passes.
 * If none does and idle baselines showed a loaded machine, only a blocked loop (a /healthz round
 * trip over 250 ms in the best attempt) fails.
 */
async function expectResponsive<T>(work: () => Promise<T>): Promise<T> {
  const idle = async () => (await worstHealthz(() => new Promise((r) => setTimeout(r, 300)))).worst;
  let best = Infinity;
  let loaded = false;
  let result!: T;
  for (let attempt = 0; attempt < 3; attempt++) {
    await loopLagMs();
    const before = await idle();
    const idleLag = await loopLagMs();
    const run = await worstHealthz(work);
    const lag = await loopLagMs();
    result = run.result;
    if (run.worst < 50 && lag < 100) return result;
    best = Math.min(best, run.worst);
    loaded ||= before >= 25 || idleLag >= 25 || (await idle()) >= 25;
    process.stdout.write(
      `attempt ${attempt + 1}: /healthz worst ${run.worst.toFixed(0)} ms, loop lag ${lag.toFixed(0)} ms (idle ${before.toFixed(0)} ms, idle lag ${idleLag.toFixed(0)} ms)\n`,
    );
  }
  if (!loaded) expect(best).toBeLessThan(50);
  expect(best).toBeLessThan(250);
  return result;
}

describe('case 1: a refused stream gets its status before any byte, the server stays up', () => {
  test('a prompt larger than the pools, streamed: 400 with the OpenAI error shape, never 200', async () => {
    const prompt = Array.from({ length: 1000 }, (_, i) => ((i * 7) % 50000) + 1);
    const ctl = new AbortController();
    const t = setTimeout(() => ctl.abort(), 3000);
    const r = await post({ model: MODEL, prompt, stream: true, max_tokens: 4 }, auth, ctl.signal);
    clearTimeout(t);
    expect(r.status).toBe(400);
    expect(((await r.json()) as { error: { code: string; type: string } }).error).toMatchObject({
      type: 'invalid_request_error',
      code: 'context_length_exceeded',
    });
    // The client goes away; the close listener must not crash the process (before: TypeError, exit 1).
    await new Promise((r2) => setTimeout(r2, 500));
    expect(sp.alive()).toBe(true);
    expect(await healthy()).toBe(true);
  });
});

describe('case 2 / acceptance 3: a 1 MiB one-word prompt', () => {
  test('is answered (400) in under 1 s while /healthz keeps answering in under 50 ms', async () => {
    const { r, ms } = await expectResponsive(async () => {
      const t0 = performance.now();
      const res = await post({ model: MODEL, prompt: 'a'.repeat(1 << 20), max_tokens: 1 });
      return { r: res, ms: performance.now() - t0 };
    });
    expect(r.status).toBe(400);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe('context_length_exceeded');
    expect(ms).toBeLessThan(1000);
  });
});

test('a long prompt under the character limit is tokenised off the event loop: /healthz stays under 50 ms', async () => {
  let seed = 7;
  const letters = Array.from({ length: 60_000 }, () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return String.fromCharCode(97 + (seed % 26));
  }).join('');
  const r = await expectResponsive(() => post({ model: MODEL, prompt: letters, max_tokens: 1 }));
  // ~20K tokens: more than this server's 2,047-token prompts, found out by tokenising.
  expect(r.status).toBe(400);
  expect(((await r.json()) as { error: { message: string } }).error.message).toMatch(/tokens; this server accepts at most 2047/);
}, 20_000);

describe('case 3: API keys', () => {
  test('# is part of a key in HYBRIDSERVE_API_KEYS: the whole key passes, its prefix does not', async () => {
    expect((await post({ model: MODEL, prompt: 'hi', max_tokens: 1 })).status).toBe(200);
    expect(
      (await post({ model: MODEL, prompt: 'hi', max_tokens: 1 }, { authorization: 'Bearer ab', 'content-type': 'application/json' }))
        .status,
    ).toBe(401);
  });

  test.each([
    [
      'a key file with only a comment',
      (dir: string) => {
        writeFileSync(path.join(dir, 'keys'), '#sk-commented\n\n');
        return { args: ['--api-key-file', path.join(dir, 'keys')], env: {} };
      },
    ],
    [
      'an empty key file',
      (dir: string) => {
        writeFileSync(path.join(dir, 'keys'), '');
        return { args: ['--api-key-file', path.join(dir, 'keys')], env: {} };
      },
    ],
    ["HYBRIDSERVE_API_KEYS=' , '", () => ({ args: [], env: { HYBRIDSERVE_API_KEYS: ' , ' } })],
    ["HYBRIDSERVE_API_KEYS='' (an empty Kubernetes Secret)", () => ({ args: [], env: { HYBRIDSERVE_API_KEYS: '' } })],
  ])(
    '%s: start-up error, non-zero exit, one line, no open server',
    async (_name, setup) => {
      const dir = mkdtempSync(path.join(tmpdir(), 'hs-keys-'));
      try {
        const { args, env } = setup(dir);
        const p = await runServe(args, env, { waitListening: false });
        const code = await p.exited;
        expect(code).not.toBe(0);
        expect(p.output()).toMatch(/^hybridserve: serve: .*(holds no key).*refusing to start/m);
        expect(p.output()).not.toMatch(/listening/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    20_000,
  );
});

describe('case 4: slow request bodies', () => {
  test('a body trickling in is cut off by the body timeout; 40 of them do not pile up', async () => {
    const conns = Array.from({ length: 40 }, () => slowBody(500));
    const times = await Promise.race([
      Promise.all(conns.map((c) => c.closed)),
      new Promise<number[]>((r) => setTimeout(() => r([]), 10_000)),
    ]);
    for (const c of conns) c.socket.destroy();
    expect(times).toHaveLength(40);
    expect(Math.max(...times)).toBeLessThan(6000);
    expect(await healthy()).toBe(true);
  }, 20_000);
});

describe('case 4: slow headers and the connection cap', () => {
  test('headers trickling in are cut off by the headers timeout', async () => {
    const started = Date.now();
    const socket = connect(sp.port, '127.0.0.1');
    socket.on('error', () => {});
    socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
    const timer = setInterval(() => {
      if (!socket.destroyed) socket.write('X-Slow: 1\r\n');
    }, 300);
    const ms = await Promise.race([
      new Promise<number>((r) => socket.once('close', () => r(Date.now() - started))),
      new Promise<number>((r) => setTimeout(() => r(Infinity), 8000)),
    ]);
    clearInterval(timer);
    socket.destroy();
    expect(ms).toBeLessThan(5000);
  }, 15_000);

  test('beyond --max-connections new sockets are closed at once', async () => {
    const capped = await runServe(['--max-connections', '3']);
    let closedByServer = 0;
    const sockets = Array.from({ length: 6 }, () => {
      const sock = connect(capped.port, '127.0.0.1');
      sock.on('error', () => {});
      sock.once('close', () => {
        closedByServer++;
      });
      return sock;
    });
    await new Promise((r) => setTimeout(r, 800));
    expect(closedByServer).toBe(3);
    for (const sock of sockets) sock.destroy();
    expect(await stop(capped)).toBe(0);
  }, 40_000);
});

describe('case 5: one structured log line per request, never the prompt or the key', () => {
  test('id, status, tokens and timings; no prompt text, no key', async () => {
    const r = await post({ model: MODEL, prompt: 'PROMPT-SECRET-TEXT says hello', max_tokens: 3 });
    expect(r.status).toBe(200);
    await new Promise((r2) => setTimeout(r2, 200));
    const lines = sp
      .logLines()
      .filter((l) => l.msg === 'request' && l.path === '/v1/completions' && l.status === 200 && l.completionTokens === 3);
    expect(lines.length).toBeGreaterThan(0);
    const line = lines[lines.length - 1];
    expect(line).toMatchObject({ method: 'POST', outcome: 'ok' });
    expect(typeof line.reqId).toBe('string');
    expect(line.promptTokens).toBeGreaterThan(0);
    expect(typeof line.ms).toBe('number');
    expect(sp.logLines().filter((l) => l.msg === 'request' && l.reqId === line.reqId)).toHaveLength(1);
    expect(sp.output()).not.toContain('PROMPT-SECRET-TEXT');
    expect(sp.output()).not.toContain(KEY);
  });
});

describe('start failures (issue 13)', () => {
  test('hybridserve --version prints the package version', () => {
    const version = (JSON.parse(readFileSync(path.resolve(path.dirname(CLI), '../../package.json'), 'utf8')) as { version: string })
      .version;
    const r = spawnSync(process.execPath, [CLI, '--version'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(version);
  });

  test('a taken port: non-zero exit with a one-line message', async () => {
    const p = await runServe([], {}, { waitListening: false, port: sp.port });
    const code = await p.exited;
    expect(code).toBe(1);
    expect(p.output()).toMatch(/^hybridserve: serve: cannot listen on 127\.0\.0\.1:\d+: the address is already in use \(EADDRINUSE\)$/m);
  }, 30_000);

  test('--gpu-cache-blocks and --resident-layers apply on cpu: the pools carry the emulated tier, the log says where they came from', async () => {
    const p = await runServe(['--gpu-cache-blocks', '5', '--resident-layers', '0', '--host-memory', '14MiB'], {});
    try {
      const stats = (await (await fetch(`${p.url}/v1/hybridserve/stats`)).json()) as { pools: Record<string, number> };
      expect(stats.pools.gpuKvBlocksTotal).toBe(5);
      expect(p.output()).toMatch(
        /placement: resident layers 0, GPU cache tier 5 blocks \(emulated on cpu\), one mini-batch per step \(resident layers: flag; GPU cache blocks: flag; mini-batch tokens: engine default\)/,
      );
    } finally {
      await stop(p);
    }
  }, 40_000);

  test('more resident layers than the model has: non-zero exit, one line naming the flag, no server', async () => {
    const p = await runServe(['--resident-layers', '99'], {}, { waitListening: false });
    expect(await p.exited).toBe(1);
    expect(p.output()).toMatch(/^hybridserve: serve: --resident-layers must be an integer between 0 and 2, got 99$/m);
    expect(p.output()).not.toMatch(/listening/);
  }, 30_000);
});

describe('the key file is re-read when Kubernetes swaps the Secret symlink', () => {
  test('new key accepted, old refused; zero keys after a reload: fail closed and log an error', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'hs-secret-'));
    const version = (name: string, content: string) => {
      mkdirSync(path.join(dir, name));
      writeFileSync(path.join(dir, name, 'keys'), content);
      symlinkSync(name, path.join(dir, '..data_tmp'));
      renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data')); // atomic, as the kubelet does
    };
    version('..v1', 'k-one\n');
    symlinkSync('..data/keys', path.join(dir, 'keys'));
    const p = await runServe(['--api-key-file', path.join(dir, 'keys')]);
    const status = async (key: string) => (await fetch(`${p.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } })).status;
    const eventually = async (key: string, want: number) => {
      const deadline = Date.now() + 5000;
      while ((await status(key)) !== want) {
        if (Date.now() > deadline) throw new Error(`key ${key} never gave ${want}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    try {
      expect(await status('k-one')).toBe(200);
      version('..v2', '# rotated\nk-two\n');
      await eventually('k-two', 200);
      expect(await status('k-one')).toBe(401);
      version('..v3', '');
      await eventually('k-two', 401);
      expect(await status('')).toBe(401);
      expect((await fetch(`${p.url}/v1/models`)).status).toBe(401);
      expect(p.output()).toMatch(/API key file .* holds no key; refusing requests/);
      expect((await fetch(`${p.url}/healthz`)).status).toBe(200);
      expect(p.output()).not.toContain('k-two');
      expect(await stop(p)).toBe(0);
    } finally {
      if (p.alive()) p.proc.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  }, 40_000);
});

describe('SIGTERM with a slow connection open (case 4)', () => {
  test('exits 0 soon after the grace period, never 1', async () => {
    const slow = slowBody(1000);
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    const code = await stop(sp, 15_000);
    slow.socket.destroy();
    expect(code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(8000);
  }, 20_000);
});
