// Everything the routes share, built once per app: the engine behind its scheduler, the
// tokenizer, metrics, limits and the live plan state.
import type { KeySet } from './auth.js';
import type { NativeEngine } from '../native/ts/addon-types.js';
import type { ServerMetrics } from './metrics.js';
import type { ServerLimits } from './options.js';
import type { PlanFile } from './plan-file.js';
import type { ServerTokenizer } from './request.js';
import type { Scheduler } from './scheduler/scheduler.js';

export interface ServingContext {
  modelName: string;
  /** Other ids accepted in requests (e.g. the checkpoint's short name); /v1/models lists modelName. */
  modelAliases: readonly string[];
  device: string;
  engine: NativeEngine;
  scheduler: Scheduler;
  /** The engine reuses cached prompt blocks: the samples of a prompt then share its prefill (generate.ts submitAll). */
  prefixCaching: boolean;
  tokenizer: ServerTokenizer;
  metrics: ServerMetrics;
  limits: ServerLimits;
  /** Mutable: the key file watcher (server/auth.ts) updates it in place. */
  apiKeys: KeySet;
  startedAt: number;
  /** The plan file in effect, if any. */
  plan: PlanFile | null;
  /** False while starting and once draining (readiness fails first on shutdown). */
  ready: boolean;
  draining: boolean;
  totals: { requests: number; generatedTokens: number; promptTokens: number };
}

/** Applies a (re)loaded plan: the fraction and batch cap change live; pool sizes only at start. */
export function applyPlan(ctx: ServingContext, plan: PlanFile, log: { info(m: string): void }): void {
  const prev = ctx.plan;
  ctx.engine.setActFraction(plan.actFraction);
  ctx.metrics.actFraction.set(ctx.engine.actFraction());
  if (plan.maxBatch !== undefined) ctx.scheduler.maxBatch = plan.maxBatch;
  ctx.metrics.planGeneration.set(plan.generation ?? 0);
  const pools = ctx.engine.pools();
  if (
    (plan.kvBlocks !== undefined && plan.kvBlocks !== pools.kvBlocksTotal) ||
    (plan.actBlocks !== undefined && plan.actBlocks !== pools.actBlocksTotal)
  ) {
    log.info(
      `plan pool sizes (kv ${plan.kvBlocks}, act ${plan.actBlocks}) differ from the running pools (kv ${pools.kvBlocksTotal}, act ${pools.actBlocksTotal}); they apply at the next start`,
    );
  }
  ctx.plan = plan;
  log.info(
    `plan ${prev ? 'reloaded' : 'loaded'}: actFraction ${plan.actFraction}` +
      `${plan.maxBatch !== undefined ? `, maxBatch ${plan.maxBatch}` : ''}${plan.generation !== undefined ? `, generation ${plan.generation}` : ''}` +
      `${plan.reason ? ` (${plan.reason})` : ''}`,
  );
}
