// `hybridserve serve`: the OpenAI-compatible server on one engine.
//   hybridserve serve [--model SPEC] [--host H] [--port N] [--act-fraction auto|0..1]
//                     [--host-memory SIZE] [--plan FILE] [--device cpu|cuda] [--api-key-file F]
// PORT / HOST / HYBRIDSERVE_PLAN_FILE / HYBRIDSERVE_API_KEYS are read from the environment.
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { capThreads, parseCli, parseIntOption, parseNumberOption, parsePlacementFlags as placementFlags, parseSize } from './args.js';
import { CliError } from './errors.js';
import { PIPELINE_OPTIONS, PIPELINE_USAGE, parsePipelineArgs, type PipelineConfig } from './pipeline-args.js';
import { engineOptions, loadModel } from '../model/load.js';
import { runRank } from '../native/ts/engine.js';
import { listenRankHealth } from '../server/rank-server.js';
import { parseWeightDtype, type WeightDtype } from '../planning/model-profile.js';
import { ApiKeyError, loadApiKeys, parseEnvKeys } from '../server/auth.js';
import { CHARS_PER_TOKEN_LIMIT, DEFAULT_LIMITS, SEQUENCES_PER_REQUEST_CAP, type ServerLimits } from '../server/options.js';
import { startProgress } from './progress.js';
import { parsePlan, type PlanFile } from '../server/plan-file.js';
import { chooseStepTokens, type StartOptions } from '../planning/server-start.js';
import { openRuntime } from '../server/runtime.js';
import { chooseLanes, pipelineStagesOf } from '../server/scheduler/policy.js';
import type { NativeEngineInfo } from '../native/ts/addon-types.js';
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
  --gpu-memory SIZE        cap on the GPU memory the engine uses (cuda; default: the free memory)
  --resident-layers N      decoder layers kept in GPU memory, 0..layers; the rest stream from host
                           memory every step (cpu: accepted, all in memory)
  --gpu-cache-blocks N     cache blocks of the GPU tier (KV, read in place); the rest in host memory
                           (the cpu backend emulates the tier). Cuda without a plan file: the three
                           placement flags default to planning's start plan for this GPU
  --mini-batch-tokens N    split each engine step into mini-batches of at most N staged tokens (new +
                           host-tier cached), the size the GPU workspace was planned for (hybridserve
                           plan's miniBatchTokens; default 0: one mini-batch per step). A plan file's
                           residentLayers / gpuKvBlocks / miniBatchTokens win over these flags
  --max-step-tokens N      new tokens one engine step may compute (0: no cap): a burst of prompts
                           prefills over several steps of at most N tokens (a longer prompt runs
                           alone), and a cuda start plan reserves GPU workspace for N rows instead of
                           --max-batch prompts of the longest the window allows. Keep it ≥ --max-batch
                           so that decode steps stay whole. Default on cuda: the plan file's
                           maxStepTokens, else 16384 (or --max-batch if larger); on cpu 0
  --plan FILE              plan file (JSON) from the operator; reloaded live (default $HYBRIDSERVE_PLAN_FILE)
  --api-key-file F         require Bearer keys listed in F, one per line, whole-line # comments; re-read
                           when it changes (also $HYBRIDSERVE_API_KEYS, comma-separated)
  --max-batch N            sequences in the engine's steps at once, over all steps in flight (default 64)
  --steps-in-flight N      engine steps kept in flight at once, 1..the engine's maxStepsInFlight; the
                           running sequences split over them (default: one per pipeline stage of
                           --stages / --gpus / --world-size, else 1)
  --max-prompt-tokens N    (default: the context window less one)
  --max-total-tokens N     prompt + generated tokens per request (default: the model's context window)
  --max-prompt-chars N     longest prompt text before tokenising (default ${CHARS_PER_TOKEN_LIMIT} × max-prompt-tokens)
  --max-queue N            waiting requests before 429 (default ${DEFAULT_LIMITS.maxQueue})
  --max-sequences-per-request N
                           engine sequences one request may create, prompts × n, 1..${SEQUENCES_PER_REQUEST_CAP};
                           more is a 400 (default ${DEFAULT_LIMITS.maxSequencesPerRequest}, at most --max-queue)
  --body-limit SIZE        largest request body (default 1MiB)
  --request-timeout S      seconds a request may run (default ${DEFAULT_LIMITS.requestTimeoutMs / 1000})
  --headers-timeout S      seconds to receive a request's headers (default ${DEFAULT_LIMITS.headersTimeoutMs / 1000})
  --body-timeout S         seconds to receive a whole request body (default ${DEFAULT_LIMITS.bodyTimeoutMs / 1000})
  --max-connections N      open connections at once (default ${DEFAULT_LIMITS.maxConnections})
  --shutdown-grace S       seconds in-flight requests get on SIGTERM (default ${DEFAULT_LIMITS.shutdownGraceMs / 1000})
  --threads N              CPU engine threads, at most the cores (default: all cores)
  --weight-dtype D         layer weight format: fp16 (default), fp8, int8 or int4
  --prefix-caching on|off  reuse the cache of prompt blocks shared with earlier requests (default on)
  --log-level L            request log level: fatal, error, warn, info, debug, silent (default info)
${PIPELINE_USAGE}`;

const OPTIONS = {
  model: { type: 'string' },
  host: { type: 'string' },
  port: { type: 'string' },
  device: { type: 'string' },
  'act-fraction': { type: 'string' },
  'host-memory': { type: 'string' },
  'gpu-memory': { type: 'string' },
  'resident-layers': { type: 'string' },
  'gpu-cache-blocks': { type: 'string' },
  'mini-batch-tokens': { type: 'string' },
  'max-step-tokens': { type: 'string' },
  plan: { type: 'string' },
  'api-key-file': { type: 'string' },
  'max-batch': { type: 'string' },
  'max-prompt-tokens': { type: 'string' },
  'max-total-tokens': { type: 'string' },
  'max-queue': { type: 'string' },
  'max-sequences-per-request': { type: 'string' },
  'body-limit': { type: 'string' },
  'request-timeout': { type: 'string' },
  'shutdown-grace': { type: 'string' },
  threads: { type: 'string' },
  'max-prompt-chars': { type: 'string' },
  'headers-timeout': { type: 'string' },
  'body-timeout': { type: 'string' },
  'max-connections': { type: 'string' },
  'log-level': { type: 'string' },
  'weight-dtype': { type: 'string' },
  'prefix-caching': { type: 'string' },
  'steps-in-flight': { type: 'string' },
  ...PIPELINE_OPTIONS,
  help: { type: 'boolean', short: 'h' },
} as const;

/**
 * The parsed command line. The start-up decisions' inputs (--act-fraction, --host-memory,
 * --gpu-memory, --resident-layers, --gpu-cache-blocks, --mini-batch-tokens, --max-batch,
 * --weight-dtype) have planning/server-start.ts's types.
 */
export interface ServeConfig extends Pick<
  StartOptions,
  | 'actFraction'
  | 'hostMemoryBytes'
  | 'gpuMemoryBytes'
  | 'residentLayers'
  | 'gpuKvBlocks'
  | 'miniBatchTokens'
  | 'maxStepTokens'
  | 'maxBatch'
  | 'weightDtype'
> {
  model: string;
  host: string;
  port: number;
  device: 'cpu' | 'cuda';
  planFile?: string;
  apiKeyFile?: string;
  /** --steps-in-flight (checked against the engine's maxStepsInFlight once it is open); default per pipeline stage. */
  stepsInFlight?: number;
  threads?: number;
  prefixCaching: boolean;
  /** Pipeline stages (issue 15): --gpus / --stages, and rank / world size / leader address. */
  pipeline: PipelineConfig;
  /** Only what was set; the rest comes from the model's window and DEFAULT_LIMITS (resolveLimits). */
  limits: Partial<ServerLimits>;
  logLevel: string;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

const seconds = (text: string | undefined, what: string, min: number, max: number) =>
  text === undefined ? undefined : 1000 * parseNumberOption(text, what, min, max, 0);

/** Command line + environment → configuration. Pure apart from reading `env`. */
export function parseServeArgs(argv: string[], env: NodeJS.ProcessEnv): ServeConfig | 'help' {
  const v = parseCli(argv, OPTIONS, 'serve');
  if (v.help) return 'help';
  const device = v.device ?? 'cpu';
  if (device !== 'cpu' && device !== 'cuda') throw new CliError(`serve: --device must be cpu or cuda, got '${device}'`);
  const frac = v['act-fraction'] ?? 'auto';
  const int = (key: keyof typeof v, min: number, max: number) =>
    v[key] === undefined ? undefined : parseIntOption(v[key] as string, `--${key}`, min, max, 0);
  const limits: Partial<ServerLimits> = {
    maxPromptTokens: int('max-prompt-tokens', 1, 1 << 20),
    maxTotalTokens: int('max-total-tokens', 2, 1 << 21),
    maxPromptChars: int('max-prompt-chars', 1, 1 << 30),
    bodyLimitBytes: v['body-limit'] ? parseSize(v['body-limit'], '--body-limit') : undefined,
    maxQueue: int('max-queue', 0, 1 << 20),
    maxSequencesPerRequest: int('max-sequences-per-request', 1, SEQUENCES_PER_REQUEST_CAP),
    requestTimeoutMs: seconds(v['request-timeout'], '--request-timeout', 0.001, 86400),
    shutdownGraceMs: seconds(v['shutdown-grace'], '--shutdown-grace', 0, 3600),
    headersTimeoutMs: seconds(v['headers-timeout'], '--headers-timeout', 0.1, 3600),
    bodyTimeoutMs: seconds(v['body-timeout'], '--body-timeout', 0.1, 3600),
    maxConnections: int('max-connections', 1, 1 << 20),
  };
  for (const k of Object.keys(limits) as (keyof ServerLimits)[]) if (limits[k] === undefined) delete limits[k];
  const maxStep = v['max-step-tokens'] === undefined ? 0 : parseIntOption(v['max-step-tokens'], 'serve: --max-step-tokens', 0, 1 << 24, 0);
  const maxBatch = parseIntOption(v['max-batch'], '--max-batch', 1, 4096, 64);
  if (maxStep > 0 && maxStep < maxBatch)
    throw new CliError(
      `serve: --max-step-tokens ${maxStep} is below --max-batch ${maxBatch}: a decode step computes one token per sequence, so it could not hold the batch (use 0 for no cap)`,
    );
  const logLevel = v['log-level'] ?? 'info';
  if (!LOG_LEVELS.includes(logLevel)) throw new CliError(`serve: --log-level must be one of ${LOG_LEVELS.join(', ')}, got '${logLevel}'`);
  return {
    model: v.model ?? 'synthetic:opt-tiny',
    host: v.host ?? env.HOST ?? '0.0.0.0',
    // The error names where the bad value came from: a PORT set by the platform is not a flag.
    port: parseIntOption(v.port ?? env.PORT, v.port !== undefined ? '--port' : 'PORT', 0, 65535, 8000),
    device,
    actFraction: frac === 'auto' ? 'auto' : parseNumberOption(frac, '--act-fraction', 0, 1, 0),
    hostMemoryBytes: v['host-memory'] ? parseSize(v['host-memory'], '--host-memory') : undefined,
    gpuMemoryBytes: v['gpu-memory'] ? parseSize(v['gpu-memory'], '--gpu-memory') : undefined,
    ...placementFlags(v['resident-layers'], v['gpu-cache-blocks'], 'serve', v['mini-batch-tokens']),
    planFile: v.plan ?? (env.HYBRIDSERVE_PLAN_FILE || undefined),
    apiKeyFile: v['api-key-file'],
    maxBatch,
    ...(v['max-step-tokens'] !== undefined ? { maxStepTokens: maxStep } : {}),
    ...(v['steps-in-flight'] !== undefined
      ? { stepsInFlight: parseIntOption(v['steps-in-flight'], 'serve: --steps-in-flight', 1, 1024, 1) }
      : {}),
    threads: v.threads ? parseIntOption(v.threads, '--threads', 0, 1024, 0) : undefined,
    weightDtype: v['weight-dtype'] === undefined ? undefined : weightDtypeOption(v['weight-dtype']),
    prefixCaching: onOff(v['prefix-caching'], '--prefix-caching', true),
    pipeline: parsePipelineArgs(v, env, device, 'serve'),
    limits,
    logLevel,
  };
}

function onOff(text: string | undefined, what: string, fallback: boolean): boolean {
  if (text === undefined) return fallback;
  if (text === 'on' || text === 'true') return true;
  if (text === 'off' || text === 'false') return false;
  throw new CliError(`${what} must be on or off, got '${text}'`);
}

function weightDtypeOption(text: string): WeightDtype {
  try {
    return parseWeightDtype(text, '--weight-dtype');
  } catch (err) {
    throw new CliError(`serve: ${(err as Error).message}`);
  }
}

/**
 * The scheduler's lanes: --steps-in-flight within the engine's maxStepsInFlight (CliError, exit 2,
 * otherwise), else one per pipeline stage. Stages over processes: the leader's engine names only
 * its own stage, so the world size counts them.
 */
export function servingLanes(cfg: Pick<ServeConfig, 'stepsInFlight' | 'pipeline'>, info: NativeEngineInfo): number {
  const stages = cfg.pipeline.worldSize > 1 ? cfg.pipeline.worldSize : pipelineStagesOf(info.deviceName);
  try {
    return chooseLanes(info, stages, cfg.stepsInFlight);
  } catch (err) {
    throw new CliError(`serve: --steps-in-flight: ${(err as Error).message}`);
  }
}

/** Without a token any peer that reaches the ports may join the pipeline: say so (the operator always sets one). */
function warnIfOpen(p: PipelineConfig, log: Log): void {
  if (!p.token)
    log.warn('HYBRIDSERVE_PIPELINE_TOKEN is not set: any peer that reaches the rendezvous and data ports may join this pipeline');
}

function leaderOf(p: PipelineConfig): { rank: number; worldSize: number; leaderAddress: string; pipelineToken?: string } {
  return { rank: p.rank, worldSize: p.worldSize, leaderAddress: p.leaderAddress!, ...(p.token ? { pipelineToken: p.token } : {}) };
}

/**
 * A pipeline rank >= 1 (issue 15): loads the model, joins rank 0 at --leader-address and runs its
 * stage until rank 0 stops; meanwhile it answers /healthz only. Pool sizes come from rank 0.
 */
async function runPipelineRank(cfg: ServeConfig, log: Log): Promise<number> {
  const p = cfg.pipeline;
  const model = await loadModel(cfg.model).catch((err: Error) => {
    throw new CliError(`serve: ${err.message}`, 1);
  });
  warnIfOpen(p, log);
  const health = await listenRankHealth(cfg.host, cfg.port, p.rank);
  log.info(`pipeline rank ${p.rank} of ${p.worldSize}: joining rank 0 at ${p.leaderAddress}; /healthz on ${health.address}`);
  try {
    const opts = engineOptions(model, {
      device: cfg.device,
      tokenBudget: 1,
      kvBlocks: 0,
      actBlocks: 0,
      ...(cfg.gpuMemoryBytes !== undefined ? { gpuMemoryBytes: cfg.gpuMemoryBytes } : {}),
      weightDtype: cfg.weightDtype,
    });
    await runRank({ ...opts, ...leaderOf(p) });
    log.info(`pipeline rank ${p.rank}: rank 0 stopped`);
    return 0;
  } catch (err) {
    throw new CliError(`serve: pipeline rank ${p.rank}: ${(err as Error).message}`, 1);
  } finally {
    await health.close();
  }
}

function readStartPlan(file: string | undefined, log: Log): PlanFile | null {
  if (!file) return null;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    log.warn(`plan file ${file} not readable at start (${(err as NodeJS.ErrnoException).code}); starting without it and watching for it`);
    return null;
  }
  const p = parsePlan(text);
  if (!p.ok) {
    log.warn(`plan file ${file} ignored at start: ${p.error}`);
    return null;
  }
  return p.plan;
}

export async function run(argv: string[]): Promise<number> {
  const cfg = parseServeArgs(argv, process.env);
  if (cfg === 'help') {
    console.log(USAGE);
    return 0;
  }
  const log: Log = {
    info: (m) => console.log(`[serve] ${m}`),
    warn: (m) => console.warn(`[serve] warning: ${m}`),
    error: (m) => console.error(`[serve] error: ${m}`),
  };
  let apiKeys: string[];
  try {
    apiKeys = loadApiKeys(process.env, cfg.apiKeyFile);
  } catch (err) {
    // Keys were configured but none is usable: starting would serve without auth.
    if (err instanceof ApiKeyError) throw new CliError(`serve: ${err.message}; refusing to start without the keys`);
    throw err;
  }
  if (cfg.pipeline.rank > 0) return runPipelineRank(cfg, log);
  if (cfg.pipeline.worldSize > 1 && cfg.prefixCaching) log.info('prefix caching is off: stages run in several processes');
  if (cfg.pipeline.worldSize > 1) warnIfOpen(cfg.pipeline, log);
  const plan = readStartPlan(cfg.planFile, log);
  const stepCap = chooseStepTokens({ maxStepTokens: cfg.maxStepTokens, plan, device: cfg.device, maxBatch: cfg.maxBatch });
  const threads = capThreads(cfg.threads, availableParallelism());
  if (threads.note) log.warn(threads.note);
  let rt;
  try {
    rt = await openRuntime({
      model: cfg.model,
      device: cfg.device,
      actFraction: cfg.actFraction,
      hostMemoryBytes: cfg.hostMemoryBytes,
      gpuMemoryBytes: cfg.gpuMemoryBytes,
      residentLayers: cfg.residentLayers,
      gpuKvBlocks: cfg.gpuKvBlocks,
      miniBatchTokens: cfg.miniBatchTokens,
      ...(stepCap.maxStepTokens > 0 ? { maxStepTokens: stepCap.maxStepTokens } : {}),
      plan,
      maxBatch: cfg.maxBatch,
      maxTotalTokens: cfg.limits.maxTotalTokens,
      threads: threads.threads,
      weightDtype: cfg.weightDtype,
      // Over processes the other ranks hold their own pools: the core's copy-on-write of a shared
      // prompt block (prefix caching) would copy rank 0's layers only, so it stays off there.
      prefixCaching: cfg.prefixCaching && cfg.pipeline.worldSize === 1,
      ...(cfg.pipeline.gpus === 'auto' || cfg.pipeline.gpus > 1 ? { gpus: cfg.pipeline.gpus } : {}),
      ...(cfg.pipeline.stages > 1 ? { stages: cfg.pipeline.stages } : {}),
      ...(cfg.pipeline.worldSize > 1 ? leaderOf(cfg.pipeline) : {}),
      onProgress: startProgress(),
    });
  } catch (err) {
    throw new CliError(`serve: ${(err as Error).message}`, 1);
  }
  const info = rt.engine.info();
  let stepsInFlight: number;
  try {
    stepsInFlight = servingLanes(cfg, info);
  } catch (err) {
    await rt.engine.close();
    throw err;
  }
  log.info(
    `model ${rt.model.spec} (${rt.model.config.arch}, ${rt.model.config.numLayers} layers, hidden ${rt.model.config.hiddenSize}) on ${info.device} (${info.deviceName})`,
  );
  log.info(`ACT fraction ${rt.engine.actFraction()}: ${rt.fractionReason}`);
  const pools = rt.engine.pools();
  log.info(
    `cache pools: ${pools.kvBlocksTotal} KV + ${pools.actBlocksTotal} ACT blocks of ${pools.blockTokens} tokens (${rt.poolsReason})`,
  );
  log.info(`placement: ${rt.placementReason}`);
  if (rt.gpusReason) log.info(`GPUs: ${pipelineStagesOf(info.deviceName)} (${rt.gpusReason})`);
  if (stepCap.maxStepTokens > 0) log.info(`steps of at most ${stepCap.maxStepTokens} new tokens (${stepCap.source})`);
  log.info(`steps in flight: ${stepsInFlight}${cfg.stepsInFlight !== undefined ? ' (--steps-in-flight)' : ' (one per pipeline stage)'}`);
  if (apiKeys.length)
    log.info(
      `API keys required (${apiKeys.length} configured${cfg.apiKeyFile ? ', key file re-read when it changes' : ''}); /healthz, /readyz and /metrics stay open`,
    );
  let fatal: ((err: Error) => void) | null = null;
  const serving = await createServing({
    modelName: rt.model.spec,
    modelAliases: [rt.model.name],
    device: info.device,
    engine: rt.engine,
    tokenizer: rt.tokenizer,
    maxPositions: rt.model.config.maxPositions,
    prefixCaching: rt.prefixCaching,
    limits: cfg.limits,
    apiKeys,
    maxBatch: cfg.maxBatch,
    planFile: cfg.planFile,
    miniBatcher: rt.miniBatcher,
    ...(stepCap.maxStepTokens > 0 ? { maxStepTokens: stepCap.maxStepTokens } : {}),
    stepsInFlight,
    log,
    apiKeyFile: cfg.apiKeyFile ? { file: cfg.apiKeyFile, envKeys: parseEnvKeys(process.env.HYBRIDSERVE_API_KEYS ?? '') } : undefined,
    logger: { level: cfg.logLevel },
    onFatal: (err) => fatal?.(err),
  });
  const limits = serving.ctx.limits;
  log.info(
    `limits: context window ${limits.maxTotalTokens} tokens, prompts up to ${limits.maxPromptTokens} tokens / ${limits.maxPromptChars} characters`,
  );
  let url: string;
  try {
    url = await listen(serving, { host: cfg.host, port: cfg.port });
  } catch (err) {
    await serving.shutdown(0);
    await rt.engine.close();
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'EADDRINUSE' ? 'the address is already in use' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new CliError(`serve: cannot listen on ${cfg.host}:${cfg.port}: ${why}${code ? ` (${code})` : ''}`, 1);
  }
  const closed = new Promise<number>((resolve) => {
    closeOnSignals(
      serving,
      async () => {
        await rt.engine.close();
        resolve(0);
      },
      log,
    );
    fatal = (err) => {
      // Nothing can be served any more: exit non-zero so that the pod (and its group) restarts.
      log.error(`the engine cannot serve any more: ${err.message}; exiting`);
      void serving
        .shutdown(0)
        .then(() => closeWithin(rt.engine, ENGINE_CLOSE_AFTER_FATAL_MS))
        .finally(() => resolve(1));
    };
  });
  const shown = cfg.host === '0.0.0.0' || cfg.host === '::' ? url.replace(/\/\/[^:/]+|\/\/\[[^\]]+\]/, '//localhost') : url;
  console.log(`HybridServe listening on ${shown} (model ${rt.model.spec}; try: curl ${shown}/v1/models)`);
  return await closed;
}

/** After a fatal engine error the process exits anyway: closing the engine may not wait for ever. */
const ENGINE_CLOSE_AFTER_FATAL_MS = 10_000;

async function closeWithin(engine: { close(): Promise<void> }, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
    timer.unref();
  });
  await Promise.race([engine.close().catch(() => undefined), late]);
  clearTimeout(timer);
}
