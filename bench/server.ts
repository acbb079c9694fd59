// Server benchmark (`npm run bench:server`, after `npm run build`): starts `hybridserve serve` in a
// child process on CPU and drives it with closed-loop streaming clients at 1, 16 and 64 concurrent
// streams. Reports requests/s, output tokens/s, p50/p99 time to first token (TTFT) and time per
// output token (TPOT) as the client sees them, and the server's own overhead per generated token:
// the main thread's time while there is work but no engine step in flight (step results, end and
// length decisions, first tokens, expiry, admission, HTTP work that lands between steps) / tokens,
// against the engine's own step time per token (NativeCounters.wallSeconds). The addon's hand-off
// (time awaiting a step beyond the engine's own wall time) is shown apart: it is neither server
// code nor engine compute. So is the token delivery (detokenizing, SSE chunks, socket writes) that
// the scheduler does while the next step computes ("overlap/tok"): it costs CPU, not engine time.
// Prints a table and one JSON line.
//   node dist/bench/server.js [--model SPEC] [--levels 1,16,64] [--requests N] [--max-tokens N] [--prompt-words N]
//     [--threads N] [--server-node-args '--cpu-prof --cpu-prof-dir=DIR']
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { percentile } from './serving-workload.js';

interface Sample {
  ttft: number;
  tpot: number;
  tokens: number;
}
interface ServerTotals {
  steps: number;
  tokens: number;
  busySeconds: number;
  engineSeconds: number;
  awaitSeconds: number;
  overlapSeconds: number;
}

const args = parseArgs({
  options: {
    model: { type: 'string', default: 'synthetic:opt-125m' },
    levels: { type: 'string', default: '1,16,64' },
    requests: { type: 'string' }, // per level; default 2 × concurrency (at least 4)
    'max-tokens': { type: 'string', default: '32' },
    'prompt-words': { type: 'string', default: '24' },
    threads: { type: 'string' },
    // Extra node flags for the server process, e.g. '--cpu-prof --cpu-prof-dir=/tmp/prof' (NODE_OPTIONS refuses --cpu-prof).
    'server-node-args': { type: 'string' },
  },
}).values;

const quantile = percentile;

async function startServer(): Promise<{ url: string; child: ChildProcess }> {
  const main = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js');
  const nodeArgs = args['server-node-args'] ? args['server-node-args'].split(/\s+/).filter(Boolean) : [];
  const argv = [
    ...nodeArgs,
    main,
    'serve',
    '--model',
    args.model!,
    '--host',
    '127.0.0.1',
    '--port',
    '0',
    '--max-batch',
    '64',
    '--act-fraction',
    '0',
  ];
  if (args.threads) argv.push('--threads', args.threads);
  const child = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    child.on('exit', (code) => reject(new Error(`server exited with ${code} before listening:\n${out}`)));
  });
  child.stdout!.resume();
  return { url, child };
}

async function oneStream(url: string, model: string, prompt: string, maxTokens: number): Promise<Sample> {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model,
      prompt,
      max_tokens: maxTokens,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
      ignore_eos: true,
    }),
  });
  if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let first = 0;
  let last = 0;
  let tokens = 0;
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
      const j = JSON.parse(ev.slice(6)) as { choices: Array<{ text: string }>; usage?: { completion_tokens: number } };
      if (j.usage) tokens = j.usage.completion_tokens;
      else if (j.choices[0]?.text) {
        const now = performance.now();
        if (!first) first = now;
        last = now;
      }
    }
  }
  return { ttft: (first - t0) / 1000, tpot: tokens > 1 ? (last - first) / 1000 / (tokens - 1) : 0, tokens };
}

async function serverTotals(url: string): Promise<ServerTotals> {
  const s = (await (await fetch(`${url}/v1/hybridserve/stats`)).json()) as { server: ServerTotals };
  return s.server;
}

async function level(url: string, model: string, concurrency: number, requests: number, maxTokens: number, promptWords: number) {
  const before = await serverTotals(url);
  let next = 0;
  const samples: Sample[] = [];
  const t0 = performance.now();
  const worker = async (w: number) => {
    while (next < requests) {
      const i = next++;
      const prompt = `Client ${w} request ${i}: ` + 'the cache keeps activations and keys '.repeat(Math.ceil(promptWords / 6));
      samples.push(await oneStream(url, model, prompt, maxTokens));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
  const wall = (performance.now() - t0) / 1000;
  const after = await serverTotals(url);
  const tokens = after.tokens - before.tokens;
  const engine = after.engineSeconds - before.engineSeconds;
  const busy = after.busySeconds - before.busySeconds;
  const awaited = after.awaitSeconds - before.awaitSeconds;
  const steps = after.steps - before.steps;
  const overlap = after.overlapSeconds - before.overlapSeconds;
  return {
    concurrency,
    requests,
    seconds: wall,
    requestsPerSecond: requests / wall,
    outputTokensPerSecond: samples.reduce((n, s) => n + s.tokens, 0) / wall,
    ttftP50: quantile(
      samples.map((s) => s.ttft),
      0.5,
    ),
    ttftP99: quantile(
      samples.map((s) => s.ttft),
      0.99,
    ),
    tpotP50: quantile(
      samples.map((s) => s.tpot),
      0.5,
    ),
    tpotP99: quantile(
      samples.map((s) => s.tpot),
      0.99,
    ),
    meanBatch: tokens / Math.max(1, steps),
    engineSecondsPerToken: engine / Math.max(1, tokens),
    overheadSecondsPerToken: (busy - awaited) / Math.max(1, tokens),
    overheadRatio: (busy - awaited) / Math.max(1e-12, engine),
    addonHandoffSecondsPerToken: (awaited - engine - overlap) / Math.max(1, tokens),
    overlappedDeliverySecondsPerToken: overlap / Math.max(1, tokens),
  };
}

async function main(): Promise<void> {
  const { url, child } = await startServer();
  const model = args.model!;
  const maxTokens = Number(args['max-tokens']);
  const promptWords = Number(args['prompt-words']);
  try {
    await oneStream(url, model, 'warm up', 4);
    const rows = [];
    for (const c of args.levels!.split(',').map(Number)) {
      const n = args.requests ? Number(args.requests) : Math.max(4, 2 * c);
      rows.push(await level(url, model, c, n, maxTokens, promptWords));
    }
    const ms = (s: number) => (s * 1000).toFixed(1).padStart(9);
    console.log(`\nserver benchmark: ${model} on CPU, ${maxTokens} output tokens per request, streaming (SSE)\n`);
    console.log(
      'streams  requests   req/s   tok/s  ttft p50  ttft p99  tpot p50  tpot p99  batch  engine/tok  handoff/tok  overlap/tok  overhead/tok  overhead',
    );
    for (const r of rows) {
      console.log(
        `${String(r.concurrency).padStart(7)}  ${String(r.requests).padStart(8)}  ${r.requestsPerSecond.toFixed(2).padStart(6)}  ${r.outputTokensPerSecond.toFixed(0).padStart(6)}` +
          `${ms(r.ttftP50)}ms${ms(r.ttftP99)}ms${ms(r.tpotP50)}ms${ms(r.tpotP99)}ms  ${r.meanBatch.toFixed(1).padStart(5)}` +
          `  ${(r.engineSecondsPerToken * 1e6).toFixed(0).padStart(8)}µs  ${(r.addonHandoffSecondsPerToken * 1e6).toFixed(0).padStart(9)}µs  ${(r.overlappedDeliverySecondsPerToken * 1e6).toFixed(1).padStart(9)}µs  ${(r.overheadSecondsPerToken * 1e6).toFixed(1).padStart(10)}µs  ${(r.overheadRatio * 100).toFixed(1).padStart(7)}%`,
      );
    }
    const at64 = rows.find((r) => r.concurrency === 64);
    if (at64) console.log(`\noverhead at 64 streams: ${(at64.overheadRatio * 100).toFixed(1)}% of engine step time (target <= 5%)`);
    console.log(JSON.stringify({ bench: 'server', model, device: 'cpu', maxTokens, levels: rows }));
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
