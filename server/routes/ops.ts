// Operational routes: liveness, readiness, Prometheus metrics and the stats the operator scrapes.
import type { TypedPlugin } from '../type-provider.js';
import type { ServingContext } from '../context.js';
import { ErrorResponse } from '../schemas/common.js';
import { Health, Stats, Version } from '../schemas/ops.js';
import { packageVersion } from '../version.js';

/** Refreshes the gauges that describe current state (called before each scrape). */
export function refreshGauges(ctx: ServingContext): void {
  ctx.metrics.setLoad(ctx.scheduler.queueDepth, ctx.scheduler.runningCount);
  ctx.metrics.setPools(ctx.engine.pools());
  ctx.metrics.actFraction.set(ctx.engine.actFraction());
}

export const opsRoutes: TypedPlugin<{ ctx: ServingContext }> = async (app, { ctx }) => {
  // Liveness fails once the engine cannot serve any more (a pipeline rank is gone), so that the
  // kubelet restarts the pod even if the process were slow to exit by itself.
  app.get('/healthz', { schema: { response: { 200: Health, 503: Health } } }, async (_req, reply) => {
    const fatal = ctx.scheduler.fatalReason;
    if (fatal === null) return { status: 'ok' };
    reply.code(503);
    return { status: 'failing', reason: fatal };
  });

  // vLLM's liveness route: 200 with an empty body while the process serves (503 once it cannot).
  app.get('/health', async (_req, reply) => reply.code(ctx.scheduler.fatalReason === null ? 200 : 503).send());

  app.get('/version', { schema: { response: { 200: Version } } }, async () => ({ version: packageVersion() }));

  app.get('/readyz', { schema: { response: { 200: Health, 503: Health } } }, async (_req, reply) => {
    const fatal = ctx.scheduler.fatalReason;
    if (ctx.ready && !ctx.draining && fatal === null) return { status: 'ready' };
    reply.code(503);
    return { status: 'not ready', reason: fatal ?? (ctx.draining ? 'shutting down' : 'starting') };
  });

  app.get('/metrics', async (_req, reply) => {
    refreshGauges(ctx);
    reply.header('content-type', ctx.metrics.registry.contentType);
    return ctx.metrics.registry.metrics();
  });

  app.get('/v1/hybridserve/stats', { schema: { response: { 200: Stats, 401: ErrorResponse } } }, async () => {
    const counters = ctx.engine.counters();
    const pools = ctx.engine.pools();
    return {
      model: ctx.modelName,
      device: ctx.device,
      actFraction: ctx.engine.actFraction(),
      planGeneration: ctx.plan?.generation ?? null,
      uptimeSeconds: (Date.now() - ctx.startedAt) / 1000,
      queueDepth: ctx.scheduler.queueDepth,
      runningSequences: ctx.scheduler.runningCount,
      requestsTotal: ctx.totals.requests,
      generatedTokensTotal: ctx.totals.generatedTokens,
      promptTokensTotal: ctx.totals.promptTokens,
      maxBatch: ctx.scheduler.maxBatch,
      counters: { ...counters } as Record<string, number>,
      server: { ...ctx.scheduler.totals },
      pools: { ...pools } as Record<string, number>,
    };
  });
};
