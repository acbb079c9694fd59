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
  app.get('/healthz', { schema: { response: { 200: Health, 503: Health } } }, async () => ({ status: 'ok' }));

  // vLLM's liveness route: 200 with an empty body while the process serves.
  app.get('/health', async (_req, reply) => reply.code(200).send());

  app.get('/version', { schema: { response: { 200: Version } } }, async () => ({ version: packageVersion() }));

  app.get('/readyz', { schema: { response: { 200: Health, 503: Health } } }, async (_req, reply) => {
    if (ctx.ready && !ctx.draining) return { status: 'ready' };
    reply.code(503);
    return { status: 'not ready', reason: ctx.draining ? 'shutting down' : 'starting' };
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
