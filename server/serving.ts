// Wires an engine and a tokenizer into a running service: scheduler, metrics, plan file, app.
// Used by server/server.ts (which listens) and by tests and the benchmark (which may listen on port 0).
import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import type { NativeEngine } from '../native/ts/addon-types.js';
import { buildApp } from './app.js';
import { keySet, watchKeyFile, type KeyFileWatcher } from './auth.js';
import { applyPlan, type ServingContext } from './context.js';
import { createMetrics } from './metrics.js';
import { resolveLimits, type ServerLimits } from './options.js';
import { watchPlanFile, type PlanWatcher } from './plan-file.js';
import type { ServerTokenizer } from './request.js';
import { Scheduler } from './scheduler/scheduler.js';
import type { MiniBatcher } from './scheduler/policy.js';

export interface Log {
  info(m: string): void;
  warn(m: string): void;
  error(m: string): void;
}

export interface ServingOptions {
  modelName: string;
  modelAliases?: string[];
  device: string;
  engine: NativeEngine;
  tokenizer: ServerTokenizer;
  maxPositions: number;
  /** Whether the engine was opened with prefix caching (server/runtime.ts Runtime.prefixCaching; default false, as the engine's). */
  prefixCaching?: boolean;
  limits?: Partial<ServerLimits>;
  apiKeys?: string[];
  /** A key file to follow: re-read on change (Kubernetes Secret symlink swaps included); envKeys stay valid. */
  apiKeyFile?: { file: string; envKeys: string[]; pollMs?: number };
  maxBatch?: number;
  planFile?: string;
  planPollMs?: number;
  miniBatcher?: MiniBatcher;
  /** New tokens one engine step may compute (`serve --max-step-tokens`; 0 or absent: no cap). */
  maxStepTokens?: number;
  /** Engine steps kept in flight (scheduler lanes; default: one per pipeline stage, see scheduler/policy.ts chooseLanes). */
  stepsInFlight?: number;
  logger?: FastifyServerOptions['logger'];
  processMetrics?: boolean;
  log?: Log;
  /** The engine can never step again (HS_PEER_LOST): health fails and requests get 503 from then on; the caller should exit. */
  onFatal?: (err: Error) => void;
  /** CORS origins (default: HYBRIDSERVE_CORS_ORIGINS, comma-separated; none = CORS off). */
  corsOrigins?: string[];
}

export interface Serving {
  app: FastifyInstance;
  ctx: ServingContext;
  /** Readiness fails, new requests get 503, in-flight ones get `graceMs` to finish; then the app closes. */
  shutdown(graceMs?: number): Promise<void>;
}

const quiet: Log = { info: () => {}, warn: () => {}, error: () => {} };

export async function createServing(o: ServingOptions): Promise<Serving> {
  const log = o.log ?? quiet;
  const limits = resolveLimits(o.limits ?? {}, o.maxPositions);
  const metrics = createMetrics({ processMetrics: o.processMetrics, modelName: o.modelName });
  const scheduler = new Scheduler(
    o.engine,
    {
      maxBatch: o.maxBatch ?? 64,
      maxQueue: limits.maxQueue,
      eosTokenId: o.tokenizer.eosTokenId,
      miniBatcher: o.miniBatcher,
      ...(o.maxStepTokens ? { maxStepTokens: o.maxStepTokens } : {}),
      ...(o.stepsInFlight !== undefined ? { lanes: o.stepsInFlight } : {}),
    },
    {
      log,
      onFirstToken: (s) => metrics.ttft.observe(s),
      onTokenInterval: (s) => metrics.tpot.observe(s),
      onPreempt: () => metrics.preemptions.inc(),
      onCancelReleased: (steps) => metrics.cancelReleaseSteps.observe(steps),
      onStep: (r) => metrics.addStep(r.result.counters),
      onFatal: (err) => o.onFatal?.(err),
    },
  );
  const ctx: ServingContext = {
    modelName: o.modelName,
    modelAliases: o.modelAliases ?? [],
    device: o.device,
    engine: o.engine,
    scheduler,
    prefixCaching: o.prefixCaching ?? false,
    tokenizer: o.tokenizer,
    metrics,
    limits,
    apiKeys: keySet(o.apiKeys ?? []),
    startedAt: Date.now(),
    plan: null,
    ready: false,
    draining: false,
    totals: { requests: 0, generatedTokens: 0, promptTokens: 0 },
  };
  metrics.actFraction.set(o.engine.actFraction());
  let watcher: PlanWatcher | null = null;
  if (o.planFile) {
    watcher = await watchPlanFile(o.planFile, {
      pollMs: o.planPollMs,
      onPlan: (plan) => {
        try {
          applyPlan(ctx, plan, log);
        } catch (err) {
          log.error(`plan not applied: ${(err as Error).message}`);
        }
      },
      onError: (m) => log.warn(`${m}; keeping the last good plan`),
    });
  }
  let keyWatcher: KeyFileWatcher | null = null;
  if (o.apiKeyFile) keyWatcher = await watchKeyFile(o.apiKeyFile.file, ctx.apiKeys, o.apiKeyFile.envKeys, log, o.apiKeyFile.pollMs);
  const corsOrigins =
    o.corsOrigins ??
    (process.env.HYBRIDSERVE_CORS_ORIGINS ?? '')
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean);
  const app = buildApp(ctx, { logger: o.logger, corsOrigins });
  let closing: Promise<void> | null = null;
  app.addHook('onClose', async () => {
    watcher?.close();
    keyWatcher?.close();
    await scheduler.stop();
  });
  await app.ready();
  ctx.ready = true;
  return {
    app,
    ctx,
    shutdown(graceMs = limits.shutdownGraceMs) {
      closing ??= (async () => {
        ctx.draining = true;
        ctx.ready = false;
        await scheduler.drain(graceMs);
        await app.close();
      })();
      return closing;
    },
  };
}
