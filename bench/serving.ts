// Serving benchmark (`npm run bench:serving -- ...`, after `npm run build`): starts the real server
// (`hybridserve serve`, any device, model SPEC and server flags) or drives one already running
// (--url), over HTTP, with N concurrent clients in a closed loop (--concurrency 1,16,128) or with
// Poisson arrivals at a sweep of rates (--rates 0.5,1,2,inf: an open loop). Prompts are token ids
// or text, of a fixed length (--prompt-tokens 512) or sampled (--prompt-tokens 256:768), optionally
// sharing a prefix (--shared-prefix N). Per level it prints vLLM's benchmark_serving figures
// (requests/s, output tokens/s, TTFT, TPOT, ITL and end-to-end latency: mean, median, p99; see
// bench/serving-workload.ts) and, from /v1/hybridserve/stats, what the engine did (steps, prefill and
// decode tokens, mean batch). --n K asks K samples per request (parallel sampling: output tokens count
// every sample; TTFT is the request's first chunk, TPOT and ITL those of its sample 0). A table on
// stdout, then ONE JSON line; progress on stderr.
//
//   node dist/bench/serving.js --model synthetic:opt-13b --device cuda --server-args '--max-batch 128 --host-memory 96GiB' \
//        --concurrency 128 --requests 128 --prompt-tokens 512 --max-tokens 32
//   node dist/bench/serving.js --quick          # CI: synthetic:opt-tiny on CPU, a few short requests
//
// Only node built-ins are imported here (and model/spec.ts, which has none), so the bench runs where
// a bare Node binary is unpacked.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { parseModelSpec } from '../model/spec.js';
import { agent, getJson, sendCompletion, type CompletionJob } from './serving-client.js';
import {
  makePrompts,
  poissonArrivals,
  serverDelta,
  summarise,
  type LevelSummary,
  type PromptSpec,
  type RequestSample,
  type ServerDelta,
  type StatsSnapshot,
} from './serving-workload.js';
import { runIfEntryPoint } from './run-main.js';

const OPTIONS = {
  model: { type: 'string' },
  device: { type: 'string' },
  url: { type: 'string' },
  'server-args': { type: 'string' },
  concurrency: { type: 'string' },
  rates: { type: 'string' },
  requests: { type: 'string' },
  'prompt-tokens': { type: 'string' },
  'prompt-kind': { type: 'string' },
  'shared-prefix': { type: 'string' },
  'max-tokens': { type: 'string' },
  n: { type: 'string' },
  'ignore-eos': { type: 'string' },
  stream: { type: 'string' },
  vocab: { type: 'string' },
  seed: { type: 'string' },
  warmup: { type: 'string' },
  quick: { type: 'boolean' },
  'start-timeout': { type: 'string' },
} as const;

export interface BenchConfig {
  model: string;
  device: string;
  url?: string;
  serverArgs: string[];
  mode: 'closed' | 'open';
  levels: number[];
  requests?: number;
  prompt: PromptSpec;
  maxTokens: number;
  /** Samples per request (the API's n). */
  n: number;
  ignoreEos: boolean;
  stream: boolean;
  seed: number;
  warmup: number;
  startTimeoutSeconds: number;
}

function int(v: string | undefined, name: string, min: number, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}, got '${v}'`);
  return n;
}

function bool(v: string | undefined, name: string, fallback: boolean): boolean {
  if (v === undefined) return fallback;
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw new Error(`--${name} must be true or false, got '${v}'`);
}

function list(v: string, name: string, allowInf: boolean): number[] {
  const xs = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => (allowInf && s === 'inf' ? Infinity : Number(s)));
  if (xs.length === 0 || xs.some((x) => !(x > 0)))
    throw new Error(`--${name} must be a comma-separated list of positive numbers${allowInf ? " (or 'inf')" : ''}, got '${v}'`);
  return xs;
}

/** The vocabulary prompts draw ids from: --vocab, else the synthetic preset's, else the checkpoint's config.json. */
function vocabOf(model: string, given: string | undefined): number {
  if (given !== undefined) return int(given, 'vocab', 5, 0);
  const spec = parseModelSpec(model);
  if (spec.kind === 'synthetic') return spec.config.vocabSize;
  try {
    const v = (JSON.parse(readFileSync(path.join(spec.dir, 'config.json'), 'utf8')) as { vocab_size?: unknown }).vocab_size;
    if (typeof v === 'number' && v > 4) return v;
  } catch {
    /* fall through */
  }
  throw new Error(`cannot tell the vocabulary size of ${model}: pass --vocab N (or --prompt-kind text)`);
}

/** Command line → configuration. Pure apart from reading a checkpoint's config.json for its vocabulary. */
export function parseBenchArgs(argv: string[]): BenchConfig {
  const v = parseArgs({ args: argv, options: OPTIONS, strict: true }).values;
  const quick = v.quick === true;
  const model = v.model ?? 'synthetic:opt-tiny';
  if (v.concurrency !== undefined && v.rates !== undefined)
    throw new Error('give --concurrency (closed loop) or --rates (open loop), not both');
  const mode = v.rates !== undefined ? 'open' : 'closed';
  const levels =
    v.rates !== undefined ? list(v.rates, 'rates', true) : list(v.concurrency ?? (quick ? '4' : '1,16,64'), 'concurrency', false);
  if (mode === 'closed' && levels.some((c) => !Number.isInteger(c))) throw new Error('--concurrency must list integers');
  const range = (v['prompt-tokens'] ?? (quick ? '16' : '512')).split(':');
  const minTokens = int(range[0], 'prompt-tokens', 1, 0);
  const maxTokens = range.length > 1 ? int(range[1], 'prompt-tokens', minTokens, 0) : minTokens;
  const kind = v['prompt-kind'] ?? 'ids';
  if (kind !== 'ids' && kind !== 'text') throw new Error(`--prompt-kind must be ids or text, got '${kind}'`);
  return {
    model,
    device: v.device ?? 'cpu',
    url: v.url,
    serverArgs: (v['server-args'] ?? '').split(/\s+/).filter(Boolean),
    mode,
    levels,
    requests: v.requests !== undefined ? int(v.requests, 'requests', 1, 0) : quick ? 8 : undefined,
    prompt: {
      minTokens,
      maxTokens,
      kind,
      sharedPrefix: int(v['shared-prefix'], 'shared-prefix', 0, 0),
      vocab: kind === 'ids' ? vocabOf(model, v.vocab) : 0,
    },
    maxTokens: int(v['max-tokens'], 'max-tokens', 1, quick ? 4 : 32),
    n: int(v.n, 'n', 1, 1),
    ignoreEos: bool(v['ignore-eos'], 'ignore-eos', true),
    stream: bool(v.stream, 'stream', true),
    seed: int(v.seed, 'seed', 0, 1),
    warmup: int(v.warmup, 'warmup', 0, 1),
    startTimeoutSeconds: int(v['start-timeout'], 'start-timeout', 1, 900),
  };
}

const log = (m: string): void => {
  process.stderr.write(`[bench:serving] ${m}\n`);
};

/** Starts `hybridserve serve` on a free loopback port; resolves once it listens. */
async function startServer(c: BenchConfig): Promise<{ url: string; child: ChildProcess }> {
  const main = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js');
  const argv = [main, 'serve', '--model', c.model, '--device', c.device, '--host', '127.0.0.1', '--port', '0', ...c.serverArgs];
  log(`starting: node ${argv.map((a) => path.relative(process.cwd(), a) || a).join(' ')}`);
  const child = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let tail = '';
  const keep = (d: Buffer) => {
    tail = (tail + d.toString()).slice(-4000);
  };
  // The server's warnings and errors go to our stderr as they come (its info lines only until it listens).
  child.stderr!.on('data', (d: Buffer) => {
    keep(d);
    process.stderr.write(d.toString().replace(/^(?=.)/gm, '[bench:serving] server: '));
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`server not listening after ${c.startTimeoutSeconds} s:\n${tail}`));
    }, c.startTimeoutSeconds * 1000);
    child.stdout!.on('data', (d: Buffer) => {
      keep(d);
      for (const line of d.toString().split('\n')) if (line.startsWith('[serve]')) log(`server: ${line.slice(8)}`);
      const m = /listening on (http:\/\/\S+)/.exec(tail);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening:\n${tail}`));
    });
  });
  return { url, child };
}

interface LevelResult extends LevelSummary {
  concurrency?: number;
  rate?: number;
  requests: number;
  server: ServerDelta | null;
  firstError?: string;
}

async function runLevel(url: string, c: BenchConfig, level: number, index: number): Promise<LevelResult> {
  const n = c.requests ?? (c.mode === 'closed' ? Math.max(4, 2 * level) : 64);
  const prompts = makePrompts(c.prompt, n, c.seed + 1000 * index);
  const job = (i: number): CompletionJob => ({
    model: c.model,
    prompt: prompts[i],
    maxTokens: c.maxTokens,
    n: c.n,
    stream: c.stream,
    ignoreEos: c.ignoreEos,
  });
  const before = await getJson<StatsSnapshot>(url, '/v1/hybridserve/stats');
  const samples: RequestSample[] = [];
  let done = 0;
  const progress = setInterval(() => log(`  ${done}/${n} requests done`), 5000);
  const t0 = performance.now();
  const one = async (i: number) => {
    samples.push(await sendCompletion(url, job(i)));
    done++;
  };
  try {
    if (c.mode === 'closed') {
      let next = 0;
      await Promise.all(
        Array.from({ length: Math.min(level, n) }, async () => {
          while (next < n) await one(next++);
        }),
      );
    } else {
      const at = poissonArrivals(n, level, c.seed + index);
      await Promise.all(
        at.map(async (s, i) => {
          const wait = t0 + s * 1000 - performance.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
          await one(i);
        }),
      );
    }
  } finally {
    clearInterval(progress);
  }
  const duration = (performance.now() - t0) / 1000;
  const after = await getJson<StatsSnapshot>(url, '/v1/hybridserve/stats');
  const summary = summarise(samples, duration);
  const firstError = samples.find((s) => !s.ok)?.error;
  return {
    ...(c.mode === 'closed' ? { concurrency: level } : { rate: level }),
    requests: n,
    ...summary,
    server: before && after ? serverDelta(before, after, duration, summary.total_output_tokens) : null,
    ...(firstError ? { firstError } : {}),
  };
}

function table(c: BenchConfig, rows: LevelResult[]): string {
  const f = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');
  const head = `${c.mode === 'closed' ? 'clients' : '   rate'}  done  fail   req/s   out tok/s  ttft p50  ttft p99  tpot p50  tpot p99  e2el p50  e2el p99   steps  batch`;
  const lines = rows.map((r) =>
    [
      (r.concurrency !== undefined ? String(r.concurrency) : r.rate === Infinity ? 'inf' : f(r.rate!, 2)).padStart(7),
      String(r.completed).padStart(5),
      String(r.failed).padStart(5),
      f(r.request_throughput, 2).padStart(7),
      f(r.output_throughput).padStart(11),
      ...[r.median_ttft_ms, r.p99_ttft_ms, r.median_tpot_ms, r.p99_tpot_ms, r.median_e2el_ms, r.p99_e2el_ms].map((x) =>
        `${f(x)}ms`.padStart(10),
      ),
      String(r.server?.engineSteps ?? '-').padStart(7),
      (r.server ? f(r.server.meanBatch) : '-').padStart(6),
    ].join(' '),
  );
  return [head, ...lines].join('\n');
}

async function main(): Promise<number> {
  const c = parseBenchArgs(process.argv.slice(2));
  const started = performance.now();
  const server = c.url ? null : await startServer(c);
  const url = c.url ?? server!.url;
  const serverStartSeconds = server ? (performance.now() - started) / 1000 : 0;
  try {
    log(`driving ${url} (${c.mode} loop, levels ${c.levels.join(', ')})`);
    for (let i = 0; i < c.warmup; i++) {
      const w = await sendCompletion(url, {
        model: c.model,
        prompt: makePrompts({ ...c.prompt, minTokens: 4, maxTokens: 4, sharedPrefix: 0 }, 1, 7)[0],
        maxTokens: 2,
        stream: c.stream,
        ignoreEos: true,
      });
      if (!w.ok) throw new Error(`warm-up request failed: ${w.error}`);
    }
    const rows: LevelResult[] = [];
    for (const [i, level] of c.levels.entries()) {
      log(`level ${c.mode === 'closed' ? `${level} clients` : level === Infinity ? 'inf (all at once)' : `${level} requests/s`}`);
      const r = await runLevel(url, c, level, i);
      log(
        `  ${r.completed} done, ${r.failed} failed${r.firstError ? ` (first: ${r.firstError})` : ''}, ${r.output_throughput.toFixed(1)} output tokens/s`,
      );
      rows.push(r);
    }
    const stats = await getJson<{ device?: string; actFraction?: number; pools?: Record<string, number> }>(url, '/v1/hybridserve/stats');
    console.log(
      `\nserving benchmark: ${c.model} on ${stats?.device ?? c.device}, prompts ${c.prompt.minTokens}${c.prompt.maxTokens > c.prompt.minTokens ? `..${c.prompt.maxTokens}` : ''} tokens (${c.prompt.kind}), ${c.maxTokens} output tokens${c.n > 1 ? ` × n = ${c.n} samples per request` : ''}, ${c.stream ? 'streaming' : 'not streaming'}\n`,
    );
    console.log(table(c, rows));
    console.log(
      JSON.stringify({
        bench: 'serving',
        model: c.model,
        device: stats?.device ?? c.device,
        serverArgs: c.serverArgs,
        mode: c.mode,
        stream: c.stream,
        promptTokens: { min: c.prompt.minTokens, max: c.prompt.maxTokens, kind: c.prompt.kind, sharedPrefix: c.prompt.sharedPrefix },
        maxTokens: c.maxTokens,
        n: c.n,
        ignoreEos: c.ignoreEos,
        actFraction: stats?.actFraction ?? null,
        pools: stats?.pools ?? null,
        serverStartSeconds,
        levels: rows.map((r) => ({ ...r, ...(r.rate === Infinity ? { rate: 'inf' } : {}) })),
      }),
    );
    return rows.every((r) => r.failed === 0) ? 0 : 2;
  } finally {
    agent.destroy();
    if (server) {
      server.child.kill('SIGTERM');
      await new Promise((r) => {
        if (server.child.exitCode !== null) r(null);
        else server.child.once('exit', r);
      });
    }
  }
}

runIfEntryPoint(import.meta.url, 'bench:serving', main);
