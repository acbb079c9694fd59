// Schemas of the operational routes: models, health, readiness, stats, version, tokenize.
import { Type, type Static } from '@sinclair/typebox';
import { ChatMessage } from './chat.js';
import { Refused } from './common.js';

export const ModelList = Type.Object({
  object: Type.Literal('list'),
  data: Type.Array(
    Type.Object({
      id: Type.String(),
      object: Type.Literal('model'),
      created: Type.Integer(),
      owned_by: Type.String(),
      root: Type.String(),
      max_model_len: Type.Integer(),
    }),
  ),
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
  server: Type.Object({
    steps: Num,
    tokens: Num,
    busySeconds: Num,
    engineSeconds: Num,
    awaitSeconds: Num,
    loopSeconds: Num,
    preemptions: Num,
    overlapSeconds: Num,
    /** Engine steps per lane (steps in flight; index = engine slot); they sum to `steps`. */
    laneSteps: Type.Array(Type.Integer()),
  }),
  pools: Type.Record(Type.String(), Num),
});

/** GET /v1/models/{model} (vLLM also lists max_model_len). */
export const ModelCard = Type.Object({
  id: Type.String(),
  object: Type.Literal('model'),
  created: Type.Integer(),
  owned_by: Type.String(),
  root: Type.String(),
  max_model_len: Type.Integer(),
});

export const Version = Type.Object({ version: Type.String() });

const TokenIds = Type.Array(Type.Integer({ minimum: 0, maximum: 2147483647 }), { maxItems: 1_000_000 });

/**
 * POST /tokenize (vLLM): a prompt, or chat messages (the same messages /v1/chat/completions takes)
 * rendered with the chat template. One object with both optional rather than a union, so that a bad
 * request's 400 names the field that is wrong, not the first branch's missing `prompt`.
 */
export const TokenizeRequest = Type.Object(
  {
    model: Type.Optional(Type.String()),
    prompt: Type.Optional(Type.String()),
    messages: Type.Optional(Type.Array(ChatMessage, { minItems: 1 })),
    /** Add the model's special tokens (its BOS): prompt default true; messages as chat completions. */
    add_special_tokens: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
    /** Messages: open the assistant's turn at the end (default true, as vLLM). */
    add_generation_prompt: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
    return_token_strs: Refused('null or false'),
    continue_final_message: Refused('null or false'),
    chat_template: Refused('null'),
    chat_template_kwargs: Refused('null'),
    tools: Refused('null or empty'),
    mm_processor_kwargs: Refused('null'),
  },
  { additionalProperties: true },
);
export type TokenizeRequestT = Static<typeof TokenizeRequest>;
export const TokenizeResponse = Type.Object({ count: Type.Integer(), max_model_len: Type.Integer(), tokens: TokenIds });

export const DetokenizeRequest = Type.Object({ model: Type.Optional(Type.String()), tokens: TokenIds });
export const DetokenizeResponse = Type.Object({ prompt: Type.String() });
