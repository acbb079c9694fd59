// bench:gateway — what the gateway costs on loopback. Two upstreams, each as its own process:
//   trivial: a bare node:http server answering every /v1/completions with a fixed JSON body at
//            once (isolates the proxy's own cost);
//   server:  a real `hybridserve serve --model synthetic:opt-tiny` (CPU engine, --max-tokens per
//            request, default 16; the trivial upstream ignores it), --server-threads engine threads
//            (default 1: on this 2-core machine the other core is left to the client and the gateway,
//            as in a cluster where the gateway does not share the serving pod's cores).
// For each, requests go (a) straight to the upstream and (b) through `hybridserve gateway
// --upstream URL` (a separate process; prefix routing, so it hashes every prompt). Printed: p50 /
// p99 latency of sequential requests and the added p50, then the throughput of a closed loop with
// --concurrency clients, direct vs gateway. Needs `npm run build`.
//   node dist/bench/gateway.js [--requests N] [--concurrency C] [--seconds S] [--rounds R] [--max-tokens N] [--server-threads N] [--json] [--skip-server]
import { spawn, type ChildProcess } from 'node:child_process';
import * as http from 'node:http';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const ROOT = join(import.meta.dirname ?? process.cwd(), '..', '..');
const MAIN = join(ROOT, 'dist', 'cli', 'main.js');

const TRIVIAL = `
const http = require('node:http');
const body = JSON.stringify({ id: 'cmpl-x', object: 'text_completion', created: 0, model: 'm', choices: [{ index: 0, text: 'ok', finish_reason: 'length' }], usage: { prompt_tokens: 8, completion_tokens: 1, total_tokens: 9 } });
http.createServer((req, res) => {
  if (req.url === '/v1/hybridserve/stats') { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"queueDepth":0}'); return; }
  req.resume();
  req.on('end', () => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(body); });
}).listen(Number(process.argv[1]), '127.0.0.1', () => console.log('listening'));`;

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

function start(args: string[], label: string): ChildProcess {
  const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT });
  let err = '';
  p.stderr?.on('data', (b: Buffer) => {
    err += b.toString();
  });
  p.on('exit', (code) => {
    if (code && code !== 0) console.error(`${label} exited ${code}: ${err.slice(-2000)}`);
  });
  return p;
}

async function waitHttp(url: string, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (r.status < 500) return;
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not answer within ${timeoutMs} ms`);
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
function post(port: number, body: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path: '/v1/completions',
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': body.length },
      },
      (res) => {
        res.resume();
        res.on('end', () =>
          res.statusCode === 200 ? resolve(Number(process.hrtime.bigint() - t0) / 1e6) : reject(new Error(`status ${res.statusCode}`)),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

let maxTokens = 16;
let serverThreads = 1;
function bodyFor(i: number): Buffer {
  // A chat-like prompt (~600 characters, 9 full blocks), different per conversation of 8.
  const prompt = `You are a helpful assistant. Conversation ${i % 8}. `.repeat(12);
  return Buffer.from(JSON.stringify({ model: 'synthetic:opt-tiny', prompt, max_tokens: maxTokens, temperature: 0 }));
}

const pct = (v: number[], p: number) => {
  const s = [...v].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

async function latency(port: number, n: number): Promise<{ p50: number; p99: number }> {
  for (let i = 0; i < Math.min(50, n); i++) await post(port, bodyFor(i)); // warm-up: JIT, keep-alive sockets
  const ms: number[] = [];
  for (let i = 0; i < n; i++) ms.push(await post(port, bodyFor(i)));
  return { p50: pct(ms, 50), p99: pct(ms, 99) };
}

async function throughput(port: number, concurrency: number, seconds: number): Promise<number> {
  let done = 0;
  const end = Date.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, c) => {
      for (let i = c; Date.now() < end; i += concurrency) {
        await post(port, bodyFor(i));
        done++;
      }
    }),
  );
  return done / seconds;
}

interface Row {
  upstream: string;
  directP50: number;
  gatewayP50: number;
  addedP50: number;
  directP99: number;
  gatewayP99: number;
  directRps: number;
  gatewayRps: number;
  rpsRatio: number;
}

const median = (v: number[]) => pct(v, 50);

async function measure(
  label: string,
  upstreamPort: number,
  o: { requests: number; concurrency: number; seconds: number; rounds: number },
): Promise<Row> {
  const gwPort = await freePort();
  const gw = start(
    [MAIN, 'gateway', '--upstream', `http://127.0.0.1:${upstreamPort}`, '--port', String(gwPort), '--host', '127.0.0.1'],
    'gateway',
  );
  try {
    await waitHttp(`http://127.0.0.1:${gwPort}/healthz`);
    // Alternate direct and gateway runs, `rounds` times, and keep medians: the machine is shared,
    // and drift must hit both sides alike.
    const d: { p50: number; p99: number }[] = [];
    const g: typeof d = [];
    const dR: number[] = [];
    const gR: number[] = [];
    for (let r = 0; r < o.rounds; r++) {
      d.push(await latency(upstreamPort, o.requests));
      g.push(await latency(gwPort, o.requests));
      dR.push(await throughput(upstreamPort, o.concurrency, o.seconds));
      gR.push(await throughput(gwPort, o.concurrency, o.seconds));
    }
    const dp50 = median(d.map((x) => x.p50));
    const gp50 = median(g.map((x) => x.p50));
    return {
      upstream: label,
      directP50: dp50,
      gatewayP50: gp50,
      addedP50: median(g.map((x, i) => x.p50 - d[i].p50)),
      directP99: median(d.map((x) => x.p99)),
      gatewayP99: median(g.map((x) => x.p99)),
      directRps: median(dR),
      gatewayRps: median(gR),
      rpsRatio: median(gR.map((x, i) => x / dR[i])),
    };
  } finally {
    gw.kill('SIGTERM');
  }
}

async function main(): Promise<void> {
  const { values: v } = parseArgs({
    options: {
      requests: { type: 'string', default: '1000' },
      concurrency: { type: 'string', default: '8' },
      seconds: { type: 'string', default: '4' },
      rounds: { type: 'string', default: '3' },
      'max-tokens': { type: 'string', default: '16' },
      'server-threads': { type: 'string', default: '1' },
      json: { type: 'boolean', default: false },
      'skip-server': { type: 'boolean', default: false },
    },
  });
  const o = { requests: Number(v.requests), concurrency: Number(v.concurrency), seconds: Number(v.seconds), rounds: Number(v.rounds) };
  maxTokens = Number(v['max-tokens']);
  serverThreads = Number(v['server-threads']);
  const rows: Row[] = [];
  const trivialPort = await freePort();
  const trivial = start(['-e', TRIVIAL, String(trivialPort)], 'trivial upstream');
  try {
    await waitHttp(`http://127.0.0.1:${trivialPort}/v1/hybridserve/stats`);
    rows.push(await measure('trivial', trivialPort, o));
  } finally {
    trivial.kill('SIGTERM');
  }
  if (!v['skip-server']) {
    const serverPort = await freePort();
    const server = start(
      [
        MAIN,
        'serve',
        '--model',
        'synthetic:opt-tiny',
        '--threads',
        String(serverThreads),
        '--port',
        String(serverPort),
        '--host',
        '127.0.0.1',
      ],
      'server',
    );
    try {
      await waitHttp(`http://127.0.0.1:${serverPort}/readyz`, 120_000);
      rows.push(await measure('server opt-tiny', serverPort, { ...o, requests: Math.min(o.requests, 200) }));
    } finally {
      server.kill('SIGTERM');
    }
  }
  agent.destroy();
  if (v.json) {
    console.log(JSON.stringify({ bench: 'gateway', ...o, rows }));
    return;
  }
  const f = (x: number) => x.toFixed(3);
  console.log(
    `gateway overhead on loopback (${o.requests} sequential requests for latency, ${o.concurrency} clients x ${o.seconds} s for throughput, max_tokens ${maxTokens}; medians of ${o.rounds} alternating rounds)`,
  );
  console.log('upstream          direct p50 ms  gateway p50 ms  added p50 ms  direct p99  gateway p99  direct req/s  gateway req/s  ratio');
  for (const r of rows) {
    console.log(
      `${r.upstream.padEnd(17)} ${f(r.directP50).padStart(13)} ${f(r.gatewayP50).padStart(15)} ${f(r.addedP50).padStart(13)} ${f(r.directP99).padStart(11)} ${f(r.gatewayP99).padStart(12)} ` +
        `${r.directRps.toFixed(0).padStart(13)} ${r.gatewayRps.toFixed(0).padStart(14)} ${r.rpsRatio.toFixed(3).padStart(6)}`,
    );
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
