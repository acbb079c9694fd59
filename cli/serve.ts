// `hybridserve serve`: the OpenAI-compatible server on one engine.
//   hybridserve serve [--model SPEC] [--host H] [--port N] [--act-fraction auto|0..1]
//                     [--host-memory SIZE] [--plan FILE] [--device cpu|cuda] [--api-key-file F]
// PORT / HOST / HYBRIDSERVE_PLAN_FILE / HYBRIDSERVE_API_KEYS are read from the environment.
import { readFileSync } from 'node:fs';
import { parseCli, parseIntOption, parseNumberOption, parseSize } from './args.js';
import { CliError } from './errors.js';
import { parseWeightDtype, type WeightDtype } from '../planning/model-profile.js';
import { loadApiKeys } from '../server/auth.js';
import { DEFAULT_LIMITS, type ServerLimits } from '../server/options.js';
import { parsePlan, type PlanFile } from '../server/plan-file.js';
import { openRuntime } from '../server/runtime.js';
import { closeOnSignals, listen } from '../server/server.js';
import { createServing, type Log } from '../server/serving.js';

const USAGE = `usage: hybridserve serve [options]

  --model SPEC             synthetic:<preset>[?seed=N], a checkpoint directory or pvc://claim/path
                           (default synthetic:opt-tiny)
  --host H                 address to listen on (default $HOST or 0.0.0.0)
  --port N                 port (default $PORT or 8000)
  --device cpu|cuda        engine device (default cpu)
  --act-fraction auto|X    share of cache blocks kept as activations, 0..1 (default auto)
  --host-memory SIZE       host memory for weights + cache, e.g. 64GiB (default: size the cache
                           for max-batch requests of max-total-tokens)
  --plan FILE              plan file (JSON) from the operator; reloaded live (default $HYBRIDSERVE_PLAN_FILE)
  --api-key-file F         require Bearer keys listed in F (also $HYBRIDSERVE_API_KEYS, comma-separated)
  --max-batch N            sequences per engine step (default 64)
  --max-prompt-tokens N    (default ${DEFAULT_LIMITS.maxPromptTokens})
  --max-total-tokens N     prompt + generated tokens per request (default ${DEFAULT_LIMITS.maxTotalTokens})
  --max-queue N            waiting requests before 429 (default ${DEFAULT_LIMITS.maxQueue})
  --body-limit SIZE        largest request body (default 1MiB)
  --request-timeout S      seconds a request may run (default ${DEFAULT_LIMITS.requestTimeoutMs / 1000})
  --shutdown-grace S       seconds in-flight requests get on SIGTERM (default ${DEFAULT_LIMITS.shutdownGraceMs / 1000})
  --threads N              CPU engine threads (default: all cores)
  --weight-dtype D         layer weight format: fp16 (default), fp8, int8 or int4 (cpu only for now)`;

const OPTIONS = {
  model: { type: 'string' }, host: { type: 'string' }, port: { type: 'string' }, device: { type: 'string' },
  'act-fraction': { type: 'string' }, 'host-memory': { type: 'string' }, plan: { type: 'string' },
  'api-key-file': { type: 'string' }, 'max-batch': { type: 'string' }, 'max-prompt-tokens': { type: 'string' },
  'max-total-tokens': { type: 'string' }, 'max-queue': { type: 'string' }, 'body-limit': { type: 'string' },
  'request-timeout': { type: 'string' }, 'shutdown-grace': { type: 'string' }, threads: { type: 'string' },
  'weight-dtype': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

export interface ServeConfig {
  model: string; host: string; port: number; device: 'cpu' | 'cuda'; actFraction: number | 'auto';
  hostMemoryBytes?: number; planFile?: string; apiKeyFile?: string; maxBatch: number; threads?: number;
  weightDtype?: WeightDtype;
  limits: ServerLimits;
}

/** Command line + environment → configuration. Pure apart from reading `env`. */
export function parseServeArgs(argv: string[], env: NodeJS.ProcessEnv): ServeConfig | 'help' {
  const v = parseCli(argv, OPTIONS, 'serve');
  if (v.help) return 'help';
  const device = v.device ?? 'cpu';
  if (device !== 'cpu' && device !== 'cuda') throw new CliError(`serve: --device must be cpu or cuda, got '${device}'`);
  const frac = v['act-fraction'] ?? 'auto';
  const limits: ServerLimits = {
    maxPromptTokens: parseIntOption(v['max-prompt-tokens'], '--max-prompt-tokens', 1, 1 << 20, DEFAULT_LIMITS.maxPromptTokens),
    maxTotalTokens: parseIntOption(v['max-total-tokens'], '--max-total-tokens', 2, 1 << 21, DEFAULT_LIMITS.maxTotalTokens),
    defaultMaxTokens: DEFAULT_LIMITS.defaultMaxTokens,
    bodyLimitBytes: v['body-limit'] ? parseSize(v['body-limit'], '--body-limit') : DEFAULT_LIMITS.bodyLimitBytes,
    maxQueue: parseIntOption(v['max-queue'], '--max-queue', 0, 1 << 20, DEFAULT_LIMITS.maxQueue),
    requestTimeoutMs: 1000 * parseNumberOption(v['request-timeout'], '--request-timeout', 0.001, 86400, DEFAULT_LIMITS.requestTimeoutMs / 1000),
    shutdownGraceMs: 1000 * parseNumberOption(v['shutdown-grace'], '--shutdown-grace', 0, 3600, DEFAULT_LIMITS.shutdownGraceMs / 1000),
  };
  return {
    model: v.model ?? 'synthetic:opt-tiny',
    host: v.host ?? env.HOST ?? '0.0.0.0',
    port: parseIntOption(v.port ?? env.PORT, '--port', 0, 65535, 8000),
    device,
    actFraction: frac === 'auto' ? 'auto' : parseNumberOption(frac, '--act-fraction', 0, 1, 0),
    hostMemoryBytes: v['host-memory'] ? parseSize(v['host-memory'], '--host-memory') : undefined,
    planFile: v.plan ?? (env.HYBRIDSERVE_PLAN_FILE || undefined),
    apiKeyFile: v['api-key-file'],
    maxBatch: parseIntOption(v['max-batch'], '--max-batch', 1, 4096, 64),
    threads: v.threads ? parseIntOption(v.threads, '--threads', 0, 1024, 0) : undefined,
    weightDtype: v['weight-dtype'] === undefined ? undefined : weightDtypeOption(v['weight-dtype']),
    limits,
  };
}

function weightDtypeOption(text: string): WeightDtype {
  try { return parseWeightDtype(text, '--weight-dtype'); } catch (err) { throw new CliError(`serve: ${(err as Error).message}`); }
}

function readStartPlan(file: string | undefined, log: Log): PlanFile | null {
  if (!file) return null;
  let text: string;
  try { text = readFileSync(file, 'utf8'); } catch (err) {
    log.warn(`plan file ${file} not readable at start (${(err as NodeJS.ErrnoException).code}); starting without it and watching for it`);
    return null;
  }
  const p = parsePlan(text);
  if (!p.ok) { log.warn(`plan file ${file} ignored at start: ${p.error}`); return null; }
  return p.plan;
}

export async function run(argv: string[]): Promise<number> {
  const cfg = parseServeArgs(argv, process.env);
  if (cfg === 'help') { console.log(USAGE); return 0; }
  const log: Log = {
    info: (m) => console.log(`[serve] ${m}`),
    warn: (m) => console.warn(`[serve] warning: ${m}`),
    error: (m) => console.error(`[serve] error: ${m}`),
  };
  let apiKeys: string[];
  try { apiKeys = loadApiKeys(process.env, cfg.apiKeyFile); } catch (err) {
    throw new CliError(`serve: cannot read --api-key-file ${cfg.apiKeyFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const plan = readStartPlan(cfg.planFile, log);
  let rt;
  try {
    rt = await openRuntime({
      model: cfg.model, device: cfg.device, actFraction: cfg.actFraction, hostMemoryBytes: cfg.hostMemoryBytes, plan,
      maxBatch: cfg.maxBatch, maxTotalTokens: cfg.limits.maxTotalTokens, threads: cfg.threads,
      weightDtype: cfg.weightDtype,
    });
  } catch (err) {
    throw new CliError(`serve: ${(err as Error).message}`, 1);
  }
  const info = rt.engine.info();
  log.info(`model ${rt.model.spec} (${rt.model.config.arch}, ${rt.model.config.numLayers} layers, hidden ${rt.model.config.hiddenSize}) on ${info.device} (${info.deviceName})`);
  log.info(`ACT fraction ${rt.engine.actFraction()}: ${rt.fractionReason}`);
  const pools = rt.engine.pools();
  log.info(`cache pools: ${pools.kvBlocksTotal} KV + ${pools.actBlocksTotal} ACT blocks of ${pools.blockTokens} tokens (${rt.poolsReason})`);
  if (apiKeys.length) log.info(`API keys required (${apiKeys.length} configured); /healthz, /readyz and /metrics stay open`);
  const serving = await createServing({
    modelName: rt.model.spec, modelAliases: [rt.model.name], device: info.device, engine: rt.engine, tokenizer: rt.tokenizer, maxPositions: rt.model.config.maxPositions,
    limits: cfg.limits, apiKeys, maxBatch: cfg.maxBatch, planFile: cfg.planFile, miniBatcher: rt.miniBatcher, log,
  });
  const closed = new Promise<void>((resolve) => {
    closeOnSignals(serving, async () => { await rt.engine.close(); resolve(); }, log);
  });
  const url = await listen(serving, { host: cfg.host, port: cfg.port });
  const shown = cfg.host === '0.0.0.0' || cfg.host === '::' ? url.replace(/\/\/[^:/]+|\/\/\[[^\]]+\]/, '//localhost') : url;
  console.log(`HybridServe listening on ${shown} (model ${rt.model.spec}; try: curl ${shown}/v1/models)`);
  await closed;
  return 0;
}
