// Schemas of the operational routes: models, health, readiness, stats.
import { Type } from '@sinclair/typebox';

export const ModelList = Type.Object({
  object: Type.Literal('list'),
  data: Type.Array(Type.Object({
    id: Type.String(),
    object: Type.Literal('model'),
    created: Type.Integer(),
    owned_by: Type.String(),
  })),
});

export const Health = Type.Object({ status: Type.String(), reason: Type.Optional(Type.String()) });

const Num = Type.Number();
export const Stats = Type.Object({
  model: Type.String(),
  device: Type.String(),
  actFraction: Num,
  planGeneration: Type.Union([Type.Integer(), Type.Null()]),
  uptimeSeconds: Num,
  queueDepth: Type.Integer(),
  runningSequences: Type.Integer(),
  requestsTotal: Type.Integer(),
  generatedTokensTotal: Type.Integer(),
  promptTokensTotal: Type.Integer(),
  maxBatch: Type.Integer(),
  counters: Type.Record(Type.String(), Num),
  /** The scheduler's own totals: busy wall time vs the engine's step time, for the overhead figure. */
  server: Type.Object({ steps: Num, tokens: Num, busySeconds: Num, engineSeconds: Num, awaitSeconds: Num, loopSeconds: Num, preemptions: Num, overlapSeconds: Num }),
  pools: Type.Record(Type.String(), Num),
});
